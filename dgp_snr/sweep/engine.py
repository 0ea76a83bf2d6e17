"""Runs the sweep's tasks on Dask: a LocalCluster by default, a running scheduler by address, or
a batch-scheduler cluster from dask-jobqueue; dependencies, retries, progress and the summary."""

import json
import os
import signal
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, TextIO, Tuple

import dask
import psutil
from distributed import Client, LocalCluster, wait
from tqdm.auto import tqdm

from dgp_snr.source import CodeState, code_state
from dgp_snr.sweep.runner import TaskFailed, run_task
from dgp_snr.sweep.tasks import DONE, Task
from dgp_snr.sweep.walltime import lifetime_args

JOBQUEUE = ("slurm", "pbs", "sge", "lsf")
#: One JSON line per task start and end in the sweep's log folder: the code each task ran.
TASK_RECORDS_FILE = "tasks.jsonl"
#: The flag that lets a sweep start tasks from code that changed since it started.
ALLOW_CODE_CHANGES_FLAG = "--allow-code-changes"
#: How each batch scheduler asks for GPUs in a job script.
_GPU_DIRECTIVES = {
    "slurm": "--gres=gpu:{n}",
    "pbs": "-l ngpus={n}",
    "sge": "-l gpu={n}",
    "lsf": '-gpu "num={n}"',
}


def repository_root() -> Path:
    """The checkout whose code is running (its experiments/ scripts are the task commands)."""
    import dgp_snr

    return Path(dgp_snr.__file__).resolve().parents[1]


@dataclass
class Resources:
    """What the cluster gets: local workers and threads, or a batch job's resources."""

    workers: Optional[int] = None  # local: default cores // threads
    threads: int = 1  # TensorFlow threads per task
    cores: Optional[int] = None  # local: default os.cpu_count(); jobqueue: cores per job
    memory: str = "8GB"
    walltime: str = "24:00:00"
    queue: Optional[str] = None
    account: Optional[str] = None
    gpus: int = 0  # local: GPUs of this machine; jobqueue: GPUs per job
    jobs: int = 1
    retire_before_walltime: bool = True  # jobqueue: workers retire, trainings checkpoint


def local_cluster(resources: Resources) -> LocalCluster:
    """Workers x threads per task <= cores; with GPUs, one worker (and one training) per GPU."""
    cores = resources.cores or os.cpu_count() or 1
    workers = resources.workers or max(1, cores // max(1, resources.threads))
    if resources.gpus:
        workers = resources.workers or resources.gpus
    try:
        import bokeh  # noqa: F401  (the dashboard needs it)

        dashboard: Optional[str] = ":0"
    except ImportError:
        dashboard = None
    return LocalCluster(
        n_workers=workers,
        threads_per_worker=1,  # one task per worker: TensorFlow threads are the task's own
        processes=True,
        dashboard_address=dashboard,
        resources={"GPU": 1} if resources.gpus else None,
    )


def jobqueue_cluster(kind: str, resources: Resources):
    """A dask-jobqueue cluster (not started: call .scale()); one worker process per job, with
    GPU=<gpus> as a Dask resource so that each GPU runs one training."""
    import dask_jobqueue

    classes = {
        "slurm": dask_jobqueue.SLURMCluster,
        "pbs": dask_jobqueue.PBSCluster,
        "sge": dask_jobqueue.SGECluster,
        "lsf": dask_jobqueue.LSFCluster,
    }
    if kind not in classes:
        raise ValueError(f"unknown cluster {kind!r}; known: {', '.join(JOBQUEUE)}")
    cores = resources.cores or 1
    kwargs = dict(
        cores=cores,
        processes=max(1, resources.gpus) if resources.gpus else max(1, cores // resources.threads),
        memory=resources.memory,
        walltime=resources.walltime,
        queue=resources.queue,
        account=resources.account,
        python=sys.executable,
        job_extra_directives=[],
        worker_extra_args=[],
    )
    if resources.retire_before_walltime:
        # A worker killed at the walltime would lose its trainings' work since their last
        # checkpoint; retiring first lets them save (walltime.SaveCheckpointsOnClose).
        kwargs["worker_extra_args"] += lifetime_args(resources.walltime)
    if kind == "lsf":
        kwargs["walltime"] = resources.walltime.rsplit(":", 1)[0]  # LSF's [H]H:MM
    if resources.gpus:
        kwargs["job_extra_directives"].append(_GPU_DIRECTIVES[kind].format(n=resources.gpus))
        kwargs["worker_extra_args"] += ["--resources", "GPU=1"]
    return classes[kind](**kwargs)


@dataclass
class Outcome:
    task: Task
    status: str  # done, skipped, failed, refused, not run, interrupted
    detail: str = ""


@dataclass
class Summary:
    outcomes: List[Outcome] = field(default_factory=list)

    def count(self, status: str) -> int:
        return sum(1 for o in self.outcomes if o.status == status)

    @property
    def interrupted(self) -> bool:
        return any(o.status == "interrupted" for o in self.outcomes)

    @property
    def failed(self) -> bool:
        return any(o.status in ("failed", "refused", "not run") for o in self.outcomes)

    def table(self) -> str:
        lines = [
            f"{'done':>8} {self.count('done')}   {'skipped':>8} {self.count('skipped')}   "
            f"{'failed':>8} {self.count('failed')}   {'not run':>8} {self.count('not run')}"
        ]
        if self.count("refused"):
            lines[0] += f"   {'refused':>8} {self.count('refused')}"
        if self.interrupted:
            lines[0] += f"   {'interrupted':>8} {self.count('interrupted')}"
        for o in self.outcomes:
            if o.status in ("failed", "refused", "not run"):
                lines.append(f"  {o.status.upper():8} {o.task.key}: {o.detail}")
        return "\n".join(lines)


@dataclass
class CodeGuard:
    """A sweep must not run code that changed under it: `refusal()` is None while the code is
    the one the sweep started with (`started`), else the one line that refuses a task.
    `allow_changes` (the sweep's --allow-code-changes) starts tasks anyway; the task records
    still name the code each ran."""

    started: CodeState
    allow_changes: bool = False
    current: Callable[[], CodeState] = code_state

    def check(self) -> Tuple[CodeState, Optional[str]]:
        """(the code now, the refusal or None)."""
        now = self.current()
        if now.fingerprint == self.started.fingerprint or self.allow_changes:
            return now, None
        return now, (
            f"the code changed since the sweep started ({self.started.describe()}; now "
            f"{now.describe()}): rerun the sweep to use it, or pass {ALLOW_CODE_CHANGES_FLAG}"
        )


def _record(log_dir: Path, task: Task, event: str, **fields: object) -> None:
    """Appends one line to the sweep's task records (one write: lines never interleave)."""
    log_dir.mkdir(parents=True, exist_ok=True)
    line = {"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "task": task.key, "kind": task.kind}
    line.update(event=event, **fields)
    with open(log_dir / TASK_RECORDS_FILE, "a") as f:
        f.write(json.dumps(line) + "\n")


def task_environment(threads: int = 1) -> Dict[str, str]:
    """What each task's process gets on top of the worker's environment: TensorFlow (and
    OpenMP) limited to `threads` threads, so that workers x threads <= cores."""
    return {
        "TF_NUM_INTRAOP_THREADS": str(threads),
        "TF_NUM_INTEROP_THREADS": "1",
        "OMP_NUM_THREADS": str(threads),
        "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"),
    }


def _commands_of(tasks: Sequence[Task]) -> List[psutil.Process]:
    """This machine's processes (below this one) running the commands of `tasks`."""
    argvs = [list(t.argv) for t in tasks]
    out = []
    for proc in psutil.Process().children(recursive=True):
        try:
            if proc.cmdline()[1:] in argvs:
                out.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return out


def _interrupt(
    client: Client,
    futures: List[object],
    running: Dict[str, Tuple[Task, str]],
    pending: List[Task],
    summary: Summary,
    grace_s: float,
) -> None:
    """Cancels the running tasks (first, so that no retry starts), sends their commands SIGTERM
    and waits up to `grace_s` for them; records every unfinished task as interrupted."""
    started = [running[f.key][0] for f in futures]
    client.cancel(futures)
    procs = _commands_of(started)
    for proc in procs:
        try:
            proc.send_signal(signal.SIGTERM)
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(procs, timeout=grace_s)
    for proc in alive:  # past the grace period: the checkpoint before is what remains
        proc.kill()
    for task in started:
        summary.outcomes.append(Outcome(task, "interrupted", "stopped; rerun to resume"))
    for task in pending:
        summary.outcomes.append(Outcome(task, "interrupted", "not started"))
    futures.clear()
    pending.clear()


def _state_now(task: Task) -> str:
    """The task's state on disk now; a state that cannot be read counts as to run (the
    task's own command then says what is wrong, in its log)."""
    try:
        return task.state()
    except Exception:  # noqa: BLE001 (any unreadable output means: make it again)
        return "to run"


def _slots(client: Client) -> int:
    """Tasks the cluster can run at once: its workers' threads (0 before any has joined)."""
    return sum(client.nthreads().values())


def run_tasks(
    client: Client,
    tasks: Sequence[Task],
    states: Dict[str, str],
    log_dir: Path,
    threads: int = 1,
    retries: int = 2,
    gpu_from_worker_name: bool = False,
    out: TextIO = sys.stderr,
    progress: bool = True,
    poll_s: float = 2.0,
    stop: Optional[threading.Event] = None,
    grace_s: float = 120.0,
    guard: Optional[CodeGuard] = None,
) -> Summary:
    """Runs the tasks, each once the tasks it depends on are done (or were already), retrying
    failures `retries` times; the others run on when one fails. Returns the summary.

    A task's state is read (Task.state) when it is about to start, not taken from `states`
    (the plan printed before the run): a sampling job whose dumps an earlier task rebuilt, or
    a plot whose inputs changed during the sweep, is judged on the files as they are then. A
    task found done is skipped; `states` only says which unstarted tasks an interrupt leaves
    done.

    A task is submitted only when a worker thread is free: given a whole graph at once, Dask
    placed every task of unknown duration on one worker and left the others idle (seen with
    a 2-worker LocalCluster). `poll_s` is how often workers that join later are noticed.

    When `stop` is set (sweep.py sets it on Ctrl-C / SIGTERM), nothing new starts, the running
    tasks are cancelled without retries, and their commands on this machine get SIGTERM (a
    training saves its checkpoint) and `grace_s` seconds to exit; all unfinished tasks are then
    reported "interrupted", and a rerun resumes them.

    With a `guard`, the code is compared with the sweep's start before each round of starts: a
    task that would run changed code is "refused" (its dependents not run). Each start and end
    is recorded in <log_dir>/tasks.jsonl with the code it ran (commit, dirty, fingerprint)."""
    env = task_environment(threads)
    root = str(repository_root())
    token = uuid.uuid4().hex[:8]
    summary = Summary()
    pending: List[Task] = list(tasks)
    todo = {t.key for t in pending}
    succeeded: set = set()  # done now, or found done when about to start
    unrunnable: Dict[str, str] = {}  # key -> the failed task it needed
    running: Dict[str, Tuple[Task, str]] = {}  # future key -> task, log path
    futures: List[object] = []
    bar = tqdm(total=len(pending), desc="sweep", unit="task", disable=not progress, file=out)

    def blocker(task: Task) -> Optional[str]:
        for dep in task.deps:
            if dep in unrunnable:
                return unrunnable[dep]
        return None

    def ready(task: Task) -> bool:
        return all(d in succeeded or d not in todo for d in task.deps)

    while pending or futures:
        if stop is not None and stop.is_set():
            for task in [t for t in pending if states.get(t.key) == DONE]:
                pending.remove(task)
                summary.outcomes.append(Outcome(task, "skipped", "complete"))
            _interrupt(client, futures, running, pending, summary, grace_s)
            break
        # tasks whose dependencies failed are not run; the others start as threads free up
        for task in list(pending):
            failed_dep = blocker(task)
            if failed_dep is not None:
                pending.remove(task)
                unrunnable[task.key] = failed_dep
                summary.outcomes.append(
                    Outcome(task, "not run", f"needs {failed_dep}, which failed")
                )
                bar.update(1)
        free = _slots(client) - len(futures)
        if free <= 0 and not futures:
            client.wait_for_workers(1)
            continue
        code: Optional[Tuple[CodeState, Optional[str]]] = None  # read once per round
        skipped = True
        while skipped and free > 0:  # a skipped task may make its dependents ready
            skipped = False
            for task in list(pending):
                if free <= 0:
                    break
                if not ready(task):
                    continue
                pending.remove(task)
                if _state_now(task) == DONE:
                    succeeded.add(task.key)
                    summary.outcomes.append(Outcome(task, "skipped", "complete"))
                    bar.update(1)
                    skipped = True
                    continue
                if guard is not None:
                    code = guard.check() if code is None else code
                    if code[1] is not None:
                        unrunnable[task.key] = task.key
                        summary.outcomes.append(Outcome(task, "refused", code[1]))
                        _record(log_dir, task, "refused", **code[0].to_dict())
                        bar.update(1)
                        continue
                _record(log_dir, task, "start", **(code[0].to_dict() if code is not None else {}))
                log_path = str(log_dir / task.kind / task.log_name())
                future = client.submit(
                    run_task,
                    task.key,
                    task.argv,
                    root,
                    log_path,
                    env,
                    gpu_from_worker_name and task.gpu,
                    key=f"{task.key}-{token}",
                    retries=retries,
                    pure=False,
                    resources={"GPU": 1} if task.gpu else None,
                )
                running[future.key] = (task, log_path)
                futures.append(future)
                free -= 1
        if not futures:
            continue
        try:
            wait(futures, timeout=poll_s, return_when="FIRST_COMPLETED")
        except TimeoutError:  # none finished: look for new workers, then wait again
            pass
        for future in [f for f in futures if f.done()]:
            futures.remove(future)
            task, log_path = running.pop(future.key)
            # Holding the result would pin it on its worker: a worker retiring before its
            # walltime could not hand it on, its retirement would fail (its running task then
            # counted as failed), and the lost result would be recomputed.
            finished = future.status == "finished"
            outcome_error = None if finished else future.exception()
            future.release()
            _record(log_dir, task, "done" if finished else "failed")
            if finished:
                succeeded.add(task.key)
                summary.outcomes.append(Outcome(task, "done", log_path))
            else:
                unrunnable[task.key] = task.key
                err = outcome_error
                message = str(err)
                if isinstance(err, TaskFailed):
                    summary.outcomes.append(Outcome(task, "failed", message.split(": ", 1)[1]))
                else:  # e.g. KilledWorker: its worker died more often than allowed
                    first = message.splitlines()[0] if message else ""
                    detail = f"{type(err).__name__}: {first} (log: {log_path})"
                    summary.outcomes.append(Outcome(task, "failed", detail))
            bar.update(1)
    bar.close()
    return summary


def configure(retries: int) -> None:
    """A worker that dies during a task counts as one failure of it, as a raised error does."""
    dask.config.set({"distributed.scheduler.allowed-failures": retries})
