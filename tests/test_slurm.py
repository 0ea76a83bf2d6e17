"""The sweep on a real SLURM controller (issue 22): scripts/slurm_local.sh starts slurm-wlm and
munge as a single node on this machine; experiments/sweep.py --cluster slurm then submits its
workers as batch jobs. Those tests are marked `slurm`, skipped unless selected: `pytest -m slurm`
(root, Debian, about 10 minutes). The walltime arithmetic's tests run in the default suite."""

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np
import pytest

from dgp_snr.sweep.engine import Resources, jobqueue_cluster
from dgp_snr.sweep.walltime import walltime_seconds, worker_lifetime

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "slurm_local.sh"
SWEEP = ROOT / "experiments" / "sweep.py"
RUN = "demo_normalized_L1_G5_IWAE_SF0_K50_BS64_reg"
TRAIN_LOG = Path("sweep_logs") / "train" / f"train_{RUN}.log"


@pytest.fixture(scope="module")
def slurm(tmp_path_factory) -> Dict[str, str]:
    """A running single-node SLURM; the environment that reaches it (SLURM_CONF)."""
    if os.geteuid() != 0 or shutil.which("apt-get") is None and shutil.which("slurmctld") is None:
        pytest.skip("the local SLURM needs root and Debian's slurm-wlm")
    folder = tmp_path_factory.mktemp("slurm")
    subprocess.run(["bash", str(SCRIPT), "start", str(folder)], check=True, timeout=300)
    env = dict(os.environ, SLURM_CONF=str(folder / "slurm.conf"))
    yield env
    subprocess.run(["bash", str(SCRIPT), "stop", str(folder)], check=False, timeout=120)


def _sweep_argv(results: Path, *extra: str) -> List[str]:
    return [
        sys.executable,
        str(SWEEP),
        "figure_1",
        "--profile",
        "smoke",
        "--results_path",
        str(results),
        "--no-progress",
        *extra,
    ]


def _slurm_args(walltime: str = "00:30:00") -> Tuple[str, ...]:
    return (
        "--cluster",
        "slurm",
        "--jobs",
        "1",
        "--job-cores",
        "1",
        "--job-memory",
        "2GB",
        "--walltime",
        walltime,
    )


def _jobs(env: Dict[str, str]) -> List[str]:
    """squeue's lines for the sweep's worker jobs: 'JOBID STATE NAME'."""
    out = subprocess.run(
        ["squeue", "-h", "-o", "%i %T %j"], env=env, capture_output=True, text=True, check=True
    ).stdout
    return [ln for ln in out.splitlines() if "dask-worker" in ln]


def _start(argv: List[str], env: Dict[str, str], cwd: Path) -> subprocess.Popen:
    cwd.mkdir(parents=True, exist_ok=True)  # the jobs' slurm-<id>.out files go here
    return subprocess.Popen(
        argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def _wait_for(pred, timeout_s: float, proc: subprocess.Popen, what: str) -> None:
    end = time.time() + timeout_s
    while time.time() < end:
        if pred():
            return
        if proc.poll() is not None:
            break
        time.sleep(1)
    out = proc.stdout.read() if proc.poll() is not None else ""
    raise AssertionError(f"timed out waiting for {what}\n{out}")


def _finish(proc: subprocess.Popen, timeout_s: float) -> str:
    try:
        out, _ = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        raise AssertionError(f"sweep did not finish in {timeout_s} s\n{out}")
    assert proc.returncode == 0, out
    return out


def _outputs(results: Path) -> Dict[str, object]:
    """What the sweep made: the run's results and its gradient dumps' arrays."""
    import json

    out: Dict[str, object] = {}
    res = json.loads((results / RUN / "results.json").read_text())
    out["results"] = {k: v for k, v in res.items() if isinstance(v, (int, float))}
    for f in sorted((results / RUN / "gradients").glob("*.npz")):
        with np.load(f) as z:
            out[f.name] = {k: z[k] for k in z.files}
    return out


def _same(a: Dict[str, object], b: Dict[str, object]) -> None:
    assert a.keys() == b.keys()
    assert a["results"] == b["results"]
    for name in a:
        if name != "results":
            for k in a[name]:
                np.testing.assert_array_equal(a[name][k], b[name][k], err_msg=f"{name}:{k}")


@pytest.mark.slurm
def test_smoke_sweep_runs_as_slurm_jobs_and_equals_a_local_run(slurm, tmp_path):
    results = tmp_path / "slurm"
    proc = _start(_sweep_argv(results, *_slurm_args()), slurm, tmp_path / "jobs")
    seen: List[str] = []

    def running_job() -> bool:
        seen.extend(j for j in _jobs(slurm) if " RUNNING " in j)
        return bool(seen)

    _wait_for(running_job, 180, proc, "a RUNNING dask-worker job in squeue")
    out = _finish(proc, 900)
    assert "done 4" in out and "failed 0" in out, out
    assert (results / "figures" / "figure_1.pdf").exists()

    again = subprocess.run(
        _sweep_argv(results, *_slurm_args()),
        cwd=tmp_path,
        env=slurm,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert again.returncode == 0 and "nothing to do" in again.stdout, again.stdout
    assert not _jobs(slurm) or all(j.split()[0] in " ".join(seen) for j in _jobs(slurm))

    local = tmp_path / "local"
    run = subprocess.run(
        _sweep_argv(local, "--workers", "1"),
        cwd=tmp_path,
        env=slurm,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    _same(_outputs(results), _outputs(local))


@pytest.mark.slurm
def test_scancel_of_a_worker_job_mid_task_is_retried(slurm, tmp_path):
    results = tmp_path / "res"
    proc = _start(_sweep_argv(results, *_slurm_args()), slurm, tmp_path / "jobs")
    log = results / TRAIN_LOG
    _wait_for(lambda: log.exists() and "train:" in log.read_text(), 300, proc, "training to start")
    jobs = [j.split()[0] for j in _jobs(slurm) if " RUNNING " in j]
    assert jobs
    subprocess.run(["scancel", *jobs], env=slurm, check=True)
    out = _finish(proc, 900)
    assert "done 4" in out and "failed 0" in out, out
    text = log.read_text()
    assert text.count("#### exit status 0") == 1
    assert text.count("####") >= 3, text  # the cancelled start (no exit line), then the retry


@pytest.mark.slurm
def test_walltime_retires_the_worker_saves_a_checkpoint_and_the_next_job_resumes(slurm, tmp_path):
    # walltime 2 min: the worker retires 45-75 s after it starts (walltime.worker_lifetime),
    # inside 20,000 iterations (~170 it/s here); no periodic checkpoint before the end
    results = tmp_path / "res"
    argv = _sweep_argv(
        results,
        *_slurm_args("00:02:00"),
        "--iterations",
        "20000",
        "--checkpoint_freq",
        "100000",
        "--retries",
        "0",  # a retirement must not count as a failure
    )
    proc = _start(argv, slurm, tmp_path / "jobs")
    job_ids: set = set()

    def track() -> bool:
        job_ids.update(j.split()[0] for j in _jobs(slurm))
        return False

    end = time.time() + 1200
    while proc.poll() is None and time.time() < end:
        track()
        time.sleep(2)
    out = _finish(proc, 60)
    assert "done 4" in out and "failed 0" in out, out
    assert len(job_ids) >= 2, job_ids  # the first job's worker retired; another one finished
    text = (results / TRAIN_LOG).read_text()
    assert "interrupted by SIGTERM" in text, text[-3000:]
    resumed = [int(s) for s in re.findall(r"resuming from step (\d+)", text)]
    assert resumed and 0 < resumed[0] < 20000, text[-3000:]
    assert "Completed" in text
    assert text.count("#### exit status 0") == 1  # each interrupted start reported 143


def test_walltime_formats():
    assert walltime_seconds("04:00:00") == 4 * 3600
    assert walltime_seconds("1-02:00:00") == 26 * 3600
    assert walltime_seconds("90") == 90 * 60  # SLURM: a bare number is minutes
    assert walltime_seconds("01:30") == 90 * 60
    with pytest.raises(ValueError):
        walltime_seconds("4h")


def test_workers_retire_before_the_walltime_with_room_to_checkpoint():
    for walltime in ("00:02:00", "04:00:00", "48:00:00"):
        total = walltime_seconds(walltime)
        lifetime, stagger = worker_lifetime(walltime)
        assert lifetime + stagger <= total - 45  # 45 s at least for the SIGTERM checkpoint
        assert lifetime - stagger > 0
    assert worker_lifetime("04:00:00") == (4 * 3600 - 600, 150)
    assert worker_lifetime("48:00:00") == (48 * 3600 - 600, 150)
    with pytest.raises(ValueError, match="too short"):
        worker_lifetime("00:01:00")


def test_slurm_job_script_retires_the_worker_before_the_walltime():
    cluster = jobqueue_cluster("slurm", Resources(cores=1, walltime="04:00:00"))
    try:
        script = cluster.job_script()
    finally:
        cluster.close()
    assert "#SBATCH -t 04:00:00" in script
    assert "--lifetime 13800s --lifetime-stagger 150s" in script


def test_a_retiring_worker_leaves_the_commands_exit_status_to_the_runner(monkeypatch):
    import threading

    from dgp_snr.sweep import walltime

    monkeypatch.setattr(walltime, "_TASK_SCRIPTS", ("-c",))
    code = "import signal,sys,time; signal.signal(15, lambda *a: sys.exit(143)); time.sleep(60)"
    proc = subprocess.Popen([sys.executable, "-c", code])
    time.sleep(1)
    status: List[int] = []
    waiter = threading.Thread(target=lambda: status.append(proc.wait()))
    waiter.start()
    walltime.SaveCheckpointsOnClose(grace_s=20).teardown(None)
    waiter.join(30)
    assert status == [143]  # not 0, as after psutil.wait_procs reaped it
