"""The command line: describe prints one JSON object; bad parameters fail before any work."""

import json

import pytest

from vpstudy.__main__ import main


@pytest.mark.parametrize("model, params", [("gsta", 6_456_065), ("sepcrev", 368_706), ("last-frame", 0)])
def test_describe_json(model, params, capsys):
    assert main(["describe", model, "--json"]) == 0
    info = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert info["params"] == params
    assert {"size_bytes", "macs", "flops"} <= set(info)
    assert info["flops"] == 2 * info["macs"]
    if model == "sepcrev":
        assert abs(info["macs_per_step"] - 0.078e9) / 0.078e9 < 0.01


def test_describe_shows_the_papers_figure_and_why_ours_differs(capsys):
    assert main(["describe", "sepcrev-bair", "--json"]) == 0
    info = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (info["params"], info["paper_params"]) == (4_663_182, "727.26K")
    assert "KTH layout" in info["paper_note"] and "BAIR layout" in info["description"]


def test_train_rejects_bad_parameters_before_any_work(capsys, tmp_path):
    assert main(["train", "--model", "gsta", "--lambda2", "-1", "--runs", str(tmp_path)]) == 2
    assert "lambda2 must be a finite number >= 0" in capsys.readouterr().err
    assert main(["train", "--model", "incepu", "--activation", "starrelu", "--runs", str(tmp_path)]) == 2
    assert "no configurable activation" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_config_flags_take_the_fields_types():
    from vpstudy.__main__ import build_parser

    a = build_parser().parse_args(["train", "--crop-size", "30", "--lr", "0.01", "--no-compile",
                                   "--seed", "3", "--test-file", "x.npy", "--extra-test-digits", "3", "4"])
    got = (a.crop_size, a.lr, a.compile, a.seed, a.test_file, a.extra_test_digits)
    assert got == (30, 0.01, False, 3, "x.npy", [3, 4])
    assert type(a.crop_size) is int and type(a.lr) is float
