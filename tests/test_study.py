"""Studies as data, the runner's bookkeeping, and the report built from records alone."""

import hashlib
from pathlib import Path

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from vpstudy import metrics, runs
from vpstudy.report import build_report, embed_images, notebook_view, overview, study_tables
from vpstudy.report import records_by_id as runs_by_id
from vpstudy.report.markdown import NOTEBOOK_CSS
from vpstudy.study import load_study, profile_params, study_runs, unique_runs


def test_simvp_study_covers_tables_1_to_5_at_every_profile():
    study = load_study("simvp")
    assert set(study["tables"]) == {"Table 1", "Table 2", "Table 3", "Table 4", "Table 5"}
    rows = study_runs("simvp", "paper")
    assert len(rows) == 24                  # 22 table rows + the two baselines
    distinct = unique_runs(rows)
    assert len(distinct) == 18              # shared rows (e.g. T1 'Disabled' = T2 'GELU') train once
    t5 = {r.row: r.config for r in rows if r.table == "Table 5"}
    gl = t5["SimVPv2-L (gSTA-L), lambda2 0"]
    assert (gl.model, gl.epochs, gl.batch_size, gl.lambda1, gl.activation) == ("gsta-l", 200, 16, 0.5, "starrelu")
    t1 = {r.row: r.config for r in rows if r.table == "Table 1"}
    assert t1["Crop and Flip"].augment == "crop+flip" and t1["Crop and Flip"].batch_size == 32
    # the cpu profile keeps the paper's 100:200 epoch ratio and 2:1 batch ratio (at half the
    # paper's batch sizes), at 32x32 frames
    cpu = {(r.table, r.row): r.config for r in study_runs("simvp", "cpu") if r.config.seed == 0}
    t4 = {row: c for (table, row), c in cpu.items() if table == "Table 4"}
    assert t4["200 ep, bs 16, lambda2 0"].epochs == 2 * t4["100 ep, bs 16, lambda2 0"].epochs
    assert cpu[("Table 4", "100 ep, bs 32, lambda2 0.5")].batch_size == 16
    assert cpu[("Table 4", "100 ep, bs 16, lambda2 0.1")].batch_size == 8
    assert {(c.frame_size, c.image_size) for c in cpu.values()} == {(32, 64)}
    # SimVPv2-L trains at the cpu scale with Table 5's recipe, like gSTA's row
    gl_cpu, g_cpu = cpu[("Table 5", "SimVPv2-L (gSTA-L), lambda2 0")], cpu[("Table 5", "SimVPv2 (gSTA), lambda2 0")]
    assert gl_cpu.model == "gsta-l" and gl_cpu.to_dict() | {"model": "gsta"} == g_cpu.to_dict()
    assert {c.frame_size for c in (r.config for r in rows)} == {64}


def test_seeds_multiply_runs_but_not_the_baseline():
    rows = unique_runs(study_runs("simvp", "cpu", seeds=3))
    # 16 trained configs (with gSTA-L) x 3 seeds + 2 baselines + seeds 3-4 of the 9 configs
    # whose rows ask for 5 or more seeds at the cpu profile (seeds_at: Table 1's three, Table 3's and
    # Table 4's four; Table 5's PoolFormer and gSTA at lambda2 0) + seeds 5-6 of Table 3's
    # three (seeds_at 7)
    assert len(rows) == 16 * 3 + 2 + 9 * 2 + 3 * 2
    extra = sorted({r.config.seed for r in rows} - {0, 1, 2})
    assert extra == [3, 4, 5, 6] and sum(r.config.seed >= 3 for r in rows) == 9 * 2 + 3 * 2
    assert sum(r.config.seed >= 5 for r in rows if r.table == "Table 3") == 3 * 2


def test_lightweight_study_profiles_and_data():
    paper = study_runs("lightweight", "paper")
    models = {(r.table, r.config.model) for r in paper}
    assert ("Table I", "predrnn") in models and ("Table II", "sepcrev") in models
    cpu = study_runs("lightweight", "cpu")
    assert {r.config.model for r in cpu if r.table == "Table I"} == {"sepcrev", "crevnet"}
    smoke = study_runs("lightweight", "smoke")
    assert {r.config.model for r in smoke if r.table == "Table I"} == {"sepcrev", "crevnet", "predrnn", "predrnnpp"}
    assert {r.config.model for r in cpu if r.table == "Table II"} == {"sepcrev", "crevnet"}
    sep = next(r.config for r in paper if r.table == "Table I" and r.config.model == "sepcrev")
    assert (sep.lr, sep.schedule, sep.extra_test_digits) == (0.002, "step", (3,))
    kth = next(r.config for r in paper if r.table == "Table II" and r.config.model == "sepcrev")
    assert (kth.dataset, kth.out_frames, kth.image_size) == ("kth", 20, 128)


def test_profile_params_scale_epochs():
    study = load_study("simvp")
    entry = {"table": "T", "row": "r", "epochs": 200}
    assert profile_params(study, entry, "cpu")["epochs"] == 8
    assert profile_params(study, entry, "paper")["epochs"] == 200
    assert profile_params(study, {**entry, "batch_size": 16}, "cpu")["batch_size"] == 8
    assert profile_params(study, {**entry, "batch_size": 16}, "paper")["batch_size"] == 16
    assert profile_params(study, entry, "cpu")["batch_size"] == 16          # the default 32, halved


def test_row_settings_at_one_profile_override_the_profiles():
    study = load_study("lightweight")
    entry = {"table": "T", "row": "r", "model": "crevnet", "lr": 5e-4,
             "at_profile": {"cpu": {"lr": 0.02}, "smoke": {"batch_size": 3}}}
    assert study["profiles"]["cpu"]["lr"] != 0.02
    assert profile_params(study, entry, "cpu")["lr"] == 0.02           # the row's, over the profile's
    assert profile_params(study, entry, "paper")["lr"] == 5e-4         # the row's paper setting
    assert profile_params(study, entry, "smoke")["batch_size"] == 3
    assert "at_profile" not in profile_params(study, entry, "cpu")


@pytest.mark.parametrize("at_profile, error", [('{ laptop = { lr = 0.1 } }', "unknown profile.*'laptop'"),
                                               ('{ cpu = 0.01 }', "at_profile must map")])
def test_a_malformed_at_profile_fails_when_the_study_loads(tmp_path, at_profile, error):
    """Caught at load, whichever profile is run: here the bad row runs only at the paper profile."""
    path = tmp_path / "bad.toml"
    path.write_text('[[runs]]\ntable = "T"\nrow = "ok"\nmodel = "gsta"\n\n'
                    '[[runs]]\ntable = "T"\nrow = "bad"\nmodel = "gsta"\nprofiles = ["paper"]\n'
                    f'at_profile = {at_profile}\n')
    with pytest.raises(ValueError, match=f"{path}.*row T / 'bad'.*{error}"):
        study_runs(str(path), profile="smoke")
    path.write_text(path.read_text().replace(f"at_profile = {at_profile}\n", ""))
    assert [r.row for r in study_runs(str(path), profile="smoke")] == ["ok"]


def test_seeds_at_gives_a_row_more_seeds_at_one_profile(tmp_path):
    path = tmp_path / "more.toml"
    path.write_text('[[runs]]\ntable = "T"\nrow = "three"\nmodel = "gsta"\n\n'
                    '[[runs]]\ntable = "T"\nrow = "five"\nmodel = "gsta"\nlr = 0.002\nseeds_at = { cpu = 5 }\n')
    def seeds(profile, n):
        return {row: sorted(r.config.seed for r in study_runs(str(path), profile, n) if r.row == row)
                for row in ("three", "five")}
    assert seeds("cpu", 3) == {"three": [0, 1, 2], "five": [0, 1, 2, 3, 4]}
    assert seeds("cpu", 7) == {"three": list(range(7)), "five": list(range(7))}   # never fewer than asked
    assert seeds("smoke", 1) == {"three": [0], "five": [0]}                        # other profiles: as asked
    for bad, error in [("{ cpu = 0 }", "whole numbers of seeds >= 1"), ("{ cpu = 2.5 }", "whole numbers"),
                       ("{ laptop = 5 }", "unknown profile.*'laptop'")]:
        path.write_text(path.read_text().rsplit("seeds_at", 1)[0] + f"seeds_at = {bad}\n")
        with pytest.raises(ValueError, match=f"row T / 'five'.*{error}"):
            load_study(str(path))


def _fake_record(root: Path, run, mse: float, ssim: float, history=True, device="cpu"):
    rd = runs.RunDir(root / run.run_id)
    t = 10
    rd.save({"id": run.run_id, "status": "completed", "config": run.config.to_dict(),
             "history": [{"epoch": 1, "loss": 0.1, "val": {"mse": mse, "ssim": ssim}}] if history else [],
             "test": {"mse": mse, "mae": 2 * mse, "ssim": ssim, "ssim_strict": ssim - 0.1, "psnr": 20.0,
                      "per_frame": {k: [mse] * t for k in ("mse", "mae", "ssim", "ssim_strict", "psnr")},
                      "num_sequences": 8},
             "extra_tests": {},
             "efficiency": {"params": 6_456_065, "size_bytes": 25_000_000, "macs": 2_782_691_328,
                            "flops": 5_565_382_656},
             "provenance": {"hardware": {"name": f"test-{device}", "device": device}, "data_source": "fake",
                            "git_commit": "abc", "precision": "fp32", "torch_version": "2.13.0",
                            "wall_time_s": 1.0}})
    frames = np.zeros((10, 10, 1, 64, 64), np.uint8)
    np.savez_compressed(rd.samples_path, inputs=frames, targets=frames, predictions=frames)


def test_report_from_records_alone_is_deterministic(tmp_path):
    root = tmp_path / "runs"
    rows = unique_runs(study_runs("simvp", "smoke"))
    by_row = {(r.table, r.row): r for r in rows}
    _fake_record(root, by_row[("Table 1", "Crop and Flip")], 600.0, 0.5)
    _fake_record(root, by_row[("Table 1", "Disabled")], 400.0, 0.6)
    _fake_record(root, by_row[("Table 5", "PoolFormer, lambda2 0")], 420.0, 0.55)
    _fake_record(root, by_row[("Baseline", "Last frame repeated")], 280.0, 0.66, history=False)

    tables = study_tables("simvp", "smoke", runs_by_id(root))
    t1, info = tables["Table 1"]
    rows_t1 = t1.set_index("row")
    assert rows_t1.loc["Crop and Flip", "ours mse"] == "600.00"
    assert rows_t1.loc["Disabled", "vs ref mse: ours / paper"] == "reference"
    # away from the paper's scale, rows compare with their table's reference row, in %
    assert "Δ mse" not in rows_t1.columns
    assert rows_t1.loc["Crop and Flip", "vs ref mse: ours / paper"] == f"+50.0% / {72.3073 / 41.2836 - 1:+.1%}"
    assert rows_t1.loc["Crop only", "ours mse"] == "not run"
    assert rows_t1.loc["Last frame repeated", "ours mse"] == "280.00"
    assert info["profile"] == "smoke" and info["runs"] == 3

    out1 = build_report(root, tmp_path / "r1")
    out2 = build_report(root, tmp_path / "r2")
    files1 = sorted(p.relative_to(out1.parent) for p in out1.parent.rglob("*") if p.is_file())
    files2 = sorted(p.relative_to(out2.parent) for p in out2.parent.rglob("*") if p.is_file())
    assert files1 == files2 and len(files1) > 10
    for f in files1:
        a = (out1.parent / f).read_bytes()
        b = (out2.parent / f).read_bytes()
        if f.suffix == ".md":
            a, b = a.replace(b"/r1", b""), b.replace(b"/r2", b"")
        assert hashlib.sha256(a).digest() == hashlib.sha256(b).digest(), f
    embedded = embed_images(out1.read_text(), out1.parent)
    assert embedded.count("data:image/png;base64,") == out1.read_text().count(".png)")
    assert ".png)" not in embedded
    shown, every_run = notebook_view(out1, overview(root))       # what report.ipynb displays
    assert shown.count("data:image/png;base64,") == out1.read_text().count(".png)")
    tables = sum(line.startswith("|---") for line in out1.read_text().splitlines())
    assert shown.count("<table>") == tables > 3 and "| row |" not in shown
    assert every_run.startswith(NOTEBOOK_CSS) and "<details" in every_run and "<details open" not in every_run
    assert every_run.count("<tr>") == 1 + 3                       # header + the three runs
    text = out1.read_text()
    assert "profile `smoke`" in text and "qualitative.png" in text and "vs ref mse: ours / paper" in text
    assert "profile `cpu`" not in text       # only profiles that have runs


def test_report_compares_rows_over_seeds_and_checks_the_baselines(tmp_path):
    root = tmp_path / "runs"
    by_row = {}
    for r in study_runs("simvp", "smoke", seeds=3):
        by_row.setdefault((r.table, r.row), []).append(r)
    noise = [0.0, 0.5, -0.5]
    for i, run in enumerate(by_row[("Table 2", "GELU")]):
        _fake_record(root, run, 23.0 + noise[i], 0.70)
    for i, run in enumerate(by_row[("Table 2", "StarReLU")]):     # 5 MSE better: detectable
        _fake_record(root, run, 18.0 + noise[i], 0.70)
    for i, run in enumerate(by_row[("Table 1", "Crop only")]):    # same as GELU: not detectable
        _fake_record(root, run, 23.0 - noise[i], 0.70)
    _fake_record(root, by_row[("Baseline", "Last frame repeated")][0], 55.0, 0.45, history=False)
    _fake_record(root, by_row[("Baseline", "All black")][0], 36.0, 0.58, history=False)

    tables = study_tables("simvp", "smoke", runs_by_id(root))
    t2, info2 = tables["Table 2"]
    mse = next(c for c in info2["comparisons"] if c["metric"] == "mse")
    assert (mse["row"], mse["reference"]) == ("StarReLU", "GELU")
    assert mse["diff"] == pytest.approx(-5.0) and mse["detected"] and mse["high"] < 0
    assert "detected, better than the reference" in mse["verdict"]
    assert "disagrees with the paper" not in mse["verdict"]          # the paper: -0.05 too
    t1, info1 = tables["Table 1"]
    crop = next(c for c in info1["comparisons"] if c["row"] == "Crop only" and c["metric"] == "mse")
    assert not crop["detected"] and crop["low"] < 0 < crop["high"]
    assert "not detected; smallest detectable difference at 80% power ≈" in crop["verdict"]
    rows2 = t2.set_index("row")
    assert rows2.loc["GELU", "ours mse"] == "23.00 ± 0.50"
    assert rows2.loc["StarReLU", "beats both baselines"] == "✓ 3/3"    # 18.5 < 0.6 * 36, 0.70 > 0.58
    assert rows2.loc["GELU", "beats both baselines"].startswith("✗ seed 0: MSE 23.0 > 60%")
    assert rows2.loc["All black", "ours mse"] == "36.00"
    text = build_report(root, tmp_path / "r").read_text()
    assert "StarReLU vs GELU" in text and "95% CI" in text


def test_a_comparison_whose_arms_trained_on_different_devices_is_confounded_not_detected(tmp_path):
    root = tmp_path / "runs"
    by_row = {}
    for r in study_runs("simvp", "smoke", seeds=3):
        by_row.setdefault((r.table, r.row), []).append(r)
    for i, run in enumerate(by_row[("Table 2", "GELU")]):
        _fake_record(root, run, 23.0 + 0.1 * i, 0.70)
    for i, run in enumerate(by_row[("Table 2", "StarReLU")]):     # 5 better, but on another device
        _fake_record(root, run, 18.0 + 0.1 * i, 0.70, device="cuda")
    tables = study_tables("simvp", "smoke", runs_by_id(root))
    t2, info2 = tables["Table 2"]
    mse = next(c for c in info2["comparisons"] if c["metric"] == "mse")
    assert mse["confounded"] == "device cuda vs cpu"
    assert not mse["detected"] and not mse["detected_holm"]
    assert "confounded (device cuda vs cpu); not tested" in mse["verdict"]
    assert t2.set_index("row").loc["StarReLU", "trained on"] == "cuda, fp32, torch 2.13, gsta (unknown commit)"
    text = build_report(root, tmp_path / "r").read_text()
    assert "confounded: device cuda vs cpu" in text


def _blurred_samples(rd: runs.RunDir, sigma: float) -> None:
    """samples.npz with a square as target and its Gaussian blur (sigma px) as prediction."""
    target = np.zeros((10, 10, 1, 32, 32))
    target[..., 8:20, 10:22] = 1.0
    pred = gaussian_filter(target, sigma=(0, 0, 0, sigma, sigma)) if sigma else target
    u8 = lambda a: np.round(a * 255).astype(np.uint8)  # noqa: E731
    np.savez_compressed(rd.samples_path, inputs=u8(target), targets=u8(target), predictions=u8(pred))


def test_table_5_measures_sharpness_on_the_samples_and_compares_it_only_for_the_larger_model(tmp_path):
    root = tmp_path / "runs"
    by_row = {}
    for r in study_runs("simvp", "smoke", seeds=3):
        by_row.setdefault((r.table, r.row), []).append(r)
    for rows, mse, sigmas in ((by_row[("Table 5", "SimVPv2 (gSTA), lambda2 0")], 20.0, (1.6, 1.5, 1.4)),
                              (by_row[("Table 5", "SimVPv2-L (gSTA-L), lambda2 0")], 19.0, (0.8, 0.7, 0.6)),
                              (by_row[("Table 5", "PoolFormer, lambda2 0")], 21.0, (1.6, 1.5, 1.4))):
        for run, sigma in zip(rows, sigmas):
            _fake_record(root, run, mse + sigma, 0.7)
            _blurred_samples(runs.RunDir(root / run.run_id), sigma)
    tables = study_tables("simvp", "smoke", runs_by_id(root))
    t5, info = tables["Table 5"]
    cell = t5.set_index("row").loc["SimVPv2 (gSTA), lambda2 0", "ours sharpness"]
    target = np.zeros((1, 1, 1, 32, 32))
    target[..., 8:20, 10:22] = 1.0
    expected = [metrics.sharpness_per_frame(np.round(gaussian_filter(target, (0, 0, 0, s, s)) * 255) / 255,
                                            target)[0, 0] for s in (1.6, 1.5, 1.4)]
    assert cell == f"{np.mean(expected):.3f} ± {np.std(expected, ddof=1):.3f}" and np.mean(expected) < 1
    sharp = [c for c in info["comparisons"] if c["metric"] == "sharpness"]
    assert [(c["row"], c["reference"]) for c in sharp] == [
        ("SimVPv2-L (gSTA-L), lambda2 0", "SimVPv2 (gSTA), lambda2 0")]
    assert sharp[0]["diff"] > 0 and "sharper than the reference" in sharp[0]["verdict"]
    assert {c["metric"] for c in info["comparisons"] if c["row"].startswith("PoolFormer")} == {"mse", "ssim"}


def test_a_comparison_naming_an_unknown_row_or_metric_fails_when_the_study_loads(tmp_path):
    path = tmp_path / "bad.toml"
    body = '[[runs]]\ntable = "T"\nrow = "a"\nmodel = "gsta"\n\n[[runs]]\ntable = "T"\nrow = "b"\nmodel = "gsta"\n'
    path.write_text('[tables."T"]\ncompare = [["a", "c"]]\n\n' + body)
    with pytest.raises(ValueError, match="no row 'c' in T"):
        study_runs(str(path), profile="smoke")
    path.write_text('[tables."T"]\ncompare = [["a", "b", ["sharpness"]]]\n\n' + body)
    with pytest.raises(ValueError, match=r"metric\(s\) \['sharpness'\] are not among"):
        study_runs(str(path), profile="smoke")
    path.write_text('[tables."T"]\nmetrics = ["mse", "sharpness"]\ncompare = [["a", "b", ["sharpness"]]]\n\n' + body)
    assert len(study_runs(str(path), profile="smoke")) == 2


def test_paper_scale_tables_show_the_difference_to_the_paper(tmp_path):
    root = tmp_path / "runs"
    paper = {(r.table, r.row): r for r in study_runs("simvp", "paper")}
    _fake_record(root, paper[("Table 1", "Crop and Flip")], 70.0, 0.85)
    t1 = study_tables("simvp", "paper", runs_by_id(root))["Table 1"][0].set_index("row")
    assert t1.loc["Crop and Flip", "paper mse"] == "72.31"
    assert t1.loc["Crop and Flip", "Δ mse"] == f"{70.0 - 72.3073:+.2f}"
    assert t1.loc["Crop and Flip", "augment"] == "crop+flip"       # the paper's setting, unchanged


def test_report_never_mixes_profiles(tmp_path):
    root = tmp_path / "runs"
    smoke = {(r.table, r.row): r for r in unique_runs(study_runs("simvp", "smoke"))}
    cpu = {(r.table, r.row): r for r in unique_runs(study_runs("simvp", "cpu"))}
    _fake_record(root, smoke[("Table 1", "Disabled")], 400.0, 0.6)
    _fake_record(root, cpu[("Table 1", "Disabled")], 100.0, 0.8)
    by_id = runs_by_id(root)
    assert study_tables("simvp", "smoke", by_id)["Table 1"][0].set_index("row").loc["Disabled", "ours mse"] == "400.00"
    assert study_tables("simvp", "cpu", by_id)["Table 1"][0].set_index("row").loc["Disabled", "ours mse"] == "100.00"


def test_train_command_gives_each_study_run_its_own_config(tmp_path):
    from dataclasses import replace

    from vpstudy.study import train_command

    for name in ("simvp", "lightweight"):
        for r in unique_runs(study_runs(name, "cpu", seeds=2)):
            cmd = train_command(r, tmp_path)          # raises if the flags would train another config
            assert cmd[1:4] == ["-m", "vpstudy", "train"] and cmd[-3:] == ["--runs", str(tmp_path), "--no-progress"]
    r = study_runs("simvp", "cpu")[0]
    wrong = replace(r, params={**r.params, "lr": r.params["lr"] * 2})
    with pytest.raises(RuntimeError, match="another config"):
        train_command(wrong, tmp_path)


def test_committed_records_keep_their_run_ids():
    """Every committed record's config still hashes to its directory name, and every committed
    cpu-profile run is a run of a study: a change to configs, profiles or study files that
    would orphan recorded results fails here."""
    import json

    from vpstudy.config import TrainConfig

    root = Path(__file__).resolve().parent.parent / "runs"
    records = sorted(root.glob("*/record.json"))
    if not records:
        pytest.skip("no committed run records in this checkout")
    study_ids = {r.run_id for name in ("simvp", "lightweight") for r in study_runs(name, "cpu", seeds=3)}
    for path in records:
        rec = json.loads(path.read_text())
        cfg = TrainConfig.from_dict({k: v for k, v in rec["config"].items() if k != "extra"})
        assert runs.run_id(cfg.identity()) == path.parent.name == rec["id"], path
        if cfg.profile == "cpu":
            assert path.parent.name in study_ids, f"{path.parent.name} is in no study at the cpu profile"


def test_table1_trained_records_share_one_precision_and_each_seed_one_machine():
    """Table I's committed cpu records of both trained rows are fp32 (CrevNet's row asks for it
    at the cpu profile; the bf16 records are probes), and each seed trained on one processor in
    both rows (seeds 0-2 on the Intel Xeon, seed 3 on the AMD EPYC), so each seed is a pair that
    differs in what the paper varies only."""
    import json

    root = Path(__file__).resolve().parent.parent / "runs"
    precisions, models, machine_of_seed = set(), set(), {}
    for r in study_runs("lightweight", "cpu", seeds=3):
        if r.table != "Table I" or r.config.model not in ("crevnet", "sepcrev"):
            continue
        assert r.config.precision == ("fp32" if r.config.model == "crevnet" else "auto"), r.run_id
        path = root / r.run_id / "record.json"
        if path.exists():
            prov = json.loads(path.read_text())["provenance"]
            precisions.add(prov["precision"])
            machine_of_seed.setdefault(r.config.seed, set()).add(runs.machine_name(prov))
            models.add(r.config.model)
    assert models == {"crevnet", "sepcrev"} and precisions == {"fp32"}
    planned = {0: "Intel(R) Xeon(R) Processor", 1: "Intel(R) Xeon(R) Processor", 2: "Intel(R) Xeon(R) Processor",
               3: "AMD EPYC"}
    assert {0, 1, 2} <= set(machine_of_seed) <= set(planned)
    for seed, machines in machine_of_seed.items():
        assert machines == {planned[seed]}, (seed, machines)


def test_report_keeps_wall_times_and_curves_of_different_machines_apart(tmp_path):
    from vpstudy.report import time_to_accuracy_curves, wall_time_text

    root = tmp_path / "runs"
    rows = {(r.table, r.row): r for r in study_runs("simvp", "smoke", seeds=2)}
    gsta0 = rows[("Table 5", "SimVPv2 (gSTA), lambda2 0")]
    pool = rows[("Table 5", "PoolFormer, lambda2 0")]
    for run, machine, secs in ((gsta0, "NVIDIA H200", 60.0), (pool, "CPU (2 threads)", 600.0)):
        _fake_record(root, run, 30.0, 0.6)
        rd = runs.RunDir(root / run.run_id)
        rec = rd.load()
        rec["provenance"].update(hardware={"name": machine}, wall_time_s=secs)
        rec["history"][0]["val_points"] = [{"step": 1, "sequences": 4, "seconds": secs, "mse": 30.0, "ssim": 0.6}]
        rd.save(rec)
    _, info = study_tables("simvp", "smoke", runs_by_id(root))["Table 5"]
    assert wall_time_text(info["wall_time_by_hardware"]) == (
        "CPU (2 threads) 10.0 min over 1 run; NVIDIA H200 1.0 min over 1 run")
    curves = time_to_accuracy_curves("simvp", "smoke", runs_by_id(root))
    assert set(curves) == {"gsta (NVIDIA H200)", "poolformer (CPU)"}


def test_a_table_not_run_still_shows_our_parameters_beside_the_papers_and_why_they_differ():
    """Table III without BAIR data: each model's count, built at the paper's settings, beside
    the paper's, with the registry's reason where they differ (sepcrev: the paper's figure is
    the 1-channel KTH layout's)."""
    _, info = study_tables("lightweight", "paper", {})["Table III"]
    eff = info["efficiency"].set_index("row")
    sep = eff.loc["Proposed (sepcrev)"]
    assert sep["ours params"].startswith("4,663,182 (not run") and sep["paper params"] == "727.26K"
    assert "KTH layout" in sep["why ours differs from the paper"]
    assert eff.loc["SVG-LP", "ours params"].startswith("22,831,747 (not run")


def test_seeds_of_one_config_group_together_even_when_written_by_older_code():
    from vpstudy.report.figures import seeds_by_config

    run = next(r for r in study_runs("simvp", "smoke", seeds=2) if r.config.seed == 1)
    new = run.config.to_dict()
    old = {k: v for k, v in new.items() if k != "compile"} | {"seed": 0}     # before `compile` existed
    other = new | {"lambda2": 0.5}
    groups = seeds_by_config([{"id": "b", "config": new}, {"id": "a", "config": old}, {"id": "c", "config": other}])
    assert sorted([r["config"]["seed"] for r in g] for g in groups) == [[0, 1], [1]]
