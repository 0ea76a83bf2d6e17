"""Table 1: test log-likelihood and train ELBO of REG- vs DReG-trained runs (mean ± standard
error over splits) and the Wilcoxon signed-rank tests over the paired runs.

  table_1   <results>/figure_data/table_1_tll.txt and table_1_elbo.txt (evaluate.py table_1)
            from <dataset>_L1_G5_IWAE_SF<s>_K50_BS64_{reg,dreg}: per dataset the first 20
            splits (of 0-40) whose runs both finished

table_1_data collects one row per run; table_1_text, table_1_markdown and draw_table_1 make
the table from that frame alone.
"""

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, TextIO, Tuple

import matplotlib
import numpy as np
import pandas as pd
import scipy.stats
from matplotlib import pyplot as plt

from dgp_snr.figure_data import PREVIEW_MARKER
from dgp_snr.plotting.common import (
    ESTIMATORS,
    FIGURES_DIR,
    FigureReport,
    TidyFigure,
    _in_order,
    _label,
    _save,
    target_data,
)
from dgp_snr.plotting.evaluation_figures import NO_DATA, UNKNOWN_STEP, _evaluation

#: table_1_data's columns: one row per evaluated run.
TABLE_1_COLUMNS = (
    "dataset",
    "split",
    "estimator",
    "test_ll",
    "train_elbo",
    "num_train",
    "num_repeats",
    "step",
    "preview",
)


# ------------------------------------------------------------------------------ Wilcoxon
@dataclass
class WilcoxonTests:
    """scipy.stats.wilcoxon over paired per-run test log-likelihoods (REG, DReG): two-sided,
    and one-sided with the alternative that REG's are smaller (DReG better)."""

    two_sided: object
    one_sided: object
    num_pairs: int


def wilcoxon_tests(reg: Sequence[float], dreg: Sequence[float]) -> WilcoxonTests:
    """The two Wilcoxon signed-rank tests of Table 1 on paired values."""
    reg, dreg = np.asarray(reg, dtype=float), np.asarray(dreg, dtype=float)
    if reg.shape != dreg.shape or reg.ndim != 1:
        raise ValueError(f"paired values needed, got shapes {reg.shape} and {dreg.shape}")
    if len(reg) < 1:
        raise ValueError("no paired values for the Wilcoxon tests")
    return WilcoxonTests(
        scipy.stats.wilcoxon(reg, dreg),
        scipy.stats.wilcoxon(reg, dreg, alternative="less"),
        len(reg),
    )


def _mean_se(values: Sequence[float]) -> str:
    values = np.asarray(values, dtype=float)
    if len(values) == 0:
        return "-"
    se = np.std(values, ddof=1) / np.sqrt(len(values)) if len(values) > 1 else float("nan")
    return f"{np.mean(values):.3f} ± {se:.3f}"


# ------------------------------------------------------------------------------ collect
def _num_train(dataset: str) -> Optional[int]:
    """Training-set size of a dataset (split 0), or None when the data cannot be loaded."""
    from dgp_snr.data import DataError, get_regression_data

    try:
        return int(get_regression_data(dataset, 0).X_train.shape[0])
    except (DataError, OSError):
        return None


@target_data("table_1")
def table_1_data(
    results_path: os.PathLike = "results", *, out: Optional[TextIO] = None, **params: Any
) -> Tuple[pd.DataFrame, FigureReport]:
    """Table 1's inputs as a tidy frame (TABLE_1_COLUMNS) and the report of its missing
    inputs; raises MissingInputsError when the test log-likelihood file has no row for
    `datasets`. `params`: the parameters of protocol.targets.table_1 (datasets, splits,
    iterations, ...), by name.

    One row per run in the test log-likelihood file (dataset in `datasets` order, then REG
    before DReG, then split): `estimator` 'reg' or 'dreg', `test_ll` the mean of its
    `num_repeats` repeated test log-likelihoods, `train_elbo` the mean of its repeated
    full-data train ELBOs (NaN when the ELBO file has no such row), `num_train` the dataset's
    number of training points (the table divides the ELBO by it; NaN when the data cannot be
    loaded or no ELBO is there to divide), `step` the checkpoint evaluated (UNKNOWN_STEP: -1
    when not known), `preview` whether either file is marked PREVIEW. A dataset without rows
    keeps one row with `estimator` NO_DATA (NaN values)."""
    evaluation = _evaluation("table_1", results_path, params, ("test_ll", "train_elbo"), out)
    elbo, preview = evaluation.rows["train_elbo"], evaluation.preview
    nan = float("nan")
    records = []
    for dataset in evaluation.spec.params["datasets"]:
        runs = evaluation.runs("test_ll", dataset)  # REG (F) first, then split
        # Loading the data for its size only when an ELBO needs it (as the table always did).
        has_elbo = any(key in elbo for key, _, _ in runs)
        n = _num_train(dataset) if has_elbo else None
        for key, row, step in runs:
            records.append(
                (dataset, row.split, ESTIMATORS[row.flag], row.mean)
                + (elbo[key].mean if key in elbo else nan, nan if n is None else float(n))
                + (len(row.values), step, preview)
            )
        if not runs:
            records.append((dataset, -1, NO_DATA, nan, nan, nan, 0, UNKNOWN_STEP, preview))
    return pd.DataFrame(records, columns=list(TABLE_1_COLUMNS)), evaluation.report


# ------------------------------------------------------------------------------ the table
@dataclass
class Table1:
    """Table 1 computed from table_1_data's frame: per dataset (label, number of paired
    splits, the four 'mean ± se' cells), the Wilcoxon tests over every pair (None without
    pairs) and whether it is a preview."""

    rows: List[Tuple[str, int, str, str, str, str]]
    tests: Optional[WilcoxonTests]
    preview: bool


def table_1_summary(df: pd.DataFrame) -> Table1:
    """The table from the frame alone: per dataset the splits with both a REG and a DReG row,
    their test log-likelihoods' and ELBO / num_train's mean ± standard error, and the
    Wilcoxon tests over all paired (dataset, split) runs (REG vs DReG, datasets in the frame's
    order, splits ascending)."""
    rows = []
    reg_all: List[float] = []
    dreg_all: List[float] = []
    for dataset in _in_order(df["dataset"]):
        mine = df[df["dataset"] == dataset]
        by_est: Dict[str, pd.DataFrame] = {
            est: mine[mine["estimator"] == est].set_index("split") for est in ESTIMATORS
        }
        pairs = sorted(set(by_est["reg"].index) & set(by_est["dreg"].index))
        reg = [float(by_est["reg"].at[s, "test_ll"]) for s in pairs]
        dreg = [float(by_est["dreg"].at[s, "test_ll"]) for s in pairs]
        reg_all += reg
        dreg_all += dreg
        numbers = mine["num_train"].dropna()
        n = float(numbers.iloc[0]) if len(numbers) else None
        cells = []
        for est in ESTIMATORS:
            elbos = by_est[est].loc[pairs, "train_elbo"] if pairs else pd.Series(dtype=float)
            values = [float(v) for v in elbos if np.isfinite(v)]
            cells.append(_mean_se(np.array(values) / n) if values and n else "-")
        rows.append((_label(dataset), len(pairs), _mean_se(reg), _mean_se(dreg), *cells))
    tests = wilcoxon_tests(reg_all, dreg_all) if reg_all else None
    return Table1(rows, tests, bool(df["preview"].any()))


_CAPTION = (
    "Table 1: depth 2, K = 50; mean ± standard error over splits (each split: the mean of "
    "its repeated estimates; train ELBO divided by the number of training points)"
)
_HEADS = ("REG test LL", "DReG test LL", "REG ELBO/N", "DReG ELBO/N")


def _test_lines(table: Table1) -> List[str]:
    if table.tests is None:
        return ["Wilcoxon tests: no paired (REG, DReG) runs yet"]
    tests = table.tests
    return [
        ("PREVIEW: " if table.preview else "")
        + f"Wilcoxon signed-rank test over {tests.num_pairs} paired runs (REG vs DReG):",
        f"  two-sided:                statistic = {tests.two_sided.statistic:.6g}, "
        f"p = {tests.two_sided.pvalue:.6g}",
        f"  one-sided (REG < DReG):   statistic = {tests.one_sided.statistic:.6g}, "
        f"p = {tests.one_sided.pvalue:.6g}",
    ]


def table_1_text(df: pd.DataFrame) -> str:
    """The table as table_1 prints it (and writes to table_1.txt): a PREVIEW line when the
    data is a preview, caption, one line per dataset, then the two Wilcoxon tests."""
    table = table_1_summary(df)
    header = f"{'dataset':<15}{'pairs':>6}" + "".join(f"  {h:>16}" for h in _HEADS)
    lines = [f"{PREVIEW_MARKER} (not every run reached its iterations)"] if table.preview else []
    lines += [_CAPTION, header, "-" * len(header)]
    for label, pairs, *cells in table.rows:
        lines.append(f"{label:<15}{pairs:>6}" + "".join(f"  {c:>16}" for c in cells))
    lines.append("")
    return "\n".join(lines + _test_lines(table))


def table_1_markdown(df: pd.DataFrame) -> str:
    """The same table in Markdown (for a report): the preview marker in bold, the caption, a
    pipe table, and the Wilcoxon tests as a code block."""
    table = table_1_summary(df)
    lines = [f"**{PREVIEW_MARKER}** (not every run reached its iterations)", ""]
    lines = lines if table.preview else []
    lines += [_CAPTION, "", "| dataset | pairs | " + " | ".join(_HEADS) + " |"]
    lines.append("|---|---:|" + "---:|" * len(_HEADS))
    for label, pairs, *cells in table.rows:
        lines.append(f"| {label} | {pairs} | " + " | ".join(cells) + " |")
    return "\n".join(lines + ["", "```"] + _test_lines(table) + ["```"])


def draw_table_1(df: pd.DataFrame, figures_dir: os.PathLike = FIGURES_DIR) -> List[Path]:
    """Writes table_1_data's frame as the table: <figures_dir>/table_1.txt (the printed
    text), table_1.md (Markdown) and table_1.pdf / .png (the text set in a figure, so the
    table sits with the other figures). Returns the four paths."""
    figures_dir = Path(figures_dir)
    figures_dir.mkdir(parents=True, exist_ok=True)
    text = table_1_text(df)
    paths = [figures_dir / "table_1.txt", figures_dir / "table_1.md"]
    paths[0].write_text(text + "\n")
    paths[1].write_text(table_1_markdown(df) + "\n")
    lines = text.splitlines()
    # Plain text without TeX: the table holds '±' and is already laid out in fixed columns.
    with matplotlib.rc_context({"text.usetex": False, "savefig.bbox": "tight"}):
        width = max(len(line) for line in lines)
        fig = plt.figure(figsize=(0.075 * width + 0.4, 0.19 * len(lines) + 0.3))
        fig.text(0.01, 0.99, text, family="monospace", fontsize=9, va="top", ha="left")
        paths += _save(fig, "table_1", figures_dir)
    return paths


TABLE_1 = TidyFigure("table_1", table_1_data, draw_table_1, text=table_1_text)
table_1 = TABLE_1.function(
    """Prints Table 1 (per dataset: test log-likelihood and train ELBO per training point, mean
    ± standard error over splits, REG vs DReG; each split the mean of its repeats) and the two
    Wilcoxon signed-rank tests over all paired (dataset, split) runs; also writes it to
    <figures_dir>/table_1.txt (and .md, .pdf, .png). Data written by `evaluate.py --preview` is
    marked PREVIEW."""
)
