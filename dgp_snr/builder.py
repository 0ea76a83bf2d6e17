"""ModelConfigs (configuration strings "L1", "L1_G5", "L1_G5_G5_G5" with their settings) to
initialised DeepGP models, with the reference initialisation of PAPER.md."""

import re
from dataclasses import dataclass, replace
from typing import Any, List, Optional, Union

import gpflow
import numpy as np
from scipy.cluster.vq import kmeans2

from dgp_snr.configs import MIXING_INITS, QZ_MODES, ModelConfig
from dgp_snr.estimators import check_compatible
from dgp_snr.layers import Encoder, GPLayer, LatentVariableLayer
from dgp_snr.models import MODES, DeepGP
from dgp_snr.precision import get_precision

_TOKEN = re.compile(r"^([LG])(\d+)$")


@dataclass(frozen=True)
class LayerSpec:
    """One token of a configuration string: kind "L" (latent, width = d) or "G" (hidden GP
    layer, width = number of latent GPs)."""

    kind: str
    width: int


def parse_configuration(configuration: str) -> List[LayerSpec]:
    """Parses "L1_G5_G5" into LayerSpecs; raises ValueError naming the bad token."""
    if not isinstance(configuration, str) or not configuration.strip():
        raise ValueError(
            "empty configuration: expected tokens like 'L1' or 'L1_G5' (L<d>: latent layer "
            "with d dims, G<k>: hidden GP layer with k latent GPs, joined by '_')"
        )
    specs = []
    for token in configuration.split("_"):
        match = _TOKEN.match(token)
        if match is None:
            raise ValueError(
                f"bad token {token!r} in configuration {configuration!r}: expected L<d> (latent "
                "layer) or G<k> (hidden GP layer) with a positive integer, joined by '_'"
            )
        width = int(match.group(2))
        if width < 1:
            raise ValueError(
                f"bad token {token!r} in configuration {configuration!r}: the width must be at "
                "least 1"
            )
        specs.append(LayerSpec(match.group(1), width))
    return specs


def _inducing_inputs(X: np.ndarray, M: int, rng: np.random.Generator) -> np.ndarray:
    """k-means centres of X [M, D], or X padded with standard normals when N <= M."""
    N, D = X.shape
    if N > M:
        return kmeans2(X, M, minit="points", seed=rng)[0]
    return np.concatenate([X, rng.standard_normal((M - N, D))], 0)


def _padded_inducing(Z_x: np.ndarray, D_in: int, rng: np.random.Generator) -> np.ndarray:
    """[M, D_in]: standard normal, with the first min(D_in, D) columns from the k-means of X."""
    Z = rng.standard_normal((Z_x.shape[0], D_in))
    n = min(D_in, Z_x.shape[1])
    Z[:, :n] = Z_x[:, :n]
    return Z


def _rbf(D_in: int, train_variance: bool) -> gpflow.kernels.SquaredExponential:
    kernel = gpflow.kernels.SquaredExponential(variance=1.0, lengthscales=np.full(D_in, D_in**0.5))
    gpflow.set_trainable(kernel.variance, train_variance)
    return kernel


def _right_singular_vectors(X: np.ndarray) -> np.ndarray:
    """Vh [D, D] of the thin SVD X = U S Vh (rows: right singular vectors, largest first),
    zero-padded to D rows when N < D."""
    D = X.shape[1]
    Vh = np.linalg.svd(X, full_matrices=False)[2]
    return np.concatenate([Vh, np.zeros((D - Vh.shape[0], D))], 0)


def pca_mixing(X: np.ndarray, num_latent_gps: int) -> np.ndarray:
    """[D, k] mixing matrix whose first min(k, D) columns are the top right singular vectors of
    X (Vh[:k].T, the PCA directions PAPER.md describes); the rest are zero."""
    D = X.shape[1]
    W = np.zeros((D, num_latent_gps))
    n = min(num_latent_gps, D)
    W[:, :n] = _right_singular_vectors(X)[:n].T
    return W


def reference_mixing(X: np.ndarray, num_latent_gps: int) -> np.ndarray:
    """[D, k] mixing matrix as the paper's runs initialised it: the first min(k, D) columns of
    Vh itself (Vh[:, :k], the transpose of the PCA directions); the rest are zero."""
    D = X.shape[1]
    W = np.zeros((D, num_latent_gps))
    n = min(num_latent_gps, D)
    W[:, :n] = _right_singular_vectors(X)[:, :n]
    return W


def mixing_matrix(
    X: np.ndarray, num_latent_gps: int, mixing_init: str = "reference"
) -> np.ndarray:
    """The initial [D, k] mixing matrix of a hidden "G<k>" layer: "reference" (the paper's runs,
    the default) or "pca" (the paper's text)."""
    if mixing_init == "reference":
        return reference_mixing(X, num_latent_gps)
    if mixing_init == "pca":
        return pca_mixing(X, num_latent_gps)
    raise ValueError(f"unknown mixing_init {mixing_init!r}; known: {', '.join(MIXING_INITS)}")


def build_model(
    config: Union[ModelConfig, str],
    X: np.ndarray,
    Y: np.ndarray,
    *,
    estimator: Optional[str] = None,
    seed: int = 0,
    **settings: Any,
) -> DeepGP:
    """The initialised DeepGP of a ModelConfig, on data X [N, D], Y [N, 1].

    `config` may also be a configuration string ("L1_G5") with ModelConfig fields as keywords
    (`build_model("L1", X, Y, M=8)`); keywords also override a ModelConfig's fields.
    `estimator`, when given, is checked against the structure (DReG needs the latent layer
    first; STL and DReG need importance weights, so not the VI mode). `seed` draws the
    inducing inputs, the padding and the encoder weights. `mixing_init` chooses the hidden
    layers' initial mixing matrix (see `mixing_matrix`). `precision` is "float64" (the paper's)
    or "mixed" (the GP layers' large products in float32; see dgp_snr.precision); it changes
    no parameter, so either can restore the other's checkpoints.
    """
    if isinstance(config, str):
        config = ModelConfig(configuration=config)
    cfg = replace(config, **settings) if settings else config  # TypeError naming a bad key
    configuration, mode, qz_mode = cfg.configuration, cfg.mode, cfg.qz_mode
    mixing_init, M = cfg.mixing_init, cfg.M
    specs = parse_configuration(configuration)
    policy = get_precision(cfg.precision)  # ValueError naming the known precisions
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; known modes: {', '.join(MODES)}")
    if mixing_init not in MIXING_INITS:
        raise ValueError(f"unknown mixing_init {mixing_init!r}; known: {', '.join(MIXING_INITS)}")
    if qz_mode not in QZ_MODES:
        raise ValueError(f"unknown qz_mode {qz_mode!r}; known: {', '.join(QZ_MODES)}")
    if estimator is not None:
        check_compatible(
            estimator,
            mode,
            [i for i, spec in enumerate(specs) if spec.kind == "L"],
            where=lambda i: f"token '{specs[i].kind}{specs[i].width}' (layer {i}) of "
            f"{configuration!r}",
        )
    X = np.asarray(X, dtype=np.float64)
    Y = np.asarray(Y, dtype=np.float64)
    if X.ndim != 2 or Y.ndim != 2 or Y.shape[1] != 1 or X.shape[0] != Y.shape[0]:
        raise ValueError(f"expected X [N, D] and Y [N, 1], got {X.shape} and {Y.shape}")

    rng = np.random.default_rng(seed)
    N, D = X.shape
    Z_x = _inducing_inputs(X, M, rng)
    layers: List[GPLayer | LatentVariableLayer] = []
    D_in = D
    for spec in specs:
        if spec.kind == "L":
            encoder = Encoder(D + 1, spec.width, tuple(cfg.encoder_dims), rng=rng)
            layers.append(LatentVariableLayer(encoder, fix_q=qz_mode == "fix_mu_sigma"))
            D_in += spec.width
        else:
            A = np.zeros((D_in, D))
            n = min(D_in, D)
            A[:n, :n] = np.eye(n)
            mean_function = gpflow.mean_functions.Linear(A=A, b=np.zeros(D))
            gpflow.set_trainable(mean_function.b, False)
            layer = GPLayer(
                _rbf(D_in, train_variance=False),
                _padded_inducing(Z_x, D_in, rng),
                num_latent_gps=spec.width,
                mean_function=mean_function,
                mixing=mixing_matrix(X, spec.width, mixing_init),
                q_sqrt_scale=1e-5,
                precision=policy,
            )
            if cfg.fix_linear:
                gpflow.set_trainable(layer.mixing, False)
                gpflow.set_trainable(mean_function, False)
            layers.append(layer)
            D_in = D
    layers.append(
        GPLayer(
            _rbf(D_in, train_variance=True), _padded_inducing(Z_x, D_in, rng), precision=policy
        )
    )
    likelihood = gpflow.likelihoods.Gaussian(variance=cfg.likelihood_variance)
    return DeepGP(
        layers,
        likelihood,
        N,
        mode=mode,
        num_importance_samples=cfg.num_importance_samples,
        beta=cfg.beta,
        seed=seed,
    )
