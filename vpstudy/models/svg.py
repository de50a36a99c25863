"""SVG-LP (Denton and Fergus, "Stochastic Video Generation with a Learned Prior", ICML 2018).

The stochastic baseline of the lightweight study's Table III (BAIR, 64×64 RGB). One time step
t (frames x_{t-1} -> x_t), as in the paper's Fig. 1 (c) and (training) (b):

    x_{t-1} ──enc──► h_{t-1} ───────────────┬──────────────► prior LSTM ──► μ_ψ, log σ²_ψ
                                            │                               (learned prior p_ψ)
    x_t ─────enc──► h_t ──► posterior LSTM ──► μ_φ, log σ²_φ ──► z_t ~ q_φ   (training)
                                            │                    z_t ~ p_ψ   (test)
                                            ▼
                    frame-predictor LSTM( [h_{t-1}, z_t] ) ──► g_t
                                            │
    skip features of the LAST OBSERVED frame ─► dec(g_t, skips) ──► x̂_t

- Encoder "vgg_64": five stages (64, 128, 256, 512 channels; 2, 2, 3, 3 layers of
  Conv3×3 → BatchNorm → LeakyReLU(0.2)) with 2×2 max-pooling between them, then a 4×4
  conv to g_dim, BatchNorm, tanh: a g_dim vector per frame, plus the four stages' feature
  maps as skips. The decoder mirrors it (transposed 4×4 conv up to 4×4, nearest-neighbour
  ×2 upsampling, each stage fed cat(upsampled, skip), a transposed 3×3 conv and a sigmoid
  at the end).
- LSTMs (fully connected): Linear embed to rnn_size → `layers` LSTMCells → Linear read-out
  (tanh for the frame predictor; μ and log σ² heads for the Gaussian LSTMs).
- Loss per frame: MSE(x̂_t, x_t) + β·KL(q_φ(z_t | x_{1:t}) ‖ p_ψ(z_t | x_{1:t-1})), summed over
  the T−1 predicted frames (KL summed over the z dimensions, averaged over the batch).
- Test: the observed frames condition all three LSTMs (z from the posterior, as in SVG's
  generate script); then z_t is drawn from the learned prior and each prediction is encoded
  again for the next step. `predict_mean` uses z_t = μ_ψ instead (the prior's mean).

Published configuration (edenton/svg README, BAIR: ``train_svg_lp.py --dataset bair --model
vgg --g_dim 128 --z_dim 64 --beta 0.0001 --n_past 2 --n_future 10 --channels 3``; defaults
of edenton/svg train_svg_lp.py: rnn_size 256, lr 0.002, Adam β1 0.9, batch 100; the
predictor has 2 LSTM layers, prior and posterior 1 (the ``predictor_rnn_layers`` /
``prior_rnn_layers`` / ``posterior_rnn_layers`` defaults of the later train_svg_lp.py; the
first release used ``rnn_layers=2`` for all three). Weights initialised as edenton/svg
utils.py ``init_weights``: conv and linear weights N(0, 0.02), biases 0; BatchNorm weights
N(1, 0.02), biases 0; LSTM cells keep PyTorch's init.

Parameters at 3×64×64 (tests/test_svg.py): 22,831,747 with the (2, 1, 1) LSTM layers (the
published BAIR model; the Table III "22.8M" is this count, 0.1% off) and 23,884,419 with 2
layers in each (the first release); 21,258,883 at 3×32×32 (the smaller final kernels).

Frame sizes: any side that is a multiple of 16 (the cpu and smoke profiles see 32×32);
the encoder's last conv and the decoder's first transposed conv take a (side/16)×(side/16)
kernel, 4×4 at 64×64 (the published one), so their parameter count changes with the side.

Differences from the reference code, none changing the model:
- Under teacher forcing every frame is encoded in one batched call and every prediction
  decoded in one batched call (BatchNorm statistics in train mode are then taken over all
  frames of the batch at once, not frame by frame).
- The prior LSTM also reads the observed frames at test time (it does during training).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .base import VideoPredictor

# Best-of-N evaluation (SVG's protocol: N samples per test sequence, the best per sequence
# for each metric). SVG's paper draws 100; the small profiles draw fewer to stay fast.
EVAL_SAMPLES = {"paper": 100, "cpu": 10, "smoke": 2}


def _vgg_layer(cin: int, cout: int) -> nn.Sequential:
    """Conv 3×3 (bias) → BatchNorm → LeakyReLU(0.2)."""
    return nn.Sequential(nn.Conv2d(cin, cout, 3, 1, 1), nn.BatchNorm2d(cout), nn.LeakyReLU(0.2))


def init_weights(module: nn.Module) -> None:
    """edenton/svg's init: conv/linear weights N(0, 0.02) and zero bias; BatchNorm N(1, 0.02)."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
        nn.init.normal_(module.weight, 0.0, 0.02)
        nn.init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


class VGGEncoder(nn.Module):
    """Frame (B, C, S, S) -> (g_dim vector (B, g_dim), skips [S, S/2, S/4, S/8 feature maps])."""

    def __init__(self, g_dim: int, channels: int, size: int = 64):
        super().__init__()
        self.g_dim = g_dim
        widths = [(channels, 64, 64), (64, 128, 128), (128, 256, 256, 256), (256, 512, 512, 512)]
        self.stages = nn.ModuleList(
            nn.Sequential(*[_vgg_layer(a, b) for a, b in zip(w[:-1], w[1:])]) for w in widths)
        self.head = nn.Sequential(nn.Conv2d(512, g_dim, size // 16), nn.BatchNorm2d(g_dim), nn.Tanh())

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        skips = []
        for i, stage in enumerate(self.stages):
            x = stage(x if i == 0 else F.max_pool2d(x, 2))
            skips.append(x)
        return self.head(F.max_pool2d(x, 2)).flatten(1), skips


class VGGDecoder(nn.Module):
    """(g_dim vector, skips) -> frame (B, C, S, S) in [0, 1] (sigmoid)."""

    def __init__(self, g_dim: int, channels: int, size: int = 64):
        super().__init__()
        self.head = nn.Sequential(nn.ConvTranspose2d(g_dim, 512, size // 16), nn.BatchNorm2d(512),
                                  nn.LeakyReLU(0.2))
        widths = [(1024, 512, 512, 256), (512, 256, 256, 128), (256, 128, 64)]
        self.stages = nn.ModuleList(
            nn.Sequential(*[_vgg_layer(a, b) for a, b in zip(w[:-1], w[1:])]) for w in widths)
        self.last = nn.Sequential(_vgg_layer(128, 64), nn.ConvTranspose2d(64, channels, 3, 1, 1),
                                  nn.Sigmoid())

    def forward(self, g: torch.Tensor, skips: list[torch.Tensor]) -> torch.Tensor:
        x = self.head(g[:, :, None, None])
        for stage, skip in zip(self.stages, reversed(skips[1:])):
            x = stage(torch.cat([F.interpolate(x, scale_factor=2, mode="nearest"), skip], 1))
        return self.last(torch.cat([F.interpolate(x, scale_factor=2, mode="nearest"), skips[0]], 1))


LSTMState = list[tuple[torch.Tensor, torch.Tensor]]


class _LSTMStack(nn.Module):
    """Linear embed → `layers` LSTMCells; subclasses add the read-out."""

    def __init__(self, input_size: int, hidden: int, layers: int):
        super().__init__()
        self.hidden = hidden
        self.embed = nn.Linear(input_size, hidden)
        self.cells = nn.ModuleList(nn.LSTMCell(hidden, hidden) for _ in range(layers))

    def zero_state(self, like: torch.Tensor) -> LSTMState:
        z = like.new_zeros(like.shape[0], self.hidden)
        return [(z, z) for _ in self.cells]

    def _run(self, x: torch.Tensor, state: LSTMState) -> tuple[torch.Tensor, LSTMState]:
        h, new = self.embed(x), []
        for cell, s in zip(self.cells, state):
            s = cell(h, s)
            new.append(s)
            h = s[0]
        return h, new


class FramePredictor(_LSTMStack):
    """[h_{t-1}, z_t] -> g_t (tanh), the deterministic frame-predictor LSTM."""

    def __init__(self, input_size: int, output_size: int, hidden: int, layers: int):
        super().__init__(input_size, hidden, layers)
        self.out = nn.Sequential(nn.Linear(hidden, output_size), nn.Tanh())

    def forward(self, x: torch.Tensor, state: LSTMState) -> tuple[torch.Tensor, LSTMState]:
        h, state = self._run(x, state)
        return self.out(h), state


class GaussianLSTM(_LSTMStack):
    """h -> (μ, log σ²) of a diagonal Gaussian over z: the prior and the posterior networks."""

    def __init__(self, input_size: int, z_dim: int, hidden: int, layers: int):
        super().__init__(input_size, hidden, layers)
        self.mu = nn.Linear(hidden, z_dim)
        self.logvar = nn.Linear(hidden, z_dim)

    def forward(self, x: torch.Tensor, state: LSTMState
                ) -> tuple[torch.Tensor, torch.Tensor, LSTMState]:
        h, state = self._run(x, state)
        return self.mu(h), self.logvar(h), state


def gaussian_kl(mu1: torch.Tensor, logvar1: torch.Tensor, mu2: torch.Tensor,
                logvar2: torch.Tensor) -> torch.Tensor:
    """KL(N(μ1, σ1²) ‖ N(μ2, σ2²)) per element (diagonal Gaussians), >= 0, 0 iff equal."""
    return (0.5 * (logvar2 - logvar1) + (logvar1.exp() + (mu1 - mu2) ** 2) / (2 * logvar2.exp())
            - 0.5)


def reparameterize(mu: torch.Tensor, logvar: torch.Tensor,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """z = μ + σ·ε, ε ~ N(0, I) from `generator` (or torch's global RNG)."""
    eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
    return mu + (0.5 * logvar).exp() * eps


class SVGLP(VideoPredictor):
    """SVG-LP with the VGG 64×64 encoder/decoder (the project's model contract).

    Args:
        in_shape: (T_in, C, H, W) of the observed clip; H = W, a multiple of 16.
        out_frames: frames predicted by `forward`.
        g_dim, z_dim, rnn_size: frame code, latent and LSTM widths (BAIR: 128, 64, 256).
        predictor_layers, prior_layers, posterior_layers: LSTM depths (BAIR: 2, 1, 1).
        beta: KL weight (edenton/svg: 1e-4).

    Attributes: name, in_frames, out_frames, beta, stochastic (True: the trainer evaluates
    it by best-of-N sampling, `EVAL_SAMPLES`).
    """

    stochastic = True
    eval_samples = EVAL_SAMPLES

    def __init__(self, in_shape: tuple[int, int, int, int] = (10, 3, 64, 64), out_frames: int = 10,
                 g_dim: int = 128, z_dim: int = 64, rnn_size: int = 256, predictor_layers: int = 2,
                 prior_layers: int = 1, posterior_layers: int = 1, beta: float = 1e-4,
                 name: str = "svg"):
        super().__init__()
        t_in, c, h, w = in_shape
        if h != w or h % 16 or h < 16:
            raise ValueError(f"svg: frames must be square with a side that is a multiple of 16 "
                             f"(four 2×2 poolings), got {h}×{w}")
        if t_in < 1 or out_frames < 1:
            raise ValueError(f"svg: need T_in >= 1 and out_frames >= 1, got {t_in}, {out_frames}")
        if not beta >= 0:
            raise ValueError(f"svg: beta must be >= 0, got {beta!r}")
        self.name, self.in_frames, self.out_frames, self.channels = name, t_in, out_frames, c
        self.beta = float(beta)
        self.encoder = VGGEncoder(g_dim, c, h)
        self.decoder = VGGDecoder(g_dim, c, h)
        self.predictor = FramePredictor(g_dim + z_dim, g_dim, rnn_size, predictor_layers)
        self.prior = GaussianLSTM(g_dim, z_dim, rnn_size, prior_layers)
        self.posterior = GaussianLSTM(g_dim, z_dim, rnn_size, posterior_layers)
        self.apply(init_weights)

    # ---- helpers

    def _encode(self, frames: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """(B, T, C, H, W) -> codes (B, T, g), skips each (B, T, ...): one batched call."""
        b, t = frames.shape[:2]
        g, skips = self.encoder(frames.flatten(0, 1))
        return g.unflatten(0, (b, t)), [s.unflatten(0, (b, t)) for s in skips]

    def _check(self, video: torch.Tensor, what: str) -> None:
        if video.ndim != 5 or video.shape[2] != self.channels:
            raise ValueError(f"svg: {what} must be (B, T, {self.channels}, H, W), got {tuple(video.shape)}")

    # ---- the contract

    def training_loss(self, inputs: torch.Tensor, targets: torch.Tensor, criterion, *,
                      progress: float, generator: torch.Generator | None = None
                      ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """SVG-LP's objective on cat(inputs, targets) (length T): frames 1..T-1 are predicted.

        Step t: z_t ~ q_φ(· | h_t) (reparameterised), g_t = predictor([h_{t-1}, z_t]),
        x̂_t = dec(g_t, skips of frame min(t-1, T_in-1)); the prior reads h_{t-1}.
        loss = (T−1)·criterion(x̂, x)[0] + β·Σ_t KL_t, where with the plain MSE criterion the
        first term is SVG's Σ_t MSE_t, and KL_t is summed over z and averaged over the batch.
        `progress` is part of the contract and unused.

        Returns (loss, parts): the criterion's parts plus 'mse' (element mean) and 'kl' (per
        frame), detached.
        """
        self._check(inputs, "inputs")
        self._check(targets, "targets")
        video = torch.cat([inputs, targets], dim=1)
        b, t_total = video.shape[:2]
        t_in = inputs.shape[1]
        codes, skips = self._encode(video)
        post_state = self.posterior.zero_state(codes[:, 0])
        prior_state = self.prior.zero_state(codes[:, 0])
        pred_state = self.predictor.zero_state(codes[:, 0])
        kl = video.new_zeros(())
        outs = []
        for t in range(1, t_total):
            mu, logvar, post_state = self.posterior(codes[:, t], post_state)
            mu_p, logvar_p, prior_state = self.prior(codes[:, t - 1], prior_state)
            z = reparameterize(mu, logvar, generator)
            g, pred_state = self.predictor(torch.cat([codes[:, t - 1], z], 1), pred_state)
            outs.append(g)
            kl = kl + gaussian_kl(mu, logvar, mu_p, logvar_p).sum() / b
        skip_index = torch.arange(t_total - 1, device=video.device).clamp(max=t_in - 1)
        frame_skips = [s[:, skip_index].flatten(0, 1) for s in skips]
        pred = self.decoder(torch.stack(outs, 1).flatten(0, 1), frame_skips)
        pred = pred.unflatten(0, (b, t_total - 1))
        rec, parts = criterion(pred, video[:, 1:])
        loss = (t_total - 1) * rec + self.beta * kl
        parts = {k: torch.as_tensor(v).detach() for k, v in dict(parts).items()}
        parts.setdefault("mse", F.mse_loss(pred.detach().float(), video[:, 1:].float()))
        parts["kl"] = (kl / (t_total - 1)).detach()
        return loss, parts

    def sample(self, x: torch.Tensor, generator: torch.Generator | None = None,
               mean: bool = False) -> torch.Tensor:
        """One sample of the `out_frames` future frames (B, out, C, H, W) given x (B, T_in, C, H, W).

        The observed frames advance the three LSTMs (z from the posterior on the true next
        frame); then z_t ~ p_ψ (or z_t = μ_ψ if `mean`) and each prediction is encoded again.
        Skips come from the last observed frame. Draws use `generator` (or the global RNG).
        """
        self._check(x, "x")
        t_in = x.shape[1]
        codes, skips = self._encode(x)
        last_skips = [s[:, -1] for s in skips]
        post_state = self.posterior.zero_state(codes[:, 0])
        prior_state = self.prior.zero_state(codes[:, 0])
        pred_state = self.predictor.zero_state(codes[:, 0])
        for t in range(1, t_in):
            mu, logvar, post_state = self.posterior(codes[:, t], post_state)
            _, _, prior_state = self.prior(codes[:, t - 1], prior_state)
            z = mu if mean else reparameterize(mu, logvar, generator)
            _, pred_state = self.predictor(torch.cat([codes[:, t - 1], z], 1), pred_state)
        h = codes[:, -1]
        future = []
        for k in range(self.out_frames):
            mu_p, logvar_p, prior_state = self.prior(h, prior_state)
            z = mu_p if mean else reparameterize(mu_p, logvar_p, generator)
            g, pred_state = self.predictor(torch.cat([h, z], 1), pred_state)
            frame = self.decoder(g, last_skips)
            future.append(frame)
            if k + 1 < self.out_frames:
                h = self.encoder(frame)[0]
        return torch.stack(future, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """One sample from the learned prior (torch's global RNG): (B, out_frames, C, H, W)."""
        return self.sample(x)

    def predict_mean(self, x: torch.Tensor) -> torch.Tensor:
        """The prediction with z_t = the prior's mean at every step (deterministic)."""
        return self.sample(x, mean=True)
