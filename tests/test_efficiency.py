"""Tests for vpstudy.efficiency: parameter counts, sizes, FLOPs, latency."""

import pytest
import torch
from torch import nn

from vpstudy.efficiency import count_flops, count_parameters, describe_model, measure_latency, model_size_bytes
from vpstudy.models import build_model, model_info

MNIST_INPUT = (1, 10, 1, 64, 64)

# Exact FLOPs (2 per multiply-add, FlopCounterMode, batch 1) of our presets.
EXPECTED_FLOPS = {
    "incepu": 6_056_574_976,
    "gsta": 5_565_382_656,
    "poolformer": 4_911_792_128,
    "gsta-l": 32_936_951_808,
}
# REFERENCE section 1: gSTA-S 5.57G, IncepU-S 6.06G, PoolFormer-S 4.87G, gSTA-L 32.94G.
REFERENCE_FLOPS = {"incepu": 6.06e9, "gsta": 5.57e9, "poolformer": 4.87e9, "gsta-l": 32.94e9}


def test_count_parameters_includes_frozen_excludes_buffers():
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    model[0].bias.requires_grad_(False)
    assert count_parameters(model) == 3 * 4 + 4 + 4 + 4


def test_model_size_bytes_counts_params_and_buffers_once():
    bn = nn.BatchNorm2d(4)  # weight, bias, running_mean, running_var (fp32) + int64 counter
    assert model_size_bytes(bn) == 4 * 4 * 4 + 8
    shared = nn.Linear(5, 5)
    model = nn.Sequential(shared, shared)  # the same tensors twice in state_dict
    assert model_size_bytes(model) == (25 + 5) * 4
    assert count_parameters(model) == 30
    assert model_size_bytes(nn.Linear(5, 5).to(torch.float64)) == 30 * 8


def test_count_flops_of_a_single_conv():
    conv = nn.Conv2d(1, 2, 3, padding=1)
    # 2 output channels * 8*8 positions * 9 taps = 1152 multiply-adds (bias not counted).
    assert count_flops(conv, (1, 1, 8, 8)) == {"macs": 1152, "flops": 2304}


def test_count_flops_restores_mode_and_leaves_bn_stats_alone():
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4)).train()
    before = model[1].running_mean.clone()
    count_flops(model, (2, 1, 8, 8))
    assert model.training and model[1].training
    assert torch.equal(model[1].running_mean, before)
    assert model[1].num_batches_tracked.item() == 0


@pytest.mark.parametrize("name", list(EXPECTED_FLOPS))
def test_preset_flops_match_reference(name):
    with torch.device("meta"):  # shapes only: same count, no arithmetic
        model = build_model(name)
    counts = count_flops(model, MNIST_INPUT)
    assert counts["flops"] == EXPECTED_FLOPS[name]
    assert counts["macs"] * 2 == counts["flops"]
    assert counts["flops"] == pytest.approx(REFERENCE_FLOPS[name], rel=0.01)
    assert model_info(name)["reference_flops"] == REFERENCE_FLOPS[name]


def test_flops_on_a_real_device_equal_the_meta_count():
    torch.manual_seed(0)
    model = build_model("gsta").train()
    assert count_flops(model, MNIST_INPUT) == {"macs": EXPECTED_FLOPS["gsta"] // 2, "flops": EXPECTED_FLOPS["gsta"]}
    assert model.training


def test_poolformer_reference_flops_exclude_the_depthwise_conv():
    # REFERENCE's 4.87G matches PoolFormer WITHOUT the MLP's 3x3 depthwise conv; our model
    # has it (5,172,993 params). Counted on the model: its depthwise convs are exactly the gap.
    model = build_model("poolformer")
    dw = [m for m in model.translator.modules()
          if isinstance(m, nn.Conv2d) and m.groups == m.in_channels > 1 and m.kernel_size == (3, 3)]
    assert [m.in_channels for m in dw] == [2560, 2048, 2048, 2048]   # one per MLP
    dw_flops = sum(count_flops(m, (1, m.in_channels, 16, 16))["flops"] for m in dw)
    assert round((count_flops(model, MNIST_INPUT)["flops"] - dw_flops) / 1e9, 2) == 4.87


@pytest.mark.parametrize("name", ["incepu", "gsta", "poolformer", "last-frame"])
def test_size_at_least_four_bytes_per_param(name):
    model = build_model(name)
    assert model_size_bytes(model) >= 4 * count_parameters(model)


def test_gsta_size_includes_batchnorm_buffers():
    model = build_model("gsta")
    bn_channels = sum(m.num_features for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    n_bn = sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert model_size_bytes(model) == 4 * 6_456_065 + 4 * 2 * bn_channels + 8 * n_bn


def test_measure_latency_and_describe_model():
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4)).train()
    t = measure_latency(model, (1, 1, 16, 16), device="cpu", repeats=3, warmup=1)
    assert isinstance(t, float) and 0 < t < 1.0
    assert model.training
    row = describe_model(model, (1, 1, 16, 16), latency=True, repeats=2)
    assert set(row) == {"params", "size_bytes", "macs", "flops", "latency_s"}
    assert row["params"] == 4 * 9 + 4 + 8 and row["macs"] == 4 * 9 * 256
    assert set(describe_model(build_model("last-frame"), MNIST_INPUT)) == {"params", "size_bytes", "macs", "flops"}


def test_invalid_arguments():
    model = nn.Linear(2, 2)
    with pytest.raises(ValueError, match="input_shape"):
        count_flops(model, (1, 0, 2))
    with pytest.raises(ValueError, match="input_shape"):
        count_flops(model, "1x2")
    with pytest.raises(ValueError, match="repeats"):
        measure_latency(model, (1, 2), repeats=0)
