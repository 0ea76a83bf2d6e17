"""Figures 4 and 5: test log-likelihoods and predictive marginals of the runs with the learned
q(w) against q(w) fixed to the prior; and the reading of the evaluation data files (Figure 4
and Table 1) that experiments/evaluate.py writes.

  figure_4  <results>/figure_data/figure_4.txt (experiments/evaluate.py figure_4) from
            <dataset>_L1_G5_IWAE_SF<s>_K50_BS64_reg and ..._reg_fixq: per dataset the first
            10 splits (of 0-40) whose runs both finished
  figure_5  wilson_forest / winewhite _L1_G5_IWAE_SF2_K50_BS64_reg and ..._reg_fixq
            checkpoints (10,000 predictive samples at test points 2 and 0)
"""

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, TextIO, Tuple

import numpy as np
import pandas as pd
from matplotlib import pyplot as plt

from dgp_snr.evaluation import Evaluator
from dgp_snr.figure_data import (
    PREVIEW_MARKER,
    FigureDataRow,
    figure_data_is_preview,
    read_figure_data,
)
from dgp_snr.plotting.common import (
    COLORS,
    FIGURES_DIR,
    FigureReport,
    TidyFigure,
    _in_order,
    _label,
    _missing_panel,
    _Needs,
    _nothing,
    _save,
    _setup_style,
    target_data,
)
from dgp_snr.protocol import (
    FIGURE_5_BINS,
    pair_runs,
    run_state,
    target_files,
)
from dgp_snr.protocol import targets as protocol_targets
from dgp_snr.run_evaluation import EVALUATION_FILE
from dgp_snr.runs import RunConfig, load_run

#: `qw` of Figures 4 and 5: the learned q(w) (flag F) and q(w) fixed to the prior (flag T).
QW = ("learned", "fixed")
#: `qw` / `estimator` of the one row that keeps a dataset (panel) without any data in the frame,
#: so that the figure drawn from the frame alone still shows it as 'missing'.
NO_DATA = "none"
#: `step` when the evaluated checkpoint is not known (a preview file without cache entry).
UNKNOWN_STEP = -1

#: figure_4_data's columns: one row per evaluated run.
FIGURE_4_COLUMNS = ("dataset", "split", "qw", "test_ll", "num_repeats", "step", "preview")
#: figure_5_data's columns: one row per histogram bin of a panel's predictive samples.
FIGURE_5_COLUMNS = (
    "dataset",
    "split",
    "test_point",
    "qw",
    "bin_left",
    "bin_right",
    "density",
    "y_observed",
    "num_samples",
)


# ------------------------------------------------------------------------------ data files
#: A data-file row's key: (dataset, flag, split); flag True: q(w) fixed (Figure 4), DReG
#: (Table 1).
RowKey = Tuple[str, bool, int]


def _data_rows(
    needs: _Needs,
    target: str,
    metric: str,
    results_path: os.PathLike,
    *,
    datasets: Sequence[str],
    splits: int,
    iterations: int,
) -> Tuple[Dict[RowKey, FigureDataRow], bool]:
    """The rows of a target's data file keyed by (dataset, flag, split), for `datasets` (the
    file holds the splits evaluate.py selected), and whether the file is a PREVIEW. A dataset
    with fewer than `splits` paired splits is recorded as missing (the target definition's
    runs to train or finish, then evaluate.py, make it)."""
    path = target_files(target, results_path)[metric]
    rows: Dict[RowKey, FigureDataRow] = {}
    if path.is_file():
        for row in read_figure_data(path):
            if row.dataset in datasets:
                rows[(row.dataset, row.flag, row.split)] = row
    preview = figure_data_is_preview(path)
    for dataset in datasets:
        pairs = sum(1 for (d, f, s) in rows if d == dataset and not f and (d, True, s) in rows)
        if pairs < splits:
            for config in needs.spec.runs:
                if config.dataset == dataset and run_state(config, iterations)[0] != "finished":
                    needs.data(f"run {config.run_name} (not at {iterations} iterations)")
            needs.data(f"{path.name}: fewer than {splits} splits for {dataset}")
    return rows, preview


def _pair_config(
    target: str,
    key: RowKey,
    results_path: os.PathLike,
    *,
    iterations: int,
    settings: Optional[Mapping[str, Any]],
) -> RunConfig:
    """The run behind a data-file row, with the target's extra settings (as its definition
    sets them)."""
    dataset, flag, split = key
    run = pair_runs(target, dataset, split, results_path, iterations)[int(flag)]
    return run.config.with_settings(**dict(settings or {}))


def _evaluated_step(
    config: RunConfig, metric: str, values: np.ndarray, *, iterations: int, preview: bool
) -> int:
    """The checkpoint step whose evaluation gave `values`: the run's evaluation cache entry
    with these exact values (evaluate.py writes both from the same numbers); otherwise
    `iterations` for a complete file (only finished runs enter it) and UNKNOWN_STEP for a
    preview."""
    path = config.run_dir() / EVALUATION_FILE
    try:
        cache = json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, json.JSONDecodeError):
        cache = {}  # the cache only names the step; a damaged one is not this figure's input
    for key, entry in cache.items() if isinstance(cache, dict) else ():
        if key.startswith(f"{metric}:") and np.array_equal(entry.get("values"), values):
            return int(entry["step"])
    return UNKNOWN_STEP if preview else iterations


@dataclass
class _Evaluation:
    """What Figure 4 and Table 1 read alike: the rows of their target's data files per metric
    (`rows[metric]`, keyed by (dataset, flag, split)), whether any file is a PREVIEW, the
    spec (its EvalJob: datasets, splits, iterations) and the report of the missing inputs."""

    spec: protocol_targets.TargetSpec
    results_path: os.PathLike
    rows: Dict[str, Dict[RowKey, FigureDataRow]]
    preview: bool
    report: FigureReport

    def runs(self, metric: str, dataset: str) -> List[Tuple[RowKey, FigureDataRow, int]]:
        """(key, row, evaluated step: _evaluated_step) of the dataset's rows of `metric`,
        flag F before T, then by split."""
        job = self.spec.evaluation
        assert job is not None  # an evaluation target's
        out = []
        for key in sorted(k for k in self.rows[metric] if k[0] == dataset):
            row = self.rows[metric][key]
            config = _pair_config(
                self.spec.name,
                key,
                self.results_path,
                iterations=job.iterations,
                settings=self.spec.params["settings"],
            )
            step = _evaluated_step(
                config, metric, row.values, iterations=job.iterations, preview=self.preview
            )
            out.append((key, row, step))
        return out


def _evaluation(
    target: str,
    results_path: os.PathLike,
    params: Mapping[str, Any],
    metrics: Sequence[str],
    out: Optional[TextIO],
) -> _Evaluation:
    """Reads the data files of an evaluation target (figure_4, table_1) as its definition
    (called with `params`) asks, records the missing inputs and prints their commands; raises
    MissingInputsError when the first metric's file has no row for the datasets."""
    spec = protocol_targets.target_spec(target, results_path, **params)
    job = spec.evaluation
    assert job is not None  # an evaluation target's
    needs = _Needs(target, spec)
    rows, preview = {}, False
    for metric in metrics:
        rows[metric], metric_preview = _data_rows(
            needs,
            target,
            metric,
            results_path,
            datasets=job.datasets,
            splits=job.splits,
            iterations=job.iterations,
        )
        preview = preview or metric_preview
    report = needs.report(out)
    if not rows[metrics[0]]:
        raise _nothing(report, results_path)
    return _Evaluation(spec, results_path, rows, preview, report)


def _violin(ax: "plt.Axes", values: np.ndarray, x: float, color: str) -> None:
    if len(values) >= 2 and np.ptp(values) > 0:
        parts = ax.violinplot(values, [x], showmeans=True, widths=0.38)
        for body in parts["bodies"]:
            body.set_color(color)
            body.set_alpha(0.6)
        for key in ("cbars", "cmins", "cmaxes", "cmeans"):
            parts[key].set_color(color)
    ax.scatter(np.full(len(values), x), values, s=8, color=color, zorder=3)


#: Figure 4 draws violins only when every group (dataset and q(w)) has at least this many
#: splits; below it a violin's kernel density invents a shape, so the points are drawn.
MIN_VIOLIN_SPLITS = 5
#: Horizontal offset between the strip plot's points of one group (points of equal value
#: stay apart).
STRIP_SPACING = 0.05


def _strip(ax: "plt.Axes", values: np.ndarray, x: float, color: str) -> np.ndarray:
    """One marker per split at x (offsets by split order) and a bar at the mean; returns the
    markers' x positions."""
    xs = x + (np.arange(len(values)) - (len(values) - 1) / 2) * STRIP_SPACING
    ax.scatter(xs, values, s=28, color=color, edgecolor="black", linewidth=0.5, zorder=3)
    if len(values):
        ax.hlines(float(np.mean(values)), x - 0.13, x + 0.13, color=color, lw=2.0, zorder=2)
    return xs


# ------------------------------------------------------------------------------ figure 4
@target_data("figure_4")
def figure_4_data(
    results_path: os.PathLike = "results", *, out: Optional[TextIO] = None, **params: Any
) -> Tuple[pd.DataFrame, FigureReport]:
    """Figure 4's inputs as a tidy frame (FIGURE_4_COLUMNS) and the report of its missing
    inputs; raises MissingInputsError when the data file has no row for `datasets`. `params`:
    the parameters of protocol.targets.figure_4 (datasets, splits, iterations, ...), by name.

    One row per run in the data file (dataset in `datasets` order, then learned before fixed
    q(w), then split): `qw` 'learned' or 'fixed', `test_ll` the mean of its `num_repeats`
    repeated test log-likelihoods, `step` the checkpoint evaluated, `preview` whether the file
    is marked PREVIEW. A dataset without rows keeps one row with `qw` NO_DATA (NaN test_ll)."""
    evaluation = _evaluation("figure_4", results_path, params, ("test_ll",), out)
    preview = evaluation.preview
    records = []
    for dataset in evaluation.spec.params["datasets"]:
        runs = evaluation.runs("test_ll", dataset)  # learned (F) first, then split
        for _, row, step in runs:
            records.append(
                (dataset, row.split, QW[row.flag], row.mean, len(row.values), step, preview)
            )
        if not runs:
            records.append((dataset, -1, NO_DATA, float("nan"), 0, UNKNOWN_STEP, preview))
    return pd.DataFrame(records, columns=list(FIGURE_4_COLUMNS)), evaluation.report


def draw_figure_4(df: pd.DataFrame, figures_dir: os.PathLike = FIGURES_DIR) -> List[Path]:
    """Draws figure_4_data's frame: per dataset (panel) the test log-likelihoods over splits,
    learned q(w) left and fixed right: violins (as the paper) when every group has at least
    MIN_VIOLIN_SPLITS splits, else a strip plot (one marker per split, a bar at the mean, a
    grey line joining a split's two runs). The title is marked PREVIEW when any row is."""
    datasets = _in_order(df["dataset"])
    preview = bool(df["preview"].any())
    groups = df[df["qw"].isin(QW)].groupby(["dataset", "qw"]).size()
    strip = bool(len(groups)) and int(groups.min()) < MIN_VIOLIN_SPLITS
    _setup_style()
    fig, axes = plt.subplots(1, len(datasets), figsize=(2.0 * len(datasets) + 0.6, 3.2))
    axes = np.atleast_1d(axes)
    for ax, dataset in zip(axes, datasets):
        drawn = {}
        for qw, x, color in (("learned", -0.2, COLORS["reg"]), ("fixed", 0.2, COLORS["fixq"])):
            mine = df[(df["dataset"] == dataset) & (df["qw"] == qw)].sort_values("split")
            values = mine["test_ll"].to_numpy(dtype=float)
            if not len(values):
                continue
            if strip:
                xs = _strip(ax, values, x, color)
                drawn[qw] = dict(zip(mine["split"].astype(int), zip(xs, values)))
            else:
                _violin(ax, values, x, color)
                drawn[qw] = {}
        if strip and len(drawn) == 2:  # the same split's two runs, paired
            for split in sorted(set(drawn["learned"]) & set(drawn["fixed"])):
                (x0, y0), (x1, y1) = drawn["learned"][split], drawn["fixed"][split]
                ax.plot([x0, x1], [y0, y1], color="0.6", lw=0.8, zorder=1)
            ax.margins(y=0.12)  # markers clear of the frame
        if not drawn:
            _missing_panel(ax)
        ax.set_title(_label(dataset))
        ax.set_xticks([-0.2, 0.2])
        ax.set_xticklabels(["$q(w)$", "$p(w)$"])
        ax.set_xlim(-0.5, 0.5)
        ax.grid(True, axis="y")
    axes[0].set_ylabel("test log-likelihood")
    title = "learned $q(w)$ vs $q(w)$ fixed to the prior $p(w)$ (2 layers)"
    if strip:
        fewest = int(groups.min())
        title += (
            f"\n{fewest} split{'s' if fewest != 1 else ''} per group: one point per split, "
            "bar at the mean, a split's two runs joined"
        )
    fig.suptitle(f"{PREVIEW_MARKER}: {title}" if preview else title, y=1.02)
    fig.tight_layout()
    return _save(fig, "figure_4", figures_dir)


FIGURE_4 = TidyFigure("figure_4", figure_4_data, draw_figure_4)
figure_4 = FIGURE_4.function(
    """Test log-likelihood over splits (violins, or one point per split when a group has fewer
    than 5; each split the mean of its repeats) with the learned q(w) vs q(w) fixed to the
    prior, depth 2, one panel per dataset (the splits that evaluate.py selected). `splits`:
    how many (or which) splits the definition trains."""
)


# ------------------------------------------------------------------------------ figure 5
@target_data("figure_5")
def figure_5_data(
    results_path: os.PathLike = "results",
    *,
    bins: int = FIGURE_5_BINS,
    out: Optional[TextIO] = None,
    **params: Any,
) -> Tuple[pd.DataFrame, FigureReport]:
    """Figure 5's inputs as a tidy frame (FIGURE_5_COLUMNS) and the report of its missing
    inputs; raises MissingInputsError when no run of a panel has a checkpoint. `params`: the
    parameters of protocol.targets.figure_5 (panels, num_predictive_samples, depth, ...), by
    name.

    Per (dataset, split, test point) panel and q(w) ('learned', 'fixed') whose run exists,
    `bins` rows: the density histogram of `num_predictive_samples` (S) predictive samples at the
    test point (np.histogram over the samples' range, as the figure draws it; S is the
    `num_samples` column), each bin's edges `bin_left`, `bin_right` and `density`, with the
    observed (normalised) y of the point. A panel without either run keeps one row with `qw`
    NO_DATA. 2 x panels x bins rows (800 at the paper's settings)."""
    spec = protocol_targets.figure_5(results_path, **params)
    panels = spec.params["panels"]
    num_predictive_samples = spec.params["num_predictive_samples"]
    needs = _Needs("figure_5", spec)
    # By (dataset, split, q(w)): two panels of one run (other test points) share its config.
    runs = {(c.dataset, c.split, c.model.qz_mode == "fix_mu_sigma"): c for c in spec.runs}
    configs = {}
    for panel in panels:
        for fixq in (False, True):
            config = runs[(panel[0], int(panel[1]), fixq)]
            if needs.run(config):
                configs[(tuple(panel), fixq)] = config
    report = needs.report(out)
    if not configs:
        raise _nothing(report, results_path)
    frames = []
    for panel in panels:
        dataset, split, point = panel
        for fixq in (False, True):
            if (tuple(panel), fixq) not in configs:
                continue
            model, _, data, _ = load_run(configs[(tuple(panel), fixq)].run_dir())
            if point >= data.X_test.shape[0]:
                raise ValueError(
                    f"figure_5: test point {point} out of range ({data.X_test.shape[0]} points)"
                )
            ys = Evaluator(model).predictive_samples(
                data.X_test[point], num_predictive_samples, 0, point
            )
            density, edges = np.histogram(ys, bins=bins, density=True)
            frame = pd.DataFrame(
                {"bin_left": edges[:-1], "bin_right": edges[1:], "density": density}
            )
            frame.insert(0, "dataset", dataset)
            frame.insert(1, "split", int(split))
            frame.insert(2, "test_point", int(point))
            frame.insert(3, "qw", QW[fixq])
            frame["y_observed"] = float(data.Y_test[point, 0])
            frame["num_samples"] = len(ys)
            frames.append(frame)
        if not any((tuple(panel), f) in configs for f in (False, True)):
            nan = float("nan")
            frames.append(
                pd.DataFrame(
                    [(dataset, int(split), int(point), NO_DATA, nan, nan, nan, nan, 0)],
                    columns=list(FIGURE_5_COLUMNS),
                )
            )
    return pd.concat(frames, ignore_index=True)[list(FIGURE_5_COLUMNS)], report


def draw_figure_5(df: pd.DataFrame, figures_dir: os.PathLike = FIGURES_DIR) -> List[Path]:
    """Draws figure_5_data's frame: one column per panel, the learned q(w)'s predictive
    histogram on top and the fixed one's below (the bins as stored), the observed y dashed."""
    panels = _in_order(pd.Series(list(zip(df["dataset"], df["split"], df["test_point"]))))
    _setup_style()
    fig, axes = plt.subplots(
        2, len(panels), figsize=(3.2 * len(panels) + 0.6, 4.2), squeeze=False, sharex="col"
    )
    for col, (dataset, split, point) in enumerate(panels):
        panel = df[(df["dataset"] == dataset) & (df["split"] == split)]
        panel = panel[panel["test_point"] == point]
        for row, qw in enumerate(QW):
            ax = axes[row, col]
            mine = panel[panel["qw"] == qw]
            if mine.empty:
                _missing_panel(ax)
                continue
            # The stored bins drawn as ax.hist(samples, bins, density=True) drew them.
            edges = np.append(mine["bin_left"].to_numpy(), mine["bin_right"].to_numpy()[-1])
            color = COLORS["fixq"] if qw == "fixed" else COLORS["reg"]
            ax.hist(
                mine["bin_left"].to_numpy(),
                bins=edges,
                weights=mine["density"].to_numpy(),
                color=color,
                alpha=0.85,
            )
            ax.axvline(float(mine["y_observed"].iloc[0]), color="black", linestyle="--", lw=1.0)
            ax.grid(True)
            if row == 0:
                ax.set_title(f"{_label(dataset)} (split {split}, test point {point})")
            if col == 0:
                ax.set_ylabel(
                    ("fixed $p(w)$" if qw == "fixed" else "learned $q(w)$") + "\ndensity"
                )
        axes[-1, col].set_xlabel("$y$ (normalised)")
    handle = plt.Line2D([], [], color="black", linestyle="--", label="observed $y$")
    fig.legend(handles=[handle], loc="upper center", bbox_to_anchor=(0.5, 1.04))
    fig.tight_layout()
    return _save(fig, "figure_5", figures_dir)


FIGURE_5 = TidyFigure("figure_5", figure_5_data, draw_figure_5)
figure_5 = FIGURE_5.function(
    """Histograms (`bins` bins, the reference's 200) of predictive samples at one test point,
    learned q(w) (top) vs q(w) fixed to the prior (bottom); one column per (dataset, split,
    test point) panel."""
)
