"""The layers of a latent-variable deep GP: the amortised encoder, the latent-variable layer that
appends w to its input, and the sparse variational GP layer (single-output or mixed multi-output).

Every layer works on inputs with a sample axis: H [B, K, D_in] holds K samples for each of B
points, and shares one interface (`Layer`): `noise_width` standard normals per sample,
`propagate(H, XY, eps)`, `prior_kl()` and `samples_jointly`, so models need not switch on types.
"""

from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import gpflow
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp
from check_shapes import check_shapes
from gpflow.utilities import triangular

from dgp_snr.conditionals import whitened_cov_over_samples, whitened_marginals
from dgp_snr.precision import Precision, get_precision

tfd = tfp.distributions


class Encoder(gpflow.base.Module):
    """The amortised q(w | x, y): an MLP from [x, y] to a mean and a scale for w.

    tanh hidden layers, Glorot-normal weights, zero biases, a skip connection wherever a layer's
    input and output widths match, and scale = softplus(raw - 3) (biased to small values at the
    start, as in the reference).
    """

    def __init__(
        self,
        input_dim: int,
        latent_dim: int,
        hidden_dims: Sequence[int] = (20, 20),
        rng: Optional[np.random.Generator] = None,
        name: Optional[str] = None,
    ) -> None:
        super().__init__(name=name)
        rng = np.random.default_rng() if rng is None else rng
        self.latent_dim = latent_dim
        self.dims = [input_dim, *hidden_dims, 2 * latent_dim]
        self.weights, self.biases = [], []
        for i, (d_in, d_out) in enumerate(zip(self.dims[:-1], self.dims[1:])):
            std = np.sqrt(2.0 / (d_in + d_out))
            self.weights.append(
                gpflow.Parameter(rng.standard_normal((d_in, d_out)) * std, name=f"W{i}")
            )
            self.biases.append(gpflow.Parameter(np.zeros(d_out), name=f"b{i}"))

    @check_shapes("XY: [batch..., D_xy]", "return[0]: [batch..., d]", "return[1]: [batch..., d]")
    def __call__(self, XY: tf.Tensor) -> Tuple[tf.Tensor, tf.Tensor]:
        """Mean and scale of q(w | x, y) for inputs [..., D_x + D_y]."""
        return encoder_forward(XY, self.weights, self.biases)


def encoder_forward(
    XY: tf.Tensor, weights: Sequence[tf.Tensor], biases: Sequence[tf.Tensor]
) -> Tuple[tf.Tensor, tf.Tensor]:
    """The encoder's network on [..., D_x + D_y]: tanh hidden layers (residual where square),
    a linear last layer split into the mean and softplus(. - 3) scale, each [..., d]."""
    h = XY
    last = len(weights) - 1
    for i, (W, b) in enumerate(zip(weights, biases)):
        out = tf.tensordot(h, W, 1) + b
        if i < last:
            out = tf.tanh(out)
        if W.shape[0] == W.shape[1]:
            out = out + h
        h = out
    mean, raw_scale = tf.split(h, 2, axis=-1)
    return mean, tf.nn.softplus(raw_scale - 3.0)


class Layer(gpflow.base.Module):
    """What a model needs of a layer (an interface; GPLayer and LatentVariableLayer implement
    it)."""

    @property
    def noise_width(self) -> int:
        """Standard normals per sample that `propagate` needs."""
        raise NotImplementedError

    @property
    def samples_jointly(self) -> bool:
        """Whether the K samples of one point are drawn jointly (not independently)."""
        return False

    def propagate(
        self, H: tf.Tensor, XY: Optional[tf.Tensor], eps: tf.Tensor
    ) -> Tuple[tf.Tensor, Optional["LatentSample"]]:
        """The layer's output [B, K, D_out] for inputs H [B, K, D_in] and noise eps
        [B, K, noise_width] (XY: the amortisation inputs [B, D_x + D_y], or None to predict),
        and the LatentSample of a latent-variable layer (None for other layers)."""
        raise NotImplementedError

    def prior_kl(self) -> tf.Tensor:
        """The layer's global KL term (KL[q(u) || p(u)] of a GP layer; 0 otherwise)."""
        return tf.zeros([], dtype=gpflow.config.default_float())


@dataclass
class LatentSample:
    """What a latent-variable layer drew, with the terms the bounds need.

    w, eps: [B, K, d]; mean, scale: [B, d] (the parameters of q(w | x, y));
    log_p, log_q, log_q_stopped: [B, K] (summed over d; log_q_stopped holds the encoder
    outputs constant, for STL and DReG); kl: [B] closed-form KL[q(w) || p(w)].
    """

    w: tf.Tensor
    eps: tf.Tensor
    mean: tf.Tensor
    scale: tf.Tensor
    log_p: tf.Tensor
    log_q: tf.Tensor
    log_q_stopped: tf.Tensor
    kl: tf.Tensor


class LatentVariableLayer(Layer):
    """Appends a latent w [d] to each input: h = [h_in, w].

    With the amortisation inputs [x, y] given, w ~ q(w | x, y) from the encoder; without them
    (prediction), w ~ p(w) = N(0, I). `fix_q=True` is the paper's "fixq" mode: q(w) is the prior.
    """

    def __init__(self, encoder: Encoder, fix_q: bool = False, name: Optional[str] = None):
        super().__init__(name=name)
        self.encoder = encoder
        self.latent_dim = encoder.latent_dim
        self.fix_q = fix_q

    @property
    def noise_width(self) -> int:
        """Standard normals per sample: one per latent dimension."""
        return self.latent_dim

    @check_shapes(
        "H: [B, K, D_in]",
        "XY: [B, D_xy]",
        "eps: [B, K, d]",
        "return[0]: [B, K, D_out]",
    )
    def propagate(
        self, H: tf.Tensor, XY: Optional[tf.Tensor], eps: tf.Tensor
    ) -> Tuple[tf.Tensor, LatentSample]:
        """Returns [H, w] [B, K, D_in + d] and the LatentSample of w = mean + scale * eps."""
        if XY is None or self.fix_q:
            shape = tf.stack([tf.shape(H)[0], self.latent_dim])
            mean = tf.zeros(shape, dtype=H.dtype)
            scale = tf.ones(shape, dtype=H.dtype)
        else:
            mean, scale = self.encoder(XY)
        w = mean[:, None, :] + scale[:, None, :] * eps
        prior = tfd.Normal(tf.zeros([], H.dtype), tf.ones([], H.dtype))  # p(w) = N(0, I)
        q = tfd.Normal(mean[:, None], scale[:, None])  # [B, 1, d]: broadcasts over K
        q_stopped = tfd.Normal(tf.stop_gradient(mean)[:, None], tf.stop_gradient(scale)[:, None])
        log_p = tf.reduce_sum(prior.log_prob(w), -1)  # [B, K]
        log_q = tf.reduce_sum(q.log_prob(w), -1)
        log_q_stopped = tf.reduce_sum(q_stopped.log_prob(w), -1)
        kl = tf.reduce_sum(tfd.kl_divergence(tfd.Normal(mean, scale), prior), -1)  # [B]
        sample = LatentSample(w, eps, mean, scale, log_p, log_q, log_q_stopped, kl)
        return tf.concat([H, w], -1), sample


class GPLayer(Layer):
    """A sparse variational GP layer with whitened q(u) and inducing points Z [M, D_in].

    `num_latent_gps` = k GPs share one kernel and Z. Without `mixing` the layer has k outputs;
    with `mixing` W [D_out, k] the outputs are f = W g + mean_function(h) (the paper's "G<k>"
    layer). A sample draws each latent g from its marginal at every input and then mixes, as the
    reference's runs did, so the D_out outputs are correlated (covariance W diag(v_g) Wᵀ).
    `full_cov=True` (single output, no mixing) samples the K samples of each point jointly.
    `precision` ("float64" or "mixed", see dgp_snr.precision) sets the dtype of the large
    products of the marginals; the joint full_cov sampling always runs in float64, as its
    Cholesky's jitter (1e-6) is too close to float32's rounding of the K x K covariance.
    """

    def __init__(
        self,
        kernel: gpflow.kernels.Kernel,
        inducing_points: np.ndarray,
        num_latent_gps: int = 1,
        mean_function: Optional[gpflow.mean_functions.MeanFunction] = None,
        mixing: Optional[np.ndarray] = None,
        q_sqrt_scale: float = 1.0,
        full_cov: bool = False,
        precision: str | Precision = "float64",
        name: Optional[str] = None,
    ) -> None:
        super().__init__(name=name)
        self.precision = get_precision(precision)
        self.precision.require_full_float32()
        M = inducing_points.shape[0]
        self.kernel = kernel
        self.Z = gpflow.Parameter(inducing_points, name="Z")
        self.num_latent_gps = num_latent_gps
        self.q_mu = gpflow.Parameter(np.zeros((M, num_latent_gps)), name="q_mu")
        self.q_sqrt = gpflow.Parameter(
            np.tile(np.eye(M)[None] * q_sqrt_scale, [num_latent_gps, 1, 1]),
            transform=triangular(),
            name="q_sqrt",
        )
        self.mean_function = mean_function or gpflow.mean_functions.Zero()
        self.mixing = None if mixing is None else gpflow.Parameter(mixing, name="mixing")
        if full_cov and (num_latent_gps != 1 or mixing is not None):
            raise ValueError(
                "full_cov=True samples jointly over K only for a single-output layer without "
                f"mixing; this layer has {num_latent_gps} latent GPs"
                + (" and a mixing matrix" if mixing is not None else "")
            )
        self.full_cov = full_cov

    @property
    def num_outputs(self) -> int:
        return self.num_latent_gps if self.mixing is None else int(self.mixing.shape[0])

    @property
    def noise_width(self) -> int:
        """Standard normals per sample that `sample` needs: k for a mixed layer (the latent GPs
        are drawn, then mixed), else the number of outputs."""
        return self.num_latent_gps if self.mixing is not None else self.num_outputs

    @property
    def samples_jointly(self) -> bool:
        return self.full_cov

    def propagate(
        self, H: tf.Tensor, XY: Optional[tf.Tensor], eps: tf.Tensor
    ) -> Tuple[tf.Tensor, None]:
        """One sample of f(H) (see `sample`); XY is not used."""
        return self.sample(H, eps), None

    def prior_kl(self) -> tf.Tensor:
        """Σ_k KL[q(v_k) || N(0, I)] of the whitened inducing outputs."""
        return gpflow.kullback_leiblers.gauss_kl(self.q_mu, self.q_sqrt)

    @check_shapes("H: [B, K, D_in]", "return[0]: [B, K, D_out]", "return[1]: [B, K, D_out]")
    def marginals(self, H: tf.Tensor) -> Tuple[tf.Tensor, tf.Tensor]:
        """Mean and marginal variance [B, K, D_out] of the layer's outputs."""
        shape = tf.shape(H)
        H_flat = tf.reshape(H, [-1, shape[-1]])
        mean, var = whitened_marginals(
            self.kernel, self.Z, H_flat, self.q_mu, self.q_sqrt, self.precision
        )
        if self.mixing is not None:
            mean = tf.linalg.matmul(mean, self.mixing, transpose_b=True)
            var = tf.linalg.matmul(var, tf.square(self.mixing), transpose_b=True)
        mean = mean + self.mean_function(H_flat)
        out_shape = tf.concat([shape[:-1], [self.num_outputs]], 0)
        return tf.reshape(mean, out_shape), tf.reshape(var, out_shape)

    @check_shapes("H: [B, K, D_in]", "eps: [B, K, W]", "return: [B, K, D_out]")
    def sample(self, H: tf.Tensor, eps: tf.Tensor) -> tf.Tensor:
        """One sample of f(H) [B, K, D_out] for standard-normal noise eps [B, K, noise_width]."""
        if self.mixing is not None:
            shape = tf.shape(H)
            H_flat = tf.reshape(H, [-1, shape[-1]])
            g_mean, g_var = whitened_marginals(
                self.kernel, self.Z, H_flat, self.q_mu, self.q_sqrt, self.precision
            )
            g = g_mean + tf.sqrt(g_var) * tf.reshape(eps, [-1, self.num_latent_gps])  # [BK, k]
            f = tf.linalg.matmul(g, self.mixing, transpose_b=True) + self.mean_function(H_flat)
            return tf.reshape(f, tf.concat([shape[:-1], [self.num_outputs]], 0))
        if self.full_cov:
            mean, cov = whitened_cov_over_samples(self.kernel, self.Z, H, self.q_mu, self.q_sqrt)
            K = tf.shape(H)[1]
            jitter = gpflow.config.default_jitter() * tf.eye(K, dtype=H.dtype)
            chol = tf.linalg.cholesky(cov + jitter)
            return mean + tf.linalg.matmul(chol, eps) + self.mean_function(H)
        mean, var = self.marginals(H)
        return mean + tf.sqrt(var) * eps
