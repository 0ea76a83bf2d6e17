"""Training a run end to end: build or resume it, train with checkpoints and TensorBoard logs,
survive interruptions, and compute its final results.

`train(config)` is what experiments/train.py calls. The run directory (RunConfig.run_dir) holds
config.json, checkpoints/ (every checkpoint_freq iterations, at the end and on SIGINT/SIGTERM),
tensorboard/ and results.json. Running it again resumes from the latest checkpoint; a run whose
results.json belongs to its final checkpoint is not trained again.
"""

import json
import math
import signal
import sys
import threading
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any, Dict, Iterator, Optional, Tuple

import gpflow
import numpy as np
import scipy.stats
import tensorflow as tf
from tensorflow.core.framework import summary_pb2
from tqdm.auto import tqdm

from dgp_snr.data import RegressionData
from dgp_snr.estimators import Estimator
from dgp_snr.evaluation import Evaluator
from dgp_snr.io import RunLock, atomic_path
from dgp_snr.layers import GPLayer
from dgp_snr.models import DeepGP
from dgp_snr.runs import (
    CONFIG_FILE,
    RESULTS_FILE,
    RunCheckpoints,
    RunConfig,
    build_run,
    checkpoint_steps,
    load_config,
    save_config,
    save_results,
)
from dgp_snr.sample_run import encoder_snr
from dgp_snr.seeds import Stream, derived_rng, derived_seed
from dgp_snr.training import Trainer
from dgp_snr.training_record import TrainingSession

TENSORBOARD_DIR = "tensorboard"

#: Settings that may change between a run's sessions; every other one must match config.json.
RUN_CONTROL_FIELDS = frozenset(
    {
        "iterations",
        "results_path",
        "checkpoint_freq",
        "log_snr_freq",
        "log_main_freq",
        "log_test_freq",
        "num_predictive_samples",
        "assert_no_nans",
    }
)

#: The fixed batch of the in-training logs is the first min(minibatch, LOG_BATCH_MAX) points.
LOG_BATCH_MAX = 512
#: Gradient estimates per in-training SNR log (at the run's K and estimator).
SNR_NUM_ESTIMATES = 100
#: Predictive samples of the in-training test log-likelihood (the final one uses
#: logging.num_predictive_samples).
TEST_LOG_SAMPLES = 100
#: Test points whose predictive samples get a Shapiro-Wilk test (the first ones of the test set).
SHAPIRO_POINTS = 100
#: scipy's Shapiro-Wilk p-value is only accurate up to 5000 samples.
SHAPIRO_MAX_SAMPLES = 5000


class TrainingInterrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM arrived during training; the checkpoint was saved before this rose."""

    def __init__(self, signum: int, step: Optional[int] = None):
        self.signum = signum
        self.step = step
        where = "" if step is None else f" at step {step}; checkpoint saved"
        super().__init__(f"interrupted by {signal.Signals(signum).name}{where}")

    @property
    def exit_code(self) -> int:
        """128 + the signal number, as a shell reports a process ended by the signal."""
        return 128 + self.signum


class NonFiniteError(FloatingPointError):
    """The bound or the parameters became non-finite; nothing was saved from that state."""


class _SignalGuard:
    """Turns SIGINT and SIGTERM into TrainingInterrupted in the main thread, held back while a
    checkpoint is written so that no save is cut short by Ctrl-C."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self._old: Dict[int, Any] = {}
        self._deferring = False
        self._pending: Optional[int] = None

    def __enter__(self) -> "_SignalGuard":
        if threading.current_thread() is threading.main_thread():  # only it may set handlers
            for signum in self.SIGNALS:
                self._old[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for signum, handler in self._old.items():
            signal.signal(signum, handler)
        self._old.clear()

    def _handle(self, signum: int, frame: Any) -> None:
        if self._deferring:
            self._pending = signum
            return
        raise TrainingInterrupted(signum)

    @contextmanager
    def deferred(self) -> Iterator[None]:
        """Signals arriving inside the block are raised when it ends."""
        self._deferring = True
        try:
            yield
        finally:
            self._deferring = False
        if self._pending is not None:
            signum, self._pending = self._pending, None
            raise TrainingInterrupted(signum)


# ------------------------------------------------------------------------------- evaluation
def _test_metrics(
    evaluator: Evaluator, data: RegressionData, num_predictive_samples: int, seed: int
) -> Dict[str, float]:
    """Mean test log-likelihood (num_predictive_samples samples S) and RMSE of the predictive
    mean, in the normalised units and in the original units of Y (the log-likelihood shifts by
    -log Y_std, the RMSE scales)."""
    lpd, mean = evaluator.log_predictive_density_and_mean(
        data.X_test, data.Y_test, num_predictive_samples, seed=seed
    )
    y_std = float(data.Y_std.squeeze())
    rmse = float(np.sqrt(np.mean(np.square(data.Y_test[:, 0] - mean))))
    test_loglik = float(np.mean(lpd))
    return {
        "test_loglik": test_loglik,
        "test_loglik_unnormalized": test_loglik - float(np.log(y_std)),
        "test_rmse": rmse,
        "test_rmse_unnormalized": rmse * y_std,
    }


def _median_shapiro_w(
    evaluator: Evaluator, X: np.ndarray, num_predictive_samples: int, seed: int
) -> float:
    """Median over the first SHAPIRO_POINTS points of X of the Shapiro-Wilk W statistic of each
    point's min(num_predictive_samples, SHAPIRO_MAX_SAMPLES) predictive samples (1:
    indistinguishable from a normal)."""
    S = min(num_predictive_samples, SHAPIRO_MAX_SAMPLES)
    if S < 3:  # Shapiro-Wilk needs three samples
        return float("nan")
    samples = evaluator.predictive_samples_at(X[:SHAPIRO_POINTS], S, seed=seed)  # [N, S]
    return float(np.median([scipy.stats.shapiro(s).statistic for s in samples]))


def final_results(model: DeepGP, data: RegressionData, config: RunConfig) -> Dict[str, Any]:
    """The run's results at the model's current state: test log-likelihood
    (logging.num_predictive_samples samples) and RMSE (normalised and original units), train
    and test ELBO per data point (the model's K; Evaluator.mean_bound_per_point), and the
    median Shapiro-Wilk W of the predictive samples. Deterministic in the run's seed (the
    Evaluator's draws are stateless)."""
    # One seed per quantity, so that the train and test ELBOs draw independent noise.
    seeds = [derived_seed(config.effective_seed, Stream.FINAL_RESULTS, tag) for tag in range(3)]
    evaluator = Evaluator(model)
    S = config.logging.num_predictive_samples
    results: Dict[str, Any] = _test_metrics(evaluator, data, S, seeds[0])
    results["train_elbo"] = float(
        evaluator.mean_bound_per_point(data.X_train, data.Y_train, seed=seeds[1])[0]
    )
    results["test_elbo"] = float(
        evaluator.mean_bound_per_point(data.X_test, data.Y_test, seed=seeds[2])[0]
    )
    results["shapiro_w_median"] = _median_shapiro_w(evaluator, data.X_test, S, seeds[0])
    results["num_predict_samples"] = S  # results.json's key since the first runs
    results["num_test_points"] = int(data.X_test.shape[0])
    return results


# ------------------------------------------------------------------------------- logging
# tf.summary.scalar/histogram live in the tensorboard package, which is not a dependency; the
# core tf.summary.write with TensorBoard's plugin metadata writes the same records without it.
_SCALARS = summary_pb2.SummaryMetadata(
    plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars")
)
_HISTOGRAMS = summary_pb2.SummaryMetadata(
    plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="histograms")
)


def _scalar(name: str, value: Any) -> None:
    """A TensorBoard scalar at the default writer's step."""
    value = value.numpy() if hasattr(value, "numpy") else value  # tensors and gpflow Parameters
    tf.summary.write(name, tf.constant(float(value), tf.float32), metadata=_SCALARS)


def _histogram(name: str, values: Any, buckets: int = 30) -> None:
    """A TensorBoard histogram: [buckets, 3] rows of (left edge, right edge, count)."""
    values = values.numpy() if hasattr(values, "numpy") else values
    values = np.asarray(values, dtype=np.float64).ravel()
    values = values[np.isfinite(values)]
    if values.size == 0:
        return
    lo, hi = float(values.min()), float(values.max())
    if lo == hi:
        lo, hi = lo - 0.5, hi + 0.5
    counts, edges = np.histogram(values, bins=buckets, range=(lo, hi))
    table = np.stack([edges[:-1], edges[1:], counts.astype(np.float64)], axis=1)
    tf.summary.write(name, tf.constant(table), metadata=_HISTOGRAMS)


class _RunLogger:
    """TensorBoard scalars and histograms of a run, on a fixed batch and with its own random
    draws (so logging leaves the training trajectory alone)."""

    def __init__(self, model: DeepGP, data: RegressionData, config: RunConfig, run_dir: Path):
        self.model = model
        self.data = data
        self.config = config
        self.writer = tf.summary.create_file_writer(str(run_dir / TENSORBOARD_DIR))
        seed = config.effective_seed
        batch = min(config.training.minibatch_size or data.N, data.N, LOG_BATCH_MAX)
        self.X = tf.constant(data.X_train[:batch])
        self.Y = tf.constant(data.Y_train[:batch])
        # Reseeded from (seed, step) at every log, so a resumed run logs the same draws as an
        # uninterrupted one.
        self.rng = derived_rng(seed, Stream.TRAINING_LOGS, 0)
        self.snr_rng = derived_rng(seed, Stream.TRAINING_LOGS, 1)
        # Logs, never draws from the model's generator: training does not depend on logging.
        self.with_dreg = _supports(model, Estimator.DREG)
        self.with_snr = (
            bool(config.logging.log_snr_freq)
            and bool(model.latent_layers)
            and not all(layer.fix_q for layer in model.latent_layers)
        )
        self._terms = tf.function(self._batch_terms)
        self._evaluator: Optional[Evaluator] = None
        self._last: Optional[Tuple[int, float]] = None

    def _batch_terms(self) -> Dict[str, Any]:
        K = self.model.num_importance_samples
        noise = self.model.draw_noise(tf.shape(self.X)[0], K, self.rng)
        prop = self.model.propagate(self.X, self.Y, K, noise=noise)
        out: Dict[str, Any] = {"bound": self.model.bound(prop, self.Y)}
        if self.with_dreg:
            out["dreg_objective"] = self.model.encoder_surrogate(prop, self.Y, "dreg")
        out["encoder"] = [(s.mean, s.scale) for s in prop.latent]
        return out

    def main(self, step: int, bound: float, lrs: Dict[str, float]) -> None:
        """Bound, DReG objective, learning rates, kernels, likelihood, encoder statistics."""
        self.rng.reset_from_seed(
            derived_seed(self.config.effective_seed, Stream.TRAINING_LOGS, 0, step)
        )
        terms = self._terms()
        now = time.perf_counter()
        with self.writer.as_default(step=step):
            _scalar("train/minibatch_bound", bound)
            _scalar("train/bound", terms["bound"])
            _scalar("train/elbo_per_point", terms["bound"] / self.model.num_data)
            if "dreg_objective" in terms:
                _scalar("train/dreg_objective", terms["dreg_objective"])
            for name, value in lrs.items():
                _scalar(f"learning_rate/{name}", value)
            if self._last is not None and step > self._last[0]:
                _scalar("time/iterations_per_s", (step - self._last[0]) / (now - self._last[1]))
            _scalar("likelihood/variance", self.model.likelihood.variance)
            for i, layer in enumerate(self.model.layers):
                if isinstance(layer, GPLayer):
                    lengthscales = np.atleast_1d(layer.kernel.lengthscales.numpy())
                    _histogram(f"kernel/layer{i}/lengthscales", lengthscales)
                    if lengthscales.size <= 16:
                        for j, value in enumerate(lengthscales):
                            _scalar(f"kernel/layer{i}/lengthscale{j}", value)
                    _scalar(f"kernel/layer{i}/variance", layer.kernel.variance)
            for i, (mean, scale) in zip(self.model.latent_positions, terms["encoder"]):
                _histogram(f"encoder/layer{i}/mean", mean)
                _histogram(f"encoder/layer{i}/scale", scale)
                _scalar(f"encoder/layer{i}/mean_avg", tf.reduce_mean(mean))
                _scalar(f"encoder/layer{i}/mean_std", tf.math.reduce_std(mean))
                _scalar(f"encoder/layer{i}/scale_avg", tf.reduce_mean(scale))
                _scalar(f"encoder/layer{i}/scale_min", tf.reduce_min(scale))
        self._last = (step, now)

    def test(self, step: int) -> Dict[str, float]:
        """Test log-likelihood and RMSE with TEST_LOG_SAMPLES predictive samples (the same
        draws at every step, so the logged curve shows the model's changes, not new noise)."""
        if self._evaluator is None:
            self._evaluator = Evaluator(self.model)
        S = min(TEST_LOG_SAMPLES, self.config.logging.num_predictive_samples)
        seed = derived_seed(self.config.effective_seed, Stream.TRAINING_LOGS, 2)
        metrics = _test_metrics(self._evaluator, self.data, S, seed)
        with self.writer.as_default(step=step):
            for name, value in metrics.items():
                _scalar(f"test/{name}", value)
        return metrics

    def snr(self, step: int) -> Dict[str, float]:
        """Mean SNR of the encoder gradients of the run's estimator at the run's K on the log
        batch (SNR_NUM_ESTIMATES estimates), per parameter and overall."""
        K, estimator = self.model.num_importance_samples, self.config.training.estimator
        self.snr_rng.reset_from_seed(
            derived_seed(self.config.effective_seed, Stream.TRAINING_LOGS, 1, step)
        )
        values = encoder_snr(
            self.model, self.X, self.Y, K, SNR_NUM_ESTIMATES, estimator, self.snr_rng
        )
        with self.writer.as_default(step=step):
            for name, value in values.items():
                _scalar(f"snr/{estimator}/{name}", value)
        return values

    def results(self, step: int, results: Dict[str, Any]) -> None:
        with self.writer.as_default(step=step):
            for name, value in results.items():
                if isinstance(value, float):
                    _scalar(f"final/{name}", value)
        self.writer.flush()


def _supports(model: DeepGP, estimator: Estimator) -> bool:
    try:
        model.check_estimator(estimator)
    except ValueError:
        return False
    return True


def _every(freq: Optional[int], step: int) -> bool:
    return bool(freq) and step % int(freq) == 0


# ------------------------------------------------------------------------------- the run
def check_resumable(config: RunConfig, run_dir: Path) -> None:
    """Raises ValueError when run_dir holds checkpoints of a run with other settings (other
    than the RUN_CONTROL_FIELDS), which they would not fit. A folder without a checkpoint may
    be started again with new settings."""
    if not (run_dir / CONFIG_FILE).is_file() or not checkpoint_steps(run_dir):
        return
    saved = load_config(run_dir)
    old, new = saved.to_flat(), config.to_flat()
    old["seed"] = saved.effective_seed
    new["seed"] = config.effective_seed
    diffs = [
        f"{key}={old.get(key)!r} there, {new[key]!r} now"
        for key in new
        if key not in RUN_CONTROL_FIELDS and old.get(key) != new[key]
    ]
    if diffs:
        raise ValueError(
            f"{run_dir} holds checkpoints of a run with other settings ({'; '.join(diffs)}); "
            f"rerun with the settings in its {CONFIG_FILE} to resume it, or use another "
            "results_path"
        )


def purge_events_after(directory: Path, step: Optional[int]) -> None:
    """Drops the TensorBoard summaries of steps after `step` (all of them for None) from the
    event files in `directory`: a resumed run logs those steps again, and each step must appear
    once. An event file cut short by a kill keeps its readable part."""
    if not directory.is_dir():
        return
    last = -1 if step is None else step
    for path in sorted(directory.glob("events.out.tfevents.*")):
        kept, dropped = [], False
        try:
            for event in tf.compat.v1.train.summary_iterator(str(path)):
                if event.HasField("summary") and event.step > last:
                    dropped = True
                else:
                    kept.append(event)
        except tf.errors.DataLossError:
            dropped = True
        if not dropped:
            continue
        if not any(event.HasField("summary") for event in kept):
            path.unlink()
            continue
        with atomic_path(path) as tmp, tf.io.TFRecordWriter(str(tmp)) as writer:
            for event in kept:
                writer.write(event.SerializeToString())


def _say(message: str, verbose: bool) -> None:
    if verbose:
        tqdm.write(message, file=sys.stderr)


def _load_results(run_dir: Path) -> Optional[Dict[str, Any]]:
    path = run_dir / RESULTS_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        return None  # an unreadable file is recomputed


def _complete_results(config: RunConfig, run_dir: Path) -> Optional[Dict[str, Any]]:
    """The saved results when they belong to the run's final checkpoint (found without writing
    anything, so a finished run can be rerun from a read-only folder)."""
    steps = checkpoint_steps(run_dir)
    if not steps or not (run_dir / CONFIG_FILE).is_file():
        return None
    saved = _load_results(run_dir)
    if (
        saved is not None
        and saved.get("step") == steps[-1]
        and saved.get("num_predict_samples") == config.logging.num_predictive_samples
        and steps[-1] >= config.training.iterations
    ):
        return saved
    return None


def train(config: RunConfig, progress: bool = True) -> Dict[str, Any]:
    """Trains the run of `config` to config.training.iterations and returns its results (as
    saved in <run_dir>/results.json).

    Resumes from the newest readable checkpoint; returns the saved results at once when they
    belong to a final checkpoint. On SIGINT or SIGTERM saves a checkpoint and raises
    TrainingInterrupted (a KeyboardInterrupt). Raises ValueError (ConfigError, DataError) for
    bad settings before anything is written, RunLockedError when another process trains in the
    run folder, and NonFiniteError, without saving, when the bound or parameters become
    non-finite."""
    config = config.validated()
    run_dir = config.run_dir()
    model, trainer, data = build_run(config)  # validates the settings and the data
    check_resumable(config, run_dir)
    saved = _complete_results(config, run_dir)
    if saved is not None:
        _say(
            f"{run_dir.name}: complete at step {saved['step']}; results.json is up to date",
            progress,
        )
        return saved
    with RunLock(run_dir):
        return _train_locked(config, run_dir, model, trainer, data, progress)


def _train_locked(
    config: RunConfig,
    run_dir: Path,
    model: DeepGP,
    trainer: Trainer,
    data: RegressionData,
    progress: bool,
) -> Dict[str, Any]:
    checkpoints = RunCheckpoints(trainer, run_dir)
    # Restore before config.json is written: a failed restore leaves the folder as it was.
    start = checkpoints.restore()
    save_config(config, run_dir)
    if start is not None:
        _say(f"{run_dir.name}: resuming from step {start}", progress)
    iterations = config.training.iterations
    if start is not None and start > iterations:
        _say(
            f"{run_dir.name}: checkpoint step {start} is past iterations={iterations}",
            progress,
        )
    purge_events_after(run_dir / TENSORBOARD_DIR, start)

    logger = _RunLogger(model, data, config, run_dir)
    session = _Session(trainer, checkpoints, logger, config, progress)
    record = TrainingSession.start(run_dir, start or 0, config.model.precision)
    with _SignalGuard() as guard:
        session.guard = guard
        try:
            session.run()
            # The final checkpoint comes before the evaluation, which a rerun can then redo.
            session.save()
        except KeyboardInterrupt as err:
            step = session.save()
            _say(f"{run_dir.name}: interrupted at step {step}; checkpoint saved", progress)
            signum = err.signum if isinstance(err, TrainingInterrupted) else signal.SIGINT
            raise TrainingInterrupted(signum, step) from err
        finally:
            logger.writer.flush()
            record.finish(int(trainer.step.numpy()))
    step = int(trainer.step.numpy())
    results: Dict[str, Any] = {"run_name": config.run_name, "step": step}
    results.update(final_results(model, data, config))
    logger.results(step, results)
    save_results(results, run_dir)
    return results


class _Session:
    """One call of `train`: the fit loop with its checkpoint and logging callback."""

    def __init__(
        self,
        trainer: Trainer,
        checkpoints: RunCheckpoints,
        logger: _RunLogger,
        config: RunConfig,
        progress: bool,
    ):
        self.trainer = trainer
        self.checkpoints = checkpoints
        self.logger = logger
        self.config = config
        self.progress = progress
        self.guard: Optional[_SignalGuard] = None
        self.last_saved: Optional[int] = checkpoints.restored
        self.last_step = int(trainer.step.numpy())

    def _stop(self, step: int, what: str) -> "NonFiniteError":
        last = (
            f"step {self.last_saved} ({self.checkpoints.prefix(self.last_saved)})"
            if self.last_saved is not None
            else "none (no checkpoint was saved)"
        )
        return NonFiniteError(
            f"{self.config.run_name}: {what} not finite at step {step}; training stopped "
            f"without saving; last good checkpoint: {last}"
        )

    def _check_parameters(self, step: int) -> None:
        bad = []
        for path, value in gpflow.utilities.parameter_dict(self.trainer.model).items():
            if isinstance(value, gpflow.Parameter):
                value = value.unconstrained_variable
            if value.dtype.is_floating and not np.all(np.isfinite(value.numpy())):
                bad.append(path.lstrip("."))
        if bad:
            raise self._stop(step, f"parameters {', '.join(bad[:3])} are")

    def save(self) -> int:
        """Checkpoints the current step (once), with signals held back while it is written;
        never from non-finite parameters."""
        step = int(self.trainer.step.numpy())
        if step != self.last_saved:
            self._check_parameters(step)
            with self.guard.deferred() if self.guard else nullcontext():
                self.checkpoints.save()
                self.logger.writer.flush()
                self.last_saved = step
        return step

    def callback(self, step: int, bound: float) -> None:
        self.last_step = step
        if not math.isfinite(bound):
            raise self._stop(step, f"the bound ({bound}) is")
        logs = self.config.logging
        if _every(logs.log_main_freq, step):
            self.logger.main(step, bound, self.trainer.learning_rates())
        if _every(logs.log_test_freq, step):
            self.logger.test(step)
        if self.logger.with_snr and _every(logs.log_snr_freq, step):
            self.logger.snr(step)
        if _every(self.config.training.checkpoint_freq, step):
            self.save()

    def run(self) -> None:
        try:
            self.trainer.fit(
                self.config.training.iterations, self.callback, progress=self.progress
            )
        except tf.errors.InvalidArgumentError as err:
            # assert_no_nans's check, or GPflow's check of a natural-gradient update
            if "not finite" not in str(err) and "NaN or Inf" not in str(err):
                raise
            # The step counter of a failed compiled step is unreliable; the callback's is not.
            raise self._stop(self.last_step + 1, "parameters are") from err
