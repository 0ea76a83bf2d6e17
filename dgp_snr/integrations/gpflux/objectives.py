"""The IWVI terms of a GPflux DeepGP (log weights [B, K]), its VI / IWVI / CIWAE bounds and
REG / STL / DReG encoder surrogates, and dgp_snr's Trainer and EncoderGradientSampler on it:
each through a GPfluxView of the model (dgp_snr.integrations.gpflux.model)."""

import weakref
from dataclasses import dataclass
from typing import Dict, Optional, Sequence, Tuple, Union

import gpflow
import gpflux
import numpy as np
import tensorflow as tf

from dgp_snr.estimators import Estimator
from dgp_snr.gradients import EncoderGradientSampler
from dgp_snr.integrations.gpflux.model import GPfluxView
from dgp_snr.models import Propagation
from dgp_snr.training import Trainer, TrainingConfig

#: A GPflux DeepGP, or a view of one (its model is what the functions evaluate).
GPfluxModel = Union["gpflux.models.DeepGP", GPfluxView]


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

    `noise` (dgp_snr's draw_noise layout, see the package's docstring) fixes every draw, so that
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
