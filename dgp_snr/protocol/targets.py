"""Every paper target defined once: its training runs, gradient-sampling jobs, evaluation and plot.

`TARGETS[name](results_path, **params)` returns the target's TargetSpec; the parameters (K grids,
datasets, splits, data points, estimates, iterations, extra run settings) default to the
paper's and are what a profile (dgp_snr.protocol.profiles) changes. experiments/sweep.py runs a
spec's jobs, plotting's missing-input report prints the commands of its jobs not yet done, and
evaluate.py reads its evaluation settings from it.
"""

import inspect
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from dgp_snr.gradient_dumps import dump_path
from dgp_snr.protocol import (
    ELBO_REPEATS,
    FIGURE_1_KS,
    FIGURE_2_KS,
    FIGURE_3_DATASETS,
    FIGURE_3_DEPTHS,
    FIGURE_3_KS,
    FIGURE_4_DATASETS,
    FIGURE_4_SPLITS,
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
    _target_defaults,
    paper_config,
    run_state,
    sample_command,
    train_command,
)
from dgp_snr.runs import RunConfig

ESTIMATORS = ("reg", "dreg")
Splits = Union[int, Sequence[int]]


def split_list(splits: Splits) -> List[int]:
    """A number of splits (0..n-1) or the splits themselves, as a list."""
    return list(range(splits)) if isinstance(splits, int) else [int(s) for s in splits]


@dataclass
class SampleJob:
    """One experiments/sample_gradients.py call: dumps of `estimator` at every K of `ks` for a
    run, batch size 1 (data points 0..num_datapoints-1) or a batch of the first B points."""

    config: RunConfig
    estimator: str
    ks: Tuple[int, ...]
    batch_size: int = 1
    num_datapoints: int = 1
    aggregates: bool = True
    num_samples: int = GRADIENT_SAMPLES

    def datapoints(self) -> List[Optional[int]]:
        return list(range(self.num_datapoints)) if self.batch_size == 1 else [None]

    def outputs(self) -> List[Path]:
        run_dir = self.config.run_dir()
        return [
            dump_path(run_dir, self.estimator, self.batch_size, K, dp, self.aggregates)
            for K in self.ks
            for dp in self.datapoints()
        ]

    def missing(self) -> List[Tuple[int, Path]]:
        """(K, path) of the dumps not on disk (for an aggregate dump, the raw one counts too,
        as the figures read either)."""
        run_dir = self.config.run_dir()
        out = []
        for K in self.ks:
            for dp in self.datapoints():
                forms = [self.aggregates] + ([False] if self.aggregates else [])
                paths = [
                    dump_path(run_dir, self.estimator, self.batch_size, K, dp, a) for a in forms
                ]
                if dp == 0:  # a dump without data-point suffix also counts for point 0
                    paths += [dump_path(run_dir, self.estimator, 1, K, None, a) for a in forms]
                if not any(p.is_file() for p in paths):
                    out.append((K, paths[0]))
        return out

    def command(self) -> str:
        return sample_command(
            self.config,
            self.estimator,
            self.ks,
            self.batch_size,
            self.num_datapoints,
            self.aggregates,
            self.num_samples,
        )

    def merge_key(self) -> tuple:
        return (
            self.config.run_name,
            self.estimator,
            self.batch_size,
            self.aggregates,
            self.num_samples,
        )


@dataclass
class EvalJob:
    """One experiments/evaluate.py call for Table 1 or Figure 4."""

    target: str
    results_path: str
    datasets: Tuple[str, ...]
    splits: int
    iterations: int
    num_samples: int = TEST_SAMPLES
    repeats: int = TEST_REPEATS
    elbo_repeats: int = ELBO_REPEATS

    def outputs(self) -> List[Path]:
        from dgp_snr.evaluation import target_files  # evaluation imports this package

        return list(target_files(self.target, self.results_path).values())

    def short_datasets(self) -> List[str]:
        """The datasets with fewer than `splits` paired splits in the data files (all of them
        when a file is missing, unreadable or a preview)."""
        from dgp_snr.evaluation import figure_data_is_preview, read_figure_data

        short: List[str] = []
        for path in self.outputs():
            if not path.is_file() or figure_data_is_preview(path):
                return list(self.datasets)
            try:
                rows = {(r.dataset, r.flag, r.split) for r in read_figure_data(path)}
            except (ValueError, OSError):
                return list(self.datasets)
            for dataset in self.datasets:
                pairs = sum(
                    1 for d, f, s in rows if d == dataset and not f and (d, True, s) in rows
                )
                if pairs < self.splits and dataset not in short:
                    short.append(dataset)
        return short

    def complete(self) -> bool:
        """Every data file exists, is not a preview and holds `splits` paired splits for every
        dataset."""
        return not self.short_datasets()

    def command(self) -> str:
        """evaluate.py's command line; options at evaluate.py's (the paper's) defaults are left
        out."""
        from dgp_snr.protocol import evaluate_command

        cmd = evaluate_command(
            self.target, self.results_path, self.num_samples, self.repeats, self.iterations
        )
        default_datasets, default_splits, _ = _target_defaults(self.target)
        if tuple(self.datasets) != tuple(default_datasets):
            cmd += f" --datasets {','.join(self.datasets)}"
        if self.splits != default_splits:
            cmd += f" --splits {self.splits}"
        if self.target == "table_1" and self.elbo_repeats != ELBO_REPEATS:
            cmd += f" --elbo_repeats {self.elbo_repeats}"
        return cmd


@dataclass
class TargetSpec:
    """What a target needs: its training runs, sampling jobs and evaluation (then its plot)."""

    name: str
    runs: List[RunConfig] = field(default_factory=list)
    samples: List[SampleJob] = field(default_factory=list)
    evaluation: Optional[EvalJob] = None

    def add_run(self, config: RunConfig) -> RunConfig:
        if all(c.run_name != config.run_name for c in self.runs):
            self.runs.append(config)
        return config

    def pending_commands(self) -> List[str]:
        """The commands that make the target's missing inputs, in order: runs, dumps, data.
        SNR targets need a checkpoint of each run (dumps use the latest); evaluation targets
        need finished runs, unless their data files are already complete."""
        if self.evaluation is not None:
            short = self.evaluation.short_datasets()
            if not short:
                return []
            iterations = self.evaluation.iterations
            train = [
                c
                for c in self.runs
                if c.dataset in short and run_state(c, iterations)[0] != "finished"
            ]
            return [train_command(c) for c in train] + [self.evaluation.command()]
        # Only the Ks with a dump missing (sample_gradients skips existing dumps anyway).
        pending = [
            replace(s, ks=tuple(sorted({k for k, _ in s.missing()})))
            for s in self.samples
            if s.missing()
        ]
        needed = {s.config.run_name for s in pending}
        if not self.samples:  # figure 5 reads the checkpoints themselves
            needed = {c.run_name for c in self.runs}
        train = [
            c
            for c in self.runs
            if c.run_name in needed and run_state(c, c.training.iterations)[0] == "missing"
        ]
        return [train_command(c) for c in train] + [s.command() for s in pending]


def _snr_jobs(
    spec: TargetSpec,
    config: RunConfig,
    ks: Sequence[int],
    batch_size: int,
    num_datapoints: int,
    aggregates: bool,
    gradient_samples: int,
    estimators: Sequence[str] = ESTIMATORS,
) -> None:
    spec.add_run(config)
    for est in estimators:
        spec.samples.append(
            SampleJob(
                config,
                est,
                tuple(sorted(ks)),
                batch_size,
                num_datapoints if batch_size == 1 else 1,
                aggregates,
                gradient_samples,
            )
        )


Settings = Optional[Mapping[str, Any]]


def figure_1(
    results_path: os.PathLike = "results",
    ks: Sequence[int] = FIGURE_1_KS,
    num_datapoints: int = NUM_DATAPOINTS,
    iterations: int = PAPER_ITERATIONS,
    depth: int = 1,
    settings: Settings = None,
    gradient_samples: int = GRADIENT_SAMPLES,
    aggregates: bool = True,
) -> TargetSpec:
    """SNR vs K on demo_normalized (depth 1, K = 50 training), batch size 1, REG and DReG."""
    spec = TargetSpec("figure_1")
    config = paper_config(
        "demo_normalized",
        0,
        depth,
        results_path=results_path,
        iterations=iterations,
        **dict(settings or {}),
    )
    _snr_jobs(spec, config, ks, 1, num_datapoints, aggregates, gradient_samples)
    return spec


def figure_2(
    results_path: os.PathLike = "results",
    ks: Sequence[int] = FIGURE_2_KS,
    iterations: int = PAPER_ITERATIONS,
    depth: int = 2,
    settings: Settings = None,
    gradient_samples: int = GRADIENT_SAMPLES,
) -> TargetSpec:
    """Raw gradient samples at data point 0 of demo_normalized, depth 2, REG and DReG."""
    spec = TargetSpec("figure_2")
    config = paper_config(
        "demo_normalized",
        0,
        depth,
        results_path=results_path,
        iterations=iterations,
        **dict(settings or {}),
    )
    _snr_jobs(spec, config, ks, 1, 1, False, gradient_samples)
    return spec


def figure_3(
    results_path: os.PathLike = "results",
    datasets: Sequence[str] = FIGURE_3_DATASETS,
    depths: Sequence[int] = FIGURE_3_DEPTHS,
    ks: Sequence[int] = FIGURE_3_KS,
    num_datapoints: int = NUM_DATAPOINTS,
    iterations: int = PAPER_ITERATIONS,
    settings: Settings = None,
    gradient_samples: int = GRADIENT_SAMPLES,
    aggregates: bool = True,
) -> TargetSpec:
    """Mean SNR at K = 1, 10, 100, 1000 for depths 1-4 of seven datasets, REG and DReG."""
    spec = TargetSpec("figure_3")
    for dataset in datasets:
        for depth in depths:
            config = paper_config(
                dataset,
                0,
                depth,
                results_path=results_path,
                iterations=iterations,
                **dict(settings or {}),
            )
            _snr_jobs(spec, config, ks, 1, num_datapoints, aggregates, gradient_samples)
    return spec


def _evaluation_target(
    name: str,
    results_path: os.PathLike,
    datasets: Sequence[str],
    splits: Splits,
    iterations: int,
    settings: Settings,
    test_samples: int,
    test_repeats: int,
    elbo_repeats: int,
) -> TargetSpec:
    from dgp_snr.protocol import pair_runs

    chosen = split_list(splits)
    spec = TargetSpec(name)
    for dataset in datasets:
        runs = [r for s in chosen for r in pair_runs(name, dataset, s, results_path, iterations)]
        for run in sorted(runs, key=lambda r: (r.flag, r.split)):
            if settings:
                run.config = run.config.with_settings(**settings)
            spec.add_run(run.config)
    spec.evaluation = EvalJob(
        name,
        str(results_path),
        tuple(datasets),
        len(chosen),
        iterations,
        test_samples,
        test_repeats,
        elbo_repeats,
    )
    return spec


def figure_4(
    results_path: os.PathLike = "results",
    datasets: Sequence[str] = FIGURE_4_DATASETS,
    splits: Splits = FIGURE_4_SPLITS,
    iterations: int = PAPER_ITERATIONS,
    settings: Settings = None,
    test_samples: int = TEST_SAMPLES,
    test_repeats: int = TEST_REPEATS,
) -> TargetSpec:
    """Test log-likelihood, learned q(w) vs q(w) fixed to the prior, depth 2, 10 splits."""
    return _evaluation_target(
        "figure_4",
        results_path,
        datasets,
        splits,
        iterations,
        settings,
        test_samples,
        test_repeats,
        ELBO_REPEATS,
    )


def table_1(
    results_path: os.PathLike = "results",
    datasets: Sequence[str] = TABLE_1_DATASETS,
    splits: Splits = TABLE_1_SPLITS,
    iterations: int = PAPER_ITERATIONS,
    settings: Settings = None,
    test_samples: int = TEST_SAMPLES,
    test_repeats: int = TEST_REPEATS,
    elbo_repeats: int = ELBO_REPEATS,
) -> TargetSpec:
    """Test log-likelihood and train ELBO, REG vs DReG, depth 2, K = 50, 20 splits."""
    return _evaluation_target(
        "table_1",
        results_path,
        datasets,
        splits,
        iterations,
        settings,
        test_samples,
        test_repeats,
        elbo_repeats,
    )


def figure_5(
    results_path: os.PathLike = "results",
    panels: Sequence[Tuple[str, int, int]] = FIGURE_5_PANELS,
    num_samples: int = TEST_SAMPLES,
    depth: int = 2,
    iterations: int = PAPER_ITERATIONS,
    settings: Settings = None,
) -> TargetSpec:
    """Predictive histograms at one test point, learned vs fixed q(w)."""
    panels = tuple(tuple(p) for p in panels)
    spec = TargetSpec("figure_5")
    for dataset, split, _ in panels:
        for fixq in (False, True):
            spec.add_run(
                paper_config(
                    dataset,
                    split,
                    depth,
                    fixq=fixq,
                    results_path=results_path,
                    iterations=iterations,
                    **dict(settings or {}),
                )
            )
    return spec


def figure_8(
    results_path: os.PathLike = "results",
    datasets: Sequence[str] = FIGURE_8_DATASETS,
    split: int = FIGURE_8_SPLIT,
    K: int = FIGURE_8_K,
    batch_size: int = FIGURE_8_BATCH,
    iterations: int = PAPER_ITERATIONS,
    settings: Settings = None,
    gradient_samples: int = GRADIENT_SAMPLES,
    aggregates: bool = True,
) -> TargetSpec:
    """SNR at K = 50 over a batch of 64, REG vs DReG, split-1 depth-2 runs."""
    spec = TargetSpec("figure_8")
    for dataset in datasets:
        config = paper_config(
            dataset,
            split,
            2,
            results_path=results_path,
            iterations=iterations,
            **dict(settings or {}),
        )
        _snr_jobs(spec, config, [K], batch_size, 1, aggregates, gradient_samples)
    return spec


def figure_9(
    results_path: os.PathLike = "results",
    batch_sizes: Sequence[int] = FIGURE_9_BATCH_SIZES,
    ks: Sequence[int] = FIGURE_9_KS,
    num_datapoints: int = FIGURE_9_DATAPOINTS,
    iterations: int = PAPER_ITERATIONS,
    dataset: str = FIGURE_9_DATASET,
    depth: int = FIGURE_9_DEPTH,
    train_K: int = FIGURE_9_TRAIN_K,
    settings: Settings = None,
    gradient_samples: int = GRADIENT_SAMPLES,
    aggregates: bool = True,
) -> TargetSpec:
    """Appendix SNR vs batch size: REG's SNR vs K for batch sizes 1-512, power, depth 3, K = 30
    training."""
    spec = TargetSpec("figure_9")
    config = paper_config(
        dataset,
        0,
        depth,
        K=train_K,
        results_path=results_path,
        iterations=iterations,
        **dict(settings or {}),
    )
    for bs in batch_sizes:
        _snr_jobs(spec, config, ks, bs, num_datapoints, aggregates, gradient_samples, ("reg",))
    return spec


#: Every paper target by name (figure_9 is the appendix SNR-vs-batch-size study).
TARGETS: Dict[str, Callable[..., TargetSpec]] = {
    "figure_1": figure_1,
    "figure_2": figure_2,
    "figure_3": figure_3,
    "figure_4": figure_4,
    "figure_5": figure_5,
    "figure_8": figure_8,
    "figure_9": figure_9,
    "table_1": table_1,
}


def target_spec(name: str, results_path: os.PathLike = "results", **params: Any) -> TargetSpec:
    """The TargetSpec of a target; raises ValueError naming the known targets."""
    if name not in TARGETS:
        raise ValueError(f"unknown target {name!r}; known: {', '.join(sorted(TARGETS))}")
    return TARGETS[name](results_path, **params)


def runs_of_targets(
    names: Sequence[str],
    results_path: os.PathLike = "results",
    params: Optional[Mapping[str, Mapping[str, Any]]] = None,
) -> List[RunConfig]:
    """The training runs of the targets `names`, each run once (by run name) in the targets'
    order. params[name]: the target's parameters (e.g. a profile's `params(name)`); those its
    definition does not take (a figure's drawing options) are left out."""
    runs: Dict[str, RunConfig] = {}
    for name in names:
        if name not in TARGETS:
            raise ValueError(f"unknown target {name!r}; known: {', '.join(sorted(TARGETS))}")
        accepted = inspect.signature(TARGETS[name]).parameters
        given = dict((params or {}).get(name, {}))
        spec = TARGETS[name](results_path, **{k: v for k, v in given.items() if k in accepted})
        for config in spec.runs:
            runs.setdefault(config.run_name, config)
    return list(runs.values())
