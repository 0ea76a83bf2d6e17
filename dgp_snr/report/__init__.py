"""REPRODUCTION.md's generated blocks: every table between a pair of markers

    <!-- generated: NAME (python experiments/report.py --markdown) -->
    ...
    <!-- end: NAME -->

is written from committed CSVs by `render_blocks`, so no number in them is typed by hand and a
test can regenerate the report and compare (tests/test_report.py).

Blocks: `table_1_splits` and `figure_4_splits` (each of our reduced runs beside the authors'
released value for the same dataset, split and setting, with paired differences and paired
standard errors), `wilcoxon_power` (how many splits a Wilcoxon signed-rank test needs to see
the paper's solar REG/DReG difference), `paper_runs`, `test_ll_breakdown` and
`paper_runs_findings` (dgp_snr.campaign's runs beside the authors').
"""

import os
from pathlib import Path
from typing import Callable, Dict

from dgp_snr.io import atomic_write_text
from dgp_snr.report.authors import (  # noqa: F401 (the package's face)
    POWER_ALPHA,
    figure_4_splits,
    min_two_sided_p,
    paired_se,
    signed_rank_p,
    table_1_splits,
    wilcoxon_power,
    wilcoxon_power_block,
)
from dgp_snr.report.blocks import (  # noqa: F401
    AUTHORS_CSV,
    NOT_RECORDED,
    PAPER_RUNS_CSV,
    REPORT_FILE,
    begin_marker,
    block_bodies,
    end_marker,
    fill_blocks,
)
from dgp_snr.report.paper_runs import (  # noqa: F401
    authors_repeats,
    learning_curve_markdown,
    paper_runs_block,
    paper_runs_findings,
    test_ll_breakdown_block,
)
from dgp_snr.report.tables import (  # noqa: F401
    LABELS,
    figure_1_snr,
    figure_2_snr,
    figure_4_main,
    figure_8_snr,
    figure_9_snr,
    paper_runs_figure_8,
    provenance,
    runs_trained_with,
    slopes_block,
    table_1_main,
    thread_layout,
)

GENERATORS: Dict[str, Callable[[Path], str]] = {
    "thread_layout": thread_layout,
    "figure_1_slopes": slopes_block("figure_1"),
    "figure_3_slopes": slopes_block("figure_3"),
    "figure_9_slopes": slopes_block("figure_9"),
    "provenance": provenance,
    "figure_1_snr": figure_1_snr,
    "figure_2_snr": figure_2_snr,
    "figure_9_snr": figure_9_snr,
    "table_1_main": table_1_main,
    "figure_4_main": figure_4_main,
    "figure_8_snr": figure_8_snr,
    "table_1_splits": table_1_splits,
    "figure_4_splits": figure_4_splits,
    "wilcoxon_power": wilcoxon_power_block,
    "paper_runs": paper_runs_block,
    "test_ll_breakdown": test_ll_breakdown_block,
    "paper_runs_findings": paper_runs_findings,
    "paper_runs_figure_8": paper_runs_figure_8,
}


def render_blocks(root: os.PathLike = ".") -> Dict[str, str]:
    root = Path(root)
    return {name: make(root) for name, make in GENERATORS.items()}


def write_report(root: os.PathLike = ".") -> Path:
    """Regenerates every block of REPRODUCTION.md in place."""
    path = Path(root) / REPORT_FILE
    atomic_write_text(path, fill_blocks(path.read_text(), render_blocks(root)))
    return path
