"""Issue 23: outputs that know what made them. A finished smoke figure_1 sweep, then each of
the issue's five reproductions on a copy of it: a newer checkpoint, another number of
estimates, a deleted dump, a truncated dump, a lost state file and newest checkpoint. Beside
them, the pieces: dump records read without the arrays, task states read when a task starts,
a failed command's traceback kept in its log, evaluation data that records its step."""

import hashlib
import importlib.util
import io
import json
import os
import shutil
import subprocess
import sys
import textwrap
import warnings
from contextlib import redirect_stdout
from pathlib import Path

import numpy as np
import pytest

from dgp_snr.figure_data import (
    FigureDataRow,
    figure_data_path,
    read_figure_data,
    write_figure_data,
)
from dgp_snr.gradient_dumps import (
    RECORD_FIELDS,
    DumpRequest,
    dump_path,
    dump_problem,
    load_gradient_dump,
    read_dump_meta,
    save_gradient_dump,
)
from dgp_snr.protocol import targets as protocol_targets
from dgp_snr.protocol.jobs import EvalJob, figure_record_path
from dgp_snr.protocol.profiles import PROFILES
from dgp_snr.runs import save_config
from dgp_snr.sweep import cli, engine
from dgp_snr.sweep.tasks import DONE, RESUME, RUN, Task, train_state

REPO = Path(__file__).resolve().parents[1]
SWEEP = [sys.executable, str(REPO / "experiments" / "sweep.py")]
RUN_NAME = "demo_normalized_L1_G5_IWAE_SF0_K50_BS64_reg"
SMOKE = ["figure_1", "--profile", "smoke"]


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _sweep(results: Path, *extra: str) -> subprocess.CompletedProcess:
    command = SWEEP + SMOKE + ["--results_path", str(results), "--workers", "2", "--no-progress"]
    return subprocess.run(command + list(extra), capture_output=True, text=True, env=_env())


def _plan(results: Path, *extra: str) -> dict:
    """sweep.py --dry-run in process: task key -> state."""
    out = io.StringIO()
    with redirect_stdout(out):
        assert cli.main(SMOKE + ["--results_path", str(results), "--dry-run", *extra]) == 0
    return {line[11:]: line[:10].strip() for line in out.getvalue().splitlines()}


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "experiments" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _dumps(results: Path) -> list:
    return sorted((results / RUN_NAME / "gradients").glob("*.npz"))


def _figure_inputs(results: Path) -> dict:
    """The figure's record: absolute input path -> its record (paths are kept relative)."""
    figures = results / "figures"
    data = json.loads(figure_record_path(figures, "figure_1").read_text())
    return {(figures / r["path"]).resolve(): r for r in data["inputs"]}


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished smoke figure_1 sweep (30 iterations, 20 raw estimates per dump, K = 1, 10,
    data points 0 and 1, REG and DReG): read-only, each test works on a copy."""
    results = tmp_path_factory.mktemp("finished")
    done = _sweep(results)
    assert done.returncode == 0, done.stdout + done.stderr
    return results


@pytest.fixture
def copy(finished, tmp_path):
    results = tmp_path / "results"
    shutil.copytree(finished, results)
    return results


def test_finished_sweep_records_what_made_each_output(finished):
    """Every dump records the request it answers; the figure records each of them."""
    dumps = _dumps(finished)
    assert len(dumps) == 8
    inputs = _figure_inputs(finished)
    assert set(inputs) == {p.resolve() for p in dumps}
    for path in dumps:
        meta = read_dump_meta(path)
        assert {k: meta[k] for k in ("step", "num_samples", "seed", "precision")} == {
            "step": 30,
            "num_samples": 20,
            "seed": 0,
            "precision": "float64",
        }
        assert inputs[path.resolve()]["sha256"] == _sha256(path)
        assert inputs[path.resolve()]["record"] == {k: meta[k] for k in RECORD_FIELDS}
    assert set(_plan(finished).values()) == {DONE}


# ------------------------------------------------------------------------------ 1.
def test_1_a_new_checkpoint_resamples_the_dumps_and_redraws_from_them(copy):
    """--iterations 60 in the same folder: the run resumes to 60, every dump is sampled again
    at step 60 and the figure is drawn from those (its record says step 60)."""
    png = copy / "figures" / "figure_1.png"
    drawn = png.stat().st_mtime_ns
    # planned as such: the dumps are asked at the final step, which the run has not reached
    assert _plan(copy, "--iterations", "60") == {
        f"train/{RUN_NAME}": RESUME,
        f"sample/{RUN_NAME}/reg_bs1_raw_n20": RUN,
        f"sample/{RUN_NAME}/dreg_bs1_raw_n20": RUN,
        "plot/figure_1": RUN,
    }
    done = _sweep(copy, "--iterations", "60")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "done 4 " in done.stdout and "failed 0" in done.stdout
    assert json.loads((copy / RUN_NAME / "results.json").read_text())["step"] == 60
    for path in _dumps(copy):
        assert read_dump_meta(path)["step"] == 60, path
    inputs = _figure_inputs(copy)
    assert len(inputs) == 8
    for path, record in inputs.items():
        assert record["record"]["step"] == 60 and record["sha256"] == _sha256(path)
    assert png.stat().st_mtime_ns > drawn
    assert set(_plan(copy, "--iterations", "60").values()) == {DONE}


# ------------------------------------------------------------------------------ 2.
def test_2_another_number_of_estimates_is_refused_or_rebuilt(copy, capsys, monkeypatch):
    """--num_estimates 40 over the 20-estimate dumps: sample_gradients.py and plot.py refuse in
    one line naming the file, what it holds, what was asked and the flag; the sweep plans the
    sampling again; --rebuild resamples (keeping a dump with more estimates as .stale)."""
    monkeypatch.setattr(warnings, "showwarning", warnings.showwarning)  # the scripts set it
    run_dir = copy / RUN_NAME
    reg0 = dump_path(run_dir, "reg", 1, 1, 0)
    before = {p: _sha256(p) for p in _dumps(copy)}
    common = [RUN_NAME, "--results_path", str(copy), "--ks", "1,10", "--num_datapoints", "2"]
    common += ["--no_progress"]
    sample = _script("sample_gradients")
    assert sample.main(common + ["--num_estimates", "40", "--estimator", "reg"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert err.startswith(f"sample_gradients.py: error: gradient dump {reg0} holds 20 estimates")
    assert "asked: 40 estimates" in err and "--rebuild" in err
    assert {p: _sha256(p) for p in _dumps(copy)} == before  # nothing written

    plan = _plan(copy, "--num_estimates", "40")
    assert plan[f"sample/{RUN_NAME}/reg_bs1_raw_n40"] == RUN
    assert plan[f"sample/{RUN_NAME}/dreg_bs1_raw_n40"] == RUN
    assert plan["plot/figure_1"] == RUN

    figures = copy / "figures"
    drawn = {p: p.stat().st_mtime_ns for p in figures.iterdir()}
    plot = _script("plot")
    argv = ["figure_1", "--results_path", str(copy), "--figures_dir", str(figures)]
    assert plot.main(argv + ["--profile", "smoke", "--num_estimates", "40"]) == 1
    out, err = capsys.readouterr()
    line = err.strip()
    assert len(line.splitlines()) == 1 and "Traceback" not in line
    assert line.startswith(f"plot.py: figure_1: gradient dump {reg0} holds 20 estimates")
    assert "asked: 40 estimates (and 7 more)" in line
    assert "--num_estimates 40" in line and line.endswith("--estimator dreg --rebuild")
    assert {p: p.stat().st_mtime_ns for p in figures.iterdir()} == drawn  # not redrawn

    # --rebuild: fewer estimates than held keeps the old dump aside; more replaces it.
    assert sample.main(common + ["--num_estimates", "10", "--estimator", "reg", "--rebuild"]) == 0
    assert read_dump_meta(reg0)["num_samples"] == 10
    kept = reg0.with_name(reg0.name + ".stale")
    assert _sha256(kept) == before[reg0]
    dreg0 = dump_path(run_dir, "dreg", 1, 1, 0)
    assert sample.main(common + ["--num_estimates", "40", "--estimator", "dreg", "--rebuild"]) == 0
    assert load_gradient_dump(dreg0).samples["layer0/W0"].shape[0] == 40
    assert not dreg0.with_name(dreg0.name + ".stale").exists()
    capsys.readouterr()


# ------------------------------------------------------------------------------ 3. and 4.
@pytest.fixture(scope="module")
def repaired(finished, tmp_path_factory):
    """One dump deleted (reproduction 3) and another truncated (reproduction 4), the truncated
    one first shown to plot.py, then the same sweep again."""
    results = tmp_path_factory.mktemp("repaired") / "results"
    shutil.copytree(finished, results)
    run_dir = results / RUN_NAME
    deleted = dump_path(run_dir, "dreg", 1, 10, 1)
    truncated = dump_path(run_dir, "reg", 1, 1, 0)
    deleted.unlink()
    truncated.write_bytes(truncated.read_bytes()[:300])
    plot = subprocess.run(
        [sys.executable, str(REPO / "experiments" / "plot.py"), "figure_1", "--profile", "smoke"]
        + ["--results_path", str(results), "--figures_dir", str(results / "figures")],
        capture_output=True,
        text=True,
        env=_env(),
    )
    done = _sweep(results)
    return results, deleted, truncated, plot, done


def test_3_a_rebuilt_input_leaves_no_stale_figure(repaired):
    """The deleted dump is sampled again; the figure then records the inputs as they are (so
    the next dry run has nothing to do), whether or not it had to be redrawn."""
    results, deleted, _, _, done = repaired
    assert done.returncode == 0, done.stdout + done.stderr
    assert read_dump_meta(deleted)["step"] == 30
    inputs = _figure_inputs(results)
    assert inputs[deleted.resolve()]["sha256"] == _sha256(deleted)
    assert all(record["sha256"] == _sha256(path) for path, record in inputs.items())
    assert set(_plan(results).values()) == {DONE}


def test_4_a_corrupt_dump_is_named_then_rebuilt_by_the_sweep(repaired):
    """plot.py names the truncated dump and the command that rebuilds it; the sweep rebuilds it
    (no failure, no traceback on the terminal) and the figure is drawn from the new one."""
    results, _, truncated, plot, done = repaired
    assert plot.returncode == 1
    line = plot.stderr.strip()
    assert len(line.splitlines()) == 1, plot.stderr
    assert line.startswith(f"plot.py: figure_1: corrupt gradient dump {truncated}: ")
    assert line.endswith("--estimator reg --rebuild")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "failed 0" in done.stdout
    assert "Traceback" not in done.stdout + done.stderr
    dump = load_gradient_dump(truncated)
    assert dump.meta["step"] == 30 and dump.samples["layer0/W0"].shape[0] == 20
    assert _figure_inputs(results)[truncated.resolve()]["sha256"] == _sha256(truncated)


# ------------------------------------------------------------------------------ 5.
@pytest.mark.parametrize("state_file", ["lost", "stale", "garbage"])
def test_5_the_sweep_resumes_where_train_py_resumes(copy, state_file):
    """Without the newest checkpoint, and the `checkpoint` state file lost, stale (naming the
    removed checkpoint) or garbage: the sweep plans a resume, as train.py resumes from the
    checkpoint files (tests/test_faults.py), not a run from scratch."""
    checkpoints = copy / RUN_NAME / "checkpoints"
    for path in checkpoints.glob("ckpt-30.*"):
        path.unlink()
    state = checkpoints / "checkpoint"
    if state_file == "lost":
        state.unlink()
    elif state_file == "garbage":
        state.write_text("garbage {{{ not a checkpoint state\n")
    assert state_file != "stale" or 'model_checkpoint_path: "ckpt-30"' in state.read_text()
    (config,) = protocol_targets.figure_1(copy, **PROFILES["smoke"].params("figure_1")).runs
    assert train_state(config) == RESUME
    assert _plan(copy)[f"train/{RUN_NAME}"] == RESUME
    if state_file == "lost":
        # and train.py does resume there: the older checkpoints are not rewritten
        from dgp_snr.train_run import train

        kept = {p: p.stat().st_mtime_ns for p in checkpoints.glob("ckpt-*")}
        assert train(config, progress=False)["step"] == 30
        assert all(p.stat().st_mtime_ns == t for p, t in kept.items())
        assert train_state(config) == DONE


def test_5_a_state_file_without_checkpoint_files_plans_a_fresh_run(tmp_path):
    (config,) = protocol_targets.figure_1(tmp_path, **PROFILES["smoke"].params("figure_1")).runs
    checkpoints = config.run_dir() / "checkpoints"
    checkpoints.mkdir(parents=True)
    save_config(config, config.run_dir())
    (checkpoints / "checkpoint").write_text('model_checkpoint_path: "ckpt-30"\n')
    assert train_state(config) == RUN
    (checkpoints / "ckpt-30.index").write_bytes(b"")
    results = {"step": 30, "num_predict_samples": config.logging.num_predictive_samples}
    (config.run_dir() / "results.json").write_text(json.dumps(results))
    assert train_state(config) == DONE


# ------------------------------------------------------------------------------ the pieces
def test_a_task_state_is_read_when_it_is_about_to_start(tmp_path):
    """A plot judged done before the sweep whose input an earlier task changes is redrawn: the
    engine asks the task's state when it is ready, not from the plan."""
    source, drawn = tmp_path / "input.txt", tmp_path / "drawn.txt"
    source.write_text("old")
    drawn.write_text("old")
    change = f"import pathlib; pathlib.Path({str(source)!r}).write_text('new')"
    redraw = (
        f"import pathlib; pathlib.Path({str(drawn)!r})"
        f".write_text(pathlib.Path({str(source)!r}).read_text())"
    )
    tasks = [
        Task("sample", "sample", ["-c", change], lambda: RUN),
        Task(
            "plot",
            "plot",
            ["-c", redraw],
            lambda: DONE if drawn.read_text() == source.read_text() else RUN,
            deps=["sample"],
        ),
        Task("other", "plot", ["-c", "raise SystemExit(1)"], lambda: DONE),
    ]
    plan = {t.key: t.state() for t in tasks}
    assert plan == {"sample": RUN, "plot": DONE, "other": DONE}
    from distributed import Client

    with engine.local_cluster(engine.Resources(workers=1, cores=1)) as cluster:
        with Client(cluster) as client:
            summary = engine.run_tasks(
                client, tasks, plan, tmp_path / "logs", retries=0, progress=False, poll_s=0.2
            )
    assert {o.task.key: o.status for o in summary.outcomes} == {
        "sample": "done",
        "plot": "done",
        "other": "skipped",
    }
    assert drawn.read_text() == "new"


def test_a_failed_commands_traceback_stays_in_its_log(tmp_path):
    """The worker does not print "Compute Failed" and the command's traceback to the terminal;
    the summary keeps the one-line reason and the log the traceback."""
    program = textwrap.dedent(f"""
        from pathlib import Path
        from distributed import Client
        from dgp_snr.sweep import engine
        from dgp_snr.sweep.tasks import Task

        task = Task("bad", "sample", ["-c", "raise ValueError('expected failure')"], lambda: "")
        with engine.local_cluster(engine.Resources(workers=1, cores=1)) as cluster:
            with Client(cluster) as client:
                summary = engine.run_tasks(client, [task], {{}}, Path({str(tmp_path)!r}),
                                           retries=1, progress=False, poll_s=0.2)
        print(summary.table())
        """)
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, env=_env(), cwd=REPO
    )
    assert done.returncode == 0, done.stderr
    log = tmp_path / "sample" / "bad.log"
    assert f"FAILED   bad: exit status 1: ValueError: expected failure (log: {log})" in done.stdout
    assert "Traceback" not in done.stderr and "Compute Failed" not in done.stderr, done.stderr
    assert log.read_text().count("Traceback (most recent call last)") == 2  # and its retry


def test_dump_records_are_read_without_the_arrays(tmp_path, monkeypatch):
    """read_dump_meta reads only the meta/* members: a dump with a damaged array reads (the
    sweep's state check), while a full read (sample_gradients' check) finds the damage; a dump
    without a recorded field does not match."""
    path = tmp_path / "reg_bs1_K5_dp0.npz"
    request = DumpRequest(30, 5, 1, 0, "reg", 50, 0, "float64")
    samples = {"layer0/W0": np.random.default_rng(0).standard_normal((50, 3, 4))}
    save_gradient_dump(path, samples, {**request.record(), "batch_start": 0})
    payload = bytearray(path.read_bytes())
    start = payload.index(b"layer0/W0.npy") + 200  # inside that member's array bytes
    payload[start : start + 16] = bytes(16)
    path.write_bytes(bytes(payload))
    assert read_dump_meta(path) == {**request.record(), "batch_start": 0}
    assert dump_problem(path, request) is None
    assert dump_problem(path, request, full=True).startswith(f"corrupt gradient dump {path}")

    old = {k: v for k, v in request.record().items() if k not in ("seed", "precision")}
    save_gradient_dump(path, samples, old)  # a dump from before seed and precision were kept
    assert dump_problem(path, request) == (
        f"gradient dump {path} holds no seed, no precision; asked: seed 0, float64"
    )
    assert dump_problem(tmp_path / "none.npz", request).endswith("none.npz is missing")


def test_evaluation_data_is_complete_only_at_the_asked_step_and_settings(tmp_path):
    """A figure data line records its run, step, samples, repeats and seed; the sweep's
    evaluation task is done only when every pair was evaluated as it asks."""
    job = EvalJob("figure_4", str(tmp_path), ("power",), 1, 60, 50, 2)

    def write(step: int, samples: int = 50) -> None:
        rows = [
            FigureDataRow(
                "power",
                flag,
                0,
                np.array([-1.0, -1.1]),
                {"run": "r", "step": step, "samples": samples, "repeats": 2, "seed": 0},
            )
            for flag in (False, True)
        ]
        write_figure_data(figure_data_path(tmp_path, "figure_4"), rows)

    write(60)
    assert job.complete()
    assert read_figure_data(figure_data_path(tmp_path, "figure_4"))[1].made["step"] == 60
    write(30)  # evaluated at an older checkpoint
    assert not job.complete()
    write(60, samples=100)
    assert not job.complete()
    rows = read_figure_data(figure_data_path(tmp_path, "figure_4"))
    write_figure_data(  # the reference's format: no records
        figure_data_path(tmp_path, "figure_4"),
        [FigureDataRow(r.dataset, r.flag, r.split, r.values) for r in rows],
    )
    assert not job.complete()
