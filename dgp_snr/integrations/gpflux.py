"""IWVI and the REG / STL / DReG encoder-gradient estimators for GPflux deep GPs.

GPflux (GPflow 2's deep-GP library) builds a latent-variable DGP as a `gpflux.models.DeepGP` of
`LatentVariableLayer`s and `GPLayer`s. Its layers draw one sample per call and its losses reach
Keras already averaged over the batch, so GPflux itself trains with the VI bound only. This
module reads the model's public attributes (a latent layer's `encoder`, `prior`,
`distribution_class` and `compositor`; a GP layer's `predict`, `prior_kl`, `kernel`, `q_mu`,
`q_sqrt`; the likelihood layer's `likelihood`) and evaluates the model as dgp_snr evaluates its
own DeepGP: K samples per point, per-point, per-sample log weights [B, K], and the VI, IWVI and
CIWAE bounds and REG / STL / DReG surrogates of `dgp_snr.estimators`, unchanged.

`GPfluxView(model)` is a GPflux model seen as a dgp_snr `DeepGP`. It shares the model's
variables (nothing is copied), so `Trainer`, `bound_and_gradients` and `EncoderGradientSampler`
run on it as on dgp_snr's own models, and what they change is the GPflux model.

Noise layout (as `DeepGP.draw_noise`): one standard-normal tensor [B, K, width] per layer of
`model.f_layers` but the last, then None. The width is d for a latent layer, the number of
outputs for a GP layer, and the number of latent GPs L for a layer with a
`LinearCoregionalization` kernel sampled "latent" (the default, see MIXED_SAMPLINGS).

Supported:
- `LatentVariableLayer` whose prior is a `tfp.distributions.Normal` (batch shape [d]) or
  `MultivariateNormalDiag` (event shape [d]), whose encoder returns (loc, scale) [B, d] of the
  same family (w = loc + scale * eps, as GPflux samples it), with any compositor that accepts
  [B, K, D] inputs (GPflux's default concatenates).
- `GPLayer` with `full_cov=False`, `full_output_cov=False`, `num_samples=None`, whitened or
  not, with any single-output kernel or a `SharedIndependent`, `SeparateIndependent` or
  `LinearCoregionalization` kernel, any inducing variables and mean function GPflow's
  conditionals accept. Independent outputs are sampled from their marginals, which is exact.
- The last layer a single-output `GPLayer`; any GPflow likelihood in GPflux's `LikelihoodLayer`
  (its closed-form or quadrature `variational_expectations`; tested with `Gaussian`).
- Like GPflux's own loss, each GP layer's global term is KL[q(u) || p(u)] minus the log prior
  density of its kernel's trainable parameters (0 unless they have priors).

Not supported (a ValueError names the layer): other layer types in `f_layers` (e.g.
`BayesianDenseLayer`, Keras layers), other latent distributions, GP layers that sample jointly
(`full_cov` or `full_output_cov`) or several times (`num_samples`), other multi-output kernels,
a multi-output last layer; DReG with a latent layer after a GP layer (as dgp_snr's own models).
"""

import weakref
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple, Union

import gpflow
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp
from check_shapes import check_shapes

try:
    import gpflux
except ImportError as error:  # pragma: no cover - the extra is installed in CI
    raise ImportError(
        "dgp_snr.integrations.gpflux needs GPflux: pip install -e .[gpflux] (gpflux==0.4.5)"
    ) from error

from gpflow.inducing_variables import InducingPoints, SharedIndependentInducingVariables
from gpflow.keras import tf_keras
from gpflow.kernels import (
    LinearCoregionalization,
    MultioutputKernel,
    SeparateIndependent,
    SharedIndependent,
)
from gpflow.posteriors import IndependentPosteriorMultiOutput

from dgp_snr.estimators import Estimator, check_compatible
from dgp_snr.gradients import EncoderGradientSampler
from dgp_snr.layers import (
    Encoder,
    GPLayer,
    LatentSample,
    LatentVariableLayer,
    Layer,
    encoder_forward,
)
from dgp_snr.models import DeepGP, Propagation
from dgp_snr.precision import get_precision
from dgp_snr.training import Trainer, TrainingConfig

tfd = tfp.distributions

__all__ = [
    "MIXED_SAMPLINGS",
    "GPfluxView",
    "KerasEncoder",
    "LogWeights",
    "encoder_surrogate",
    "gradient_sampler",
    "iwvi_bound",
    "log_weights",
    "make_trainer",
    "to_gpflux",
]

#: How a hidden layer with a LinearCoregionalization kernel (W [P, L]) is sampled: "latent"
#: draws the L latent GPs from their marginals and mixes them, f = W g + m(h) (dgp_snr's "G<k>"
#: layers; the outputs keep their covariance W diag(v) Wᵀ); "marginal" draws each of the P
#: outputs from its own marginal (GPflux's own forward pass, which drops that covariance).
MIXED_SAMPLINGS = ("latent", "marginal")
#: The latent variables' distribution families: both sample as w = loc + scale * eps.
LATENT_FAMILIES = (tfd.Normal, tfd.MultivariateNormalDiag)
#: The multi-output kernels whose outputs are independent given the inputs.
_INDEPENDENT_KERNELS = (SharedIndependent, SeparateIndependent)

GPfluxModel = Union["gpflux.models.DeepGP", "GPfluxView"]


def _describe(index: int, layer: tf_keras.layers.Layer) -> str:
    """How errors name a layer: "f_layers[1] (GPLayer 'gp_layer')"."""
    return f"f_layers[{index}] ({type(layer).__name__} {layer.name!r})"


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


# ----------------------------------------------------------------------------- the model


def _layer_views(model: "gpflux.models.DeepGP", mixed_sampling: str) -> List[Layer]:
    """One view per layer of model.f_layers; ValueError naming the first unsupported one."""
    if not isinstance(model, gpflux.models.DeepGP):
        raise TypeError(f"expected a gpflux.models.DeepGP, got {type(model).__name__}")
    f_layers = list(model.f_layers)
    if not f_layers:
        raise ValueError("the GPflux model has no f_layers")
    views: List[Layer] = []
    for i, layer in enumerate(f_layers):
        where = _describe(i, layer)
        final = i == len(f_layers) - 1
        if isinstance(layer, gpflux.layers.GPLayer):
            views.append(GPLayerView(layer, where, mixed_sampling, final=final))
        elif isinstance(layer, gpflux.layers.LatentVariableLayer):
            if final:
                raise ValueError(f"{where}: the last layer must be a single-output GPLayer")
            views.append(LatentLayerView(layer, where))
        else:
            raise ValueError(
                f"{where} is not supported: IWVI here evaluates LatentVariableLayer and GPLayer "
                "layers only"
            )
    return views


def _likelihood(model: "gpflux.models.DeepGP") -> gpflow.likelihoods.Likelihood:
    layer = model.likelihood_layer
    if not isinstance(layer, gpflux.layers.LikelihoodLayer):
        raise ValueError(
            f"likelihood_layer ({type(layer).__name__}) is not supported: expected a "
            "gpflux.layers.LikelihoodLayer wrapping a GPflow likelihood"
        )
    return layer.likelihood


class GPfluxView(DeepGP):
    """A GPflux `DeepGP` seen as dgp_snr's DeepGP, sharing its variables: the VI, IWVI
    ("IWAE") and CIWAE bounds, the encoder surrogates, `bound_and_gradients`, `Trainer`,
    `EncoderGradientSampler` and prediction all run on it unchanged. `layers[i]` views
    `model.f_layers[i]`; `encoder_variables` are the latent layers' encoders' trainable
    variables, `non_encoder_variables` every other trainable variable of the GPflux model.

    mode, num_importance_samples, beta and seed as DeepGP's (seed: the noise generator's);
    mixed_sampling: how LinearCoregionalization hidden layers sample (MIXED_SAMPLINGS).
    """

    def __init__(
        self,
        model: "gpflux.models.DeepGP",
        mode: str = "IWAE",
        num_importance_samples: int = 5,
        beta: float = 0.5,
        mixed_sampling: str = "latent",
        seed: Optional[int] = None,
    ) -> None:
        layers = _layer_views(model, mixed_sampling)
        super().__init__(
            layers,
            _likelihood(model),
            model.num_data,
            mode=mode,
            num_importance_samples=num_importance_samples,
            beta=beta,
            seed=seed,
        )
        self.mixed_sampling = mixed_sampling
        self._model_ref = weakref.ref(model)  # the model does not live on through its views

    @property
    def gpflux_model(self) -> "gpflux.models.DeepGP":
        model = self._model_ref()
        if model is None:
            raise ReferenceError("the GPflux model of this view no longer exists")
        return model

    def check_estimator(self, estimator: "str | Estimator") -> Estimator:
        """estimators.check_compatible, naming the GPflux layer in its message."""
        return check_compatible(
            estimator, self.mode, self.latent_positions, where=lambda i: self.layers[i].where
        )


# ----------------------------------------------------------------------------- functions


@dataclass
class LogWeights:
    """The per-point, per-sample terms of the IWVI bound of a batch of B points, K samples each.

    log_p [B, K]: E_q[log p(y | f_final)] + Σ log p(w_k) (the final layer's closed-form
    variational expectation); log_q [B, K]: Σ log q(w_k | x, y), differentiable in the encoder's
    parameters; log_q_stopped [B, K]: the same with them held constant (for STL and DReG);
    kl_u: Σ over GP layers of KL[q(u) || p(u)] (minus kernel log priors, as GPflux);
    propagation: the dgp_snr Propagation they came from (final-layer marginals, latent samples,
    noise).
    """

    log_p: tf.Tensor
    log_q: tf.Tensor
    log_q_stopped: tf.Tensor
    kl_u: tf.Tensor
    propagation: Propagation

    @property
    def log_w(self) -> tf.Tensor:
        """[B, K]: the log importance weights log p(y, w_k) - log q(w_k | x, y)."""
        return self.log_p - self.log_q


_VIEWS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _view(model: GPfluxModel, mode: str, beta: float, mixed_sampling: str) -> GPfluxView:
    """The cached view of a GPflux model with these settings (created outside any graph)."""
    source = model.gpflux_model if isinstance(model, GPfluxView) else model
    if not isinstance(source, gpflux.models.DeepGP):
        raise TypeError(f"expected a gpflux.models.DeepGP, got {type(source).__name__}")
    views: Dict[tuple, GPfluxView] = _VIEWS.setdefault(source, {})
    key = (mode, float(beta), mixed_sampling)
    if key not in views:
        with tf.init_scope():  # its noise generator's variable, even while tracing
            views[key] = GPfluxView(source, mode=mode, beta=beta, mixed_sampling=mixed_sampling)
    return views[key]


def _propagate(
    view: GPfluxView,
    X: tf.Tensor,
    Y: tf.Tensor,
    num_importance_samples: int,
    noise: Optional[Sequence[Optional[tf.Tensor]]],
) -> Tuple[Propagation, tf.Tensor]:
    dtype = gpflow.default_float()
    Y = tf.convert_to_tensor(Y, dtype=dtype)
    X = tf.convert_to_tensor(X, dtype=dtype)
    return view.propagate(X, Y, num_importance_samples, noise=noise), Y


def log_weights(
    model: GPfluxModel,
    X: tf.Tensor,
    Y: tf.Tensor,
    num_importance_samples: int,
    noise: Optional[Sequence[Optional[tf.Tensor]]] = None,
    *,
    mixed_sampling: str = "latent",
) -> LogWeights:
    """The log weights [B, K] of a GPflux DeepGP on a batch X [B, D], Y [B, 1] with
    K = num_importance_samples samples per point, and the terms the estimators need.

    `noise` (dgp_snr's draw_noise layout, see the module's docstring) fixes every draw, so that
    two models, GPflux's and dgp_snr's, can be fed the same; otherwise it is drawn.
    """
    view = _view(model, "IWAE", 0.5, mixed_sampling)
    prop, Y = _propagate(view, X, Y, num_importance_samples, noise)
    log_p, log_q, log_q_stopped = view.log_weight_terms(prop, Y)
    return LogWeights(log_p, log_q, log_q_stopped, prop.kl_u, prop)


def iwvi_bound(
    model: GPfluxModel,
    X: tf.Tensor,
    Y: tf.Tensor,
    num_importance_samples: int,
    noise: Optional[Sequence[Optional[tf.Tensor]]] = None,
    *,
    mode: str = "IWAE",
    beta: float = 0.5,
    mixed_sampling: str = "latent",
) -> tf.Tensor:
    """The bound (N/B) Σ_b bound_b - Σ KL[q(u) || p(u)] of a GPflux DeepGP on a batch X [B, D],
    Y [B, 1]: mode "IWAE" the importance-weighted bound with K = num_importance_samples,
    "VI" the doubly-stochastic bound (K samples averaged, closed-form KL for q(w)), "CIWAE"
    beta * VI + (1 - beta) * IWAE. Every non-encoder parameter follows its gradient. `noise` as
    in log_weights."""
    view = _view(model, mode, beta, mixed_sampling)
    prop, Y = _propagate(view, X, Y, num_importance_samples, noise)
    return view.bound(prop, Y)


def encoder_surrogate(
    model: GPfluxModel,
    X: tf.Tensor,
    Y: tf.Tensor,
    num_importance_samples: int,
    estimator: "str | Estimator",
    noise: Optional[Sequence[Optional[tf.Tensor]]] = None,
    *,
    mode: str = "IWAE",
    beta: float = 0.5,
    mixed_sampling: str = "latent",
) -> tf.Tensor:
    """A scalar whose gradient in the encoders' parameters is `estimator`'s ("reg", "stl" or
    "dreg") estimate of iwvi_bound's gradient (same arguments); ValueError where the estimator
    does not fit the mode (STL and DReG need importance weights) or the layers (DReG needs the
    latent layers first), naming the layer."""
    view = _view(model, mode, beta, mixed_sampling)
    prop, Y = _propagate(view, X, Y, num_importance_samples, noise)
    return view.encoder_surrogate(prop, Y, estimator)


def make_trainer(
    model: "gpflux.models.DeepGP",
    X: np.ndarray,
    Y: np.ndarray,
    config: Optional[TrainingConfig] = None,
    *,
    mode: str = "IWAE",
    num_importance_samples: int = 5,
    beta: float = 0.5,
    mixed_sampling: str = "latent",
    seed: int = 0,
) -> Trainer:
    """dgp_snr's Trainer on a GPflux DeepGP as GPflux built it, on data X [N, D], Y [N, 1]:
    Adam (or SGD) on the model's non-encoder variables with the bound's gradient, the
    encoder's optimiser with `config.estimator`'s gradient, and natural gradients on the last
    layer's q(u) if `config.use_nat_grad_for_final_layer` (which, as for dgp_snr's models, sets
    that q_mu and q_sqrt not trainable for the optimisers). `seed` keys the model's noise and
    the minibatch order."""
    view = GPfluxView(
        model,
        mode=mode,
        num_importance_samples=num_importance_samples,
        beta=beta,
        mixed_sampling=mixed_sampling,
        seed=seed,
    )
    return Trainer(view, X, Y, config or TrainingConfig(), seed=seed)


def gradient_sampler(
    model: "gpflux.models.DeepGP",
    X: np.ndarray,
    Y: np.ndarray,
    *,
    mode: str = "IWAE",
    beta: float = 0.5,
    mixed_sampling: str = "latent",
    seed: Optional[int] = None,
    max_rows: int = 2**13,
) -> EncoderGradientSampler:
    """dgp_snr's EncoderGradientSampler on a GPflux DeepGP at the batch X [B, D], Y [B, 1]:
    `sample(K, R, estimator)` gives R independent encoder-gradient estimates per encoder
    variable, for `dgp_snr.gradients.snr`."""
    view = GPfluxView(model, mode=mode, beta=beta, mixed_sampling=mixed_sampling, seed=seed)
    return EncoderGradientSampler(view, X, Y, max_rows=max_rows)


# ----------------------------------------------------------------------------- dgp_snr -> GPflux


class KerasEncoder(tf_keras.layers.Layer):
    """dgp_snr's Encoder, the paper's amortised q(w | x, y), as a Keras layer for a GPflux
    LatentVariableLayer: an MLP from [x, y] [B, D_x + D_y] to (mean, scale) [B, d], tanh
    hidden layers, Glorot-normal weights, zero biases, a skip connection wherever a layer's
    widths match, scale = softplus(raw - 3). `weights` ([W_i], [b_i]) sets the values (as
    `from_encoder` does); otherwise they are drawn with `seed`."""

    def __init__(
        self,
        input_dim: int,
        latent_dim: int,
        hidden_dims: Sequence[int] = (20, 20),
        seed: Optional[int] = None,
        weights: Optional[Tuple[Sequence[np.ndarray], Sequence[np.ndarray]]] = None,
        name: Optional[str] = None,
    ) -> None:
        super().__init__(dtype=gpflow.default_float(), name=name)
        self.latent_dim = latent_dim
        dims = [input_dim, *hidden_dims, 2 * latent_dim]
        if weights is None:
            rng = np.random.default_rng(seed)
            Ws = [
                rng.standard_normal((i, o)) * np.sqrt(2.0 / (i + o))
                for i, o in zip(dims[:-1], dims[1:])
            ]
            weights = (Ws, [np.zeros(o) for o in dims[1:]])
        self.dense_weights, self.dense_biases = [], []
        for i, (W, b) in enumerate(zip(*weights)):
            self.dense_weights.append(self._constant_weight(f"W{i}", W))
            self.dense_biases.append(self._constant_weight(f"b{i}", b))

    def _constant_weight(self, name: str, value: np.ndarray) -> tf.Variable:
        value = np.asarray(value, dtype=np.float64)
        return self.add_weight(
            name=name,
            shape=value.shape,
            dtype=gpflow.default_float(),
            initializer=lambda shape, dtype=None: tf.constant(value, dtype=dtype),
            trainable=True,
        )

    @classmethod
    def from_encoder(cls, encoder: Encoder, name: Optional[str] = None) -> "KerasEncoder":
        """A KerasEncoder with a copy of dgp_snr Encoder's current weights."""
        Ws = [W.numpy() for W in encoder.weights]
        bs = [b.numpy() for b in encoder.biases]
        hidden = encoder.dims[1:-1]
        return cls(encoder.dims[0], encoder.latent_dim, hidden, weights=(Ws, bs), name=name)

    def call(self, XY: tf.Tensor) -> Tuple[tf.Tensor, tf.Tensor]:
        return encoder_forward(XY, self.dense_weights, self.dense_biases)


def _copy_trainable(target: gpflow.Parameter, source: gpflow.Parameter) -> None:
    gpflow.set_trainable(target, source.trainable)


def _to_gpflux_gp_layer(layer: GPLayer, num_data: int, where: str) -> "gpflux.layers.GPLayer":
    """The GPflux GPLayer with `layer`'s structure and (copied) parameter values."""
    if layer.full_cov:
        raise ValueError(
            f"{where}: full_cov=True (joint over a point's K samples) has no GPflux counterpart"
        )
    kernel = gpflow.utilities.deepcopy(layer.kernel)
    k = layer.num_latent_gps
    if layer.mixing is None:
        mo_kernel = SharedIndependent(kernel, output_dim=k)
    else:  # one kernel object shared by the k latent GPs, as dgp_snr's "G<k>"
        mo_kernel = LinearCoregionalization([kernel] * k, W=layer.mixing.numpy())
        _copy_trainable(mo_kernel.W, layer.mixing)
    inducing_points = InducingPoints(layer.Z.numpy())
    _copy_trainable(inducing_points.Z, layer.Z)
    gp_layer = gpflux.layers.GPLayer(
        mo_kernel,
        SharedIndependentInducingVariables(inducing_points),
        num_data,
        mean_function=gpflow.utilities.deepcopy(layer.mean_function),
        whiten=True,
        verbose=False,
    )
    gp_layer.q_mu.assign(layer.q_mu.numpy())
    gp_layer.q_sqrt.assign(layer.q_sqrt.numpy())
    _copy_trainable(gp_layer.q_mu, layer.q_mu)
    _copy_trainable(gp_layer.q_sqrt, layer.q_sqrt)
    return gp_layer


def _input_dim(model: DeepGP) -> int:
    first = model.layers[0]
    if isinstance(first, LatentVariableLayer):
        return first.encoder.dims[0] - 1  # the encoder reads [x, y] with one y
    return int(first.Z.shape[1])


def to_gpflux(model: DeepGP) -> "gpflux.models.DeepGP":
    """A GPflux DeepGP with the structure of dgp_snr's `model` and a copy of its parameter
    values and trainability (e.g. the reference initialisation of `build_model`): latent
    layers with a KerasEncoder and a MultivariateNormalDiag(0, I) prior, single-output GP
    layers with a SharedIndependent kernel, "G<k>" layers with a LinearCoregionalization
    kernel whose k latent GPs share one kernel object, shared inducing points, whitened q(u),
    the same mean functions and a copy of the likelihood. The GPflux model computes in
    float64 whatever `model.precision` is; `fix_q` latent layers and `full_cov` GP layers have
    no counterpart (ValueError)."""
    f_layers = []
    for i, layer in enumerate(model.layers):
        where = f"layer {i} ({type(layer).__name__})"
        if isinstance(layer, LatentVariableLayer):
            if layer.fix_q:
                raise ValueError(
                    f"{where}: fix_q=True (q(w) fixed to the prior) has no GPflux " "counterpart"
                )
            dtype = gpflow.default_float()
            d = layer.latent_dim
            prior = tfd.MultivariateNormalDiag(tf.zeros(d, dtype), tf.ones(d, dtype))
            encoder = KerasEncoder.from_encoder(layer.encoder)
            f_layers.append(gpflux.layers.LatentVariableLayer(prior, encoder))
        elif isinstance(layer, GPLayer):
            f_layers.append(_to_gpflux_gp_layer(layer, model.num_data, where))
        else:
            raise ValueError(f"{where} has no GPflux counterpart")
    return gpflux.models.DeepGP(
        f_layers,
        gpflow.utilities.deepcopy(model.likelihood),
        input_dim=_input_dim(model),
        target_dim=1,
        num_data=model.num_data,
    )
