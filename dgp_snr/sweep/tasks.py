"""The sweep's tasks: every training run, merged gradient-sampling job, evaluation and plot of a
set of targets under a profile, read from the target definitions (dgp_snr.protocol.targets);
each task's state on disk (done / to resume / to run) and its estimated cost.

A task is done when its outputs record what the task would make now, not when they exist: a
training run by its checkpoint files, a sampling job when every dump's record matches the
request at the run's newest checkpoint (SampleJob.problems), a plot when the inputs recorded
beside the figure are the current ones (protocol.jobs.figure_record_path). The engine reads a
task's state when the task is about to start."""

import os
import re
import shlex
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

from dgp_snr.protocol.commands import train_command
from dgp_snr.protocol.constants import PAPER_K, PAPER_MINIBATCH
from dgp_snr.protocol.jobs import figure_is_current
from dgp_snr.protocol.profiles import Overrides, Profile
from dgp_snr.protocol.targets import EvalJob, SampleJob, TargetSpec, target_spec
from dgp_snr.runs import MISSING, RunConfig, run_state

DONE, RESUME, RUN = "done", "to resume", "to run"

#: Seconds per training iteration at K = 50, minibatch 64, M = 128, one TensorFlow thread, by
#: depth. Depth 2 measured on this project's 2-core machine (power: 240 ms under a load of
#: about 4.5, i.e. about 110 ms on a free core); other depths scaled by the number of GP layers.
SECONDS_PER_ITERATION = {1: 0.06, 2: 0.11, 3: 0.16, 4: 0.21}
#: Seconds per gradient estimate and K at batch size 1 (scaled by the batch size's square root);
#: per test-log-likelihood sample and test point. Rough estimates, not measurements.
SECONDS_PER_ESTIMATE_K = 2e-4
SECONDS_PER_TEST_SAMPLE_POINT = 2e-6
#: Start-up of each task's process (Python, TensorFlow, the model, tracing), measured.
STARTUP_SECONDS = 25.0


@dataclass
class Task:
    """One command of the sweep. `argv` follows the interpreter (script first, relative to the
    repository root); `deps` are the keys of the tasks it waits for; `state()` reads the disk."""

    key: str
    kind: str  # train, sample, evaluate, plot
    argv: List[str]
    state: Callable[[], str]
    deps: List[str] = field(default_factory=list)
    targets: List[str] = field(default_factory=list)
    cost_s: float = 0.0
    gpu: bool = False

    @property
    def command(self) -> str:
        return "python " + " ".join(shlex.quote(a) for a in self.argv)

    def log_name(self) -> str:
        return re.sub(r"[^A-Za-z0-9_.,=-]+", "_", self.key) + ".log"


def _argv(command: str) -> List[str]:
    """A protocol command line ('python experiments/...') as the interpreter's arguments."""
    parts = shlex.split(command)
    assert parts[0] == "python", command
    return parts[1:]


def _depth(config: RunConfig) -> int:
    return 1 + config.model.configuration.count("_G")


def _train_cost(config: RunConfig) -> float:
    rate = SECONDS_PER_ITERATION.get(_depth(config), 0.06 * _depth(config))
    model, training = config.model, config.training
    rate *= max(model.M / 128, 0.05) * max(model.num_importance_samples / PAPER_K, 0.2)
    rate *= max((training.minibatch_size or PAPER_MINIBATCH) / PAPER_MINIBATCH, 1.0)
    return STARTUP_SECONDS + rate * training.iterations


def train_state(config: RunConfig) -> str:
    """done: train.py has nothing left to do (trained to the end, results.json of the final
    checkpoint); to resume: a checkpoint; to run: none. runs.run_state's answer, as train.py
    reads it (from the checkpoint files, not the `checkpoint` state file); no checkpoint is
    opened."""
    state = run_state(config)
    if state.complete:
        return DONE
    return RUN if state.state == MISSING else RESUME


def _train_task(config: RunConfig, observer: Optional[str]) -> Task:
    argv = _argv(train_command(config))
    if observer:
        argv.insert(1, f"--sql={observer}")  # sacred's SQL observer, beside the file observer
    return Task(
        f"train/{config.run_name}",
        "train",
        argv,
        lambda: train_state(config),
        cost_s=_train_cost(config),
    )


def merge_sample_jobs(jobs: Sequence[SampleJob]) -> List[SampleJob]:
    """Jobs of the same run, estimator, batch size, form and number of estimates become one
    command (every K, the most data points), so each checkpoint is loaded once."""
    merged: Dict[tuple, SampleJob] = {}
    for job in jobs:
        key = job.merge_key()
        if key in merged:
            old = merged[key]
            ks = tuple(sorted(set(old.ks) | set(job.ks)))
            merged[key] = replace(
                old, ks=ks, num_datapoints=max(old.num_datapoints, job.num_datapoints)
            )
        else:
            merged[key] = job
    return list(merged.values())


def _sample_task(job: SampleJob) -> Task:
    form = "agg" if job.aggregates else "raw"
    key = (
        f"sample/{job.config.run_name}/{job.estimator}_bs{job.batch_size}_{form}"
        f"_n{job.num_estimates}"
    )
    cost = STARTUP_SECONDS + SECONDS_PER_ESTIMATE_K * job.num_estimates * sum(job.ks) * (
        len(job.datapoints()) * job.batch_size**0.5
    ) * _depth(job.config)
    return Task(
        key,
        "sample",
        # --rebuild: a dump recorded with other settings (or corrupt) is sampled again.
        _argv(job.command()) + ["--no_progress", "--rebuild"],
        # Until its run is trained to the end, its dumps (asked at the final step) are not.
        lambda: DONE if train_state(job.config) == DONE and not job.problems() else RUN,
        deps=[f"train/{job.config.run_name}"],
        cost_s=cost,
    )


def _evaluate_task(spec: TargetSpec, job: EvalJob) -> Task:
    points = 1000  # test points of a typical UCI split (the cost estimate's scale)
    runs = len(spec.runs)
    cost = STARTUP_SECONDS + runs * job.num_predictive_samples * job.repeats * points * (
        SECONDS_PER_TEST_SAMPLE_POINT
    )
    return Task(
        f"evaluate/{job.target}",
        "evaluate",
        _argv(job.command()),
        lambda: DONE if job.complete() else RUN,
        deps=[f"train/{c.run_name}" for c in spec.runs],
        cost_s=cost,
    )


def plot_outputs(name: str, figures_dir: os.PathLike) -> List[Path]:
    figures_dir = Path(figures_dir)
    if name == "table_1":
        return [figures_dir / "table_1.txt"]
    return [figures_dir / f"{name}.pdf", figures_dir / f"{name}.png"]


def _plot_task(
    spec: TargetSpec,
    profile: Profile,
    overrides: Overrides,
    results_path: Path,
    figures_dir: Path,
    deps: List[str],
) -> Task:
    name = spec.name
    argv = [
        "experiments/plot.py",
        name,
        "--results_path",
        str(results_path),
        "--figures_dir",
        str(figures_dir),
        "--profile",
        profile.name,
        *overrides.argv(),
    ]

    def state() -> str:
        """done: the figure exists, the target's runs are trained to the end, its inputs are
        what it asks now, and the inputs recorded beside the figure (paths and contents) are
        those."""
        if not all(p.is_file() for p in plot_outputs(name, figures_dir)):
            return RUN
        if any(train_state(c) != DONE for c in spec.runs) or not spec.inputs_ready():
            return RUN
        return DONE if figure_is_current(figures_dir, name, spec) else RUN

    return Task(f"plot/{name}", "plot", argv, state, deps=deps, cost_s=STARTUP_SECONDS)


def build_tasks(
    targets: Sequence[str],
    profile: Profile,
    results_path: os.PathLike,
    figures_dir: Optional[os.PathLike] = None,
    overrides: Overrides = Overrides(),
    observer: Optional[str] = None,
    gpu_training: bool = False,
) -> List[Task]:
    """The tasks of `targets` in dependency order: training runs (shared between targets),
    merged sampling jobs, evaluations, then one plot per target. `profile` should already
    carry `overrides` (which the plot commands repeat)."""
    results_path = Path(results_path).absolute()
    figures_dir = Path(figures_dir).absolute() if figures_dir else results_path / "figures"
    specs = [target_spec(name, results_path, **profile.params(name)) for name in targets]
    tasks: Dict[str, Task] = {}

    def add(task: Task, target: str) -> Task:
        task = tasks.setdefault(task.key, task)
        if target not in task.targets:
            task.targets.append(target)
        return task

    for spec in specs:
        for config in spec.runs:
            add(_train_task(config, observer), spec.name).gpu = gpu_training
    merged = merge_sample_jobs([job for spec in specs for job in spec.samples])
    sample_tasks = {id(job): _sample_task(job) for job in merged}
    for spec in specs:
        own = {job.merge_key() for job in spec.samples}
        for job in merged:
            if job.merge_key() in own:
                add(sample_tasks[id(job)], spec.name)
    for spec in specs:
        deps = [f"train/{c.run_name}" for c in spec.runs]
        deps += [
            _sample_task(job).key
            for job in merged
            if job.merge_key() in {j.merge_key() for j in spec.samples}
        ]
        if spec.evaluation is not None:
            deps.append(add(_evaluate_task(spec, spec.evaluation), spec.name).key)
        add(_plot_task(spec, profile, overrides, results_path, figures_dir, deps), spec.name)
    order = {"train": 0, "sample": 1, "evaluate": 2, "plot": 3}
    return sorted(tasks.values(), key=lambda t: order[t.kind])
