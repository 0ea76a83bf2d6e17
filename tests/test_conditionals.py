"""The sample-axis conditionals against GPflow's own conditionals."""

import gpflow
import numpy as np
import tensorflow as tf
from gpflow.conditionals import conditional
from gpflow.inducing_variables import InducingPoints
from helpers import random_lower_triangular

from dgp_snr.conditionals import whitened_cov_over_samples, whitened_marginals
from dgp_snr.layers import GPLayer


def _setup(seed: int = 0, M: int = 7, D: int = 3, L: int = 1):
    rng = np.random.default_rng(seed)
    kernel = gpflow.kernels.SquaredExponential(variance=1.3, lengthscales=rng.uniform(0.5, 2, D))
    Z = tf.constant(rng.standard_normal((M, D)))
    q_mu = tf.constant(rng.standard_normal((M, L)))
    q_sqrt = tf.constant(np.stack([random_lower_triangular(rng, M) for _ in range(L)]))
    return rng, kernel, Z, q_mu, q_sqrt


def test_marginals_match_gpflow_conditional_for_several_latent_gps():
    rng, kernel, Z, q_mu, q_sqrt = _setup(L=4)
    X = tf.constant(rng.standard_normal((11, 3)))
    mean, var = whitened_marginals(kernel, Z, X, q_mu, q_sqrt)
    ref_mean, ref_var = conditional(
        X, InducingPoints(Z), kernel, q_mu, q_sqrt=q_sqrt, full_cov=False, white=True
    )
    np.testing.assert_allclose(mean, ref_mean, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(var, ref_var, rtol=1e-10, atol=1e-12)


def test_cov_over_samples_matches_gpflow_full_cov_per_point():
    rng, kernel, Z, q_mu, q_sqrt = _setup()
    H = tf.constant(rng.standard_normal((4, 5, 3)))  # B = 4 points, K = 5 samples each
    mean, cov = whitened_cov_over_samples(kernel, Z, H, q_mu, q_sqrt)
    for b in range(4):
        ref_mean, ref_cov = conditional(
            H[b], InducingPoints(Z), kernel, q_mu, q_sqrt=q_sqrt, full_cov=True, white=True
        )
        np.testing.assert_allclose(mean[b], ref_mean, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(cov[b], ref_cov[0], rtol=1e-10, atol=1e-12)


def test_joint_samples_have_the_conditional_covariance():
    """full_cov=True draws the K samples of a point jointly: their empirical covariance over
    many draws matches the conditional covariance within its standard error."""
    rng, kernel, Z, q_mu, q_sqrt = _setup(seed=3)
    layer = GPLayer(kernel, Z.numpy(), q_sqrt_scale=1.0, full_cov=True)
    layer.q_mu.assign(q_mu)
    layer.q_sqrt.assign(q_sqrt)
    # one point whose K = 4 inputs lie close together, so f at them is strongly correlated
    point = rng.standard_normal((1, 1, 3)) + 0.2 * rng.standard_normal((1, 4, 3))
    H = tf.constant(np.tile(point, [4000, 1, 1]))
    eps = tf.constant(rng.standard_normal((4000, 4, 1)))
    samples = layer.sample(H, eps).numpy()[..., 0]  # [draws, K]
    _, cov = whitened_cov_over_samples(kernel, Z, H[:1], q_mu, q_sqrt)
    cov = cov.numpy()[0]
    centred = samples - samples.mean(0)
    products = centred[:, :, None] * centred[:, None, :]  # [draws, K, K]
    empirical = products.mean(0)
    stderr = products.std(0) / np.sqrt(len(samples))
    assert np.all(np.abs(empirical - cov) < 4 * stderr + 1e-12)
    assert np.abs(cov[0, 1]) > 8 * stderr[0, 1]  # the samples really are correlated
