"""Tests for the PredRNN and PredRNN++ baselines (vpstudy.models.predrnn / predrnnpp)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from vpstudy.models import build_model
from vpstudy.models.predrnn import (
    PredRNN,
    SpatioTemporalLSTMCell,
    scheduled_sampling_prob,
)
from vpstudy.models.predrnnpp import (
    CausalLSTMCell,
    GradientHighwayUnit,
    PredRNNpp,
)

# The registry's input layouts of the studies' three datasets.
LAYOUTS = {
    "mmnist": {},
    "kth": dict(in_shape=(10, 1, 128, 128), out_frames=20, dataset="kth"),
    "bair": dict(in_shape=(10, 3, 64, 64), dataset="bair"),
}


def build(name, dataset="mmnist", **kw):
    return build_model(name, **{**LAYOUTS[dataset], **kw})


pytestmark = pytest.mark.usefixtures("one_thread")


SMALL = dict(in_shape=(3, 1, 16, 16), out_frames=4)  # 4x4x16 patched frames


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def mse_criterion(pred, target):
    loss = F.mse_loss(pred, target)
    return loss, {"mse": loss.detach()}


class Recorder:
    """A criterion that remembers the last predictions it saw."""

    def __call__(self, pred, target):
        self.pred, self.target = pred.detach(), target
        return mse_criterion(pred, target)


def small_predrnn(**kw):
    return PredRNN(**{**SMALL, "hidden": (8, 8, 8), **kw})


def small_predrnnpp(**kw):
    return PredRNNpp(**{**SMALL, "hidden": (8, 6, 6), **kw})


SMALL_BUILDERS = [small_predrnn, small_predrnnpp]


# -- parameter counts -------------------------------------------------------------------------

def test_predrnn_param_counts():
    assert n_params(build("predrnn")) == 23_838_720  # REFERENCE §2
    assert n_params(build("predrnn", "kth")) == 23_838_720    # same network, 1 channel, patch 4
    assert n_params(build("predrnn", "bair")) == 24_559_616   # 48 patched channels in and out


def test_predrnnpp_param_counts_and_conventions():
    assert n_params(build("predrnnpp")) == 15_367_168
    assert n_params(build("predrnnpp", "kth")) == 15_367_168
    assert n_params(build("predrnnpp", "bair")) == 16_086_016
    # the original TF code: biased convs + tensor layer norm -> REFERENCE's "≈15.39M"
    assert n_params(build("predrnnpp", conv_bias=True)) == 15_375_056
    assert n_params(build("predrnnpp", conv_bias=True, layer_norm=True)) == 15_390_160


def test_predrnnpp_memory_channels_follow_the_zigzag():
    model = build("predrnnpp")
    conv_m_in = [cell.conv_m.in_channels for cell in model.cells]
    assert conv_m_in == [64, 128, 64, 64]  # layer 0 gets the top layer's (64-channel) memory
    assert model.cells[1].conv_x.in_channels == 128  # layer 1 reads the GHU state z


# -- shapes and the contract ------------------------------------------------------------------

@pytest.mark.parametrize("make_small", SMALL_BUILDERS)
def test_forward_shape_and_attributes(make_small):
    model = make_small().eval()
    x = torch.rand(2, 3, 1, 16, 16)
    with torch.no_grad():
        y = model(x)
    assert y.shape == (2, 4, 1, 16, 16)
    assert model.in_frames == 3 and model.out_frames == 4
    assert model.name in ("predrnn", "predrnnpp")


@pytest.mark.parametrize("name", ["predrnn", "predrnnpp"])
def test_kth_config_predicts_20_frames(name):
    model = build(name, "kth", in_shape=(10, 1, 16, 16), hidden=(4, 4)).eval()
    assert model.out_frames == 20 and model.patch == 4
    with torch.no_grad():
        y = model(torch.rand(2, 10, 1, 16, 16))
    assert y.shape == (2, 20, 1, 16, 16)


@pytest.mark.parametrize("name", ["predrnn", "predrnnpp"])
def test_bair_config_rgb(name):
    model = build(name, "bair", in_shape=(2, 3, 8, 8), out_frames=3, hidden=(4, 4)).eval()
    assert model.frame_channels == 48
    with torch.no_grad():
        assert model(torch.rand(1, 2, 3, 8, 8)).shape == (1, 3, 3, 8, 8)


@pytest.mark.parametrize("make_small", SMALL_BUILDERS)
def test_forward_is_deterministic_in_eval(make_small):
    torch.manual_seed(0)
    model = make_small().eval()
    x = torch.rand(2, 3, 1, 16, 16)
    with torch.no_grad():
        assert torch.equal(model(x), model(x))


def test_patchify_is_space_to_depth_and_invertible():
    model = small_predrnn()
    video = torch.arange(2 * 1 * 16 * 16, dtype=torch.float32).reshape(1, 2, 1, 16, 16)
    patched = model.patchify(video)
    assert patched.shape == (1, 2, 16, 4, 4)
    # channel dy*4+dx of patch (0, 1) holds pixel (dy, 4 + dx) of frame 0
    assert patched[0, 0, 1 * 4 + 2, 0, 1] == video[0, 0, 0, 1, 4 + 2]
    assert torch.equal(model.unpatchify(patched), video)


# -- training_loss and scheduled sampling -----------------------------------------------------

def test_scheduled_sampling_prob_mapping():
    assert scheduled_sampling_prob(0.0) == 1.0
    # PredRNN: eta = 1 - 2e-5 * iteration, 0 from iteration 50,000 of 80,000
    assert scheduled_sampling_prob(20_000 / 80_000) == pytest.approx(1 - 2e-5 * 20_000)
    assert scheduled_sampling_prob(0.3125) == pytest.approx(0.5)
    assert scheduled_sampling_prob(0.625) == 0.0
    assert scheduled_sampling_prob(0.9) == 0.0 and scheduled_sampling_prob(1.0) == 0.0
    assert scheduled_sampling_prob(0.25, stop_progress=0.5) == pytest.approx(0.5)
    for bad in (-0.1, 1.5, math.nan, "0.5"):
        with pytest.raises(ValueError):
            scheduled_sampling_prob(bad)
    with pytest.raises(ValueError):
        scheduled_sampling_prob(0.5, stop_progress=0.0)


@pytest.mark.parametrize("make_small", SMALL_BUILDERS)
def test_training_loss_finite_and_grads_reach_every_parameter(make_small):
    torch.manual_seed(0)
    model = make_small().train()
    inputs, targets = torch.rand(2, 3, 1, 16, 16), torch.rand(2, 4, 1, 16, 16)
    loss, parts = model.training_loss(inputs, targets, mse_criterion, progress=0.3)
    assert loss.ndim == 0 and torch.isfinite(loss)
    assert parts["mse"] == pytest.approx(loss.item())
    assert parts["sampling_prob"].item() == pytest.approx(1 - 0.3 / 0.625)
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("make_small", SMALL_BUILDERS)
def test_training_predicts_frames_1_to_T_minus_1(make_small):
    model = make_small()
    record = Recorder()
    inputs, targets = torch.rand(2, 3, 1, 16, 16), torch.rand(2, 4, 1, 16, 16)
    model.training_loss(inputs, targets, record, progress=0.0)
    assert record.pred.shape == (2, 6, 1, 16, 16)
    assert torch.equal(record.target, torch.cat([inputs, targets], 1)[:, 1:])


@pytest.mark.parametrize("make_small", SMALL_BUILDERS)
def test_late_training_rolls_out_like_inference(make_small):
    """p = 0: every future input is the model's own prediction, exactly as in forward()."""
    torch.manual_seed(0)
    model = make_small().eval()
    record = Recorder()
    inputs, targets = torch.rand(2, 3, 1, 16, 16), torch.rand(2, 4, 1, 16, 16)
    with torch.no_grad():
        model.training_loss(inputs, targets, record, progress=0.8)
        rollout = model(inputs)
    torch.testing.assert_close(record.pred[:, 2:], rollout, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("make_small", SMALL_BUILDERS)
def test_early_training_feeds_true_future_frames(make_small):
    """p = 1 (teacher forcing): the prediction of frame T_in+1 depends on the true frame T_in;
    at p = 0 it does not."""
    torch.manual_seed(0)
    model = make_small().eval()
    record = Recorder()
    inputs = torch.rand(2, 3, 1, 16, 16)
    targets_a, targets_b = torch.rand(2, 4, 1, 16, 16), torch.rand(2, 4, 1, 16, 16)
    with torch.no_grad():
        preds = {}
        for progress in (0.0, 1.0):
            for key, targets in (("a", targets_a), ("b", targets_b)):
                model.training_loss(inputs, targets, record, progress=progress)
                preds[progress, key] = record.pred[:, 3]  # prediction of frame 4 (index)
    assert not torch.allclose(preds[0.0, "a"], preds[0.0, "b"])
    assert torch.equal(preds[1.0, "a"], preds[1.0, "b"])


def test_sampling_mask_uses_generator_and_is_per_sample():
    model = small_predrnn().eval()
    record = Recorder()
    inputs, targets = torch.rand(8, 3, 1, 16, 16), torch.rand(8, 4, 1, 16, 16)
    outs = []
    with torch.no_grad():
        for _ in range(2):
            gen = torch.Generator().manual_seed(123)
            model.training_loss(inputs, targets, record, progress=0.3125, generator=gen)
            outs.append(record.pred)
    assert torch.equal(outs[0], outs[1])
    # p = 0.5: the same generator draws decide per sample whether frame 3 (true) was fed
    use_true = torch.rand(8, 3, generator=torch.Generator().manual_seed(123)) < 0.5
    with torch.no_grad():
        model.training_loss(inputs, targets, record, progress=0.0)  # all true
        teacher = record.pred[:, 3]
    fed_true = (outs[0][:, 3] - teacher).abs().flatten(1).amax(1) < 1e-6
    assert torch.equal(fed_true, use_true[:, 0])


# -- cells: the fused gate convs compute the paper's equations --------------------------------

def _conv(x, weight):
    return F.conv2d(x, weight, padding=weight.shape[-1] // 2)


def test_st_lstm_cell_matches_gate_by_gate_equations():
    torch.manual_seed(0)
    n, cin = 4, 3
    cell = SpatioTemporalLSTMCell(cin, n, filter_size=3)
    x, h, c, m = (torch.randn(2, ch, 5, 5) for ch in (cin, n, n, n))
    wx = dict(zip(["i", "f", "g", "o", "i2", "f2", "g2"], cell.conv_x.weight.split(n)))
    wh = dict(zip(["i", "f", "g", "o"], cell.conv_h.weight.split(n)))
    wm = dict(zip(["i2", "f2", "g2"], cell.conv_m.weight.split(n)))
    i = torch.sigmoid(_conv(x, wx["i"]) + _conv(h, wh["i"]))
    f = torch.sigmoid(_conv(x, wx["f"]) + _conv(h, wh["f"]) + 1.0)
    g = torch.tanh(_conv(x, wx["g"]) + _conv(h, wh["g"]))
    c_ref = f * c + i * g
    i2 = torch.sigmoid(_conv(x, wx["i2"]) + _conv(m, wm["i2"]))
    f2 = torch.sigmoid(_conv(x, wx["f2"]) + _conv(m, wm["f2"]) + 1.0)
    g2 = torch.tanh(_conv(x, wx["g2"]) + _conv(m, wm["g2"]))
    m_ref = f2 * m + i2 * g2
    mem = torch.cat([c_ref, m_ref], 1)
    o = torch.sigmoid(_conv(x, wx["o"]) + _conv(h, wh["o"]) + _conv(mem, cell.conv_o.weight))
    h_ref = o * torch.tanh(_conv(mem, cell.conv_fuse.weight))
    h_new, c_new, m_new = cell(x, h, c, m)
    for got, want in ((h_new, h_ref), (c_new, c_ref), (m_new, m_ref)):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_causal_lstm_cell_matches_gate_by_gate_equations():
    torch.manual_seed(0)
    n, cin, cm = 4, 3, 5
    cell = CausalLSTMCell(cin, n, cm, filter_size=3)
    x, h, c, m = (torch.randn(2, ch, 5, 5) for ch in (cin, n, n, cm))
    wx = dict(zip(["i", "f", "g", "o", "i2", "f2", "g2"], cell.conv_x.weight.split(n)))
    wh = dict(zip(["i", "f", "g", "o"], cell.conv_h.weight.split(n)))
    wc = dict(zip(["i", "f", "g"], cell.conv_c.weight.split(n)))
    wm = dict(zip(["i2", "f2", "mm"], cell.conv_m.weight.split(n)))
    wc2m = dict(zip(["i2", "f2", "g2", "o"], cell.conv_c2m.weight.split(n)))
    i = torch.sigmoid(_conv(x, wx["i"]) + _conv(h, wh["i"]) + _conv(c, wc["i"]))
    f = torch.sigmoid(_conv(x, wx["f"]) + _conv(h, wh["f"]) + _conv(c, wc["f"]) + 1.0)
    g = torch.tanh(_conv(x, wx["g"]) + _conv(h, wh["g"]) + _conv(c, wc["g"]))
    c_ref = f * c + i * g
    i2 = torch.sigmoid(_conv(x, wx["i2"]) + _conv(m, wm["i2"]) + _conv(c_ref, wc2m["i2"]))
    f2 = torch.sigmoid(_conv(x, wx["f2"]) + _conv(m, wm["f2"]) + _conv(c_ref, wc2m["f2"]) + 1.0)
    g2 = torch.tanh(_conv(x, wx["g2"]) + _conv(c_ref, wc2m["g2"]))
    m_ref = f2 * torch.tanh(_conv(m, wm["mm"])) + i2 * g2
    o = torch.tanh(_conv(x, wx["o"]) + _conv(h, wh["o"]) + _conv(c_ref, wc2m["o"])
                   + _conv(m_ref, cell.conv_om.weight))
    h_ref = o * torch.tanh(_conv(torch.cat([c_ref, m_ref], 1), cell.conv_fuse.weight))
    h_new, c_new, m_new = cell(x, h, c, m)
    assert m_new.shape == (2, n, 5, 5)
    for got, want in ((h_new, h_ref), (c_new, c_ref), (m_new, m_ref)):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_gradient_highway_unit_values():
    ghu = GradientHighwayUnit(3, 4, filter_size=3)
    assert ghu.conv_x.weight.abs().max() <= 1e-3  # U(-1e-3, 1e-3) init
    for conv in (ghu.conv_x, ghu.conv_z):
        torch.nn.init.zeros_(conv.weight)
    z = torch.randn(2, 4, 5, 5)
    # p = u = 0: z' = sigmoid(0) * tanh(0) + (1 - sigmoid(0)) * z = z / 2
    torch.testing.assert_close(ghu(torch.randn(2, 3, 5, 5), z), 0.5 * z)


# -- argument errors ------------------------------------------------------------------------

def test_invalid_arguments_raise_value_error():
    with pytest.raises(ValueError, match="divisible"):
        PredRNN(in_shape=(10, 1, 30, 30), hidden=(4,))
    with pytest.raises(ValueError, match="same width"):
        PredRNN(hidden=(8, 4))
    with pytest.raises(ValueError, match="at least 2"):
        PredRNNpp(hidden=(8,))
    with pytest.raises(ValueError, match="odd"):
        PredRNN(hidden=(4,), filter_size=4)
    with pytest.raises(ValueError, match="out_frames"):
        PredRNN(hidden=(4,), out_frames=0)
    model = small_predrnn()
    with pytest.raises(ValueError, match="C = 1"):
        model(torch.rand(1, 3, 3, 16, 16))
    with pytest.raises(ValueError, match="progress"):
        model.training_loss(torch.rand(1, 3, 1, 16, 16), torch.rand(1, 2, 1, 16, 16),
                            mse_criterion, progress=2.0)
    with pytest.raises(ValueError, match="targets"):
        model.training_loss(torch.rand(1, 3, 1, 16, 16), torch.rand(2, 2, 1, 16, 16),
                            mse_criterion, progress=0.5)


def test_reverse_input_averages_both_directions():
    import torch

    from vpstudy.losses import VideoPredictionLoss
    from vpstudy.models import build_model

    torch.manual_seed(0)
    m = build_model("predrnn", in_shape=(2, 1, 16, 16), out_frames=2, hidden=(8, 8), filter_size=3)
    assert m.reverse_input is True and build_model("predrnnpp").reverse_input is False
    x, y = torch.rand(2, 2, 1, 16, 16), torch.rand(2, 2, 1, 16, 16)
    crit = VideoPredictionLoss(0, 0, 0.1)
    both, _ = m.training_loss(x, y, crit, progress=0.0)
    video = torch.cat([x, y], 1).flip(1)
    m.reverse_input = False
    fwd, _ = m.training_loss(x, y, crit, progress=0.0)
    rev, _ = m.training_loss(video[:, :2], video[:, 2:], crit, progress=0.0)
    assert torch.allclose(both, (fwd + rev) / 2)
