"""Figures 1 and 2: the SNR of single encoder weights against K, and the raw gradient estimates
of one weight (dumps of the demo_normalized runs, batch size 1).

  figure_1  demo_normalized_L1_IWAE_SF0_K50_BS64_reg: dumps reg/dreg, batch 1, data points
            0-9, K in 1, 5, 10, ..., 100 (aggregates or raw)
  figure_2  demo_normalized_L1_G5_IWAE_SF0_K50_BS64_reg: raw dumps reg/dreg, batch 1, data
            point 0, K = 1, 10, 100 (drawn as the loss's gradient, each panel on a range
            fitted to it; the reference's [-20000, 20000] with x_range=FIGURE_2_X_RANGE)
"""

import os
import re
from pathlib import Path
from typing import Any, List, Optional, Sequence, TextIO, Tuple

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
    _integer_log_ticks,
    _Needs,
    _nothing,
    _reference_lines,
    _save,
    _setup_style,
    target_data,
)
from dgp_snr.plotting.dumps import (
    _collect_snr_paths,
    _snr_over_datapoints,
    weight_entry_labels,
    weight_samples,
)
from dgp_snr.protocol import FIGURE_1_PARAMETERS, FIGURE_2_BINS, FIGURE_2_PARAMETER
from dgp_snr.protocol import targets as protocol_targets
from dgp_snr.slopes import mean_snr_by_k, slope_fits

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
@target_data("figure_1")
def figure_1_data(
    results_path: os.PathLike = "results",
    *,
    parameters: Sequence[int] = FIGURE_1_PARAMETERS,
    out: Optional[TextIO] = None,
    **params: Any,
) -> Tuple[pd.DataFrame, FigureReport]:
    """Figure 1's inputs as a tidy frame (FIGURE_1_COLUMNS), and the report of its missing
    inputs (the commands printed first, as every figure does). `params`: the parameters of
    protocol.targets.figure_1 (ks, num_datapoints, depth, ...), by name.

    One row per (estimator, K, encoder weight entry) found: `parameter` its label ('W0[0, 1]'),
    `snr` its SNR averaged over the `num_datapoints` dumps found at that K (batch size 1),
    `num_estimates` the gradient estimates per dump, `plot_index` the entry's position in
    `parameters` (the drawn lines' order) or -1 when it is not drawn. Every entry is kept so
    that the mean SNR over weights (loglog slopes) can be computed from the file alone.
    Raises MissingInputsError when no dump exists."""
    spec = protocol_targets.figure_1(results_path, **params)
    ks, num_datapoints = spec.params["ks"], spec.params["num_datapoints"]
    depth = spec.params["depth"]
    config = spec.runs[0]
    needs = _Needs("figure_1", spec)
    found = {
        est: _collect_snr_paths(
            needs, config, est, ks=ks, batch_size=1, num_datapoints=num_datapoints
        )
        for est in ESTIMATORS
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
    """Draws figure_1_data's frame: on the left, as the paper, the SNR of each drawn weight
    (rows with plot_index >= 0) vs K, REG on the left axis and DReG on the right; on the
    right, a summary on log-log axes: the mean SNR over every encoder weight entry vs K per
    estimator, its fitted slopes over the declared K ranges (slopes.slope_fits, with
    their 95% intervals in the legend) and the theory's slopes ±1/2 started at the smallest K.
    Returns the PDF and PNG paths."""
    drawn = df[df["plot_index"] >= 0]
    order = drawn.drop_duplicates("plot_index").sort_values("plot_index")
    plotted = list(zip(order["plot_index"], order["parameter"]))
    depth = int(df["depth"].iloc[0])
    num_datapoints = int(df["num_datapoints"].max())

    _setup_style()
    fig, (axl, axs) = plt.subplots(
        1, 2, figsize=(11.5, 3.9), gridspec_kw=dict(width_ratios=[1.1, 1.0], wspace=0.45)
    )
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
    axl.set_title(f"SNR of {len(plotted)} encoder weights (as the paper)")
    _draw_figure_1_summary(axs, df)
    fig.suptitle(
        f"demo, {depth} layer{'s' if depth > 1 else ''}, batch size 1, each SNR the mean over "
        f"{num_datapoints} data points",
        y=1.0,
    )
    return _save(fig, "figure_1", figures_dir)


def _draw_figure_1_summary(ax: "plt.Axes", df: pd.DataFrame) -> None:
    """Figure 1's log-log panel: mean SNR over the encoder weight entries vs K, the fits over
    the declared K ranges and the theory's ±1/2."""
    ks = sorted(int(k) for k in df["K"].unique())
    fit_styles = ["-", "--"]
    handles = []
    at_lo = []
    for est in ESTIMATORS:
        if est not in set(df["estimator"]):
            continue
        means = mean_snr_by_k(df, est)
        means = means[means > 0]
        num_entries = int(df[(df["estimator"] == est)].groupby("K").size().max())
        (points,) = ax.plot(
            means.index.to_numpy(float),
            means.to_numpy(),
            "o",
            color=COLORS[est],
            ms=4.5,
            label=f"{LABELS[est]}: mean over {num_entries} weights",
        )
        handles.append(points)
        if int(means.index[0]) == ks[0]:
            at_lo.append(float(means.iloc[0]))
        for style, fit in zip(fit_styles, slope_fits(df, est)):
            if fit.too_few:
                label = f"  fit, {_tex(fit.k_range)}: too few points"
                handles.append(plt.Line2D([], [], color=COLORS[est], ls=style, label=label))
                continue
            x = np.geomspace(min(fit.ks), max(fit.ks), 50)
            (line,) = ax.plot(
                x,
                np.exp(fit.intercept) * x**fit.slope,
                color=COLORS[est],
                linestyle=style,
                lw=1.3,
                label=(
                    f"  fit, {_tex(fit.k_range)}: {fit.slope:+.2f} "
                    f"[{fit.ci_low:+.2f}, {fit.ci_high:+.2f}]"
                ),
            )
            handles.append(line)
    if at_lo and len(ks) > 1:
        ref, _ = _reference_lines(ax, ks[0], ks[-1], float(np.exp(np.mean(np.log(at_lo)))))
        ref.set_label(rf"slopes $\pm 1/2$ from $K = {ks[0]}$")
        # the legend fills columns first: REG's entries and this one, then DReG's
        handles.insert(sum(1 for h in handles if h.get_color() == COLORS["reg"]), ref)
    ax.set_yscale("log")
    _integer_log_ticks(ax, ks)
    ax.set_xlabel("number of importance samples $K$")
    ax.set_ylabel("mean SNR over encoder weights")
    ax.grid(True, which="major")
    ax.set_title("mean over all weights, log-log; fitted slopes, 95% CI")
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2)


def _tex(text: str) -> str:
    """A K range's name as mathtext: 'K >= 10' -> '$K \\geq 10$', 'all K' -> 'all $K$'."""
    return re.sub(r"K >= (\S+)", r"$K \\geq \1$", text).replace("all K", "all $K$")


FIGURE_1 = TidyFigure("figure_1", figure_1_data, draw_figure_1)
figure_1 = FIGURE_1.function(
    """SNR of 4 encoder weights vs K, REG (left axis) and DReG (right axis), demo_normalized,
    depth 1, batch size 1, averaged over `num_datapoints` points. `depth`, `settings`,
    `num_estimates` and `aggregates` are the target definition's (protocol.targets)."""
)


# ------------------------------------------------------------------------------ figure 2
@target_data("figure_2")
def figure_2_data(
    results_path: os.PathLike = "results",
    *,
    parameter: int = FIGURE_2_PARAMETER,
    loss: bool = True,
    out: Optional[TextIO] = None,
    **params: Any,
) -> Tuple[pd.DataFrame, FigureReport]:
    """Figure 2's inputs as a tidy frame (FIGURE_2_COLUMNS), and the report of its missing
    inputs: one row per raw gradient estimate of encoder weight entry `parameter` (its label in
    `parameter`) per (estimator, K) found; `quantity` 'loss' (the negative bound's gradient,
    the default) or 'bound'. `params`: the parameters of protocol.targets.figure_2 (ks,
    num_estimates, ...), by name. 2 x len(ks) x num_estimates rows (6,000 at the paper's
    settings, about 250 KB as CSV). Raises MissingInputsError when no raw dump exists."""
    spec = protocol_targets.figure_2(results_path, **params)
    ks = spec.params["ks"]
    config = spec.runs[0]
    needs = _Needs("figure_2", spec)
    found = {
        (est, K): needs.dump(config, est, batch_size=1, K=K, datapoint=0, raw=True)
        for est in ESTIMATORS
        for K in ks
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


#: Figure 2's default x range per panel: symmetric about zero, out to this quantile of the
#: panel's |estimates| (so zero sits in the middle and the mean's offset from it reads against
#: the spread), widened to hold the mean.
FIGURE_2_QUANTILE = 0.99


def figure_2_panel_range(samples: np.ndarray, quantile: float = FIGURE_2_QUANTILE) -> float:
    """The half-width h of a panel's fitted range [-h, h]: the `quantile` of |samples|, at
    least 1.1 |mean| (the mean line stays in view), 5% padded; 1 when all are 0."""
    samples = np.asarray(samples, dtype=float)
    half = max(float(np.quantile(np.abs(samples), quantile)), 1.1 * abs(float(np.mean(samples))))
    return 1.05 * half if half > 0 else 1.0


def draw_figure_2(
    df: pd.DataFrame,
    figures_dir: os.PathLike = FIGURES_DIR,
    x_range: Optional[Tuple[float, float]] = None,
    bins: Optional[int] = None,
) -> List[Path]:
    """Draws figure_2_data's frame: one row of histograms per K, REG and DReG columns (a
    'missing' panel where an (estimator, K) has no rows), with the normal fitted to every
    estimate, the mean and zero. `x_range` None (the default): each panel on its own range,
    symmetric about zero out to the FIGURE_2_QUANTILE of its |estimates| (their spread shrinks
    by orders of magnitude with K, so one range shows most panels as a spike); the panel
    notes how many estimates fall outside. `x_range=plotting.FIGURE_2_X_RANGE`: the
    reference's fixed [-20000, 20000] for every panel. `bins` None: the reference's 200 on a
    fixed range, else from the number of estimates shown. Returns the PDF and PNG paths."""
    ks = sorted(int(k) for k in df["K"].unique())
    label = str(df["parameter"].iloc[0])
    loss = str(df["quantity"].iloc[0]) == "loss"
    samples = {
        (str(est), int(K)): group["sample"].to_numpy()
        for (est, K), group in df.groupby(["estimator", "K"], sort=False)
    }
    _setup_style()
    fig, axes = plt.subplots(len(ks), 2, figsize=(8.5, 2.1 * len(ks) + 0.7), squeeze=False)
    for col, est in enumerate(ESTIMATORS):
        for row, K in enumerate(ks):
            ax = axes[row, col]
            ax.set_yticks([])
            if col == 0:
                ax.set_ylabel("density")
            if (est, K) not in samples:
                ax.text(0.5, 0.5, "missing", ha="center", va="center", transform=ax.transAxes)
                continue
            g = samples[(est, K)]
            if x_range is not None:
                lo, hi = x_range
            else:
                hi = figure_2_panel_range(g)
                lo = -hi
            ax.set_xlim(lo, hi)
            mean, std = float(np.mean(g)), float(np.std(g))
            shown = g[(g >= lo) & (g <= hi)]
            if bins is not None:
                n_bins = bins
            elif x_range is not None:
                n_bins = FIGURE_2_BINS
            else:
                n_bins = int(np.clip(len(shown) // 15, 20, 200))
            ax.hist(shown, bins=n_bins, range=(lo, hi), density=True, color=COLORS[est])
            x = np.linspace(lo, hi, 400)
            if std > 0:
                ax.plot(x, scipy.stats.norm.pdf(x, mean, std), color=FIT_COLOR, lw=1.4)
            ax.axvline(mean, color="black", linestyle="-", lw=1.2)
            ax.axvline(0.0, color="0.3", linestyle="--", lw=1.0)
            ax.set_title(f"{LABELS[est]}, $K = {K}$: SNR = {float(snr(g)):.3f}")
            outside = len(g) - len(shown)
            if outside:
                ax.text(
                    0.98,
                    0.95,
                    f"{outside} of {len(g)}\noutside",
                    ha="right",
                    va="top",
                    fontsize=8,
                    transform=ax.transAxes,
                )
            ax.ticklabel_format(axis="x", style="sci", scilimits=(-3, 4))
    what = "loss (negative bound)" if loss else "bound"
    for col, est in enumerate(ESTIMATORS):
        axes[-1, col].set_xlabel(f"{LABELS[est]} estimates")
    if x_range is None:
        scale = (
            f"each panel on its own range, symmetric about 0 out to the "
            f"{100 * FIGURE_2_QUANTILE:g}th percentile of |estimates|"
        )
    else:
        scale = f"every panel on [{x_range[0]:g}, {x_range[1]:g}]"
    fig.supxlabel(f"gradient of the {what} in encoder weight {label}\n({scale})", y=0.0)
    handles = [
        plt.Line2D([], [], color=FIT_COLOR, lw=1.4, label="fitted normal"),
        plt.Line2D([], [], color="black", lw=1.2, label="mean"),
        plt.Line2D([], [], color="0.3", lw=1.0, linestyle="--", label="zero"),
    ]
    fig.legend(handles=handles, loc="upper center", ncol=3, bbox_to_anchor=(0.5, 1.02))
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    return _save(fig, "figure_2", figures_dir)


FIGURE_2 = TidyFigure("figure_2", figure_2_data, draw_figure_2, ("x_range", "bins"))
figure_2 = FIGURE_2.function(
    """Histograms of raw gradient samples of one encoder weight at each K (rows), REG and DReG
    (columns), with the fitted normal, the mean (solid) and zero (dashed); demo_normalized,
    depth 2, batch size 1 (training point 0); the gradient of the loss (the negative bound,
    which the reference samples), `loss=False` the bound's.

    By default each panel has its own range, symmetric about zero out to the 99th percentile
    of its |estimates| (draw_figure_2), with the bin count from the number shown.
    `x_range=plotting.FIGURE_2_X_RANGE` draws the reference's fixed [-20000, 20000] with its
    200 bins; `bins` sets the bin count."""
)
