"""Every registered model against the trainer's model contract (driven by the registry, like
timm's tests over `list_models()`): forward shape, one training step as the trainer takes it,
a checkpoint round trip, and the efficiency row."""

from __future__ import annotations

import pytest
import torch

from vpstudy.checkpoints import load_checkpoint, save_checkpoint
from vpstudy.config import make_config
from vpstudy.efficiency import describe_model
from vpstudy.losses import VideoPredictionLoss
from vpstudy.models import VideoPredictor, build_model, default_input_shape, list_models
from vpstudy.train import loss_of


def small_shape(name: str) -> tuple[int, int, int, int]:
    """4 observed frames of the model's channels, at the smallest size its layout takes."""
    _, c, h, _ = default_input_shape(name)
    return (4, c, 64 if name == "svg" else 32, 64 if name == "svg" else 32)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("name", list_models())
def test_registered_model_fits_the_trainer(name, tmp_path):
    torch.manual_seed(0)
    shape = small_shape(name)
    model = build_model(name, in_shape=shape, out_frames=4)
    assert isinstance(model, VideoPredictor) and model.name == name and model.out_frames == 4
    x, y = torch.rand(2, *shape), torch.rand(2, 4, *shape[1:])
    with torch.no_grad():
        assert model.eval()(x).shape == (2, 4, *shape[1:])

    params = [p for p in model.parameters() if p.requires_grad]
    if params:                                  # one step as the trainer takes it
        model.train()
        before = [p.detach().clone() for p in params]
        loss, parts = loss_of(model, x, y, VideoPredictionLoss(), progress=0.5)
        assert loss.ndim == 0 and torch.isfinite(loss) and "mse" in parts
        opt = torch.optim.Adam(params, lr=1e-3)
        loss.backward()
        opt.step()
        assert any(not torch.equal(a, p) for a, p in zip(before, params))

    path = tmp_path / "checkpoint.pt"           # checkpoint round trip into a fresh model
    save_checkpoint(path, make_config("smoke"), 0, model, None, None, [])
    fresh = build_model(name, in_shape=shape, out_frames=4)
    load_checkpoint(path, model=fresh)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), fresh.state_dict().values()))

    row = describe_model(model.eval(), (1, *shape))
    assert row["params"] == sum(p.numel() for p in model.parameters())
    assert ("macs_per_step" in row) == bool(model.window_frames)
