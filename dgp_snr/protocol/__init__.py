"""The paper's protocol in one place: its run settings, the figure and table definitions (which
runs, K grids, data points, bins), the command lines that make each input, and the rule that
picks the splits of Table 1 and Figure 4.

Definitions follow the authors' runs (experiments/create_figures.py, build_run_commands.py and
compute_tlls_and_elbos.py of timrudner/snr_issues_in_deep_gps) where they differ from the text.
"""

import os
import shlex
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

from dgp_snr.runs import CHECKPOINT_DIR, CONFIG_FILE, RunConfig, latest_checkpoint_step

# ------------------------------------------------------------------------------ run settings
PAPER_ITERATIONS = 300_000
PAPER_K = 50
PAPER_MINIBATCH = 64
#: Evaluation: 10,000 samples per test log-likelihood, repeated 10 times; 10 ELBO repeats.
TEST_SAMPLES = 10_000
TEST_REPEATS = 10
ELBO_REPEATS = 10
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


# ------------------------------------------------------------------------------ commands
#: The settings every train command names, in this order; any other one is named when it
#: differs from RunConfig's default (e.g. M=8 of the smoke profile). The command line's names
#: are the reference's (num_IW_samples, num_predict_samples; RunConfig.to_flat).
_TRAIN_ARGS = (
    "dataset",
    "split",
    "configuration",
    "mode",
    "num_IW_samples",
    "minibatch_size",
    "estimator",
)
_DEFAULTS = RunConfig().to_flat(reference_names=True)


def train_command(config: RunConfig) -> str:
    """The exact experiments/train.py command line that trains `config`'s run."""
    flat = config.to_flat(reference_names=True)
    args = [f"{name}={flat[name]}" for name in _TRAIN_ARGS]
    if flat["qz_mode"] != "encoder":
        args.append(f"qz_mode={flat['qz_mode']}")
    for name, value in flat.items():
        if name in _TRAIN_ARGS or name in ("qz_mode", "iterations", "results_path"):
            continue
        if value != _DEFAULTS[name]:
            args.append(f"{name}={value}")
    args += [f"iterations={flat['iterations']}", f"results_path={flat['results_path']}"]
    return "python experiments/train.py with " + " ".join(shlex.quote(a) for a in args)


def sample_command(
    config: RunConfig,
    estimator: str,
    ks: Sequence[int],
    batch_size: int = 1,
    num_datapoints: int = NUM_DATAPOINTS,
    aggregates: bool = True,
    num_estimates: int = GRADIENT_SAMPLES,
) -> str:
    """The exact experiments/sample_gradients.py command line for these dumps of a run."""
    parts = [
        "python experiments/sample_gradients.py",
        shlex.quote(config.run_name),
        f"--results_path {shlex.quote(str(config.results_path))}",
        f"--ks {','.join(str(k) for k in sorted(ks))}",
        f"--num_samples {num_estimates}",  # sample_gradients.py's flag for R
        f"--batch_size {batch_size}",
        f"--num_datapoints {num_datapoints if batch_size == 1 else 1}",
        f"--estimator {estimator}",
    ]
    if aggregates:
        parts.append("--save_aggregates")
    return " ".join(parts)


def evaluate_command(
    target: str,
    results_path: os.PathLike = "results",
    num_predictive_samples: int = TEST_SAMPLES,
    repeats: int = TEST_REPEATS,
    iterations: int = PAPER_ITERATIONS,
) -> str:
    """The exact experiments/evaluate.py command line that writes `target`'s data files."""
    cmd = (
        f"python experiments/evaluate.py {target} --results_path {shlex.quote(str(results_path))}"
    )
    if iterations != PAPER_ITERATIONS:
        cmd += f" --iterations {iterations}"
    if num_predictive_samples != TEST_SAMPLES:  # evaluate.py's flag for S
        cmd += f" --num_samples {num_predictive_samples}"
    if repeats != TEST_REPEATS:
        cmd += f" --repeats {repeats}"
    return cmd


# ------------------------------------------------------------------------------ Table 1, Figure 4
EVALUATION_TARGETS = ("figure_4", "table_1")


@dataclass
class TargetRun:
    """One run a target needs: where it goes in the data file and its configuration; `step` is
    the checkpoint that enters (set by select_splits)."""

    dataset: str
    flag: bool
    split: int
    config: RunConfig
    step: Optional[int] = None


def _target_defaults(target: str) -> Tuple[Sequence[str], int, List[Tuple[bool, dict]]]:
    """(datasets, number of splits, [(flag, paper_config kwargs)]) of an evaluation target."""
    if target == "figure_4":  # flag T: q(w) fixed to the prior
        return FIGURE_4_DATASETS, FIGURE_4_SPLITS, [(False, {}), (True, dict(fixq=True))]
    if target == "table_1":  # flag T: DReG-trained
        pairs = [(False, dict(estimator="reg")), (True, dict(estimator="dreg"))]
        return TABLE_1_DATASETS, TABLE_1_SPLITS, pairs
    raise ValueError(
        f"unknown evaluation target {target!r}; known: {', '.join(EVALUATION_TARGETS)}"
    )


def pair_runs(
    target: str,
    dataset: str,
    split: int,
    results_path: os.PathLike = "results",
    iterations: int = PAPER_ITERATIONS,
) -> List[TargetRun]:
    """The two runs of one (dataset, split) of a target: flag F and flag T."""
    _, _, flags = _target_defaults(target)
    return [
        TargetRun(
            dataset,
            flag,
            split,
            paper_config(
                dataset, split, 2, results_path=results_path, iterations=iterations, **kw
            ),
        )
        for flag, kw in flags
    ]


def target_runs(
    target: str,
    results_path: os.PathLike = "results",
    datasets: Optional[Sequence[str]] = None,
    splits: Optional[int] = None,
    iterations: int = PAPER_ITERATIONS,
) -> List[TargetRun]:
    """The runs the reference trains for a target: 'figure_4' (learned q(w) vs fixq,
    REG-trained) and 'table_1' (REG vs DReG); depth 2, K = 50, minibatch 64, splits
    0..splits-1 (select_splits decides which of the existing runs enter)."""
    default_datasets, default_splits, _ = _target_defaults(target)
    datasets = default_datasets if datasets is None else datasets
    splits = default_splits if splits is None else splits
    return [
        run
        for dataset in datasets
        for run in sorted(
            (
                r
                for s in range(splits)
                for r in pair_runs(target, dataset, s, results_path, iterations)
            ),
            key=lambda r: (r.flag, r.split),
        )
    ]


def run_state(config: RunConfig, iterations: int) -> Tuple[str, Optional[int]]:
    """("finished", iterations) when the run has a checkpoint at the protocol's iteration count;
    ("unfinished", latest step) when it has an earlier one; ("missing", None) otherwise."""
    run_dir = config.run_dir()
    if (run_dir / CONFIG_FILE).is_file() and (
        run_dir / CHECKPOINT_DIR / f"ckpt-{iterations}.index"
    ).is_file():
        return "finished", iterations
    latest = latest_checkpoint_step(run_dir)
    return ("missing", None) if latest is None else ("unfinished", latest)


@dataclass
class SplitSelection:
    """The splits of a target that enter its data file, per dataset, and why others did not.

    runs: the selected runs (both of each pair) with the step that enters; skipped: per dataset,
    (split, reason) for splits with at least one run on disk that were passed over; short: per
    dataset, how many selected splits are missing from the wanted number."""

    target: str
    iterations: int
    num_splits: int
    preview: bool
    runs: List[TargetRun] = field(default_factory=list)
    used: Dict[str, List[int]] = field(default_factory=dict)
    skipped: Dict[str, List[Tuple[int, str]]] = field(default_factory=dict)
    unfinished_used: List[TargetRun] = field(default_factory=list)

    def short(self, dataset: str) -> int:
        return self.num_splits - len(self.used.get(dataset, []))

    def describe(self) -> List[str]:
        """Human-readable lines: the splits used and skipped per dataset."""
        lines = []
        if self.preview:
            lines.append(
                f"PREVIEW: unfinished runs ({self.target}: runs not yet at "
                f"{self.iterations} iterations enter at their latest checkpoint)"
            )
        for dataset, used in self.used.items():
            text = ", ".join(str(s) for s in used) or "none"
            lines.append(
                f"{self.target} {dataset}: splits used ({len(used)} of {self.num_splits}): {text}"
            )
            for split, reason in self.skipped.get(dataset, []):
                lines.append(f"    split {split} skipped: {reason}")
        return lines


def select_splits(
    target: str,
    results_path: os.PathLike = "results",
    datasets: Optional[Sequence[str]] = None,
    num_splits: Optional[int] = None,
    iterations: int = PAPER_ITERATIONS,
    preview: bool = False,
    max_split: int = MAX_SPLIT,
) -> SplitSelection:
    """Per dataset, the first `num_splits` splits in 0..max_split for which every run of the
    pair reached `iterations` (the reference's rule; they enter at that step). With `preview`,
    a pair whose runs merely have a checkpoint enters too, each run at its latest checkpoint
    (finished runs at `iterations`)."""
    default_datasets, default_splits, _ = _target_defaults(target)
    datasets = default_datasets if datasets is None else datasets
    num_splits = default_splits if num_splits is None else num_splits
    selection = SplitSelection(target, iterations, num_splits, preview)
    for dataset in datasets:
        used = selection.used.setdefault(dataset, [])
        for split in range(max_split + 1):
            if len(used) == num_splits:
                break
            pair = pair_runs(target, dataset, split, results_path, iterations)
            states = [run_state(run.config, iterations) for run in pair]
            if all(state == "missing" for state, _ in states):
                continue
            ok = all(s == "finished" or (preview and s == "unfinished") for s, _ in states)
            if not ok:
                reasons = [
                    f"{run.config.run_name} "
                    + ("has no checkpoint" if s == "missing" else f"stopped at step {step}")
                    for run, (s, step) in zip(pair, states)
                    if s != "finished"
                ]
                selection.skipped.setdefault(dataset, []).append(
                    (split, f"not finished at {iterations} iterations: " + "; ".join(reasons))
                )
                continue
            used.append(split)
            for run, (state, step) in zip(pair, states):
                run.step = step
                selection.runs.append(run)
                if state == "unfinished":
                    selection.unfinished_used.append(run)
    return selection


def missing_runs(selection: SplitSelection, results_path: os.PathLike) -> List[TargetRun]:
    """The runs to train (or finish) so that each dataset reaches its number of splits: those of
    the lowest splits not yet selected."""
    out = []
    for dataset, used in selection.used.items():
        need = selection.short(dataset)
        split = 0
        while need > 0 and split <= MAX_SPLIT:
            if split not in used:
                for run in pair_runs(
                    selection.target, dataset, split, results_path, selection.iterations
                ):
                    if run_state(run.config, selection.iterations)[0] != "finished":
                        out.append(run)
                need -= 1
            split += 1
    return out


# The per-target definitions and profiles build on the names above (re-exported here).
from dgp_snr.protocol.profiles import PROFILES as PROFILES  # noqa: E402
from dgp_snr.protocol.profiles import Profile as Profile  # noqa: E402
from dgp_snr.protocol.targets import TARGETS as TARGETS  # noqa: E402
from dgp_snr.protocol.targets import TargetSpec as TargetSpec  # noqa: E402
from dgp_snr.protocol.targets import target_spec as target_spec  # noqa: E402
