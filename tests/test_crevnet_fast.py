"""The small-map fast path of the separable model computes what the modules computed before it.

The reference is `tests/crevnet_v0.py`, a frozen copy of vpstudy/models/crevnet.py from before
the fast path. The current model's state dict loads into it unchanged (same names and shapes),
and both run the same inputs:

- in float64, loss, outputs and every gradient agree to ~1e-10 (the maths is the same);
- in float32, outputs and the loss agree within 1e-5 relative, and every gradient within 1e-5
  of the model's largest gradient entry. (Per tensor, a few autoencoder BatchNorm gradients
  are sums that cancel to 1e-4 of their terms: there the old code's own float32 result is
  1e-3 from its float64 one, so a per-tensor 1e-5 bound would test rounding, not maths. The
  predictor's own gradients, which the fast path computes, are held to 1e-5 per tensor.)
"""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from tests import crevnet_v0
from vpstudy.models import build_model

pytestmark = pytest.mark.usefixtures("one_thread")


def mse(pred, target):
    loss = F.mse_loss(pred, target)
    return loss, {"mse": loss.detach()}


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / b.abs().max()).item()


def pair(conv: str, size: int, dtype=torch.float32):
    """(current model, frozen reference with the same weights) for 3 observed -> 3 predicted frames."""
    torch.manual_seed(0)
    name = "sepcrev" if conv == "separable" else "crevnet"
    new = build_model(name, in_shape=(3, 1, size, size), out_frames=3).to(dtype)
    old = crevnet_v0.CrevNetPredictor(conv, in_frames=3, out_frames=3).to(dtype)
    old.load_state_dict(new.state_dict())
    return new, old


def loss_and_grads(model, frames):
    model.train()
    model.zero_grad()
    loss, _ = model.training_loss(frames[:, :3], frames[:, 3:], mse, progress=0.5)
    loss.backward()
    return loss.detach(), {k: p.grad.clone() for k, p in model.named_parameters()}


def test_same_parameters_and_fast_path_where_documented():
    new, old = pair("separable", 32)
    assert {k: v.shape for k, v in new.state_dict().items()} == {k: v.shape for k, v in old.state_dict().items()}
    assert sum(p.numel() for p in build_model("sepcrev").parameters()) == 368_706
    pred = new.predictor
    assert pred.packed(torch.zeros(2, 32, 3, 4, 4)) is not None       # 32x32 frames
    assert pred.packed(torch.zeros(2, 32, 3, 2, 2)) is not None       # 16x16
    assert pred.packed(torch.zeros(2, 32, 3, 8, 8)) is None           # 64x64: the modules
    assert build_model("crevnet").predictor.packed(torch.zeros(2, 32, 3, 4, 4)) is None
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert pred.packed(torch.zeros(2, 32, 3, 4, 4)) is None


@pytest.mark.parametrize("size", [16, 32])
def test_training_loss_and_gradients_equal_the_frozen_model_in_float64(size):
    new, old = pair("separable", size, torch.float64)
    frames = torch.rand(2, 6, 1, size, size, dtype=torch.float64)
    (loss, grads), (ref_loss, ref_grads) = loss_and_grads(new, frames), loss_and_grads(old, frames)
    assert rel(loss, ref_loss) < 1e-12
    assert grads.keys() == ref_grads.keys()
    assert max(rel(grads[k], ref_grads[k]) for k in grads) < 1e-8


@pytest.mark.parametrize("size", [16, 32])
def test_training_loss_and_gradients_equal_the_frozen_model_in_float32(size):
    new, old = pair("separable", size)
    frames = torch.rand(2, 6, 1, size, size)
    (loss, grads), (ref_loss, ref_grads) = loss_and_grads(new, frames), loss_and_grads(old, frames)
    assert rel(loss, ref_loss) < 1e-5
    scale = max(g.abs().max() for g in ref_grads.values())
    assert max((grads[k] - ref_grads[k]).abs().max() for k in grads) / scale < 1e-5
    assert max(rel(grads[k], ref_grads[k]) for k in grads if k.startswith("predictor.")) < 1e-5
    # the BatchNorm running statistics (updated in the forward passes) agree too
    for k, v in old.state_dict().items():
        assert torch.allclose(new.state_dict()[k].float(), v.float(), rtol=1e-5, atol=1e-7), k


def test_predictions_equal_the_frozen_model():
    new, old = pair("separable", 32)
    x = torch.rand(2, 3, 1, 32, 32)
    new.eval(), old.eval()
    with torch.no_grad():
        expected = old(x)
        assert rel(new(x), expected) < 1e-5
    with torch.inference_mode():
        assert rel(new(x), expected) < 1e-5
    # the public one-window step keeps the modules' state layout
    with torch.no_grad():
        window = x.transpose(1, 2)
        (a, state), (b, ref_state) = new.step(window), old.step(window)
        assert rel(a, b) < 1e-5 and state[1].shape == ref_state[1].shape == (2, 32, 3, 4, 4)
        assert rel(new.step(window, state)[0], old.step(window, ref_state)[0]) < 1e-5


def test_crevnet_is_unchanged_bit_for_bit():
    new, old = pair("standard", 16)
    frames = torch.rand(2, 6, 1, 16, 16)
    (loss, grads), (ref_loss, ref_grads) = loss_and_grads(new, frames), loss_and_grads(old, frames)
    assert torch.equal(loss, ref_loss)
    assert all(torch.equal(grads[k], ref_grads[k]) for k in grads)


def test_packed_weights_are_reused_without_grad_and_repacked_when_the_weights_change():
    from vpstudy.models import crevnet

    new, _ = pair("separable", 32)
    new.eval()
    x = torch.rand(2, 3, 1, 32, 32)
    like = torch.zeros(2, 32, 3, 4, 4)
    with torch.inference_mode():
        first = new(x)
        packed = new.predictor.packed(like)
        assert new.predictor.packed(like) is packed                 # reused: no gathers per clip
        assert torch.equal(new(x), first)
    with torch.no_grad():
        assert new.predictor.packed(like) is packed
        assert new.predictor.packed(torch.zeros(1, 32, 3, 4, 4)) is not packed   # another batch
    assert new.predictor.packed(like) is not new.predictor.packed(like)          # training: fresh
    # the reference: packing anew on every call (the cache emptied before each prediction)
    def fresh(model, inputs):
        crevnet._PACKED_WITHOUT_GRAD.clear()
        with torch.inference_mode():
            return model(inputs)
    assert torch.equal(fresh(new, x), first)
    # an optimizer step, or loading other weights, changes the prediction at once
    opt = torch.optim.SGD(new.parameters(), lr=0.1)
    new.train()
    loss, _ = new.training_loss(x, x, mse, progress=0.5)
    loss.backward()
    opt.step()
    new.eval()
    with torch.inference_mode():
        after_step = new(x)
    assert not torch.equal(after_step, first)
    assert torch.equal(after_step, fresh(new, x))
    other = build_model("sepcrev", in_shape=(3, 1, 32, 32), out_frames=3)
    new.load_state_dict(other.state_dict())
    other.eval()
    with torch.inference_mode():
        assert torch.equal(new(x), fresh(other, x))
