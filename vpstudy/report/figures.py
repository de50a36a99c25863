"""The report's figures: which records each figure shows, drawn by `vpstudy.plots`.

    figs = study_figures("simvp", "cpu", by_id, Path("reports/simvp/cpu"))   # [(caption, path)]
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from vpstudy import metrics, plots, runs
from vpstudy.config import TrainConfig
from vpstudy.report.tables import settings_text
from vpstudy.runs import final_val_mse
from vpstudy.study import StudyRun, load_study, study_runs

PNG_META = {"Software": None}


def _save(fig, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, metadata=PNG_META)
    plt.close(fig)


def seeds_by_config(recs: list[dict]) -> list[list[dict]]:
    """Records grouped by config: each group one config's seeds (ordered by run id, then seed).
    Configs compare by their run identity with the seed set aside, so records written before a
    field existed (its default then implied) group with newer seeds of the same config."""
    groups: dict[str, list[dict]] = defaultdict(list)
    for rec in sorted(recs, key=lambda r: (r["id"], r["config"]["seed"])):
        groups[_identity_without_seed(rec["config"])].append(rec)
    return list(groups.values())


def _identity_without_seed(cfg: dict) -> str:
    try:
        return runs.run_id(TrainConfig.from_dict({**cfg, "seed": 0}).identity())
    except (ValueError, TypeError):           # not a config this code can build: compare as written
        return json.dumps({k: v for k, v in cfg.items() if k != "seed"}, sort_keys=True, default=str)


def lowest_validation(groups) -> dict[str, list[dict]]:
    """Per model, the group of records (one config's seeds) with the lowest mean final
    validation MSE, its records by seed; the first such group wins a tie."""
    chosen: dict[str, tuple[float, list[dict]]] = {}
    for recs in groups:
        m, score = recs[0]["config"]["model"], float(np.mean([final_val_mse(r) for r in recs]))
        if m not in chosen or score < chosen[m][0]:
            chosen[m] = (score, sorted(recs, key=lambda r: r["config"]["seed"]))
    return {m: recs for m, (_, recs) in chosen.items()}


def _models_of(table_rows: list[StudyRun], by_id: dict[str, dict]) -> dict[str, list[dict]]:
    """For each model of a table, every seed's record of one row: the row with the lowest mean
    final validation MSE over its seeds (e.g. Table 5's lambda2 0 or 0.1). Trained models first
    (by name), then the baselines."""
    rows: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for r in table_rows:
        rec = by_id.get(r.run_id)
        if rec is not None and rec not in rows[(r.table, r.row)]:
            rows[(r.table, r.row)].append(rec)
    chosen = lowest_validation(rows.values())
    order = sorted(chosen, key=lambda m: (not chosen[m][0].get("history"), m))
    return {m: chosen[m] for m in order}


def _mean_test(recs: list[dict], suffix: str = "") -> dict:
    """Per-frame test metrics averaged over seeds (``suffix`` "3": the 3-digit test set): the
    metrics every seed recorded (a record written before a metric existed lacks it)."""
    tests = [r["extra_tests"][suffix] if suffix else r["test"] for r in recs]
    shared = [k for k in tests[0]["per_frame"] if all(k in t["per_frame"] for t in tests)]
    return {"per_frame": {k: list(np.mean([t["per_frame"][k] for t in tests], axis=0)) for k in shared}}


def study_figures(name: str, profile: str, by_id: dict[str, dict], out: Path) -> list[tuple[str, Path]]:
    study = load_study(name)
    rows = study_runs(name, profile, seeds=10)           # every recorded seed (at most 10)
    fig_table = study.get("figures_table")
    chosen = [r for r in rows if (r.table == fig_table or r.table == "Baseline")] if fig_table else rows
    seeds_of = _models_of(chosen, by_id)
    models = {m: recs[0] for m, recs in seeds_of.items()}        # the lowest seed: qualitative, curves
    figs: list[tuple[str, Path]] = []
    if not models:
        return figs
    first_frame = next(iter(models.values()))["config"]["in_frames"] + 1
    p = out / "per_frame.png"
    _save(plots.per_frame_metrics({m: _mean_test(recs) for m, recs in seeds_of.items()},
                                  first_frame=first_frame), p)
    figs.append(("Per-frame MSE and SSIM of each model, mean over seeds (per model the row with "
                 "the lowest validation MSE)", p))
    trained = {m: r for m, r in models.items() if r.get("history")}
    if trained:
        p = out / "learning_curves.png"
        _save(plots.learning_curves(list(trained.values()), list(trained)), p)
        figs.append(("Learning curves (training loss, validation MSE and SSIM; lowest seed)", p))
        p = out / "accuracy_vs_cost.png"
        base = {m: r["test"]["mse"] for m, r in models.items() if not r.get("history")}
        _save(plots.accuracy_vs_cost({m: seeds_of[m] for m in trained}, baselines=base), p)
        figs.append(("Test MSE against parameters and against MACs (mean ± std over seeds)", p))
    curves = time_to_accuracy_curves(name, profile, by_id)
    if curves:
        base = {m: r["test"]["mse"] for m, r in models.items() if not r.get("history")}
        p = out / "time_to_accuracy.png"
        _save(plots.time_to_accuracy(curves, {f"{m} (test)": v for m, v in base.items()}), p)
        figs.append(("Time to accuracy: validation MSE against training wall time and against "
                     "training sequences, every seed of each model of the table, by machine "
                     "where they ran on several (dashed: the baselines' test MSE)", p))
    p = out / "qualitative.png"
    _save(qualitative_grid(models), p)
    figs.append(("Qualitative grid: 10 inputs, 10 targets and each model's predictions on the same "
                 "test sequence, with each prediction's sharpness (Sobel gradient over the target's; "
                 "1 = as sharp)", p))
    extra = study.get("figures_extra_test")
    with_extra = {m: r for m, r in models.items() if extra in (r.get("extra_tests") or {})}
    if extra and with_extra:
        p = out / f"qualitative_{extra}digits.png"
        _save(qualitative_grid(with_extra, suffix=f"_{extra}"), p)
        figs.append((f"Qualitative grid on the {extra}-digit test set (models trained on 2 digits)", p))
    return figs


def time_to_accuracy_curves(name: str, profile: str, by_id: dict[str, dict]) -> dict[str, list[list[dict]]]:
    """Validation curves (``val_points`` of every epoch) of the figures table's models, all seeds;
    the first row of each model only (e.g. Table 5's lambda2 = 0 rows). Labelled by model, and
    by the machine too where runs ran on several (their wall times are not comparable)."""
    study = load_study(name)
    table = study.get("figures_table")
    curves: dict[str, list[list[dict]]] = {}
    first_row: dict[str, str] = {}
    for r in study_runs(name, profile, seeds=10):
        rec = by_id.get(r.run_id)
        if r.table != table or rec is None or not rec.get("history"):
            continue
        model = rec["config"]["model"]
        if first_row.setdefault(model, r.row) != r.row:
            continue
        points = [p for h in rec["history"] for p in h.get("val_points", [])]
        if points:
            machine = ((rec.get("provenance") or {}).get("hardware") or {}).get("name", "?")
            curves.setdefault((model, machine.split(" (")[0]), []).append(points)
    if len({machine for _, machine in curves}) == 1:          # name the machine only if several
        return {model: pts for (model, _), pts in curves.items()}
    return {f"{model} ({machine})": pts for (model, machine), pts in curves.items()}


def efficiency_figure(by_id: dict[str, dict], profile: str, out: Path) -> tuple[Path, str] | None:
    """Every trained model of both studies scored on one Moving MNIST-2 test set at ``profile``
    (the set most runs share): test MSE against parameters and MACs. Returns the figure and a
    caption naming the runs, their budgets and the test set."""
    candidates = [r for r in by_id.values() if r["config"]["profile"] == profile and r.get("history")
                  and r["config"]["dataset"] == "mmnist" and r["config"]["num_digits"] == 2]
    if not candidates:
        return None
    sets = defaultdict(list)
    for rec in candidates:
        sets[runs.test_set_key(rec["config"])].append(rec)
    test_set, recs = max(sets.items(), key=lambda kv: (len(kv[1]), kv[0]))
    best = lowest_validation(seeds_by_config(recs))
    path = out / f"efficiency_{profile}.png"
    base = {}
    for rec in sorted(by_id.values(), key=lambda r: r["id"]):
        c = rec["config"]
        if c["model"] in ("last-frame", "all-black") and c["profile"] == profile \
                and runs.test_set_key(c) == test_set:
            base.setdefault(c["model"], rec["test"]["mse"])
    _save(plots.accuracy_vs_cost(dict(sorted(best.items())), baselines=base), path)
    frame = recs[0]["config"]["image_size"] // recs[0]["config"].get("downsample", 1)
    caption = (f"Test set: {recs[0]['config']['test_sequences']} fixed Moving MNIST-2 sequences at {frame}×{frame} px, "
               f"the same for every point. Each point is the mean ± std over the seeds of the model's "
               f"config with the lowest validation MSE at profile `{profile}`: "
               + "; ".join(f"{m} ({settings_text(rs[0]['config'])}, {len(rs)} seed{'s' * (len(rs) != 1)})"
                           for m, rs in sorted(best.items())) + ".")
    return path, caption


def qualitative_grid(models: dict[str, dict], index: int = 0, suffix: str = ""):
    """Inputs, targets and each model's predictions of recorded test sequence ``index``; each
    model's label carries its sharpness on this sequence (`metrics.sharpness_per_frame`)."""
    first = None
    preds = {}
    for m, rec in models.items():
        with np.load(Path(rec["_dir"]) / runs.SAMPLES) as f:
            if first is None:
                first = (f["inputs" + suffix][index], f["targets" + suffix][index])
            pred = f["predictions" + suffix][index]
        sharp = metrics.sharpness_per_frame(pred[None] / 255.0, first[1][None] / 255.0).mean()
        preds[f"{m}\nsharpness {sharp:.2f}"] = pred
    return plots.sequence_strips(first[0], first[1], preds)
