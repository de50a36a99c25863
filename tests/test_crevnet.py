"""Tests for vpstudy.models.crevnet: invertibility, exact sizes, shapes, indexing, loss, MACs."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.flop_counter import FlopCounterMode

from vpstudy.models import build_model
from vpstudy.models import crevnet as cr


def sepcrev_mnist():
    return build_model("sepcrev")


def crevnet_mnist():
    return build_model("crevnet")


def sepcrev_kth():
    return build_model("sepcrev", in_shape=(10, 1, 128, 128), out_frames=20, dataset="kth")


def crevnet_kth():
    return build_model("crevnet", in_shape=(10, 1, 128, 128), out_frames=20, dataset="kth")


def sepcrev_bair():
    return build_model("sepcrev", in_shape=(10, 3, 64, 64), dataset="bair")


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def step_macs(model: cr.CrevNetPredictor, size: int = 64) -> float:
    """MACs (= FlopCounterMode flops / 2) of one 3-frame window step at batch 1."""
    model.eval()
    window = torch.randn(1, model.in_channels, 3, size, size)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model.step(window)
    return counter.get_total_flops() / 2


def mse_criterion(pred, target):
    loss = F.mse_loss(pred, target)
    return loss, {"mse": loss.detach()}


@pytest.fixture(autouse=True)
def _seed_and_one_thread():
    """Seed, and run on one thread: these small 3D convs are overhead-bound, and on a busy
    2-core machine OpenMP thread hand-offs made them ~50× slower than single-threaded."""
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ---------------------------------------------------------------- building blocks

def test_sepconv3d_is_depthwise_then_pointwise():
    conv = cr.SepConv3d(8, 16, kernel_size=3, stride=(1, 2, 2), padding=1, bias=False)
    assert conv.depthwise.groups == 8 and conv.depthwise.bias is None
    assert conv.pointwise.kernel_size == (1, 1, 1)
    assert count_params(conv) == 8 * 27 + 8 * 16
    assert count_params(cr.SepConv3d(8, 16)) == 8 * 27 + 8 * 16 + 16  # bias=True default
    assert conv(torch.randn(2, 8, 3, 16, 16)).shape == (2, 16, 3, 8, 8)


def test_conv_factory_builds_both_types_and_rejects_others():
    assert isinstance(cr.make_conv3d("separable", 4, 8), cr.SepConv3d)
    standard = cr.make_conv3d("standard", 4, 8)
    assert isinstance(standard, nn.Conv3d) and standard.bias is None
    assert standard.padding == (1, 1, 1)
    with pytest.raises(ValueError, match="separable"):
        cr.make_conv3d("depthwise", 4, 8)


def test_space_to_depth_channel_order_and_inverse():
    x = torch.arange(4.0).reshape(1, 1, 1, 2, 2)  # pixels (0,0)=0 (0,1)=1 (1,0)=2 (1,1)=3
    assert cr.space_to_depth(x).flatten().tolist() == [0.0, 1.0, 2.0, 3.0]
    x = torch.randn(2, 3, 3, 8, 8)
    y = cr.space_to_depth(x)
    assert y.shape == (2, 12, 3, 4, 4)
    # phase-major: channels 0..2 are pixel (0,0) of the three input channels
    assert torch.equal(y[:, 0:3], x[:, :, :, 0::2, 0::2])
    assert torch.equal(y[:, 9:12], x[:, :, :, 1::2, 1::2])
    assert torch.equal(cr.depth_to_space(y), x)


@pytest.mark.parametrize("stride", [1, 2])
def test_invertible_block_inverse(stride):
    block = cr.InvertibleBlock(8, 8 * stride * stride, stride, first=False, conv="separable")
    x1, x2 = torch.randn(2, 8, 3, 16, 16), torch.randn(2, 8, 3, 16, 16)
    a, y1 = block(x1, x2)
    assert a.shape == y1.shape == (2, 8 * stride * stride, 3, 16 // stride, 16 // stride)
    r1, r2 = block.inverse(a, y1)
    assert (r1 - x1).abs().max() < 1e-5 and (r2 - x2).abs().max() < 1e-5
    with pytest.raises(ValueError, match="invertible"):
        cr.InvertibleBlock(8, 16, 2, first=False, conv="separable")


# ---------------------------------------------------------------- autoencoder

@pytest.mark.parametrize("conv", ["separable", "standard"])
@pytest.mark.parametrize("mode", ["eval", "train"])
def test_autoencoder_is_exactly_invertible(conv, mode):
    ae = cr.CrevNetPredictor(conv).autoencoder
    ae.train(mode == "train")
    window = torch.randn(2, 1, 3, 64, 64)
    with torch.no_grad():
        x1, x2 = ae.encode(window)
        assert x1.shape == x2.shape == (2, 32, 3, 8, 8)
        restored = ae.decode(x1, x2)
    assert restored.shape == window.shape
    assert (restored - window).abs().max().item() < 1e-5
    # the code is not trivially the input: the blocks change it
    assert not torch.allclose(torch.cat([x1, x2], 1).flatten(), cr.space_to_depth(
        cr.space_to_depth(cr.space_to_depth(window))).flatten())


def test_autoencoder_rgb_groups_end_as_96_channels():
    ae = sepcrev_bair().autoencoder.eval()
    window = torch.rand(1, 3, 3, 64, 64)
    with torch.no_grad():
        x1, x2 = ae.encode(window)
        assert x1.shape == (1, 96, 3, 8, 8)
        assert (ae.decode(x1, x2) - window).abs().max() < 1e-5


def test_autoencoder_stage_layout():
    ae = sepcrev_mnist().autoencoder
    strides = [2 if b.downsample else 1 for b in ae.blocks]
    assert strides == [1, 1, 1, 1, 2, 1, 1, 1, 1, 2, 1, 1]
    # only the first block lacks F's leading BN + ReLU
    assert not isinstance(ae.blocks[0].residual[0], nn.BatchNorm3d)
    assert all(isinstance(b.residual[0], nn.BatchNorm3d) for b in ae.blocks[1:])
    assert len(sepcrev_kth().autoencoder.blocks) == 14


# ---------------------------------------------------------------- sizes and cost

def test_exact_parameter_counts_mnist():
    sep = sepcrev_mnist()
    assert count_params(sep) == 368_706
    assert count_params(sep.autoencoder) == 11_330
    assert count_params(cr.CrevNetPredictor("separable", attention_conv="3x3x3")) == 375_362
    crev = crevnet_mnist()
    assert count_params(crev) == 4_997_444
    assert count_params(crev.autoencoder) == 104_516


def test_parameter_counts_kth_bair():
    assert count_params(sepcrev_kth()) == 727_170
    assert count_params(crevnet_kth()) == 9_894_756
    assert count_params(sepcrev_bair()) == 4_663_182


def test_gate_bias_follows_conv_type():
    sep_cell = sepcrev_mnist().predictor.cells[0]
    std_cell = crevnet_mnist().predictor.cells[0]
    assert sep_cell.input_gate.pointwise.bias is None and sep_cell.input_gate.depthwise.bias is None
    assert std_cell.input_gate.bias is not None
    assert std_cell.output_gate.weight.shape == (32, 128, 3, 3, 3)
    assert std_cell.memory_candidate.weight.shape == (32, 96, 3, 3, 3)
    assert sep_cell.w1.bias is not None and sep_cell.w1.kernel_size == (1, 1, 1)


def test_macs_per_window_step():
    assert step_macs(sepcrev_mnist()) == pytest.approx(0.078e9, rel=0.02)
    assert step_macs(crevnet_mnist()) == pytest.approx(0.99e9, rel=0.02)


# ---------------------------------------------------------------- contract

def test_registry_builds_the_dataset_layouts():
    m = sepcrev_mnist()
    assert (m.name, m.in_frames, m.out_frames, m.window_frames) == ("sepcrev", 10, 10, 3)
    k = crevnet_kth()
    assert (k.name, k.in_frames, k.out_frames, len(k.predictor.cells)) == ("crevnet", 10, 20, 16)
    assert len(m.predictor.cells) == 8
    # the registered BAIR model is the BAIR layout of the same network
    bair = build_model("sepcrev-bair")
    assert count_params(bair) == count_params(sepcrev_bair()) == 4_663_182
    with pytest.raises(ValueError, match="dataset='ucf'"):
        build_model("sepcrev", dataset="ucf")


def test_forward_shape_mnist():
    model = sepcrev_mnist().eval()
    with torch.no_grad():
        out = model(torch.rand(2, 10, 1, 64, 64))
    assert out.shape == (2, 10, 1, 64, 64)
    assert torch.isfinite(out).all()


def test_forward_shape_kth_small_input():
    model = sepcrev_kth().eval()
    with torch.no_grad():
        out = model(torch.rand(1, 10, 1, 64, 64))
    assert out.shape == (1, 20, 1, 64, 64)


def test_forward_shape_bair_rgb():
    model = sepcrev_bair().eval()
    with torch.no_grad():
        out = model(torch.rand(1, 10, 3, 64, 64))
    assert out.shape == (1, 10, 3, 64, 64)


def test_forward_window_indexing():
    """Frame t of the input holds the value t; a fake step predicts window j+1 with value
    (index + 0.5) so predicted frames are told apart from observed ones."""
    model = sepcrev_mnist()
    observed, stepped = [], []

    def frame_ids(window):  # (B, C, 3, H, W) -> the 3 frame values
        return [float(v) for v in window[0, 0, :, 0, 0]]

    def fake_observe(window, state=None):
        observed.append(frame_ids(window))
        return state

    def fake_step(window, state=None):
        ids = frame_ids(window)
        stepped.append(ids)
        first = int(ids[0]) + 1
        pred = torch.stack([torch.full_like(window[:, :, 0], first + d + 0.5) for d in range(3)], 2)
        return pred, state

    model.observe, model.step = fake_observe, fake_step
    x = torch.arange(10.0).reshape(1, 10, 1, 1, 1).expand(1, 10, 1, 8, 8)
    out = model(x)
    assert observed == [[j, j + 1, j + 2] for j in range(7)]
    assert stepped[0] == [7, 8, 9]
    assert stepped[1] == [8, 9, 10.5]      # observed frames 8, 9 stay true
    assert stepped[2] == [9, 10.5, 11.5]
    assert stepped[3] == [10.5, 11.5, 12.5]
    assert len(stepped) == 10
    assert out[0, :, 0, 0, 0].tolist() == [t + 0.5 for t in range(10, 20)]


def test_training_loss_sums_teacher_forced_transitions():
    # 16×16 frames keep it fast (depthwise Conv3d backward is slow on CPU); the model is
    # fully convolutional, so the window bookkeeping is the same as at 64×64.
    model = sepcrev_mnist()
    inputs, targets = torch.rand(2, 10, 1, 16, 16), torch.rand(2, 10, 1, 16, 16)
    shapes = []

    def recording_criterion(pred, target):
        shapes.append((tuple(pred.shape), tuple(target.shape)))
        return mse_criterion(pred, target)

    loss, parts = model.training_loss(inputs, targets, recording_criterion, progress=0.5)
    assert loss.ndim == 0 and torch.isfinite(loss)
    assert len(shapes) == 17 and set(shapes) == {((2, 3, 1, 16, 16), (2, 3, 1, 16, 16))}
    assert parts["transitions"].item() == 17
    assert parts["mse"].item() == pytest.approx(loss.item() / 17, rel=1e-5)
    loss.backward()
    for module in (model.autoencoder.blocks[0], model.autoencoder.blocks[-1],
                   model.predictor.cells[0], model.predictor.cells[-1]):
        grads = [p.grad for p in module.parameters()]
        assert all(g is not None for g in grads)
        assert sum(g.abs().sum().item() for g in grads) > 0


def test_training_loss_matches_manual_teacher_forcing_in_eval():
    model = sepcrev_mnist().eval()
    frames = torch.rand(1, 6, 1, 16, 16)
    with torch.no_grad():
        loss, _ = model.training_loss(frames[:, :4], frames[:, 4:], mse_criterion, progress=0.0)
        expected, state = 0.0, None
        for j in range(3):  # 6 frames -> 3 transitions
            pred, state = model.step(frames[:, j:j + 3].transpose(1, 2), state)
            expected += F.mse_loss(pred, frames[:, j + 1:j + 4].transpose(1, 2)).item()
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_state_carries_memory_across_steps():
    model = sepcrev_mnist().eval()
    window = torch.rand(1, 1, 3, 16, 16)
    with torch.no_grad():
        first, state = model.step(window)
        layer_states, memory = state
        assert len(layer_states) == 8 and memory.shape == (1, 32, 3, 2, 2)
        again, _ = model.step(window, state)
        fresh, _ = model.step(window)
    assert torch.allclose(first, fresh)
    assert not torch.allclose(first, again)


# ---------------------------------------------------------------- errors

def test_invalid_arguments_raise_value_error():
    with pytest.raises(ValueError, match="conv type"):
        cr.CrevNetPredictor("depthwise")
    with pytest.raises(ValueError, match="in_channels"):
        cr.CrevNetPredictor(in_channels=2)
    with pytest.raises(ValueError, match="ae_blocks"):
        cr.CrevNetPredictor(ae_blocks=13)
    with pytest.raises(ValueError, match="attention_conv"):
        cr.CrevNetPredictor(attention_conv="5x5x5")
    model = sepcrev_mnist()
    with pytest.raises(ValueError, match="channels"):
        model(torch.rand(1, 10, 3, 64, 64))
    with pytest.raises(ValueError, match="multiples of 8"):
        model(torch.rand(1, 10, 1, 60, 60))
    with pytest.raises(ValueError, match="at least 3"):
        model(torch.rand(1, 2, 1, 64, 64))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_cpu_depthwise_backward_matches_autograd(dtype):
    torch.manual_seed(0)
    x = torch.randn(3, 5, 3, 8, 8, dtype=dtype, requires_grad=True)
    w = torch.randn(5, 1, 3, 3, 3, dtype=dtype, requires_grad=True)
    gy = torch.randn(3, 5, 3, 8, 8, dtype=dtype)
    y = cr._DepthwiseConv3dCPU.apply(x, w)
    gx, gw = torch.autograd.grad(y, (x, w), gy)
    y_ref = F.conv3d(x, w, padding=1, groups=5)
    gx_ref, gw_ref = torch.autograd.grad(y_ref, (x, w), gy)
    tol = 1e-5 if dtype == torch.float32 else 5e-2
    assert torch.allclose(y, y_ref, atol=tol, rtol=tol)
    assert torch.allclose(gx.float(), gx_ref.float(), atol=tol * 10, rtol=tol)
    assert torch.allclose(gw.float(), gw_ref.float(), atol=tol * 100, rtol=tol * 10)
    assert gx.dtype == x.dtype and gw.dtype == w.dtype


def test_sepconv_takes_the_fast_cpu_path_only_where_it_applies():
    conv = cr.SepConv3d(4, 6)
    strided = cr.SepConv3d(4, 6, stride=(1, 2, 2))
    assert conv._fast_cpu_path and not strided._fast_cpu_path
    x = torch.randn(2, 4, 3, 8, 8, requires_grad=True)
    y = conv(x)
    assert y.grad_fn.next_functions[0][0].name().startswith("_DepthwiseConv3dCPU")
    reference = conv.pointwise(conv.depthwise(x))
    assert torch.allclose(y, reference, atol=1e-6)
