"""dgp_snr -> GPflux: to_gpflux builds a GPflux DeepGP with the structure of dgp_snr's DeepGP
and a copy of its parameter values (e.g. the paper's initialisation), with KerasEncoder, the
paper's amortised encoder as a Keras layer."""

from typing import Optional, Sequence, Tuple

import gpflow
import gpflux
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp
from gpflow.inducing_variables import InducingPoints, SharedIndependentInducingVariables
from gpflow.keras import tf_keras
from gpflow.kernels import LinearCoregionalization, SharedIndependent

from dgp_snr.layers import Encoder, GPLayer, LatentVariableLayer, encoder_forward
from dgp_snr.models import DeepGP

tfd = tfp.distributions


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
