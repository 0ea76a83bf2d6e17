"""Figures 8 and 9 (appendix): the mean SNR over encoder weights of minibatch gradients, in
the summary frame of snr_summary (SNR_SUMMARY_COLUMNS).

  figure_8  <dataset>_L1_G5_IWAE_SF1_K50_BS64_reg of the 7 Figure 3 datasets: aggregate
            dumps reg/dreg, batch 64 (training points 0-63), K = 50
  figure_9  power_L1_G5_G5_IWAE_SF0_K30_BS64_reg: dumps reg, batch sizes 1 (data point 0),
            64, 128, 256, 512, K = 1-10, 15, 20, 30, 40, 50

Figure 8's bars carry standard errors (snr_summary.snr_standard_error); Figure 9 is on
log-log axes with the theory's slope -1/2 beside each line.
"""

import os
import textwrap
from pathlib import Path
from typing import Any, List, Optional, TextIO, Tuple

import numpy as np
import pandas as pd
from matplotlib import pyplot as plt

from dgp_snr.plotting.common import (
    COLORS,
    ESTIMATORS,
    FIGURES_DIR,
    LABELS,
    REFERENCE_STYLE,
    FigureReport,
    TidyFigure,
    _in_order,
    _integer_log_ticks,
    _label,
    _Needs,
    _reference_lines,
    _save,
    _setup_style,
    target_data,
)
from dgp_snr.plotting.snr_summary import (
    BOOTSTRAP_RESAMPLES,
    SE_BOOTSTRAP,
    SE_DATAPOINTS,
    _snr_summary_rows,
    _summary_frame,
)
from dgp_snr.protocol import targets as protocol_targets


# ------------------------------------------------------------------------------ figure 8
@target_data("figure_8")
def figure_8_data(
    results_path: os.PathLike = "results", *, out: Optional[TextIO] = None, **params: Any
) -> Tuple[pd.DataFrame, FigureReport]:
    """Figure 8's inputs (SNR_SUMMARY_COLUMNS, one K and batch size) and the report of its
    missing inputs; raises MissingInputsError when no dump exists. `params`: the parameters of
    protocol.targets.figure_8 (datasets, split, sampling_K, batch_size, ...), by name."""
    spec = protocol_targets.figure_8(results_path, **params)
    needs = _Needs("figure_8", spec)
    rows = []
    for config in spec.runs:  # one per dataset, in their order
        for est in ESTIMATORS:
            rows += _snr_summary_rows(
                needs,
                config,
                est,
                ks=[spec.params["sampling_K"]],
                batch_size=spec.params["batch_size"],
                num_datapoints=1,
            )
    return _summary_frame(needs, rows, out, results_path)


def _se_caption(df: pd.DataFrame) -> str:
    """What figure 8's error bars are, from the frame's snr_se_method and sizes."""
    if "snr_se" not in df or not np.isfinite(df["snr_se"].to_numpy(float)).any():
        return (
            "no error bars: this data.csv holds only the mean SNR per bar (exported before "
            "snr_se was recorded); re-export it from the dumps for standard errors"
        )
    methods = sorted(set(df["snr_se_method"].dropna().astype(str)))
    parts = []
    for method in methods:
        mine = df[df["snr_se_method"] == method]
        if method == SE_BOOTSTRAP:
            lo, hi = int(mine["num_parameters"].min()), int(mine["num_parameters"].max())
            n = f"{lo}" if lo == hi else f"{lo}-{hi}"
            parts.append(
                f"bootstrap over the {n} encoder weight entries ({BOOTSTRAP_RESAMPLES} resamples)"
            )
        elif method == SE_DATAPOINTS:
            lo, hi = int(mine["num_datapoints"].min()), int(mine["num_datapoints"].max())
            n = f"{lo}" if lo == hi else f"{lo}-{hi}"
            parts.append(f"over the {n} data points' means")
        else:
            parts.append(method)
    return r"error bars: $\pm 1$ standard error, " + "; ".join(parts)


def draw_figure_8(df: pd.DataFrame, figures_dir: os.PathLike = FIGURES_DIR) -> List[Path]:
    """Draws figure_8_data's frame: REG and DReG bars of mean SNR, one panel per dataset, with
    ±1 standard error bars (snr_se; the caption says how it was taken, or that the frame has
    none)."""
    datasets = _in_order(df["dataset"])
    K, batch_size = int(df["K"].iloc[0]), int(df["batch_size"].iloc[0])
    values = {(str(r.dataset), str(r.estimator)): float(r.snr) for r in df.itertuples()}
    has_se = "snr_se" in df
    errors = {
        (str(r.dataset), str(r.estimator)): float(r.snr_se) if has_se else float("nan")
        for r in df.itertuples()
    }
    _setup_style()
    width, height = max(1.9 * len(datasets) + 0.9, 3.6), 3.3
    # The caption is wrapped here (about 13 characters per inch at 9 pt) so that the space
    # kept for it below the axes fits its lines, however few panels there are.
    caption = textwrap.wrap(_se_caption(df), width=int(13 * width))
    height += 0.18 * len(caption)
    fig, axes = plt.subplots(1, len(datasets), figsize=(width, height))
    axes = np.atleast_1d(axes)
    for ax, dataset in zip(axes, datasets):
        top = 0.0
        for x, est in enumerate(ESTIMATORS):
            if (dataset, est) not in values:
                continue
            value, se = values[(dataset, est)], errors[(dataset, est)]
            yerr = [se] if np.isfinite(se) else None
            ax.bar([x], [value], width=0.7, color=COLORS[est], yerr=yerr, capsize=4)
            # The label sits above the error bar, never on it.
            label_at = value + (se if np.isfinite(se) else 0.0)
            ax.annotate(
                f"{value:.2f}",
                (x, label_at),
                xytext=(0, 3),
                textcoords="offset points",
                ha="center",
                va="bottom",
                fontsize=9,
            )
            top = max(top, label_at)
        ax.set_ylim(0.0, 1.18 * top if top > 0 else 1.0)
        ax.set_xticks([0, 1])
        ax.set_xticklabels([LABELS[e] for e in ESTIMATORS])
        ax.set_xlim(-0.6, 1.6)
        ax.set_title(_label(dataset))
        ax.grid(True, axis="y")
        ax.set_axisbelow(True)
    axes[0].set_ylabel(f"mean SNR ($K = {K}$, batch {batch_size})")
    fig.tight_layout(rect=(0, (0.08 + 0.18 * len(caption)) / height, 1, 1))
    fig.text(0.5, 0.04 / height, "\n".join(caption), ha="center", va="bottom", fontsize=9)
    return _save(fig, "figure_8", figures_dir)


FIGURE_8 = TidyFigure("figure_8", figure_8_data, draw_figure_8)
figure_8 = FIGURE_8.function(
    """Appendix: mean SNR over encoder weights at K = 50, batch size 64 (training points
    0-63), REG vs DReG at the same REG-trained depth-2 checkpoint, one panel per dataset (the
    reference's: the split-1 runs of the seven Figure 3 datasets), with ±1 standard error bars
    (one minibatch dump per bar: a bootstrap over the encoder weight entries)."""
)


# ------------------------------------------------------------------------------ figure 9
@target_data("figure_9")
def figure_9_data(
    results_path: os.PathLike = "results", *, out: Optional[TextIO] = None, **params: Any
) -> Tuple[pd.DataFrame, FigureReport]:
    """Figure 9's inputs (SNR_SUMMARY_COLUMNS, REG only, one row per batch size and K) and
    the report of its missing inputs; raises MissingInputsError when no dump exists.
    `params`: the parameters of protocol.targets.figure_9 (batch_sizes, ks, num_datapoints,
    dataset, depth, train_K, ...), by name."""
    spec = protocol_targets.figure_9(results_path, **params)
    config = spec.runs[0]
    needs = _Needs("figure_9", spec)
    rows = []
    for bs in spec.params["batch_sizes"]:
        rows += _snr_summary_rows(
            needs,
            config,
            "reg",
            ks=spec.params["ks"],
            batch_size=bs,
            num_datapoints=spec.params["num_datapoints"],
        )
    return _summary_frame(needs, rows, out, results_path)


def draw_figure_9(df: pd.DataFrame, figures_dir: os.PathLike = FIGURES_DIR) -> List[Path]:
    """Draws figure_9_data's frame: REG's mean SNR vs K, one line per batch size, on log-log
    axes (the paper's layout with a log SNR axis: the values span three decades), each with the
    theory's K^(-1/2) started at its smallest K (dotted, in its colour)."""
    batch_sizes = sorted(int(b) for b in df["batch_size"].unique())
    ks = sorted(int(k) for k in df["K"].unique())
    first = df.iloc[0]
    _setup_style()
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    colors = plt.get_cmap("viridis")(np.linspace(0.0, 0.9, len(batch_sizes)))
    for color, bs in zip(colors, batch_sizes):
        line = df[(df["batch_size"] == bs) & (df["snr"] > 0)].sort_values("K")
        if line.empty:
            continue
        x, y = line["K"].to_numpy(), line["snr"].to_numpy()
        ax.plot(x, y, marker="o", ms=3, color=color, label=f"batch size {bs}")
        if len(x) > 1:
            _reference_lines(ax, x[0], x[-1], y[0], slopes=(-0.5,), color=color, lw=1.0)
    handles, _ = ax.get_legend_handles_labels()
    label = rf"$K^{{-1/2}}$ from $K = {ks[0]}$"
    handles.append(plt.Line2D([], [], label=label, **REFERENCE_STYLE))
    ax.set_yscale("log")
    _integer_log_ticks(ax, ks)
    ax.set_xlabel("number of importance samples $K$")
    ax.set_ylabel("REG mean SNR over encoder weights")
    ax.set_title(
        f"{_label(str(first['dataset']))}, {int(first['depth'])} layers, trained with "
        f"$K = {int(first['train_K'])}$"
    )
    ax.grid(True, which="major")
    ax.legend(handles=handles, loc="lower left")
    fig.tight_layout()
    return _save(fig, "figure_9", figures_dir)


FIGURE_9 = TidyFigure("figure_9", figure_9_data, draw_figure_9)
figure_9 = FIGURE_9.function(
    """Appendix: REG's mean SNR over encoder weights vs K for several batch sizes, power,
    depth 3, K = 30 training. The batch-size-1 curve is data point 0's, as the reference draws
    it; `num_datapoints` > 1 averages over the first data points instead."""
)
