"""Tests for the SimVP family, the baselines and the model registry."""

import math

import pytest
import torch

from vpstudy import models
from vpstudy.models import LastFrame, SimVP, StarReLU, build_model, list_models, model_info
from vpstudy.models.layers import DropPath, drop_path_rates, make_activation

# Exact counts at in_shape (10, 1, 64, 64) (REFERENCE section 1).
EXPECTED_PARAMS = {
    "incepu": 7_409_665,
    "gsta": 6_456_065,
    "poolformer": 5_172_993,
    "gsta-l": 46_769_665,
    "last-frame": 0,
}
SIMVP_PRESETS = ["incepu", "gsta", "poolformer", "gsta-l"]
SMALL = dict(hid_S=8, hid_T=16, N_T=2)  # a tiny SimVP for fast forward tests


def n_params(model):
    return sum(p.numel() for p in model.parameters())


@pytest.fixture(scope="module")
def built():
    """Each preset built once (gelu), shared by the tests of this module."""
    torch.manual_seed(0)
    return {name: build_model(name) for name in SIMVP_NAMES}


SIMVP_NAMES = ("incepu", "gsta", "poolformer", "gsta-l", "last-frame")


def test_registry_names():
    assert list_models()[:5] == list(SIMVP_NAMES)
    assert list_models("simvp") == ["incepu", "gsta", "poolformer", "gsta-l"]
    assert set(list_models("recurrent")) == {"predrnn", "predrnnpp"}


@pytest.mark.parametrize("name", list(EXPECTED_PARAMS))
def test_exact_parameter_counts(built, name):
    assert n_params(built[name]) == EXPECTED_PARAMS[name]
    assert model_info(name)["reference_params"] == EXPECTED_PARAMS[name]


@pytest.mark.parametrize("name", list(EXPECTED_PARAMS))
def test_built_models_carry_name_and_out_frames(built, name):
    assert built[name].name == name
    assert built[name].out_frames == 10


@pytest.mark.parametrize("name,n_blocks", [("gsta", 4), ("poolformer", 4), ("gsta-l", 8)])
def test_starrelu_adds_two_params_per_metaformer_block(built, name, n_blocks):
    # One switchable activation per MetaFormer block (in its MLP; gSTA's attention keeps
    # GELU), each StarReLU has 2 scalars: +2 * N_T parameters.
    model = build_model(name, activation="starrelu")
    starrelus = [m for m in model.modules() if isinstance(m, StarReLU)]
    assert len(starrelus) == n_blocks
    assert n_params(model) == EXPECTED_PARAMS[name] + 2 * n_blocks
    gelus_in_mlps = [m for blk in model.translator.blocks for m in blk.mlp.modules()
                     if isinstance(m, torch.nn.GELU)]
    assert gelus_in_mlps == []
    if name.startswith("gsta"):  # the attention's own activation stays GELU
        assert all(isinstance(blk.mixer.act, torch.nn.GELU) for blk in model.translator.blocks)


def test_activation_configurability_in_info():
    assert [n for n in list_models() if model_info(n)["activation_configurable"]] == ["gsta", "poolformer", "gsta-l"]
    info = model_info("gsta-l")
    assert info["family"] == "simvp"
    assert info["config"]["hid_S"] == 64 and info["config"]["hid_T"] == 512 and info["config"]["N_T"] == 8
    assert model_info("last-frame")["family"] == "baseline"


def test_model_info_is_a_deep_copy():
    info = model_info("sepcrev")
    info["dataset_layouts"]["kth"]["ae_blocks"] = -1
    info["dataset_layouts"].clear()
    assert model_info("sepcrev")["dataset_layouts"]["kth"]["ae_blocks"] == 14
    assert model_info("sepcrev")["dataset_layouts"].keys() == {"kth", "bair"}


@pytest.mark.parametrize("name", ["incepu", "gsta", "poolformer", "last-frame"])
def test_forward_shape_batch2(built, name):
    model = built[name].eval()
    x = torch.rand(2, 10, 1, 64, 64)
    with torch.no_grad():
        y = model(x)
    assert y.shape == (2, 10, 1, 64, 64)
    assert y.dtype == torch.float32
    assert torch.isfinite(y).all()


@pytest.mark.parametrize("translator", ["incepu", "gsta", "poolformer"])
def test_small_simvp_other_shapes_and_backward(translator):
    # T=4, C=3, 32x48 input; training mode; gradients reach the first encoder conv.
    model = SimVP((4, 3, 32, 48), translator=translator, **SMALL)
    x = torch.rand(2, 4, 3, 32, 48)
    y = model(x)
    assert y.shape == (2, 4, 3, 32, 48)
    y.square().mean().backward()
    grad = model.encoder.layers[0].conv.weight.grad
    assert grad is not None and grad.abs().sum() > 0


@pytest.mark.parametrize("translator", ["incepu", "gsta", "poolformer"])
def test_samples_are_independent_and_frames_mix(translator):
    # Folding frames into batch/channels must not leak between samples (eval mode), and
    # the translator must let early input frames influence late output frames.
    torch.manual_seed(0)
    model = SimVP((4, 1, 16, 16), translator=translator, **SMALL).eval()
    x = torch.rand(2, 4, 1, 16, 16)
    x2 = x.clone()
    x2[1] = torch.rand(4, 1, 16, 16)  # change sample 1 only
    x3 = x.clone()
    x3[0, 0] = torch.rand(1, 16, 16)  # change frame 0 of sample 0 only
    with torch.no_grad():
        y, y2, y3 = model(x), model(x2), model(x3)
    torch.testing.assert_close(y[0], y2[0])
    assert not torch.allclose(y[1], y2[1])
    assert (y3[0, -1] - y[0, -1]).abs().max() > 0


def test_last_frame_repeats_last_observed_frame():
    x = torch.rand(2, 10, 1, 8, 8)
    model = build_model("last-frame", in_shape=(10, 1, 8, 8), out_frames=5)
    y = model(x)
    assert y.shape == (2, 5, 1, 8, 8) and y.is_contiguous()
    for t in range(5):
        assert torch.equal(y[:, t], x[:, -1])
    assert list(model.parameters()) == [] and model.out_frames == 5
    assert torch.equal(model(x.flip(1))[:, 0], x[:, 0])      # the LAST observed frame, not any


@pytest.mark.parametrize("name", ["incepu", "gsta", "poolformer", "gsta-l"])
def test_channels_last_and_bf16_autocast_smoke(name):
    # Same module structure as the preset, smaller widths (the preset itself is slow in
    # bf16 on a CPU without native bf16 convs).
    torch.manual_seed(0)
    activation = "starrelu" if model_info(name)["activation_configurable"] else "gelu"
    model = build_model(name, activation=activation, **SMALL).eval().to(memory_format=torch.channels_last)
    x = torch.rand(1, 10, 1, 64, 64)
    with torch.no_grad():
        ref = model(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = model(x)
    assert y.shape == ref.shape == (1, 10, 1, 64, 64)
    assert torch.isfinite(y.float()).all()
    assert (y.float() - ref).abs().max() < 0.05 * ref.abs().max() + 1e-3  # bf16 close to fp32


def test_invalid_arguments_raise_value_error():
    with pytest.raises(ValueError, match="valid names: incepu, gsta"):
        build_model("simvp-xl")
    with pytest.raises(ValueError, match="unknown activation 'relu'"):
        build_model("gsta", activation="relu")
    with pytest.raises(ValueError, match="no configurable activation"):
        build_model("incepu", activation="starrelu")
    with pytest.raises(ValueError, match="no configurable activation"):
        build_model("last-frame", activation="starrelu")
    with pytest.raises(ValueError, match="out_frames"):
        build_model("gsta", out_frames=5, **SMALL)
    with pytest.raises(ValueError, match="unknown override"):
        build_model("gsta", hidden=3)
    with pytest.raises(ValueError, match="unknown override"):
        build_model("incepu", mlp_ratio=4)
    with pytest.raises(ValueError, match="divisible"):
        build_model("gsta", in_shape=(10, 1, 30, 30), **SMALL)
    with pytest.raises(ValueError, match="N_S"):
        build_model("gsta", N_S=3)
    with pytest.raises(ValueError, match="unknown model"):
        model_info("nope")
    model = build_model("gsta", in_shape=(10, 1, 32, 32), **SMALL)
    with pytest.raises(ValueError, match="expected input"):
        model(torch.rand(1, 10, 1, 64, 64))


def test_overrides_change_the_preset():
    model = build_model("gsta", in_shape=(6, 2, 16, 16), out_frames=6, hid_S=8, hid_T=24, N_T=3)
    assert len(model.translator.blocks) == 3
    assert model.encoder.layers[0].conv.out_channels == 8
    assert model(torch.rand(1, 6, 2, 16, 16)).shape == (1, 6, 2, 16, 16)


def test_register_model_extension_point(monkeypatch):
    monkeypatch.setattr(models, "_REGISTRY", dict(models._REGISTRY))
    monkeypatch.setattr(models, "_INFO", dict(models._INFO))

    def builder(*, activation, in_shape, out_frames, **overrides):
        return LastFrame(out_frames)

    info = {"family": "test", "description": "d", "reference_params": None,
            "activation_configurable": False}
    models.register_model("toy", builder, info)
    assert models.list_models()[-1] == "toy" and models.list_models("test") == ["toy"]
    model = models.build_model("toy", out_frames=3)
    assert model.name == "toy" and model.out_frames == 3
    assert models.model_info("toy")["family"] == "test"
    with pytest.raises(ValueError, match="already registered"):
        models.register_model("toy", builder, info)
    with pytest.raises(ValueError, match="missing keys"):
        models.register_model("toy2", builder, {"family": "x"})


def test_starrelu_values_and_unit_variance():
    act = make_activation("starrelu")
    assert isinstance(act, StarReLU) and isinstance(make_activation("gelu"), torch.nn.GELU)
    x = torch.tensor([-1.0, 0.0, 2.0])
    torch.testing.assert_close(act(x), torch.tensor([-0.4472, -0.4472, 0.8944 * 4 - 0.4472]))
    torch.manual_seed(0)
    y = act(torch.randn(400_000))
    assert abs(y.mean().item()) < 0.01 and abs(y.var().item() - 1.0) < 0.02
    with pytest.raises(ValueError, match="choose one of"):
        make_activation("swish")


def test_drop_path_schedules():
    assert drop_path_rates(0.0, 4) == [0.0, 0.0, 0.0, 0.0]
    assert drop_path_rates(0.3, 4) == pytest.approx([0.0, 0.1, 0.2, 0.3])
    assert drop_path_rates(0.0, 4, "openstl") == pytest.approx([0.01, 0.02 / 3, 0.01 / 3, 0.0])
    with pytest.raises(ValueError, match="schedule"):
        drop_path_rates(0.1, 4, "cosine")
    # Default: no DropPath module anywhere; with drop_path the last block gets the full rate.
    assert not any(isinstance(m, DropPath) for m in build_model("gsta", **SMALL).modules())
    model = build_model("poolformer", drop_path=0.2, **SMALL)
    rates = [blk.drop_path.p if isinstance(blk.drop_path, DropPath) else 0.0 for blk in model.translator.blocks]
    assert rates == pytest.approx([0.0, 0.2])


def test_drop_path_drops_whole_samples_in_training_only():
    torch.manual_seed(0)
    dp = DropPath(0.5)
    x = torch.ones(1000, 3, 2, 2)
    y = dp(x)
    per_sample = y.flatten(1)
    assert set(per_sample.unique().tolist()) == {0.0, 2.0}
    assert (per_sample.min(1).values == per_sample.max(1).values).all()
    assert math.isclose(per_sample[:, 0].mean().item(), 1.0, abs_tol=0.15)
    assert torch.equal(dp.eval()(x), x)


def test_default_input_shape(monkeypatch):
    assert models.default_input_shape("gsta") == (10, 1, 64, 64)
    assert models.default_input_shape("last-frame") == (10, 1, 64, 64)
    monkeypatch.setattr(models, "_REGISTRY", dict(models._REGISTRY))
    monkeypatch.setattr(models, "_INFO", dict(models._INFO))
    models.register_model("kth-toy", lambda **kw: LastFrame(kw["out_frames"]),
                          {"family": "test", "description": "d", "reference_params": 0,
                           "activation_configurable": False, "in_shape": (10, 1, 128, 128)})
    assert models.default_input_shape("kth-toy") == (10, 1, 128, 128)
    with pytest.raises(ValueError, match="unknown model"):
        models.default_input_shape("nope")


@pytest.mark.parametrize("size", [4, 8, 16])
@pytest.mark.parametrize("kernel,dilation", [(7, 3), (5, 1), (3, 1)])
def test_depthwise_conv_equals_the_full_convolution(size, kernel, dilation):
    """gSTA's depthwise convs skip the taps that only see padding (7x7, dilation 3 on maps
    under 10 px) and run in fp32 on the CPU: same output and gradients as nn.Conv2d."""
    from torch.nn import functional as F

    from vpstudy.models.layers import DepthwiseConv2d

    torch.manual_seed(0)
    conv = DepthwiseConv2d(6, kernel, dilation)
    assert sum(p.numel() for p in conv.parameters()) == 6 * kernel * kernel + 6
    x = torch.randn(2, 6, size, size, requires_grad=True)
    ref = F.conv2d(x, conv.weight, conv.bias, 1, conv.padding, conv.dilation, 6)
    out = conv(x)
    assert out.shape == ref.shape == x.shape
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    for a, b in zip(torch.autograd.grad(out.square().sum(), (x, conv.weight, conv.bias)),
                    torch.autograd.grad(ref.square().sum(), (x, conv.weight, conv.bias))):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    with torch.autocast("cpu", dtype=torch.bfloat16):          # fp32 inside, whatever the input
        assert conv(x.bfloat16()).dtype == torch.float32
