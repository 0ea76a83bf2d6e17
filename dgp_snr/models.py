"""The latent-variable deep GP with the VI, IWVI and CIWAE bounds."""

from dataclasses import dataclass
from typing import List, Optional, Sequence

import gpflow
import numpy as np
import tensorflow as tf
from check_shapes import check_shapes

from dgp_snr.estimators import (
    Estimator,
    check_compatible,
    check_num_importance_samples,
    iwae_bound,
    log_mean_exp,
)
from dgp_snr.layers import GPLayer, LatentSample, LatentVariableLayer, Layer
from dgp_snr.seeds import Stream, generator

MODES = ("VI", "IWAE", "CIWAE")


@dataclass
class Propagation:
    """One pass of a batch through the DGP with K samples per point.

    f_mean, f_var: [B, K, 1] final-layer marginals for each sample; latent: the LatentSample of
    each latent-variable layer (in order); noise: the standard-normal draws used, one per layer
    (None for the final layer); kl_u: Σ over GP layers of KL[q(u) || p(u)].
    """

    f_mean: tf.Tensor
    f_var: tf.Tensor
    latent: List[LatentSample]
    noise: List[Optional[tf.Tensor]]
    kl_u: tf.Tensor


def _per_sample(Y: tf.Tensor, prop: Propagation) -> tf.Tensor:
    """Y [B, 1] repeated for each of the propagation's samples: [B, K, 1]."""
    return tf.tile(Y[:, None, :], [1, tf.shape(prop.f_mean)[1], 1])


class DeepGP(gpflow.base.Module):
    """A deep GP whose layers are latent-variable layers and GP layers, ending in a
    single-output GP layer and a Gaussian likelihood.

    mode: "VI" (doubly-stochastic bound, closed-form KL for q(w)), "IWAE" (the importance-weighted
    bound with K = num_importance_samples), or "CIWAE" (beta * VI + (1 - beta) * IWVI).
    """

    def __init__(
        self,
        layers: Sequence[Layer],
        likelihood: gpflow.likelihoods.Gaussian,
        num_data: int,
        mode: str = "IWAE",
        num_importance_samples: int = 5,
        beta: float = 0.5,
        seed: Optional[int] = None,
        name: Optional[str] = None,
    ) -> None:
        super().__init__(name=name)
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; known modes: {', '.join(MODES)}")
        if not layers or not isinstance(layers[-1], GPLayer) or layers[-1].num_outputs != 1:
            raise ValueError("the last layer must be a single-output GPLayer")
        num_importance_samples = check_num_importance_samples(num_importance_samples)
        self.layers = list(layers)
        self.likelihood = likelihood
        self.num_data = num_data
        self.mode = mode
        self.num_importance_samples = num_importance_samples
        self.beta = beta
        # A keyed named stream: `from_seed` would replay the minibatch order's (or another
        # seed's) draws shifted by a block; see dgp_snr.seeds.
        if seed is None:
            seed = int(np.random.SeedSequence().generate_state(1)[0])  # fresh entropy
        self.rng = generator(seed, Stream.MODEL_NOISE)

    # ----------------------------------------------------------------------------- structure
    @property
    def latent_layers(self) -> List[LatentVariableLayer]:
        return [layer for layer in self.layers if isinstance(layer, LatentVariableLayer)]

    @property
    def gp_layers(self) -> List[GPLayer]:
        return [layer for layer in self.layers if isinstance(layer, GPLayer)]

    @property
    def precision(self) -> str:
        """The GP layers' precision ("float64" or "mixed"; see dgp_snr.precision)."""
        names = {layer.precision.name for layer in self.gp_layers}
        return names.pop() if len(names) == 1 else "+".join(sorted(names))

    @property
    def encoder_variables(self) -> List[tf.Variable]:
        """The trainable variables phi of the encoders of q(w | x, y)."""
        return [v for layer in self.latent_layers for v in layer.encoder.trainable_variables]

    @property
    def non_encoder_variables(self) -> List[tf.Variable]:
        """The trainable variables other than the encoders' (GP layers, likelihood)."""
        encoder_ids = {id(v) for v in self.encoder_variables}
        return [v for v in self.trainable_variables if id(v) not in encoder_ids]

    @property
    def latent_positions(self) -> List[int]:
        """Indices of the latent-variable layers in self.layers."""
        return [i for i, layer in enumerate(self.layers) if isinstance(layer, LatentVariableLayer)]

    def check_estimator(self, estimator: "str | Estimator") -> Estimator:
        """The Estimator called `estimator`, checked against this model's mode and layer order
        (estimators.check_compatible); raises ValueError otherwise."""
        return check_compatible(estimator, self.mode, self.latent_positions)

    # ----------------------------------------------------------------------------- propagation
    def draw_noise(
        self, num_points: int, samples_per_point: int, rng: Optional[tf.random.Generator] = None
    ) -> List[Optional[tf.Tensor]]:
        """Standard-normal noise [B, K, layer.noise_width] for every layer (B = num_points,
        K = samples_per_point); None for the last."""
        rng = self.rng if rng is None else rng
        dtype = gpflow.config.default_float()
        noise: List[Optional[tf.Tensor]] = []
        for layer in self.layers[:-1]:
            noise.append(
                rng.normal([num_points, samples_per_point, layer.noise_width], dtype=dtype)
            )
        return noise + [None]

    @check_shapes("X: [B, D]", "Y: [B, 1]")
    def propagate(
        self,
        X: tf.Tensor,
        Y: Optional[tf.Tensor] = None,
        samples_per_point: Optional[int] = None,
        noise: Optional[Sequence[Optional[tf.Tensor]]] = None,
    ) -> Propagation:
        """Pushes `samples_per_point` samples for each point of X through the layers: K for a
        bound (default: the model's num_importance_samples), S for prediction.

        With Y, latent layers draw w from q(w | x, y); without it, from the prior. `noise`
        (from draw_noise) fixes every random draw, so two passes can share their noise.
        """
        K = self.num_importance_samples if samples_per_point is None else samples_per_point
        if samples_per_point is None and noise is not None and noise[0] is not None:
            K = tf.shape(noise[0])[1]  # the noise fixes K
        if noise is None:
            noise = self.draw_noise(tf.shape(X)[0], K)
        X = tf.convert_to_tensor(X)
        XY = None if Y is None else tf.concat([X, Y], -1)
        H = tf.tile(X[:, None, :], [1, K, 1])  # [B, K, D]
        latent: List[LatentSample] = []
        for layer, eps in zip(self.layers[:-1], noise[:-1]):
            H, sample = layer.propagate(H, XY, eps)
            if sample is not None:
                latent.append(sample)
        f_mean, f_var = self.layers[-1].marginals(H)
        kl_u = tf.add_n([layer.prior_kl() for layer in self.layers])
        return Propagation(f_mean, f_var, latent, list(noise), kl_u)

    # ----------------------------------------------------------------------------- bounds
    def _scale(self, Y: tf.Tensor) -> tf.Tensor:
        dtype = gpflow.config.default_float()
        return tf.cast(self.num_data, dtype) / tf.cast(tf.shape(Y)[0], dtype)

    @check_shapes("Y: [B, 1]", "return[0]: [B, K]", "return[1]: [B, K]", "return[2]: [B, K]")
    def log_weight_terms(self, prop: Propagation, Y: tf.Tensor):
        """(log_p, log_q, log_q_stopped) [B, K]: log_p is the final layer's closed-form
        E_q[log p(y | f)] plus Σ log p(w); the log q terms sum over latent layers."""
        Y_tiled = _per_sample(Y, prop)
        # X is None: the Gaussian likelihood does not depend on the inputs (as in GPflux)
        log_p = self.likelihood.variational_expectations(
            None, prop.f_mean, prop.f_var, Y_tiled
        )  # [B, K]
        log_q = tf.zeros_like(log_p)
        log_q_stopped = tf.zeros_like(log_p)
        for sample in prop.latent:
            log_p += sample.log_p
            log_q += sample.log_q
            log_q_stopped += sample.log_q_stopped
        return log_p, log_q, log_q_stopped

    def per_point_vi(self, prop: Propagation, Y: tf.Tensor) -> tf.Tensor:
        """[B]: the VI bound's term per point, averaging the K samples, closed-form KL for q(w)."""
        Y_tiled = _per_sample(Y, prop)
        var_exp = self.likelihood.variational_expectations(
            None, prop.f_mean, prop.f_var, Y_tiled
        )  # [B, K]
        per_point = tf.reduce_mean(var_exp, 1)
        for sample in prop.latent:
            per_point -= sample.kl
        return per_point

    def per_point_bound(self, prop: Propagation, Y: tf.Tensor) -> tf.Tensor:
        """[B]: each point's term of the model's bound (its mode), before the N/B scaling."""
        if self.mode == "VI":
            return self.per_point_vi(prop, Y)
        log_p, log_q, _ = self.log_weight_terms(prop, Y)
        iw = iwae_bound(log_p - log_q)
        if self.mode == "IWAE":
            return iw
        return self.beta * self.per_point_vi(prop, Y) + (1.0 - self.beta) * iw

    def per_point_surrogate(self, prop: Propagation, Y: tf.Tensor, estimator: str) -> tf.Tensor:
        """[B]: per point, a surrogate whose gradient in the encoder outputs is `estimator`'s
        (equal in value to per_point_bound for REG and STL)."""
        est = self.check_estimator(estimator)
        if self.mode == "VI":  # REG only (checked): the bound itself
            return self.per_point_vi(prop, Y)
        iw = est.surrogate(*self.log_weight_terms(prop, Y))
        if self.mode == "IWAE":
            return iw
        return self.beta * self.per_point_vi(prop, Y) + (1.0 - self.beta) * iw

    def bound(self, prop: Propagation, Y: tf.Tensor) -> tf.Tensor:
        """(N/B) Σ_b per_point_bound - Σ KL[q(u) || p(u)]: the model's objective for its mode
        (VI, IWVI or CIWAE); every non-encoder parameter follows its gradient."""
        return self._scale(Y) * tf.reduce_sum(self.per_point_bound(prop, Y)) - prop.kl_u

    def encoder_surrogate(self, prop: Propagation, Y: tf.Tensor, estimator: str) -> tf.Tensor:
        """A scalar whose gradient in the encoder parameters is `estimator`'s estimate of the
        bound's gradient."""
        per_point = self.per_point_surrogate(prop, Y, estimator)
        return self._scale(Y) * tf.reduce_sum(per_point) - prop.kl_u

    def elbo(
        self, X: tf.Tensor, Y: tf.Tensor, num_importance_samples: Optional[int] = None
    ) -> tf.Tensor:
        """A stochastic estimate of the model's bound on the batch (X, Y) (K: the model's)."""
        return self.bound(self.propagate(X, Y, num_importance_samples), Y)

    # ----------------------------------------------------------------------------- prediction
    @check_shapes("X: [N, D]", "return[0]: [S, N, 1]", "return[1]: [S, N, 1]")
    def predict_f_samples_marginals(self, X: tf.Tensor, num_predictive_samples: int):
        """Final-layer mean and variance [S, N, 1] for S = num_predictive_samples draws of
        everything before it (w from the prior)."""
        prop = self.propagate(X, None, num_predictive_samples)
        return tf.transpose(prop.f_mean, [1, 0, 2]), tf.transpose(prop.f_var, [1, 0, 2])

    @check_shapes("X: [N, D]", "return: [S, N, 1]")
    def predict_y_samples(self, X: tf.Tensor, num_predictive_samples: int) -> tf.Tensor:
        """Samples [S, N, 1] of y from the predictive distribution."""
        mean, var = self.predict_f_samples_marginals(X, num_predictive_samples)
        y_var = var + self.likelihood.variance
        return mean + tf.sqrt(y_var) * self.rng.normal(tf.shape(mean), dtype=mean.dtype)

    @check_shapes("prop.f_mean: [B, S, 1]", "prop.f_var: [B, S, 1]", "Y: [B, 1]", "return: [B, S]")
    def predictive_log_densities(self, prop: Propagation, Y: tf.Tensor) -> tf.Tensor:
        """[B, S]: log N(y | m_s, v_s + σ²) for each of the S samples of a propagation (the
        terms of the Monte Carlo log predictive density when w is drawn from the prior)."""
        return self.likelihood.predict_log_density(
            None, prop.f_mean, prop.f_var, _per_sample(Y, prop)
        )

    @check_shapes("X: [B, D]", "Y: [B, 1]", "return: [B]")
    def log_predictive_density(
        self, X: tf.Tensor, Y: tf.Tensor, num_predictive_samples: int
    ) -> tf.Tensor:
        """Monte Carlo log (1/S) Σ_s N(y | m_s, v_s + σ²) per point [B]."""
        prop = self.propagate(X, None, num_predictive_samples)
        return log_mean_exp(self.predictive_log_densities(prop, Y))  # over the S samples
