"""Tests for vpstudy.metrics: values pinned against scikit-image and hand-computed sums."""

import json
import math

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from vpstudy.metrics import (
    METRIC_INFO,
    PSNR_MAX_DB,
    MetricAccumulator,
    compute_metrics,
    mae_per_frame,
    mse_per_frame,
    psnr_per_frame,
    sharpness_per_frame,
    ssim_per_frame,
)


def random_pair(seed, shape=(2, 3, 1, 16, 16)):
    """Random target in [0,1] and a noisy prediction that leaves [0,1] in places."""
    gen = torch.Generator().manual_seed(seed)
    target = torch.rand(shape, generator=gen)
    pred = target + 0.3 * torch.randn(shape, generator=gen)
    return pred, target


def digit_like_pair(seed=0):
    """Structured frames: sparse bright blobs (like MNIST strokes) and a blurred prediction."""
    rng = np.random.default_rng(seed)
    target = np.zeros((1, 2, 1, 32, 32), dtype=np.float32)
    for t in range(2):
        ys, xs = rng.integers(4, 28, size=(2, 12))
        target[0, t, 0, ys, xs] = 1.0
        target[0, t, 0] = np.clip(gaussian_filter(target[0, t, 0], 1.0) * 4, 0, 1)
    pred = np.stack([gaussian_filter(target[0, t, 0], 1.5) for t in range(2)])[None, :, None]
    return torch.from_numpy(pred.astype(np.float32) * 1.1), torch.from_numpy(target)


def skimage_ssim(pred, target, data_range):
    """Reference: scikit-image per frame on the clipped prediction, (B, T) array."""
    pred = np.clip(pred.double().numpy(), 0, 1)
    target = target.double().numpy()
    B, T, C = pred.shape[:3]
    out = np.empty((B, T))
    for b in range(B):
        for t in range(T):
            if C == 1:
                out[b, t] = structural_similarity(target[b, t, 0], pred[b, t, 0], data_range=data_range)
            else:
                out[b, t] = structural_similarity(target[b, t], pred[b, t], data_range=data_range,
                                                  channel_axis=0)
    return out


# ---------------------------------------------------------------- MSE / MAE

def test_mse_mae_are_per_frame_sums():
    target = torch.zeros(1, 2, 1, 8, 8)
    target[0, 0, 0, :3, 0] = 1.0                 # frame 0: k = 3 pixels of value 1
    target[0, 1, 0, :5, 1] = 1.0                 # frame 1: k = 5
    pred = torch.zeros_like(target)
    assert mse_per_frame(pred, target).tolist() == [[3.0, 5.0]]
    assert mae_per_frame(pred, target).tolist() == [[3.0, 5.0]]
    # a constant error of 0.5 over 64 pixels: MSE 64·0.25 = 16, MAE 32
    assert mse_per_frame(torch.full((1, 1, 1, 8, 8), 0.5), torch.zeros(1, 1, 1, 8, 8)).item() == 16.0
    assert mae_per_frame(torch.full((1, 1, 1, 8, 8), 0.5), torch.zeros(1, 1, 1, 8, 8)).item() == 32.0


def test_mse_sums_over_channels():
    pred = torch.zeros(2, 1, 3, 4, 4)
    target = torch.zeros(2, 1, 3, 4, 4)
    target[1, 0, :, 0, 0] = 1.0  # one pixel in each of the 3 channels of sequence 1
    assert mse_per_frame(pred, target).tolist() == [[0.0], [3.0]]


def test_clipping_applies_to_ssim_and_psnr_but_not_mse():
    target = torch.zeros(1, 1, 1, 8, 8)
    target[..., 2:5, 2:5] = 1.0
    pred = target.clone()
    pred[..., 2:5, 2:5] = 1.5   # overshoot: clipped back to the target
    pred[..., 0, 0] = -0.5      # undershoot where the target is 0
    assert mse_per_frame(pred, target).item() == pytest.approx(9 * 0.25 + 0.25)
    assert mae_per_frame(pred, target).item() == pytest.approx(9 * 0.5 + 0.5)
    assert ssim_per_frame(pred, target, 2.0)[0, 0] == pytest.approx(1.0)
    assert psnr_per_frame(pred, target).item() == PSNR_MAX_DB


# ---------------------------------------------------------------- SSIM

@pytest.mark.parametrize("data_range", [2.0, 1.0])
@pytest.mark.parametrize("seed", [0, 1])
def test_ssim_matches_skimage_on_random_frames(seed, data_range):
    pred, target = random_pair(seed)
    ours = ssim_per_frame(pred, target, data_range)
    assert ours.shape == (2, 3)
    np.testing.assert_allclose(ours, skimage_ssim(pred, target, data_range), rtol=0, atol=1e-6)


@pytest.mark.parametrize("data_range", [2.0, 1.0])
def test_ssim_matches_skimage_on_structured_frames(data_range):
    pred, target = digit_like_pair()
    ours = ssim_per_frame(pred, target, data_range)
    expected = skimage_ssim(pred, target, data_range)
    np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-6)
    assert 0.2 < expected.min() < 0.999  # a real, non-trivial comparison


def test_ssim_multichannel_matches_skimage_channel_axis():
    pred, target = random_pair(2, shape=(1, 2, 3, 12, 10))
    for data_range in (2.0, 1.0):
        np.testing.assert_allclose(ssim_per_frame(pred, target, data_range),
                                   skimage_ssim(pred, target, data_range), rtol=0, atol=1e-6)


def test_ssim_published_range_is_higher_than_strict():
    pred, target = digit_like_pair(1)
    published = ssim_per_frame(pred, target, 2.0)
    strict = ssim_per_frame(pred, target, 1.0)
    assert (published > strict).all()


def test_ssim_identical_frames_is_one_and_chunking_is_seamless():
    # more frames than one internal chunk (16) so chunk boundaries are exercised
    pred, target = random_pair(3, shape=(5, 7, 1, 8, 8))
    np.testing.assert_allclose(ssim_per_frame(target, target, 1.0), np.ones((5, 7)), atol=1e-12)
    np.testing.assert_allclose(ssim_per_frame(pred, target, 2.0),
                               skimage_ssim(pred, target, 2.0), rtol=0, atol=1e-6)


def test_ssim_invalid_arguments():
    pred, target = random_pair(0)
    with pytest.raises(ValueError, match="data_range"):
        ssim_per_frame(pred, target, 0.0)
    with pytest.raises(ValueError, match="at least 7x7"):
        ssim_per_frame(torch.rand(1, 1, 1, 6, 16), torch.rand(1, 1, 1, 6, 16), 1.0)
    with pytest.raises(ValueError, match=r"\(B, T, C, H, W\)"):
        ssim_per_frame(torch.rand(1, 16, 16), torch.rand(1, 16, 16), 1.0)


# ---------------------------------------------------------------- PSNR

def test_psnr_matches_skimage_per_frame():
    pred, target = random_pair(4)
    ours = psnr_per_frame(pred, target)
    clipped = np.clip(pred.double().numpy(), 0, 1)
    truth = target.double().numpy()
    for b in range(2):
        for t in range(3):
            expected = peak_signal_noise_ratio(truth[b, t], clipped[b, t], data_range=1)
            assert ours[b, t].item() == pytest.approx(expected, rel=1e-6)


def test_psnr_hand_value_and_cap():
    # uniform error 0.1 -> mse 0.01 -> 20 dB
    assert psnr_per_frame(torch.full((1, 1, 1, 4, 4), 0.6),
                          torch.full((1, 1, 1, 4, 4), 0.5)).item() == pytest.approx(20.0)
    same = torch.rand(1, 2, 1, 4, 4)
    assert psnr_per_frame(same, same).tolist() == [[PSNR_MAX_DB, PSNR_MAX_DB]]


# ---------------------------------------------------------------- accumulator

def test_accumulator_over_batches_equals_single_batch():
    pred, target = random_pair(5, shape=(6, 4, 1, 16, 16))
    accumulator = MetricAccumulator()
    for start, stop in [(0, 1), (1, 4), (4, 6)]:
        accumulator.update(pred[start:stop], target[start:stop])
    batched = accumulator.compute()
    single = compute_metrics(pred, target)
    assert batched["num_sequences"] == single["num_sequences"] == 6
    for name in ("mse", "mae", "ssim", "ssim_strict", "psnr"):
        assert batched[name] == pytest.approx(single[name], rel=1e-12)
        assert batched["per_frame"][name] == pytest.approx(single["per_frame"][name], rel=1e-12)


def test_compute_metrics_values_and_layout():
    pred, target = random_pair(6, shape=(3, 4, 1, 16, 16))
    result = compute_metrics(pred, target)
    assert set(result) == {"mse", "mae", "ssim", "ssim_strict", "psnr", "sharpness", "per_frame",
                           "num_sequences"}
    assert set(result["per_frame"]) == {"mse", "mae", "ssim", "ssim_strict", "psnr", "sharpness"}
    assert all(len(values) == 4 for values in result["per_frame"].values())
    # overall = mean over sequences and frames of the per-frame functions
    assert result["mse"] == pytest.approx(mse_per_frame(pred, target).mean().item(), rel=1e-12)
    assert result["mae"] == pytest.approx(mae_per_frame(pred, target).mean().item(), rel=1e-12)
    assert result["psnr"] == pytest.approx(psnr_per_frame(pred, target).mean().item(), rel=1e-12)
    assert result["sharpness"] == pytest.approx(sharpness_per_frame(pred, target).mean(), rel=1e-12)
    assert result["ssim"] == pytest.approx(skimage_ssim(pred, target, 2.0).mean(), abs=1e-6)
    assert result["ssim_strict"] == pytest.approx(skimage_ssim(pred, target, 1.0).mean(), abs=1e-6)
    assert result["per_frame"]["mse"] == pytest.approx(mse_per_frame(pred, target).mean(0).tolist())
    # everything is a plain python number: strict JSON round trip
    decoded = json.loads(json.dumps(result, allow_nan=False))
    assert decoded == result
    assert all(type(v) is float for v in result["per_frame"]["ssim"])
    assert type(result["num_sequences"]) is int


def test_accumulator_accepts_other_dtypes_layouts_and_numpy():
    pred, target = random_pair(7, shape=(2, 3, 1, 16, 16))
    expected = compute_metrics(pred, target)
    frames_cl = pred.reshape(6, 1, 16, 16).contiguous(memory_format=torch.channels_last)
    got_layout = compute_metrics(frames_cl.reshape(2, 3, 1, 16, 16), target)
    got_numpy = compute_metrics(pred.numpy(), target.numpy())
    got_double = compute_metrics(pred.double(), target.double())
    for got in (got_layout, got_numpy, got_double):
        assert got["mse"] == pytest.approx(expected["mse"], rel=1e-12)
        assert got["ssim"] == pytest.approx(expected["ssim"], rel=1e-12)
    # bf16 predictions are accepted (values change by the bf16 rounding only)
    got_bf16 = compute_metrics(pred.bfloat16(), target)
    assert got_bf16["mse"] == pytest.approx(expected["mse"], rel=1e-2)


def test_accumulator_errors_and_reset():
    accumulator = MetricAccumulator()
    with pytest.raises(ValueError, match="no batches"):
        accumulator.compute()
    pred, target = random_pair(8, shape=(1, 3, 1, 8, 8))
    accumulator.update(pred, target)
    with pytest.raises(ValueError, match="same number of frames"):
        accumulator.update(torch.rand(1, 2, 1, 8, 8), torch.rand(1, 2, 1, 8, 8))
    with pytest.raises(ValueError, match="same shape|\\(B, T, C, H, W\\)"):
        accumulator.update(pred, target[:, :2])
    accumulator.reset()
    accumulator.update(torch.rand(1, 2, 1, 8, 8), torch.rand(1, 2, 1, 8, 8))
    assert accumulator.compute()["num_sequences"] == 1


def test_metric_info_covers_every_metric():
    assert set(METRIC_INFO) == {"mse", "mae", "ssim", "ssim_strict", "psnr", "sharpness"}
    assert [METRIC_INFO[k]["higher_is_better"] for k in ("mse", "mae", "ssim", "ssim_strict", "psnr")] \
        == [False, False, True, True, True]
    assert METRIC_INFO["sharpness"]["higher_is_better"] is None and METRIC_INFO["sharpness"]["best"] == 1
    assert all(isinstance(info["label"], str) and info["convention"] for info in METRIC_INFO.values())
    assert not math.isinf(PSNR_MAX_DB)


def test_sharpness_of_the_frame_itself_is_one_and_of_a_blurred_copy_below():
    _, target = digit_like_pair()
    assert np.array_equal(sharpness_per_frame(target, target), np.ones((1, 2)))
    blurred = np.stack([gaussian_filter(target[0, t, 0], 1.0) for t in range(2)])[None, :, None]
    s_blur = sharpness_per_frame(blurred, target)
    more_blurred = np.stack([gaussian_filter(target[0, t, 0], 2.0) for t in range(2)])[None, :, None]
    assert np.all(s_blur < 0.9) and np.all(sharpness_per_frame(more_blurred, target) < s_blur)
    noisy = target + 0.2 * np.random.default_rng(0).standard_normal(target.shape)
    assert np.all(sharpness_per_frame(np.clip(noisy, 0, 1), target) > 1)   # spurious edges


def test_sharpness_hand_values():
    """A ramp of slope a along W has Sobel/8 gradient a at every interior pixel; a step edge
    of height 1 has gradient 1/2 on the two columns beside it."""
    W = 16
    ramp = np.tile(np.arange(W) / W, (W, 1))[None, None, None]         # slope 1/16
    flat = np.zeros_like(ramp)
    eps = 1e-6
    np.testing.assert_allclose(sharpness_per_frame(ramp * 0.5, ramp), (0.5 / 16 + eps) / (1 / 16 + eps))
    np.testing.assert_allclose(sharpness_per_frame(flat, ramp), eps / (1 / 16 + eps))
    assert sharpness_per_frame(flat, flat)[0, 0] == 1.0                  # blank / blank
    step = np.zeros((1, 1, 1, 8, 8))
    step[..., 4:] = 1.0
    # interior 6x6 pixels; columns 3 and 4 (interior 2 and 3) see the edge: 12 pixels at 1/2
    np.testing.assert_allclose(sharpness_per_frame(ramp[..., :8, :8], step),
                               (1 / 16 + eps) / (12 * 0.5 / 36 + eps))
    # clipped like SSIM: values above 1 do not add edges
    assert sharpness_per_frame(step * 3.0, step)[0, 0] == 1.0
    with pytest.raises(ValueError, match="3x3"):
        sharpness_per_frame(np.zeros((1, 1, 1, 2, 2)), np.zeros((1, 1, 1, 2, 2)))


def test_accumulator_reports_sharpness_and_keeps_it_per_sequence():
    pred, target = digit_like_pair()
    acc = MetricAccumulator()
    acc.update(pred, target)
    out = acc.compute()
    np.testing.assert_allclose(out["sharpness"], sharpness_per_frame(pred, target).mean())
    assert acc.per_sequence()["sharpness"].shape == (1, 2)
