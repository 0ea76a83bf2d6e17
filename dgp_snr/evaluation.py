"""Evaluating a trained model: the Monte Carlo test log-likelihood (with the predictive mean from
the same samples), the full-data train ELBO (and the bound per data point on any set) and
predictive samples, all compiled and chunked so that memory stays bounded. A run's cached
evaluation is dgp_snr.run_evaluation's, a paper target's dgp_snr.protocol.target_evaluation's;
a run's final results and in-training test logs (dgp_snr.metrics) use the same Evaluator.

Memory. One compiled call pushes B points x S samples ("rows") through the layers; a GP layer
with M inducing points and L latent GPs holds a few [L, M, rows] arrays. The Evaluator picks B
(and, when even one point's S samples are too many, a sample chunk) so that
rows * max_l(M_l * L_l) <= max_elements; 10,000 samples at 10,000 test points run in pieces.

Randomness. Every random draw is a stateless function of (seed, purpose, repeat, layer) and the
point's index in the data set, so a point's estimate does not depend on how the points (or the
samples) are chunked: one chunk and many chunks give the same numbers for the same seed.
"""

import math
from dataclasses import dataclass
from typing import Iterator, List, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf
from scipy.special import logsumexp
from tqdm.auto import tqdm

from dgp_snr.estimators import check_num_importance_samples
from dgp_snr.models import DeepGP
from dgp_snr.seeds import Stream, stream_keys

#: Elements (rows x M x latent GPs) per compiled call; about 128 MiB per float64 intermediate.
DEFAULT_MAX_ELEMENTS = 2**24
#: The paper's evaluation, the defaults here (dgp_snr.protocol exports them with its settings):
#: 10,000 samples per test log-likelihood, repeated 10 times; 10 train ELBO repeats.
TEST_SAMPLES = 10_000
TEST_REPEATS = 10
ELBO_REPEATS = 10


# ------------------------------------------------------------------------------ the evaluator
def row_cost(model: DeepGP) -> int:
    """Elements per propagated row in the largest GP layer: max_l M_l * L_l."""
    return max(int(layer.Z.shape[0]) * layer.num_latent_gps for layer in model.gp_layers)


@dataclass
class TestLogLikelihood:
    """Repeated Monte Carlo estimates of the mean test log predictive density.

    values: [R], one per repeat (each the mean over test points of log (1/S) Σ_s p(y | s))."""

    values: np.ndarray
    num_predictive_samples: int  # S

    @property
    def mean(self) -> float:
        return float(np.mean(self.values))

    @property
    def std(self) -> float:
        """Sample standard deviation over the repeats (0 for a single repeat)."""
        return float(np.std(self.values, ddof=1)) if len(self.values) > 1 else 0.0


class Evaluator:
    """Compiled, memory-bounded evaluation of one model.

    max_elements bounds rows x M x L per compiled call (see the module docstring)."""

    def __init__(self, model: DeepGP, max_elements: int = DEFAULT_MAX_ELEMENTS):
        if max_elements < 1:
            raise ValueError(f"max_elements must be positive, got {max_elements}")
        self.model = model
        self.max_elements = int(max_elements)
        self.row_cost = row_cost(model)
        self.widths = [layer.noise_width for layer in model.layers[:-1]]
        self._joint = any(layer.samples_jointly for layer in model.layers[:-1])
        self._noise = tf.function(self._noise_impl, reduce_retracing=True)
        self._normal_per_point = tf.function(_normal_per_point, reduce_retracing=True)
        self._log_sum_density = tf.function(self._log_sum_density_impl, reduce_retracing=True)
        self._per_point_bound = tf.function(self._per_point_bound_impl, reduce_retracing=True)
        self._f_marginals = tf.function(self._f_marginals_impl, reduce_retracing=True)

    # -------------------------------------------------------------- chunking and noise
    def chunk_sizes(self, samples_per_point: int, num_points: int) -> Tuple[int, int]:
        """(points per call, samples per call) with points * samples * row_cost bounded."""
        rows = max(1, self.max_elements // self.row_cost)
        if samples_per_point <= rows or self._joint:
            return max(1, min(num_points, rows // samples_per_point)), samples_per_point
        return 1, rows

    def _noise_impl(
        self, idx: tf.Tensor, keys: tf.Tensor, samples_per_point: int
    ) -> List[tf.Tensor]:
        """Per layer, noise [B, S, width]: point idx[b]'s draw depends on (keys, idx[b]) only."""
        return [
            _normal_per_point(idx, keys[layer_i], [samples_per_point, width])
            for layer_i, width in enumerate(self.widths)
        ]

    def _point_noise(
        self, idx: np.ndarray, seed: int, purpose: int, repeat: int, samples_per_point: int
    ) -> List[Optional[tf.Tensor]]:
        keys = stream_keys(seed, purpose, repeat, len(self.widths) + 1)
        if not self.widths:
            return [None]
        idx_t = tf.constant(idx, dtype=tf.int64)
        return list(self._noise(idx_t, tf.constant(keys, dtype=tf.int64), samples_per_point)) + [
            None
        ]

    @staticmethod
    def _point_chunks(
        N: int, B: int, progress: bool = False, desc: str = ""
    ) -> Iterator[Tuple[np.ndarray, np.ndarray]]:
        """(rows [<= B], rows padded to B by repeating the last: fixed shapes, one trace) for
        consecutive chunks of N points."""
        for start in tqdm(range(0, N, B), disable=not progress, desc=desc, leave=False):
            rows = np.arange(start, min(start + B, N), dtype=np.int64)
            yield rows, np.concatenate([rows, np.full(B - len(rows), rows[-1], dtype=np.int64)])

    @staticmethod
    def _sample_chunks(
        noise: List[Optional[tf.Tensor]], samples_per_point: int, S_chunk: int
    ) -> Iterator[Tuple[List[Optional[tf.Tensor]], int]]:
        """(noise [B, s, ...] per layer, s) for consecutive chunks of the S samples."""
        for s0 in range(0, samples_per_point, S_chunk):
            s1 = min(s0 + S_chunk, samples_per_point)
            yield [None if n is None else n[:, s0:s1] for n in noise], s1 - s0

    # -------------------------------------------------------------- compiled pieces
    def _log_sum_density_impl(self, X, Y, noise, samples_per_point: int):
        """[B] log Σ_s N(y | m_s, v_s + σ²) and [B] Σ_s m_s over the S samples (w from the
        prior), from one pass."""
        prop = self.model.propagate(X, None, samples_per_point, noise=noise)
        log_dens = self.model.predictive_log_densities(prop, Y)  # [B, S]
        return tf.reduce_logsumexp(log_dens, axis=1), tf.reduce_sum(prop.f_mean[..., 0], axis=1)

    def _per_point_bound_impl(self, X, Y, noise, samples_per_point: int) -> tf.Tensor:
        """[B]: each point's term of the model's bound (w from q(w | x, y))."""
        prop = self.model.propagate(X, Y, samples_per_point, noise=noise)
        return self.model.per_point_bound(prop, Y)

    def _f_marginals_impl(self, X, noise, samples_per_point: int):
        prop = self.model.propagate(X, None, samples_per_point, noise=noise)
        return prop.f_mean[..., 0], prop.f_var[..., 0]  # [B, S]

    # -------------------------------------------------------------- public
    def log_predictive_density(
        self,
        X: np.ndarray,
        Y: np.ndarray,
        num_predictive_samples: int = TEST_SAMPLES,
        seed: int = 0,
        repeat: int = 0,
        progress: bool = False,
    ) -> np.ndarray:
        """[N]: log (1/S) Σ_s N(y_n | m_s(x_n), v_s(x_n) + σ²) per point, X [N, D], Y [N, 1]."""
        return self.log_predictive_density_and_mean(
            X, Y, num_predictive_samples, seed, repeat, progress
        )[0]

    def log_predictive_density_and_mean(
        self,
        X: np.ndarray,
        Y: np.ndarray,
        num_predictive_samples: int = TEST_SAMPLES,
        seed: int = 0,
        repeat: int = 0,
        progress: bool = False,
    ) -> Tuple[np.ndarray, np.ndarray]:
        """Per point, from the same S samples: the log predictive density [N] (as
        log_predictive_density) and the predictive mean (1/S) Σ_s m_s(x_n) [N]."""
        X, Y = _check_xy(X, Y)
        if num_predictive_samples < 1:
            raise ValueError(
                f"num_predictive_samples must be at least 1, got {num_predictive_samples}"
            )
        N = X.shape[0]
        B, S_chunk = self.chunk_sizes(num_predictive_samples, N)
        lpd, mean = np.empty(N), np.empty(N)
        for idx, padded in self._point_chunks(N, B, progress, "test LL"):
            Xc, Yc = tf.constant(X[padded]), tf.constant(Y[padded])
            noise = self._point_noise(padded, seed, Stream.TEST_LL, repeat, num_predictive_samples)
            log_sums, mean_sums = [], []
            for piece, S in self._sample_chunks(noise, num_predictive_samples, S_chunk):
                log_sum, mean_sum = self._log_sum_density(Xc, Yc, piece, S)
                log_sums.append(log_sum.numpy())
                mean_sums.append(mean_sum.numpy())
            total = log_sums[0] if len(log_sums) == 1 else logsumexp(np.stack(log_sums), axis=0)
            lpd[idx] = total[: len(idx)] - math.log(num_predictive_samples)
            mean[idx] = np.sum(mean_sums, axis=0)[: len(idx)] / num_predictive_samples
        return lpd, mean

    def test_log_likelihood(
        self,
        X: np.ndarray,
        Y: np.ndarray,
        num_predictive_samples: int = TEST_SAMPLES,
        repeats: int = TEST_REPEATS,
        seed: int = 0,
        progress: bool = False,
    ) -> TestLogLikelihood:
        """The mean test log predictive density, estimated `repeats` times independently."""
        if repeats < 1:
            raise ValueError(f"repeats must be at least 1, got {repeats}")
        values = np.array(
            [
                self.log_predictive_density(X, Y, num_predictive_samples, seed, r, progress).mean()
                for r in range(repeats)
            ]
        )
        return TestLogLikelihood(values, num_predictive_samples)

    def _bound_sums(
        self,
        X: np.ndarray,
        Y: np.ndarray,
        num_importance_samples: Optional[int],
        repeats: int,
        seed: int,
        progress: bool,
    ) -> Tuple[np.ndarray, float]:
        """([R] Σ_n per-point term of the model's bound over X [N, D], Y [N, 1], each repeat
        with fresh samples (K = num_importance_samples, default the model's); Σ KL[q(u) || p(u)]).
        """
        X, Y = _check_xy(X, Y)
        K = num_importance_samples
        K = self.model.num_importance_samples if K is None else check_num_importance_samples(K)
        N = X.shape[0]
        rows = max(1, self.max_elements // self.row_cost)
        B = max(1, min(N, rows // K))
        kl_u = float(tf.add_n([layer.prior_kl() for layer in self.model.gp_layers]).numpy())
        sums = []
        for r in range(repeats):
            total = 0.0
            for idx, padded in self._point_chunks(N, B, progress, "ELBO"):
                noise = self._point_noise(padded, seed, Stream.ELBO, r, K)
                terms = self._per_point_bound(
                    tf.constant(X[padded]), tf.constant(Y[padded]), noise, K
                ).numpy()
                total += float(np.sum(terms[: len(idx)]))
            sums.append(total)
        return np.array(sums), kl_u

    def train_elbo(
        self,
        X: np.ndarray,
        Y: np.ndarray,
        num_importance_samples: Optional[int] = None,
        repeats: int = 1,
        seed: int = 0,
        progress: bool = False,
    ) -> np.ndarray:
        """[R]: the model's bound (its mode: VI, IWVI or CIWAE; K = num_importance_samples,
        default the model's) on the whole of X [N, D], Y [N, 1], each repeat with fresh samples:
        Σ_n per-point term - Σ KL[q(u) || p(u)]. X should be the training set (num_data = N)."""
        sums, kl_u = self._bound_sums(X, Y, num_importance_samples, repeats, seed, progress)
        return sums - kl_u

    def mean_bound_per_point(
        self,
        X: np.ndarray,
        Y: np.ndarray,
        num_importance_samples: Optional[int] = None,
        repeats: int = 1,
        seed: int = 0,
        progress: bool = False,
    ) -> np.ndarray:
        """[R]: the bound per data point on any set X [N', D], Y [N', 1] (the training set or
        another): (1/N') Σ_n per-point term - Σ KL[q(u) || p(u)] / num_data, K and repeats as
        in train_elbo. On the training set it is train_elbo / N."""
        sums, kl_u = self._bound_sums(X, Y, num_importance_samples, repeats, seed, progress)
        return sums / len(X) - kl_u / self.model.num_data

    def predictive_samples(
        self,
        x: np.ndarray,
        num_predictive_samples: int = TEST_SAMPLES,
        seed: int = 0,
        index: int = 0,
    ) -> np.ndarray:
        """[S]: samples of y from the predictive distribution at one input x [D] (or [1, D]).

        `index` names the point in its data set (it selects the random stream)."""
        x = np.asarray(x, dtype=np.float64).reshape(1, -1)
        return self.predictive_samples_at(x, num_predictive_samples, seed, [index])[0]

    def predictive_samples_at(
        self,
        X: np.ndarray,
        num_predictive_samples: int = TEST_SAMPLES,
        seed: int = 0,
        indices: Optional[Sequence[int]] = None,
    ) -> np.ndarray:
        """[N, S]: samples of y from the predictive distribution at each row of X [N, D].

        indices [N] (default 0 .. N-1) name the points in their data set: they select the
        random streams, so row n equals predictive_samples(X[n], S, seed, indices[n])."""
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[0] == 0:
            raise ValueError(f"expected X [N, D] with N > 0, got {X.shape}")
        if num_predictive_samples < 1:
            raise ValueError(
                f"num_predictive_samples must be at least 1, got {num_predictive_samples}"
            )
        N = X.shape[0]
        indices = np.arange(N) if indices is None else np.asarray(indices).reshape(-1)
        if indices.shape != (N,):
            raise ValueError(f"expected {N} indices, got {indices.shape[0]}")
        indices = indices.astype(np.int64)
        B, S_chunk = self.chunk_sizes(num_predictive_samples, N)
        y_key = tf.constant(stream_keys(seed, Stream.PREDICT, 1, 1)[0], dtype=tf.int64)
        sigma2 = float(self.model.likelihood.variance.numpy())
        out = np.empty((N, num_predictive_samples))
        for rows, padded in self._point_chunks(N, B):
            Xc, idx = tf.constant(X[padded]), indices[padded]
            noise = self._point_noise(idx, seed, Stream.PREDICT, 0, num_predictive_samples)
            means, variances = [], []
            for piece, S in self._sample_chunks(noise, num_predictive_samples, S_chunk):
                mean, var = self._f_marginals(Xc, piece, S)
                means.append(mean.numpy())
                variances.append(var.numpy())
            mean, var = np.concatenate(means, axis=1), np.concatenate(variances, axis=1)
            y_noise = self._normal_per_point(
                tf.constant(idx), y_key, [num_predictive_samples]
            ).numpy()
            out[rows] = (mean + np.sqrt(var + sigma2) * y_noise)[: len(rows)]
        return out


def _normal_per_point(idx: tf.Tensor, key: tf.Tensor, shape: Sequence[int]) -> tf.Tensor:
    """[B, *shape] standard normals; row b is a stateless function of (key, idx[b]) only."""
    seeds = tf.stack([tf.fill(tf.shape(idx), key), idx], axis=1)  # [B, 2]
    return tf.map_fn(
        lambda s: tf.random.stateless_normal(shape, seed=s, dtype=tf.float64),
        seeds,
        fn_output_signature=tf.float64,
    )


def _check_xy(X: np.ndarray, Y: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    X = np.asarray(X, dtype=np.float64)
    Y = np.asarray(Y, dtype=np.float64)
    if X.ndim != 2 or Y.ndim != 2 or Y.shape[1] != 1 or X.shape[0] != Y.shape[0]:
        raise ValueError(f"expected X [N, D] and Y [N, 1], got {X.shape} and {Y.shape}")
    if X.shape[0] == 0:
        raise ValueError("no points to evaluate")
    return X, Y
