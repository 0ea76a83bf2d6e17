"""Every paper target defined once: its training runs, gradient-sampling jobs, evaluation and plot.

`TARGETS[name](results_path, **params)` returns the target's TargetSpec; the parameters (K grids,
datasets, splits, data points, `num_estimates` R per dump, `num_predictive_samples` S per test
log-likelihood, iterations, extra run settings) default to the paper's and are what a profile
(dgp_snr.protocol.profiles) changes. experiments/sweep.py runs a spec's jobs, plotting's
missing-input report prints the commands of its jobs not yet done, and evaluate.py reads its
evaluation settings from it. The job and spec classes live in dgp_snr.protocol.jobs (exported
here too).

Each definition's signature is the one list of the target's parameters: they are keyword-only
(a reordering cannot rebind an argument) and the spec records them by name, defaults applied
(TargetSpec.params), which is where the target's figure (dgp_snr.plotting) reads them from.
"""

import functools
import inspect
import os
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from dgp_snr.protocol.constants import (
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
    paper_config,
)
from dgp_snr.protocol.jobs import EvalJob as EvalJob
from dgp_snr.protocol.jobs import SampleJob as SampleJob
from dgp_snr.protocol.jobs import Splits as Splits
from dgp_snr.protocol.jobs import TargetSpec as TargetSpec
from dgp_snr.protocol.jobs import split_list as split_list
from dgp_snr.runs import RunConfig

ESTIMATORS = ("reg", "dreg")


def _definition(define: Callable[..., TargetSpec]) -> Callable[..., TargetSpec]:
    """A target definition that records the parameters it was called with (every one by name,
    defaults applied; results_path left out) in its spec's `params`."""
    signature = inspect.signature(define)

    @functools.wraps(define)  # keeps the signature (inspect follows __wrapped__)
    def target(*args: Any, **kwargs: Any) -> TargetSpec:
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        spec = define(*args, **kwargs)
        spec.params = {k: v for k, v in bound.arguments.items() if k != "results_path"}
        return spec

    return target


def _snr_jobs(
    spec: TargetSpec,
    config: RunConfig,
    *,
    ks: Sequence[int],
    batch_size: int,
    num_datapoints: int,
    aggregates: bool,
    num_estimates: int,
    estimators: Sequence[str] = ESTIMATORS,
) -> None:
    spec.add_run(config)
    for est in estimators:
        spec.samples.append(
            SampleJob(
                config,
                est,
                ks=tuple(sorted(ks)),
                batch_size=batch_size,
                num_datapoints=num_datapoints if batch_size == 1 else 1,
                aggregates=aggregates,
                num_estimates=num_estimates,
            )
        )


Settings = Optional[Mapping[str, Any]]


@_definition
def figure_1(
    results_path: os.PathLike = "results",
    *,
    ks: Sequence[int] = FIGURE_1_KS,
    num_datapoints: int = NUM_DATAPOINTS,
    iterations: int = PAPER_ITERATIONS,
    depth: int = 1,
    settings: Settings = None,
    num_estimates: int = GRADIENT_SAMPLES,
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
    _snr_jobs(
        spec,
        config,
        ks=ks,
        batch_size=1,
        num_datapoints=num_datapoints,
        aggregates=aggregates,
        num_estimates=num_estimates,
    )
    return spec


@_definition
def figure_2(
    results_path: os.PathLike = "results",
    *,
    ks: Sequence[int] = FIGURE_2_KS,
    iterations: int = PAPER_ITERATIONS,
    depth: int = 2,
    settings: Settings = None,
    num_estimates: int = GRADIENT_SAMPLES,
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
    _snr_jobs(
        spec,
        config,
        ks=ks,
        batch_size=1,
        num_datapoints=1,
        aggregates=False,
        num_estimates=num_estimates,
    )
    return spec


@_definition
def figure_3(
    results_path: os.PathLike = "results",
    *,
    datasets: Sequence[str] = FIGURE_3_DATASETS,
    depths: Sequence[int] = FIGURE_3_DEPTHS,
    ks: Sequence[int] = FIGURE_3_KS,
    num_datapoints: int = NUM_DATAPOINTS,
    iterations: int = PAPER_ITERATIONS,
    settings: Settings = None,
    num_estimates: int = GRADIENT_SAMPLES,
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
            _snr_jobs(
                spec,
                config,
                ks=ks,
                batch_size=1,
                num_datapoints=num_datapoints,
                aggregates=aggregates,
                num_estimates=num_estimates,
            )
    return spec


def _evaluation_target(
    name: str,
    results_path: os.PathLike,
    *,
    datasets: Sequence[str],
    splits: Splits,
    iterations: int,
    settings: Settings,
    num_predictive_samples: int,
    test_repeats: int,
    elbo_repeats: int,
) -> TargetSpec:
    """What Figure 4 and Table 1 share: per dataset and split the target's pair of runs
    (protocol.pair_runs: learned / fixed q(w), or REG / DReG), and one evaluate.py job over
    them (EvalJob; the figure reads its data files)."""
    from dgp_snr.protocol.splits import pair_runs

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
        datasets=tuple(datasets),
        splits=len(chosen),
        iterations=iterations,
        num_predictive_samples=num_predictive_samples,
        repeats=test_repeats,
        elbo_repeats=elbo_repeats,
    )
    return spec


@_definition
def figure_4(
    results_path: os.PathLike = "results",
    *,
    datasets: Sequence[str] = FIGURE_4_DATASETS,
    splits: Splits = FIGURE_4_SPLITS,
    iterations: int = PAPER_ITERATIONS,
    settings: Settings = None,
    num_predictive_samples: int = TEST_SAMPLES,
    test_repeats: int = TEST_REPEATS,
) -> TargetSpec:
    """Test log-likelihood, learned q(w) vs q(w) fixed to the prior, depth 2, 10 splits."""
    return _evaluation_target(
        "figure_4",
        results_path,
        datasets=datasets,
        splits=splits,
        iterations=iterations,
        settings=settings,
        num_predictive_samples=num_predictive_samples,
        test_repeats=test_repeats,
        elbo_repeats=ELBO_REPEATS,  # no ELBO in Figure 4
    )


@_definition
def table_1(
    results_path: os.PathLike = "results",
    *,
    datasets: Sequence[str] = TABLE_1_DATASETS,
    splits: Splits = TABLE_1_SPLITS,
    iterations: int = PAPER_ITERATIONS,
    settings: Settings = None,
    num_predictive_samples: int = TEST_SAMPLES,
    test_repeats: int = TEST_REPEATS,
    elbo_repeats: int = ELBO_REPEATS,
) -> TargetSpec:
    """Test log-likelihood and train ELBO, REG vs DReG, depth 2, K = 50, 20 splits."""
    return _evaluation_target(
        "table_1",
        results_path,
        datasets=datasets,
        splits=splits,
        iterations=iterations,
        settings=settings,
        num_predictive_samples=num_predictive_samples,
        test_repeats=test_repeats,
        elbo_repeats=elbo_repeats,
    )


@_definition
def figure_5(
    results_path: os.PathLike = "results",
    *,
    panels: Sequence[Tuple[str, int, int]] = FIGURE_5_PANELS,
    num_predictive_samples: int = TEST_SAMPLES,
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


@_definition
def figure_8(
    results_path: os.PathLike = "results",
    *,
    datasets: Sequence[str] = FIGURE_8_DATASETS,
    split: int = FIGURE_8_SPLIT,
    sampling_K: int = FIGURE_8_K,
    batch_size: int = FIGURE_8_BATCH,
    iterations: int = PAPER_ITERATIONS,
    settings: Settings = None,
    num_estimates: int = GRADIENT_SAMPLES,
    aggregates: bool = True,
) -> TargetSpec:
    """SNR at K = 50 over a batch of 64, REG vs DReG, split-1 depth-2 runs. `sampling_K` is the
    K the gradients are sampled at (the runs are trained at the paper's K = 50 either way)."""
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
        _snr_jobs(
            spec,
            config,
            ks=[sampling_K],
            batch_size=batch_size,
            num_datapoints=1,
            aggregates=aggregates,
            num_estimates=num_estimates,
        )
    return spec


@_definition
def figure_9(
    results_path: os.PathLike = "results",
    *,
    batch_sizes: Sequence[int] = FIGURE_9_BATCH_SIZES,
    ks: Sequence[int] = FIGURE_9_KS,
    num_datapoints: int = FIGURE_9_DATAPOINTS,
    iterations: int = PAPER_ITERATIONS,
    dataset: str = FIGURE_9_DATASET,
    depth: int = FIGURE_9_DEPTH,
    train_K: int = FIGURE_9_TRAIN_K,
    settings: Settings = None,
    num_estimates: int = GRADIENT_SAMPLES,
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
        _snr_jobs(
            spec,
            config,
            ks=ks,
            batch_size=bs,
            num_datapoints=num_datapoints,
            aggregates=aggregates,
            num_estimates=num_estimates,
            estimators=("reg",),
        )
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
