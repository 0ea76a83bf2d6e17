"""The paper's settings: its runs (iterations, K, minibatch; paper_config, the RunConfig of one
of its runs), its evaluation and every figure's and table's definition (which runs, K grids,
data points, bins).

Definitions follow the authors' runs (experiments/create_figures.py, build_run_commands.py and
compute_tlls_and_elbos.py of timrudner/snr_issues_in_deep_gps) where they differ from the text.
"""

import os
from typing import Any

# Evaluation: TEST_SAMPLES (10,000) samples per test log-likelihood, repeated TEST_REPEATS (10)
# times; ELBO_REPEATS (10) train ELBO repeats. Defined with the Evaluator, whose defaults they
# are, so that evaluating a run does not import the protocol.
from dgp_snr.evaluation import ELBO_REPEATS as ELBO_REPEATS
from dgp_snr.evaluation import TEST_REPEATS as TEST_REPEATS
from dgp_snr.evaluation import TEST_SAMPLES as TEST_SAMPLES
from dgp_snr.runs import RunConfig

# ------------------------------------------------------------------------------ run settings
PAPER_ITERATIONS = 300_000
PAPER_K = 50
PAPER_MINIBATCH = 64
#: Gradient estimates per dump, and data points for per-point SNRs (batch size 1).
GRADIENT_SAMPLES = 1000
NUM_DATAPOINTS = 10

# ------------------------------------------------------------------------------ figures, tables
#: Datasets of Table 1 and Figure 4 (depth 2, K = 50, minibatch 64).
TABLE_1_DATASETS = (
    "wilson_forest",
    "wilson_solar",
    "wilson_pol",
    "power",
    "winewhite",
    "winered",
)
FIGURE_4_DATASETS = TABLE_1_DATASETS
TABLE_1_SPLITS = 20
FIGURE_4_SPLITS = 10
#: The reference searches splits 0..40 for the first 20 (10) with every run of the pair done.
MAX_SPLIT = 40
#: The targets made by evaluating runs (experiments/evaluate.py) rather than sampling gradients.
EVALUATION_TARGETS = ("figure_4", "table_1")

FIGURE_1_KS = (1,) + tuple(range(5, 101, 5))
FIGURE_1_PARAMETERS = (0, 1, 2, 3)
FIGURE_2_KS = (1, 10, 100)
FIGURE_2_PARAMETER = 4
#: Figure 2 as the reference draws it: the loss's gradient (-bound), on [-20000, 20000], 200 bins.
FIGURE_2_X_RANGE = (-20_000.0, 20_000.0)
FIGURE_2_BINS = 200
FIGURE_3_DATASETS = (
    "winered",
    "wilson_solar",
    "demo_normalized",
    "wilson_forest",
    "power",
    "wilson_pol",
    "winewhite",
)
FIGURE_3_DEPTHS = (1, 2, 3, 4)
FIGURE_3_KS = (1, 10, 100, 1000)
#: (dataset, split, test point) of Figure 5's panels (the reference's choice).
FIGURE_5_PANELS = (("wilson_forest", 2, 2), ("winewhite", 2, 0))
FIGURE_5_BINS = 200
#: Figure 8: the split-1 runs of the seven Figure 3 datasets (REG-trained, depth 2), SNR at
#: K = 50 over the batch of the first 64 training points.
FIGURE_8_DATASETS = FIGURE_3_DATASETS
FIGURE_8_SPLIT = 1
FIGURE_8_K = 50
FIGURE_8_BATCH = 64
FIGURE_9_DATASET = "power"
FIGURE_9_DEPTH = 3
FIGURE_9_TRAIN_K = 30
FIGURE_9_BATCH_SIZES = (1, 64, 128, 256, 512)
FIGURE_9_KS = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 15, 20, 30, 40, 50)
#: Figure 9's batch-size-1 curve is data point 0's (the reference loads that dump only).
FIGURE_9_DATAPOINTS = 1


def configuration_for_depth(depth: int) -> str:
    """'L1' for depth 1, 'L1_G5' for depth 2, ... (one '_G5' per extra layer)."""
    if depth < 1:
        raise ValueError(f"depth must be at least 1, got {depth}")
    return "L1" + "_G5" * (depth - 1)


def paper_config(
    dataset: str,
    split: int = 0,
    depth: int = 2,
    K: int = PAPER_K,
    estimator: str = "reg",
    fixq: bool = False,
    results_path: os.PathLike = "results",
    minibatch_size: int = PAPER_MINIBATCH,
    iterations: int = PAPER_ITERATIONS,
    **settings: Any,
) -> RunConfig:
    """The RunConfig of one of the paper's IWVI runs (its run_name locates it on disk);
    `settings` are further flat RunConfig settings (e.g. M, checkpoint_freq of a reduced
    profile; RunConfig.from_flat)."""
    return RunConfig.from_flat(
        dataset=dataset,
        split=split,
        configuration=configuration_for_depth(depth),
        mode="IWAE",
        num_importance_samples=K,
        minibatch_size=minibatch_size,
        estimator=estimator,
        qz_mode="fix_mu_sigma" if fixq else "encoder",
        iterations=iterations,
        results_path=str(results_path),
        **settings,
    )
