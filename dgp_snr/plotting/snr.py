"""Figures 1 and 2: the SNR of single encoder weights against K, and the raw gradient estimates
of one weight (dumps of the demo_normalized runs, batch size 1).

  figure_1  demo_normalized_L1_IWAE_SF0_K50_BS64_reg: dumps reg/dreg, batch 1, data points
            0-9, K in 1, 5, 10, ..., 100 (aggregates or raw)
  figure_2  demo_normalized_L1_G5_IWAE_SF0_K50_BS64_reg: raw dumps reg/dreg, batch 1, data
            point 0, K = 1, 10, 100 (drawn as the loss's gradient on [-20000, 20000])
"""

import os
from pathlib import Path
from typing import Any, List, Mapping, Optional, Sequence, TextIO, Tuple

import numpy as np
import pandas as pd
import scipy.stats
from matplotlib import pyplot as plt

from dgp_snr.gradient_dumps import load_gradient_dump
from dgp_snr.gradients import snr
from dgp_snr.plotting.common import (
    COLORS,
    ESTIMATORS,
    FIGURES_DIR,
    FIT_COLOR,
    LABELS,
    FigureReport,
    TidyFigure,
    _Needs,
    _nothing,
    _save,
    _setup_style,
)
from dgp_snr.plotting.dumps import (
    _collect_snr_paths,
    _snr_over_datapoints,
    weight_entry_labels,
    weight_samples,
)
from dgp_snr.protocol import (
    FIGURE_1_KS,
    FIGURE_1_PARAMETERS,
    FIGURE_2_BINS,
    FIGURE_2_KS,
    FIGURE_2_PARAMETER,
    FIGURE_2_X_RANGE,
    GRADIENT_SAMPLES,
    NUM_DATAPOINTS,
    PAPER_ITERATIONS,
)
from dgp_snr.protocol import targets as protocol_targets

#: figure_1_data's columns (one row per estimator, K and encoder weight entry).
FIGURE_1_COLUMNS = (
    "dataset",
    "depth",
    "estimator",
    "K",
    "parameter",
    "snr",
    "num_datapoints",
    "num_estimates",
    "plot_index",
)
#: figure_2_data's columns (one row per raw gradient estimate).
FIGURE_2_COLUMNS = ("estimator", "K", "parameter", "quantity", "sample")


# ------------------------------------------------------------------------------ figure 1
def figure_1_data(
    results_path: os.PathLike = "results",
    ks: Sequence[int] = FIGURE_1_KS,
    num_datapoints: int = NUM_DATAPOINTS,
    parameters: Sequence[int] = FIGURE_1_PARAMETERS,
    iterations: int = PAPER_ITERATIONS,
    out: Optional[TextIO] = None,
    depth: int = 1,
    settings: Optional[Mapping[str, Any]] = None,
    num_estimates: int = GRADIENT_SAMPLES,
    aggregates: bool = True,
) -> Tuple[pd.DataFrame, FigureReport]:
    """Figure 1's inputs as a tidy frame (FIGURE_1_COLUMNS), and the report of its missing
    inputs (the commands printed first, as every figure does).

    One row per (estimator, K, encoder weight entry) found: `parameter` its label ('W0[0, 1]'),
    `snr` its SNR averaged over the `num_datapoints` dumps found at that K (batch size 1),
    `num_estimates` the gradient estimates per dump, `plot_index` the entry's position in
    `parameters` (the drawn lines' order) or -1 when it is not drawn. Every entry is kept so
    that the mean SNR over weights (loglog slopes) can be computed from the file alone.
    Raises MissingInputsError when no dump exists."""
    spec = protocol_targets.figure_1(
        results_path,
        ks,
        num_datapoints,
        iterations,
        depth,
        settings,
        num_estimates,
        aggregates,
    )
    config = spec.runs[0]
    needs = _Needs("figure_1", spec)
    found = {
        est: _collect_snr_paths(needs, config, est, ks, 1, num_datapoints) for est in ESTIMATORS
    }
    report = needs.report(out)
    if not any(found.values()):
        raise _nothing(report, results_path)
    rows = []
    for est in ESTIMATORS:
        for K in sorted(found[est]):
            values, labels, num_estimates = _snr_over_datapoints(found[est][K])
            for p in parameters:
                if p >= len(values):
                    raise ValueError(f"figure_1: parameter {p} out of range ({len(values)})")
            drawn = {p: j for j, p in enumerate(parameters)}
            for p, (label, value) in enumerate(zip(labels, values)):
                rows.append(
                    (config.dataset, depth, est, K, label, float(value))
                    + (len(found[est][K]), num_estimates, drawn.get(p, -1))
                )
    return pd.DataFrame(rows, columns=list(FIGURE_1_COLUMNS)), report


def draw_figure_1(df: pd.DataFrame, figures_dir: os.PathLike = FIGURES_DIR) -> List[Path]:
    """Draws figure_1_data's frame (the rows with plot_index >= 0): the SNR of each drawn
    weight vs K, REG on the left axis and DReG on the right; returns the PDF and PNG paths."""
    drawn = df[df["plot_index"] >= 0]
    order = drawn.drop_duplicates("plot_index").sort_values("plot_index")
    plotted = list(zip(order["plot_index"], order["parameter"]))
    depth = int(df["depth"].iloc[0])
    num_datapoints = int(df["num_datapoints"].max())

    _setup_style()
    fig, axl = plt.subplots(figsize=(5.5, 3.4))
    axr = axl.twinx()
    styles = ["-", "--", ":", "-."]
    handles = []
    for est, ax in (("reg", axl), ("dreg", axr)):
        mine = drawn[drawn["estimator"] == est]
        if mine.empty:
            continue
        for j, (index, _) in enumerate(plotted):
            line_data = mine[mine["plot_index"] == index].sort_values("K")
            (line,) = ax.plot(
                line_data["K"].to_numpy(),
                line_data["snr"].to_numpy(),
                color=COLORS[est],
                linestyle=styles[j % 4],
                marker="o",
                ms=2.5,
            )
            if j == 0:
                line.set_label(LABELS[est])
                handles.append(line)
        ax.set_ylim(bottom=0.0, top=max(ax.get_ylim()[1], 1e-3))
    for est, ax in (("reg", axl), ("dreg", axr)):
        ax.set_ylabel(f"{LABELS[est]} SNR", color=COLORS[est])
        ax.tick_params(axis="y", colors=COLORS[est])
    for j, (_, label) in enumerate(plotted):
        handles.append(plt.Line2D([], [], color="0.4", linestyle=styles[j % 4], label=label))
    axl.set_xlabel("number of importance samples $K$")
    axl.set_xlim(0, max(int(df["K"].max()), 1))
    axl.grid(True)
    axl.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=3)
    axl.set_title(
        f"demo, {depth} layer{'s' if depth > 1 else ''}: SNR of {len(plotted)} encoder "
        f"weights (mean over {num_datapoints} points)"
    )
    return _save(fig, "figure_1", figures_dir)


FIGURE_1 = TidyFigure("figure_1", figure_1_data, draw_figure_1)
figure_1 = FIGURE_1.function(
    """SNR of 4 encoder weights vs K, REG (left axis) and DReG (right axis), demo_normalized,
    depth 1, batch size 1, averaged over `num_datapoints` points. `depth`, `settings`,
    `num_estimates` and `aggregates` are the target definition's (protocol.targets)."""
)


# ------------------------------------------------------------------------------ figure 2
def figure_2_data(
    results_path: os.PathLike = "results",
    ks: Sequence[int] = FIGURE_2_KS,
    parameter: int = FIGURE_2_PARAMETER,
    iterations: int = PAPER_ITERATIONS,
    out: Optional[TextIO] = None,
    loss: bool = True,
    depth: int = 2,
    settings: Optional[Mapping[str, Any]] = None,
    num_estimates: int = GRADIENT_SAMPLES,
) -> Tuple[pd.DataFrame, FigureReport]:
    """Figure 2's inputs as a tidy frame (FIGURE_2_COLUMNS), and the report of its missing
    inputs: one row per raw gradient estimate of encoder weight entry `parameter` (its label in
    `parameter`) per (estimator, K) found; `quantity` 'loss' (the negative bound's gradient,
    the default) or 'bound'. 2 x len(ks) x num_estimates rows (6,000 at the paper's
    settings, about 250 KB as CSV). Raises MissingInputsError when no raw dump exists."""
    spec = protocol_targets.figure_2(results_path, ks, iterations, depth, settings, num_estimates)
    config = spec.runs[0]
    needs = _Needs("figure_2", spec)
    found = {
        (est, K): needs.dump(config, est, 1, K, 0, 1, raw=True) for est in ESTIMATORS for K in ks
    }
    report = needs.report(out)
    if all(p is None for p in found.values()):
        raise _nothing(report, results_path)
    frames = []
    for (est, K), path in found.items():
        if path is None:
            continue
        dump = load_gradient_dump(path)
        flat = weight_samples(dump, path)
        if parameter >= flat.shape[1]:
            raise ValueError(f"{path}: parameter {parameter} out of range ({flat.shape[1]})")
        values = -flat[:, parameter] if loss else flat[:, parameter]
        frame = pd.DataFrame({"sample": values.astype(float)})
        frame.insert(0, "estimator", est)
        frame.insert(1, "K", int(K))
        frame.insert(2, "parameter", weight_entry_labels(dump)[parameter])
        frame.insert(3, "quantity", "loss" if loss else "bound")
        frames.append(frame)
    return pd.concat(frames, ignore_index=True), report


def draw_figure_2(
    df: pd.DataFrame,
    figures_dir: os.PathLike = FIGURES_DIR,
    x_range: Optional[Tuple[float, float]] = FIGURE_2_X_RANGE,
    bins: Optional[int] = FIGURE_2_BINS,
) -> List[Path]:
    """Draws figure_2_data's frame: one row of histograms per K, REG and DReG columns (a
    'missing' panel where an (estimator, K) has no rows); `x_range` and `bins` as figure_2's.
    Returns the PDF and PNG paths."""
    ks = sorted(int(k) for k in df["K"].unique())
    label = str(df["parameter"].iloc[0])
    loss = str(df["quantity"].iloc[0]) == "loss"
    samples = {
        (str(est), int(K)): group["sample"].to_numpy()
        for (est, K), group in df.groupby(["estimator", "K"], sort=False)
    }
    _setup_style()
    fig, axes = plt.subplots(len(ks), 2, figsize=(8, 1.9 * len(ks) + 0.6), squeeze=False)
    for col, est in enumerate(ESTIMATORS):
        mine = [samples[(est, K)] for K in ks if (est, K) in samples]
        if x_range is not None:
            lo, hi = x_range
        elif not mine:
            lo, hi = -1.0, 1.0
        else:  # one x range per estimator (column), as the paper shares it across K
            lo, hi = np.percentile(np.concatenate(mine), [0.5, 99.5])
            lo, hi = min(lo, 0.0), max(hi, 0.0)
            pad = 0.05 * (hi - lo or 1.0)
            lo, hi = lo - pad, hi + pad
        x = np.linspace(lo, hi, 400)
        for row, K in enumerate(ks):
            ax = axes[row, col]
            ax.set_xlim(lo, hi)
            ax.set_yticks([])
            if col == 0:
                ax.set_ylabel("density")
            if row < len(ks) - 1:
                ax.tick_params(labelbottom=False)
            if (est, K) not in samples:
                ax.text(0.5, 0.5, "missing", ha="center", va="center", transform=ax.transAxes)
                continue
            g = samples[(est, K)]
            mean, std = float(np.mean(g)), float(np.std(g))
            shown = g[(g >= lo) & (g <= hi)]
            n_bins = bins if bins is not None else int(np.clip(len(shown) // 15, 20, 200))
            ax.hist(shown, bins=n_bins, range=(lo, hi), density=True, color=COLORS[est])
            if std > 0:
                ax.plot(x, scipy.stats.norm.pdf(x, mean, std), color=FIT_COLOR, lw=1.4)
            ax.axvline(mean, color="black", linestyle="-", lw=1.2)
            ax.axvline(0.0, color="0.3", linestyle="--", lw=1.0)
            ax.set_title(f"{LABELS[est]}, $K = {K}$: SNR = {float(snr(g)):.3f}")
    what = "loss (negative bound)" if loss else "bound"
    for col, est in enumerate(ESTIMATORS):
        axes[-1, col].set_xlabel(f"{LABELS[est]} estimates")
    fig.supxlabel(f"gradient of the {what} in encoder weight {label}", y=0.0)
    handles = [
        plt.Line2D([], [], color=FIT_COLOR, lw=1.4, label="fitted normal"),
        plt.Line2D([], [], color="black", lw=1.2, label="mean"),
        plt.Line2D([], [], color="0.3", lw=1.0, linestyle="--", label="zero"),
    ]
    fig.legend(handles=handles, loc="upper center", ncol=3, bbox_to_anchor=(0.5, 1.02))
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    return _save(fig, "figure_2", figures_dir)


FIGURE_2 = TidyFigure(
    "figure_2", figure_2_data, draw_figure_2, ("x_range", "bins"), draw_after="loss"
)
figure_2 = FIGURE_2.function(
    """Histograms of raw gradient samples of one encoder weight at each K (rows), REG and DReG
    (columns), with the fitted normal, the mean (solid) and zero (dashed); demo_normalized,
    depth 2, batch size 1 (training point 0).

    As the reference draws it (the defaults): the gradient of the loss (the negative bound, which
    the reference samples), on x in [-20000, 20000] with 200 bins, the normal fitted to every
    sample. `loss=False` shows the bound's gradient; `x_range=None` picks each column's range
    from the samples' 0.5-99.5 percentiles; `bins=None` picks the bin count from the number
    shown."""
)
