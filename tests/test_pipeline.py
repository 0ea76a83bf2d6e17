"""The training and gradient-sampling pipeline end to end on demo_normalized with tiny settings:
train, interrupt (SIGINT, SIGTERM, SIGKILL), resume, sample gradients (raw and aggregated), the
two experiment scripts, and the errors bad inputs get."""

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from dgp_snr.data import DataError
from dgp_snr.gradient_dumps import dump_path, load_gradient_dump
from dgp_snr.runs import RESULTS_FILE, RunConfig, load_run, save_config
from dgp_snr.sample_run import mean_snr, sample_gradients
from dgp_snr.train_run import (
    TrainingInterrupted,
    _Session,
    _SignalGuard,
    train,
)

ROOT = Path(__file__).resolve().parents[1]
TINY = dict(
    dataset="demo_normalized",
    configuration="L1",
    M=16,
    num_IW_samples=5,
    minibatch_size=32,
    estimator="dreg",
    iterations=20,
    checkpoint_freq=10,
    num_predict_samples=20,
    log_main_freq=5,
    log_test_freq=10,
    log_snr_freq=10,
)
RESULT_KEYS = (
    "test_loglik",
    "test_loglik_unnormalized",
    "test_rmse",
    "test_rmse_unnormalized",
    "train_elbo",
    "test_elbo",
    "shapiro_w_median",
)


def tiny(results_path, **changes) -> RunConfig:
    return RunConfig.from_flat(**{**TINY, "results_path": str(results_path), **changes})


def checkpoint_tensors(run_dir: Path, step: int) -> dict:
    """Every numeric tensor of a checkpoint (model, optimisers, step and random states)."""
    reader = tf.train.load_checkpoint(str(run_dir / "checkpoints" / f"ckpt-{step}"))
    out = {}
    for key in reader.get_variable_to_shape_map():
        if "save_counter" in key or key.startswith("_CHECKPOINTABLE_OBJECT_GRAPH"):
            continue  # how many saves there were differs between the two runs
        out[key] = reader.get_tensor(key)
    return out


def latest_step(run_dir: Path):
    path = tf.train.latest_checkpoint(str(run_dir / "checkpoints"))
    return None if path is None else int(path.rsplit("-", 1)[1])


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """20 iterations in one go (DReG, all logs on)."""
    config = tiny(tmp_path_factory.mktemp("straight"))
    return config, train(config, progress=False)


def test_run_directory(straight):
    config, results = straight
    run_dir = config.run_dir()
    assert run_dir.name == "demo_normalized_L1_IWAE_SF0_K5_BS32_dreg"
    assert json.loads((run_dir / RESULTS_FILE).read_text()) == results
    assert results["step"] == 20
    for key in RESULT_KEYS:
        assert np.isfinite(results[key]), key
    assert 0 < results["shapiro_w_median"] <= 1
    assert sorted(os.listdir(run_dir / "checkpoints")) == [
        "checkpoint",
        "ckpt-10.data-00000-of-00001",
        "ckpt-10.index",
        "ckpt-20.data-00000-of-00001",
        "ckpt-20.index",
    ]
    # The directory alone rebuilds the run.
    model, trainer, data, loaded = load_run(run_dir)
    assert loaded == config and int(trainer.step.numpy()) == 20

    tags = set()
    for events in (run_dir / "tensorboard").iterdir():
        for event in tf.compat.v1.train.summary_iterator(str(events)):
            tags.update(v.tag for v in event.summary.value)
    for tag in (
        "train/minibatch_bound",
        "train/bound",
        "train/dreg_objective",
        "learning_rate/lr",
        "learning_rate/encoder_lr",
        "learning_rate/gamma",
        "kernel/layer1/lengthscale0",
        "kernel/layer1/lengthscales",
        "encoder/layer0/mean",
        "encoder/layer0/scale_avg",
        "test/test_loglik",
        "test/test_rmse_unnormalized",
        "snr/dreg/all",
        "snr/dreg/layer0/W0",
        "final/test_loglik",
    ):
        assert tag in tags, tag


def test_rerun_of_a_complete_run_only_returns_its_results(straight):
    config, results = straight
    files = [config.run_dir() / "checkpoints" / "ckpt-20.index", config.run_dir() / RESULTS_FILE]
    before = [f.stat().st_mtime_ns for f in files]
    assert train(config, progress=False) == results
    assert [f.stat().st_mtime_ns for f in files] == before  # neither trained nor evaluated


def test_signals_save_a_checkpoint_and_resume_reproduces_the_straight_run(
    straight, tmp_path, monkeypatch
):
    """SIGINT at step 13 and SIGTERM at step 17 each save a checkpoint; resuming from them
    ends exactly where the straight run ends (the checkpoints hold the random states)."""
    config, results = straight
    signals = {13: signal.SIGINT, 17: signal.SIGTERM}
    callback = _Session.callback

    def interrupting(self, step, bound):
        callback(self, step, bound)
        if step in signals:
            signal.raise_signal(signals.pop(step))

    monkeypatch.setattr(_Session, "callback", interrupting)
    handlers = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    resumed = config.with_settings(results_path=str(tmp_path), log_snr_freq=0, log_test_freq=0)
    for step, signum in ((13, signal.SIGINT), (17, signal.SIGTERM)):
        with pytest.raises(TrainingInterrupted) as info:
            train(resumed, progress=False)
        assert info.value.step == step and info.value.signum == signum
        assert latest_step(resumed.run_dir()) == step
        assert not (resumed.run_dir() / RESULTS_FILE).exists()
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == handlers
    assert train(resumed, progress=False) == results
    a = checkpoint_tensors(config.run_dir(), 20)
    b = checkpoint_tensors(resumed.run_dir(), 20)
    assert a.keys() == b.keys() and len(a) > 20
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_signal_during_a_save_waits_for_it():
    with _SignalGuard() as guard:
        with pytest.raises(TrainingInterrupted):
            with guard.deferred():
                signal.raise_signal(signal.SIGINT)
                done = True  # reached: the signal waits for the block's end
        assert done


def test_a_run_with_other_settings_in_the_directory_is_refused(straight):
    config, _ = straight
    with pytest.raises(ValueError, match=r"other settings \(M=16 there, 32 now\)"):
        train(config.with_settings(M=32), progress=False)


def test_bad_settings_fail_before_anything_is_written(tmp_path):
    with pytest.raises(DataError, match="unknown dataset 'no_such_set'"):
        train(tiny(tmp_path, dataset="no_such_set"), progress=False)
    with pytest.raises(ValueError, match="bad token 'X3' in configuration 'L1_X3'"):
        train(tiny(tmp_path, configuration="L1_X3"), progress=False)
    with pytest.raises(ValueError, match="unknown estimator 'nope'"):
        train(tiny(tmp_path, estimator="nope"), progress=False)
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------- gradients
def test_sample_gradients_raw_one_datapoint_at_a_time(straight):
    config, _ = straight
    run_dir = config.run_dir()
    model, _, _, _ = load_run(run_dir)
    shapes = {f"layer0/{v.name.split(':')[0]}": tuple(v.shape) for v in model.encoder_variables}
    written = sample_gradients(
        run_dir, [1, 3], num_estimates=40, num_datapoints=2, estimator="dreg", progress=False
    )
    expected = [dump_path(run_dir, "dreg", 1, K, dp) for dp in (0, 1) for K in (1, 3)]
    assert written == expected
    for path in written:
        with np.load(path, allow_pickle=False) as npz:  # no pickled objects inside
            arrays = {k: npz[k] for k in npz.files}
        assert {k for k in arrays if not k.startswith("meta/")} == set(shapes)
        for name, shape in shapes.items():
            assert arrays[name].shape == (40, *shape)
            assert np.all(np.isfinite(arrays[name]))
        assert arrays["meta/step"] == 20 and arrays["meta/num_samples"] == 40
        assert str(arrays["meta/estimator"]) == "dreg"
    dump = load_gradient_dump(expected[3])
    assert dump.meta["K"] == 3 and dump.meta["datapoint"] == 1 and dump.meta["batch_start"] == 1
    # Existing files are skipped.
    assert sample_gradients(run_dir, [1, 3], num_estimates=40, num_datapoints=2) == []
    # Independent estimates: they differ, and the SNR is finite for the weights.
    assert np.std(dump.samples["layer0/W0"], 0).min() > 0
    assert np.isfinite(mean_snr(dump.samples)["all"])


def test_sample_gradients_aggregates_of_a_batch(straight):
    config, _ = straight
    run_dir = config.run_dir()
    written = sample_gradients(
        run_dir,
        [2],
        num_estimates=30,
        batch_size=8,
        estimator="reg",
        save_aggregates=True,
        step=10,
        progress=False,
    )
    assert written == [dump_path(run_dir, "reg", 8, 2, aggregates=True)]
    dump = load_gradient_dump(written[0])
    assert dump.samples is None
    assert dump.meta["step"] == 10 and dump.meta["datapoint"] == -1
    assert dump.mean["layer0/W1"].shape == dump.std["layer0/W1"].shape == (20, 20)
    assert all(np.all(np.isfinite(v)) for v in (*dump.mean.values(), *dump.std.values()))


def test_sample_gradients_errors(straight, tmp_path):
    config, _ = straight
    run_dir = config.run_dir()
    with pytest.raises(
        ValueError, match=r"num_importance_samples \(K\) must be an integer of at least 1, got 0"
    ):
        sample_gradients(run_dir, [1, 0])
    with pytest.raises(ValueError, match="unknown estimator 'drag'; known estimators: reg"):
        sample_gradients(run_dir, [1], estimator="drag")
    with pytest.raises(ValueError, match="num_datapoints applies to batch_size 1"):
        sample_gradients(run_dir, [1], batch_size=4, num_datapoints=2)
    with pytest.raises(FileNotFoundError, match="config.json is missing"):
        sample_gradients(tmp_path, [1])
    empty = tiny(tmp_path)
    save_config(empty, empty.run_dir())
    with pytest.raises(FileNotFoundError, match="has no checkpoint in checkpoints/ yet"):
        sample_gradients(empty.run_dir(), [1])
    with pytest.raises(FileNotFoundError, match="no checkpoint at step 7"):
        sample_gradients(run_dir, [4], step=7)
    corrupt = dump_path(run_dir, "stl", 1, 5, 0)
    corrupt.write_bytes(b"PK\x03\x04 not really a zip file")
    with pytest.raises(ValueError, match="corrupt gradient dump .*stl_bs1_K5_dp0.npz"):
        sample_gradients(run_dir, [5], estimator="stl")
    with pytest.raises(ValueError, match="corrupt gradient dump"):
        load_gradient_dump(corrupt)
    corrupt.unlink()


# ------------------------------------------------------------------------------- the scripts
def script(name: str, *args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(ROOT / "experiments" / name), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        **kwargs,
    )


def train_args(results: Path, iterations: int) -> list:
    settings = {**TINY, "iterations": iterations, "results_path": str(results)}
    settings.update(log_snr_freq=0, log_test_freq=0, log_main_freq=10)
    return ["with", *(f"{k}={v}" for k, v in settings.items())]


def test_precision_errors_benchmark_on_a_trained_run(straight):
    """benchmarks/precision_errors.py on a trained run folder: each mixed-precision sampler
    estimate is within the 4 u κ(Lm) of tests/test_precision.py, and no training-gradient entry
    is off by more than a hundredth of its own Monte Carlo standard deviation (which changes
    that entry's variance by 1e-4 relative: invisible to stochastic optimisation)."""
    path = ROOT / "benchmarks" / "precision_errors.py"
    spec = importlib.util.spec_from_file_location("precision_errors", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config, _ = straight
    out = module.compare(str(config.run_dir()))
    (conditioning,) = out["conditioning"].values()
    kappa = np.sqrt(conditioning["cond_Kmm"])
    assert set(out["sampler_relative_error"]) == {
        f"{e}_K{k}" for e in ("reg", "dreg") for k in (1, 10, 100)
    }
    assert 0 < out["max_sampler_relative_error"] <= 4.0 * 2.0**-24 * kappa
    assert 0 <= out["max_training_err_over_noise_sd"] <= 1e-2


@pytest.mark.long
def test_train_script_survives_sigkill_and_resumes(tmp_path):
    run_dir = tiny(tmp_path).run_dir()
    killed = script("train.py", *train_args(tmp_path, 100_000))
    try:
        deadline = time.monotonic() + 150
        while latest_step(run_dir) is None or latest_step(run_dir) < 30:
            assert killed.poll() is None, killed.communicate()[0]
            assert time.monotonic() < deadline, "no checkpoint in time"
            time.sleep(0.05)
        killed.send_signal(signal.SIGKILL)
    finally:
        killed.kill()
        killed.communicate()
    step = latest_step(run_dir)
    assert step % 10 == 0 and not (run_dir / RESULTS_FILE).exists()
    checkpoint_tensors(run_dir, step)  # readable

    resumed = script("train.py", *train_args(tmp_path, step + 10))
    out = resumed.communicate(timeout=150)[0]
    assert resumed.returncode == 0, out
    assert f"resuming from step {step}" in out
    results = json.loads((run_dir / RESULTS_FILE).read_text())
    assert results["step"] == step + 10 and np.isfinite(results["test_loglik"])
    # Sacred's default file observer recorded both sessions.
    runs = sorted((tmp_path / "sacred").glob("[0-9]*/run.json"))
    assert [json.loads(p.read_text())["status"] for p in runs] == ["RUNNING", "COMPLETED"]
    assert json.loads((runs[1].parent / "config.json").read_text())["seed"] == 0

    # The sampling script on the finished run; its usage errors need no TensorFlow.
    sampled = script(
        "sample_gradients.py",
        run_dir.name,
        "--results_path",
        str(tmp_path),
        "--ks",
        "1,2",
        "--num_estimates",
        "10",
        "--save_aggregates",
        "--no_progress",
    )
    out = sampled.communicate(timeout=120)[0]
    assert sampled.returncode == 0, out
    assert dump_path(run_dir, "dreg", 1, 2, 0, aggregates=True).is_file()
    for ks, message in (
        ("1,0", "num_importance_samples (K) must be an integer of at least 1, got 0"),
        ("1,x", "integers"),
    ):
        bad = script("sample_gradients.py", str(run_dir), "--ks", ks)
        assert message in bad.communicate(timeout=30)[0] and bad.returncode == 2
