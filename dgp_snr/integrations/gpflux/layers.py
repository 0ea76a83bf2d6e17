"""GPflux's layers seen as dgp_snr's: LatentLayerView (a `LatentVariableLayer`, w = loc +
scale * eps from its encoder or prior, log densities summed over w's d dimensions) and
GPLayerView (a `GPLayer`, marginals from its `predict`, or its latent GPs mixed for a
LinearCoregionalization kernel). Both share the GPflux layer's variables; unsupported layers
raise ValueError naming the layer (`where`)."""

from typing import Optional, Tuple

import gpflow
import gpflux
import tensorflow as tf
import tensorflow_probability as tfp
from check_shapes import check_shapes
from gpflow.inducing_variables import SharedIndependentInducingVariables
from gpflow.kernels import (
    LinearCoregionalization,
    MultioutputKernel,
    SeparateIndependent,
    SharedIndependent,
)
from gpflow.posteriors import IndependentPosteriorMultiOutput

from dgp_snr.layers import GPLayer, LatentSample, LatentVariableLayer, Layer
from dgp_snr.precision import get_precision

tfd = tfp.distributions

#: How a hidden layer with a LinearCoregionalization kernel (W [P, L]) is sampled: "latent"
#: draws the L latent GPs from their marginals and mixes them, f = W g + m(h) (dgp_snr's "G<k>"
#: layers; the outputs keep their covariance W diag(v) Wᵀ); "marginal" draws each of the P
#: outputs from its own marginal (GPflux's own forward pass, which drops that covariance).
MIXED_SAMPLINGS = ("latent", "marginal")
#: The latent variables' distribution families: both sample as w = loc + scale * eps.
LATENT_FAMILIES = (tfd.Normal, tfd.MultivariateNormalDiag)
#: The multi-output kernels whose outputs are independent given the inputs.
_INDEPENDENT_KERNELS = (SharedIndependent, SeparateIndependent)


def _summed(values: tf.Tensor, distribution: tfd.Distribution) -> tf.Tensor:
    """A log density or KL summed over the latent dimensions: a Normal's are per dimension
    ([..., d]), a MultivariateNormalDiag's already summed ([...])."""
    return tf.reduce_sum(values, -1) if distribution.event_shape.rank == 0 else values


# ----------------------------------------------------------------------------- latent layers


def _latent_dim(layer: "gpflux.layers.LatentVariableLayer", where: str) -> int:
    """d, the width of w, from the layer's prior; ValueError for an unsupported prior."""
    prior, family = layer.prior, layer.distribution_class
    # Exact types: a subclass might sample otherwise than loc + scale * eps.
    if type(prior) not in LATENT_FAMILIES or family is not type(prior):
        names = " or ".join(f.__name__ for f in LATENT_FAMILIES)
        raise ValueError(
            f"{where}: a latent prior {type(prior).__name__} with distribution_class "
            f"{getattr(family, '__name__', family)} is not supported; the prior and q(w) must "
            f"be one family, {names} (w = loc + scale * eps)"
        )
    shape = prior.batch_shape if family is tfd.Normal else prior.event_shape
    other = prior.event_shape if family is tfd.Normal else prior.batch_shape
    if shape.rank != 1 or other.rank != 0 or shape[0] is None:
        raise ValueError(
            f"{where}: the latent prior must describe one vector w [d] (a Normal with batch "
            f"shape [d], or a MultivariateNormalDiag with event shape [d]); got batch shape "
            f"{prior.batch_shape} and event shape {prior.event_shape}"
        )
    return int(shape[0])


class _EncoderView(gpflow.base.Module):
    """A GPflux latent layer's encoder with dgp_snr's Encoder interface: `latent_dim`,
    `__call__(XY) -> (mean, scale)` [B, d] and `trainable_variables` (the encoder's own)."""

    def __init__(self, layer: "gpflux.layers.LatentVariableLayer", latent_dim: int, where: str):
        super().__init__()
        self.layer = layer
        self.latent_dim = latent_dim
        self.where = where

    @property
    def trainable_variables(self) -> Tuple[tf.Variable, ...]:
        return tuple(self.layer.encoder.trainable_variables)

    @check_shapes("XY: [B, D_xy]", "return[0]: [B, d]", "return[1]: [B, d]")
    def __call__(self, XY: tf.Tensor) -> Tuple[tf.Tensor, tf.Tensor]:
        """The parameters (loc, scale) of q(w | x, y), as GPflux's layer calls its encoder."""
        params = self.layer.encoder(XY, training=True)
        if len(params) != 2:
            raise ValueError(
                f"{self.where}: the encoder returned {len(params)} tensors; expected the two "
                f"parameters (loc, scale) of {self.layer.distribution_class.__name__}"
            )
        dtype = gpflow.default_float()
        return tuple(tf.convert_to_tensor(p, dtype=dtype) for p in params)


class LatentLayerView(LatentVariableLayer):
    """A GPflux `LatentVariableLayer` as dgp_snr's LatentVariableLayer (shares its variables):
    h = compositor([h_in, w]) with w = loc + scale * eps, q(w | x, y) from the encoder given
    [x, y], the prior otherwise (prediction)."""

    def __init__(self, layer: "gpflux.layers.LatentVariableLayer", where: str):
        super().__init__(_EncoderView(layer, _latent_dim(layer, where), where))
        self.gpflux_layer = layer
        self.where = where

    def _prior_parameters(self, num_points: tf.Tensor, dtype: tf.DType):
        """The prior's (loc, scale) [B, d], for drawing w from the prior."""
        shape = tf.stack([num_points, self.latent_dim])
        prior = self.gpflux_layer.prior
        mean = tf.broadcast_to(tf.cast(prior.mean(), dtype), shape)
        return mean, tf.broadcast_to(tf.cast(prior.stddev(), dtype), shape)

    @check_shapes(
        "H: [B, K, D_in]",
        "XY: [B, D_xy]",
        "eps: [B, K, d]",
        "return[0]: [B, K, D_out]",
    )
    def propagate(
        self, H: tf.Tensor, XY: Optional[tf.Tensor], eps: tf.Tensor
    ) -> Tuple[tf.Tensor, LatentSample]:
        """compositor([H, w]) [B, K, D_out] and the LatentSample of w (log densities summed
        over the d dimensions)."""
        layer = self.gpflux_layer
        if XY is None:
            mean, scale = self._prior_parameters(tf.shape(H)[0], H.dtype)
        else:
            mean, scale = self.encoder(XY)
        family = layer.distribution_class
        w = mean[:, None, :] + scale[:, None, :] * eps  # [B, K, d]
        q = family(mean[:, None, :], scale[:, None, :])  # broadcasts over K
        q_stopped = family(tf.stop_gradient(mean)[:, None, :], tf.stop_gradient(scale)[:, None, :])
        log_p = _summed(layer.prior.log_prob(w), layer.prior)  # [B, K]
        log_q = _summed(q.log_prob(w), q)
        log_q_stopped = _summed(q_stopped.log_prob(w), q_stopped)
        q_point = family(mean, scale)
        kl = _summed(tfd.kl_divergence(q_point, layer.prior), q_point)  # [B]
        sample = LatentSample(w, eps, mean, scale, log_p, log_q, log_q_stopped, kl)
        return layer.compositor([H, w]), sample


# ----------------------------------------------------------------------------- GP layers


def _check_gp_layer(layer: "gpflux.layers.GPLayer", where: str, final: bool) -> None:
    """ValueError naming the layer where dgp_snr cannot evaluate it as GPflux would."""
    if layer.full_cov or layer.full_output_cov:
        raise ValueError(
            f"{where}: full_cov=True or full_output_cov=True samples jointly over the batch's "
            "inputs or outputs; IWVI here draws each of a point's K inputs from its marginal: "
            "build the layer with full_cov=False, full_output_cov=False"
        )
    if layer.num_samples is not None:
        raise ValueError(
            f"{where}: num_samples={layer.num_samples} adds a sample axis of its own; the "
            "number of importance samples K replaces it: build the layer with num_samples=None"
        )
    kernel = layer.kernel
    if isinstance(kernel, MultioutputKernel) and not isinstance(
        kernel, _INDEPENDENT_KERNELS + (LinearCoregionalization,)
    ):
        raise ValueError(
            f"{where}: a {type(kernel).__name__} kernel is not supported; use a single-output "
            "kernel, SharedIndependent, SeparateIndependent or LinearCoregionalization"
        )
    if final and _num_outputs(layer) != 1:
        raise ValueError(
            f"{where}: the last layer must be a single-output GPLayer (Y [N, 1]); this one has "
            f"{_num_outputs(layer)} outputs"
        )


def _num_outputs(layer: "gpflux.layers.GPLayer") -> int:
    """P: the mixed outputs of a LinearCoregionalization layer, else one per latent GP."""
    if isinstance(layer.kernel, LinearCoregionalization):
        return int(layer.kernel.W.shape[0])
    return int(layer.num_latent_gps)


def _latent_kernel(layer: "gpflux.layers.GPLayer") -> MultioutputKernel:
    """The kernel of a LinearCoregionalization layer's latent GPs before mixing: the layer's
    own, or, where its L latent GPs share one kernel object and one set of inducing points (as
    to_gpflux builds dgp_snr's "G<k>"), SharedIndependent(kernel, L), whose conditional is the
    same with one Cholesky of Kmm instead of L (and no map_fn over the latent GPs)."""
    kernels = layer.kernel.kernels
    shared = all(k is kernels[0] for k in kernels)
    if shared and isinstance(layer.inducing_variable, SharedIndependentInducingVariables):
        return SharedIndependent(kernels[0], output_dim=len(kernels))
    return layer.kernel


class GPLayerView(GPLayer):
    """A GPflux `GPLayer` as dgp_snr's GPLayer (shares its variables; `q_mu` and `q_sqrt` are
    the GPflux layer's, so natural gradients reach them). Marginals come from the layer's own
    `predict`; a LinearCoregionalization layer sampled "latent" draws its latent GPs from
    their marginals (GPflow's conditional before the mixing) and mixes them."""

    def __init__(
        self,
        layer: "gpflux.layers.GPLayer",
        where: str,
        mixed_sampling: str = "latent",
        final: bool = False,
    ) -> None:
        Layer.__init__(self)  # GPLayer's own __init__ would create parameters
        if mixed_sampling not in MIXED_SAMPLINGS:
            raise ValueError(
                f"unknown mixed_sampling {mixed_sampling!r}; known: {', '.join(MIXED_SAMPLINGS)}"
            )
        _check_gp_layer(layer, where, final)
        self.gpflux_layer = layer
        self.where = where
        self.precision = get_precision("float64")
        self.q_mu, self.q_sqrt = layer.q_mu, layer.q_sqrt
        self.num_latent_gps = int(layer.num_latent_gps)
        self.mixing = None  # dgp_snr's own mixing matrix; a GPflux layer mixes in its kernel
        self.full_cov = False
        self.mixed = isinstance(layer.kernel, LinearCoregionalization)
        self.samples_latent = self.mixed and mixed_sampling == "latent"
        self.latent_kernel = _latent_kernel(layer) if self.samples_latent else None

    @property
    def num_outputs(self) -> int:
        return _num_outputs(self.gpflux_layer)

    @property
    def noise_width(self) -> int:
        """L for a LinearCoregionalization layer sampled "latent", else the outputs P."""
        return self.num_latent_gps if self.samples_latent else self.num_outputs

    def prior_kl(self) -> tf.Tensor:
        """KL[q(u) || p(u)] minus the log prior density of the kernel's trainable parameters:
        the GPflux layer's loss times N (0 log prior unless the parameters have priors)."""
        kl = self.gpflux_layer.prior_kl()
        log_priors = [p.log_prior_density() for p in self.gpflux_layer.kernel.trainable_parameters]
        return kl - tf.add_n(log_priors) if log_priors else kl

    @check_shapes("H: [B, K, D_in]", "return[0]: [B, K, P]", "return[1]: [B, K, P]")
    def marginals(self, H: tf.Tensor) -> Tuple[tf.Tensor, tf.Tensor]:
        """Mean and marginal variance [B, K, P] of the outputs, from the layer's `predict`."""
        shape = tf.shape(H)
        mean, var = self.gpflux_layer.predict(
            tf.reshape(H, [-1, shape[-1]]), full_cov=False, full_output_cov=False
        )
        out_shape = tf.concat([shape[:-1], [self.num_outputs]], 0)
        return tf.reshape(mean, out_shape), tf.reshape(var, out_shape)

    @check_shapes("H_flat: [N, D_in]", "return[0]: [N, L]", "return[1]: [N, L]")
    def latent_marginals(self, H_flat: tf.Tensor) -> Tuple[tf.Tensor, tf.Tensor]:
        """Mean and variance [N, L] of the latent GPs g of a LinearCoregionalization layer
        (GPflow's coregionalisation conditional before it mixes)."""
        layer = self.gpflux_layer
        posterior = IndependentPosteriorMultiOutput(
            self.latent_kernel,
            layer.inducing_variable,
            layer.q_mu,
            layer.q_sqrt,
            whiten=layer.whiten,
            mean_function=None,
            precompute_cache=None,
        )
        return posterior.fused_predict_f(H_flat, full_cov=False, full_output_cov=False)

    @check_shapes("H: [B, K, D_in]", "eps: [B, K, W]", "return: [B, K, P]")
    def sample(self, H: tf.Tensor, eps: tf.Tensor) -> tf.Tensor:
        """One sample of f(H) [B, K, P] for standard-normal noise eps [B, K, noise_width]."""
        if not self.samples_latent:
            mean, var = self.marginals(H)
            return mean + tf.sqrt(var) * eps
        layer = self.gpflux_layer
        shape = tf.shape(H)
        H_flat = tf.reshape(H, [-1, shape[-1]])
        g_mean, g_var = self.latent_marginals(H_flat)
        g = g_mean + tf.sqrt(g_var) * tf.reshape(eps, [-1, self.num_latent_gps])  # [BK, L]
        f = tf.linalg.matmul(g, layer.kernel.W, transpose_b=True) + layer.mean_function(H_flat)
        return tf.reshape(f, tf.concat([shape[:-1], [self.num_outputs]], 0))
