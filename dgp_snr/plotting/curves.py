"""Learning curves: the test log-likelihood that training logged against the iterations, for
the runs of Table 1 and Figure 4, so a reader sees where each curve is heading (a report-only
target: the sweep has no job of its own for it, the curves come from the runs' training logs).

Training (dgp_snr.train_run) writes TensorBoard events to <run_dir>/tensorboard/: the scalars
`test/<metric>` every `log_test_freq` steps (test_loglik, test_loglik_unnormalized, test_rmse,
test_rmse_unnormalized), each step once (a resumed run drops the events after its checkpoint
before logging them again). They are read with TensorFlow's own event reader, so TensorBoard
itself need not be installed.
"""

import os
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, TextIO, Tuple

import numpy as np
import pandas as pd
import tensorflow as tf
from matplotlib import pyplot as plt

from dgp_snr.plotting.common import (
    COLORS,
    FIGURES_DIR,
    LABELS,
    FigureReport,
    TidyFigure,
    _depth,
    _in_order,
    _label,
    _Needs,
    _nothing,
    _save,
    _setup_style,
)
from dgp_snr.protocol import PAPER_ITERATIONS
from dgp_snr.protocol import targets as protocol_targets
from dgp_snr.protocol.profiles import LEARNING_CURVE_TARGETS
from dgp_snr.run_logging import TENSORBOARD_DIR

#: The scalars of the test metrics in the training log: `test/<metric>`.
TEST_PREFIX = "test/"

#: learning_curves_data's columns: one row per (run, logged step, metric).
LEARNING_CURVES_COLUMNS = (
    "run",
    "dataset",
    "split",
    "estimator",
    "qw",
    "depth",
    "step",
    "metric",
    "value",
)
_YLABELS = {
    "test_loglik": "test log-likelihood",
    "test_loglik_unnormalized": "test log-likelihood (original units)",
    "test_rmse": "test RMSE",
    "test_rmse_unnormalized": "test RMSE (original units)",
}
#: Line colours per (estimator, q(w)); a DReG run with fixed q(w) is not in the paper's targets.
_GROUP_COLORS = {
    ("reg", "learned"): COLORS["reg"],
    ("dreg", "learned"): COLORS["dreg"],
    ("reg", "fixed"): COLORS["fixq"],
    ("dreg", "fixed"): "#9467bd",
}


def read_scalars(directory: os.PathLike, prefix: str = "") -> pd.DataFrame:
    """The scalar summaries of the TensorBoard event files in `directory` whose tag starts
    with `prefix`, as a frame (tag, step, value) sorted by tag and step; empty when there are
    none. A step logged twice keeps the value of the later file (events.out.tfevents.<time>...
    sort in time order); a file cut short by a kill keeps its readable part. Scalars written by
    tf.summary.write (a tensor) and by the v1 API (simple_value) are both read."""
    values: Dict[Tuple[str, int], float] = {}
    for path in sorted(Path(directory).glob("events.out.tfevents.*")):
        try:
            # TFRecordDataset rather than summary_iterator, which warns that it is deprecated
            for record in tf.data.TFRecordDataset(str(path)):
                event = tf.compat.v1.Event.FromString(record.numpy())
                for value in event.summary.value:
                    if not value.tag.startswith(prefix):
                        continue
                    if value.HasField("tensor"):
                        number = tf.make_ndarray(value.tensor)
                        if number.size != 1:  # a histogram or image, not a scalar
                            continue
                        number = float(number.reshape(()))
                    elif value.HasField("simple_value"):
                        number = float(value.simple_value)
                    else:
                        continue
                    values[(value.tag, int(event.step))] = number
        except tf.errors.DataLossError:
            pass  # a truncated last record: keep what was read (as train_run's purge does)
    rows = [(tag, step, value) for (tag, step), value in values.items()]
    df = pd.DataFrame(rows, columns=["tag", "step", "value"])
    return df.sort_values(["tag", "step"], ignore_index=True)


def learning_curves_data(
    results_path: os.PathLike = "results",
    *,
    targets: Sequence[str] = LEARNING_CURVE_TARGETS,
    iterations: int = PAPER_ITERATIONS,
    out: Optional[TextIO] = None,
    settings: Optional[Mapping[str, Any]] = None,
    target_params: Optional[Mapping[str, Mapping[str, Any]]] = None,
    metrics: Sequence[str] = ("test_loglik",),
) -> Tuple[pd.DataFrame, FigureReport]:
    """The logged test metrics of the runs of `targets` as a tidy frame
    (LEARNING_CURVES_COLUMNS) and the report of the missing ones; raises MissingInputsError
    when no run has logged any.

    The runs are those of protocol.targets.runs_of_targets(targets, results_path, params): a
    target's parameters are target_params[target] (a profile's `params(target)`; what
    Profile.params('learning_curves') gives), else `iterations` and `settings`. One row per
    run, logged step and metric in `metrics` (the names after 'test/'), runs in the targets'
    order: `run` the run's name, `estimator` the one it was trained with, `qw` 'learned' or
    'fixed' (q(w) fixed to the prior), `depth` its number of layers, `value` the logged value.
    About iterations / log_test_freq rows per run and metric (300 at the paper's settings)."""
    params = {
        name: dict((target_params or {}).get(name, dict(iterations=iterations, settings=settings)))
        for name in targets
    }
    configs = protocol_targets.runs_of_targets(targets, results_path, params)
    spec = protocol_targets.TargetSpec("learning_curves", runs=configs)
    needs = _Needs("learning_curves", spec)
    frames = []
    for config in configs:
        scalars = read_scalars(config.run_dir() / TENSORBOARD_DIR, TEST_PREFIX)
        scalars["metric"] = scalars["tag"].str.slice(len(TEST_PREFIX))
        scalars = scalars[scalars["metric"].isin(list(metrics))]
        if scalars.empty:
            if needs.run(config):  # trained, but nothing logged yet (or logging was off)
                needs.data(f"run {config.run_name}: no {', '.join(metrics)} in its training log")
            continue
        frame = scalars[["step", "metric", "value"]].copy()
        frame.insert(0, "run", config.run_name)
        frame.insert(1, "dataset", config.dataset)
        frame.insert(2, "split", int(config.split))
        frame.insert(3, "estimator", config.training.estimator)
        frame.insert(4, "qw", "fixed" if config.model.qz_mode == "fix_mu_sigma" else "learned")
        frame.insert(5, "depth", _depth(config))
        # metric-major within a run, then step (read_scalars sorts by tag, i.e. metric)
        frames.append(frame)
    report = needs.report(out)
    if not frames:
        raise _nothing(report, results_path)
    df = pd.concat(frames, ignore_index=True)[list(LEARNING_CURVES_COLUMNS)]
    df["step"] = df["step"].astype(np.int64)
    return df, report


def draw_learning_curves(df: pd.DataFrame, figures_dir: os.PathLike = FIGURES_DIR) -> List[Path]:
    """Draws learning_curves_data's frame into <figures_dir>/learning_curves.pdf and .png: one
    column per dataset and one row per metric; each run a thin line against the iterations,
    coloured by (estimator, q(w)), and per (estimator, q(w)) a thick line of the mean over its
    runs at the steps every one of them logged."""
    datasets = _in_order(df["dataset"])
    metrics = _in_order(df["metric"])
    _setup_style()
    fig, axes = plt.subplots(
        len(metrics),
        len(datasets),
        figsize=(2.6 * len(datasets) + 0.8, 2.6 * len(metrics) + 0.6),
        squeeze=False,
    )
    labelled = set()
    for row, metric in enumerate(metrics):
        for col, dataset in enumerate(datasets):
            ax = axes[row, col]
            mine = df[(df["dataset"] == dataset) & (df["metric"] == metric)]
            for (est, qw), group in mine.groupby(["estimator", "qw"], sort=False):
                color = _GROUP_COLORS.get((est, qw), "0.3")
                for _, run in group.groupby("run", sort=False):
                    run = run.sort_values("step")
                    ax.plot(run["step"], run["value"], color=color, lw=0.7, alpha=0.45)
                runs = group["run"].nunique()
                counts = group.groupby("step")["value"].count()
                shared = counts.index[counts == runs]  # steps every run reached
                mean = group[group["step"].isin(shared)].groupby("step")["value"].mean()
                label = LABELS.get(est, est) + (", fixed $q(w)$" if qw == "fixed" else "")
                ax.plot(
                    mean.index.to_numpy(),
                    mean.to_numpy(),
                    color=color,
                    lw=1.8,
                    label=None if (est, qw) in labelled else label,
                )
                labelled.add((est, qw))
            ax.grid(True)
            if row == 0:
                ax.set_title(_label(dataset))
            if row == len(metrics) - 1:
                ax.set_xlabel("iteration")
            if col == 0:
                ax.set_ylabel(_YLABELS.get(metric, metric.replace("_", " ")))
    fig.legend(loc="upper center", ncol=len(labelled), bbox_to_anchor=(0.5, 1.06))
    fig.tight_layout()
    return _save(fig, "learning_curves", figures_dir)


LEARNING_CURVES = TidyFigure("learning_curves", learning_curves_data, draw_learning_curves)
learning_curves = LEARNING_CURVES.function(
    """Test log-likelihood (`metrics`, as logged during training) against the iterations for
    the runs of Table 1 and Figure 4 (`targets`), one panel per dataset, thin lines per run and
    thick ones for the mean per estimator / q(w); from the runs' TensorBoard logs."""
)
