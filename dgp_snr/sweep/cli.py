"""experiments/sweep.py: the paper's targets as one resumable command on Dask.

    python experiments/sweep.py TARGET... [--profile paper|reduced|smoke] [--results_path DIR]
        [--print | --dry-run] [--workers N --threads T] [--scheduler ADDRESS]
        [--cluster slurm|pbs|sge|lsf --job-cores C --job-memory M --walltime W --queue Q
         --account A --gpus G --jobs J] [--retries R] [--observer URL] [--allow-code-changes]

Targets: figure_1, figure_2, figure_3, figure_4, figure_5, figure_8, figure_9 (the appendix
SNR-vs-batch-size runs), table_1, or all. Exit status 0 when every task is done, 1 when any
failed (or could not run), 2 for a usage error. A task is refused (and counts as failed) when
the code changed since the sweep started, unless --allow-code-changes is given; every task's
start and end is recorded with its code in <results_path>/sweep_logs/tasks.jsonl.
"""

import argparse
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Callable, List, Optional, Tuple

from dgp_snr.precision import PRECISIONS
from dgp_snr.protocol.profiles import PROFILE_NAMES, PROFILES, Overrides, Profile
from dgp_snr.protocol.targets import TARGETS
from dgp_snr.scripting import add_renamed_argument
from dgp_snr.source import CodeState, code_state
from dgp_snr.sweep.tasks import DONE, RESUME, Task, build_tasks

LOGS_DIR = "sweep_logs"


# ------------------------------------------------------------------------------ profile options
def parse_splits(text: str) -> Tuple[int, ...]:
    """'0-4' -> 0..4; '0,2,5' -> those; '5' -> 0..4 (a count, as evaluate.py's --splits)."""
    try:
        if "-" in text:
            lo, hi = (int(t) for t in text.split("-", 1))
            splits = tuple(range(lo, hi + 1))
        elif "," in text:
            splits = tuple(int(t) for t in text.split(",") if t.strip())
        else:
            splits = tuple(range(int(text)))
    except ValueError:
        raise argparse.ArgumentTypeError(f"splits: expected e.g. 0-4, 0,2,5 or 5; got {text!r}")
    if not splits or min(splits) < 0:
        raise argparse.ArgumentTypeError(f"splits: no valid split in {text!r}")
    return splits


def _names(text: str) -> Tuple[str, ...]:
    return tuple(t.strip() for t in text.split(",") if t.strip())


def add_profile_arguments(parser: argparse.ArgumentParser, default: str = "paper") -> None:
    """--profile and the overrides (Overrides), shared by sweep.py, plot.py and report.py."""
    group = parser.add_argument_group("profile")
    group.add_argument("--profile", choices=PROFILE_NAMES, default=default)
    group.add_argument("--iterations", type=int, default=None, help="training iterations")
    group.add_argument(
        "--splits", type=parse_splits, default=None, help="Table 1 / Figure 4 splits: 0-4, 0,2,5"
    )
    group.add_argument(
        "--datasets", type=_names, default=None, help="comma list (targets with datasets)"
    )
    group.add_argument("--M", type=int, default=None, help="inducing points per layer")
    add_renamed_argument(
        group, "--num_estimates", "--num_samples", type=int, default=None,
        help="gradient estimates per dump (R)",
    )  # fmt: skip
    group.add_argument("--checkpoint_freq", type=int, default=None)
    group.add_argument(
        "--precision",
        choices=PRECISIONS,
        default=None,
        help="the runs' precision (default float64, the paper's; mixed: see dgp_snr.precision)",
    )


def profile_from_args(args: argparse.Namespace) -> Tuple[Profile, Overrides]:
    overrides = Overrides(
        args.iterations,
        args.splits,
        args.datasets,
        args.M,
        args.num_estimates,
        args.checkpoint_freq,
        args.precision,
    )
    return PROFILES[args.profile].with_overrides(overrides), overrides


# ------------------------------------------------------------------------------ the sweep
def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="sweep.py",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("targets", nargs="+", choices=sorted(TARGETS) + ["all"], metavar="TARGET")
    add_profile_arguments(p)
    p.add_argument("--results_path", default=None, help="default: results/<profile>")
    p.add_argument("--figures_dir", default=None, help="default: <results_path>/figures")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--print", action="store_true", help="print the commands, run nothing")
    mode.add_argument("--dry-run", action="store_true", help="list the tasks and their state")
    p.add_argument("--observer", default=None, help="sacred SQL observer URL, e.g. sqlite:///r.db")
    p.add_argument("--retries", type=int, default=2, help="tries after a task's first failure")
    p.add_argument(
        "--allow-code-changes",
        action="store_true",
        help="start tasks even after the code changed since the sweep started (default: refuse)",
    )
    g = p.add_argument_group("engine")
    g.add_argument("--workers", type=int, default=None, help="local workers (cores // threads)")
    g.add_argument("--threads", type=int, default=1, help="TensorFlow threads per task")
    g.add_argument("--cores", type=int, default=None, help="local cores (default: all)")
    g.add_argument("--gpus", type=int, default=0, help="GPUs (per job on a cluster)")
    g.add_argument("--scheduler", default=None, help="address of a running Dask scheduler")
    g.add_argument("--cluster", choices=["slurm", "pbs", "sge", "lsf"], default=None)
    g.add_argument("--jobs", type=int, default=1, help="batch jobs to start")
    g.add_argument("--job-cores", type=int, default=None, help="cores per batch job")
    g.add_argument("--job-memory", default="8GB")
    g.add_argument(
        "--walltime",
        default="24:00:00",
        help="per batch job; workers retire (trainings checkpoint) before it, new jobs resume",
    )
    g.add_argument("--queue", default=None, help="queue / partition")
    g.add_argument("--account", default=None)
    p.add_argument("--no-progress", action="store_true")
    return p


def resources_from_args(args: argparse.Namespace):
    from dgp_snr.sweep.engine import Resources

    return Resources(
        workers=args.workers,
        threads=args.threads,
        cores=args.job_cores if args.cluster else args.cores,
        memory=args.job_memory,
        walltime=args.walltime,
        queue=args.queue,
        account=args.account,
        gpus=args.gpus,
        jobs=args.jobs,
    )


def _costs(tasks: List[Task], states: dict, targets: List[str]) -> List[str]:
    """Per target, the estimated cost of its tasks still to do (a shared task counts once, in
    the first target that needs it)."""
    counted, lines = set(), []
    for name in targets:
        mine = [t for t in tasks if name in t.targets and t.key not in counted]
        counted.update(t.key for t in mine)
        todo = [t for t in mine if states[t.key] != DONE]
        hours = sum(t.cost_s for t in todo) / 3600
        lines.append(f"  {name:9} {len(todo):4} task(s) to do, about {hours:.2f} core-hours")
    return lines


def main(argv: Optional[List[str]] = None) -> int:
    args = parser().parse_args(argv)
    started = time.time()
    code = code_state()  # what every task must still run (engine.CodeGuard)
    targets = sorted(TARGETS) if "all" in args.targets else list(dict.fromkeys(args.targets))
    profile, overrides = profile_from_args(args)
    results_path = Path(args.results_path or Path("results") / profile.name).absolute()
    tasks = build_tasks(
        targets,
        profile,
        results_path,
        args.figures_dir,
        overrides,
        observer=args.observer,
        gpu_training=args.gpus > 0,
    )
    if args.print:
        for task in tasks:
            print(task.command)
        return 0
    states = {t.key: t.state() for t in tasks}
    if args.dry_run:
        for task in tasks:
            print(f"{states[task.key]:10} {task.key}")
        return 0
    todo = [t for t in tasks if states[t.key] != DONE]
    if not todo:
        print(
            f"sweep: nothing to do: all {len(tasks)} task(s) of {', '.join(targets)} "
            f"({profile.name}) are complete under {results_path} "
            f"({time.time() - started:.1f} s)"
        )
        return 0
    print(f"sweep: profile {profile.name}: {profile.description}")
    for line in profile.reductions:
        print(f"  reduction: {line}")
    print("sweep: estimated cost (one TensorFlow thread per task):")
    for line in _costs(tasks, states, targets):
        print(line)
    resumed = sum(1 for t in todo if states[t.key] == RESUME)
    print(f"sweep: {len(todo)} of {len(tasks)} task(s) to do ({resumed} to resume)")
    print(f"sweep: code {code.describe()}", flush=True)
    return _run(args, tasks, states, results_path, code)


def _run(
    args: argparse.Namespace,
    tasks: List[Task],
    states: dict,
    results_path: Path,
    code: CodeState,
) -> int:
    from distributed import Client

    from dgp_snr.sweep import engine

    engine.configure(args.retries)
    resources = resources_from_args(args)
    cluster = None
    if args.scheduler:
        client = Client(args.scheduler)
    else:
        if args.cluster:
            cluster = engine.jobqueue_cluster(args.cluster, resources)
            cluster.scale(jobs=args.jobs)
        else:
            cluster = engine.local_cluster(resources)
        client = Client(cluster)
    keeper = threading.Event()
    if args.cluster:
        from dgp_snr.sweep.walltime import SaveCheckpointsOnClose

        client.register_plugin(SaveCheckpointsOnClose())
        _keep_jobs(cluster, args.jobs, keeper)
    stop, restore_signals = _stop_on_signals()
    try:
        if "dashboard" in client.scheduler_info().get("services", {}):
            print(f"sweep: Dask dashboard at {client.dashboard_link}")
        workers = len(client.scheduler_info().get("workers", {}))
        print(f"sweep: Dask scheduler {client.scheduler.address}, {workers} worker(s)", flush=True)
        summary = engine.run_tasks(
            client,
            tasks,
            states,
            results_path / LOGS_DIR,
            threads=args.threads,
            retries=args.retries,
            gpu_from_worker_name=bool(args.gpus and not args.cluster and not args.scheduler),
            progress=not args.no_progress,
            stop=stop,
            guard=engine.CodeGuard(code, allow_changes=args.allow_code_changes),
        )
    finally:
        keeper.set()
        restore_signals()
        client.close()
        if cluster is not None:
            cluster.close()
    print("sweep: summary")
    print(summary.table(), flush=True)
    if summary.interrupted:
        print("sweep: interrupted; the same command resumes from the saved checkpoints")
        return 130
    return 1 if summary.failed else 0


def _keep_jobs(cluster: object, jobs: int, done: threading.Event, every_s: float = 20.0) -> None:
    """Asks for `jobs` batch jobs every `every_s` seconds until `done` is set: a job that ended
    (its walltime, scancel, a node failure) is replaced, and its interrupted tasks resume in
    the new one. dask-jobqueue's scale() alone starts the jobs once."""

    def keep() -> None:
        while not done.wait(every_s):
            # scale() on the cluster's event loop: it changes state the loop reads
            cluster.loop.add_callback(cluster.scale, jobs=jobs)  # type: ignore[attr-defined]

    threading.Thread(target=keep, name="sweep-keep-jobs", daemon=True).start()


def _stop_on_signals() -> Tuple[threading.Event, Callable[[], None]]:
    """The first Ctrl-C (or SIGTERM) asks the sweep to stop cleanly (running trainings save a
    checkpoint); a second Ctrl-C stops at once. Returns the stop event and a function that
    restores the previous handlers. Outside the main thread (sweep.main called from a thread)
    no handler can be set: the event is never set by a signal."""
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        return stop, lambda: None

    def handle(signum: int, frame: object) -> None:
        if stop.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        stop.set()
        msg = "\nsweep: stopping: running commands save their checkpoints (Ctrl-C again: now)\n"
        os.write(sys.stderr.fileno(), msg.encode())

    old = {signum: signal.signal(signum, handle) for signum in (signal.SIGINT, signal.SIGTERM)}

    def restore() -> None:
        for signum, handler in old.items():
            signal.signal(signum, handler)

    return stop, restore
