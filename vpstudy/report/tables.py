"""The report's tables: a study's records collected into one table per paper table.

    tables = study_tables("simvp", "cpu", records_by_id(None))
    df, info = tables["Table 1"]          # rows (mean ± std over seeds, paper columns), info

``info`` holds the table's provenance summary, its cost rows and its seed comparisons
(`vpstudy.report.comparisons`). A table holds runs of one profile only.
"""

from __future__ import annotations

import functools
import os
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from vpstudy import runs
from vpstudy.config import make_config
from vpstudy.report.comparisons import adjust_for_multiplicity, seeds_needed_rows, table_comparisons
from vpstudy.report.records import DIGITS, design_text, mean_std_text, metric_values
from vpstudy.study import StudyRun, load_study, profile_only_rows, profile_params, study_runs

WHY_DIFFERS = "why ours differs from the paper"   # efficiency column: the registry's paper_note


def steps_of(cfg: dict) -> int:
    """The optimizer steps a written config trains."""
    return cfg["epochs"] * (cfg["sequences_per_epoch"] // cfg["batch_size"])


def settings_text(cfg: dict) -> str:
    """What a run trained: epochs, sequences, steps, batch and frame size."""
    steps = steps_of(cfg)
    frame = cfg["image_size"] // cfg.get("downsample", 1)
    return (f"{cfg['epochs']} ep × {cfg['sequences_per_epoch']:,} seq = {steps:,} steps at bs "
            f"{cfg['batch_size']}, {frame}×{frame} px, lr {cfg['lr']:g}")


def _column_cell(col: str, run: StudyRun, paper_params: dict) -> str:
    """A setting column: the value run here, and the paper's where the profile changed it."""
    here, paper = run.params.get(col, ""), paper_params.get(col, "")
    return f"paper {paper} / here {here}" if paper != "" and paper != here else str(here)


def _missing_text(name: str, profile: str, table: str, row: str, dataset: str) -> str:
    only = profile_only_rows(name, profile).get((table, row))
    if only:
        return f"{'/'.join(only)} profile only"
    if dataset != "mmnist":
        return f"no {dataset.upper()} data here"
    return "not run"


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


def frames_behind(recs: list[dict], baselines: dict[str, list[dict]]) -> str:
    """The predicted frames at which a trained row's mean over seeds is worse than a baseline's
    (per frame, MSE and SSIM), e.g. 'SSIM: t = 16-20 behind all-black'; '' when none."""
    if not recs or not recs[0].get("history"):
        return ""
    first = recs[0]["config"]["in_frames"] + 1
    found = []
    for metric, lower in (("mse", True), ("ssim", False)):
        ours = np.mean([r["test"]["per_frame"][metric] for r in recs], axis=0)
        for name in ("all-black", "last-frame"):
            if not baselines.get(name):
                continue
            theirs = np.asarray(baselines[name][0]["test"]["per_frame"][metric])
            behind = np.flatnonzero(ours >= theirs if lower else ours <= theirs)
            if len(behind):
                found.append(f"{metric.upper()}: t = {_frame_ranges(behind + first)} behind {name}")
    return "; ".join(found)


def _frame_ranges(frames) -> str:
    """[16, 17, 18, 20] -> '16-18, 20'."""
    spans: list[list[int]] = []
    for t in map(int, frames):
        if spans and t == spans[-1][1] + 1:
            spans[-1][1] = t
        else:
            spans.append([t, t])
    return ", ".join(f"{a}-{b}" if b > a else f"{a}" for a, b in spans)


def _comparisons(spec: dict, rows: list[str], metrics: list[str]) -> list[tuple[str, str, list[str]]]:
    """The (row, reference row, metrics) a table compares: ``compare = [[row, ref], ...]`` or
    ``reference = "row"`` (every other row of the table against it), on ``metrics``; a
    ``compare`` entry may name its own metrics as a third element (a claim about one pair only,
    e.g. Table 5's sharpness, stays out of the other pairs' multiplicity family)."""
    pairs = [(p[0], p[1], list(p[2]) if len(p) > 2 else metrics) for p in spec.get("compare", [])]
    ref = spec.get("reference")
    if ref:
        pairs += [(r, ref, metrics) for r in rows if r != ref]
    return pairs


def study_tables(name: str, profile: str, by_id: dict[str, dict], max_seeds: int = 10
                 ) -> dict[str, tuple[pd.DataFrame, dict]]:
    """``{table: (DataFrame, info)}`` for one study at one profile, from the records present.

    At the paper profile, each metric shows ours, the paper's and the difference. At a smaller
    scale (another frame size, far fewer steps) absolute differences to the paper mean nothing:
    each row shows its change against the table's reference row, ours beside the paper's, in %.
    ``info["comparisons"]`` holds, for each compared pair and metric, the difference over seeds
    with its paired (else Welch) and pooled 95% intervals, its Holm-adjusted p-value over the
    study's comparisons and a verdict sentence; ``info["seeds_needed"]`` how many seeds each
    would need (`vpstudy.report.comparisons`).
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
        pairs = _comparisons(spec, [k[1] for k in keys], spec.get("compare_metrics", metrics))
        reference_of: dict[str, str] = {}
        for row, ref, _ in pairs:
            reference_of.setdefault(row, ref)
        referenced = {ref for _, ref, _ in pairs} - set(reference_of)
        several_refs = len(set(reference_of.values())) > 1     # name each row's reference then
        rows, used, efficiency = [], [], []
        only_elsewhere = profile_only_rows(name, profile)
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
                vals = metric_values(recs, m)
                mean = float(np.mean(vals)) if vals else float("nan")
                std = float(np.std(vals, ddof=1)) if len(vals) > 1 else None
                line[f"ours {m}"] = mean_std_text(mean, std, digits) if recs else missing
                p = paper.get(m)
                if paper_scale:
                    line[f"paper {m}"] = "" if p is None else f"{p:.{digits}f}"
                    line[f"Δ {m}"] = f"{mean - p:+.{digits}f}" if vals and p is not None else ""
                elif key[1] in referenced:
                    line[f"vs ref {m}: ours / paper"] = "reference"
                elif ref_key in entries:
                    ref_vals = metric_values(recs_of.get(ref_key, []), m)
                    p_ref = entries[ref_key].get("paper", {}).get(m)
                    ours = f"{mean / np.mean(ref_vals) - 1:+.1%}" if vals and ref_vals else "–"
                    theirs = f"{p / p_ref - 1:+.1%}" if p is not None and p_ref else "–"
                    line[f"vs ref {m}: ours / paper"] = f"{ours} / {theirs}" + (
                        f" (vs {ref_key[1]})" if several_refs else "")
            if spec.get("efficiency") and key[0] != "Baseline":
                efficiency.append(_efficiency_row(study, entry, recs, spec["efficiency"],
                                                  paper_cost_cols, dataset, profile))
            line["seeds"] = len(recs)
            sampled = [r["test"] for r in recs if r.get("test", {}).get("samples")]
            if sampled:              # a stochastic model: best of N samples (SVG's protocol)
                pm = sampled[0].get("prior_mean", {})
                line["evaluation"] = (f"best of {sampled[0]['samples']} samples per sequence; prior mean: "
                                      + ", ".join(f"{m} {pm[m]:.{DIGITS.get(m, 4)}f}"
                                                  for m in metrics if m in pm))
            trained = bool(recs and recs[0].get("history"))
            if key[0] != "Baseline":
                line["beats both baselines"] = baseline_check(recs, baselines)
                line["frames behind a baseline"] = frames_behind(recs, baselines) if trained else ""
                line["trained on"] = design_text(recs) if trained else ""
            line["settings"] = settings_text(recs[0]["config"]) if trained else (
                "no training" if recs else "")
            if not recs and key in only_elsewhere:
                line["settings"] = _unrun_row_cost(study, entry, profile, recs_of)
            rows.append(line)
        if any("evaluation" in line for line in rows):
            for line in rows:
                line.setdefault("evaluation", "deterministic" if line.get("seeds") else "")
        info = _provenance_summary(used, profile)
        info["caption"] = spec.get("caption", "")
        info["comparisons"] = table_comparisons(table, pairs, recs_of, entries)
        cost = pd.DataFrame(efficiency)
        if WHY_DIFFERS in cost and not cost[WHY_DIFFERS].any():
            cost = cost.drop(columns=WHY_DIFFERS)
        info["efficiency"] = cost
        tables[table] = (pd.DataFrame(rows), info)
    family = [c for _, info in tables.values() for c in info["comparisons"]]
    adjust_for_multiplicity(family)                 # Holm over the study's comparisons
    needed = seeds_needed_rows(family)
    for table, (_, info) in tables.items():
        info["seeds_needed"] = [r for r in needed if r["table"] == table]
    return tables


def _unrun_row_cost(study: dict, entry: dict, profile: str, recs_of: dict[tuple, list[dict]]) -> str:
    """The measured cost of a row that does not run at ``profile``, at the profile's batch and
    frame size and the step budget of the table's trained rows (the most any of them took)."""
    params = profile_params(study, entry, profile)
    cfg = make_config(**{**params, "seed": 0})
    trained = [r for (table, _), recs in recs_of.items() if table == entry["table"]
               for r in recs if r.get("history")]
    steps = [steps_of(r["config"]) for r in trained]
    precisions = {(r.get("provenance") or {}).get("precision") for r in trained}
    return unrun_cost_text(cfg.model, cfg.batch_size, cfg.frame_size, max(steps, default=None), profile,
                           table_fp32=precisions == {"fp32"})


def _efficiency_row(study: dict, entry: dict, recs: list[dict], columns: list[str],
                    paper_columns: list[str], dataset: str, profile: str) -> dict[str, str]:
    """One row of a table's cost table: ours (from the records; without records, the
    parameters of the model built at the paper's settings), the paper's, the measured latency
    and memory of the model at the frame size the row trains at this profile, and why ours
    differ from the paper's."""
    cfg = make_config(**{**profile_params(study, entry, profile), "seed": 0})
    cost = {"row": entry["row"]}
    for col in columns:
        cost[f"ours {col}"] = _efficiency_cell(recs, col)
        if col == "params" and not recs:
            n = _params_at_paper_settings(study, entry)
            cost["ours params"] = f"{n:,} (not run: built at the paper's settings)"
        if col in paper_columns:
            cost[f"paper {col}"] = entry.get("paper", {}).get(col, "")
    cost.update(measured_cells(_registry_name(cfg.model, dataset), frame_size=cfg.frame_size))
    cost[WHY_DIFFERS] = _registry_info(cfg.model, dataset).get("paper_note", "")
    return cost


# The measured columns of an efficiency table (from `python -m vpstudy bench` results).
MEASURED_COLUMNS = ("latency ms/frame, batch 1 · 16", "ONNX Runtime ms/frame, batch 1 · 16",
                    "training-step peak RSS", "measured on")


def _bench_results(folder=None) -> tuple[tuple[str, dict], ...]:
    """The committed bench results (``reports/benchmarks/*.json``), oldest first: by the time
    they were measured (``provenance.measured_at``; files from before it was recorded first),
    then by file name."""
    folder = runs.project_dir() / "reports" / "benchmarks" if folder is None else folder
    files = tuple(sorted((str(path), path.stat().st_mtime_ns) for path in Path(folder).glob("*.json")))
    return _read_benches(files)


@functools.lru_cache(maxsize=4)
def _read_benches(files: tuple[tuple[str, int], ...]) -> tuple[tuple[str, dict], ...]:
    """`_bench_results` of these (path, mtime) files: read once per report, not once per row."""
    import json

    found = [(Path(path).name, json.loads(Path(path).read_text())) for path, _ in files]
    return tuple(sorted(found, key=lambda nr: ((nr[1].get("provenance") or {}).get("measured_at", ""), nr[0])))


def measured_inference(folder=None) -> dict[str, dict[str, Any]]:
    """Per model, its inference latency and training-step memory from the committed bench
    results (``reports/benchmarks/*.json`` with an 'inference' entry; the latest measured wins),
    with the hardware, threads and frame size they were measured at."""
    found: dict[str, dict[str, Any]] = {}
    for name, result in _bench_results(folder):
        for model, row in result.get("inference", {}).items():
            found[model] = {**row, "hardware": result["hardware"]["name"], "threads": result["threads"],
                            "frame_size": result["frame_size"], "file": name}
    return found


def measured_steps(folder=None) -> dict[tuple[str, int, int], dict[str, Any]]:
    """(model, batch size, frame size) -> its measured training step on the CPU (the committed
    bench results; the latest measured wins), with the hardware, threads and file."""
    found: dict[tuple[str, int, int], dict[str, Any]] = {}
    for name, result in _bench_results(folder):
        if result.get("device") != "cpu":
            continue
        for row in result.get("models", []):
            found[(row["model"], row["batch_size"], row["frame_size"])] = {
                **row, "hardware": result["hardware"]["name"], "threads": result["threads"], "file": name}
    return found


def unrun_cost_text(model: str, batch_size: int, frame_size: int, steps: int | None, profile: str,
                    measured: dict[tuple[str, int, int], dict[str, Any]] | None = None,
                    table_fp32: bool = False) -> str:
    """Why a row does not run at ``profile``, in hours: its measured CPU training step at the
    profile's batch and frame size times the table's step budget ('' without a measurement).
    ``table_fp32``: the table's trained rows are all fp32, so a comparable row would train in
    fp32 too; where the model's own precision is another, its measured fp32 step is added."""
    m = (measured_steps() if measured is None else measured).get((model, batch_size, frame_size))
    if m is None or not steps:
        return ""
    text = (f"not run at the {profile} profile: a training step takes {m['step_s']:.2f} s here "
            f"(batch {batch_size}, {frame_size}×{frame_size} px, {m['precision']}; {m['hardware']}; "
            f"{m['file']}), so the table's {steps:,} steps would take ≈{m['step_s'] * steps / 3600:.1f} h "
            f"per seed")
    if table_fp32 and m["precision"] != "fp32" and m.get("fp32_eager_step_s"):
        fp32 = m["fp32_eager_step_s"]
        text += (f"; in fp32, the precision of the table's trained rows (which a comparison with "
                 f"them needs), {fp32:.2f} s per step: ≈{fp32 * steps / 3600:.1f} h per seed")
    return text


def measured_cells(model: str | None, measured: dict[str, dict[str, Any]] | None = None,
                   frame_size: int | None = None) -> dict[str, str]:
    """The MEASURED_COLUMNS of one model ('not measured' where no bench result has it, or,
    given ``frame_size``, none has it at that frame size)."""
    m = (measured_inference() if measured is None else measured).get(model or "")
    if m is None or (frame_size is not None and m["frame_size"] != frame_size):
        at = f" at {frame_size}×{frame_size}" if m is not None else ""
        return {MEASURED_COLUMNS[0]: f"not measured{at}", **{c: "" for c in MEASURED_COLUMNS[1:]}}

    def pair(kind: str) -> str:
        vals = [m.get(f"{kind}_b{bs}_ms_per_frame") for bs in (1, 16)]
        return " · ".join("–" if v is None else f"{v:.2f}" for v in vals)

    return {MEASURED_COLUMNS[0]: pair("eager"), MEASURED_COLUMNS[1]: pair("onnxruntime"),
            MEASURED_COLUMNS[2]: (f"{m['peak_rss_mb']:.0f} MB (batch {m['memory_batch_size']})"
                                  if "peak_rss_mb" in m else "–"),
            MEASURED_COLUMNS[3]: f"{m['hardware']}, {m['threads']} threads, {m['frame_size']}×"
                                 f"{m['frame_size']} frames ({m['file']})"}


def _params_at_paper_settings(study: dict, entry: dict) -> int:
    """Parameters of a row's model built as its paper-profile config would build it."""
    from vpstudy.train import build_run_model  # torch: only for rows without a record

    model = build_run_model(make_config(**profile_params(study, entry, "paper")))
    return sum(p.numel() for p in model.parameters())


def _registry_info(model: str | None, dataset: str) -> dict[str, Any]:
    """The registry's info for the model a row builds: its dataset preset (``sepcrev-bair``)
    where one is registered, which carries the paper's figures and why ours differ."""
    from vpstudy.models import model_info  # torch: only when a table has costs

    name = _registry_name(model, dataset)
    return model_info(name) if name else {}


def _registry_name(model: str | None, dataset: str) -> str | None:
    """The registry name of a row's model: its dataset preset (``sepcrev-bair``) where one is
    registered, else the model's own (None for a row without a model)."""
    from vpstudy.models import list_models

    names = list_models()
    return next((n for n in (f"{model}-{dataset}", model) if n in names), None)


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


def _machine(prov: dict) -> str:
    """A record's machine, as named in its provenance ('1 threads' in older records reads '1 thread')."""
    return (prov.get("hardware") or {}).get("name", "?").replace(", 1 threads)", ", 1 thread)")


def _provenance_summary(recs: list[dict], profile: str) -> dict[str, Any]:
    prov = [r.get("provenance", {}) for r in recs]
    hw = sorted({_machine(p) for p in prov})
    src = sorted({p.get("data_source", "?") for p in prov})
    commits = sorted({(p.get("git_commit") or "?")[:12] for p in prov})
    seeds = sorted({r["config"]["seed"] for r in recs})
    by_hw: dict[str, list[float]] = {}                # wall time means something per machine
    for p in prov:
        by_hw.setdefault(_machine(p), []).append(p.get("wall_time_s") or 0)
    return {"profile": profile, "runs": len(recs), "hardware": hw, "data_source": src,
            "commits": commits, "seeds": seeds,
            "wall_time_by_hardware": {h: (len(w), sum(w)) for h, w in sorted(by_hw.items())}}


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
