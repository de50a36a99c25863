import pytest

from vpstudy.config import PROFILE_DEFAULTS, TrainConfig, make_config


def test_profiles_set_defaults_and_overrides_win():
    smoke = make_config("smoke")
    assert smoke.epochs == PROFILE_DEFAULTS["smoke"]["epochs"]
    assert smoke.profile == "smoke"
    paper = make_config("paper", lambda2=0.1, batch_size=16, epochs=200)
    assert (paper.sequences_per_epoch, paper.batch_size, paper.epochs, paper.lambda2) == (10_000, 16, 200, 0.1)
    assert paper.steps_per_epoch == 625          # OpenSTL: 625 steps/epoch at batch 16, drop_last


def test_profile_from_environment(monkeypatch):
    monkeypatch.setenv("VPSTUDY_PROFILE", "smoke")
    assert make_config().profile == "smoke"


@pytest.mark.parametrize("bad, match", [
    (dict(model="resnet"), "model='resnet' is not allowed"),
    (dict(lambda1=-0.5), "lambda1 must be a finite number >= 0"),
    (dict(lambda2=float("nan")), "lambda2"),
    (dict(epochs=0), "epochs must be a positive integer"),
    (dict(batch_size=-4), "batch_size must be a positive integer"),
    (dict(crop_size=80), "cannot be larger than the frame"),
    (dict(augment="rotate"), "augment='rotate' is not allowed"),
    (dict(activation="relu"), "activation='relu'"),
    (dict(lr=2.0), "lr must be"),
    (dict(batch_size=64, sequences_per_epoch=16), "no step"),
    (dict(seed=-1), "seed"),
    (dict(unknown_thing=1), "unknown parameter"),
])
def test_bad_values_raise_clear_errors(bad, match):
    with pytest.raises(ValueError, match=match):
        make_config("smoke", **bad)


def test_roundtrip_and_identity():
    cfg = make_config("smoke", lambda2=0.1, extra_test_digits=[3])
    again = TrainConfig.from_dict(cfg.to_dict())
    assert again == cfg
    ident = cfg.identity()
    assert "device" not in ident and ident["lambda2"] == 0.1
    with pytest.raises(ValueError, match="unknown config field"):
        TrainConfig.from_dict({**cfg.to_dict(), "bogus": 1})
