"""Tests for vpstudy.losses: hand-checked GDL / DDR values, the combined loss, gradients, validation."""

import math

import pytest
import torch
import torch.nn.functional as F

from vpstudy.losses import VideoPredictionLoss, differential_divergence_loss, gradient_difference_loss


def video(frames):
    """Nested list of 2-D frames -> (1, T, 1, H, W) float32 tensor."""
    return torch.tensor(frames, dtype=torch.float32)[None, :, None]


# ---------------------------------------------------------------- GDL

def test_gdl_zero_for_identical_frames():
    x = torch.rand(2, 3, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    assert gradient_difference_loss(x, x.clone()).item() == 0.0


def test_gdl_zero_under_constant_brightness_offset_including_borders():
    # Sobel kernels sum to zero and kornia replicates the border, so I + c has the same
    # gradients as I everywhere (zero padding would make the border pixels differ).
    x = torch.rand(2, 3, 2, 8, 8, generator=torch.Generator().manual_seed(1)) * 0.5
    loss = gradient_difference_loss(x + 0.3, x)
    assert loss.item() == pytest.approx(0.0, abs=1e-10)
    # a fully constant pair of images of different brightness: both gradients are 0 (up to
    # float rounding); with zero padding the border pixels alone would give ~0.08
    a, b = torch.full((1, 1, 1, 5, 5), 0.2), torch.full((1, 1, 1, 5, 5), 0.9)
    assert gradient_difference_loss(a, b).item() == pytest.approx(0.0, abs=1e-12)


def test_gdl_center_pixel_hand_value():
    # 3x3 frame, one bright pixel in the centre, target all zeros. With the normalized Sobel
    # kernel [[-1,0,1],[-2,0,2],[-1,0,1]]/8, |I_x| over the 9 pixels is the kernel's absolute
    # entries: squares sum to (1+1+4+4+1+1)/64 = 12/64, the same for |I_y|.
    # GDL = (12/64 + 12/64) / 9 = 1/24.
    pred = video([[[0, 0, 0], [0, 1, 0], [0, 0, 0]]])
    target = torch.zeros_like(pred)
    assert gradient_difference_loss(pred, target).item() == pytest.approx(1 / 24, rel=1e-6)
    # symmetric in its arguments
    assert gradient_difference_loss(target, pred).item() == pytest.approx(1 / 24, rel=1e-6)


def test_gdl_vertical_edge_hand_value_with_replicate_border():
    # 4x4 frame with columns [0, 0, 1, 1]: I_x = 0.5 on columns 1 and 2 (4/8 · 1), 0 on the
    # border columns (replicated), I_y = 0 everywhere. Against zeros: 8 · 0.25 / 16 = 0.125.
    edge = [[0, 0, 1, 1]] * 4
    pred = video([edge])
    assert gradient_difference_loss(pred, torch.zeros_like(pred)).item() == pytest.approx(0.125)


def test_gdl_positive_for_shifted_edge():
    edge_a = [[0, 0, 0, 1, 1, 1]] * 6
    edge_b = [[0, 1, 1, 1, 1, 1]] * 6
    pred, target = video([edge_a]), video([edge_b])
    loss = gradient_difference_loss(pred, target).item()
    # edge_a has |I_x| = 0.5 on columns 2,3; edge_b on columns 0,1 (col 0: (1-0)/2 with replicate)
    # -> 4 differing columns of 6 rows, each 0.25 -> 24 · 0.25 / 36
    assert loss == pytest.approx(24 * 0.25 / 36)


def test_gdl_means_over_batch_and_frames():
    bright = [[0, 0, 0], [0, 1, 0], [0, 0, 0]]
    dark = [[0] * 3] * 3
    pred = video([bright, dark])  # one of two frames differs -> half of 1/24
    assert gradient_difference_loss(pred, torch.zeros_like(pred)).item() == pytest.approx(1 / 48)


def test_gdl_accepts_non_contiguous_channels_last_layout():
    gen = torch.Generator().manual_seed(2)
    pred = torch.rand(2 * 3, 2, 8, 8, generator=gen)
    target = torch.rand(2 * 3, 2, 8, 8, generator=gen)
    expected = gradient_difference_loss(pred.view(2, 3, 2, 8, 8), target.view(2, 3, 2, 8, 8))
    pred_cl = pred.contiguous(memory_format=torch.channels_last).reshape(2, 3, 2, 8, 8)
    assert not pred_cl.is_contiguous()
    got = gradient_difference_loss(pred_cl, target.view(2, 3, 2, 8, 8))
    assert got.item() == pytest.approx(expected.item(), rel=1e-6)


# ---------------------------------------------------------------- DDR

def test_ddr_zero_when_frame_differences_agree():
    gen = torch.Generator().manual_seed(3)
    target = torch.rand(2, 5, 1, 6, 6, generator=gen)
    assert differential_divergence_loss(target.clone(), target).item() == pytest.approx(0.0, abs=1e-9)
    # softmax is shift invariant: a different constant offset per frame changes every difference
    # by a constant, so the distributions (and the loss) are unchanged
    offsets = torch.tensor([0.0, 0.2, -0.1, 0.4, 0.05]).view(1, 5, 1, 1, 1)
    assert differential_divergence_loss(target + offsets, target).item() == pytest.approx(0.0, abs=1e-9)


def test_ddr_positive_when_differences_disagree():
    gen = torch.Generator().manual_seed(4)
    pred, target = torch.rand(2, 4, 1, 6, 6, generator=gen), torch.rand(2, 4, 1, 6, 6, generator=gen)
    assert differential_divergence_loss(pred, target).item() > 1e-4


@pytest.mark.parametrize("T", [1, 2])
def test_ddr_zero_for_short_sequences(T):
    pred = torch.rand(2, T, 1, 4, 4, requires_grad=True)
    loss = differential_divergence_loss(pred, torch.rand(2, T, 1, 4, 4))
    assert loss.item() == 0.0 and loss.ndim == 0
    loss.backward()  # still connected to the graph
    assert torch.equal(pred.grad, torch.zeros_like(pred))


def test_ddr_hand_value():
    # B=1, T=3, C=1, H=1, W=2. Target constant -> q = [1/2, 1/2] for both frame pairs.
    # Pred differences: [0.1, 0] then [0, 0]. With tau = 0.1 the first gives
    # p = softmax([1, 0]); the second p = q (KL 0). The mean runs over B·(T-1)·C·H·W = 4 elements.
    pred = video([[[0.0, 0.0]], [[0.1, 0.0]], [[0.1, 0.0]]])
    target = torch.zeros_like(pred)
    p1 = math.e / (1 + math.e)
    p2 = 1 / (1 + math.e)
    kl = p1 * math.log(p1 / 0.5) + p2 * math.log(p2 / 0.5)
    assert differential_divergence_loss(pred, target, tau=0.1).item() == pytest.approx(kl / 4, rel=1e-5)
    # tau scales the logits: tau = 0.05 gives softmax([2, 0])
    p1, p2 = math.exp(2) / (1 + math.exp(2)), 1 / (1 + math.exp(2))
    kl = p1 * math.log(p1 / 0.5) + p2 * math.log(p2 / 0.5)
    assert differential_divergence_loss(pred, target, tau=0.05).item() == pytest.approx(kl / 4, rel=1e-5)


def test_ddr_invalid_tau():
    x = torch.rand(1, 3, 1, 4, 4)
    with pytest.raises(ValueError, match="tau"):
        differential_divergence_loss(x, x, tau=0.0)


# ---------------------------------------------------------------- combined loss

def test_combined_loss_equals_weighted_sum():
    gen = torch.Generator().manual_seed(5)
    pred, target = torch.rand(2, 4, 1, 8, 8, generator=gen), torch.rand(2, 4, 1, 8, 8, generator=gen)
    criterion = VideoPredictionLoss(lambda1=0.5, lambda2=0.1, tau=0.1)
    total, parts = criterion(pred, target)
    mse = F.mse_loss(pred, target)
    gdl = gradient_difference_loss(pred, target)
    ddr = differential_divergence_loss(pred, target, 0.1)
    assert parts["mse"].item() == pytest.approx(mse.item())
    assert parts["gdl"].item() == pytest.approx(gdl.item())
    assert parts["ddr"].item() == pytest.approx(ddr.item())
    assert gdl.item() > 0 and ddr.item() > 0
    assert total.item() == pytest.approx((mse + 0.5 * gdl + 0.1 * ddr).item(), rel=1e-6)
    assert all(not v.requires_grad for v in parts.values())


def test_zero_weights_give_plain_mse_and_zero_parts():
    gen = torch.Generator().manual_seed(6)
    pred, target = torch.rand(1, 3, 1, 8, 8, generator=gen), torch.rand(1, 3, 1, 8, 8, generator=gen)
    total, parts = VideoPredictionLoss()(pred, target)
    assert total.item() == pytest.approx(F.mse_loss(pred, target).item())
    assert parts["gdl"].item() == 0.0 and parts["ddr"].item() == 0.0
    assert set(parts) == {"mse", "gdl", "ddr"}


def test_gradients_flow_and_are_finite():
    gen = torch.Generator().manual_seed(7)
    pred = torch.rand(2, 4, 1, 8, 8, generator=gen).requires_grad_(True)
    target = torch.rand(2, 4, 1, 8, 8, generator=gen)
    criterion = VideoPredictionLoss(lambda1=0.5, lambda2=0.1)
    total, _ = criterion(pred, target)
    total.backward()
    assert torch.isfinite(pred.grad).all()
    assert pred.grad.abs().sum().item() > 0
    # each term alone has a non-zero gradient too
    for loss_fn in (gradient_difference_loss, differential_divergence_loss):
        p = pred.detach().clone().requires_grad_(True)
        loss_fn(p, target).backward()
        assert torch.isfinite(p.grad).all() and p.grad.abs().sum().item() > 0


def test_bfloat16_prediction_under_cpu_autocast():
    gen = torch.Generator().manual_seed(8)
    pred32 = torch.rand(1, 3, 1, 8, 8, generator=gen)
    target = torch.rand(1, 3, 1, 8, 8, generator=gen)
    pred = pred32.to(torch.bfloat16).requires_grad_(True)
    criterion = VideoPredictionLoss(lambda1=0.5, lambda2=0.1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        total, parts = criterion(pred, target)
    assert total.dtype == torch.float32
    expected, _ = criterion(pred.detach().float(), target)
    assert total.item() == pytest.approx(expected.item(), rel=1e-6)
    total.backward()
    assert pred.grad.dtype == torch.bfloat16 and torch.isfinite(pred.grad.float()).all()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_bfloat16_autocast_on_cuda_matches_float32():
    gen = torch.Generator().manual_seed(9)
    pred32 = torch.rand(2, 4, 1, 16, 16, generator=gen)
    target = torch.rand(2, 4, 1, 16, 16, generator=gen).cuda()
    pred = pred32.cuda().to(torch.bfloat16).contiguous().requires_grad_(True)
    criterion = VideoPredictionLoss(lambda1=0.5, lambda2=0.1)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        total, parts = criterion(pred, target)
    expected, expected_parts = criterion(pred.detach().float(), target)
    assert total.dtype == torch.float32
    assert total.item() == pytest.approx(expected.item(), rel=1e-5)
    assert parts["ddr"].item() == pytest.approx(expected_parts["ddr"].item(), rel=1e-5)
    total.backward()
    assert torch.isfinite(pred.grad.float()).all() and pred.grad.float().abs().sum().item() > 0


@pytest.mark.parametrize("kwargs", [
    {"lambda1": -0.1}, {"lambda2": -1.0}, {"lambda1": float("nan")}, {"lambda2": float("inf")},
    {"tau": 0.0}, {"tau": -0.1}, {"tau": float("inf")}, {"lambda1": "0.5"},
])
def test_invalid_arguments_raise_value_error(kwargs):
    with pytest.raises(ValueError, match="must be a finite number"):
        VideoPredictionLoss(**kwargs)


def test_shape_mismatch_raises_value_error():
    with pytest.raises(ValueError, match=r"\(B, T, C, H, W\)"):
        VideoPredictionLoss()(torch.rand(1, 3, 1, 8, 8), torch.rand(1, 3, 1, 8, 9))
    with pytest.raises(ValueError, match=r"\(B, T, C, H, W\)"):
        gradient_difference_loss(torch.rand(3, 1, 8, 8), torch.rand(3, 1, 8, 8))
