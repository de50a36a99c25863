"""Regenerate ``reports/`` from the run records alone.

For each study (``vpstudy/studies/*.toml``) and each profile that has completed runs, every
table of the study is written in its own layout (markdown and CSV): our numbers (mean ± std
over seeds) beside the paper's and the difference, with the last-frame baseline as a row.
Figures: per-frame curves, learning curves, accuracy against parameters and FLOPs, and a
qualitative grid. ``reports/README.md`` shows them all and says, for each, which profile,
data source, seeds and hardware produced it. A table holds runs of one profile only.

Regenerating from the same records gives byte-identical files.
"""

from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from vpstudy import plots, runs, stats
from vpstudy.config import make_config
from vpstudy.study import StudyRun, load_study, profile_only_rows, profile_params, study_names, study_runs

WHY_DIFFERS = "why ours differs from the paper"   # efficiency column: the registry's paper_note

PNG_META = {"Software": None}
PROFILE_NOTES = {
    "smoke": "smoke profile: a few steps on a handful of sequences; the numbers mean nothing",
    "cpu": "cpu profile — a proxy of the study, not a replication: frames of 32×32 pixels (the "
           "64×64 videos averaged 2×2) and about 1% of the paper's training steps (see each "
           "table's settings column). MSE is on another scale than the paper's (a quarter of the "
           "pixels), so rows are compared with their table's reference row in %, ours beside the "
           "paper's, and over seeds with 95% intervals",
    "paper": "paper profile: the study's settings",
}


def _fmt(mean: float, std: float | None, digits: int) -> str:
    if mean is None or (isinstance(mean, float) and np.isnan(mean)):
        return "–"
    s = f"{mean:.{digits}f}"
    return s + (f" ± {std:.{digits}f}" if std is not None and not np.isnan(std) else "")


def _records_by_id(root) -> dict[str, list[dict]]:
    """Completed records by run id (seeds of one config are found through their own ids).

    A missing runs root, or one without completed records, raises :class:`runs.RunsRootError`:
    the report never replaces its tables with empty ones.
    """
    base = runs.existing_runs_root(root)
    out: dict[str, dict] = {}
    for rec in runs.load_records(base, "completed"):
        out[rec["id"]] = rec
    if not out:
        raise runs.RunsRootError(f"runs root {base} holds no completed run records; nothing to "
                                 f"report (the reports are left as they are). Pass --runs (or set "
                                 f"${runs.RUNS_ENV}) to the folder holding the run directories")
    return out


def _result(rec: dict, metric: str) -> float | None:
    """``metric`` of a record: ``"mse"`` on the main test set, ``"mse@3"`` on the 3-digit one."""
    name, _, extra = metric.partition("@")
    res = (rec.get("extra_tests") or {}).get(extra) if extra else rec.get("test")
    return None if res is None else res.get(name)


def _metric_stats(recs: list[dict], metric: str) -> tuple[float, float | None]:
    vals = [v for v in (_result(r, metric) for r in recs) if v is not None]
    if not vals:
        return float("nan"), None
    return float(np.mean(vals)), (float(np.std(vals, ddof=1)) if len(vals) > 1 else None)


def settings_text(cfg: dict) -> str:
    """What a run trained: epochs, sequences, steps, batch and frame size."""
    steps = cfg["epochs"] * (cfg["sequences_per_epoch"] // cfg["batch_size"])
    frame = cfg["image_size"] // cfg.get("downsample", 1)
    return (f"{cfg['epochs']} ep × {cfg['sequences_per_epoch']:,} seq = {steps:,} steps at bs "
            f"{cfg['batch_size']}, {frame}×{frame} px, lr {cfg['lr']:g}")


def _column_cell(col: str, run: StudyRun, paper_params: dict) -> str:
    """A setting column: the value run here, and the paper's where the profile changed it."""
    here, paper = run.params.get(col, ""), paper_params.get(col, "")
    return f"paper {paper} / here {here}" if paper != "" and paper != here else str(here)


DIGITS = {"mse": 2, "mae": 2, "ssim": 4, "ssim_strict": 4, "psnr": 2}


def _missing_text(name: str, profile: str, table: str, row: str, dataset: str) -> str:
    only = profile_only_rows(name, profile).get((table, row))
    if only:
        return f"{'/'.join(only)} profile only"
    if dataset != "mmnist":
        return f"not run ({dataset} data absent)"
    return "not run"


def _values(recs: list[dict], metric: str) -> list[float]:
    return [v for v in (_result(r, metric) for r in recs) if v is not None]


def baseline_check(recs: list[dict], baselines: dict[str, list[dict]], max_black_ratio: float = 0.6
                   ) -> str:
    """Does every seed of a trained row beat both trivial baselines on MSE and SSIM, with an MSE
    at most ``max_black_ratio`` of the all-black prediction's? '✓ n/n', or what failed."""
    black, last = baselines.get("all-black"), baselines.get("last-frame")
    if not recs or not black or not last or not recs[0].get("history"):
        return ""
    b, l_ = black[0]["test"], last[0]["test"]
    failures = []
    for r in recs:
        t, seed = r["test"], r["config"]["seed"]
        if t["mse"] > max_black_ratio * b["mse"]:
            failures.append(f"seed {seed}: MSE {t['mse']:.1f} > {max_black_ratio:.0%} of all-black's")
        elif t["mse"] >= l_["mse"]:
            failures.append(f"seed {seed}: MSE not below last-frame's")
        if t["ssim"] <= max(b["ssim"], l_["ssim"]):
            failures.append(f"seed {seed}: SSIM {t['ssim']:.3f} ≤ a baseline's {max(b['ssim'], l_['ssim']):.3f}")
    return f"✓ {len(recs)}/{len(recs)}" if not failures else "✗ " + "; ".join(failures)


def _comparisons(spec: dict, rows: list[str]) -> list[tuple[str, str]]:
    """The (row, reference row) pairs a table compares: ``compare = [[row, ref], ...]`` or
    ``reference = "row"`` (every other row of the table against it)."""
    pairs = [tuple(p) for p in spec.get("compare", [])]
    ref = spec.get("reference")
    if ref:
        pairs += [(r, ref) for r in rows if r != ref]
    return pairs


def study_tables(name: str, profile: str, by_id: dict[str, dict], max_seeds: int = 10
                 ) -> dict[str, tuple[pd.DataFrame, dict]]:
    """``{table: (DataFrame, info)}`` for one study at one profile, from the records present.

    At the paper profile, each metric shows ours, the paper's and the difference. At a smaller
    scale (another frame size, far fewer steps) absolute differences to the paper mean nothing:
    each row shows its change against the table's reference row, ours beside the paper's, in %.
    ``info["comparisons"]`` holds, for each compared pair and metric, the difference over seeds
    with its 95% interval (Welch) and a verdict sentence.
    """
    study = load_study(name)
    groups: dict[tuple[str, str], list[StudyRun]] = defaultdict(list)
    for r in study_runs(name, profile, seeds=max_seeds):
        groups[(r.table, r.row)].append(r)
    entries = {(e["table"], e["row"]): e for e in study["runs"]}
    paper_scale = profile == "paper"
    tables = {}
    for table, spec in study.get("tables", {}).items():
        metrics = spec.get("metrics", study.get("metrics", ["mse", "ssim"]))
        dataset = spec.get("dataset", "mmnist")
        keys = [k for k in entries if k[0] == table]
        base_keys = [k for k in entries if k[0] == "Baseline"
                     and entries[k].get("dataset", "mmnist") == dataset]
        recs_of = {k: [by_id[r.run_id] for r in groups.get(k, []) if r.run_id in by_id]
                   for k in keys + base_keys}
        baselines = {entries[k]["model"]: recs_of[k] for k in base_keys}
        pairs = _comparisons(spec, [k[1] for k in keys])
        reference_of: dict[str, str] = {}
        for row, ref in pairs:
            reference_of.setdefault(row, ref)
        referenced = {ref for _, ref in pairs} - set(reference_of)
        rows, used, efficiency = [], [], []
        paper_cost_cols = [c for c in spec.get("efficiency", [])     # a paper column if any row has it
                           if any(c in entries[k].get("paper", {}) for k in keys)]
        for key in keys + base_keys:
            entry, rs, recs = entries[key], groups.get(key, []), recs_of[key]
            used += recs
            paper = entry.get("paper", {})
            missing = _missing_text(name, profile, *key, dataset)
            line: dict[str, Any] = {"row": key[1]}
            paper_params = profile_params(study, entry, "paper")
            for col in spec.get("columns", []):
                line[col] = _column_cell(col, rs[0], paper_params) if rs and key[0] != "Baseline" else ""
            ref_key = (table, reference_of.get(key[1], ""))
            for m in metrics:
                digits = DIGITS.get(m.partition("@")[0], 4)
                vals = _values(recs, m)
                mean = float(np.mean(vals)) if vals else float("nan")
                std = float(np.std(vals, ddof=1)) if len(vals) > 1 else None
                line[f"ours {m}"] = _fmt(mean, std, digits) if recs else missing
                p = paper.get(m)
                if paper_scale:
                    line[f"paper {m}"] = "" if p is None else f"{p:.{digits}f}"
                    line[f"Δ {m}"] = f"{mean - p:+.{digits}f}" if vals and p is not None else ""
                elif key[1] in referenced:
                    line[f"vs ref {m}: ours / paper"] = "reference"
                elif ref_key in entries:
                    ref_vals = _values(recs_of.get(ref_key, []), m)
                    p_ref = entries[ref_key].get("paper", {}).get(m)
                    ours = f"{mean / np.mean(ref_vals) - 1:+.1%}" if vals and ref_vals else "–"
                    theirs = f"{p / p_ref - 1:+.1%}" if p is not None and p_ref else "–"
                    line[f"vs ref {m}: ours / paper"] = f"{ours} / {theirs}"
            if spec.get("efficiency") and key[0] != "Baseline":
                efficiency.append(_efficiency_row(study, entry, recs, spec["efficiency"],
                                                  paper_cost_cols, dataset))
            line["seeds"] = len(recs)
            sampled = [r["test"] for r in recs if r.get("test", {}).get("samples")]
            if sampled:              # a stochastic model: best of N samples (SVG's protocol)
                pm = sampled[0].get("prior_mean", {})
                line["evaluation"] = (f"best of {sampled[0]['samples']} samples per sequence; prior mean: "
                                      + ", ".join(f"{m} {pm[m]:.{DIGITS.get(m, 4)}f}"
                                                  for m in metrics if m in pm))
            if key[0] != "Baseline":
                line["beats both baselines"] = baseline_check(recs, baselines)
            trained = bool(recs and recs[0].get("history"))
            line["settings"] = settings_text(recs[0]["config"]) if trained else (
                "no training" if recs else "")
            rows.append(line)
        if any("evaluation" in line for line in rows):
            for line in rows:
                line.setdefault("evaluation", "deterministic" if line.get("seeds") else "")
        info = _provenance_summary(used, profile)
        info["caption"] = spec.get("caption", "")
        info["comparisons"] = _table_comparisons(
            table, pairs, recs_of, entries, spec.get("compare_metrics", metrics))
        cost = pd.DataFrame(efficiency)
        if WHY_DIFFERS in cost and not cost[WHY_DIFFERS].any():
            cost = cost.drop(columns=WHY_DIFFERS)
        info["efficiency"] = cost
        tables[table] = (pd.DataFrame(rows), info)
    return tables


def _efficiency_row(study: dict, entry: dict, recs: list[dict], columns: list[str],
                    paper_columns: list[str], dataset: str) -> dict[str, str]:
    """One row of a table's cost table: ours (from the records; without records, the
    parameters of the model built at the paper's settings), the paper's, and why they differ."""
    cost = {"row": entry["row"]}
    for col in columns:
        cost[f"ours {col}"] = _efficiency_cell(recs, col)
        if col == "params" and not recs:
            n = _params_at_paper_settings(study, entry)
            cost["ours params"] = f"{n:,} (not run: built at the paper's settings)"
        if col in paper_columns:
            cost[f"paper {col}"] = entry.get("paper", {}).get(col, "")
    cost[WHY_DIFFERS] = _registry_info(entry.get("model"), dataset).get("paper_note", "")
    return cost


def _table_comparisons(table: str, pairs: list[tuple[str, str]], recs_of: dict, entries: dict,
                       metrics: list[str]) -> list[dict]:
    """For each compared (row, reference) pair with records and each metric: the difference
    over seeds, its 95% interval (Welch), the paper's difference and a verdict sentence."""
    comparisons = []
    for row, ref in pairs:
        a, b = recs_of.get((table, row), []), recs_of.get((table, ref), [])
        for m in metrics:
            va, vb = _values(a, m), _values(b, m)
            if not va or not vb:
                continue
            d = stats.compare(va, vb)
            pa = entries[(table, row)].get("paper", {}).get(m)
            pb = entries[(table, ref)].get("paper", {}).get(m)
            paper_diff = pa - pb if pa is not None and pb is not None else None
            digits = DIGITS.get(m.partition("@")[0], 4)
            comparisons.append({
                "row": row, "reference": ref, "metric": m, "diff": d.diff, "low": d.low,
                "high": d.high, "detected": d.detected, "seeds": (d.n_row, d.n_ref),
                "paper_diff": paper_diff,
                "verdict": stats.verdict(f"{row} vs {ref}", m, d, paper_diff, pb, digits)})
    return comparisons


def comparisons_markdown(comparisons: list[dict]) -> str:
    """The table of compared pairs: difference, 95% interval, detected, the paper's difference."""
    if not comparisons:
        return ""
    lines = ["| row vs reference | metric | ours: difference [95% CI] | detected | paper: difference |",
             "|---|---|---|---|---|"]
    for c in comparisons:
        digits = DIGITS.get(c["metric"].partition("@")[0], 4)
        f = f"{{:+.{digits}f}}"
        ci = f"[{f.format(c['low'])}, {f.format(c['high'])}]" if np.isfinite(c["low"]) else "[no interval]"
        pd_ = "" if c["paper_diff"] is None else f.format(c["paper_diff"])
        lines.append(f"| {c['row']} vs {c['reference']} | {c['metric']} | {f.format(c['diff'])} {ci} | "
                     f"{'yes' if c['detected'] else 'no'} | {pd_} |")
    return "\n".join(lines) + "\n"


def _params_at_paper_settings(study: dict, entry: dict) -> int:
    """Parameters of a row's model built as its paper-profile config would build it."""
    from vpstudy.train import build_run_model  # torch: only for rows without a record

    model = build_run_model(make_config(**profile_params(study, entry, "paper")))
    return sum(p.numel() for p in model.parameters())


def _registry_info(model: str | None, dataset: str) -> dict[str, Any]:
    """The registry's info for the model a row builds: its dataset preset (``sepcrev-bair``)
    where one is registered, which carries the paper's figures and why ours differ."""
    from vpstudy.models import list_models, model_info  # torch: only when a table has costs

    names = list_models()
    name = next((n for n in (f"{model}-{dataset}", model) if n in names), None)
    return model_info(name) if name else {}


def _efficiency_cell(recs: list[dict], key: str) -> str:
    if not recs:
        return ""
    v = recs[0].get("efficiency", {}).get(key)
    if v is None:
        return ""
    if key == "params":
        return f"{v:,}"
    if key == "size_bytes":
        return f"{v / 1e6:.2f} MB"
    if key in ("macs", "flops", "macs_per_step", "flops_per_step"):
        return f"{v / 1e9:.3f}G"
    return str(v)


def _provenance_summary(recs: list[dict], profile: str) -> dict[str, Any]:
    prov = [r.get("provenance", {}) for r in recs]
    hw = sorted({(p.get("hardware") or {}).get("name", "?") for p in prov})
    src = sorted({p.get("data_source", "?") for p in prov})
    commits = sorted({(p.get("git_commit") or "?")[:12] for p in prov})
    seeds = sorted({r["config"]["seed"] for r in recs})
    by_hw: dict[str, list[float]] = {}                # wall time means something per machine
    for p in prov:
        by_hw.setdefault((p.get("hardware") or {}).get("name", "?"), []).append(p.get("wall_time_s") or 0)
    return {"profile": profile, "runs": len(recs), "hardware": hw, "data_source": src,
            "commits": commits, "seeds": seeds,
            "wall_time_by_hardware": {h: (len(w), sum(w)) for h, w in sorted(by_hw.items())}}


def wall_time_text(by_hardware: dict[str, tuple[int, float]]) -> str:
    """'CPU (…) 41.0 min over 3 runs; NVIDIA H200 4.2 min over 2 runs'."""
    return "; ".join(f"{h} {s / 60:.1f} min over {n} run{'s' * (n != 1)}"
                     for h, (n, s) in by_hardware.items()) or "–"


def _shown_path(path: Path) -> str:
    """``path`` relative to the project directory when inside it, so reports do not depend on
    where the checkout lives."""
    try:
        return Path(path).resolve().relative_to(runs.project_dir().resolve()).as_posix()
    except ValueError:
        return str(path)


def to_markdown(df: pd.DataFrame) -> str:
    cols = list(df.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, r in df.iterrows():
        lines.append("| " + " | ".join("" if pd.isna(r[c]) else str(r[c]) for c in cols) + " |")
    return "\n".join(lines) + "\n"


def _save(fig, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, metadata=PNG_META)
    plt.close(fig)


def _models_of(table_rows: list[StudyRun], by_id: dict[str, dict]) -> dict[str, dict]:
    """For each model of a table: its best-MSE completed record (seed-0 runs)."""
    best: dict[str, dict] = {}
    for r in table_rows:
        rec = by_id.get(r.run_id)
        if rec is None:
            continue
        m = rec["config"]["model"]
        if m not in best or rec["test"]["mse"] < best[m]["test"]["mse"]:
            best[m] = rec
    return dict(sorted(best.items()))


def study_figures(name: str, profile: str, by_id: dict[str, dict], out: Path) -> list[tuple[str, Path]]:
    study = load_study(name)
    rows = study_runs(name, profile, seeds=1)
    fig_table = study.get("figures_table")
    chosen = [r for r in rows if (r.table == fig_table or r.table == "Baseline")] if fig_table else rows
    models = _models_of(chosen, by_id)
    figs: list[tuple[str, Path]] = []
    if not models:
        return figs
    first_frame = next(iter(models.values()))["config"]["in_frames"] + 1
    p = out / "per_frame.png"
    _save(plots.per_frame_metrics({m: rec["test"] for m, rec in models.items()}, first_frame=first_frame), p)
    figs.append(("Per-frame MSE and SSIM of each model (best setting per model)", p))
    trained = {m: r for m, r in models.items() if r.get("history")}
    if trained:
        p = out / "learning_curves.png"
        _save(plots.learning_curves(list(trained.values()), list(trained)), p)
        figs.append(("Learning curves (training loss, validation MSE and SSIM)", p))
        p = out / "accuracy_vs_cost.png"
        base = {m: r["test"]["mse"] for m, r in models.items() if not r.get("history")}
        _save(plots.accuracy_vs_cost(trained, baselines=base), p)
        figs.append(("Test MSE against parameters and against MACs", p))
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
                 "test sequence", p))
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


def _test_set_of(cfg: dict) -> tuple:
    return (cfg["dataset"], cfg["num_digits"], cfg["test_sequences"], cfg["image_size"],
            cfg.get("downsample", 1), cfg.get("test_file"))


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
        sets[_test_set_of(rec["config"])].append(rec)
    test_set, recs = max(sets.items(), key=lambda kv: (len(kv[1]), kv[0]))
    best: dict[str, dict] = {}
    for rec in sorted(recs, key=lambda r: r["id"]):
        m = rec["config"]["model"]
        if m not in best or rec["test"]["mse"] < best[m]["test"]["mse"]:
            best[m] = rec
    path = out / f"efficiency_{profile}.png"
    base = {}
    for rec in sorted(by_id.values(), key=lambda r: r["id"]):
        c = rec["config"]
        if c["model"] in ("last-frame", "all-black") and c["profile"] == profile \
                and _test_set_of(c) == test_set:
            base.setdefault(c["model"], rec["test"]["mse"])
    _save(plots.accuracy_vs_cost(dict(sorted(best.items())), baselines=base), path)
    frame = test_set[3] // test_set[4]
    caption = (f"Test set: {test_set[2]} fixed Moving MNIST-2 sequences at {frame}×{frame} px, "
               f"the same for every point. Each point is the model's best run at profile `{profile}`: "
               + "; ".join(f"{m} ({settings_text(r['config'])}, seed {r['config']['seed']})"
                           for m, r in sorted(best.items())) + ".")
    return path, caption


def qualitative_grid(models: dict[str, dict], index: int = 0, suffix: str = ""):
    first = None
    preds = {}
    for m, rec in models.items():
        with np.load(Path(rec["_dir"]) / runs.SAMPLES) as f:
            if first is None:
                first = (f["inputs" + suffix][index], f["targets" + suffix][index])
            preds[m] = f["predictions" + suffix][index]
    return plots.sequence_strips(first[0], first[1], preds)


REPORTS_ENV = "VPSTUDY_REPORTS"


def reports_dir(out: str | os.PathLike | None = None) -> Path:
    """``out``, else ``$VPSTUDY_REPORTS``, else ``reports/`` in the project directory."""
    return Path(out or os.environ.get(REPORTS_ENV) or runs.project_dir() / "reports")


def embed_images(markdown: str, base: Path) -> str:
    """``markdown`` with each ``![caption](relative.png)`` replaced by an inline data URI, so it
    renders wherever it is shown (a notebook's output in JupyterLab resolves no relative path)."""
    import base64
    import re

    def inline(match: "re.Match[str]") -> str:
        caption, target = match.group(1), match.group(2)
        path = Path(base) / target
        if not path.is_file():
            return match.group(0)
        data = base64.b64encode(path.read_bytes()).decode()
        return f'<img alt="{caption}" src="data:image/png;base64,{data}" style="max-width:100%">'

    return re.sub(r"!\[([^\]]*)\]\(([^)\s]+\.png)\)", inline, markdown)


def overview(root: str | os.PathLike | None = None) -> pd.DataFrame:
    """One short row per completed run: what it is (model and the settings that differ between
    runs), its test metrics, size and wall time."""
    df = runs.load_runs(root)
    if not len(df):
        return df
    cols = ["run_id", "model", "profile", "seed", "activation", "augment", "lambda1", "lambda2",
            "epochs", "batch_size", "test_mse", "test_ssim", "params", "wall_time_s"]
    out = df[[c for c in cols if c in df.columns]].copy()
    out["wall_time_min"] = (out.pop("wall_time_s").fillna(0) / 60).round(1)
    out["device"] = df["hardware"].str.split(" \\(").str[0]
    return out.sort_values(["profile", "model", "run_id"]).reset_index(drop=True)


def _how_to_run(study: dict, table: str) -> str:
    dataset = study.get("tables", {}).get(table, {}).get("dataset", "mmnist")
    if dataset == "mmnist":
        return f"Run it with `python -m vpstudy study {study['name']} --only '{table}'`."
    env = {"kth": "VPSTUDY_KTH_DIR", "bair": "VPSTUDY_BAIR_DIR"}.get(dataset, "")
    return (f"Put the {dataset.upper()} data where `${env}` points (see README, Data), then "
            f"`python -m vpstudy study {study['name']} --only '{table}'`.")


def build_report(root: str | os.PathLike | None = None, out: str | os.PathLike | None = None) -> Path:
    """Write every study's tables and figures under ``out`` and an index ``out/README.md``."""
    out = reports_dir(out)
    by_id = _records_by_id(root)
    profiles_present = sorted({r["config"]["profile"] for r in by_id.values()},
                              key=["paper", "cpu", "smoke"].index)
    md = ["# vpstudy report", "",
          "Generated by `python -m vpstudy report` from the run records alone "
          f"(runs root `{_shown_path(runs.runs_root(root))}`). Paper numbers appear only in columns labelled "
          "`paper`; every other number comes from a recorded run. MSE is per frame (sum over "
          "pixels); SSIM uses data_range 2 as published.", ""]
    for name in study_names():
        study = load_study(name)
        for profile in profiles_present:
            tables = study_tables(name, profile, by_id)
            if not any(info["runs"] for _, info in tables.values()):
                continue
            sub = out / name / profile
            md += [f"## {study.get('title', name)} — profile `{profile}`", "",
                   f"*{PROFILE_NOTES[profile]}*", ""]
            for table, (df, info) in tables.items():
                slug = table.lower().replace(" ", "")
                if not info["runs"]:
                    first_metric = next(c for c in df.columns if c.startswith("ours "))
                    why = sorted(set(df[first_metric]))
                    md += [f"### {table}: {info['caption']}", "",
                           f"Not run at profile `{profile}`: {'; '.join(why)}. "
                           f"{_how_to_run(study, table)}", ""]
                    if "ours params" in info["efficiency"]:
                        md += [f"{table}, parameters of the models it would train (built at the "
                               f"paper's settings, no run) beside the paper's:", "",
                               to_markdown(info["efficiency"][[c for c in info["efficiency"] if c in (
                                   "row", "ours params", "paper params", WHY_DIFFERS)]])]
                    continue
                sub.mkdir(parents=True, exist_ok=True)
                df.fillna("").to_csv(sub / f"{slug}.csv", index=False)
                text = to_markdown(df)
                cost = info["efficiency"]
                cost_text = to_markdown(cost) if len(cost) else ""
                if cost_text:
                    cost.to_csv(sub / f"{slug}_efficiency.csv", index=False)
                (sub / f"{slug}.md").write_text(f"# {table}: {info['caption']}\n\n{text}"
                                                + (f"\nEfficiency\n\n{cost_text}" if cost_text else ""))
                md += [f"### {table}: {info['caption']}", "", text]
                if cost_text:
                    md += [f"{table}, efficiency (parameters, size and multiply-accumulates of one "
                           f"forward pass at the frame size trained here; MACs per step: one "
                           f"3-frame window):", "", cost_text]
                md += [
                       f"Runs: {info['runs']} (seeds {info['seeds']}); profile `{profile}`; hardware: "
                       f"{', '.join(info['hardware']) or '–'}; data: {'; '.join(info['data_source']) or '–'}; "
                       f"code: {', '.join(info['commits']) or '–'}; wall time (training and test) "
                       f"by machine: {wall_time_text(info['wall_time_by_hardware'])}.", ""]
                if info["comparisons"]:
                    md += [f"**{table}: comparisons over seeds** (Welch's 95% interval of the "
                           f"difference row − reference; *detected* when it excludes 0)", "",
                           comparisons_markdown(info["comparisons"]), "Verdicts:", ""]
                    md += [f"- {c['verdict']}" for c in info["comparisons"]] + [""]
            for caption, path in study_figures(name, profile, by_id, sub):
                md += [f"**{caption}** (profile `{profile}`)", "",
                       f"![{caption}]({path.relative_to(out).as_posix()})", ""]
    for profile in profiles_present:
        made = efficiency_figure(by_id, profile, out)
        if made:
            path, caption = made
            md += [f"## Efficiency across both studies — profile `{profile}`", "",
                   "Test MSE against parameters and against MACs per sample (whole forward pass: "
                   "10 observed, 10 predicted frames). The training budgets differ between the "
                   "studies, so this shows cost, not a fair accuracy ranking. " + caption, "",
                   f"![efficiency]({path.relative_to(out).as_posix()})", ""]
    out.mkdir(parents=True, exist_ok=True)
    (out / "README.md").write_text("\n".join(md).rstrip() + "\n")
    return out / "README.md"
