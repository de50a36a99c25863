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


# ---------------------------------------------------------------- identity (issue 24)


def test_equivalent_spellings_are_one_run_and_keep_the_canonical_id(monkeypatch):
    from vpstudy import runs
    from vpstudy.notebook import ablation_config

    def rid(**kw):
        return runs.run_id(make_config("smoke", **kw).identity())

    canonical = rid(extra_test_digits=(3,))
    for spelling in ("3", 3, [3], "3,3", (3, 3), "2,3", [3, 2]):    # 2 is the main test set's count
        assert rid(extra_test_digits=spelling) == canonical, spelling
    assert rid(extra_test_digits="4,3") == rid(extra_test_digits=[3, 4])
    assert rid(extra_test_digits="2") == rid(extra_test_digits=2) == rid(extra_test_digits=[2]) == rid()
    plain = rid()
    assert rid(data_root="/data/kth") == plain                      # not read for Moving MNIST
    assert rid(crop_size=40) == plain and rid(crop_size=40, augment="crop") != rid(augment="crop")
    assert rid(test_file="") == rid(digit_root="", data_root="") == plain
    assert make_config("smoke", extra_test_digits="3,3").to_dict()["extra_test_digits"] == [3]
    monkeypatch.setenv("VPSTUDY_PROFILE", "smoke")
    assert runs.run_id(ablation_config({"extra_test_digits": "2"}).identity()) == plain


def test_the_test_file_content_is_part_of_the_run_identity(tmp_path):
    import hashlib

    import numpy as np

    from vpstudy import runs
    from vpstudy.config import TrainConfig
    from vpstudy.data import DataError
    from vpstudy.data.prepare import check_test_file

    path = tmp_path / "mnist_test_seq.npy"
    np.save(path, np.zeros((20, 4, 64, 64), np.uint8))
    zeros = make_config("smoke", test_file=str(path))
    assert zeros.identity()["test_file_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    np.save(path, np.full((20, 4, 64, 64), 255, np.uint8))          # changed in place
    ones = make_config("smoke", test_file=str(path))
    assert runs.run_id(ones.identity()) != runs.run_id(zeros.identity())
    with pytest.raises(DataError, match=f"test_file {path} has changed since this run's config was made"):
        check_test_file(zeros)
    check_test_file(ones)
    again = TrainConfig.from_dict(zeros.to_dict())                   # a record's config: its own digest
    assert runs.run_id(again.identity()) == runs.run_id(zeros.identity())
    assert runs.config_run_id(zeros.to_dict()) == runs.run_id(zeros.identity())
    assert "test_file_sha256" not in make_config("smoke").identity()  # ids without a test file unchanged


def test_an_empty_runs_folder_is_refused(capsys):
    from vpstudy.__main__ import main

    for argv in (["train", "--runs", ""], ["study", "simvp", "--runs", " "], ["report", "--runs", ""]):
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert e.value.code == 2
        assert "--runs: is empty (an unset shell variable?)" in capsys.readouterr().err
