"""Model registry: build any study model by name.

    from vpstudy.models import build_model, model_info, list_models
    model = build_model("gsta", activation="starrelu")      # (B,10,1,64,64) -> (B,10,1,64,64)
    model = build_model("sepcrev", in_shape=(10, 1, 128, 128), out_frames=20, dataset="kth")

The registry is the only way models are built: the trainer, the explorer, the benchmark and
the tests all go through `build_model`; `dataset` picks a model's registered per-dataset
layout (info 'dataset_layouts': the CrevNet-style models' deeper KTH/BAIR layout).

Presets (Moving MNIST, in_shape (10, 1, 64, 64), N_S = 4, kernel 3, MLP ratio 8):

    name         translator   hid_S  hid_T  N_T   params (gelu)
    incepu       incepu         32    256    4     7,409,665
    gsta         gsta           32    256    4     6,456,065
    poolformer   poolformer     32    256    4     5,172,993
    gsta-l       gsta           64    512    8    46,769,665
    last-frame   (repeats the last observed frame)        0
    all-black    (predicts empty frames)                  0

`activation` ('gelu' | 'starrelu') is the MetaFormer MLP activation; it is configurable
only for 'gsta', 'poolformer', 'gsta-l' (StarReLU adds 2 parameters per block: +8 for the
N_T=4 presets, +16 for gsta-l). Models without a configurable activation accept only the
default 'gelu' and raise ValueError for anything else.

Extension point: `register_model(name, builder, info)`. A builder is called as
`builder(activation=..., in_shape=..., out_frames=..., **overrides)` and returns a
`VideoPredictor` (vpstudy/models/base.py: the model contract) mapping (B, T_in, C, H, W) ->
(B, out_frames, C, H, W); it may ignore `activation` when its info says
activation_configurable=False (build_model has already checked it). `build_model` sets
`model.name` and `model.out_frames` on the result.
"""

from __future__ import annotations

import copy
from typing import Any, Callable

from torch import nn

from vpstudy.enums import DATASETS

from .base import VideoPredictor, has_own_training_loss
from .baselines import AllBlack, LastFrame
from .layers import ACTIVATIONS, StarReLU, check_activation, make_activation
from .simvp import SimVP

__all__ = [
    "ACTIVATIONS", "build_model", "list_models", "model_info", "register_model", "default_input_shape",
    "VideoPredictor", "has_own_training_loss", "SimVP", "LastFrame", "AllBlack", "StarReLU", "make_activation",
]

Builder = Callable[..., nn.Module]

_REGISTRY: dict[str, Builder] = {}
_INFO: dict[str, dict[str, Any]] = {}

_INFO_KEYS = ("family", "description", "reference_params", "activation_configurable")


def register_model(name: str, builder: Builder, info: dict[str, Any]) -> None:
    """Add a model to the registry (`list_models()` then lists it).

    `info` must hold 'family' (str), 'description' (str), 'reference_params' (int at
    in_shape (10, 1, 64, 64), or None if unknown) and 'activation_configurable' (bool);
    extra keys are kept as given; known ones: 'reference_flops' (forward FLOPs at batch 1),
    'fp32_on' (device types where precision 'auto' trains in fp32: bf16 autocast measured slower),
    'config' (preset hyper-parameters), 'in_shape' (the model's natural (T, C, H, W); read
    by `default_input_shape`, default (10, 1, 64, 64)), 'dataset_layouts' ({dataset:
    overrides} that `build_model(..., dataset=...)` applies).
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"model name must be a non-empty string, got {name!r}")
    if name in _REGISTRY:
        raise ValueError(f"model {name!r} is already registered")
    if not callable(builder):
        raise ValueError(f"builder for {name!r} must be callable, got {type(builder).__name__}")
    missing = [k for k in _INFO_KEYS if k not in info]
    if missing:
        raise ValueError(f"info for {name!r} is missing keys {missing}; required: {_INFO_KEYS}")
    _REGISTRY[name] = builder
    _INFO[name] = {"name": name, **info}


def list_models(family: str | None = None) -> list[str]:
    """Names of the registered models (of one ``family``, e.g. 'simvp'), in registration order."""
    return [n for n in _REGISTRY if family is None or _INFO[n]["family"] == family]


def _check_name(name: str) -> None:
    if name not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; valid names: {', '.join(_REGISTRY)}")


def model_info(name: str) -> dict[str, Any]:
    """What a registered model is: name, family, description, reference_params,
    activation_configurable, and (for presets) reference_flops, config and dataset_layouts.
    A deep copy: changing it leaves the registry as it is."""
    _check_name(name)
    return copy.deepcopy(_INFO[name])


def check_model_activation(name: str, activation: str) -> None:
    """Raise ValueError unless ``name`` is registered and takes ``activation`` (only models
    whose info says activation_configurable take anything but 'gelu')."""
    _check_name(name)
    check_activation(activation)
    if not _INFO[name]["activation_configurable"] and activation != "gelu":
        raise ValueError(f"model {name!r} has no configurable activation (no MetaFormer MLP); use "
                         f"activation='gelu' (the default); configurable models: "
                         f"{', '.join(n for n in _REGISTRY if _INFO[n]['activation_configurable'])}")


def default_input_shape(name: str) -> tuple[int, int, int, int]:
    """The (T_in, C, H, W) a registered model is meant for (info 'in_shape'; Moving MNIST's
    (10, 1, 64, 64) unless the model registered another)."""
    _check_name(name)
    return tuple(_INFO[name].get("in_shape", (10, 1, 64, 64)))


def build_model(name: str, *, activation: str = "gelu",
                in_shape: tuple[int, int, int, int] | None = None,
                out_frames: int = 10, dataset: str = "mmnist", **overrides: Any) -> VideoPredictor:
    """Build a fresh, randomly initialised model by registry name.

    Args:
        name: one of `list_models()`.
        activation: 'gelu' | 'starrelu' (only configurable where model_info says so).
        in_shape: (T_in, C, H, W) of the observed clip; None: the model's own
            (`default_input_shape`: (10, 1, 64, 64) unless it registered another).
        out_frames: frames to predict (SimVP models need out_frames == T_in).
        dataset: 'mmnist' | 'kth' | 'bair': applies the model's registered layout for it, if any.
        overrides: preset hyper-parameters to change, e.g. hid_T=128, N_T=2, drop_path=0.1.

    Returns a `VideoPredictor` with attributes `name` and `out_frames`.
    Raises ValueError for an unknown name, activation, shape or override.
    """
    check_model_activation(name, activation)
    if dataset not in DATASETS:
        raise ValueError(f"dataset={dataset!r} is not allowed; choose one of {list(DATASETS)}")
    in_shape = default_input_shape(name) if in_shape is None else in_shape
    if len(tuple(in_shape)) != 4:
        raise ValueError(f"in_shape must be (T, C, H, W), got {in_shape}")
    if int(out_frames) < 1:
        raise ValueError(f"out_frames must be >= 1, got {out_frames}")
    overrides = {**_INFO[name].get("dataset_layouts", {}).get(dataset, {}), **overrides}
    model = _REGISTRY[name](activation=activation, in_shape=tuple(int(s) for s in in_shape),
                            out_frames=int(out_frames), **overrides)
    if not isinstance(model, VideoPredictor):
        raise TypeError(f"the builder of {name!r} returned a {type(model).__name__}, not a "
                        f"vpstudy.models.VideoPredictor (the model contract)")
    model.name = name
    model.out_frames = int(out_frames)
    return model


# --- built-in models --------------------------------------------------------------------

_SIMVP_COMMON_OVERRIDES = frozenset({"hid_S", "hid_T", "N_S", "N_T", "spatial_kernel"})
_METAFORMER_OVERRIDES = _SIMVP_COMMON_OVERRIDES | {"mlp_ratio", "drop_path", "drop_path_schedule"}


def _simvp_builder(preset: dict[str, Any]) -> Builder:
    """A builder for a SimVP preset (`preset` holds SimVP keyword arguments)."""
    allowed = _METAFORMER_OVERRIDES if preset["translator"] != "incepu" else _SIMVP_COMMON_OVERRIDES

    def build(*, activation: str, in_shape: tuple[int, ...], out_frames: int, **overrides: Any) -> nn.Module:
        unknown = sorted(set(overrides) - allowed)
        if unknown:
            raise ValueError(f"unknown override(s) {unknown} for a {preset['translator']} SimVP; "
                             f"allowed: {sorted(allowed)}")
        if out_frames != in_shape[0]:
            raise ValueError(f"SimVP predicts as many frames as it observes: out_frames ({out_frames}) "
                             f"must equal in_shape[0] ({in_shape[0]})")
        kwargs = {**preset, **overrides}
        if preset["translator"] != "incepu":
            kwargs["activation"] = activation
        return SimVP(in_shape, **kwargs)

    return build


def _baseline_builder(cls: type) -> Builder:
    def build(*, activation: str, in_shape: tuple[int, ...], out_frames: int, **overrides: Any) -> nn.Module:
        if overrides:
            raise ValueError(f"the {cls.__name__} baseline takes no overrides, got {sorted(overrides)}")
        return cls(out_frames)

    return build


_SIMVP_PRESETS: dict[str, tuple[dict[str, Any], str, int, float]] = {
    # name: (SimVP kwargs, description, params at (10,1,64,64) with gelu, forward FLOPs at batch 1)
    "incepu": (dict(translator="incepu", hid_S=32, hid_T=256, N_S=4, N_T=4),
               "SimVP v1: Inception U-Net translator", 7_409_665, 6.06e9),
    "gsta": (dict(translator="gsta", hid_S=32, hid_T=256, N_S=4, N_T=4),
             "SimVPv2: gated spatiotemporal attention (gSTA) MetaFormer translator", 6_456_065, 5.57e9),
    "poolformer": (dict(translator="poolformer", hid_S=32, hid_T=256, N_S=4, N_T=4),
                   "SimVP with a PoolFormer translator (MixMlp with 3x3 depthwise conv)", 5_172_993, 4.87e9),
    "gsta-l": (dict(translator="gsta", hid_S=64, hid_T=512, N_S=4, N_T=8),
               "SimVPv2-L: gSTA with doubled C_s, C_t, N_T", 46_769_665, 32.94e9),
}

for _name, (_preset, _desc, _params, _flops) in _SIMVP_PRESETS.items():
    register_model(_name, _simvp_builder(_preset), {
        "family": "simvp",
        "description": _desc,
        "reference_params": _params,
        "reference_flops": _flops,  # FLOPs (2 per multiply-add), forward, batch 1, approximate
        "activation_configurable": _preset["translator"] != "incepu",
        "config": dict(_preset, spatial_kernel=3,
                       **({"mlp_ratio": 8.0} if _preset["translator"] != "incepu" else {})),
    })

register_model("last-frame", _baseline_builder(LastFrame), {
    "family": "baseline",
    "description": "repeats the last observed frame for every predicted frame (no parameters)",
    "reference_params": 0,
    "reference_flops": 0.0,
    "activation_configurable": False,
    "config": {},
})
register_model("all-black", _baseline_builder(AllBlack), {
    "family": "baseline",
    "description": "predicts empty (all-zero) frames (no parameters)",
    "reference_params": 0,
    "reference_flops": 0.0,
    "activation_configurable": False,
    "config": {},
})


# --- study 2: recurrent baselines (the lightweight-model study) -------------------------

def _recurrent_builder(cls: type, reverse_input: bool = False, **defaults: Any) -> Builder:
    """A builder for a recurrent model class taking (in_shape, out_frames, **kwargs).

    ``defaults`` are the reference recipe's model-level settings (overridable);
    ``reverse_input`` sets the model's reversed-input training (PredRNN's scripts)."""

    def build(*, activation: str, in_shape: tuple[int, ...], out_frames: int, **overrides: Any) -> nn.Module:
        reverse = overrides.pop("reverse_input", reverse_input)
        model = cls(in_shape=in_shape, out_frames=out_frames, **{**defaults, **overrides})
        model.reverse_input = bool(reverse)
        return model

    return build


def _crevnet_builder(conv: str, **layout: Any) -> Builder:
    """A builder for the CrevNet layout with ``conv`` ('separable' | 'standard') 3D convolutions.

    Moving MNIST layout by default (12 autoencoder blocks, 8 predictive layers); KTH and
    BAIR pass ``ae_blocks=14, rpm_layers=16``.
    """

    def build(*, activation: str, in_shape: tuple[int, ...], out_frames: int, **overrides: Any) -> nn.Module:
        from .crevnet import CrevNetPredictor

        kwargs = {"ae_blocks": 12, "rpm_layers": 8, "attention_conv": "pointwise", **layout, **overrides}
        return CrevNetPredictor(conv, in_channels=in_shape[1], in_frames=in_shape[0],
                                out_frames=out_frames, **kwargs)

    return build


# The lightweight-model study's deeper layout for the real-video datasets (REFERENCE §2).
VIDEO_LAYOUT = dict(ae_blocks=14, rpm_layers=16)


def _register_study2() -> None:
    from .predrnn import PredRNN
    from .predrnnpp import PredRNNpp

    register_model("sepcrev", _crevnet_builder("separable"), {
        "family": "crevnet",
        "description": "the lightweight model: CrevNet layout with 3D depthwise-separable convolutions "
                       "and a separable ST-LSTM (1x1x1 attention conv)",
        "reference_params": 368_706,
        "reference_macs_per_step": 0.078e9,
        "activation_configurable": False,
        # bf16 autocast measured slower than fp32 for it (python -m vpstudy bench, batch 16):
        # ~1.6x on the 2-core CPU (32x32), 5.2x on an H200 (64x64: 2.40 s/step against 0.46)
        "fp32_on": ("cpu", "cuda"),
        "config": dict(conv="separable", ae_blocks=12, rpm_layers=8, attention_conv="pointwise"),
        "dataset_layouts": {"kth": VIDEO_LAYOUT, "bair": VIDEO_LAYOUT},
    })
    register_model("crevnet", _crevnet_builder("standard"), {
        "family": "crevnet",
        "description": "CrevNet: two-way invertible autoencoder and reversible ST-LSTM predictor with "
                       "standard 3D convolutions",
        "reference_params": 4_997_444,
        "reference_macs_per_step": 0.99e9,
        "activation_configurable": False,
        "config": dict(conv="standard", ae_blocks=12, rpm_layers=8, attention_conv="pointwise"),
        "dataset_layouts": {"kth": VIDEO_LAYOUT, "bair": VIDEO_LAYOUT},
    })
    # thuml/predrnn-pytorch mnist_script/predrnn_mnist_train.sh: --reverse_input 1, scheduled
    # sampling 1.0 -> 0 by 2e-5 per iteration, stopping at 50,000 of 80,000 iterations (0.625).
    # The BAIR layout (14 autoencoder blocks, 16 predictive layers, RGB 64x64), as the study's
    # Table III rows build it (VIDEO_LAYOUT). The paper's Table III counts
    # (727.26K / 0.6G; CrevNet 9.89M / 7.76G) are those of the 1-channel 128x128 KTH layout;
    # no RGB configuration of this layout gives them (vpstudy/studies/lightweight.toml).
    bair_note = ("the paper's Table III figure ({paper}) is the 1-channel 128x128 KTH layout's "
                 "({kth}); with RGB input the groups are 6 -> 24 -> 96 channels wide, and no RGB "
                 "split/stride/depth of this layout comes within 30% of it")
    register_model("sepcrev-bair", _crevnet_builder("separable", **VIDEO_LAYOUT), {
        "family": "crevnet",
        "description": "the lightweight model's BAIR layout: RGB 64x64, 14 AE blocks (4, 7, 3), 16 RPM layers",
        "reference_params": 4_663_182,
        "paper_params": "727.26K",
        "paper_note": bair_note.format(paper="727.26K params / 0.6G", kth="727,170 / 0.592 GMACs"),
        "activation_configurable": False,
        "fp32_on": ("cpu", "cuda"),
        "in_shape": (10, 3, 64, 64),
        "config": dict(conv="separable", ae_blocks=14, rpm_layers=16, attention_conv="pointwise"),
    })
    register_model("crevnet-bair", _crevnet_builder("standard", **VIDEO_LAYOUT), {
        "family": "crevnet",
        "description": "CrevNet's BAIR layout: RGB 64x64, 14 AE blocks (4, 7, 3), 16 RPM layers",
        "reference_params": 89_021_700,
        "paper_params": "9.89M",
        "paper_note": bair_note.format(paper="9.89M params / 7.76G", kth="9,894,756 / 7.758 GMACs"),
        "activation_configurable": False,
        "in_shape": (10, 3, 64, 64),
        "config": dict(conv="standard", ae_blocks=14, rpm_layers=16, attention_conv="pointwise"),
    })
    register_model("predrnn", _recurrent_builder(PredRNN, reverse_input=True), {
        "family": "recurrent",
        "description": "PredRNN: ST-LSTM, 4 layers x 128 hidden, filter 5, patch 4, no layer norm, "
                       "scheduled sampling to 0 at 62.5% of training, also trained time-reversed",
        "reference_params": 23_838_720,
        "activation_configurable": False,
        "config": dict(hidden=(128, 128, 128, 128), filter_size=5, patch=4,
                       sampling_stop_progress=0.625, reverse_input=True),
    })
    # OpenSTL configs/mmnist/PredRNNpp.py: scheduled sampling stops at 50,000 iterations, no
    # reversed input; over OpenSTL's 200 epochs at batch 16 (125,000 iterations) that is 0.4.
    register_model("predrnnpp", _recurrent_builder(PredRNNpp, sampling_stop_progress=0.4), {
        "family": "recurrent",
        "description": "PredRNN++: causal LSTM (128, 64, 64, 64) with the gradient highway unit, "
                       "filter 5, patch 4, no conv biases or layer norm; scheduled sampling to 0 at "
                       "40% of training (OpenSTL's 50k of 125k iterations)",
        "reference_params": 15_367_168,
        "activation_configurable": False,
        "config": dict(hidden=(128, 64, 64, 64), filter_size=5, patch=4, sampling_stop_progress=0.4,
                       reverse_input=False),
    })


_register_study2()


def _svg_builder(*, activation: str, in_shape: tuple[int, ...], out_frames: int, **overrides: Any) -> nn.Module:
    from .svg import SVGLP

    return SVGLP(in_shape=in_shape, out_frames=out_frames, **overrides)


register_model("svg", _svg_builder, {
    "family": "stochastic",
    "description": "SVG-LP (Denton & Fergus 2018), the published BAIR configuration (edenton/svg README: "
                   "VGG 64x64 encoder/decoder with skips from the last observed frame, g_dim 128, z_dim "
                   "64, rnn 256, LSTM layers predictor 2 / prior 1 / posterior 1, beta 1e-4); "
                   "22,831,747 params at 3x64x64, 0.1% from the lightweight paper's 22.8M (the same "
                   "model; the paper rounds); evaluated best-of-N over samples from the learned prior",
    "reference_params": 22_831_747,
    "paper_params": "22.8M",
    "paper_flops": "123.9G",
    "activation_configurable": False,
    "in_shape": (10, 3, 64, 64),
    "config": dict(g_dim=128, z_dim=64, rnn_size=256, predictor_layers=2, prior_layers=1,
                   posterior_layers=1, beta=1e-4),
})
