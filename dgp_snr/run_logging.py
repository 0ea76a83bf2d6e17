"""A run's TensorBoard logs (<run_dir>/tensorboard/): the in-training scalars and histograms
(RunLogger: bound, learning rates, kernels, likelihood, encoder statistics, test metrics,
encoder-gradient SNR, final results) and the purge of the steps a resumed run logs again.
"""

import time
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import summary_pb2

from dgp_snr.configs import RunConfig
from dgp_snr.data import RegressionData
from dgp_snr.estimators import Estimator
from dgp_snr.evaluation import Evaluator
from dgp_snr.io import atomic_path
from dgp_snr.layers import GPLayer
from dgp_snr.metrics import test_metrics
from dgp_snr.models import DeepGP
from dgp_snr.sample_run import encoder_snr
from dgp_snr.seeds import Stream, derived_rng, derived_seed

TENSORBOARD_DIR = "tensorboard"
#: The fixed batch of the in-training logs is the first min(minibatch, LOG_BATCH_MAX) points.
LOG_BATCH_MAX = 512
#: Gradient estimates per in-training SNR log (at the run's K and estimator).
SNR_NUM_ESTIMATES = 100
#: Predictive samples of the in-training test log-likelihood (the final one uses
#: logging.num_predictive_samples).
TEST_LOG_SAMPLES = 100

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


class RunLogger:
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
        metrics = test_metrics(self._evaluator, self.data, S, seed)
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
