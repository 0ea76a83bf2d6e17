"""Encoder-gradient estimators of the IWVI bound, as surrogate objectives.

Each estimator maps per-sample log weights to a per-point surrogate whose gradient with respect to
the encoder parameters phi is the estimator. Inputs [..., K]:
  log_p          log p(y, w_k) terms (likelihood term plus log prior of w_k),
  log_q          log q_phi(w_k), differentiable in phi both through w_k and directly,
  log_q_stopped  log q(w_k) with phi held constant (only the path through w_k remains).
They apply to any log-weight computation, not only the DGP's.
"""

from typing import Callable, Dict

import tensorflow as tf

Surrogate = Callable[[tf.Tensor, tf.Tensor, tf.Tensor], tf.Tensor]


def iwae_bound(log_weights: tf.Tensor) -> tf.Tensor:
    """log (1/K) Σ_k exp(log_weights[..., k]), the importance-weighted bound [...]."""
    K = tf.cast(tf.shape(log_weights)[-1], log_weights.dtype)
    return tf.reduce_logsumexp(log_weights, -1) - tf.math.log(K)


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


ESTIMATORS: Dict[str, Surrogate] = {"reg": reg, "stl": stl, "dreg": dreg}


def get_estimator(name: str) -> Surrogate:
    """The surrogate for `name` (reg, stl or dreg); raises ValueError naming the known ones."""
    try:
        return ESTIMATORS[name]
    except KeyError:
        raise ValueError(
            f"unknown estimator {name!r}; known estimators: {', '.join(ESTIMATORS)}"
        ) from None


def path_weights(name: str, log_v: tf.Tensor) -> tf.Tensor:
    """Per-sample factor [..., K] on the IWVI bound's path gradient ∂bound/∂w_k that turns it
    into the estimator's (STL: 1, DReG: wt_k); used by the single-backward-pass gradients."""
    if name == "dreg":
        return tf.nn.softmax(log_v, axis=-1)
    return tf.ones_like(log_v)
