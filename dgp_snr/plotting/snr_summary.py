"""Figures 3, 8 and 9: the mean SNR over encoder weights per run, estimator, batch size and K
(one tidy frame layout, SNR_SUMMARY_COLUMNS, for the three).

  figure_3  <dataset>_L1[_G5 x (depth-1)]_IWAE_SF0_K50_BS64_reg for 7 datasets, depths 1-4:
            dumps reg/dreg, batch 1, data points 0-9, K = 1, 10, 100, 1000
  figure_8  <dataset>_L1_G5_IWAE_SF1_K50_BS64_reg of the 7 Figure 3 datasets: aggregate
            dumps reg/dreg, batch 64 (training points 0-63), K = 50
  figure_9  power_L1_G5_G5_IWAE_SF0_K30_BS64_reg: dumps reg, batch sizes 1 (data point 0),
            64, 128, 256, 512, K = 1-10, 15, 20, 30, 40, 50

SNR spans decades, so the SNR-vs-K views are on log-log axes with the theory's slopes ±1/2
beside them (figure 3 adds them as a row under the paper's bars); figure 8's bars carry
standard errors (snr_standard_error).
"""

import os
from pathlib import Path
from typing import Any, List, Mapping, Optional, Sequence, TextIO, Tuple

import matplotlib
import numpy as np
import pandas as pd
from matplotlib import pyplot as plt

from dgp_snr.gradient_dumps import load_gradient_dump
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
from dgp_snr.plotting.dumps import _collect_snr_paths, weight_snr
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
#: run was trained with, `num_estimates` the gradient estimates per dump, `snr_se` the standard
#: error of `snr` and `snr_se_method` how it was taken (snr_standard_error). Frames exported
#: before the last two existed lack them; the figures draw them without error bars.
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
    "snr_se",
    "snr_se_method",
)
#: `parameter` of a summary row: the mean over every encoder weight entry.
ALL_WEIGHTS = "mean over weights"
#: `snr_se_method`: the standard error over the data points' means (batch size 1, several
#: data points), or a bootstrap over the encoder weight entries (one dump: a minibatch, or one
#: data point). The bootstrap treats the entries as exchangeable, so it measures their spread,
#: not the Monte Carlo error of each entry's SNR.
SE_DATAPOINTS = "over data points"
SE_BOOTSTRAP = "bootstrap over weight entries"
#: Resamples and seed of the bootstrap (fixed: the same dumps give the same frame).
BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 0


def snr_standard_error(per_datapoint: np.ndarray) -> Tuple[float, str]:
    """([D, P] SNR per data point and encoder weight entry) -> (the standard error of their
    mean, snr_se_method). D >= 2: the sample standard deviation (n - 1) of the D data points'
    means over the entries, divided by sqrt(D). D = 1: the standard deviation of the entries'
    mean over BOOTSTRAP_RESAMPLES resamples of the P entries with replacement."""
    per_datapoint = np.atleast_2d(np.asarray(per_datapoint, dtype=float))
    num_datapoints, num_entries = per_datapoint.shape
    if num_datapoints >= 2:
        means = per_datapoint.mean(axis=1)
        return float(np.std(means, ddof=1) / np.sqrt(num_datapoints)), SE_DATAPOINTS
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    index = rng.integers(0, num_entries, size=(BOOTSTRAP_RESAMPLES, num_entries))
    return float(np.std(per_datapoint[0][index].mean(axis=1), ddof=1)), SE_BOOTSTRAP


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
        dumps = [load_gradient_dump(p) for p in found[K]]
        per_datapoint = np.stack([weight_snr(d, p) for d, p in zip(dumps, found[K])])
        values = np.mean(per_datapoint, axis=0)  # as _snr_over_datapoints averages them
        num_estimates = min(int(d.meta.get("num_samples", -1)) for d in dumps)
        rows.append(
            (config.dataset, depth, config.model.num_importance_samples, estimator, batch_size, K)
            + (ALL_WEIGHTS, float(np.mean(values)), len(values), len(found[K]), num_estimates)
            + snr_standard_error(per_datapoint)
        )
    return rows


def _summary_frame(
    needs: _Needs, rows: List[tuple], out: Optional[TextIO], results_path: os.PathLike
) -> Tuple[pd.DataFrame, FigureReport]:
    report = needs.report(out)
    if not rows:
        raise _nothing(report, results_path)
    return pd.DataFrame(rows, columns=list(SNR_SUMMARY_COLUMNS)), report


#: How the theory's slopes (Rudner et al.: REG -1/2, DReG +1/2) are drawn.
REFERENCE_STYLE = dict(color="0.45", linestyle=":", lw=1.2)


def _reference_lines(
    ax: "plt.Axes",
    k_lo: float,
    k_hi: float,
    snr_at_lo: float,
    slopes: Sequence[float] = (-0.5, 0.5),
    **style: Any,
) -> List["matplotlib.lines.Line2D"]:
    """Lines SNR = snr_at_lo (K / k_lo)^slope from k_lo to k_hi: the theory's slopes, started
    at a measured value (at the smallest K, where REG and DReG agree in expectation)."""
    ks = np.geomspace(k_lo, k_hi, 50)
    style = {**REFERENCE_STYLE, **style}
    return [ax.plot(ks, snr_at_lo * (ks / k_lo) ** a, **style)[0] for a in slopes]


def _integer_log_ticks(ax: "plt.Axes", ks: Sequence[int]) -> None:
    """A log x axis with plain integer ticks: at the data's values of K when they are few
    (one closer than a factor 1.5 to the previous is left out, as their labels would touch),
    else at 1, 2, 5, 10, 20, ... within their range."""
    ax.set_xscale("log")
    ks = sorted(int(k) for k in ks)
    if len(ks) > 6:
        nice = [m * 10**e for e in range(5) for m in (1, 2, 5)]
        ticks = [k for k in nice if ks[0] <= k <= ks[-1]]
    else:
        ticks = []
        for k in ks:
            if ticks and k < 1.5 * ticks[-1]:
                if k != ks[-1]:
                    continue
                ticks.pop()  # the largest K keeps its tick
            ticks.append(k)
    ax.set_xticks(ticks)
    ax.get_xaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax.get_xaxis().set_minor_formatter(matplotlib.ticker.NullFormatter())


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
    """Draws figure_3_data's frame, one column per dataset: the paper's bars of mean SNR per
    depth and K, REG in the first row and DReG in the second (linear axes, as the paper), and a
    third row on log-log axes: the mean SNR against K per depth and estimator, with the
    theory's slopes ±1/2 started at the smallest K (the bars hide a factor of 10 at small SNR;
    slopes read only on log axes). Datasets, depths and Ks: those with rows."""
    datasets = _in_order(df["dataset"])
    depths = sorted(int(d) for d in df["depth"].unique())
    ks = sorted(int(k) for k in df["K"].unique())
    values = {
        (str(r.estimator), str(r.dataset), int(r.depth), int(r.K)): float(r.snr)
        for r in df.itertuples()
    }
    _setup_style()
    fig, axes = plt.subplots(
        3,
        len(datasets),
        figsize=(2.3 * len(datasets) + 1.6, 7.4),
        squeeze=False,
        gridspec_kw=dict(height_ratios=[1.0, 1.0, 1.25]),
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

    # Log-log row: one line per (estimator, depth), shaded by depth in the estimator's colours.
    depth_shades = {
        est: plt.get_cmap("Blues" if est == "reg" else "Oranges")(
            np.linspace(0.45, 0.95, len(depths))
        )
        for est in ESTIMATORS
    }
    line_styles = {"reg": "-", "dreg": "--"}
    handles = []
    for col, dataset in enumerate(datasets):
        ax = axes[2, col]
        for est in ESTIMATORS:
            for d_i, depth in enumerate(depths):
                mine = [(K, values[(est, dataset, depth, K)]) for K in ks]
                mine = [(K, v) for K, v in mine if (est, dataset, depth, K) in values and v > 0]
                if not mine:
                    continue
                (line,) = ax.plot(
                    *zip(*mine),
                    color=depth_shades[est][d_i],
                    linestyle=line_styles[est],
                    marker="o",
                    ms=3.5,
                    label=f"{LABELS[est]}, {depth} layer{'s' if depth > 1 else ''}",
                )
                if col == 0:
                    handles.append(line)
        at_lo = [values[k] for k in values if k[1] == dataset and k[3] == ks[0] and values[k] > 0]
        if at_lo and len(ks) > 1:
            ref = _reference_lines(ax, ks[0], ks[-1], float(np.exp(np.mean(np.log(at_lo)))))
            if col == 0:
                ref[0].set_label(r"slopes $\pm 1/2$")
                handles.append(ref[0])
        ax.set_yscale("log")
        _integer_log_ticks(ax, ks)
        ax.set_xlabel("$K$")
        ax.grid(True, which="major")
        if col == 0:
            ax.set_ylabel("mean SNR (log-log)")
    axes[2, -1].legend(handles=handles, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    fig.tight_layout()
    return _save(fig, "figure_3", figures_dir)


FIGURE_3 = TidyFigure("figure_3", figure_3_data, draw_figure_3)
figure_3 = FIGURE_3.function(
    """Mean SNR over encoder weights at each K (bars) for each depth, one panel per dataset;
    top row REG, middle row DReG, as the paper; bottom row the same means against K on
    log-log axes with the theory's slopes ±1/2; batch size 1, averaged over the data points."""
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
    fig, axes = plt.subplots(1, len(datasets), figsize=(1.9 * len(datasets) + 0.9, 3.3))
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
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    fig.text(0.5, 0.01, _se_caption(df), ha="center", va="bottom", fontsize=9, wrap=True)
    return _save(fig, "figure_8", figures_dir)


FIGURE_8 = TidyFigure("figure_8", figure_8_data, draw_figure_8)
figure_8 = FIGURE_8.function(
    """Appendix: mean SNR over encoder weights at K = 50, batch size 64 (training points
    0-63), REG vs DReG at the same REG-trained depth-2 checkpoint, one panel per dataset (the
    reference's: the split-1 runs of the seven Figure 3 datasets), with ±1 standard error bars
    (one minibatch dump per bar: a bootstrap over the encoder weight entries)."""
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
