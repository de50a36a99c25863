"""Writing ``reports/``: each table as markdown and CSV, and ``reports/README.md`` with every
table, comparison and figure (`build_report`).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from vpstudy import runs
from vpstudy.report.comparisons import left_out_text
from vpstudy.report.figures import efficiency_figure, study_figures
from vpstudy.report.records import DIGITS, records_by_id
from vpstudy.report.tables import MEASURED_COLUMNS, WHY_DIFFERS, study_tables
from vpstudy.study import load_study, study_names

PROFILE_NOTES = {
    "smoke": "smoke profile: a few steps on a handful of sequences; the numbers mean nothing",
    "cpu": "cpu profile — a proxy of the study, not a replication: frames of 32×32 pixels (the "
           "64×64 videos averaged 2×2) and 1.3% of the paper's training sequences (2.6% of "
           "SimVP's optimizer steps, 5.3% of the lightweight study's; each table's settings "
           "column gives the budget). MSE is on another scale than the paper's (a quarter of the "
           "pixels), so rows are compared with their table's reference row in %, ours beside the "
           "paper's, and over seeds with 95% intervals",
    "paper": "paper profile: the study's settings",
}


REPORTS_ENV = "VPSTUDY_REPORTS"


def comparisons_markdown(comparisons: list[dict]) -> str:
    """The table of compared pairs: the primary (paired, else Welch) and the pooled difference
    with 95% intervals, the p-values unadjusted and Holm-adjusted, the verdict after Holm, the
    smallest difference detectable with 80% power and the paper's difference."""
    if not comparisons:
        return ""
    lines = ["| row vs reference | metric | ours: difference [95% CI] | design | pooled [95% CI] | p | "
             "Holm p | detected (Holm) | detectable at 80% power | paper: difference |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for c in comparisons:
        digits = DIGITS.get(c["metric"].partition("@")[0], 4)
        f = f"{{:+.{digits}f}}"
        d, pooled = c["difference"], c["pooled"]
        ci = f"[{f.format(d.low)}, {f.format(d.high)}]" if d.has_interval else "[no interval]"
        pci = (f"{f.format(pooled.diff)} [{f.format(pooled.low)}, {f.format(pooled.high)}]"
               if pooled is not None and pooled.has_interval else "–")
        design = f"paired, {d.n_row} seeds" if d.design == "paired" else f"Welch, {d.n_row} vs {d.n_ref}"
        if c.get("left_out"):
            design += f" ({left_out_text(c['left_out'])} left out: split across machines)"
        p = f"{d.p:.3g}" if d.has_interval else "–"
        holm = f"{c['holm_p']:.3g}" if np.isfinite(c["holm_p"]) else "–"
        if c["confounded"]:
            detected = f"confounded: {c['confounded']}"
        elif not d.has_interval:
            detected = "not testable"
        else:
            detected = ("tentative: below the seed sd" if c["tentative"] else "yes") if c["detected_holm"] else "no"
        mdd = f"{abs(d.detectable()):.{digits}f}" if d.has_interval else "–"
        pd_ = "" if c["paper_diff"] is None else f.format(c["paper_diff"])
        lines.append(f"| {c['row']} vs {c['reference']} | {c['metric']} | {f.format(d.diff)} {ci} | {design} | "
                     f"{pci} | {p} | {holm} | {detected} | {mdd} | {pd_} |")
    return "\n".join(lines) + "\n"


def _seeds_text(n: int | None) -> str:
    return "> 100" if n is None else str(n)


def seeds_needed_markdown(rows: list[dict]) -> str:
    """How many seeds per arm each comparison would need to detect the paper's effect (scaled
    to this reference) and the observed one, with 80% power at the 5% level, and the observed
    one at Holm's strictest level 5%/m (m: the study's tested comparisons)."""
    if not rows:
        return ""
    m = rows[0]["family size"]
    lines = ["| comparison | metric | design | seeds now | spread (sd) | paper's effect here | seeds for it | "
             f"observed effect | seeds for it | seeds for it under Holm (5%/{m}) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        digits = DIGITS.get(r["metric"].partition("@")[0], 4) + 1
        paper = f"{r['paper effect here']:+.{digits}f}" if np.isfinite(r["paper effect here"]) else "–"
        lines.append(f"| {r['comparison']} | {r['metric']} | {r['design']} | {r['seeds now']} | "
                     f"{r['spread']:.{digits}f} | {paper} | "
                     f"{_seeds_text(r['seeds for the paper effect']) if paper != '–' else '–'} | "
                     f"{r['observed effect']:+.{digits}f} | {_seeds_text(r['seeds for the observed effect'])} | "
                     f"{_seeds_text(r['seeds for the observed effect under Holm'])} |")
    return "\n".join(lines) + "\n"


COST_WORDS = {"params": "parameters", "size_bytes": "size (fp32 weights)",
              "macs": "multiply-accumulates (MACs) of one forward pass (10 observed, 10 predicted frames)",
              "flops": "FLOPs of one forward pass (2 per multiply-accumulate)",
              "macs_per_step": "MACs per step (one 3-frame window)"}


MEASURED_WORDS = ("measured by `python -m vpstudy bench` on the hardware named: inference latency in "
                  "ms per predicted frame at batch 1 and 16 (10 observed -> 10 predicted, "
                  "torch.inference_mode, the model's training precision; eager PyTorch and the "
                  "exported ONNX graph under ONNX Runtime) and the peak resident memory of a fresh "
                  "process through one training step")


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


# How report.ipynb lays out the report: tables wrap their cells to fit the pane (long cells
# break between words, run ids anywhere), small type, figures at most the pane's width.
NOTEBOOK_CSS = """<style>
.vpstudy-report table { table-layout: auto; width: 100%; font-size: 11px; border-collapse: collapse; }
.vpstudy-report th, .vpstudy-report td { white-space: normal; overflow-wrap: anywhere;
  max-width: 18em; padding: 2px 4px; vertical-align: top; }
.vpstudy-report img { max-width: 100%; }
</style>"""


def notebook_view(index: Path, runs_table: pd.DataFrame) -> tuple[str, str]:
    """What report.ipynb shows, as HTML: the report (``index``'s markdown rendered, figures
    embedded) with tables that fit the pane, and every completed run in a collapsed block."""
    import mistune

    to_html = mistune.create_markdown(escape=False, plugins=["table"])
    report = (f'{NOTEBOOK_CSS}<div class="vpstudy-report">'
              f"{to_html(embed_images(index.read_text(), index.parent))}</div>")
    rows = runs_table.to_html(index=False, float_format="{:.4g}".format) if len(runs_table) else (
        "no runs yet: run <code>python -m vpstudy study simvp</code> first")
    every_run = (f'{NOTEBOOK_CSS}<details class="vpstudy-report"><summary>Every completed run '
                 f"({len(runs_table)}): what it is, its test metrics, size and wall time</summary>"
                 f"{rows}</details>")
    return report, every_run


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
    by_id = records_by_id(root)
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
                               f"paper's settings, no run) beside the paper's, and their measured "
                               f"latency and memory (`python -m vpstudy bench`; latency needs no "
                               f"training):", "",
                               to_markdown(info["efficiency"][[c for c in info["efficiency"] if c in (
                                   "row", "ours params", "paper params", *MEASURED_COLUMNS,
                                   WHY_DIFFERS)]])]
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
                    words = [COST_WORDS.get(c, c) for c in load_study(name)["tables"][table].get("efficiency", [])]
                    words.append(MEASURED_WORDS)
                    md += [f"{table}, efficiency at the frame size trained here: {'; '.join(words)}:",
                           "", cost_text]
                md += [
                       f"Runs: {info['runs']} (seeds {info['seeds']}); profile `{profile}`; hardware: "
                       f"{', '.join(info['hardware']) or '–'}; data: {'; '.join(info['data_source']) or '–'}; "
                       f"code: {', '.join(info['commits']) or '–'}; wall time (training and test) "
                       f"by machine: {wall_time_text(info['wall_time_by_hardware'])}.", ""]
                if info["comparisons"]:
                    family = info["comparisons"][0]["family_size"]
                    md += [f"**{table}: comparisons over seeds** (difference row − reference with its "
                           f"95% interval: paired over the seeds both rows trained on one machine, else "
                           f"Welch's; pooled: the table's additive config + seed (on its machine) model; "
                           f"*detected* when Holm's adjusted p over the study's {family} tested "
                           f"comparisons is below 0.05; *confounded* when the arms differ in device, "
                           f"precision, torch or code version, or pair on no machine)", "",
                           comparisons_markdown(info["comparisons"]), "Verdicts:", ""]
                    md += [f"- {c['verdict']}" for c in info["comparisons"]] + [""]
                if info["seeds_needed"]:
                    md += [f"**{table}: seeds needed** (per arm, to detect the effect with 80% power "
                           f"at the unadjusted 5% level, from this design's spread: the sd of the "
                           f"seed-wise differences when paired; the paper's effect here is its "
                           f"relative change times our reference mean; the last column at 5%/m, "
                           f"the level Holm applies to the first of the study's m = {family} "
                           f"comparisons, so that many seeds detect the observed effect under Holm "
                           f"whatever the others show)", "",
                           seeds_needed_markdown(info["seeds_needed"])]
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
