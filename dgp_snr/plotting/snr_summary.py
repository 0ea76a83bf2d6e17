"""The mean SNR over encoder weights per run, estimator, batch size and K: the one tidy frame
layout (SNR_SUMMARY_COLUMNS) of Figures 3, 8 and 9, its rows and their standard errors; and
Figure 3 (Figures 8 and 9, the minibatch ones, are in snr_batch).

  figure_3  <dataset>_L1[_G5 x (depth-1)]_IWAE_SF0_K50_BS64_reg for 7 datasets, depths 1-4:
            dumps reg/dreg, batch 1, data points 0-9, K = 1, 10, 100, 1000

SNR spans decades, so the SNR-vs-K views are on log-log axes with the theory's slopes ±1/2
beside them (figure 3 adds them as a row under the paper's bars).
"""

import os
from pathlib import Path
from typing import Any, List, Optional, Sequence, TextIO, Tuple

import numpy as np
import pandas as pd
from matplotlib import pyplot as plt

from dgp_snr.gradient_dumps import load_gradient_dump
from dgp_snr.plotting.common import (
    ESTIMATORS,
    FIGURES_DIR,
    LABELS,
    FigureReport,
    TidyFigure,
    _depth,
    _in_order,
    _integer_log_ticks,
    _label,
    _Needs,
    _nothing,
    _reference_lines,
    _save,
    _setup_style,
    target_data,
)
from dgp_snr.plotting.dumps import _collect_snr_paths, weight_snr
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
    estimator: str,
    *,
    ks: Sequence[int],
    batch_size: int,
    num_datapoints: int,
) -> List[tuple]:
    """SNR_SUMMARY_COLUMNS rows of one run, estimator and batch size, one per K found (the
    missing dumps recorded in `needs`)."""
    found = _collect_snr_paths(
        needs, config, estimator, ks=ks, batch_size=batch_size, num_datapoints=num_datapoints
    )
    rows = []
    for K in sorted(found):
        dumps = [load_gradient_dump(p) for p in found[K]]
        per_datapoint = np.stack([weight_snr(d, p) for d, p in zip(dumps, found[K])])
        values = np.mean(per_datapoint, axis=0)  # as _snr_over_datapoints averages them
        num_estimates = min(int(d.meta.get("num_samples", -1)) for d in dumps)
        train_K = config.model.num_importance_samples
        rows.append(
            (config.dataset, _depth(config), train_K, estimator, batch_size, K)
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


# ------------------------------------------------------------------------------ figure 3
@target_data("figure_3")
def figure_3_data(
    results_path: os.PathLike = "results", *, out: Optional[TextIO] = None, **params: Any
) -> Tuple[pd.DataFrame, FigureReport]:
    """Figure 3's inputs (SNR_SUMMARY_COLUMNS, batch size 1) and the report of its missing
    inputs; raises MissingInputsError when no dump exists. `params`: the parameters of
    protocol.targets.figure_3 (datasets, depths, ks, num_datapoints, ...), by name."""
    spec = protocol_targets.figure_3(results_path, **params)
    datasets, depths, ks = (spec.params[k] for k in ("datasets", "depths", "ks"))
    runs = {(c.dataset, _depth(c)): c for c in spec.runs}
    needs = _Needs("figure_3", spec)
    rows = []
    for est in ESTIMATORS:
        for dataset in datasets:
            for depth in depths:
                rows += _snr_summary_rows(
                    needs,
                    runs[(dataset, depth)],
                    est,
                    ks=ks,
                    batch_size=1,
                    num_datapoints=spec.params["num_datapoints"],
                )
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
