"""IWVI and the REG / STL / DReG encoder-gradient estimators for GPflux deep GPs.

GPflux (GPflow 2's deep-GP library) builds a latent-variable DGP as a `gpflux.models.DeepGP` of
`LatentVariableLayer`s and `GPLayer`s. Its layers draw one sample per call and its losses reach
Keras already averaged over the batch, so GPflux itself trains with the VI bound only. This
package reads the model's public attributes (a latent layer's `encoder`, `prior`,
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

Modules: `layers` (views of GPflux's LatentVariableLayer and GPLayer as dgp_snr layers),
`model` (GPfluxView, a GPflux DeepGP as dgp_snr's DeepGP), `objectives` (log weights, bounds,
encoder surrogates, Trainer and EncoderGradientSampler on a GPflux model), `convert` (dgp_snr's
DeepGP as a GPflux one: to_gpflux, KerasEncoder). Every public name is exported here.
"""

try:
    import gpflux  # noqa: F401  (the submodules import it; one message when it is missing)
except ImportError as error:  # pragma: no cover - the extra is installed in CI
    raise ImportError(
        "dgp_snr.integrations.gpflux needs GPflux: pip install -e .[gpflux] (gpflux==0.4.5)"
    ) from error

from dgp_snr.integrations.gpflux.convert import KerasEncoder, to_gpflux
from dgp_snr.integrations.gpflux.layers import LATENT_FAMILIES as LATENT_FAMILIES
from dgp_snr.integrations.gpflux.layers import MIXED_SAMPLINGS
from dgp_snr.integrations.gpflux.layers import GPLayerView as GPLayerView
from dgp_snr.integrations.gpflux.layers import LatentLayerView as LatentLayerView
from dgp_snr.integrations.gpflux.model import GPfluxView
from dgp_snr.integrations.gpflux.objectives import GPfluxModel as GPfluxModel
from dgp_snr.integrations.gpflux.objectives import (
    LogWeights,
    encoder_surrogate,
    gradient_sampler,
    iwvi_bound,
    log_weights,
    make_trainer,
)

# The "X as X" names are importable from here too, as from the single module this package
# was, and stay out of __all__ as they were.
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
