"""Fault tests of issue 9: lost and damaged checkpoint files, poisoned run folders, NaN
training, bad settings, write failures, two trainers at once and TensorBoard after a resume.
Each works on a copy of one tiny trained run (demo_normalized, 20 iterations)."""

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from dgp_snr.gradient_dumps import dump_path
from dgp_snr.io import RunLock, RunLockedError, dumps_strict
from dgp_snr.run_evaluation import EVALUATION_FILE, evaluate_run
from dgp_snr.runs import (
    CONFIG_FILE,
    RESULTS_FILE,
    ConfigError,
    DamagedCheckpointError,
    RunConfig,
    load_config,
    load_run,
    save_config,
    save_results,
)
from dgp_snr.sample_run import sample_gradients
from dgp_snr.train_run import NonFiniteError, _Session, train

TINY = dict(
    dataset="demo_normalized",
    configuration="L1",
    M=8,
    num_IW_samples=3,
    minibatch_size=32,
    encoder_dims="8,8",
    estimator="reg",
    iterations=20,
    checkpoint_freq=10,
    num_predict_samples=10,
    log_main_freq=5,
    log_test_freq=0,
    log_snr_freq=0,
)


def tiny(results_path, **changes) -> RunConfig:
    return RunConfig.from_flat(**{**TINY, "results_path": str(results_path), **changes})


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A finished 20-iteration run with checkpoints at 10 and 20 (read-only: tests copy it)."""
    config = tiny(tmp_path_factory.mktemp("base"))
    return config, train(config, progress=False)


@pytest.fixture
def copy(base, tmp_path):
    """A private copy of the base run: its config (in tmp_path) and run folder."""
    config, _ = base
    mine = config.with_settings(results_path=str(tmp_path))
    shutil.copytree(config.run_dir(), mine.run_dir())
    return mine


def ckpt(config: RunConfig, step: int, kind: str = "index") -> Path:
    suffix = "index" if kind == "index" else "data-00000-of-00001"
    return config.run_dir() / "checkpoints" / f"ckpt-{step}.{suffix}"


def scalars(run_dir: Path) -> list:
    """(tag, step, value) of every TensorBoard scalar of the run."""
    out = []
    for path in sorted((run_dir / "tensorboard").glob("events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                if value.metadata.plugin_data.plugin_name == "scalars":
                    out.append((value.tag, event.step, float(tf.make_ndarray(value.tensor))))
    return out


# ------------------------------------------------------------------------ 1. the state file
@pytest.mark.parametrize("state", [None, "garbage {{{ not a checkpoint state\n"])
def test_lost_or_garbage_state_file_resumes_from_the_checkpoint_files(copy, state):
    state_file = copy.run_dir() / "checkpoints" / "checkpoint"
    if state is None:
        state_file.unlink()
    else:
        state_file.write_text(state)
    kept = {step: ckpt(copy, step).stat().st_mtime_ns for step in (10, 20)}
    results = train(copy.with_settings(iterations=30), progress=False)
    assert results["step"] == 30
    # Resumed from step 20: the older checkpoints were not rewritten by a restart from 0.
    assert {step: ckpt(copy, step).stat().st_mtime_ns for step in (10, 20)} == kept
    assert tf.train.latest_checkpoint(str(copy.run_dir() / "checkpoints")).endswith("ckpt-30")
    # Sampling finds the checkpoints without the state file too.
    state_file.unlink()
    assert sample_gradients(copy.run_dir(), [2], num_estimates=3, progress=False)


# ------------------------------------------------------------------------ 2. damaged checkpoints
@pytest.mark.parametrize(
    "damage, named",
    [
        ("truncate_data", r"ckpt-20\.data-00000-of-00001"),
        ("garbage_index", r"ckpt-20\.index"),
        ("delete_data", r"ckpt-20\.data-00000-of-00001 is missing"),
    ],
)
def test_damaged_latest_checkpoint_is_named_and_the_previous_one_used(base, copy, damage, named):
    if damage == "truncate_data":
        data = ckpt(copy, 20, "data")
        data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])
    elif damage == "garbage_index":
        ckpt(copy, 20).write_bytes(b"\x00garbage, not a table" * 10)
    else:
        ckpt(copy, 20, "data").unlink()
    run_dir = copy.run_dir()
    # An explicit step names the damaged file in one line.
    with pytest.raises(DamagedCheckpointError, match=named) as info:
        load_run(run_dir, step=20)
    assert "\n" not in str(info.value)
    # Sampling and evaluation fall back to step 10 with a warning naming the file.
    with pytest.warns(UserWarning, match=named):
        written = sample_gradients(run_dir, [2], num_estimates=3, progress=False)
    with np.load(written[0]) as npz:
        assert int(npz["meta/step"]) == 10
    with pytest.warns(UserWarning, match=named):
        result = evaluate_run(run_dir, num_predictive_samples=5, repeats=2)
    assert result.step == 10 and np.all(np.isfinite(result.test_ll))
    # Training resumes from step 10 and ends where the undamaged run ended.
    (run_dir / RESULTS_FILE).unlink()
    with pytest.warns(UserWarning, match=named):
        results = train(copy, progress=False)
    assert results == {**base[1], "run_name": copy.run_name}
    # 8. Each logged step appears once, with the values of the uninterrupted run (the logs'
    # random draws follow the step, not the session).
    straight = scalars(base[0].run_dir())
    resumed = scalars(run_dir)
    counts = Counter((tag, step) for tag, step, _ in resumed)
    assert counts and max(counts.values()) == 1, [k for k, n in counts.items() if n > 1]
    drop_time = [s for s in straight if not s[0].startswith("time/")]
    assert sorted(drop_time) == sorted(s for s in resumed if not s[0].startswith("time/"))


def test_every_checkpoint_damaged_refuses_to_train_from_scratch(copy):
    for step in (10, 20):
        ckpt(copy, step, "data").write_bytes(b"")
    (copy.run_dir() / RESULTS_FILE).unlink()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(DamagedCheckpointError, match="no readable checkpoint in .*ckpt-10"):
            train(copy, progress=False)
    assert sorted(p.name for p in (copy.run_dir() / "checkpoints").glob("ckpt-*.index")) == [
        "ckpt-10.index",
        "ckpt-20.index",
    ]


def test_missing_step_message_lists_only_existing_checkpoints(copy):
    ckpt(copy, 20).unlink()  # the state file still names ckpt-20
    with pytest.raises(FileNotFoundError, match=r"no checkpoint at step 20 .*available: \[10\]$"):
        load_run(copy.run_dir(), step=20)


# ------------------------------------------------------------------------ 3. poisoned folders
def test_config_json_is_written_only_once_the_run_is_resumable(copy):
    run_dir = copy.run_dir()
    (run_dir / CONFIG_FILE).unlink()
    (run_dir / RESULTS_FILE).unlink()
    with pytest.raises(DamagedCheckpointError, match="does not fit this run's model"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            train(copy.with_settings(M=12), progress=False)
    assert not (run_dir / CONFIG_FILE).exists()
    # The correct command still resumes.
    assert train(copy.with_settings(iterations=30), progress=False)["step"] == 30
    assert load_config(run_dir).model.M == copy.model.M


def test_other_settings_are_refused_without_advice_to_delete(copy):
    with pytest.raises(ValueError, match=r"other settings \(M=8 there, 12 now\)") as info:
        train(copy.with_settings(M=12), progress=False)
    assert "delete" not in str(info.value)


def test_a_folder_without_checkpoints_may_be_restarted_with_new_settings(tmp_path):
    first = tiny(tmp_path, M=12)
    save_config(first, first.run_dir())  # a first attempt that failed before any checkpoint
    fixed = tiny(tmp_path, iterations=5, checkpoint_freq=5)
    assert train(fixed, progress=False)["step"] == 5
    assert load_config(fixed.run_dir()).model.M == 8


# ------------------------------------------------------------------------ 4. NaN
def _poison_at(monkeypatch, poison_step: int) -> None:
    """Makes the likelihood variance NaN after the callback of `poison_step` (before it, when
    that step saves a checkpoint, so the save sees NaN parameters)."""
    callback = _Session.callback

    def poisoned(self, step, bound):
        if step == poison_step:
            self.trainer.model.likelihood.variance.unconstrained_variable.assign(np.nan)
        callback(self, step, bound)

    monkeypatch.setattr(_Session, "callback", poisoned)


def test_nan_bound_stops_naming_the_step_and_the_last_good_checkpoint(tmp_path, monkeypatch):
    _poison_at(monkeypatch, 12)
    config = tiny(tmp_path)
    with pytest.raises(NonFiniteError, match=r"not finite at step 13; .*checkpoint: step 10"):
        train(config, progress=False)
    checkpoints = sorted(p.name for p in (config.run_dir() / "checkpoints").glob("*.index"))
    assert checkpoints == ["ckpt-10.index"]
    assert not (config.run_dir() / RESULTS_FILE).exists()


def test_no_checkpoint_is_written_from_non_finite_parameters(copy, monkeypatch):
    _poison_at(monkeypatch, 30)
    before = ckpt(copy, 20).stat().st_mtime_ns
    with pytest.raises(
        NonFiniteError, match=r"likelihood\.variance are not finite at step 30.*step 20"
    ):
        train(copy.with_settings(iterations=40), progress=False)
    assert not ckpt(copy, 30).exists() and ckpt(copy, 20).stat().st_mtime_ns == before


def test_a_first_attempt_that_failed_with_nan_may_be_rerun_with_a_fix(tmp_path, monkeypatch):
    _poison_at(monkeypatch, 3)
    with pytest.raises(NonFiniteError, match="last good checkpoint: none"):
        train(tiny(tmp_path, lr=0.5), progress=False)
    monkeypatch.undo()
    assert train(tiny(tmp_path, iterations=5, checkpoint_freq=5), progress=False)["step"] == 5


def test_results_json_is_strict_json(tmp_path):
    save_results({"a": float("nan"), "b": np.float64(np.inf), "c": [1.5, np.nan]}, tmp_path)
    text = (tmp_path / RESULTS_FILE).read_text()
    assert json.loads(text, parse_constant=pytest.fail) == {"a": None, "b": None, "c": [1.5, None]}
    assert dumps_strict({"x": np.float32(2.0)}) == '{"x": 2.0}'


# ------------------------------------------------------------------------ 5. settings
@pytest.mark.parametrize(
    "changes, message",
    [
        (dict(split=-1), "split must be an integer in [0, 100), got -1"),
        (dict(split=1.5), "split must be an integer, got 1.5"),
        (dict(num_IW_samples=2.5), "(num_IW_samples) must be an integer, got 2.5"),
        (dict(M=0), "M must be at least 1, got 0"),
        (dict(likelihood_variance=0.0), "likelihood_variance must be a finite number in (0, "),
        (dict(encoder_dims="a"), "encoder_dims must be comma-separated layer widths"),
        (dict(iterations="abc"), "iterations must be an integer, got 'abc'"),
        (dict(lr=float("nan")), "lr must be a finite number in (0, 1e+06], got nan"),
        (dict(lr=1e300), "lr must be a finite number in (0, 1e+06], got 1e+300"),
        (dict(lr=-0.01), "lr must be a finite number in (0, 1e+06], got -0.01"),
        (dict(minibatch_size=100000), "minibatch_size must be at most the 1998 training points"),
        (dict(fix_linear="yes"), "fix_linear must be true or false, got 'yes'"),
        (dict(mixing_init="svd"), "mixing_init must be one of reference, pca, got 'svd'"),
        (dict(precision="half"), "precision must be one of float64, mixed, got 'half'"),
        (dict(name_suffix="a/b"), "name_suffix must be a plain folder name, got 'a/b'"),
        (dict(override_name="x", name_suffix="y"), "set override_name or name_suffix, not both"),
    ],
)
def test_bad_settings_get_one_line_naming_the_key_before_anything_is_written(
    tmp_path, changes, message
):
    with pytest.raises(ConfigError) as info:
        train(tiny(tmp_path, **changes), progress=False)
    assert message in str(info.value) and "\n" not in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_ints_are_coerced_where_floats_are_meant_and_home_is_expanded():
    config = RunConfig.from_flat(
        lr=1, likelihood_variance=1, iterations=1e3, results_path="~/r"
    ).validated()
    assert isinstance(config.training.lr, float) and config.training.lr == 1.0
    assert config.training.iterations == 1000 and isinstance(config.training.iterations, int)
    assert config.results_path == os.path.expanduser("~/r") and "~" not in config.results_path


# ------------------------------------------------------------------------ 6. write failures
def _refuse_writes(monkeypatch):
    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(os, "replace", refuse)
    monkeypatch.setattr(Path, "write_text", refuse)
    monkeypatch.setattr(Path, "write_bytes", refuse)


def test_a_finished_run_reruns_without_writing(base, copy, monkeypatch):
    _refuse_writes(monkeypatch)
    assert train(copy, progress=False)["step"] == 20


def test_evaluation_returns_its_results_when_the_cache_cannot_be_written(copy, monkeypatch):
    _refuse_writes(monkeypatch)
    with pytest.warns(UserWarning, match=f"results not cached: cannot write .*{EVALUATION_FILE}"):
        result = evaluate_run(copy.run_dir(), num_predictive_samples=5, repeats=2)
    assert result.step == 20 and result.test_ll.shape == (2,)


def test_a_write_failure_names_the_path_in_one_line(tmp_path, monkeypatch):
    _refuse_writes(monkeypatch)
    with pytest.raises(OSError, match=r"^cannot write .*config\.json: Permission denied$"):
        train(tiny(tmp_path), progress=False)


# ------------------------------------------------------------------------ 7. two trainers
def test_a_second_trainer_in_the_same_folder_is_refused(copy):
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from dgp_snr.io import RunLock; "
            f"lock = RunLock({str(copy.run_dir())!r}).acquire(); print('locked', flush=True); "
            "time.sleep(120)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(
            RunLockedError, match=f"in use by another process \\(PID {holder.pid}\\)"
        ):
            train(copy.with_settings(iterations=30), progress=False)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    # The dead holder's lock is not stale: training goes on.
    assert train(copy.with_settings(iterations=30), progress=False)["step"] == 30
    with RunLock(copy.run_dir()):
        with pytest.raises(RunLockedError, match=f"PID {os.getpid()}"):
            RunLock(copy.run_dir()).acquire()


# ------------------------------------------------------------------------ 11. smaller
def test_corrupt_config_json_is_named(copy):
    (copy.run_dir() / CONFIG_FILE).write_text('{"dataset": "demo_norm')
    with pytest.raises(ValueError, match=r"corrupt .*config\.json: "):
        load_run(copy.run_dir())


def test_a_dump_with_a_damaged_array_is_reported_when_sampling_again(copy):
    run_dir = copy.run_dir()
    (path,) = sample_gradients(run_dir, [2], num_estimates=50, progress=False)
    payload = bytearray(path.read_bytes())
    start = payload.index(b"layer0/W0.npy") + 200  # inside that member's array bytes
    payload[start : start + 16] = bytes(16)
    path.write_bytes(bytes(payload))
    with pytest.raises(ValueError, match=f"corrupt gradient dump {path}"):
        sample_gradients(run_dir, [2], num_estimates=50, progress=False)
    assert path == dump_path(run_dir, "dreg", 1, 2, 0)


def test_math_is_finite_for_saved_results(base):
    """The base run's results.json is strict JSON with finite metrics."""
    config, results = base
    text = (config.run_dir() / RESULTS_FILE).read_text()
    saved = json.loads(text, parse_constant=pytest.fail)
    assert saved == results and math.isfinite(saved["test_loglik"])


# ------------------------------------------------------------------------ 10 and 12. scripts
ROOT = Path(__file__).resolve().parents[1]


class _Runs:
    def __reduce__(self):
        return (print, ("PICKLE RAN CODE",))


def test_config_files_are_plain_data_only(tmp_path):
    from sacred.config import config_files

    from dgp_snr.scripting import check_config_files, install_safe_config_loaders

    evil = tmp_path / "evil.json"
    evil.write_text(json.dumps({"M": {"py/function": "builtins.print"}}))
    pickled = tmp_path / "settings.pickle"
    pickled.write_bytes(__import__("pickle").dumps({"M": _Runs()}))
    plain = tmp_path / "plain.json"
    plain.write_text(json.dumps({"M": 12, "lr": 0.01}))
    install_safe_config_loaders()
    with pytest.raises(ValueError, match=r"evil\.json: 'py/' tags are not accepted \(M\.py/"):
        config_files.load_config_file(str(evil))
    with pytest.raises(ValueError, match=r"settings\.pickle: pickle files are not accepted"):
        config_files.load_config_file(str(pickled))
    assert config_files.load_config_file(str(plain)) == {"M": 12, "lr": 0.01}
    with pytest.raises(ValueError, match="pickle files are not accepted"):
        check_config_files(["with", "M=3", str(pickled)])
    check_config_files(["with", str(plain), "M=3"])


def _script_output(*args: str) -> subprocess.CompletedProcess:
    """A script run as a newcomer runs it: without TF_CPP_MIN_LOG_LEVEL in the environment."""
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    return subprocess.run(
        [sys.executable, str(ROOT / "experiments" / args[0]), *args[1:]],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def test_train_script_refuses_a_jsonpickle_file_in_one_quiet_line(tmp_path):
    evil = tmp_path / "evil.json"
    evil.write_text(json.dumps({"M": {"py/reduce": [{"py/function": "builtins.print"}]}}))
    done = _script_output("train.py", "with", str(evil), f"results_path={tmp_path}")
    assert done.returncode == 2
    assert done.stdout == ""  # nothing ran (print would write here)
    assert done.stderr.splitlines() == [
        f"train.py: error: config file {evil}: 'py/' tags are not accepted (M.py/reduce, "
        "M.py/reduce[0].py/function); "
        "use plain JSON values"
    ]  # and no TensorFlow start-up lines


def test_train_script_names_a_bad_split_in_one_line_before_writing(tmp_path):
    done = _script_output("train.py", "with", "split=-1", f"results_path={tmp_path}")
    assert done.returncode == 2
    assert "train.py: error: split must be an integer in [0, 100), got -1" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert list(tmp_path.iterdir()) == []
