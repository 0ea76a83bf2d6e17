"""The paper's figures and Table 1 (and the runs' learning curves), drawn from the runs,
gradient dumps, figure data files and training logs under a results path (run directories named
by RunConfig.run_name).

Each `figure_*` / `table_1` function first works out which of its inputs are missing and prints
the exact commands that create them (experiments/train.py, then experiments/sample_gradients.py,
then experiments/evaluate.py), then draws what exists into <figures_dir>/<name>.pdf and .png.
When nothing can be drawn it raises MissingInputsError (after printing the commands); with
partial inputs it draws what exists and the report lists the rest. A corrupt gradient dump or
data file raises ValueError naming the file; a dump recorded with other settings than the
figure asks (another checkpoint step, number of estimates, ...) raises StaleInputsError (a
ValueError) with the command that rebuilds it. Beside each figure, <name>.inputs.json records
the identity of every input it was drawn from (path, sha256, a dump's recorded settings).

Every figure follows one template (common.TidyFigure): `<name>_data(results_path, **params)`
collects its inputs into a tidy pandas DataFrame (columns in its docstring) and the report of
the missing ones, `draw_<name>(df, figures_dir)` draws that frame alone, and `<name>(results_path,
figures_dir, **params)` does both in turn. dgp_snr.reproduction commits the frame as CSV and
redraws the figure from it (TIDY_FIGURES). Everything after the results path and figures folder
is keyword-only: a target's parameters by the names of its definition in
dgp_snr.protocol.targets (the one place they are defined; common.target_data), then the
figure's own options (`out`, Figure 1's `parameters`, Figure 2's `parameter` and `loss`, ...).

Modules (inputs: K = 50 training, minibatch 64, IWAE, split 0 unless stated; "reg" = the
REG-trained run; definitions of runs, K grids, data points and bins live in dgp_snr.protocol):
  common              style, log-log axes, saving, missing-input report, FigureReport,
                      TidyFigure and target_data (a target's parameters, from its definition)
  dumps               reading gradient dumps: SNR / raw samples of the encoder weights
  snr                 Figures 1 and 2 (SNR of single weights vs K; raw gradient estimates)
  snr_summary         the mean SNR over encoder weights (the frame of Figures 3, 8 and 9);
                      Figure 3
  snr_batch           Figures 8 and 9 (mean SNR of minibatch gradients)
  evaluation_figures  Figures 4 and 5 (learned vs fixed q(w)); the evaluation data files
  table               Table 1 and its Wilcoxon tests
  curves              learning curves: test log-likelihood vs iterations (training logs)
"""

from typing import Callable, Dict

from dgp_snr.plotting.common import (
    COLORS,
    ESTIMATORS,
    FIGURES_DIR,
    FIT_COLOR,
    LABELS,
    FigureReport,
    MissingInputsError,
    StaleInputsError,
    TidyFigure,
)
from dgp_snr.plotting.curves import (
    LEARNING_CURVES,
    LEARNING_CURVES_COLUMNS,
    draw_learning_curves,
    learning_curves,
    learning_curves_data,
    read_scalars,
)
from dgp_snr.plotting.dumps import (
    find_dump,
    mean_snr_over_datapoints,
    weight_entry_labels,
    weight_names,
    weight_samples,
    weight_snr,
)
from dgp_snr.plotting.evaluation_figures import (
    FIGURE_4,
    FIGURE_4_COLUMNS,
    FIGURE_5,
    FIGURE_5_COLUMNS,
    NO_DATA,
    QW,
    UNKNOWN_STEP,
    draw_figure_4,
    draw_figure_5,
    figure_4,
    figure_4_data,
    figure_5,
    figure_5_data,
)
from dgp_snr.plotting.snr import (
    FIGURE_1,
    FIGURE_1_COLUMNS,
    FIGURE_2,
    FIGURE_2_COLUMNS,
    draw_figure_1,
    draw_figure_2,
    figure_1,
    figure_1_data,
    figure_2,
    figure_2_data,
)
from dgp_snr.plotting.snr_batch import (
    FIGURE_8,
    FIGURE_9,
    draw_figure_8,
    draw_figure_9,
    figure_8,
    figure_8_data,
    figure_9,
    figure_9_data,
)
from dgp_snr.plotting.snr_summary import (
    ALL_WEIGHTS,
    FIGURE_3,
    SNR_SUMMARY_COLUMNS,
    draw_figure_3,
    figure_3,
    figure_3_data,
)
from dgp_snr.plotting.table import (
    TABLE_1,
    TABLE_1_COLUMNS,
    Table1,
    WilcoxonTests,
    draw_table_1,
    table_1,
    table_1_data,
    table_1_markdown,
    table_1_summary,
    table_1_text,
    wilcoxon_tests,
)

# The protocol's names the figure functions' defaults come from (plotting.FIGURE_1_KS, ...).
from dgp_snr.protocol import (  # noqa: F401 (re-exported)
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
    TABLE_1_DATASETS,
    TABLE_1_SPLITS,
    sample_command,
)

#: The figures whose data can be exported as a CSV and redrawn from it: every figure, Table 1
#: and the learning curves (a report-only target).
TIDY_FIGURES: Dict[str, TidyFigure] = {
    figure.name: figure
    for figure in (
        FIGURE_1,
        FIGURE_2,
        FIGURE_3,
        FIGURE_4,
        FIGURE_5,
        FIGURE_8,
        FIGURE_9,
        TABLE_1,
        LEARNING_CURVES,
    )
}

#: Every figure and table of the paper by its command-line name (experiments/plot.py).
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

__all__ = [
    "ALL_WEIGHTS",
    "COLORS",
    "ESTIMATORS",
    "FIGURES",
    "FIGURES_DIR",
    "FIGURE_1_COLUMNS",
    "FIGURE_2_COLUMNS",
    "FIGURE_4_COLUMNS",
    "FIGURE_5_COLUMNS",
    "FIT_COLOR",
    "LABELS",
    "LEARNING_CURVES_COLUMNS",
    "NO_DATA",
    "QW",
    "SNR_SUMMARY_COLUMNS",
    "StaleInputsError",
    "TABLE_1_COLUMNS",
    "TIDY_FIGURES",
    "UNKNOWN_STEP",
    "FigureReport",
    "MissingInputsError",
    "Table1",
    "TidyFigure",
    "WilcoxonTests",
    "draw_figure_1",
    "draw_figure_2",
    "draw_figure_3",
    "draw_figure_4",
    "draw_figure_5",
    "draw_figure_8",
    "draw_figure_9",
    "draw_learning_curves",
    "draw_table_1",
    "figure_1",
    "figure_1_data",
    "figure_2",
    "figure_2_data",
    "figure_3",
    "figure_3_data",
    "figure_4",
    "figure_4_data",
    "figure_5",
    "figure_5_data",
    "figure_8",
    "figure_8_data",
    "figure_9",
    "figure_9_data",
    "find_dump",
    "learning_curves",
    "learning_curves_data",
    "mean_snr_over_datapoints",
    "read_scalars",
    "sample_command",
    "table_1",
    "table_1_data",
    "table_1_markdown",
    "table_1_summary",
    "table_1_text",
    "weight_entry_labels",
    "weight_names",
    "weight_samples",
    "weight_snr",
    "wilcoxon_tests",
]
