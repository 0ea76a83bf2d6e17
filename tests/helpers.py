"""Tiny synthetic data sets, model factories and comparison helpers shared by the core-library
tests (test_models, test_estimators, test_builder, test_gradients, test_training)."""

import os
from pathlib import Path
from typing import Optional, Sequence, Tuple

import gpflow
import numpy as np
import pytest
import tensorflow as tf

from dgp_snr.builder import build_model
from dgp_snr.layers import GPLayer
from dgp_snr.models import DeepGP

REPO = Path(__file__).resolve().parents[1]


def _shared_dir() -> Optional[Path]:
    """The offline UCI copies: $DGP_SNR_DATA, else ../shared/data/uci; None without a manifest."""
    value = os.environ.get("DGP_SNR_DATA")
    path = Path(value) if value else REPO.parent / "shared" / "data" / "uci"
    return path if (path / "MANIFEST.json").is_file() else None


SHARED = _shared_dir()
needs_shared = pytest.mark.skipif(
    SHARED is None,
    reason="shared UCI copies not found (set DGP_SNR_DATA to a directory with MANIFEST.json)",
)


def toy_data(
    num_data: int = 40, input_dim: int = 2, seed: int = 0, bimodal: bool = False
) -> Tuple[np.ndarray, np.ndarray]:
    """X [N, D] uniform on [-2, 2], Y [N, 1] a smooth function plus a little noise; with
    `bimodal`, each y comes from one of two branches (like the paper's demo set), which is
    what a latent variable w is for."""
    rng = np.random.default_rng(seed)
    X = rng.uniform(-2.0, 2.0, (num_data, input_dim))
    smooth = np.sin(2.0 * X[:, :1]) * np.cos(X[:, 1:].sum(1, keepdims=True))
    if bimodal:
        branch = rng.uniform(size=(num_data, 1)) < 0.6
        smooth = np.where(branch, np.sin(3.0 * X[:, :1]), -0.5 * X[:, :1])
    Y = smooth + 0.05 * rng.standard_normal((num_data, 1))
    return X, (Y - Y.mean()) / Y.std()


def random_lower_triangular(rng: np.random.Generator, M: int, scale: float = 0.3) -> np.ndarray:
    """[M, M] lower-triangular with a positive diagonal and random off-diagonal entries."""
    return np.tril(scale * rng.standard_normal((M, M)), -1) + np.diag(rng.uniform(0.2, 1.0, M))


def randomise_final_layer(model: DeepGP, seed: int = 123, q_sqrt_scale: float = 0.3) -> None:
    """Gives the final layer a random q_mu and q_sqrt, so that its output depends on w (at the
    builder's initialisation q_mu = 0 and q_sqrt = I, which makes f independent of w)."""
    rng = np.random.default_rng(seed)
    final = model.layers[-1]
    M = final.q_mu.shape[0]
    final.q_mu.assign(rng.standard_normal((M, 1)))
    final.q_sqrt.assign(random_lower_triangular(rng, M, q_sqrt_scale)[None])


def latent_model(
    configuration: str = "L1",
    X: Optional[np.ndarray] = None,
    Y: Optional[np.ndarray] = None,
    *,
    M: int = 16,
    encoder_dims: Sequence[int] = (8, 8),
    num_importance_samples: int = 5,
    mode: str = "IWAE",
    seed: int = 1,
    randomise: bool = True,
) -> DeepGP:
    """A small model from the builder (default: toy_data()), with a randomised final layer."""
    if X is None:
        X, Y = toy_data()
    model = build_model(
        configuration,
        X,
        Y,
        mode=mode,
        num_importance_samples=num_importance_samples,
        M=M,
        encoder_dims=encoder_dims,
        seed=seed,
    )
    if randomise:
        randomise_final_layer(model, seed=seed + 100)
    return model


def single_layer_gp(
    X: np.ndarray, M: int = 7, seed: int = 0
) -> Tuple[gpflow.models.SVGP, GPLayer, dict]:
    """An SVGP and an identically parameterised GPLayer (separate parameter objects): ARD RBF
    kernel, linear mean function, random Z, random q_mu, random lower-triangular q_sqrt."""
    rng = np.random.default_rng(seed)
    D = X.shape[1]
    values = dict(
        variance=1.3,
        lengthscales=rng.uniform(0.7, 1.8, D),
        A=rng.standard_normal((D, 1)),
        b=np.array([0.2]),
        Z=rng.standard_normal((M, D)),
        q_mu=rng.standard_normal((M, 1)),
        q_sqrt=random_lower_triangular(rng, M)[None],
        noise_variance=0.05,
    )

    def kernel():
        return gpflow.kernels.SquaredExponential(
            variance=values["variance"], lengthscales=values["lengthscales"]
        )

    def mean_function():
        return gpflow.mean_functions.Linear(A=values["A"], b=values["b"])

    svgp = gpflow.models.SVGP(
        kernel(),
        gpflow.likelihoods.Gaussian(variance=values["noise_variance"]),
        values["Z"],
        mean_function=mean_function(),
        q_mu=values["q_mu"],
        q_sqrt=values["q_sqrt"],
        whiten=True,
        num_data=X.shape[0],
    )
    layer = GPLayer(kernel(), values["Z"], mean_function=mean_function())
    layer.q_mu.assign(values["q_mu"])
    layer.q_sqrt.assign(values["q_sqrt"])
    return svgp, layer, values


def to_numpy(x) -> np.ndarray:
    return x.numpy() if isinstance(x, (tf.Tensor, tf.Variable)) else np.asarray(x)


def assert_rel_close(actual, expected, rtol: float, what: str = "") -> None:
    """max |actual - expected| <= rtol * max |expected|, for arrays or lists of arrays (the
    scale is the largest magnitude, so entries near zero do not need relative accuracy)."""
    if isinstance(expected, (list, tuple)):
        assert len(actual) == len(expected), what
        for i, (a, e) in enumerate(zip(actual, expected)):
            assert_rel_close(a, e, rtol, f"{what}[{i}]")
        return
    a, e = to_numpy(actual), to_numpy(expected)
    assert a.shape == e.shape, f"{what}: shapes {a.shape} != {e.shape}"
    scale = np.max(np.abs(e)) if e.size else 0.0
    err = np.max(np.abs(a - e)) if e.size else 0.0
    assert np.all(np.isfinite(a)), f"{what}: non-finite values"
    assert err <= rtol * scale, f"{what}: max error {err:.3g} > {rtol:g} x {scale:.3g}"


def replica_bounds(
    model: DeepGP, X: np.ndarray, Y: np.ndarray, num_samples: int, replicas: int, modes
) -> dict:
    """For R independent replicas of the batch (X, Y), each mode's bound
    (N/B) Σ_b per_point_bound_b - KL_u evaluated on one shared propagation [R] per mode."""
    B = X.shape[0]
    Xr = tf.tile(tf.constant(X), [replicas, 1])
    Yr = tf.tile(tf.constant(Y), [replicas, 1])
    prop = model.propagate(Xr, Yr, num_samples, noise=model.draw_noise(replicas * B, num_samples))
    out = {}
    original = model.mode
    try:
        for mode in modes:
            model.mode = mode
            per_point = tf.reshape(model.per_point_bound(prop, Yr), [replicas, B]).numpy()
            out[mode] = per_point.sum(1) * model.num_data / B - prop.kl_u.numpy()
    finally:
        model.mode = original
    return out
