"""Mixed precision against float64 on trained checkpoints: prints one JSON object.

    python benchmarks/precision_errors.py RUN_DIR [RUN_DIR ...]

For each run folder (a trained model: config.json and checkpoints/), the model is restored in
both precisions and compared on the same minibatch and noise (64 training points, K = 50):

- training gradients (DReG, every parameter): the largest |mixed - float64| of any entry,
  divided by that entry's Monte Carlo standard deviation over 20 noise draws on the same
  batch, and over 20 minibatches ("err_over_noise_sd", "err_over_minibatch_sd");
- encoder-gradient estimates (EncoderGradientSampler, training point 0, 300 estimates, shared
  noise): the largest relative error ||mixed - float64|| / ||float64|| over the encoder's
  variables, for REG and DReG at K = 1, 10, 100;
- the conditioning of each GP layer's Kmm (cond(Kmm), max |chol(Kmm)⁻¹|).

This is the measurement behind dgp_snr/precision.py's tolerances (about 1 minute per run).
"""

import json
import os
import sys
from typing import Dict, List

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import gpflow  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from gpflow.utilities import parameter_dict  # noqa: E402

from dgp_snr.gradients import EncoderGradientSampler, bound_and_gradients  # noqa: E402
from dgp_snr.runs import RunCheckpoints, build_run, load_config  # noqa: E402

BATCH, K, DRAWS = 64, 50, 20


def _restore(run_dir: str, precision: str):
    config = load_config(run_dir).with_settings(precision=precision)
    model, trainer, data = build_run(config)
    RunCheckpoints(trainer, run_dir).restore(None)
    return model, data


def _gradients(model, X, Y, noise) -> List[np.ndarray]:
    """DReG gradients of every non-encoder, then every encoder variable."""
    variables = model.non_encoder_variables
    _, grads, enc = bound_and_gradients(model, X, Y, "dreg", variables, noise=noise)
    return [g.numpy() for g in grads + enc]


def compare(run_dir: str) -> Dict[str, object]:
    m64, data = _restore(run_dir, "float64")
    mixed, _ = _restore(run_dir, "mixed")
    names = {id(p.unconstrained_variable): k.lstrip(".") for k, p in parameter_dict(m64).items()}
    variables = m64.non_encoder_variables + m64.encoder_variables
    names = [names.get(id(v), v.name) for v in variables]
    X, Y = tf.constant(data.X_train[:BATCH]), tf.constant(data.Y_train[:BATCH])
    noise = m64.draw_noise(BATCH, K, tf.random.Generator.from_seed(3))
    g64, g32 = _gradients(m64, X, Y, noise), _gradients(mixed, X, Y, noise)
    rng = np.random.default_rng(0)
    same_batch, minibatches = [], []
    for i in range(DRAWS):
        draw = m64.draw_noise(BATCH, K, tf.random.Generator.from_seed(100 + i))
        same_batch.append(_gradients(m64, X, Y, draw))
        idx = rng.choice(len(data.X_train), BATCH, replace=False)
        Xb, Yb = tf.constant(data.X_train[idx]), tf.constant(data.Y_train[idx])
        minibatches.append(_gradients(m64, Xb, Yb, draw))
    training = {}
    for j, name in enumerate(names):
        err = np.abs(g32[j] - g64[j])
        sd_noise = np.std([d[j] for d in same_batch], 0)
        sd_batch = np.std([d[j] for d in minibatches], 0)
        with np.errstate(divide="ignore", invalid="ignore"):
            training[name] = {
                "err_over_noise_sd": float(np.nanmax(err / sd_noise)),
                "err_over_minibatch_sd": float(np.nanmax(err / sd_batch)),
            }
    sampling = {}
    samplers = [
        EncoderGradientSampler(m, data.X_train[:1], data.Y_train[:1]) for m in (m64, mixed)
    ]
    for estimator in ("reg", "dreg"):
        for k in (1, 10, 100):
            shared = m64.draw_noise(300, k, tf.random.Generator.from_seed(7))
            a, b = (s.sample(k, 300, estimator, noise=shared) for s in samplers)
            sampling[f"{estimator}_K{k}"] = max(
                float(np.linalg.norm(b[v] - a[v]) / np.linalg.norm(a[v])) for v in a
            )
    conditioning = {}
    for i, layer in enumerate(m64.gp_layers):
        Kmm = layer.kernel(layer.Z).numpy() + gpflow.config.default_jitter() * np.eye(
            layer.Z.shape[0]
        )
        conditioning[f"gp_layer{i}"] = {
            "cond_Kmm": float(np.linalg.cond(Kmm)),
            "max_abs_chol_inverse": float(np.abs(np.linalg.inv(np.linalg.cholesky(Kmm))).max()),
        }
    return {
        "training_gradients": training,
        "max_training_err_over_noise_sd": max(t["err_over_noise_sd"] for t in training.values()),
        "sampler_relative_error": sampling,
        "max_sampler_relative_error": max(sampling.values()),
        "conditioning": conditioning,
    }


def main() -> None:
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    print(
        json.dumps(
            {os.path.basename(os.path.normpath(d)): compare(d) for d in sys.argv[1:]}, indent=1
        )
    )


if __name__ == "__main__":
    main()
