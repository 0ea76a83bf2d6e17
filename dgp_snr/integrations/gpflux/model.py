"""GPfluxView: a GPflux `DeepGP` seen as dgp_snr's DeepGP, one layer view per `f_layers`
entry (dgp_snr.integrations.gpflux.layers), sharing the model's variables."""

import weakref
from typing import List, Optional

import gpflow
import gpflux
from gpflow.keras import tf_keras

from dgp_snr.estimators import Estimator, check_compatible
from dgp_snr.integrations.gpflux.layers import GPLayerView, LatentLayerView
from dgp_snr.layers import Layer
from dgp_snr.models import DeepGP


def _describe(index: int, layer: tf_keras.layers.Layer) -> str:
    """How errors name a layer: "f_layers[1] (GPLayer 'gp_layer')"."""
    return f"f_layers[{index}] ({type(layer).__name__} {layer.name!r})"


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
