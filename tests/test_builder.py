"""Configuration strings and the reference initialisation of PAPER.md (shapes, trainability,
lengthscales, variances, q(u), PCA mixing, k-means inducing inputs, the encoder)."""

import gpflow
import numpy as np
import pytest
from helpers import needs_shared, toy_data

from dgp_snr.builder import (
    LayerSpec,
    build_model,
    parse_configuration,
    pca_mixing,
    reference_mixing,
)
from dgp_snr.configs import ModelConfig
from dgp_snr.layers import Encoder, GPLayer, LatentVariableLayer

N, D, M = 60, 3, 12


@pytest.fixture(scope="module")
def data():
    return toy_data(num_data=N, input_dim=D, seed=11)


@pytest.fixture(scope="module")
def l1_g5(data):
    X, Y = data
    return build_model("L1_G5", X, Y, M=M, num_importance_samples=7, seed=3)


def _eye_pad(rows, cols):
    A = np.zeros((rows, cols))
    n = min(rows, cols)
    A[:n, :n] = np.eye(n)
    return A


def _same_up_to_sign(A, B, atol=1e-8):
    """Columns of A equal those of B up to a sign each."""
    signs = np.sign(np.sum(A * B, 0))
    signs[signs == 0] = 1.0
    np.testing.assert_allclose(A, B * signs, atol=atol)


# ----------------------------------------------------------------------------- parsing


@pytest.mark.parametrize(
    "configuration, expected",
    [
        ("L1", [LayerSpec("L", 1)]),
        ("L1_G5", [LayerSpec("L", 1), LayerSpec("G", 5)]),
        ("L2_G5_G5_G5", [LayerSpec("L", 2)] + [LayerSpec("G", 5)] * 3),
        ("G10", [LayerSpec("G", 10)]),
    ],
)
def test_parse_configuration(configuration, expected):
    assert parse_configuration(configuration) == expected


@pytest.mark.parametrize(
    "configuration, match",
    [
        ("L1_X5", r"bad token 'X5'"),
        ("G0", r"bad token 'G0'.*at least 1"),
        ("L0_G5", r"bad token 'L0'.*at least 1"),
        ("", r"empty configuration"),
        ("   ", r"empty configuration"),
        ("L1__G5", r"bad token ''"),
        ("l1", r"bad token 'l1'"),
        ("L1_G", r"bad token 'G'"),
        ("L1_G-5", r"bad token 'G-5'"),
    ],
)
def test_bad_configurations_name_the_bad_token(data, configuration, match):
    with pytest.raises(ValueError, match=match):
        parse_configuration(configuration)
    X, Y = data
    with pytest.raises(ValueError, match=match):
        build_model(configuration, X, Y, M=4)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (
            dict(configuration="G5_L1", estimator="dreg"),
            r"'dreg' needs the latent-variable layer first.*token 'L1' \(layer 1\) of 'G5_L1'",
        ),
        (
            dict(configuration="L1_G5_L1", estimator="dreg"),
            r"latent-variable layer first.*token 'L1' \(layer 2\) of 'L1_G5_L1'",
        ),
        (dict(configuration="L1", mode="ELBO"), r"unknown mode 'ELBO'"),
        (dict(configuration="L1", estimator="reinforce"), r"unknown estimator 'reinforce'"),
        (dict(configuration="L1", mode="VI", estimator="dreg"), r"'dreg' needs importance.*'reg'"),
        (dict(configuration="L1", mode="VI", estimator="stl"), r"'stl' needs importance.*'reg'"),
        (dict(configuration="L1", qz_mode="prior"), r"unknown qz_mode 'prior'"),
    ],
)
def test_bad_options_raise(data, kwargs, match):
    X, Y = data
    with pytest.raises(ValueError, match=match):
        estimator = kwargs.pop("estimator", None)
        build_model(ModelConfig(M=4, **kwargs), X, Y, estimator=estimator)


def test_good_option_combinations_build(data):
    X, Y = data
    # DReG with the latent layer first, a latent layer after a hidden one without DReG, REG in VI
    assert len(build_model("L1_G5", X, Y, M=4, estimator="dreg").layers) == 3
    assert isinstance(
        build_model("G5_L1", X, Y, M=4, estimator="stl").layers[1], LatentVariableLayer
    )
    assert build_model("L1", X, Y, M=4, mode="VI", estimator="reg").mode == "VI"


def test_bad_data_shapes_raise(data):
    X, Y = data
    with pytest.raises(ValueError, match="expected X"):
        build_model("L1", X, Y[:, 0], M=4)
    with pytest.raises(ValueError, match="expected X"):
        build_model("L1", X, Y[:-1], M=4)
    with pytest.raises(ValueError, match="expected X"):
        build_model("L1", X[:, 0], Y, M=4)


# ----------------------------------------------------------------------------- initialisation


def test_structure_and_shapes(l1_g5, data):
    model = l1_g5
    latent, hidden, final = model.layers
    assert isinstance(latent, LatentVariableLayer) and not latent.fix_q
    assert isinstance(hidden, GPLayer) and isinstance(final, GPLayer)
    assert latent.latent_dim == 1
    assert latent.encoder.dims == [D + 1, 20, 20, 2]  # reads [x, y]; outputs mean and scale
    D_in = D + 1  # [x, w]
    assert hidden.Z.shape == (M, D_in) and final.Z.shape == (M, D)
    assert hidden.num_latent_gps == 5 and hidden.num_outputs == D
    assert hidden.mixing.shape == (D, 5)
    assert final.num_latent_gps == 1 and final.num_outputs == 1 and final.mixing is None
    assert hidden.q_mu.shape == (M, 5) and hidden.q_sqrt.shape == (5, M, M)
    assert final.q_mu.shape == (M, 1) and final.q_sqrt.shape == (1, M, M)
    assert model.num_data == N and model.mode == "IWAE" and model.num_importance_samples == 7
    assert not hidden.full_cov and not final.full_cov


def test_kernels_likelihood_and_q_u(l1_g5):
    _, hidden, final = l1_g5.layers
    for layer, D_in in ((hidden, D + 1), (final, D)):
        assert isinstance(layer.kernel, gpflow.kernels.SquaredExponential)
        np.testing.assert_allclose(layer.kernel.variance.numpy(), 1.0, rtol=1e-12)
        np.testing.assert_allclose(
            layer.kernel.lengthscales.numpy(), np.full(D_in, np.sqrt(D_in)), rtol=1e-12
        )
        np.testing.assert_array_equal(layer.q_mu.numpy(), 0.0)
    L = hidden.num_latent_gps
    np.testing.assert_allclose(hidden.q_sqrt.numpy(), np.tile(1e-5 * np.eye(M), [L, 1, 1]))
    np.testing.assert_allclose(final.q_sqrt.numpy(), np.eye(M)[None])
    assert isinstance(l1_g5.likelihood, gpflow.likelihoods.Gaussian)
    np.testing.assert_allclose(l1_g5.likelihood.variance.numpy(), 0.01, rtol=1e-10)
    assert isinstance(final.mean_function, gpflow.mean_functions.Zero)


def test_hidden_mean_function_is_identity_padded(l1_g5):
    mean_function = l1_g5.layers[1].mean_function
    assert isinstance(mean_function, gpflow.mean_functions.Linear)
    np.testing.assert_array_equal(mean_function.A.numpy(), _eye_pad(D + 1, D))
    np.testing.assert_array_equal(mean_function.b.numpy(), np.zeros(D))


def test_trainability(l1_g5):
    latent, hidden, final = l1_g5.layers
    assert not hidden.kernel.variance.trainable  # hidden kernel variance fixed
    assert final.kernel.variance.trainable
    for p in (hidden.kernel.lengthscales, final.kernel.lengthscales, hidden.Z, final.Z):
        assert p.trainable
    for p in (hidden.q_mu, hidden.q_sqrt, final.q_mu, final.q_sqrt):
        assert p.trainable
    # fix_linear (default): mixing and linear mean function fixed; the bias is always fixed
    assert not hidden.mixing.trainable
    assert not hidden.mean_function.A.trainable and not hidden.mean_function.b.trainable
    assert l1_g5.likelihood.variance.trainable
    encoder = latent.encoder
    assert all(p.trainable for p in encoder.weights + encoder.biases)
    assert len(l1_g5.encoder_variables) == 6  # W0, W1, W2, b0, b1, b2


def test_fix_linear_false_trains_mixing_and_linear_map_but_not_bias(data):
    X, Y = data
    hidden = build_model("L1_G5", X, Y, M=M, fix_linear=False, seed=3).layers[1]
    assert hidden.mixing.trainable and hidden.mean_function.A.trainable
    assert not hidden.mean_function.b.trainable
    assert not hidden.kernel.variance.trainable


def _top_singular_vectors(X):
    """Right singular vectors of X as columns, largest first, from the eigenvectors of XᵀX."""
    _, eigenvectors = np.linalg.eigh(X.T @ X)
    return eigenvectors[:, ::-1]


@pytest.fixture(scope="module")
def winered():
    from dgp_snr.data import get_regression_data

    return get_regression_data("winered", split=0)


@needs_shared
@pytest.mark.parametrize("k", [5, 11, 15])  # k < D, k = D, k > D (winered: D = 11)
def test_default_mixing_is_the_reference_recipe_on_winered(winered, k):
    """The paper's runs: P = svd(X)[2] (Vh, rows are singular vectors), W[:, :k] = P[:, :k]."""
    X, Y = winered.X_train, winered.Y_train
    D = X.shape[1]
    P = np.linalg.svd(X, full_matrices=False)[2]
    expected = np.zeros((D, k))
    expected[:, : min(k, D)] = P[:, : min(k, D)]
    model = build_model(f"L1_G{k}", X, Y, M=8, seed=0)
    np.testing.assert_array_equal(model.layers[1].mixing.numpy(), expected)
    # Vh[:, :k] holds the singular vectors as rows: the transpose of the PCA directions
    top = _top_singular_vectors(X)
    n = min(k, D)
    _same_up_to_sign(model.layers[1].mixing.numpy()[:, :n].T, top[:n, :])


@needs_shared
@pytest.mark.parametrize("k", [5, 15])
def test_pca_mixing_option_is_the_top_right_singular_vectors(winered, k):
    """mixing_init="pca": W[:, :k] = Vh[:k].T (the paper's text), zero columns after D."""
    X, Y = winered.X_train, winered.Y_train
    D = X.shape[1]
    mixing = build_model(f"L1_G{k}", X, Y, M=8, seed=0, mixing_init="pca").layers[1].mixing
    mixing = mixing.numpy()
    n = min(k, D)
    _same_up_to_sign(mixing[:, :n], _top_singular_vectors(X)[:, :n])
    np.testing.assert_array_equal(mixing[:, n:], 0.0)
    np.testing.assert_allclose(mixing[:, :n].T @ mixing[:, :n], np.eye(n), atol=1e-12)
    np.testing.assert_array_equal(mixing, pca_mixing(X, k))
    # on real data the two initialisations differ
    assert np.max(np.abs(mixing - reference_mixing(X, k))) > 0.1


def test_unknown_mixing_init_is_refused(data):
    X, Y = data
    with pytest.raises(ValueError, match=r"unknown mixing_init 'svd'.*reference, pca"):
        build_model("L1_G5", X, Y, M=M, mixing_init="svd")


def test_inducing_inputs_are_k_means_centres_of_x():
    """On well-separated blobs, the first D columns of every layer's Z are a k-means fixed
    point: each centre is the mean of the points nearest to it; the extra (w) column of the
    hidden layer is not taken from X."""
    rng = np.random.default_rng(8)
    centres = np.array([[0, 0, 0], [6, 0, 0], [0, 6, 0], [0, 0, 6], [6, 6, 0], [6, 6, 6.0]])
    X = np.repeat(centres, 10, 0) + 0.05 * rng.standard_normal((60, 3))
    Y = rng.standard_normal((60, 1))
    model = build_model("L1_G5", X, Y, M=6, seed=0)
    Z_hidden, Z_final = model.layers[1].Z.numpy(), model.layers[2].Z.numpy()
    np.testing.assert_array_equal(Z_hidden[:, :3], Z_final)
    nearest = np.argmin(((X[:, None, :] - Z_final[None]) ** 2).sum(-1), 1)
    assert set(nearest) == set(range(6)), "a centre without points"
    for m in range(6):
        np.testing.assert_allclose(Z_final[m], X[nearest == m].mean(0), atol=1e-10)
    assert not np.allclose(Z_hidden[:, 3], 0.0)


def test_extra_inducing_dimensions_are_standard_normal():
    """The w column of the final layer's Z ("L1": [x, w]) is standard normal (mean within 4
    SE, variance within 4 SE of a sample variance)."""
    X, Y = toy_data(num_data=300, input_dim=1, seed=4)
    M_big = 250
    Z = build_model("L1", X, Y, M=M_big, encoder_dims=(4,), seed=1).layers[-1].Z.numpy()
    z = Z[:, 1]
    assert abs(z.mean()) < 4 / np.sqrt(M_big)
    assert abs(z.var(ddof=1) - 1.0) < 4 * np.sqrt(2.0 / (M_big - 1))
    assert X.min() <= Z[:, 0].min() and Z[:, 0].max() <= X.max()  # centres lie inside the data


def test_few_points_are_used_directly_as_inducing_inputs():
    X, Y = toy_data(num_data=5, input_dim=2, seed=2)
    Z = build_model("L1", X, Y, M=9, encoder_dims=(4,), seed=0).layers[-1].Z.numpy()
    np.testing.assert_array_equal(Z[:5, :2], X)
    assert Z.shape == (9, 3)


@pytest.mark.parametrize(
    "configuration, final_in, num_layers",
    [("L1", D + 1, 2), ("L2", D + 2, 2), ("L1_G5_G5_G5", D, 5), ("G4", D, 2), ("G4_L1", D + 1, 3)],
)
def test_depths_and_input_widths(data, configuration, final_in, num_layers):
    X, Y = data
    model = build_model(configuration, X, Y, M=6, encoder_dims=(4,), seed=0)
    assert len(model.layers) == num_layers
    final = model.layers[-1]
    assert final.Z.shape == (6, final_in)
    np.testing.assert_allclose(final.kernel.lengthscales.numpy(), np.full(final_in, final_in**0.5))
    D_in = D
    for layer in model.layers[:-1]:
        if isinstance(layer, LatentVariableLayer):
            D_in += layer.latent_dim
            continue
        # each hidden layer maps D_in inputs to D outputs with an identity-padded mean
        assert layer.Z.shape == (6, D_in) and layer.num_outputs == D
        np.testing.assert_array_equal(layer.mean_function.A.numpy(), _eye_pad(D_in, D))
        np.testing.assert_allclose(layer.kernel.lengthscales.numpy(), np.full(D_in, D_in**0.5))
        D_in = D
    if "L" not in configuration:
        assert model.encoder_variables == []


def test_fix_mu_sigma_mode(data):
    X, Y = data
    model = build_model("L1", X, Y, M=6, qz_mode="fix_mu_sigma", seed=0)
    assert model.layers[0].fix_q


def test_same_seed_same_model_other_seed_other_model(data):
    X, Y = data

    def values(seed):
        model = build_model("L1_G5", X, Y, M=M, seed=seed)
        return [v.numpy() for v in model.trainable_variables]

    a, b, c = values(5), values(5), values(6)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert any(x.shape == y.shape and not np.array_equal(x, y) for x, y in zip(a, c))


# ----------------------------------------------------------------------------- the encoder


def test_encoder_architecture_matches_the_paper():
    """tanh hidden layers, a skip connection where widths match (20 -> 20 here), a linear
    output split into mean and raw scale, scale = softplus(raw - 3); zero biases."""
    rng = np.random.default_rng(0)
    encoder = Encoder(4, 2, (20, 20), rng=np.random.default_rng(1))
    for b in encoder.biases:
        np.testing.assert_array_equal(b.numpy(), 0.0)
    # give the biases values so they enter the check
    for b in encoder.biases:
        b.assign(0.1 * rng.standard_normal(b.shape))
    W = [w.numpy() for w in encoder.weights]
    b = [v.numpy() for v in encoder.biases]
    XY = rng.standard_normal((6, 4))
    h1 = np.tanh(XY @ W[0] + b[0])
    h2 = np.tanh(h1 @ W[1] + b[1]) + h1
    out = h2 @ W[2] + b[2]
    mean, scale = encoder(XY)
    np.testing.assert_allclose(mean, out[:, :2], rtol=1e-12)
    np.testing.assert_allclose(scale, np.log1p(np.exp(out[:, 2:] - 3.0)), rtol=1e-12)
    # extra leading axes pass through
    mean3, _ = encoder(XY.reshape(2, 3, 4))
    np.testing.assert_allclose(mean3.numpy().reshape(6, 2), mean, rtol=1e-12)


def test_encoder_weights_are_glorot_normal():
    """std sqrt(2 / (fan_in + fan_out)) (4 SE of a sample std) and mean 0 (4 SE)."""
    encoder = Encoder(50, 10, (200,), rng=np.random.default_rng(2))
    for W in encoder.weights:
        w = W.numpy().ravel()
        fan_in, fan_out = W.shape
        sigma = np.sqrt(2.0 / (fan_in + fan_out))
        n = w.size
        assert abs(w.mean()) < 4 * sigma / np.sqrt(n)
        assert abs(w.std(ddof=1) - sigma) < 4 * sigma / np.sqrt(2 * (n - 1))
