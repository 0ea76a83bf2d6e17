"""experiments/sweep.py: the task list read from the protocol, --print, the jobqueue cluster's job
script, the smoke profile of every target end to end (twice), the SQL observer, a worker killed
mid-training, and a failing task."""

import argparse
import io
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from pathlib import Path

import numpy as np
import psutil
import pytest
from distributed import Client

from dgp_snr import plotting
from dgp_snr.plotting import MissingInputsError
from dgp_snr.protocol import TABLE_1_DATASETS
from dgp_snr.protocol.profiles import PROFILES, Overrides
from dgp_snr.sweep import cli, engine
from dgp_snr.sweep.cli import parse_splits
from dgp_snr.sweep.engine import Resources, jobqueue_cluster, task_environment
from dgp_snr.sweep.tasks import DONE, Task, build_tasks, plot_outputs

REPO = Path(__file__).resolve().parents[1]
SWEEP = [sys.executable, str(REPO / "experiments" / "sweep.py")]


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def test_print_table_1_paper_lists_the_240_training_runs(tmp_path):
    out = io.StringIO()
    with redirect_stdout(out):
        assert cli.main(["table_1", "--profile", "paper", "--print", "--results_path", "r"]) == 0
    lines = out.getvalue().splitlines()
    train = [line for line in lines if "experiments/train.py" in line]
    assert len(train) == 240 and len(set(train)) == 240
    for line in train:
        assert " configuration=L1_G5 mode=IWAE num_IW_samples=50 minibatch_size=64 " in line
        assert line.endswith(f"iterations=300000 results_path={Path('r').absolute()}")
    runs = {(d, s, e) for d in TABLE_1_DATASETS for s in range(20) for e in ("reg", "dreg")}
    seen = {
        (part("dataset"), int(part("split")), part("estimator"))
        for line in train
        for part in [lambda key, line=line: line.split(f" {key}=")[1].split()[0]]
    }
    assert seen == runs
    # then the evaluation at evaluate.py's defaults (the paper's: 10,000 samples x 10) and the plot
    assert (
        lines[240]
        == f"python experiments/evaluate.py table_1 --results_path {Path('r').absolute()}"
    )
    assert lines[241].startswith("python experiments/plot.py table_1 ")
    assert len(lines) == 242


def test_plot_report_prints_the_sweeps_commands(tmp_path):
    """One definition: figure_8's missing-input report (smoke profile) is the sweep's task list."""
    params = PROFILES["smoke"].params("figure_8")
    out = io.StringIO()
    with pytest.raises(MissingInputsError):
        plotting.figure_8(tmp_path, tmp_path / "figs", out=out, **params)
    tasks = build_tasks(["figure_8"], PROFILES["smoke"], tmp_path)
    expected = [
        t.command.replace(" --no_progress --rebuild", "")
        for t in tasks
        if t.kind in ("train", "sample")
    ]
    assert len(expected) == 3 and "M=8" in expected[0] and "--batch_size 8" in expected[1]
    assert out.getvalue().splitlines()[1:-1] == expected


def test_split_ranges_and_their_errors():
    assert parse_splits("0-4") == (0, 1, 2, 3, 4)
    assert parse_splits("0,2,5") == (0, 2, 5)
    assert parse_splits("3") == (0, 1, 2)
    with pytest.raises(argparse.ArgumentTypeError, match="expected e.g. 0-4, 0,2,5 or 5"):
        parse_splits("a-b")
    profile = PROFILES["paper"].with_overrides(Overrides(splits=(5, 6), datasets=("power",)))
    assert profile.params("table_1") == {"splits": (5, 6), "datasets": ("power",)}
    assert profile.params("figure_1") == {}


@pytest.mark.parametrize("splits", [(0,), (1,), (0, 2, 5)])
def test_the_overrides_reach_plot_py_as_the_same_splits(splits):
    """The sweep hands its overrides to plot.py as arguments; one split must stay that split
    (a bare "1" would be a count of splits, a bare "0" none at all)."""
    argv = Overrides(splits=splits).argv()
    assert parse_splits(argv[argv.index("--splits") + 1]) == splits


def test_precision_override_reaches_every_training_run_and_the_reductions(tmp_path):
    """--precision mixed: every train command names it (so config.json records it), sampling
    and evaluation read it from the run, and the profile lists it as a reduction."""
    out = io.StringIO()
    argv = ["figure_4", "--profile", "reduced", "--precision", "mixed", "--datasets", "power"]
    with redirect_stdout(out):
        assert cli.main(argv + ["--splits", "1", "--print", "--results_path", "r"]) == 0
    train = [line for line in out.getvalue().splitlines() if "experiments/train.py" in line]
    assert len(train) == 2 and all(" precision=mixed " in line for line in train)
    profile = PROFILES["reduced"].with_overrides(Overrides(precision="mixed"))
    assert profile.params("figure_4")["settings"] == {"precision": "mixed"}
    assert "--precision mixed (paper: float64)" in profile.reductions
    # float64 is the default: naming it changes nothing
    assert (
        PROFILES["reduced"].with_overrides(Overrides(precision="float64")) == PROFILES["reduced"]
    )
    with pytest.raises(SystemExit), redirect_stderr(io.StringIO()) as err:
        cli.main(["figure_4", "--precision", "half", "--print"])
    assert "invalid choice: 'half'" in err.getvalue()


def test_slurm_job_script_carries_the_requested_resources():
    resources = Resources(
        cores=8, memory="32GB", walltime="12:00:00", queue="gpu", account="proj42", gpus=2
    )
    cluster = jobqueue_cluster("slurm", resources)
    try:
        script = cluster.job_script()
    finally:
        cluster.close()
    assert "#SBATCH -p gpu" in script
    assert "#SBATCH -A proj42" in script
    assert "#SBATCH --cpus-per-task=8" in script
    assert "#SBATCH -t 12:00:00" in script
    assert "#SBATCH --mem=30G" in script  # dask-jobqueue writes 32 GB as 30 GiB
    assert "#SBATCH --gres=gpu:2" in script
    assert "--resources GPU=1" in script and "--nworkers 2" in script  # one worker per GPU
    assert sys.executable in script


def test_unknown_cluster_is_refused():
    with pytest.raises(ValueError, match="unknown cluster 'htcondor'; known: slurm, pbs"):
        jobqueue_cluster("htcondor", Resources())


# ------------------------------------------------------------------------------ smoke, twice
def _interval(log: Path) -> tuple:
    """(worker pid, start, end) of the one task a log holds (see _timed below)."""
    text = log.read_text()
    pid = int(re.search(r"^#### .* pid (\d+): ", text, re.M).group(1))
    start, end = (float(re.search(rf"^{w} (\S+)$", text, re.M).group(1)) for w in ("start", "end"))
    return pid, start, end


def test_tasks_spread_over_all_workers_and_wait_for_their_dependencies(tmp_path):
    """Given a whole graph of unknown durations, Dask once placed every task on one of two
    workers; tasks now start as threads free up: both workers run, at most two at a time."""
    timed = "import time; print('start', time.time()); time.sleep(1.5); print('end', time.time())"

    def task(key: str, deps=(), code: str = timed) -> Task:
        return Task(key, "train", ["-c", code], lambda: "to run", deps=list(deps))

    tasks = [task(f"t{i}") for i in range(5)]
    tasks += [task("after", deps=["t0", "t4"]), task("bad", code="raise SystemExit(3)")]
    tasks += [task("needs_bad", deps=["bad"]), task("needs_needs_bad", deps=["needs_bad"])]
    states = {t.key: "to run" for t in tasks}
    with engine.local_cluster(engine.Resources(workers=2, cores=2)) as cluster:
        with Client(cluster) as client:
            summary = engine.run_tasks(
                client, tasks, states, tmp_path, retries=0, progress=False, poll_s=0.2
            )
    assert (summary.count("done"), summary.count("failed"), summary.count("not run")) == (6, 1, 2)
    details = {o.task.key: o.detail for o in summary.outcomes}
    assert details["needs_needs_bad"] == "needs bad, which failed"
    runs = {t.key: _interval(tmp_path / "train" / t.log_name()) for t in tasks[:6]}
    assert len({pid for pid, _, _ in runs.values()}) == 2
    events = sorted((t, d) for _, s, e in runs.values() for t, d in ((s, 1), (e, -1)))
    running = np.cumsum([d for _, d in events])
    assert running.max() == 2
    assert runs["after"][1] >= max(runs["t0"][2], runs["t4"][2])


def test_a_stop_request_lets_running_commands_save_and_starts_nothing_new(tmp_path):
    """Ctrl-C's path: the running commands get SIGTERM (not the worker's SIGKILL) and time to
    save, are not retried, and nothing else starts; every unfinished task says interrupted."""
    saved = tmp_path / "saved"
    code = (
        "import signal, sys, time, pathlib\n"
        "def save(signum, frame):\n"
        f"    pathlib.Path({str(saved)!r}).write_text(str(signum)); sys.exit(143)\n"
        "signal.signal(signal.SIGTERM, save)\n"
        "print('running', flush=True)\n"
        "time.sleep(60)\n"
    )
    tasks = [Task("slow", "train", ["-c", code], lambda: "to run")]
    tasks.append(Task("after", "train", ["-c", "pass"], lambda: "to run", deps=["slow"]))
    stop = threading.Event()
    log = tmp_path / "train" / tasks[0].log_name()
    threading.Thread(
        target=lambda: (
            # The line the command prints, not the log's header, which quotes its code: set
            # before the handler exists, the stop would race the command's start.
            _wait_for(lambda: log.is_file() and "\nrunning\n" in log.read_text()),
            stop.set(),
        ),
        daemon=True,
    ).start()
    start = time.monotonic()
    with engine.local_cluster(engine.Resources(workers=2, cores=2)) as cluster:
        with Client(cluster) as client:
            summary = engine.run_tasks(
                client,
                tasks,
                {t.key: "to run" for t in tasks},
                tmp_path,
                retries=2,
                progress=False,
                poll_s=0.2,
                stop=stop,
                grace_s=30,
            )
    assert time.monotonic() - start < 50  # the 60 s command did not run to its end
    assert saved.read_text() == str(int(signal.SIGTERM))
    assert [(o.task.key, o.status) for o in summary.outcomes] == [
        ("slow", "interrupted"),
        ("after", "interrupted"),
    ]
    assert "interrupted 2" in summary.table()
    assert log.read_text().count("#### ") == 2  # one start and its exit line: no retry
    assert not (tmp_path / "train" / tasks[1].log_name()).exists()


def _wait_for(condition, timeout: float = 60.0) -> None:
    end = time.monotonic() + timeout
    while not condition() and time.monotonic() < end:
        time.sleep(0.1)


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """The smoke profile of every target on a LocalCluster with 2 workers, recording the
    training runs to a SQLite database; then the same command again."""
    results = tmp_path_factory.mktemp("smoke")
    db = results / "runs.db"
    command = SWEEP + ["all", "--profile", "smoke", "--results_path", str(results)]
    command += ["--workers", "2", "--no-progress"]
    first = subprocess.run(
        command + ["--observer", f"sqlite:///{db}"], capture_output=True, text=True, env=_env()
    )
    logs = {p: p.stat().st_mtime for p in (results / cli.LOGS_DIR).rglob("*.log")}
    second = subprocess.run(command, capture_output=True, text=True, env=_env())
    return results, db, first, second, logs


@pytest.mark.long
def test_smoke_profile_of_every_target_completes(smoke):
    results, _, first, _, logs = smoke
    assert first.returncode == 0, first.stdout + first.stderr
    assert re.search(r"done 17\s+skipped 0\s+failed 0\s+not run 0", first.stdout), first.stdout
    tasks = build_tasks(sorted(cli.TARGETS), PROFILES["smoke"], results)
    assert all(task.state() == DONE for task in tasks)
    assert len(logs) == len(tasks) == 17  # 3 runs shared by all targets, 4 sampling jobs, ...
    for name in cli.TARGETS:
        for path in plot_outputs(name, results / "figures"):
            assert path.stat().st_size > 0, path


@pytest.mark.long
def test_second_invocation_runs_nothing(smoke):
    results, _, _, second, logs = smoke
    assert second.returncode == 0, second.stderr
    assert "sweep: nothing to do: all 17 task(s)" in second.stdout
    assert {p: p.stat().st_mtime for p in (results / cli.LOGS_DIR).rglob("*.log")} == logs


@pytest.mark.long
def test_sql_observer_records_the_runs_in_sqlite(smoke):
    _, db, first, _, _ = smoke
    assert first.returncode == 0
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT status, config, result, info FROM run").fetchall()
    assert len(rows) == 3
    assert {r[0] for r in rows} == {"COMPLETED"}
    for _, _, result, info in rows:  # the test log-likelihood, and every result in info
        assert result == json.loads(info)["results"]["test_loglik"]
        assert json.loads(info)["results"]["step"] == 30
    configs = [json.loads(r[1]) for r in rows]
    assert sorted((c["estimator"], c["qz_mode"]) for c in configs) == [
        ("dreg", "encoder"),
        ("reg", "encoder"),
        ("reg", "fix_mu_sigma"),
    ]
    assert all(c["M"] == 8 and c["iterations"] == 30 for c in configs)


# ------------------------------------------------------------------------------ faults
FAULT_ITERATIONS = 400
#: The step (a checkpoint step of the smoke profile) at which the victim's first attempt holds
#: until its worker is killed (tests/hold/sitecustomize.py).
FAULT_HOLD_STEP = 100
HOLD_DIR = REPO / "tests" / "hold"


@contextmanager
def _environ(**updates: str):
    """os.environ with `updates` (what the sweep's workers, started inside, inherit)."""
    old = {k: os.environ.get(k) for k in updates}
    os.environ.update(updates)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture(scope="module")
def faulty(tmp_path_factory):
    """table_1 (smoke) with one dataset that does not exist, and a longer run whose worker is
    SIGKILLed while its first attempt holds at step FAULT_HOLD_STEP, checkpoint written (so
    the kill cannot race the training's end); beside it, the same run uninterrupted."""
    results = tmp_path_factory.mktemp("faulty")
    reference = tmp_path_factory.mktemp("reference")
    argv = ["table_1", "--profile", "smoke", "--datasets", "demo_normalized,no_such_dataset"]
    argv += ["--iterations", str(FAULT_ITERATIONS), "--workers", "2", "--no-progress"]
    tasks = build_tasks(
        ["table_1"],
        PROFILES["smoke"].with_overrides(cli.profile_from_args(cli.parser().parse_args(argv))[1]),
        results,
    )
    victim = next(
        t for t in tasks if t.key.endswith("demo_normalized_L1_G5_IWAE_SF0_K50_BS64_reg")
    )
    straight = subprocess.Popen(
        [sys.executable] + [a.replace(str(results), str(reference)) for a in victim.argv],
        cwd=REPO,
        env={**_env(), **task_environment(1)},  # the sweep's tasks' threads: same arithmetic
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    marker = tmp_path_factory.mktemp("hold") / "held"
    hold = dict(argv=list(victim.argv), step=FAULT_HOLD_STEP, marker=str(marker))
    outcome = {}
    out = io.StringIO()

    def sweep():
        with redirect_stdout(out):
            outcome["rc"] = cli.main(argv + ["--results_path", str(results)])

    pythonpath = os.pathsep.join(filter(None, [str(HOLD_DIR), os.environ.get("PYTHONPATH")]))
    with _environ(PYTHONPATH=pythonpath, DGP_SNR_TEST_HOLD=json.dumps(hold)):
        thread = threading.Thread(target=sweep)
        thread.start()
        while thread.is_alive() and not marker.is_file():
            time.sleep(0.2)
        killed = None
        if marker.is_file():  # the victim's training holds: kill the worker running it
            training = psutil.Process(int(marker.read_text()))
            killed = training.parent().pid  # the Dask worker process running the task
            os.kill(killed, signal.SIGKILL)
        thread.join()
    straight.wait()
    run_dir = results / victim.key.split("/", 1)[1]
    return results, reference, run_dir, killed, outcome["rc"], out.getvalue()


@pytest.mark.long
def test_killed_worker_resumes_the_run_from_its_checkpoint(faulty):
    results, reference, run_dir, killed, _, text = faulty
    assert killed is not None, "the victim's training never held (tests/hold/sitecustomize.py)"
    log = (results / cli.LOGS_DIR / "train" / f"train_{run_dir.name}.log").read_text()
    assert log.count(": experiments/train.py") == 2  # the killed attempt and its retry
    assert f"{run_dir.name}: resuming from step {FAULT_HOLD_STEP}" in log
    resumed = json.loads((run_dir / "results.json").read_text())
    uninterrupted = json.loads((reference / run_dir.name / "results.json").read_text())
    assert resumed["step"] == FAULT_ITERATIONS
    assert resumed == uninterrupted


@pytest.mark.long
def test_failed_task_is_reported_with_its_log_and_the_others_complete(faulty):
    results, _, _, _, rc, text = faulty
    assert rc == 1
    for estimator in ("reg", "dreg"):
        name = f"no_such_dataset_L1_G5_IWAE_SF0_K50_BS64_{estimator}"
        log = results / cli.LOGS_DIR / "train" / f"train_{name}.log"
        assert f"FAILED   train/{name}: exit status 1: " in text
        assert f"(log: {log})" in text
        assert log.is_file()
    assert "NOT RUN  evaluate/table_1: needs train/no_such_dataset" in text
    for estimator in ("reg", "dreg"):
        run = results / f"demo_normalized_L1_G5_IWAE_SF0_K50_BS64_{estimator}"
        assert json.loads((run / "results.json").read_text())["step"] == FAULT_ITERATIONS
