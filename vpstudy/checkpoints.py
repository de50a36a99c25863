"""Checkpoints: written atomically with a SHA-256 digest of their contents; loaded safely
(``weights_only``) and checked against the config and the model before they are used.

A checkpoint holds the run's config identity, the model's registry name, the epoch, the
model, optimizer and scheduler states and the training history. Loading one that belongs to
another config or model, or whose contents no longer match its digest, raises
:class:`CheckpointMismatch` (:class:`CorruptCheckpoint`) saying what differs and what to do.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from vpstudy import runs
from vpstudy.config import TrainConfig

CHECKPOINT_FORMAT = "vpstudy-checkpoint-1"


class CheckpointMismatch(ValueError):
    """A checkpoint does not belong to this config or model."""


class CorruptCheckpoint(CheckpointMismatch):
    """A checkpoint's contents do not match the digest stored in it."""


def unwrap(model: nn.Module) -> nn.Module:
    """The model itself under a ``torch.compile`` wrapper."""
    return getattr(model, "_orig_mod", model)


def save_checkpoint(path: Path, cfg: TrainConfig, epoch: int, model: nn.Module,
                    optimizer: torch.optim.Optimizer | None, scheduler: Any,
                    history: list[dict]) -> None:
    state = {
        "format": CHECKPOINT_FORMAT,
        "identity": runs.json_dumps(cfg.identity()),
        "model_name": cfg.model,
        "epoch": epoch,
        "model": {k: v.detach().cpu() for k, v in unwrap(model).state_dict().items()},
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
        load_model_state(model, state["model"], f"checkpoint {path}", state.get("model_name"))
    return state


def load_model_state(model: nn.Module, tensors: dict[str, torch.Tensor], source: str,
                     model_name: str | None) -> None:
    """Load ``tensors`` (a state dict read from ``source``, e.g. "checkpoint PATH") into ``model``
    after checking that every tensor is there with its shape; cast to the model's dtypes."""
    own = unwrap(model).state_dict()
    missing = sorted(set(own) - set(tensors))
    unexpected = sorted(set(tensors) - set(own))
    shapes = [k for k in set(own) & set(tensors) if own[k].shape != tensors[k].shape]
    if missing or unexpected or shapes:
        raise CheckpointMismatch(
            f"{source} (model {model_name!r}) does not fit model "
            f"{getattr(unwrap(model), 'name', type(model).__name__)!r}: "
            f"{len(missing)} missing, {len(unexpected)} unexpected, {len(shapes)} mis-shaped "
            f"tensors (e.g. {(missing + unexpected + shapes)[:3]}). Load it into the model it was "
            f"trained with."
        )
    unwrap(model).load_state_dict(tensors)


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
