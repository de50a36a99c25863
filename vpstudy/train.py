"""The trainer: one function, :func:`train`, from a validated config to a completed run record.

This module is the training loop; what it uses lives in one place each: the data
(`vpstudy.data.prepare_data`, `train_batches`), the model (the registry,
`vpstudy.models.build_model`), device and precision (`vpstudy.precision`), checkpoints
(`vpstudy.checkpoints`), evaluation (`vpstudy.evaluate`), run records (`vpstudy.runs`).

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
- bf16 autocast where the device computes it natively (`vpstudy.precision`), channels-last,
  and optionally ``torch.compile`` on CUDA.
"""

from __future__ import annotations

import contextlib
import io
import math
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
import torch.nn as nn
from tqdm.auto import tqdm

from vpstudy import distributed, runs
from vpstudy.checkpoints import load_checkpoint, save_checkpoint, unwrap
from vpstudy.config import BASELINES, TrainConfig, baseline_config
from vpstudy.data import StudyData, epoch_seed, prepare_data, train_batches
from vpstudy.distributed import SINGLE, Ranks
from vpstudy.efficiency import describe_model
from vpstudy.evaluate import evaluate, to_uint8
from vpstudy.losses import VideoPredictionLoss
from vpstudy.models import build_model, has_own_training_loss
from vpstudy.precision import autocast, autocast_dtype, memory_format_for, resolve_device

NUM_SAMPLES = 10          # test sequences whose predictions are kept in samples.npz
LOG_EVERY = 10            # steps between progress-bar updates and finiteness checks


EXPLODED = 100           # an epoch's mean loss this many times its lowest so far: diverged


class TrainingDiverged(runs.RunError):
    """The loss became NaN or inf, or exploded (``check_not_exploded``)."""


def check_not_exploded(history: list[dict], lr: float) -> None:
    """Raise TrainingDiverged when the last epoch's mean training loss is more than EXPLODED
    times the lowest of the epochs before it: the loss is still finite, but the run will not
    come back (e.g. sepcrev at lr 3e-2, seed 1: 0.068 at epoch 6, 885 at epoch 7)."""
    if len(history) < 2:
        return
    lowest, last = min(h["loss"] for h in history[:-1]), history[-1]["loss"]
    if lowest > 0 and last > EXPLODED * lowest:
        raise TrainingDiverged(
            f"the training loss exploded at epoch {history[-1]['epoch']}: its mean was {last:.4g}, "
            f"{last / lowest:,.0f}x its lowest epoch mean so far ({lowest:.4g}); the run is marked "
            f"failed (its history is in the record). Lower the learning rate (lr={lr}).")


def build_run_model(cfg: TrainConfig) -> nn.Module:
    """The registry's model for run ``cfg``: its clip shape and its dataset's layout."""
    return build_model(cfg.model, activation=cfg.activation, in_shape=cfg.clip_shape,
                       out_frames=cfg.out_frames, dataset=cfg.dataset)


# ---------------------------------------------------------------- optimizer and schedule


@dataclass
class Schedule:
    """A learning-rate scheduler and when it steps: ``'step'`` (after every optimizer step:
    OneCycle), ``'epoch'`` (after every epoch: x0.2 every 50 epochs) or ``None`` (constant)."""

    scheduler: Any
    every: str | None

    def after_step(self) -> None:
        if self.every == "step":
            self.scheduler.step()

    def after_epoch(self) -> None:
        if self.every == "epoch":
            self.scheduler.step()


def make_optimizer(cfg: TrainConfig, model: nn.Module) -> tuple[torch.optim.Optimizer | None, Schedule | None]:
    """Adam and the config's schedule; (None, None) for a model without parameters."""
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        return None, None
    opt = torch.optim.Adam(params, lr=cfg.lr)
    if cfg.schedule == "onecycle":
        total = cfg.epochs * cfg.steps_per_epoch
        return opt, Schedule(torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=total), "step")
    if cfg.schedule == "step":
        return opt, Schedule(torch.optim.lr_scheduler.StepLR(opt, step_size=50, gamma=0.2), "epoch")
    # constant: the reference recipes of PredRNN, CrevNet and SVG
    return opt, Schedule(torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0), None)


def loss_of(model: nn.Module, x: torch.Tensor, y: torch.Tensor, criterion: Callable,
            progress: float) -> tuple[torch.Tensor, dict]:
    """The training loss: the model's own (recurrent models) or ``criterion(model(x), y)``
    through ``model`` (which may be a compiled wrapper)."""
    core = unwrap(model)
    if has_own_training_loss(core):
        return core.training_loss(x, y, criterion, progress=progress)
    return criterion(model(x), y)


# ---------------------------------------------------------------- the loop


@dataclass
class Loop:
    """What every epoch of one run works with (built once by :func:`train`)."""

    cfg: TrainConfig
    model: nn.Module                  # the model (evaluated, checkpointed)
    step_model: nn.Module             # the same model as trained: a torch.compile wrapper if asked
    data: StudyData
    device: torch.device
    amp: torch.dtype | None
    criterion: Callable
    optimizer: torch.optim.Optimizer
    schedule: Schedule
    ranks: Ranks = SINGLE
    progress: bool = True
    log: Callable[[str], None] = lambda s: None
    estimated: bool = False           # the time estimate has been printed (once per process)


ESTIMATE_AFTER = 3                    # steps timed before the estimate (the first one warms up)


def estimate_text(cfg: TrainConfig, epoch: int, step: int, seconds_per_step: float) -> str:
    """'about 12 min for the 3,200 steps left (0.22 s per step measured here; validation and test
    add to it)'."""
    left = cfg.epochs * cfg.steps_per_epoch - (epoch * cfg.steps_per_epoch + step)
    total = left * seconds_per_step
    when = f"{total / 60:.0f} min" if total >= 90 else f"{total:.0f} s"
    return (f"estimated training time: about {when} for the {left:,} steps left "
            f"({seconds_per_step:.3g} s per step measured here; validation and test add to it)")


@contextlib.contextmanager
def stop_on_sigterm() -> Iterator[None]:
    """While training, SIGTERM raises `runs.RunInterrupted` (as SIGINT raises KeyboardInterrupt),
    so the record is marked ``interrupted``, the lock released and the run resumes next time.
    Only in the main thread (where Python delivers signals); the old handler comes back after."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise runs.RunInterrupted(f"stopped by {signal.Signals(signum).name}")

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """SIGTERM and SIGINT wait until the block ends, then act as they would have: around the
    write of an epoch's checkpoint and its record, so a signal between the two cannot leave a
    record one epoch behind its checkpoint. Only in the main thread (where Python runs handlers)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    arrived: list[int] = []
    held = (signal.SIGTERM, signal.SIGINT)
    previous = {s: signal.signal(s, lambda signum, frame: arrived.append(signum)) for s in held}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        for s in dict.fromkeys(arrived):      # once each, to the handlers that were there before
            signal.raise_signal(s)


def check_resumes_here(rd: runs.RunDir, device: torch.device) -> None:
    """Refuse to resume a partial run on another processor, torch build or code commit than
    the one it started on: its record names one of each, and its epochs would mix two
    numerics (bf16 and depthwise kernels differ between CPU models and GPUs)."""
    if not (rd.checkpoint_path.exists() and rd.exists()):
        return
    started = rd.load().get("provenance") or {}
    here = {"hardware": runs.hardware(str(device)), "torch_version": torch.__version__,
            "git_commit": runs.git_commit()}
    why = runs.resume_mismatch(started, here)
    if why:
        raise runs.ResumeElsewhere(
            f"run {rd.id} has a checkpoint from another machine or code version ({why}): "
            f"resuming it here would mix two numerics in a record that names one. Resume it on "
            f"{runs.machine_name(started)} with torch {started.get('torch_version')} at commit "
            f"{started.get('git_commit')}, or train it again here from the start with --force "
            f"(force=True), which moves the partial run aside")


def train(cfg: TrainConfig, root: str | Path | None = None, *, force: bool = False,
          progress: bool = True, log: Callable[[str], None] | None = print,
          data_parallel: bool = True, _stop_after_epoch: int | None = None) -> dict[str, Any]:
    """Train (or resume, or find) the run of ``cfg`` under ``root``; return its completed record.

    ``root`` None (a run started by hand): a config the study has recorded under ``runs/`` is
    loaded from there; any other trains under ``runs-scratch/`` (`runs.adhoc_runs_root`), so
    trying things never changes the committed records. The study runner passes ``runs/``.
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
    recorded = None if force else runs.study_record(rid, root)
    if recorded is not None:                  # asked by hand for a config the study recorded
        log(f"run {rid} is recorded in the study's runs ({recorded['_dir']}); loading it "
            f"(--runs DIR or force=True to train your own)")
        return recorded
    root = runs.adhoc_runs_root(root)         # by hand: runs-scratch/, which git ignores
    rd = runs.RunDir(root / rid)
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
    check_resumes_here(rd, device)            # before data preparation, as for a run in use
    amp = autocast_dtype(cfg, device)
    data = prepare_data(cfg, device)          # fails here, before any training, on bad data
    torch.manual_seed(cfg.seed)               # the initial weights depend on the seed alone
    model = build_run_model(cfg).to(device)
    model = model.to(memory_format=memory_format_for(model))
    optimizer, schedule = make_optimizer(cfg, model)

    distributed.barrier(ranks)                # rank 0 has moved a forced run aside
    main_only = contextlib.nullcontext
    lock = rd.lock() if ranks.main else None  # beats while held: a dead holder's is taken over
    with stop_on_sigterm(), (lock or main_only()), \
            (runs.failures_recorded(rd, cfg.to_dict()) if ranks.main else main_only()):
        if rd.status() == "completed":        # finished by another process meanwhile
            return {**rd.load(), "_dir": str(rd.path)}
        if ranks.main:
            for p in rd.remove_temp_files():  # left by a process killed mid-write
                log(f"removed {p.name}, a temp file left by an interrupted write")
        start_epoch, history = 0, []
        if rd.checkpoint_path.exists():
            state = load_checkpoint(rd.checkpoint_path, cfg, model)
            if optimizer is not None and state["optimizer"] is not None:
                optimizer.load_state_dict(state["optimizer"])
                schedule.scheduler.load_state_dict(state["scheduler"])
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

        loop = Loop(cfg, model, torch.compile(model) if (cfg.compile and device.type == "cuda") else model,
                    data, device, amp, VideoPredictionLoss(cfg.lambda1, cfg.lambda2, cfg.tau),
                    optimizer, schedule, ranks, progress, log)
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

            stats = train_one_epoch(loop, epoch, validate)
            distributed.average_buffers(model, ranks)   # what the checkpoint holds, on every rank
            val = validate(stats["steps"])
            stats.update(epoch=epoch + 1, seconds=time.perf_counter() - t0,
                         val={k: v for k, v in val.items() if k != "per_frame"},
                         val_points=points)
            history.append(stats)
            prov["train_seconds"] += stats["seconds"]
            if lock is not None:
                lock.check_held()             # taken over while this process was stopped: no writes
            with signals_held():              # checkpoint and record: both of this epoch, or neither
                if ranks.main:
                    save_checkpoint(rd.checkpoint_path, cfg, epoch, model, optimizer, schedule.scheduler, history)
                save(record)
            log(f"epoch {epoch + 1}/{cfg.epochs}: loss {stats['loss']:.5f}  "
                f"val mse {val['mse']:.2f}  val ssim {val['ssim']:.4f}  ({stats['seconds']:.1f}s)")
            check_not_exploded(history, cfg.lr)
            if _stop_after_epoch is not None and epoch + 1 >= _stop_after_epoch:
                return record

        if lock is not None:
            lock.check_held()
        finish(loop, rd, record)
        distributed.barrier(ranks)            # the record is written before any rank reads it
        rec = rd.load()
        rec["_dir"] = str(rd.path)
        log(f"run {rid} completed: test mse {rec['test']['mse']:.2f}  ssim {rec['test']['ssim']:.4f}")
        return rec


def train_one_epoch(loop: Loop, epoch: int, validate: Callable[[int], Any]) -> dict[str, Any]:
    """Train ``loop.model`` for epoch ``epoch``; return the epoch's mean loss parts, lr and steps.
    ``validate(step)`` is called every ``cfg.val_every`` steps (the time-to-accuracy curve)."""
    cfg, model, optimizer, ranks = loop.cfg, loop.step_model, loop.optimizer, loop.ranks
    torch.manual_seed(epoch_seed(cfg, epoch))     # dropout/sampling randomness, resumable
    model.train()
    total_steps = max(1, cfg.epochs * cfg.steps_per_epoch)
    sums: dict[str, torch.Tensor] = {}
    bar = tqdm(total=cfg.steps_per_epoch, desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=not loop.progress,
               leave=False)
    step, t_first = 0, time.perf_counter()
    for step, (x, y) in enumerate(train_batches(cfg, loop.data, epoch, ranks), start=1):
        if step == 2:
            t_first = time.perf_counter()     # after the first step's warm-up
        with autocast(loop.device, loop.amp):
            loss, parts = loss_of(model, x, y, loop.criterion,
                                  progress=(epoch * cfg.steps_per_epoch + step) / total_steps)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        distributed.average_gradients(model, ranks)
        optimizer.step()
        loop.schedule.after_step()
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
        if not loop.estimated and step == ESTIMATE_AFTER:
            loop.estimated = True
            loop.log(estimate_text(cfg, epoch, step, (time.perf_counter() - t_first) / (step - 1)))
        if cfg.val_every and step % cfg.val_every == 0 and step < cfg.steps_per_epoch:
            validate(step)             # leaves the model in eval mode and the RNG untouched
            model.train()
        bar.update(1)
    bar.close()
    loop.schedule.after_epoch()
    return {"lr": optimizer.param_groups[0]["lr"], "steps": step,
            **{k: float(distributed.sum_over_ranks(v, ranks)) / (max(step, 1) * ranks.world)
               for k, v in sums.items()}}


# ---------------------------------------------------------------- the end of a run


def finish(loop: Loop, rd: runs.RunDir, record: dict) -> None:
    """Test the trained model (and on the extra test sets), keep its first predictions in
    ``samples.npz``, count its cost, and mark the record completed (rank 0 writes)."""
    cfg, model, data, device, amp, ranks = loop.cfg, loop.model, loop.data, loop.device, loop.amp, loop.ranks
    progress = loop.progress
    t0 = time.perf_counter()
    scores: dict[str, dict] = {"": {}, **{f"_{n}": {} for n in data.extra_tests}}
    test, preds = evaluate(model, data.test, cfg, device, amp, keep=NUM_SAMPLES, progress=progress,
                           ranks=ranks, per_sequence=scores[""])
    record["test"] = test
    extra = {n: evaluate(model, seqs, cfg, device, amp, keep=NUM_SAMPLES, progress=progress,
                         desc=f"test ({n} digits)", ranks=ranks, per_sequence=scores[f"_{n}"])
             for n, seqs in data.extra_tests.items()}
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
    runs.atomic_write_bytes(rd.samples_path, _npz_bytes(samples))
    per_sequence = {f"{m}{suffix}": v for suffix, d in scores.items() for m, v in d.items()}
    if per_sequence:                          # a single process: every test sequence's values
        runs.atomic_write_bytes(rd.per_sequence_path, _npz_bytes(per_sequence))
    record["efficiency"] = describe_model(unwrap(model).cpu().eval(), (1, *cfg.clip_shape))
    prov = record["provenance"]
    prov["end_time"] = runs.now()
    prov["eval_seconds"] = round(time.perf_counter() - t0, 3)
    prov["wall_time_s"] = round(prov.get("train_seconds", 0.0) + prov["eval_seconds"], 3)
    record["status"] = "completed"
    rd.save(record)


def _npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


def load_run_model(run_dir: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, TrainConfig]:
    """Rebuild a recorded run's model and load its checkpoint (for the explorer and reports), in
    the memory format it was trained and tested in (so its predictions are the recorded ones)."""
    rd = runs.RunDir(Path(run_dir))
    rec = rd.load()
    cfg = TrainConfig.from_dict(rec["config"])
    model = build_run_model(cfg)
    if rd.checkpoint_path.exists():
        load_checkpoint(rd.checkpoint_path, cfg, model)
    elif any(True for _ in model.parameters()):
        raise FileNotFoundError(
            f"run {rd.id} has no checkpoint ({rd.checkpoint_path}); re-run it with "
            f"`python -m vpstudy train` and the same parameters to recreate it"
        )
    model = model.to(device)
    return model.to(memory_format=memory_format_for(model)).eval(), cfg


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
