"""The paper's figures and Table 1, drawn from the runs, gradient dumps and figure data files under
a results path (run directories named by RunConfig.run_name).

Each `figure_*` / `table_1` function first works out which of its inputs are missing and prints
the exact commands that create them (experiments/train.py, then experiments/sample_gradients.py,
then experiments/evaluate.py), then draws what exists into <figures_dir>/<name>.pdf and .png.
When nothing can be drawn it raises MissingInputsError (after printing the commands); with
partial inputs it draws what exists and the report lists the rest. A corrupt gradient dump or
data file raises ValueError naming the file.

Inputs (K = 50 training, minibatch 64, IWAE, split 0 unless stated; "reg" = REG-trained run):
  figure_1  demo_normalized_L1_IWAE_SF0_K50_BS64_reg: dumps reg/dreg, batch 1, data points
            0-9, K in 1, 5, 10, ..., 100 (aggregates or raw)
  figure_2  demo_normalized_L1_G5_IWAE_SF0_K50_BS64_reg: raw dumps reg/dreg, batch 1, data
            point 0, K = 1, 10, 100 (drawn as the loss's gradient on [-20000, 20000])
  figure_3  <dataset>_L1[_G5 x (depth-1)]_IWAE_SF0_K50_BS64_reg for 7 datasets, depths 1-4:
            dumps reg/dreg, batch 1, data points 0-9, K = 1, 10, 100, 1000
  figure_4  <results>/figure_data/figure_4.txt (experiments/evaluate.py figure_4) from
            <dataset>_L1_G5_IWAE_SF<s>_K50_BS64_reg and ..._reg_fixq: per dataset the first
            10 splits (of 0-40) whose runs both finished
  figure_5  wilson_forest / winewhite _L1_G5_IWAE_SF2_K50_BS64_reg and ..._reg_fixq
            checkpoints (10,000 predictive samples at test points 2 and 0)
  table_1   <results>/figure_data/table_1_tll.txt and table_1_elbo.txt (evaluate.py table_1)
            from <dataset>_L1_G5_IWAE_SF<s>_K50_BS64_{reg,dreg}: per dataset the first 20
            splits (of 0-40) whose runs both finished
  figure_8  <dataset>_L1_G5_IWAE_SF1_K50_BS64_reg of the 7 Figure 3 datasets: aggregate
            dumps reg/dreg, batch 64 (training points 0-63), K = 50
  figure_9  power_L1_G5_G5_IWAE_SF0_K30_BS64_reg: dumps reg, batch sizes 1 (data point 0),
            64, 128, 256, 512, K = 1-10, 15, 20, 30, 40, 50

Definitions (runs, K grids, data points, bins) live in dgp_snr.protocol.

Figures 1, 2, 3, 8 and 9 are split into `figure_N_data` (collects the inputs into a tidy
pandas DataFrame, columns in its docstring) and `draw_figure_N` (draws that frame alone), so
that dgp_snr.reproduction can commit the frame as CSV and redraw the figure from it
(TIDY_FIGURES); `figure_N` is the two in turn.

"Mean SNR over encoder weights" averages |mean| / std over every entry of the encoder's weight
matrices (W0, W1, ...; biases left out), an entry with zero mean and zero std counting as 0, as
the reference does; per-data-point SNRs (batch size 1) are averaged over the data points.
"""

import os
import re
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, TextIO, Tuple

import matplotlib
import matplotlib.pyplot as plt
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import scipy.stats  # noqa: E402

from dgp_snr.evaluation import (  # noqa: E402
    PREVIEW_MARKER,
    Evaluator,
    FigureDataRow,
    figure_data_is_preview,
    read_figure_data,
    target_files,
)
from dgp_snr.gradient_dumps import GradientDump, dump_path, load_gradient_dump  # noqa: E402
from dgp_snr.gradients import snr  # noqa: E402
from dgp_snr.protocol import (  # noqa: E402
    ELBO_REPEATS,
    FIGURE_1_KS,
    FIGURE_1_PARAMETERS,
    FIGURE_2_BINS,
    FIGURE_2_KS,
    FIGURE_2_PARAMETER,
    FIGURE_2_X_RANGE,
    FIGURE_3_DATASETS,
    FIGURE_3_DEPTHS,
    FIGURE_3_KS,
    FIGURE_4_DATASETS,
    FIGURE_4_SPLITS,
    FIGURE_5_BINS,
    FIGURE_5_PANELS,
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
    TABLE_1_DATASETS,
    TABLE_1_SPLITS,
    TEST_REPEATS,
    TEST_SAMPLES,
    run_state,
    sample_command,  # noqa: F401 (re-exported: plotting.sample_command)
)
from dgp_snr.protocol import targets as protocol_targets  # noqa: E402
from dgp_snr.runs import RunConfig, latest_checkpoint_step, load_run  # noqa: E402

FIGURES_DIR = "figures"

ESTIMATORS = ("reg", "dreg")
LABELS = {"reg": "REG", "dreg": "DReG"}
COLORS = {"reg": "#1f77b4", "dreg": "#ff7f0e", "fixq": "#2ca02c"}
FIT_COLOR = "#b2182b"

_WEIGHT = re.compile(r"(?:^|/)W(\d+)$")


class MissingInputsError(RuntimeError):
    """Nothing of a figure can be drawn: its inputs are missing (the commands were printed)."""


@dataclass
class FigureReport:
    """What a figure function did: the commands for its missing inputs, a description of each
    missing input, the files it wrote and (table_1) the printed table."""

    name: str
    commands: List[str] = field(default_factory=list)
    missing: List[str] = field(default_factory=list)
    outputs: List[Path] = field(default_factory=list)
    text: Optional[str] = None


# ------------------------------------------------------------------------------ style
def _setup_style() -> None:
    usetex = shutil.which("latex") is not None
    plt.rcParams.update(
        {
            "text.usetex": usetex,
            "font.family": "serif",
            "font.size": 11,
            "axes.labelsize": 11,
            "axes.titlesize": 11,
            "legend.fontsize": 9,
            "lines.linewidth": 1.6,
            "grid.linestyle": "--",
            "grid.linewidth": 0.5,
            "grid.color": "0.7",
            "savefig.bbox": "tight",
        }
    )


def _label(dataset: str) -> str:
    """A short, TeX-safe dataset label ('wilson_forest' -> 'forest')."""
    return dataset.replace("wilson_", "").replace("_normalized", "").replace("_", " ")


def _save(fig: "plt.Figure", name: str, figures_dir: os.PathLike) -> List[Path]:
    figures_dir = Path(figures_dir)
    figures_dir.mkdir(parents=True, exist_ok=True)
    paths = [figures_dir / f"{name}.pdf", figures_dir / f"{name}.png"]
    fig.savefig(paths[0])
    fig.savefig(paths[1], dpi=150)
    plt.close(fig)
    return paths


# ------------------------------------------------------------------------------ commands
class _Needs:
    """Collects a figure's missing inputs (for the report); the commands that make them are
    those of the target's definition (protocol.targets) whose outputs are missing, the same jobs
    experiments/sweep.py runs."""

    def __init__(self, name: str, spec: protocol_targets.TargetSpec):
        self.name = name
        self.spec = spec
        self.missing: List[str] = []
        self._run_ok: Dict[str, bool] = {}

    def has_run(self, config: RunConfig) -> bool:
        name = config.run_name
        if name not in self._run_ok:
            self._run_ok[name] = latest_checkpoint_step(config.run_dir()) is not None
        return self._run_ok[name]

    def run(self, config: RunConfig) -> bool:
        """Whether the run has a checkpoint; otherwise records it as missing."""
        if self.has_run(config):
            return True
        description = f"run {config.run_name} (no checkpoint)"
        if description not in self.missing:
            self.missing.append(description)
        return False

    def dump(
        self,
        config: RunConfig,
        estimator: str,
        batch_size: int,
        K: int,
        datapoint: Optional[int],
        num_datapoints: int,
        raw: bool,
    ) -> Optional[Path]:
        """The dump's path when it exists (an aggregate or, unless `raw` is needed, a raw one);
        otherwise records the run's training (if needed) and the sampling command."""
        path = find_dump(config.run_dir(), estimator, batch_size, K, datapoint, raw)
        if path is not None:
            return path
        self.run(config)
        where = f"data point {datapoint}" if datapoint is not None else f"batch {batch_size}"
        self.missing.append(
            f"{'raw ' if raw else ''}gradient dump {config.run_name} {estimator} "
            f"batch {batch_size} K={K} {where}"
        )
        return None

    def data(self, description: str) -> None:
        self.missing.append(description)

    def commands(self) -> List[str]:
        return self.spec.pending_commands()

    def report(self, out: Optional[TextIO]) -> FigureReport:
        """Prints the commands (the first thing every figure prints) and starts the report."""
        out = sys.stdout if out is None else out
        commands = self.commands()
        if commands:
            print(f"#### {self.name}: commands to create the missing inputs ####", file=out)
            for command in commands:
                print(command, file=out)
            print("#### end of commands ####", file=out)
        else:
            print(f"#### {self.name}: all inputs present ####", file=out)
        out.flush()
        return FigureReport(self.name, commands, list(self.missing))


def _finish(report: FigureReport, out: Optional[TextIO]) -> FigureReport:
    out = sys.stdout if out is None else out
    if report.outputs:
        print(f"{report.name}: wrote {', '.join(str(p) for p in report.outputs)}", file=out)
    if report.missing:
        print(
            f"{report.name}: drawn from partial data; {len(report.missing)} input(s) missing "
            "(the commands above create them)",
            file=out,
        )
    return report


def _nothing(report: FigureReport, results_path: os.PathLike) -> MissingInputsError:
    return MissingInputsError(
        f"{report.name}: none of its inputs exist under {results_path}; run the "
        f"{len(report.commands)} command(s) printed above first"
    )


# ------------------------------------------------------------------------------ SNR inputs
def find_dump(
    run_dir: os.PathLike,
    estimator: str,
    batch_size: int,
    K: int,
    datapoint: Optional[int] = None,
    raw: bool = False,
) -> Optional[Path]:
    """The existing dump for (estimator, batch size, K, data point): the aggregate dump when
    `raw` is False and it exists, else the raw one; None when neither exists. For data point 0
    a dump without data-point suffix also counts."""
    candidates = [datapoint] + ([None] if datapoint == 0 else [])
    for dp in candidates:
        for aggregates in ([False] if raw else [True, False]):
            path = dump_path(run_dir, estimator, batch_size, K, dp, aggregates)
            if path.is_file():
                return path
    return None


def _weight_key(name: str) -> Tuple[int, int, str]:
    layer = re.search(r"layer(\d+)", name)
    index = _WEIGHT.search(name)
    return (int(layer.group(1)) if layer else 0, int(index.group(1)) if index else 0, name)


def weight_names(names: Sequence[str]) -> List[str]:
    """The encoder weight matrices among parameter names ('layer0/W0', ...), in layer and
    matrix order; biases are left out."""
    return sorted((n for n in names if _WEIGHT.search(n)), key=_weight_key)


def weight_snr(dump: GradientDump, path: Optional[os.PathLike] = None) -> np.ndarray:
    """[P]: the SNR (GradientDump.snr: 0 where mean and std are both 0) of every encoder weight
    entry, flattened in weight_names order."""
    names = weight_names(list(dump.mean))
    if not names:
        raise ValueError(f"gradient dump {path or ''} holds no encoder weights (W0, W1, ...)")
    snrs = dump.snr()
    values = np.concatenate([np.ravel(snrs[n]) for n in names])
    if not np.all(np.isfinite(values)):
        raise ValueError(f"gradient dump {path or ''} has non-finite SNRs (std 0 or NaN)")
    return values


def weight_samples(dump: GradientDump, path: Optional[os.PathLike] = None) -> np.ndarray:
    """[R, P]: the raw gradient samples of every encoder weight entry, flattened as
    weight_snr does."""
    if dump.samples is None:
        raise ValueError(f"gradient dump {path or ''} holds aggregates only, not raw samples")
    names = weight_names(list(dump.samples))
    R = next(iter(dump.samples.values())).shape[0]
    return np.concatenate([dump.samples[n].reshape(R, -1) for n in names], axis=1)


def weight_entry_labels(dump: GradientDump) -> List[str]:
    """[P]: a label per flattened weight entry, e.g. 'W0[0, 4]' (in weight_snr's order)."""
    labels = []
    for name in weight_names(list(dump.mean)):
        short = name.rsplit("/", 1)[-1]
        for index in np.ndindex(*np.shape(dump.mean[name])):
            labels.append(f"{short}[{', '.join(str(i) for i in index)}]")
    return labels


def mean_snr_over_datapoints(paths: Sequence[os.PathLike]) -> np.ndarray:
    """[P]: per weight entry, the SNR averaged over the dumps (one per data point)."""
    return np.mean([weight_snr(load_gradient_dump(p), p) for p in paths], axis=0)


def _collect_snr_paths(
    needs: _Needs,
    config: RunConfig,
    estimator: str,
    ks: Sequence[int],
    batch_size: int,
    num_datapoints: int,
) -> Dict[int, List[Path]]:
    """K -> the existing dumps (one per data point for batch size 1), missing ones recorded."""
    out: Dict[int, List[Path]] = {}
    datapoints = list(range(num_datapoints)) if batch_size == 1 else [None]
    for K in ks:
        paths = []
        for dp in datapoints:
            path = needs.dump(config, estimator, batch_size, K, dp, num_datapoints, raw=False)
            if path is not None:
                paths.append(path)
        if paths:
            out[K] = paths
    return out


# ------------------------------------------------------------------------------ tidy data
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


def _snr_over_datapoints(paths: Sequence[os.PathLike]) -> Tuple[np.ndarray, List[str], int]:
    """([P] SNR per weight entry averaged over the dumps, [P] entry labels, the number of
    gradient estimates per dump: the smallest over the dumps)."""
    dumps = [load_gradient_dump(p) for p in paths]
    values = np.mean([weight_snr(d, p) for d, p in zip(dumps, paths)], axis=0)
    num_estimates = min(int(d.meta.get("num_samples", -1)) for d in dumps)
    return values, weight_entry_labels(dumps[0]), num_estimates


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
    gradient_samples: int = GRADIENT_SAMPLES,
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
        gradient_samples,
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


def figure_1(
    results_path: os.PathLike = "results",
    figures_dir: os.PathLike = FIGURES_DIR,
    ks: Sequence[int] = FIGURE_1_KS,
    num_datapoints: int = NUM_DATAPOINTS,
    parameters: Sequence[int] = FIGURE_1_PARAMETERS,
    iterations: int = PAPER_ITERATIONS,
    out: Optional[TextIO] = None,
    depth: int = 1,
    settings: Optional[Mapping[str, Any]] = None,
    gradient_samples: int = GRADIENT_SAMPLES,
    aggregates: bool = True,
) -> FigureReport:
    """SNR of 4 encoder weights vs K, REG (left axis) and DReG (right axis), demo_normalized,
    depth 1, batch size 1, averaged over `num_datapoints` points. `depth`, `settings`,
    `gradient_samples` and `aggregates` are the target definition's (protocol.targets)."""
    df, report = figure_1_data(
        results_path,
        ks,
        num_datapoints,
        parameters,
        iterations,
        out,
        depth,
        settings,
        gradient_samples,
        aggregates,
    )
    report.outputs = draw_figure_1(df, figures_dir)
    return _finish(report, out)


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
    gradient_samples: int = GRADIENT_SAMPLES,
) -> Tuple[pd.DataFrame, FigureReport]:
    """Figure 2's inputs as a tidy frame (FIGURE_2_COLUMNS), and the report of its missing
    inputs: one row per raw gradient estimate of encoder weight entry `parameter` (its label in
    `parameter`) per (estimator, K) found; `quantity` 'loss' (the negative bound's gradient,
    the default) or 'bound'. 2 x len(ks) x gradient_samples rows (6,000 at the paper's
    settings, about 250 KB as CSV). Raises MissingInputsError when no raw dump exists."""
    spec = protocol_targets.figure_2(
        results_path, ks, iterations, depth, settings, gradient_samples
    )
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


def figure_2(
    results_path: os.PathLike = "results",
    figures_dir: os.PathLike = FIGURES_DIR,
    ks: Sequence[int] = FIGURE_2_KS,
    parameter: int = FIGURE_2_PARAMETER,
    iterations: int = PAPER_ITERATIONS,
    out: Optional[TextIO] = None,
    loss: bool = True,
    x_range: Optional[Tuple[float, float]] = FIGURE_2_X_RANGE,
    bins: Optional[int] = FIGURE_2_BINS,
    depth: int = 2,
    settings: Optional[Mapping[str, Any]] = None,
    gradient_samples: int = GRADIENT_SAMPLES,
) -> FigureReport:
    """Histograms of raw gradient samples of one encoder weight at each K (rows), REG and DReG
    (columns), with the fitted normal, the mean (solid) and zero (dashed); demo_normalized,
    depth 2, batch size 1 (training point 0).

    As the reference draws it (the defaults): the gradient of the loss (the negative bound, which
    the reference samples), on x in [-20000, 20000] with 200 bins, the normal fitted to every
    sample. `loss=False` shows the bound's gradient; `x_range=None` picks each column's range
    from the samples' 0.5-99.5 percentiles; `bins=None` picks the bin count from the number
    shown."""
    df, report = figure_2_data(
        results_path, ks, parameter, iterations, out, loss, depth, settings, gradient_samples
    )
    report.outputs = draw_figure_2(df, figures_dir, x_range, bins)
    return _finish(report, out)


# ------------------------------------------------------------------------------ SNR summaries
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
            (config.dataset, depth, config.num_IW_samples, estimator, batch_size, K)
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


def _in_order(values: pd.Series) -> List[Any]:
    """The distinct values in their first rows' order (the collection order)."""
    return list(pd.unique(values))


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
    gradient_samples: int = GRADIENT_SAMPLES,
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
        gradient_samples,
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


def figure_3(
    results_path: os.PathLike = "results",
    figures_dir: os.PathLike = FIGURES_DIR,
    datasets: Sequence[str] = FIGURE_3_DATASETS,
    depths: Sequence[int] = FIGURE_3_DEPTHS,
    ks: Sequence[int] = FIGURE_3_KS,
    num_datapoints: int = NUM_DATAPOINTS,
    iterations: int = PAPER_ITERATIONS,
    out: Optional[TextIO] = None,
    settings: Optional[Mapping[str, Any]] = None,
    gradient_samples: int = GRADIENT_SAMPLES,
    aggregates: bool = True,
) -> FigureReport:
    """Mean SNR over encoder weights at each K (bars) for each depth, one panel per dataset;
    top row REG, bottom row DReG; batch size 1, averaged over the data points."""
    df, report = figure_3_data(
        results_path,
        datasets,
        depths,
        ks,
        num_datapoints,
        iterations,
        out,
        settings,
        gradient_samples,
        aggregates,
    )
    report.outputs = draw_figure_3(df, figures_dir)
    return _finish(report, out)


# ------------------------------------------------------------------------------ data files
def _data_rows(
    needs: _Needs,
    target: str,
    metric: str,
    results_path: os.PathLike,
    datasets: Sequence[str],
    splits: int,
    iterations: int,
) -> Tuple[Dict[Tuple[str, bool, int], FigureDataRow], bool]:
    """The rows of a target's data file keyed by (dataset, flag, split), for `datasets` (the
    file holds the splits evaluate.py selected), and whether the file is a PREVIEW. A dataset
    with fewer than `splits` paired splits is recorded as missing (the target definition's
    runs to train or finish, then evaluate.py, make it)."""
    path = target_files(target, results_path)[metric]
    rows: Dict[Tuple[str, bool, int], FigureDataRow] = {}
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


def _violin(ax, values: np.ndarray, x: float, color: str) -> None:
    if len(values) >= 2 and np.ptp(values) > 0:
        parts = ax.violinplot(values, [x], showmeans=True, widths=0.38)
        for body in parts["bodies"]:
            body.set_color(color)
            body.set_alpha(0.6)
        for key in ("cbars", "cmins", "cmaxes", "cmeans"):
            parts[key].set_color(color)
    ax.scatter(np.full(len(values), x), values, s=8, color=color, zorder=3)


# ------------------------------------------------------------------------------ figure 4
def figure_4(
    results_path: os.PathLike = "results",
    figures_dir: os.PathLike = FIGURES_DIR,
    datasets: Sequence[str] = FIGURE_4_DATASETS,
    splits: "protocol_targets.Splits" = FIGURE_4_SPLITS,
    iterations: int = PAPER_ITERATIONS,
    out: Optional[TextIO] = None,
    settings: Optional[Mapping[str, Any]] = None,
    test_samples: int = TEST_SAMPLES,
    test_repeats: int = TEST_REPEATS,
) -> FigureReport:
    """Test log-likelihood over splits (violins; each split the mean of its repeats) with the
    learned q(w) vs q(w) fixed to the prior, depth 2, one panel per dataset (the splits that
    evaluate.py selected). `splits`: how many (or which) splits the definition trains."""
    spec = protocol_targets.figure_4(
        results_path, datasets, splits, iterations, settings, test_samples, test_repeats
    )
    splits = len(protocol_targets.split_list(splits))
    needs = _Needs("figure_4", spec)
    rows, preview = _data_rows(
        needs, "figure_4", "test_ll", results_path, datasets, splits, iterations
    )
    report = needs.report(out)
    if not rows:
        raise _nothing(report, results_path)

    _setup_style()
    fig, axes = plt.subplots(1, len(datasets), figsize=(2.0 * len(datasets) + 0.6, 3.0))
    axes = np.atleast_1d(axes)
    for ax, dataset in zip(axes, datasets):
        drawn = False
        for flag, x, color in ((False, -0.2, COLORS["reg"]), (True, 0.2, COLORS["fixq"])):
            values = np.array(
                [r.mean for (d, f, _), r in sorted(rows.items()) if d == dataset and f == flag]
            )
            if len(values):
                _violin(ax, values, x, color)
                drawn = True
        if not drawn:
            ax.text(0.5, 0.5, "missing", ha="center", va="center", transform=ax.transAxes)
            ax.set_yticks([])
        ax.set_title(_label(dataset))
        ax.set_xticks([-0.2, 0.2])
        ax.set_xticklabels(["$q(w)$", "$p(w)$"])
        ax.set_xlim(-0.5, 0.5)
        ax.grid(True, axis="y")
    axes[0].set_ylabel("test log-likelihood")
    title = "learned $q(w)$ vs $q(w)$ fixed to the prior $p(w)$ (2 layers)"
    fig.suptitle(f"{PREVIEW_MARKER}: {title}" if preview else title, y=1.02)
    fig.tight_layout()
    report.outputs = _save(fig, "figure_4", figures_dir)
    return _finish(report, out)


# ------------------------------------------------------------------------------ figure 5
def figure_5(
    results_path: os.PathLike = "results",
    figures_dir: os.PathLike = FIGURES_DIR,
    panels: Sequence[Tuple[str, int, int]] = FIGURE_5_PANELS,
    num_samples: int = TEST_SAMPLES,
    depth: int = 2,
    iterations: int = PAPER_ITERATIONS,
    out: Optional[TextIO] = None,
    bins: int = FIGURE_5_BINS,
    settings: Optional[Mapping[str, Any]] = None,
) -> FigureReport:
    """Histograms (`bins` bins, the reference's 200) of predictive samples at one test point,
    learned q(w) (top) vs q(w) fixed to the prior (bottom); one column per (dataset, split,
    test point) panel."""
    spec = protocol_targets.figure_5(
        results_path, panels, num_samples, depth, iterations, settings
    )
    needs = _Needs("figure_5", spec)
    configs = {}
    runs = iter(spec.runs)  # per panel: learned, then fixed q(w)
    for dataset, split, point in panels:
        for fixq in (False, True):
            config = next(runs)
            if needs.run(config):
                configs[(dataset, fixq)] = config
    report = needs.report(out)
    if not configs:
        raise _nothing(report, results_path)

    samples = {}
    for dataset, split, point in panels:
        for fixq in (False, True):
            if (dataset, fixq) not in configs:
                continue
            model, _, data, _ = load_run(configs[(dataset, fixq)].run_dir())
            if point >= data.X_test.shape[0]:
                raise ValueError(
                    f"figure_5: test point {point} out of range ({data.X_test.shape[0]} points)"
                )
            ys = Evaluator(model).predictive_samples(data.X_test[point], num_samples, 0, point)
            samples[(dataset, fixq)] = (ys, float(data.Y_test[point, 0]))

    _setup_style()
    fig, axes = plt.subplots(
        2, len(panels), figsize=(3.2 * len(panels) + 0.6, 4.2), squeeze=False, sharex="col"
    )
    for col, (dataset, split, point) in enumerate(panels):
        for row, fixq in enumerate((False, True)):
            ax = axes[row, col]
            if (dataset, fixq) not in samples:
                ax.text(0.5, 0.5, "missing", ha="center", va="center", transform=ax.transAxes)
                ax.set_yticks([])
                continue
            ys, y_true = samples[(dataset, fixq)]
            color = COLORS["fixq"] if fixq else COLORS["reg"]
            ax.hist(ys, bins=bins, density=True, color=color, alpha=0.85)
            ax.axvline(y_true, color="black", linestyle="--", lw=1.0)
            ax.grid(True)
            if row == 0:
                ax.set_title(f"{_label(dataset)} (split {split}, test point {point})")
            if col == 0:
                ax.set_ylabel(("fixed $p(w)$" if fixq else "learned $q(w)$") + "\ndensity")
        axes[-1, col].set_xlabel("$y$ (normalised)")
    handle = plt.Line2D([], [], color="black", linestyle="--", label="observed $y$")
    fig.legend(handles=[handle], loc="upper center", bbox_to_anchor=(0.5, 1.04))
    fig.tight_layout()
    report.outputs = _save(fig, "figure_5", figures_dir)
    return _finish(report, out)


# ------------------------------------------------------------------------------ table 1
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


def table_1(
    results_path: os.PathLike = "results",
    figures_dir: os.PathLike = FIGURES_DIR,
    datasets: Sequence[str] = TABLE_1_DATASETS,
    splits: "protocol_targets.Splits" = TABLE_1_SPLITS,
    iterations: int = PAPER_ITERATIONS,
    out: Optional[TextIO] = None,
    settings: Optional[Mapping[str, Any]] = None,
    test_samples: int = TEST_SAMPLES,
    test_repeats: int = TEST_REPEATS,
    elbo_repeats: int = ELBO_REPEATS,
) -> FigureReport:
    """Prints Table 1 (per dataset: test log-likelihood and train ELBO per training point, mean
    ± standard error over splits, REG vs DReG; each split the mean of its repeats) and the two
    Wilcoxon signed-rank tests over all paired (dataset, split) runs; also writes it to
    <figures_dir>/table_1.txt. Data written by `evaluate.py --preview` is marked PREVIEW."""
    out_stream = sys.stdout if out is None else out
    spec = protocol_targets.table_1(
        results_path,
        datasets,
        splits,
        iterations,
        settings,
        test_samples,
        test_repeats,
        elbo_repeats,
    )
    splits = len(protocol_targets.split_list(splits))
    needs = _Needs("table_1", spec)
    tll, preview = _data_rows(
        needs, "table_1", "test_ll", results_path, datasets, splits, iterations
    )
    elbo, elbo_preview = _data_rows(
        needs, "table_1", "train_elbo", results_path, datasets, splits, iterations
    )
    preview = preview or elbo_preview
    report = needs.report(out)
    if not tll:
        raise _nothing(report, results_path)

    num_train: Dict[str, Optional[int]] = {}
    header = (
        f"{'dataset':<15}{'pairs':>6}  {'REG test LL':>16}  {'DReG test LL':>16}  "
        f"{'REG ELBO/N':>16}  {'DReG ELBO/N':>16}"
    )
    lines = [f"{PREVIEW_MARKER} (not every run reached its iterations)"] if preview else []
    lines += [
        "Table 1: depth 2, K = 50; mean ± standard error over splits (each split: the mean of "
        "its repeated estimates; train ELBO divided by the number of training points)",
        header,
        "-" * len(header),
    ]
    reg_all, dreg_all = [], []
    for dataset in datasets:
        pairs = sorted(
            s for (d, f, s) in tll if d == dataset and not f and (dataset, True, s) in tll
        )
        reg = [tll[(dataset, False, s)].mean for s in pairs]
        dreg = [tll[(dataset, True, s)].mean for s in pairs]
        reg_all += reg
        dreg_all += dreg
        cells = []
        for flag in (False, True):
            values = [elbo[(dataset, flag, s)].mean for s in pairs if (dataset, flag, s) in elbo]
            if values and dataset not in num_train:
                num_train[dataset] = _num_train(dataset)
            n = num_train.get(dataset)
            cells.append(_mean_se(np.array(values) / n) if values and n else "-")
        lines.append(
            f"{_label(dataset):<15}{len(pairs):>6}  {_mean_se(reg):>16}  {_mean_se(dreg):>16}  "
            f"{cells[0]:>16}  {cells[1]:>16}"
        )
    lines.append("")
    if reg_all:
        tests = wilcoxon_tests(reg_all, dreg_all)
        lines.append(
            ("PREVIEW: " if preview else "")
            + f"Wilcoxon signed-rank test over {tests.num_pairs} paired runs (REG vs DReG):"
        )
        lines.append(
            f"  two-sided:                statistic = {tests.two_sided.statistic:.6g}, "
            f"p = {tests.two_sided.pvalue:.6g}"
        )
        lines.append(
            f"  one-sided (REG < DReG):   statistic = {tests.one_sided.statistic:.6g}, "
            f"p = {tests.one_sided.pvalue:.6g}"
        )
    else:
        lines.append("Wilcoxon tests: no paired (REG, DReG) runs yet")
    text = "\n".join(lines)
    print(text, file=out_stream)
    figures_dir = Path(figures_dir)
    figures_dir.mkdir(parents=True, exist_ok=True)
    path = figures_dir / "table_1.txt"
    path.write_text(text + "\n")
    report.text = text
    report.outputs = [path]
    return _finish(report, out)


def _num_train(dataset: str) -> Optional[int]:
    """Training-set size of a dataset (split 0), or None when the data cannot be loaded."""
    from dgp_snr.data import DataError, get_regression_data

    try:
        return int(get_regression_data(dataset, 0).X_train.shape[0])
    except (DataError, OSError):
        return None


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
    gradient_samples: int = GRADIENT_SAMPLES,
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
        gradient_samples,
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


def figure_8(
    results_path: os.PathLike = "results",
    figures_dir: os.PathLike = FIGURES_DIR,
    datasets: Sequence[str] = FIGURE_8_DATASETS,
    split: int = FIGURE_8_SPLIT,
    K: int = FIGURE_8_K,
    batch_size: int = FIGURE_8_BATCH,
    iterations: int = PAPER_ITERATIONS,
    out: Optional[TextIO] = None,
    settings: Optional[Mapping[str, Any]] = None,
    gradient_samples: int = GRADIENT_SAMPLES,
    aggregates: bool = True,
) -> FigureReport:
    """Appendix: mean SNR over encoder weights at K = 50, batch size 64 (training points
    0-63), REG vs DReG at the same REG-trained depth-2 checkpoint, one panel per dataset (the
    reference's: the split-1 runs of the seven Figure 3 datasets)."""
    df, report = figure_8_data(
        results_path,
        datasets,
        split,
        K,
        batch_size,
        iterations,
        out,
        settings,
        gradient_samples,
        aggregates,
    )
    report.outputs = draw_figure_8(df, figures_dir)
    return _finish(report, out)


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
    gradient_samples: int = GRADIENT_SAMPLES,
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
        gradient_samples,
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


def figure_9(
    results_path: os.PathLike = "results",
    figures_dir: os.PathLike = FIGURES_DIR,
    batch_sizes: Sequence[int] = FIGURE_9_BATCH_SIZES,
    ks: Sequence[int] = FIGURE_9_KS,
    num_datapoints: int = FIGURE_9_DATAPOINTS,
    iterations: int = PAPER_ITERATIONS,
    out: Optional[TextIO] = None,
    dataset: str = FIGURE_9_DATASET,
    depth: int = FIGURE_9_DEPTH,
    train_K: int = FIGURE_9_TRAIN_K,
    settings: Optional[Mapping[str, Any]] = None,
    gradient_samples: int = GRADIENT_SAMPLES,
    aggregates: bool = True,
) -> FigureReport:
    """Appendix: REG's mean SNR over encoder weights vs K for several batch sizes, power,
    depth 3, K = 30 training. The batch-size-1 curve is data point 0's, as the reference draws
    it; `num_datapoints` > 1 averages over the first data points instead."""
    df, report = figure_9_data(
        results_path,
        batch_sizes,
        ks,
        num_datapoints,
        iterations,
        out,
        dataset,
        depth,
        train_K,
        settings,
        gradient_samples,
        aggregates,
    )
    report.outputs = draw_figure_9(df, figures_dir)
    return _finish(report, out)


#: Every figure and table by its command-line name.
FIGURES: Dict[str, Callable[..., FigureReport]] = {
    "figure_1": figure_1,
    "figure_2": figure_2,
    "figure_3": figure_3,
    "figure_4": figure_4,
    "figure_5": figure_5,
    "figure_8": figure_8,
    "figure_9": figure_9,
    "table_1": table_1,
}


@dataclass(frozen=True)
class TidyFigure:
    """A figure split into `collect` (results path and the figure's parameters -> tidy
    DataFrame and report; raises MissingInputsError when nothing exists) and `draw` (DataFrame,
    figures folder and the `draw_options` -> written paths), for dgp_snr.reproduction."""

    collect: Callable[..., Tuple[pd.DataFrame, FigureReport]]
    draw: Callable[..., List[Path]]
    draw_options: Tuple[str, ...] = ()


#: The figures whose data can be exported as a CSV and redrawn from it.
TIDY_FIGURES: Dict[str, TidyFigure] = {
    "figure_1": TidyFigure(figure_1_data, draw_figure_1),
    "figure_2": TidyFigure(figure_2_data, draw_figure_2, ("x_range", "bins")),
    "figure_3": TidyFigure(figure_3_data, draw_figure_3),
    "figure_8": TidyFigure(figure_8_data, draw_figure_8),
    "figure_9": TidyFigure(figure_9_data, draw_figure_9),
}
