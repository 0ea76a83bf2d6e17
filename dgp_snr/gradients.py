"""Gradients of the bound and of the encoder estimators, computed once per forward pass, and
many independent encoder-gradient estimates in one compiled call (for SNR)."""

from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf
from tqdm.auto import tqdm

from dgp_snr.estimators import check_num_importance_samples
from dgp_snr.models import DeepGP, Propagation
from dgp_snr.precision import input_gradients_only

Gradients = List[tf.Tensor]


def _encoder_outputs(prop: Propagation) -> Tuple[List[tf.Tensor], List[tf.Tensor]]:
    return [s.mean for s in prop.latent], [s.scale for s in prop.latent]


def bound_and_gradients(
    model: DeepGP,
    X: tf.Tensor,
    Y: tf.Tensor,
    estimator: str,
    variables: Sequence[tf.Variable],
    noise: Optional[Sequence[Optional[tf.Tensor]]] = None,
) -> Tuple[tf.Tensor, Gradients, Gradients]:
    """The bound, its gradient in `variables` (the non-encoder parameters), and the estimator's
    gradient in model.encoder_variables, from one forward pass.

    In IWAE and VI modes one backward pass through the GP layers serves both: the bound's
    gradient in w_k, holding q's parameters fixed, is (N/B) wt_k ∂log v_k/∂w_k; STL keeps only
    that path, DReG multiplies it by wt_k once more, REG adds the direct terms of log q. The
    encoder itself (a small MLP) is then differentiated with those upstream gradients. CIWAE
    mixes two per-point terms that need different weights, so it takes a second backward pass.
    """
    est = model.check_estimator(estimator)
    encoder_vars = model.encoder_variables
    zero = tf.UnconnectedGradients.ZERO
    with tf.GradientTape(persistent=True, watch_accessed_variables=False) as tape:
        tape.watch(list(variables) + encoder_vars)
        prop = model.propagate(X, Y, noise=noise)
        bound = model.bound(prop, Y)
        if model.mode == "CIWAE":
            surrogate = model.encoder_surrogate(prop, Y, estimator)
    if model.mode == "CIWAE":
        grads = tape.gradient(bound, list(variables), unconnected_gradients=zero)
        enc = tape.gradient(surrogate, encoder_vars, unconnected_gradients=zero)
        return bound, grads, enc

    means, scales = _encoder_outputs(prop)
    ws = [s.w for s in prop.latent]
    n = len(variables)
    grads = tape.gradient(bound, list(variables) + ws + means + scales, unconnected_gradients=zero)
    var_grads, g_w = grads[:n], grads[n : n + len(ws)]
    g_mean, g_scale = grads[n + len(ws) : n + 2 * len(ws)], grads[n + 2 * len(ws) :]
    if est.needs_importance_weights:  # STL, DReG: the path term only, reweighted
        log_p, _, log_q_stopped = model.log_weight_terms(prop, Y)
        factor = est.path_weights(log_p - log_q_stopped)[..., None]  # [B, K, 1]
        g_mean = [tf.reduce_sum(factor * g, 1) for g in g_w]
        g_scale = [tf.reduce_sum(factor * g * s.eps, 1) for g, s in zip(g_w, prop.latent)]
    enc = tape.gradient(
        means + scales, encoder_vars, output_gradients=g_mean + g_scale, unconnected_gradients=zero
    )
    del tape
    return bound, var_grads, enc


def _encoder_jacobians(model: DeepGP, X: tf.Tensor, Y: tf.Tensor) -> List[List[tf.Tensor]]:
    """Per latent layer, per encoder variable: ∂[mean, scale]/∂phi [B, 2d, *phi.shape]."""
    XY = tf.concat([X, Y], -1)
    out = []
    for layer in model.latent_layers:
        variables = layer.encoder.trainable_variables
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            tape.watch(variables)
            mean, scale = layer.encoder(XY)
            outputs = tf.concat([mean, scale], -1)  # [B, 2d]
        out.append(
            tape.jacobian(outputs, variables, unconnected_gradients=tf.UnconnectedGradients.ZERO)
        )
    return out


def _replica_upstream(
    model: DeepGP,
    X: tf.Tensor,
    Y: tf.Tensor,
    estimator: str,
    noise: Sequence[Optional[tf.Tensor]],
) -> List[tf.Tensor]:
    """For R replicas of the batch stacked as [R*B] rows: the gradient of the estimator's
    surrogate (N/B) Σ_b surrogate_b in each row's encoder outputs, [R*B, 2d] per latent layer.

    Replicas share nothing but the parameters, so each row's gradient is its own replica's."""
    B = tf.shape(X)[0]
    R = tf.shape(noise[0])[0] // B
    X_rep, Y_rep = tf.tile(X, [R, 1]), tf.tile(Y, [R, 1])
    with tf.GradientTape(watch_accessed_variables=False) as tape:
        tape.watch(model.encoder_variables)
        prop = model.propagate(X_rep, Y_rep, tf.shape(noise[0])[1], noise=noise)
        means, scales = _encoder_outputs(prop)
        scale = tf.cast(model.num_data, X.dtype) / tf.cast(B, X.dtype)
        surrogate = scale * tf.reduce_sum(model.per_point_surrogate(prop, Y_rep, estimator))
    grads = tape.gradient(
        surrogate, means + scales, unconnected_gradients=tf.UnconnectedGradients.ZERO
    )
    L = len(means)
    return [tf.concat([gm, gs], -1) for gm, gs in zip(grads[:L], grads[L:])]


def _replica_estimates(
    model: DeepGP,
    X: tf.Tensor,
    Y: tf.Tensor,
    estimator: str,
    noise: Sequence[Optional[tf.Tensor]],
    jacobians: List[List[tf.Tensor]],
) -> List[tf.Tensor]:
    """The R replicas' encoder-gradient estimates [R, *phi.shape], one per encoder variable:
    g_r = Σ_b J_bᵀ u_rb, with u from _replica_upstream and J from _encoder_jacobians."""
    B = tf.shape(X)[0]
    R = tf.shape(noise[0])[0] // B
    out = []
    for u, layer_jacobians in zip(_replica_upstream(model, X, Y, estimator, noise), jacobians):
        u = tf.reshape(u, [R, B, -1])
        out.extend(tf.tensordot(u, J, [[1, 2], [0, 1]]) for J in layer_jacobians)
    return out


# Module-level so every sampler (one per data point, say) shares the traces.
_compiled_estimates = tf.function(_replica_estimates, reduce_retracing=True)
_compiled_jacobians = tf.function(_encoder_jacobians, reduce_retracing=True)


class EncoderGradientSampler:
    """Draws many independent estimates of the encoder gradient at a fixed model and batch.

    R replicas of the batch (each with its own noise) go through the DGP as one large batch; one
    backward pass gives each replica's gradient in the encoder outputs, and the encoder's
    Jacobian at the batch (computed once) maps them to every parameter: g_r = Σ_b J_bᵀ u_rb.
    """

    def __init__(self, model: DeepGP, X: np.ndarray, Y: np.ndarray, max_rows: int = 2**13):
        self.model = model
        self.X = tf.convert_to_tensor(X, dtype=tf.float64)
        self.Y = tf.convert_to_tensor(Y, dtype=tf.float64)
        self.max_rows = max_rows

    @property
    def names(self) -> List[str]:
        """One name per encoder variable, e.g. 'layer0/W1' (layer index in model.layers)."""
        names = []
        for i, layer in enumerate(self.model.layers):
            if layer in self.model.latent_layers:
                for v in layer.encoder.trainable_variables:
                    names.append(f"layer{i}/{v.name.split(':')[0]}")
        return names

    def chunk_size(self, num_importance_samples: int) -> int:
        """Replicas per compiled call, so that R*B*K rows stay under max_rows."""
        rows = int(self.X.shape[0]) * num_importance_samples
        return max(1, self.max_rows // rows)

    def sample(
        self,
        num_importance_samples: int,
        num_estimates: int,
        estimator: str,
        noise: Optional[Sequence[Optional[tf.Tensor]]] = None,
        chunk_size: Optional[int] = None,
        rng: Optional[tf.random.Generator] = None,
        progress: bool = False,
    ) -> Dict[str, np.ndarray]:
        """`num_estimates` (R) independent estimates [R, *phi.shape] per encoder variable, at
        K = num_importance_samples. `noise` (as from model.draw_noise(R * B, K), replica-major)
        fixes every draw; otherwise `rng` (default: the model's) supplies it."""
        self.model.check_estimator(estimator)
        K = check_num_importance_samples(num_importance_samples)
        B = int(self.X.shape[0])
        chunk = chunk_size or self.chunk_size(K)
        # At the encoder's current weights, so a sampler stays right while a model trains.
        jacobians = _compiled_jacobians(self.model, self.X, self.Y)
        # One trace for any R and K (else one for the first shape and one relaxed; each costs
        # about a second, a fifth of Figure 1's data); a no-op once traced.
        noise_specs = [
            tf.TensorSpec([None, None, layer.noise_width], tf.float64)
            for layer in self.model.layers[:-1]
        ]
        pieces: List[List[np.ndarray]] = []
        starts = range(0, num_estimates, chunk)
        with input_gradients_only():  # only ∂/∂(encoder outputs) is taken
            _compiled_estimates.get_concrete_function(
                self.model, self.X, self.Y, estimator, noise_specs + [None], jacobians
            )
            for start in tqdm(starts, disable=not progress, desc=f"{estimator} K={K}"):
                R = min(chunk, num_estimates - start)
                if noise is None:
                    chunk_noise = self.model.draw_noise(R * B, K, rng)
                else:
                    chunk_noise = [
                        None if n is None else n[start * B : (start + R) * B] for n in noise
                    ]
                estimates = _compiled_estimates(
                    self.model, self.X, self.Y, estimator, chunk_noise, jacobians
                )
                pieces.append([g.numpy() for g in estimates])
        stacked = [np.concatenate(p, 0) for p in zip(*pieces)]
        return dict(zip(self.names, stacked))


def snr(samples: np.ndarray) -> np.ndarray:
    """|mean| / std over the first axis (independent estimates) of gradient samples
    [R, *shape] -> [*shape]; 0 where mean and std are both 0 (the reference's convention), inf
    where only the std is 0 (see snr_from_moments)."""
    samples = np.asarray(samples)
    return snr_from_moments(samples.mean(0), samples.std(0))


def snr_from_moments(mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """The signal-to-noise ratio |mean| / std of gradient estimates, entry by entry, from their
    mean and (population) standard deviation: the one SNR definition of the package.

    Convention (the reference's): an entry with mean 0 and std 0 (a gradient that is always
    exactly 0, e.g. a weight into a unit that is never active) has SNR 0; a nonzero mean with
    std 0 gives inf, and NaN inputs give NaN."""
    mean = np.abs(np.asarray(mean))
    std = np.asarray(std)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = mean / std
    return np.where((mean == 0) & (std == 0), 0.0, ratio)
