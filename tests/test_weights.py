"""The shipped weights: manifest, digests and configs, that they reproduce their numbers, the
errors of a damaged or mismatching file, and the export that makes them."""

import json
import shlex
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from vpstudy import runs
from vpstudy.__main__ import main
from vpstudy.cli_args import parse_config_flags
from vpstudy.config import TrainConfig
from vpstudy.data import fixed_test_set
from vpstudy.evaluate import evaluate
from vpstudy.train import load_run_model
from vpstudy.weights import (
    BUDGET_BYTES,
    FP16_TOLERANCE,
    METRICS,
    WeightsError,
    choose_runs,
    export_weights,
    file_sha256,
    load_trained,
    read_manifest,
    regenerate_command,
    weights_dir,
)

pytestmark = pytest.mark.usefixtures("one_thread")
SHIPPED = weights_dir()


def test_the_shipped_manifest_matches_its_files_and_records():
    manifest = read_manifest()
    assert "gsta" in manifest["models"]
    assert sum(e["bytes"] for e in manifest["models"].values()) <= BUDGET_BYTES
    for name, e in manifest["models"].items():
        path = SHIPPED / e["file"]
        assert path.stat().st_size == e["bytes"] and file_sha256(path) == e["sha256"]
        cfg = TrainConfig.from_dict(e["config"])
        assert runs.run_id(cfg.identity()) == e["run_id"] and cfg.model == name and cfg.profile == "cpu"
        committed = runs.RunDir(runs.REPO / "runs" / e["run_id"])
        if committed.exists():                       # the manifest's numbers are the record's
            rec = committed.load()
            assert e["record"]["test"] == {k: v for k, v in rec["test"].items() if k != "per_frame"}
            assert e["record"]["val"]["mse"] == rec["history"][-1]["val"]["mse"]
        check = e["dtype_check"]
        assert (e["dtype"] == "float16") == (check["max_relative_change"] <= FP16_TOLERANCE)
        if e["record_check"]["record"]:             # the exported weights gave the record's own numbers
            for k, v in e["record_check"]["record"].items():
                assert e["record_check"]["weights_fp32"][k] == pytest.approx(v, rel=1e-5)
        if not e["best_run"]["has_weights"]:
            assert e["selection"].startswith(f"the best available: run {e['best_run']['run_id']}")
    for name, s in manifest.get("skipped", {}).items():
        assert name not in manifest["models"] and "re-train it with: OMP_NUM_THREADS=" in s["reason"]


@pytest.mark.parametrize("name", sorted(read_manifest(missing_ok=True)["models"]))
def test_shipped_weights_reproduce_their_manifest_numbers(name):
    e = read_manifest()["models"][name]
    model, cfg = load_trained(name)
    want = e["reproduce"]
    test = fixed_test_set(cfg)[: want["sequences"]]
    got = evaluate(model, test, cfg, torch.device("cpu"), None)[0]     # fp32 compute, as recorded
    for k in METRICS:
        assert got[k] == pytest.approx(want["metrics"][k], rel=1e-4), k


@pytest.fixture
def copied(tmp_path):
    dest = tmp_path / "weights"
    shutil.copytree(SHIPPED, dest)
    return dest


def test_a_damaged_file_is_a_clear_error(copied):
    path = copied / read_manifest(copied)["models"]["gsta"]["file"]
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01                     # one bit of one weight
    path.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match="does not match its SHA-256 .* restore it"):
        load_trained("gsta", copied)
    path.unlink()
    with pytest.raises(WeightsError, match=r"gsta.safetensors is missing \(named in"):
        load_trained("gsta", copied)


def test_a_config_mismatch_is_a_clear_error(copied):
    manifest = read_manifest(copied)
    manifest["models"]["gsta"]["config"]["lambda2"] = 0.5          # the manifest names another config
    (copied / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(WeightsError, match=r"exported from another config .*'lambda2': \(0\.1, 0\.5\)"):
        load_trained("gsta", copied)


def test_missing_weights_say_what_to_do(copied, tmp_path):
    with pytest.raises(WeightsError, match="no shipped weights for model 'crevnet' .*Use --run DIR"):
        load_trained("crevnet", copied)
    with pytest.raises(WeightsError, match="manifest.json is missing"):
        load_trained("gsta", tmp_path / "nowhere")


def test_weights_list_verifies_every_file(capsys, copied):
    assert main(["weights", "list", "--out", str(copied)]) == 0
    assert "gsta" in capsys.readouterr().out
    (copied / "gsta.safetensors").write_bytes(b"\0" * 10)
    assert main(["weights", "list", "--out", str(copied)]) == 2
    assert "SHA-256" in capsys.readouterr().err


def _rec(rid, model, val, seed=0, **config):
    return {"id": rid, "config": {"model": model, "profile": "cpu", "seed": seed, **config},
            "history": [{"val": {"mse": val}}]}


def test_choice_of_runs_best_config_then_best_seed_and_best_available():
    recs = [_rec("a0", "m", 10.0, 0, lr=1), _rec("a1", "m", 12.0, 1, lr=1),     # config a: mean 11
            _rec("b0", "m", 11.5, 0, lr=2), _rec("b1", "m", 10.9, 1, lr=2),     # config b: mean 11.2
            _rec("c0", "n", 5.0), {**_rec("base", "m", 1.0), "history": []},   # a baseline trains nothing
            {**_rec("p", "m", 1.0), "config": {"model": "m", "profile": "paper", "seed": 0}}]
    chosen = choose_runs(recs, lambda rid: Path(rid) if rid in ("a0", "b1") else None)
    assert chosen["m"].best["id"] == "a0" and chosen["m"].is_best
    chosen = choose_runs(recs, lambda rid: Path(rid) if rid in ("a1", "b1") else None)
    assert chosen["m"].best["id"] == "a0" and chosen["m"].chosen["id"] == "b1" and not chosen["m"].is_best
    assert chosen["n"].chosen is None and chosen["n"].checkpoint is None


def test_regenerate_command_trains_the_same_run():
    rid = "sepcrev-cpu-s2-b75c9aebc6"
    rec = runs.RunDir(runs.REPO / "runs" / rid).load()
    argv = shlex.split(regenerate_command(rec))
    assert argv[:4] == ["OMP_NUM_THREADS=1", "python", "-m", "vpstudy"] and argv[4] == "train"
    assert argv[-2:] == ["--runs", runs.SCRATCH]
    assert runs.run_id(parse_config_flags(argv[5:-2]).identity()) == rid


def test_export_from_a_trained_run(trained_runs, tmp_path):
    root, rec, _ = trained_runs
    lines = []
    manifest = export_weights([root], tmp_path, profile="smoke", log=lines.append)
    assert list(manifest["models"]) == ["poolformer"]                 # the baseline has no weights
    e = manifest["models"]["poolformer"]
    assert e["run_id"] == rec["id"] and e["best_run"]["has_weights"] and e["dtype"] in ("float16", "float32")
    n = e["record_check"]["sequences"]
    with np.load(Path(rec["_dir"]) / runs.PER_SEQUENCE) as f:
        assert e["record_check"]["record"]["mse"] == pytest.approx(float(f["mse"][:n].mean()))
    assert e["record_check"]["weights_fp32"]["mse"] == pytest.approx(e["record_check"]["record"]["mse"], rel=1e-5)
    model, cfg = load_trained("poolformer", tmp_path)
    ref, _ = load_run_model(rec["_dir"])
    x = fixed_test_set(cfg)[:2, :10]
    tol = 0 if e["dtype"] == "float32" else 1e-2
    torch.testing.assert_close(model(x), ref(x), atol=tol, rtol=tol)
    assert lines[-1].startswith(f"wrote {tmp_path / 'manifest.json'}: 1 models")
    with pytest.raises(ValueError, match=r"no completed smoke-profile runs of \['gsta'\]"):
        export_weights([root], tmp_path, models=["gsta"], profile="smoke", log=lines.append)


def test_export_refuses_a_retrained_checkpoint_that_did_not_reproduce_its_record(trained_runs, tmp_path):
    root, rec, _ = trained_runs
    committed, retrained = tmp_path / "runs", tmp_path / "runs-scratch"
    shutil.copytree(rec["_dir"], committed / rec["id"], ignore=shutil.ignore_patterns(runs.CHECKPOINT))
    shutil.copytree(rec["_dir"], retrained / rec["id"])
    manifest = export_weights([committed, retrained], tmp_path / "w", profile="smoke", log=lambda s: None)
    assert manifest["models"]["poolformer"]["run_id"] == rec["id"]          # reproduced: exported
    rd = runs.RunDir(retrained / rec["id"])
    other = rd.load()
    other["test"]["mse"] *= 1.01
    rd.save(other)
    with pytest.raises(WeightsError, match="re-trained run's test MSE .* is not the recorded"):
        export_weights([committed, retrained], tmp_path / "w", profile="smoke", log=lambda s: None)
