"""Evaluation: a model's metrics on fixed sequences (`vpstudy.metrics` conventions), and its
first predictions for the run's samples.

Deterministic models are scored on their prediction; stochastic ones (``stochastic = True``,
SVG-LP) by SVG's best-of-N protocol. Under torchrun each rank scores its share of the
sequences and the metric sums are added up over ranks.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
from tqdm.auto import tqdm

from vpstudy import distributed
from vpstudy.checkpoints import unwrap
from vpstudy.config import TrainConfig
from vpstudy.distributed import SINGLE, Ranks
from vpstudy.metrics import BestOfNAccumulator, MetricAccumulator
from vpstudy.precision import autocast


@torch.no_grad()
def predict(model: nn.Module, inputs: torch.Tensor, device: torch.device,
            amp: torch.dtype | None = None) -> torch.Tensor:
    """Predictions for a batch of inputs, as float32 on the CPU."""
    model.eval()
    with autocast(device, amp):
        out = model(inputs.to(device, non_blocking=True))
    return out.float().cpu()


def evaluate(model: nn.Module, sequences: torch.Tensor, cfg: TrainConfig, device: torch.device,
             amp: torch.dtype | None = None, batch_size: int | None = None,
             keep: int = 0, progress: bool = False, desc: str = "test",
             ranks: Ranks = SINGLE, per_sequence: dict | None = None) -> tuple[dict, torch.Tensor | None]:
    """Metrics of ``model`` on fixed ``sequences`` (N, T, C, H, W); also the first ``keep`` predictions.

    A stochastic model (``stochastic = True``, e.g. svg) goes to `evaluate_stochastic`. Under
    torchrun each rank evaluates its share of the sequences and the metric sums are added up
    (every rank gets the metrics of all; the kept predictions are rank 0's first ones).
    ``per_sequence``, a dict, receives each sequence's per-frame values (``{metric: (N, T)}``,
    `MetricAccumulator.per_sequence`) in a single process; under torchrun it stays empty."""
    if unwrap(model).stochastic:
        return evaluate_stochastic(model, sequences, cfg, device, amp, batch_size, keep, progress, desc,
                                   per_sequence)
    sequences = sequences[ranks.shard(sequences.shape[0])]
    batch_size = batch_size or max(cfg.batch_size, 16)
    acc = MetricAccumulator()
    kept = []
    n = sequences.shape[0]
    for i in tqdm(range(0, n, batch_size), desc=desc, disable=not progress, leave=False):
        seq = sequences[i: i + batch_size]
        x, y = seq[:, : cfg.in_frames], seq[:, cfg.in_frames: cfg.seq_len]
        pred = predict(model, x, device, amp)
        acc.update(pred, y)
        if sum(p.shape[0] for p in kept) < keep:
            kept.append(pred)
    preds = torch.cat(kept)[:keep] if kept else None
    if ranks.world > 1:
        acc.set_totals(distributed.sum_over_ranks(torch.from_numpy(acc.totals()), ranks).numpy())
    elif per_sequence is not None:
        per_sequence.update(acc.per_sequence())
    return acc.compute(), preds


@torch.no_grad()
def evaluate_stochastic(model: nn.Module, sequences: torch.Tensor, cfg: TrainConfig, device: torch.device,
                        amp: torch.dtype | None = None, batch_size: int | None = None, keep: int = 0,
                        progress: bool = False, desc: str = "test", per_sequence: dict | None = None
                        ) -> tuple[dict, torch.Tensor | None]:
    """Best-of-N metrics of a stochastic model (SVG's protocol), and those of its prior's mean.

    N = ``model.eval_samples[cfg.profile]`` samples per sequence, drawn with ``model.sample(x,
    generator)`` from a generator seeded by ``cfg.seed`` (repeatable); for each metric the best
    sample per sequence counts (`metrics.BestOfNAccumulator`). The result holds ``samples``
    (N) and ``prior_mean`` (the metrics of ``model.predict_mean``); the kept predictions are
    each sequence's best sample by MSE; ``per_sequence`` receives the best-of-N values per
    sequence and frame.
    """
    core = unwrap(model)
    n_samples = int(core.eval_samples.get(cfg.profile, max(core.eval_samples.values())))
    batch_size = batch_size or max(cfg.batch_size, 16)
    gen = torch.Generator(device=device).manual_seed(cfg.seed)
    best, mean_acc, kept = BestOfNAccumulator(), MetricAccumulator(), []
    core.eval()
    for i in tqdm(range(0, sequences.shape[0], batch_size), desc=desc, disable=not progress, leave=False):
        seq = sequences[i: i + batch_size]
        x, y = seq[:, : cfg.in_frames].to(device), seq[:, cfg.in_frames: cfg.seq_len]
        with autocast(device, amp):
            samples = [core.sample(x, generator=gen).float().cpu() for _ in range(n_samples)]
            mean_acc.update(core.predict_mean(x).float().cpu(), y)
        pick = best.update(samples, y)
        if sum(p.shape[0] for p in kept) < keep:
            kept.append(torch.stack([samples[k][b] for b, k in enumerate(pick)]))
    result = best.compute()
    if per_sequence is not None:
        per_sequence.update(best.per_sequence())
    result["prior_mean"] = {k: v for k, v in mean_acc.compute().items() if k != "per_frame"}
    preds = torch.cat(kept)[:keep] if kept else None
    return result, preds


def to_uint8(x: torch.Tensor) -> np.ndarray:
    return (x.clamp(0, 1) * 255).round().to(torch.uint8).numpy()
