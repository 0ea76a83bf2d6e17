"""The mixed "G<k>" hidden layer samples its k latent GPs and then mixes them, as the paper's runs
did: at one input the D outputs have covariance W diag(v_g) Wᵀ (rank <= k), not a diagonal."""

import numpy as np
import pytest
import tensorflow as tf
from helpers import needs_shared, random_lower_triangular

from dgp_snr.builder import build_model
from dgp_snr.conditionals import whitened_marginals

DRAWS = 40_000
Z_MAX = 4.5  # per-entry |z| bound: ~80 entries, family-wise false-alarm rate below 1e-3


@pytest.fixture(scope="module")
def winered_model():
    from dgp_snr.data import get_regression_data

    data = get_regression_data("winered", split=0)
    return build_model("L1_G5", data.X_train, data.Y_train, M=32, seed=0), data


def _randomise_hidden(layer, seed: int) -> None:
    rng = np.random.default_rng(seed)
    M, k = layer.q_mu.shape
    layer.q_mu.assign(rng.standard_normal((M, k)))
    layer.q_sqrt.assign(np.stack([random_lower_triangular(rng, M, 0.2) for _ in range(k)]))


@needs_shared
@pytest.mark.parametrize("randomised", [False, True], ids=["initial", "randomised"])
def test_mixed_layer_samples_have_the_models_cross_output_covariance(winered_model, randomised):
    model, data = winered_model
    hidden = model.layers[1]
    if randomised:
        _randomise_hidden(hidden, seed=5)
    h = np.concatenate([data.X_train[3], [0.7]])  # one input [x, w]
    H = tf.constant(np.tile(h, [1, DRAWS, 1]))  # [1, DRAWS, D_in]
    eps = tf.random.stateless_normal([1, DRAWS, hidden.noise_width], seed=[7, 1], dtype=H.dtype)
    f = hidden.sample(H, eps).numpy()[0]  # [DRAWS, D]

    g_mean, g_var = (
        t.numpy()[0]
        for t in whitened_marginals(hidden.kernel, hidden.Z, H[0, :1], hidden.q_mu, hidden.q_sqrt)
    )  # [k]
    W = hidden.mixing.numpy()  # [D, k]
    mean = W @ g_mean + hidden.mean_function(H[0, :1]).numpy()[0]
    cov = W @ np.diag(g_var) @ W.T  # [D, D]

    # per-output marginals as the layer reports them (the final layer and prediction use these)
    f_mean, f_var = (t.numpy()[0, 0] for t in hidden.marginals(H[:, :1]))
    np.testing.assert_allclose(f_mean, mean, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(f_var, np.diag(cov), rtol=1e-10, atol=1e-14)

    # sample mean and covariance against the closed form, entry by entry within Monte Carlo error
    z_mean = (f.mean(0) - mean) / np.sqrt(np.diag(cov) / DRAWS)
    assert np.max(np.abs(z_mean)) < Z_MAX, z_mean
    sample_cov = np.cov(f, rowvar=False)
    se = np.sqrt((np.outer(np.diag(cov), np.diag(cov)) + cov**2) / DRAWS)  # Gaussian: Var(c_ij)
    z_cov = (sample_cov - cov) / se
    assert np.max(np.abs(z_cov)) < Z_MAX, np.max(np.abs(z_cov))
    # the outputs are strongly correlated (a diagonal covariance would fail the check above)
    corr = cov / np.sqrt(np.outer(np.diag(cov), np.diag(cov)))
    assert np.max(np.abs(corr - np.eye(len(corr)))) > 0.5
    assert np.linalg.matrix_rank(sample_cov, tol=1e-8 * np.max(np.diag(sample_cov))) <= 5


@needs_shared
def test_model_propagation_draws_k_latent_values_per_mixed_layer(winered_model):
    """DeepGP.propagate feeds the hidden layer noise [B, K, k]; the same noise gives the same
    hidden outputs as the layer's own sample (training, bounds, prediction share this path)."""
    model, data = winered_model
    X, Y = data.X_train[:4], data.Y_train[:4]
    noise = model.draw_noise(4, 6)
    assert [None if n is None else tuple(n.shape) for n in noise] == [(4, 6, 1), (4, 6, 5), None]
    prop = model.propagate(X, Y, noise=noise)
    H0, _ = model.layers[0].propagate(
        tf.tile(tf.constant(X)[:, None], [1, 6, 1]), tf.concat([X, Y], -1), noise[0]
    )
    H1 = model.layers[1].sample(H0, noise[1])
    f_mean, f_var = model.layers[2].marginals(H1)
    np.testing.assert_allclose(prop.f_mean, f_mean, rtol=1e-12)
    np.testing.assert_allclose(prop.f_var, f_var, rtol=1e-12)
