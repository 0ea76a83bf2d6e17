"""The paper's protocol in one place, re-exported here: its settings and every figure's and
table's definition (constants.py), the command lines that make each input (commands.py), the
rule that picks the splits of Table 1 and Figure 4 (splits.py), the evaluation of those targets
(target_evaluation.py), every target's runs, sampling jobs and evaluation (targets.py; the job
classes in jobs.py) and the profiles (profiles.py). Whether a run is finished is
dgp_snr.runs.run_state's answer, re-exported too.
"""

from dgp_snr.protocol.commands import (  # noqa: F401
    evaluate_command,
    sample_command,
    train_command,
)
from dgp_snr.protocol.constants import (  # noqa: F401
    ELBO_REPEATS,
    EVALUATION_TARGETS,
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
    MAX_SPLIT,
    NUM_DATAPOINTS,
    PAPER_ITERATIONS,
    PAPER_K,
    PAPER_MINIBATCH,
    TABLE_1_DATASETS,
    TABLE_1_SPLITS,
    TEST_REPEATS,
    TEST_SAMPLES,
    configuration_for_depth,
    paper_config,
)
from dgp_snr.protocol.profiles import (  # noqa: F401
    PROFILES,
    Profile,
)
from dgp_snr.protocol.splits import (  # noqa: F401
    SplitSelection,
    TargetRun,
    missing_runs,
    pair_runs,
    select_splits,
    target_defaults,
    target_runs,
)
from dgp_snr.protocol.target_evaluation import (  # noqa: F401
    TargetReport,
    evaluate_target,
    target_files,
)
from dgp_snr.protocol.targets import (  # noqa: F401
    TARGETS,
    TargetSpec,
    target_spec,
)
from dgp_snr.runs import RunState, run_state  # noqa: F401
