"""The ablation notebook's parameters: typed, validated, and the study runner's failure path."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from vpstudy.notebook import ablation_config

REPO = Path(__file__).resolve().parent.parent
NOTEBOOK = REPO / "notebooks" / "ablation.ipynb"


def _defaults() -> dict:
    nb = json.loads(NOTEBOOK.read_text())
    cell = next(c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", []))
    ns: dict = {}
    exec("".join(cell["source"]), ns)
    return {k: v for k, v in ns.items()                                 # less the cell's imports
            if not k.startswith("__") and k not in ("Optional", "guard_injected_parameters")}


def test_notebook_defaults_give_the_profile_defaults(monkeypatch):
    monkeypatch.setenv("VPSTUDY_PROFILE", "smoke")
    params = _defaults()
    cfg = ablation_config({**params, "lambda2": 0.1})
    assert cfg.profile == "smoke" and cfg.lambda2 == 0.1 and cfg.model == "gsta"
    assert cfg.epochs == 1 and cfg.batch_size == 4          # None means "the profile's default"
    assert ablation_config({**params, "profile": "paper"}).sequences_per_epoch == 10_000
    assert ablation_config({**params, "extra_test_digits": "3"}).extra_test_digits == (3,)


def test_every_notebook_parameter_is_known():
    from vpstudy.notebook import CONFIG_PARAMS, RUNNER_PARAMS

    assert set(_defaults()) <= CONFIG_PARAMS | RUNNER_PARAMS


@pytest.mark.parametrize("bad, match", [
    ({"lamda2": 0.1}, "unknown notebook parameter.*lamda2"),
    ({"lambda2": -1.0}, "lambda2 must be"),
    ({"model": "unet"}, "model='unet' is not allowed"),
    ({"augment": "rotate"}, "augment='rotate'"),
])
def test_bad_parameters_fail_with_a_clear_message(bad, match, monkeypatch):
    monkeypatch.setenv("VPSTUDY_PROFILE", "smoke")
    with pytest.raises(ValueError, match=match):
        ablation_config({**_defaults(), **bad})


@pytest.mark.slow
def test_papermill_stops_in_the_first_cells_on_a_bad_parameter(tmp_path):
    res = subprocess.run([sys.executable, "-m", "papermill", str(NOTEBOOK), str(tmp_path / "out.ipynb"),
                          "-p", "lamda2", "0.1", "--cwd", str(REPO)], capture_output=True, text=True,
                         timeout=300)
    assert res.returncode != 0
    assert "unknown notebook parameter(s) ['lamda2']" in res.stderr + res.stdout
    out = json.loads((tmp_path / "out.ipynb").read_text())
    executed = [c for c in out["cells"] if c["cell_type"] == "code" and c.get("execution_count")]
    assert len(executed) <= 3                                # parameters, injected, validation


@pytest.mark.slow
def test_study_runner_records_a_failed_run_and_carries_on(tmp_path, monkeypatch, capsys):
    from vpstudy import runs
    from vpstudy.study import run_study

    study = tmp_path / "tiny.toml"
    study.write_text("""
name = "tiny"
[defaults]
model = "last-frame"
epochs = 1
[profiles.smoke]
epochs_scale = 1.0
sequences_per_epoch = 1
batch_size = 1
val_sequences = 2
test_sequences = 2
[tables.T]
caption = "tiny"
[[runs]]
table = "T"
row = "works"
[[runs]]
table = "T"
row = "missing test file"
test_file = "/nonexistent/mnist_test_seq.npy"
""")
    status = run_study(str(study), profile="smoke", root=tmp_path / "runs")
    assert status == 1
    recs = {r["config"].get("test_file"): r for r in runs.load_records(tmp_path / "runs", status=None)}
    assert recs[None]["status"] == "completed"
    failed = recs["/nonexistent/mnist_test_seq.npy"]
    assert failed["status"] == "failed" and "mnist_test_seq.npy" in failed["error"]
    assert (Path(tmp_path / "runs" / recs[None]["id"] / "ablation.ipynb")).exists()
    err = capsys.readouterr().err
    assert "failed:" in err
    # a second call skips the completed run and retries only the failed one
    assert run_study(str(study), profile="smoke", root=tmp_path / "runs") == 1
    assert "1 already completed" in capsys.readouterr().out


# ---------------------------------------------------------------- every parameter, wrong values

_CHOICES = {"model", "activation", "augment", "schedule", "dataset", "digit_source", "profile", "device",
            "precision"}
_POSITIVE = {"epochs", "batch_size", "sequences_per_epoch", "val_sequences", "test_sequences",
             "in_frames", "out_frames", "image_size", "downsample", "num_digits", "crop_size", "threads"}
_NON_NEGATIVE = {"seed", "val_every"}
_FLOATS = {"lambda1", "lambda2", "tau", "lr"}
_PATHS = {"data_root", "test_file", "runs_root"}
_FLAGS = {"compile", "force"}
_OUT_OF_RANGE = {"num_digits": [7, 12], "image_size": [65, 33], "downsample": [3, 5],
                 "batch_size": [17, 10**6], "sequences_per_epoch": [1, 3], "crop_size": [65, 1000],
                 "lr": [1.0, 1.5, 100.0, 0.0]}       # None means "the profile's default"; 0 is wrong


def _wrong_values(name: str, rng) -> list:
    """Values of a wrong type or out of range for notebook parameter ``name``."""
    neg_int, neg_float = -rng.randint(1, 10**6), -rng.uniform(1e-6, 1e6)
    word = "".join(rng.choice("abcdefghij") for _ in range(rng.randint(1, 8)))
    values = [[1, 2], {"a": 1}]
    if name in _CHOICES:
        values += [f"no-{word}", rng.randint(1, 99), rng.uniform(0.1, 9), True]
    elif name in _POSITIVE or name in _NON_NEGATIVE:
        values += [neg_int, rng.uniform(0.1, 9.9) + 0.05, word, True] + ([0] if name in _POSITIVE else [])
    elif name in _FLOATS:
        values += [neg_float, word, True, float("nan"), float("inf")] + ([] if name == "tau" else [-0.5])
    elif name in _PATHS:
        values += [rng.randint(1, 99), rng.uniform(0.1, 9), True]
    elif name in _FLAGS:
        values += ["yes", rng.randint(1, 99), rng.uniform(0.1, 9)]
    elif name == "extra_test_digits":
        values = [word, f"3,{word}", neg_int, rng.uniform(0.1, 9), True, [3, word]]
    else:
        raise AssertionError(f"no wrong values for new notebook parameter {name!r}: add it here")
    return values + _OUT_OF_RANGE.get(name, [])


def test_every_parameter_rejects_random_wrong_values_naming_it(monkeypatch):
    """Property-style: for every name in the parameters cell, random wrong types and values out
    of range fail validation with a message naming that parameter."""
    import random

    monkeypatch.setenv("VPSTUDY_PROFILE", "smoke")
    defaults = _defaults()
    ablation_config(defaults)                                  # the defaults themselves are fine
    rng = random.Random(9)
    for round_ in range(3):
        for name in sorted(defaults):
            for value in _wrong_values(name, rng):
                with pytest.raises(ValueError) as e:
                    ablation_config({**defaults, name: value})
                assert name in str(e.value), (name, value, str(e.value))


@pytest.mark.slow
def test_papermill_with_a_wrong_value_stops_early_and_creates_no_run(tmp_path):
    root = tmp_path / "runs"
    root.mkdir()
    res = subprocess.run([sys.executable, "-m", "papermill", str(NOTEBOOK), str(tmp_path / "out.ipynb"),
                          "-p", "epochs", "-3", "-p", "runs_root", str(root), "-p", "profile", "smoke",
                          "--cwd", str(REPO)], capture_output=True, text=True, timeout=300)
    assert res.returncode != 0
    assert "epochs must be a positive integer, got -3" in res.stderr + res.stdout
    out = json.loads((tmp_path / "out.ipynb").read_text())
    executed = [c for c in out["cells"] if c["cell_type"] == "code" and c.get("execution_count")]
    assert len(executed) <= 3                                  # parameters, injected, validation
    assert list(root.iterdir()) == []


# ---------------------------------------------------------------- papermill's injected cell (issue 24)


def _injected(params: dict) -> str:
    from papermill.translators import PythonTranslator

    return PythonTranslator.codify(params, "Parameters")      # the cell papermill writes


def test_injected_parameters_with_code_in_a_name_or_an_unknown_name_never_run(tmp_path):
    """In a real IPython shell: the notebook's parameters cell, then papermill's injected cell.
    A misspelt name (given as YAML, a list) and a name that carries code are refused before any
    line of the injected cell runs; known names with literal values run as before."""
    from IPython.core.interactiveshell import InteractiveShell

    nb = json.loads(NOTEBOOK.read_text())
    params_cell = "".join(next(c for c in nb["cells"] if "parameters" in c["metadata"].get("tags", []))["source"])
    shell = InteractiveShell.instance()
    try:
        marker = tmp_path / "ran"
        code_name = f"x = 1\nopen({str(marker)!r}, 'w').close()\ny"
        for params, refused in (({"lambda2": 0.5, "lamda2": [0.1]}, "unknown notebook parameter(s) ['lamda2']"),
                                ({"epochs": 3, code_name: 1}, "is not `name = value`: \"open(")):
            shell.run_cell(params_cell)
            result = shell.run_cell(_injected(params))
            assert isinstance(result.error_in_exec, ValueError), params
            assert str(result.error_in_exec).startswith("papermill's parameters were refused before any of them ran")
            assert refused in str(result.error_in_exec)
            assert shell.user_ns["lambda2"] == 0.0 and shell.user_ns["epochs"] is None   # nothing ran
            assert not marker.exists()
        shell.run_cell(params_cell)
        assert shell.run_cell(_injected({"lambda2": 0.5, "extra_test_digits": "3"})).success
        assert shell.user_ns["lambda2"] == 0.5
        assert sum(getattr(t, "vpstudy_guard", False) for t in shell.input_transformers_cleanup) == 1
    finally:
        InteractiveShell.clear_instance()


def test_a_misspelt_parameter_given_as_yaml_is_refused_by_the_validation_too(monkeypatch):
    monkeypatch.setenv("VPSTUDY_PROFILE", "smoke")
    with pytest.raises(ValueError, match=r"unknown notebook parameter\(s\) \['lamda2'\]"):
        ablation_config({**_defaults(), "lamda2": [0.1]})


@pytest.mark.slow
def test_papermill_refuses_a_name_carrying_code_before_it_runs(tmp_path):
    marker = tmp_path / "ran"
    res = subprocess.run([sys.executable, "-m", "papermill", str(NOTEBOOK), str(tmp_path / "out.ipynb"),
                          "-p", f"x = 1\nopen({str(marker)!r}, 'w').close()\ny", "1", "-p", "profile", "smoke",
                          "--cwd", str(REPO)], capture_output=True, text=True, timeout=300)
    assert res.returncode != 0 and "papermill's parameters were refused" in res.stderr + res.stdout
    assert not marker.exists()
