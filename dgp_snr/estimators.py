"""Encoder-gradient estimators of the IWVI bound, as surrogate objectives.

Each estimator maps per-sample log weights to a per-point surrogate whose gradient with respect to
the encoder parameters phi is the estimator. Inputs [..., K]:
  log_p          log p(y, w_k) terms (likelihood term plus log prior of w_k),
  log_q          log q_phi(w_k), differentiable in phi both through w_k and directly,
  log_q_stopped  log q(w_k) with phi held constant (only the path through w_k remains).
They apply to any log-weight computation, not only the DGP's.
"""

import enum
from typing import Callable, Dict, Sequence, Tuple

import numpy as np
import tensorflow as tf

Surrogate = Callable[[tf.Tensor, tf.Tensor, tf.Tensor], tf.Tensor]


def check_num_importance_samples(K: object) -> int:
    """K as an int; raises ValueError (one line) unless it is an integer of at least 1. The one
    range check of K: configs, the model and every per-call K (evaluation, sampling) use it."""
    if isinstance(K, bool) or not isinstance(K, (int, np.integer)) or K < 1:
        raise ValueError(f"num_importance_samples (K) must be an integer of at least 1, got {K!r}")
    return int(K)


def log_mean_exp(values: tf.Tensor) -> tf.Tensor:
    """log (1/n) Σ_i exp(values[..., i]) over the last axis, computed stably [...]."""
    n = tf.cast(tf.shape(values)[-1], values.dtype)
    return tf.reduce_logsumexp(values, -1) - tf.math.log(n)


def iwae_bound(log_weights: tf.Tensor) -> tf.Tensor:
    """The importance-weighted bound log (1/K) Σ_k w_k from log weights [..., K] -> [...]."""
    return log_mean_exp(log_weights)


def reg(log_p: tf.Tensor, log_q: tf.Tensor, log_q_stopped: tf.Tensor) -> tf.Tensor:
    """REG: the plain reparameterised gradient of the bound."""
    return iwae_bound(log_p - log_q)


def stl(log_p: tf.Tensor, log_q: tf.Tensor, log_q_stopped: tf.Tensor) -> tf.Tensor:
    """STL (Roeder et al., 2017): the path derivative; biased for K > 1."""
    return iwae_bound(log_p - log_q_stopped)


def dreg(log_p: tf.Tensor, log_q: tf.Tensor, log_q_stopped: tf.Tensor) -> tf.Tensor:
    """DReG (Tucker et al., 2019; eq. 9 of the SNR paper): Σ_k wt_k² ∂log v_k/∂w_k ∂w_k/∂phi."""
    log_v = log_p - log_q_stopped
    normalised_weights = tf.stop_gradient(tf.nn.softmax(log_v, axis=-1))
    return tf.reduce_sum(tf.square(normalised_weights) * log_v, -1)


class Estimator(enum.Enum):
    """An encoder-gradient estimator: its surrogate, its path weight and what it requires of the
    model (in the style of TFP's `GradientEstimators`). `Estimator.parse("dreg")` from a name."""

    REG = "reg"
    STL = "stl"
    DREG = "dreg"

    @classmethod
    def parse(cls, name: "str | Estimator") -> "Estimator":
        """The estimator called `name`; raises ValueError naming the known ones."""
        if isinstance(name, Estimator):
            return name
        try:
            return cls(name)
        except ValueError:
            raise ValueError(
                f"unknown estimator {name!r}; known estimators: {', '.join(ESTIMATORS)}"
            ) from None

    def surrogate(self, log_p: tf.Tensor, log_q: tf.Tensor, log_q_stopped: tf.Tensor) -> tf.Tensor:
        """[...]: a per-point surrogate whose phi-gradient is this estimator (inputs [..., K])."""
        return _SURROGATES[self](log_p, log_q, log_q_stopped)

    def path_weights(self, log_v: tf.Tensor) -> tf.Tensor:
        """Per-sample factor [..., K] on the IWVI bound's path gradient ∂bound/∂w_k that turns it
        into this estimator's (STL: 1, DReG: wt_k; REG also keeps the direct terms of log q, so
        the factor is unused for it); used by the single-backward-pass gradients."""
        if self is Estimator.DREG:
            return tf.nn.softmax(log_v, axis=-1)
        return tf.ones_like(log_v)

    @property
    def needs_importance_weights(self) -> bool:
        """STL and DReG are defined on the importance-weighted bound (not VI's closed-form KL)."""
        return self is not Estimator.REG

    @property
    def needs_latent_first(self) -> bool:
        """DReG is implemented (here as in the reference) with the latent layer first only."""
        return self is Estimator.DREG


_SURROGATES: Dict[Estimator, Surrogate] = {
    Estimator.REG: reg,
    Estimator.STL: stl,
    Estimator.DREG: dreg,
}
#: The estimators' names.
ESTIMATORS: Tuple[str, ...] = tuple(e.value for e in Estimator)


def check_compatible(
    estimator: "str | Estimator",
    mode: str,
    latent_positions: Sequence[int],
    where: Callable[[int], str] = lambda i: f"layer {i}",
) -> Estimator:
    """The one check of where a model meets an estimator: STL and DReG need importance weights
    (not mode VI); DReG needs every latent-variable layer first. `latent_positions` are the
    latent layers' indices; `where(i)` names layer i in the message. Returns the Estimator."""
    est = Estimator.parse(estimator)
    if est.needs_importance_weights and mode == "VI":
        raise ValueError(
            f"estimator {est.value!r} needs importance weights; the VI mode uses the closed-form "
            "KL for q(w) and supports only 'reg'"
        )
    if est.needs_latent_first:
        late = [i for i in latent_positions if i != 0]
        if late:
            raise ValueError(
                f"estimator {est.value!r} needs the latent-variable layer first (as the "
                f"reference implements DReG), but {where(late[0])} is a latent-variable layer"
            )
    return est


def get_estimator(name: str) -> Surrogate:
    """The surrogate function for `name` (reg, stl or dreg); raises ValueError naming the known
    ones."""
    return _SURROGATES[Estimator.parse(name)]
