"""Batch jobs' walltime: each worker retires before its job's limit, its trainings save a
checkpoint first, and the next job resumes them. Standard library, psutil and distributed only:
workers import this module (a plugin is pickled by reference) and must not load TensorFlow."""

import re
import signal
import time
from typing import List, Tuple

import psutil
from distributed.diagnostics.plugin import WorkerPlugin

#: The scripts a task runs (Task.argv[0]); only these get SIGTERM when a worker retires.
_TASK_SCRIPTS = ("experiments/",)


def walltime_seconds(walltime: str) -> int:
    """SLURM / PBS walltime ([D-]HH:MM:SS, HH:MM, or minutes) in seconds."""
    days = 0
    text = walltime.strip()
    if "-" in text:
        d, text = text.split("-", 1)
        days = int(d)
    parts = [int(p) for p in text.split(":")]
    if not parts or len(parts) > 3 or not re.fullmatch(r"[\d:]+", text):
        raise ValueError(f"walltime {walltime!r}: expected [D-]HH:MM:SS")
    if len(parts) == 1:  # SLURM: a bare number is minutes
        seconds = parts[0] * 60
    elif len(parts) == 2:  # HH:MM
        seconds = parts[0] * 3600 + parts[1] * 60
    else:
        seconds = parts[0] * 3600 + parts[1] * 60 + parts[2]
    return days * 86400 + seconds


def worker_lifetime(walltime: str) -> Tuple[int, int]:
    """(lifetime, stagger) in seconds for a job of `walltime`: the worker retires at
    lifetime +- stagger, at least 3/4 of the margin (5% of the walltime, within 60 s and
    10 min) before the limit: time for a training to save its checkpoint, which takes seconds,
    before SLURM's SIGTERM/SIGKILL; a long job loses at most 10 min."""
    total = walltime_seconds(walltime)
    margin = max(60, min(600, total // 20))
    if total <= margin + 15:
        raise ValueError(f"walltime {walltime!r} is too short: more than {margin + 15} s needed")
    return total - margin, margin // 4


def lifetime_args(walltime: str) -> List[str]:
    """The dask worker options that retire a worker before its job's walltime."""
    lifetime, stagger = worker_lifetime(walltime)
    return ["--lifetime", f"{lifetime}s", "--lifetime-stagger", f"{stagger}s"]


def task_commands() -> List[psutil.Process]:
    """The task commands this process started (runner.run_task's subprocesses)."""
    out = []
    for proc in psutil.Process().children(recursive=True):
        try:
            argv = proc.cmdline()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        if len(argv) > 1 and argv[1].startswith(_TASK_SCRIPTS):
            out.append(proc)
    return out


class SaveCheckpointsOnClose(WorkerPlugin):
    """When its worker closes (its --lifetime is up, or the job is stopped), the running task
    commands get SIGTERM and up to `grace_s` seconds to exit: a training saves a checkpoint at
    its current step. Without it the worker's exit would SIGKILL them (PR_SET_PDEATHSIG) and
    the work since the last periodic checkpoint would be lost.

    A retiring worker is removed from the scheduler first (expected: no retry is used up), so
    the task may start on another worker while this one saves; the run folder's lock
    (dgp_snr.io.RunLock) makes that start fail and be retried rather than race."""

    name = "dgp-snr-save-checkpoints"

    def __init__(self, grace_s: float = 40.0) -> None:
        self.grace_s = grace_s

    def teardown(self, worker: object) -> None:
        procs = task_commands()
        for proc in procs:
            try:
                proc.send_signal(signal.SIGTERM)
            except psutil.NoSuchProcess:
                pass
        end = time.monotonic() + self.grace_s
        alive = procs
        while alive and time.monotonic() < end:
            time.sleep(0.2)
            alive = [p for p in alive if _running(p)]
        for proc in alive:  # past the grace period: the checkpoint before it is what remains
            proc.kill()


def _running(proc: psutil.Process) -> bool:
    """Alive and not yet a zombie. Not psutil.wait_procs: it would reap the command, and the
    runner's Popen.wait would then read exit status 0 (ECHILD) for an interrupted training."""
    try:
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
