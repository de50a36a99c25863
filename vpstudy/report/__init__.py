"""Regenerate ``reports/`` from the run records alone.

For each study (``vpstudy/studies/*.toml``) and each profile that has completed runs, every
table of the study is written in its own layout (markdown and CSV): our numbers (mean ± std
over seeds) beside the paper's and the difference, with the last-frame baseline as a row.
Figures: per-frame curves, learning curves, accuracy against parameters and FLOPs, and a
qualitative grid. ``reports/README.md`` shows them all and says, for each, which profile,
data source, seeds and hardware produced it. A table holds runs of one profile only.

Regenerating from the same records gives byte-identical files. By concern:
`tables` (records into tables), `comparisons` (seed comparisons and verdicts), `figures`
(which records each figure shows; drawing is `vpstudy.plots`), `markdown` (writing files).
"""

from vpstudy.report.figures import efficiency_figure, qualitative_grid, study_figures, time_to_accuracy_curves
from vpstudy.report.markdown import (
                                     REPORTS_ENV,
                                     build_report,
                                     comparisons_markdown,
                                     embed_images,
                                     notebook_view,
                                     reports_dir,
                                     to_markdown,
                                     wall_time_text,
)
from vpstudy.report.records import records_by_id
from vpstudy.report.tables import baseline_check, overview, settings_text, study_tables

__all__ = ["REPORTS_ENV", "baseline_check", "build_report", "comparisons_markdown", "efficiency_figure",
           "embed_images", "notebook_view", "overview", "qualitative_grid", "reports_dir", "settings_text",
           "study_figures", "study_tables", "time_to_accuracy_curves", "to_markdown",
           "wall_time_text", "records_by_id"]
