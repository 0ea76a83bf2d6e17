"""Figures 3, 8 and 9: the mean SNR over encoder weights per run, estimator, batch size and K
(one tidy frame layout, SNR_SUMMARY_COLUMNS, for the three).

  figure_3  <dataset>_L1[_G5 x (depth-1)]_IWAE_SF0_K50_BS64_reg for 7 datasets, depths 1-4:
            dumps reg/dreg, batch 1, data points 0-9, K = 1, 10, 100, 1000
  figure_8  <dataset>_L1_G5_IWAE_SF1_K50_BS64_reg of the 7 Figure 3 datasets: aggregate
            dumps reg/dreg, batch 64 (training points 0-63), K = 50
  figure_9  power_L1_G5_G5_IWAE_SF0_K30_BS64_reg: dumps reg, batch sizes 1 (data point 0),
            64, 128, 256, 512, K = 1-10, 15, 20, 30, 40, 50
"""

import os
from pathlib import Path
from typing import Any, List, Mapping, Optional, Sequence, TextIO, Tuple

import matplotlib
import numpy as np
import pandas as pd
from matplotlib import pyplot as plt

from dgp_snr.plotting.common import (
    COLORS,
    ESTIMATORS,
    FIGURES_DIR,
    LABELS,
    FigureReport,
    TidyFigure,
    _in_order,
    _label,
    _Needs,
    _nothing,
    _save,
    _setup_style,
)
from dgp_snr.plotting.dumps import _collect_snr_paths, _snr_over_datapoints
from dgp_snr.protocol import (
    FIGURE_3_DATASETS,
    FIGURE_3_DEPTHS,
    FIGURE_3_KS,
    FIGURE_8_BATCH,
    FIGURE_8_DATASETS,
    FIGURE_8_K,
    FIGURE_8_SPLIT,
    FIGURE_9_BATCH_SIZES,
    FIGURE_9_DATAPOINTS,
    FIGURE_9_DATASET,
    FIGURE_9_DEPTH,
    FIGURE_9_KS,
    FIGURE_9_TRAIN_K,
    GRADIENT_SAMPLES,
    NUM_DATAPOINTS,
    PAPER_ITERATIONS,
)
from dgp_snr.protocol import targets as protocol_targets
from dgp_snr.runs import RunConfig

#: The tidy frame of figures 3, 8 and 9: one row per (dataset, depth, estimator, batch size,
#: K) found, `snr` the mean SNR over the run's `num_parameters` encoder weight entries (each
#: averaged over the `num_datapoints` dumps found; `parameter` says so), `train_K` the K the
#: run was trained with, `num_estimates` the gradient estimates per dump.
SNR_SUMMARY_COLUMNS = (
    "dataset",
    "depth",
    "train_K",
    "estimator",
    "batch_size",
    "K",
    "parameter",
    "snr",
    "num_parameters",
    "num_datapoints",
    "num_estimates",
)
#: `parameter` of a summary row: the mean over every encoder weight entry.
ALL_WEIGHTS = "mean over weights"


def _snr_summary_rows(
    needs: _Needs,
    config: RunConfig,
    depth: int,
    estimator: str,
    ks: Sequence[int],
    batch_size: int,
    num_datapoints: int,
) -> List[tuple]:
    """SNR_SUMMARY_COLUMNS rows of one run, estimator and batch size, one per K found (the
    missing dumps recorded in `needs`)."""
    found = _collect_snr_paths(needs, config, estimator, ks, batch_size, num_datapoints)
    rows = []
    for K in sorted(found):
        values, _, num_estimates = _snr_over_datapoints(found[K])
        rows.append(
            (config.dataset, depth, config.model.num_importance_samples, estimator, batch_size, K)
            + (ALL_WEIGHTS, float(np.mean(values)), len(values), len(found[K]), num_estimates)
        )
    return rows


def _summary_frame(
    needs: _Needs, rows: List[tuple], out: Optional[TextIO], results_path: os.PathLike
) -> Tuple[pd.DataFrame, FigureReport]:
    report = needs.report(out)
    if not rows:
        raise _nothing(report, results_path)
    return pd.DataFrame(rows, columns=list(SNR_SUMMARY_COLUMNS)), report


# ------------------------------------------------------------------------------ figure 3
def figure_3_data(
    results_path: os.PathLike = "results",
    datasets: Sequence[str] = FIGURE_3_DATASETS,
    depths: Sequence[int] = FIGURE_3_DEPTHS,
    ks: Sequence[int] = FIGURE_3_KS,
    num_datapoints: int = NUM_DATAPOINTS,
    iterations: int = PAPER_ITERATIONS,
    out: Optional[TextIO] = None,
    settings: Optional[Mapping[str, Any]] = None,
    num_estimates: int = GRADIENT_SAMPLES,
    aggregates: bool = True,
) -> Tuple[pd.DataFrame, FigureReport]:
    """Figure 3's inputs (SNR_SUMMARY_COLUMNS, batch size 1) and the report of its missing
    inputs; raises MissingInputsError when no dump exists."""
    spec = protocol_targets.figure_3(
        results_path,
        datasets,
        depths,
        ks,
        num_datapoints,
        iterations,
        settings,
        num_estimates,
        aggregates,
    )
    configs = iter(spec.runs)  # dataset-major, then depth: the loop's order
    runs = {(dataset, depth): next(configs) for dataset in datasets for depth in depths}
    needs = _Needs("figure_3", spec)
    rows = []
    for est in ESTIMATORS:
        for dataset in datasets:
            for depth in depths:
                config = runs[(dataset, depth)]
                rows += _snr_summary_rows(needs, config, depth, est, ks, 1, num_datapoints)
    return _summary_frame(needs, rows, out, results_path)


def draw_figure_3(df: pd.DataFrame, figures_dir: os.PathLike = FIGURES_DIR) -> List[Path]:
    """Draws figure_3_data's frame: bars of mean SNR per depth and K, one panel per dataset,
    REG on top and DReG below (datasets, depths and Ks: those with rows)."""
    datasets = _in_order(df["dataset"])
    depths = sorted(int(d) for d in df["depth"].unique())
    ks = sorted(int(k) for k in df["K"].unique())
    values = {
        (str(r.estimator), str(r.dataset), int(r.depth), int(r.K)): float(r.snr)
        for r in df.itertuples()
    }
    _setup_style()
    fig, axes = plt.subplots(
        2, len(datasets), figsize=(2.1 * len(datasets) + 0.8, 4.6), squeeze=False
    )
    width = 0.8 / len(ks)
    shades = {
        est: plt.get_cmap("Blues" if est == "reg" else "Oranges")(np.linspace(0.4, 0.95, len(ks)))
        for est in ESTIMATORS
    }
    for row, est in enumerate(ESTIMATORS):
        for col, dataset in enumerate(datasets):
            ax = axes[row, col]
            for d_i, depth in enumerate(depths):
                for k_i, K in enumerate(ks):
                    if (est, dataset, depth, K) in values:
                        x = d_i + (k_i - (len(ks) - 1) / 2) * width
                        ax.bar(
                            x,
                            values[(est, dataset, depth, K)],
                            width=width,
                            color=shades[est][k_i],
                        )
            ax.set_xticks(range(len(depths)))
            ax.set_xticklabels([str(d) for d in depths])
            ax.set_xlim(-0.5, len(depths) - 0.5)
            ax.grid(True, axis="y")
            ax.set_axisbelow(True)
            if row == 0:
                ax.set_title(_label(dataset))
            else:
                ax.set_xlabel("layers")
            if col == 0:
                ax.set_ylabel(f"{LABELS[est]} mean SNR")
        handles = [
            plt.Rectangle((0, 0), 1, 1, color=shades[est][i], label=f"$K = {K}$")
            for i, K in enumerate(ks)
        ]
        axes[row, -1].legend(
            handles=handles, loc="upper left", bbox_to_anchor=(1.02, 1.0), title=LABELS[est]
        )
    fig.tight_layout()
    return _save(fig, "figure_3", figures_dir)


FIGURE_3 = TidyFigure("figure_3", figure_3_data, draw_figure_3)
figure_3 = FIGURE_3.function(
    """Mean SNR over encoder weights at each K (bars) for each depth, one panel per dataset;
    top row REG, bottom row DReG; batch size 1, averaged over the data points."""
)


# ------------------------------------------------------------------------------ figure 8
def figure_8_data(
    results_path: os.PathLike = "results",
    datasets: Sequence[str] = FIGURE_8_DATASETS,
    split: int = FIGURE_8_SPLIT,
    K: int = FIGURE_8_K,
    batch_size: int = FIGURE_8_BATCH,
    iterations: int = PAPER_ITERATIONS,
    out: Optional[TextIO] = None,
    settings: Optional[Mapping[str, Any]] = None,
    num_estimates: int = GRADIENT_SAMPLES,
    aggregates: bool = True,
) -> Tuple[pd.DataFrame, FigureReport]:
    """Figure 8's inputs (SNR_SUMMARY_COLUMNS, one K and batch size) and the report of its
    missing inputs; raises MissingInputsError when no dump exists."""
    spec = protocol_targets.figure_8(
        results_path,
        datasets,
        split,
        K,
        batch_size,
        iterations,
        settings,
        num_estimates,
        aggregates,
    )
    needs = _Needs("figure_8", spec)
    rows = []
    for dataset, config in zip(datasets, spec.runs):
        for est in ESTIMATORS:
            rows += _snr_summary_rows(needs, config, 2, est, [K], batch_size, 1)
    return _summary_frame(needs, rows, out, results_path)


def draw_figure_8(df: pd.DataFrame, figures_dir: os.PathLike = FIGURES_DIR) -> List[Path]:
    """Draws figure_8_data's frame: REG and DReG bars of mean SNR, one panel per dataset."""
    datasets = _in_order(df["dataset"])
    K, batch_size = int(df["K"].iloc[0]), int(df["batch_size"].iloc[0])
    values = {(str(r.dataset), str(r.estimator)): float(r.snr) for r in df.itertuples()}
    _setup_style()
    fig, axes = plt.subplots(1, len(datasets), figsize=(1.7 * len(datasets) + 0.8, 3.0))
    axes = np.atleast_1d(axes)
    for ax, dataset in zip(axes, datasets):
        for x, est in enumerate(ESTIMATORS):
            if (dataset, est) in values:
                bars = ax.bar([x], [values[(dataset, est)]], width=0.7, color=COLORS[est])
                ax.bar_label(bars, fmt="%.2f", fontsize=9)
        ax.set_xticks([0, 1])
        ax.set_xticklabels([LABELS[e] for e in ESTIMATORS])
        ax.set_xlim(-0.6, 1.6)
        ax.set_title(_label(dataset))
        ax.grid(True, axis="y")
        ax.set_axisbelow(True)
    axes[0].set_ylabel(f"mean SNR ($K = {K}$, batch {batch_size})")
    fig.tight_layout()
    return _save(fig, "figure_8", figures_dir)


FIGURE_8 = TidyFigure("figure_8", figure_8_data, draw_figure_8)
figure_8 = FIGURE_8.function(
    """Appendix: mean SNR over encoder weights at K = 50, batch size 64 (training points
    0-63), REG vs DReG at the same REG-trained depth-2 checkpoint, one panel per dataset (the
    reference's: the split-1 runs of the seven Figure 3 datasets)."""
)


# ------------------------------------------------------------------------------ figure 9
def figure_9_data(
    results_path: os.PathLike = "results",
    batch_sizes: Sequence[int] = FIGURE_9_BATCH_SIZES,
    ks: Sequence[int] = FIGURE_9_KS,
    num_datapoints: int = FIGURE_9_DATAPOINTS,
    iterations: int = PAPER_ITERATIONS,
    out: Optional[TextIO] = None,
    dataset: str = FIGURE_9_DATASET,
    depth: int = FIGURE_9_DEPTH,
    train_K: int = FIGURE_9_TRAIN_K,
    settings: Optional[Mapping[str, Any]] = None,
    num_estimates: int = GRADIENT_SAMPLES,
    aggregates: bool = True,
) -> Tuple[pd.DataFrame, FigureReport]:
    """Figure 9's inputs (SNR_SUMMARY_COLUMNS, REG only, one row per batch size and K) and
    the report of its missing inputs; raises MissingInputsError when no dump exists."""
    spec = protocol_targets.figure_9(
        results_path,
        batch_sizes,
        ks,
        num_datapoints,
        iterations,
        dataset,
        depth,
        train_K,
        settings,
        num_estimates,
        aggregates,
    )
    config = spec.runs[0]
    needs = _Needs("figure_9", spec)
    rows = []
    for bs in batch_sizes:
        rows += _snr_summary_rows(needs, config, depth, "reg", ks, bs, num_datapoints)
    return _summary_frame(needs, rows, out, results_path)


def draw_figure_9(df: pd.DataFrame, figures_dir: os.PathLike = FIGURES_DIR) -> List[Path]:
    """Draws figure_9_data's frame: REG's mean SNR vs K, one line per batch size."""
    batch_sizes = sorted(int(b) for b in df["batch_size"].unique())
    ks = [int(k) for k in df["K"]]
    first = df.iloc[0]
    _setup_style()
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    colors = plt.get_cmap("viridis")(np.linspace(0.0, 0.9, len(batch_sizes)))
    for color, bs in zip(colors, batch_sizes):
        line = df[df["batch_size"] == bs].sort_values("K")
        ax.plot(
            line["K"].to_numpy(),
            line["snr"].to_numpy(),
            marker="o",
            ms=3,
            color=color,
            label=f"batch size {bs}",
        )
    ax.set_xscale("log")
    ax.set_xticks([k for k in (1, 2, 5, 10, 20, 50, 100) if min(ks) <= k <= max(ks)])
    ax.get_xaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax.set_xlabel("number of importance samples $K$")
    ax.set_ylabel("REG mean SNR over encoder weights")
    ax.set_title(
        f"{_label(str(first['dataset']))}, {int(first['depth'])} layers, trained with "
        f"$K = {int(first['train_K'])}$"
    )
    ax.grid(True, which="both")
    ax.legend()
    fig.tight_layout()
    return _save(fig, "figure_9", figures_dir)


FIGURE_9 = TidyFigure("figure_9", figure_9_data, draw_figure_9)
figure_9 = FIGURE_9.function(
    """Appendix: REG's mean SNR over encoder weights vs K for several batch sizes, power,
    depth 3, K = 30 training. The batch-size-1 curve is data point 0's, as the reference draws
    it; `num_datapoints` > 1 averages over the first data points instead."""
)
