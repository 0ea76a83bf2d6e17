"""What a Dask worker runs for one task: the project's own command in a subprocess, its output
appended to the task's log file. Standard library only, so workers start without TensorFlow."""

import ctypes
import logging
import os
import signal
import subprocess
import sys
import time
from typing import Dict, List, Optional

_PR_SET_PDEATHSIG = 1


class TaskFailed(RuntimeError):
    """A task's command exited with a non-zero status; the message ends with its log path."""


class _QuietTaskFailed(logging.Filter):
    """Drops the worker's "Compute Failed" report (with its traceback) of a TaskFailed: the
    command's own output, traceback included, is in the task's log, and the sweep's summary
    gives its last line. Other failures (a bug in the runner itself) are still reported."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = str(record.msg)
        return not (text.startswith("Compute Failed") and "TaskFailed(" in str(record.args))


def _quiet_expected_failures() -> None:
    logger = logging.getLogger("distributed.worker")
    if not any(isinstance(f, _QuietTaskFailed) for f in logger.filters):
        logger.addFilter(_QuietTaskFailed())


def _die_with_parent() -> None:
    # The command must not outlive a worker that is killed: its retry would run beside it.
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux: the command may outlive a killed worker
        pass


def last_line(log_path: str) -> str:
    """The command's last non-empty output line in the log (the runner's own '####' lines left
    out; progress bars' carriage returns split lines too)."""
    try:
        with open(log_path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 65536))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    lines = [ln.strip() for ln in text.replace("\r", "\n").splitlines()]
    lines = [ln for ln in lines if ln and not ln.startswith("####")]
    return lines[-1] if lines else ""


def run_task(
    key: str,
    argv: List[str],
    cwd: str,
    log_path: str,
    env: Optional[Dict[str, str]] = None,
    gpu_from_worker_name: bool = False,
    *dependencies: object,
) -> str:
    """Runs `python argv...` in `cwd`, appending its output to `log_path`; returns `key`.
    Raises TaskFailed (which Dask retries) when the command fails. `dependencies` are the
    results of the tasks this one waits for (unused: they order the graph)."""
    _quiet_expected_failures()  # in the worker's process, which logs the failure
    child_env = dict(os.environ)
    child_env.update(env or {})
    if gpu_from_worker_name:  # a local GPU cluster: worker i drives GPU i
        from distributed import get_worker

        child_env["CUDA_VISIBLE_DEVICES"] = str(get_worker().name)
    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    with open(log_path, "a") as log:
        log.write(f"\n#### {time.strftime('%Y-%m-%d %H:%M:%S')} pid {os.getpid()}: ")
        log.write(" ".join(argv) + "\n")
        log.flush()
        proc = subprocess.Popen(
            [sys.executable, *argv],
            cwd=cwd,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=child_env,
            preexec_fn=_die_with_parent,
        )
        rc = proc.wait()
        log.write(f"#### exit status {rc}\n")
    if rc != 0:
        raise TaskFailed(f"{key}: exit status {rc}: {last_line(log_path)} (log: {log_path})")
    return key
