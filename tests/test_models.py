"""DeepGP: reduction to gpflow's SVGP, near-zero inner layers, the VI / IWVI / CIWAE bounds and
their relations, prediction, and the structural checks of the constructor."""

import gpflow
import numpy as np
import pytest
from helpers import (
    assert_rel_close,
    latent_model,
    replica_bounds,
    single_layer_gp,
    toy_data,
)
from scipy.special import logsumexp

from dgp_snr.builder import build_model
from dgp_snr.layers import Encoder, GPLayer, LatentVariableLayer
from dgp_snr.models import DeepGP

# ----------------------------------------------------------------------------- SVGP reduction


@pytest.fixture(scope="module")
def svgp_setup():
    X, Y = toy_data(num_data=30, input_dim=2, seed=3)
    X_test = np.random.default_rng(4).uniform(-2.5, 2.5, (11, 2))
    svgp, layer, values = single_layer_gp(X, M=7, seed=5)
    return X, Y, X_test, svgp, layer, values


def _one_layer_dgp(layer, values, num_data, mode="VI", num_samples=3):
    likelihood = gpflow.likelihoods.Gaussian(variance=values["noise_variance"])
    return DeepGP(
        [layer], likelihood, num_data=num_data, mode=mode, num_importance_samples=num_samples
    )


@pytest.mark.parametrize("mode", ["VI", "IWAE", "CIWAE"])
@pytest.mark.parametrize("num_samples", [1, 4])
def test_single_gp_layer_bound_equals_svgp_elbo(svgp_setup, mode, num_samples):
    """No sampling happens before the last layer, so every mode's bound is SVGP's ELBO."""
    X, Y, _, svgp, layer, values = svgp_setup
    dgp = _one_layer_dgp(layer, values, X.shape[0], mode, num_samples)
    assert_rel_close(dgp.elbo(X, Y), svgp.elbo((X, Y)), 1e-6, "full data")
    # A minibatch is scaled by N / B in both.
    assert_rel_close(dgp.elbo(X[:9], Y[:9]), svgp.elbo((X[:9], Y[:9])), 1e-6, "minibatch")


def test_single_gp_layer_prior_kl_and_predictions_equal_svgp(svgp_setup):
    X, Y, X_test, svgp, layer, values = svgp_setup
    dgp = _one_layer_dgp(layer, values, X.shape[0])
    assert_rel_close(layer.prior_kl(), svgp.prior_kl(), 1e-10, "KL[q(u) || p(u)]")
    mean, var = dgp.predict_f_samples_marginals(X_test, num_predictive_samples=3)
    svgp_mean, svgp_var = svgp.predict_f(X_test)
    assert mean.shape == (3, 11, 1) and var.shape == (3, 11, 1)
    for s in range(3):
        assert_rel_close(mean[s], svgp_mean, 1e-6, f"mean, sample {s}")
        assert_rel_close(var[s], svgp_var, 1e-6, f"variance, sample {s}")
    # All S draws coincide, so the Monte Carlo predictive density is exact.
    Y_test = np.sin(X_test[:, :1])
    assert_rel_close(
        dgp.log_predictive_density(X_test, Y_test, num_predictive_samples=5),
        svgp.predict_log_density((X_test, Y_test)),
        1e-6,
        "log predictive density",
    )


def test_single_gp_layer_predict_y_samples_follow_svgp_predictive(svgp_setup):
    """Standardised by SVGP's predict_y, the samples have mean 0 and variance 1 (4 SE)."""
    X, _, X_test, svgp, layer, values = svgp_setup
    dgp = _one_layer_dgp(layer, values, X.shape[0])
    S = 4000
    samples = dgp.predict_y_samples(X_test, S).numpy()[..., 0]  # [S, N]
    y_mean, y_var = (t.numpy()[:, 0] for t in svgp.predict_y(X_test))
    z = (samples - y_mean) / np.sqrt(y_var)
    np.testing.assert_array_less(np.abs(z.mean(0)), 4.0 / np.sqrt(S))
    # var of a sample variance of N(0, 1) draws is 2 / (S - 1)
    np.testing.assert_array_less(np.abs(z.var(0, ddof=1) - 1.0), 4.0 * np.sqrt(2.0 / (S - 1)))


def test_near_zero_inner_layer_predicts_as_svgp(svgp_setup):
    """A hidden layer with kernel variance 1e-12, an identity linear mean function and a tiny
    q_sqrt passes X through (its samples deviate by ~sqrt(1e-12) = 1e-6), so a two-layer DGP
    predicts as the SVGP does; its bound is SVGP's ELBO minus the hidden layer's KL."""
    X, Y, X_test, svgp, final, values = svgp_setup
    D, M_h = X.shape[1], 6
    rng = np.random.default_rng(7)
    hidden = GPLayer(
        gpflow.kernels.SquaredExponential(variance=1e-12, lengthscales=np.ones(D)),
        rng.standard_normal((M_h, D)),
        num_latent_gps=D,
        mean_function=gpflow.mean_functions.Linear(A=np.eye(D), b=np.zeros(D)),
        q_sqrt_scale=1e-5,
    )
    likelihood = gpflow.likelihoods.Gaussian(variance=values["noise_variance"])
    dgp = DeepGP(
        [hidden, final], likelihood, num_data=X.shape[0], mode="VI", num_importance_samples=4
    )
    mean, var = dgp.predict_f_samples_marginals(X_test, num_predictive_samples=5)
    svgp_mean, svgp_var = svgp.predict_f(X_test)
    for s in range(5):
        assert_rel_close(mean[s], svgp_mean, 1e-5, f"mean, sample {s}")
        assert_rel_close(var[s], svgp_var, 1e-5, f"variance, sample {s}")
    # KL of D whitened GPs with q_mu = 0, q_sqrt = 1e-5 I: D * M/2 * (1e-10 - 1 - log 1e-10).
    kl_hidden = D * 0.5 * M_h * (1e-10 - 1.0 - np.log(1e-10))
    assert_rel_close(dgp.elbo(X, Y), svgp.elbo((X, Y)).numpy() - kl_hidden, 1e-5, "bound")


# ----------------------------------------------------------------------------- the bounds


@pytest.fixture(scope="module")
def latent_setup():
    X, Y = toy_data(num_data=40, input_dim=2, seed=0)
    model = latent_model("L1", X, Y, M=16, encoder_dims=(8, 8), seed=1)
    return X, Y, model


def _log_normal(x, mean, scale):
    return -0.5 * np.log(2 * np.pi) - np.log(scale) - 0.5 * ((x - mean) / scale) ** 2


def test_log_weights_and_bounds_match_their_formulas(latent_setup):
    """log v_k = E_q[log N(y | f, s2)] + log p(w_k) - log q(w_k) from the propagation's own
    f_mean, f_var, w, mean, scale; IWAE = logmeanexp_k; VI = mean_k E[log lik] - KL;
    CIWAE = beta VI + (1 - beta) IWAE; the bound is (N/B) Σ - KL_u."""
    X, Y, model = latent_setup
    B, K = 7, 6
    Xb, Yb = X[:B], Y[:B]
    prop = model.propagate(Xb, Yb, K, noise=model.draw_noise(B, K))
    m, v = prop.f_mean.numpy()[..., 0], prop.f_var.numpy()[..., 0]
    s2 = model.likelihood.variance.numpy()
    var_exp = -0.5 * np.log(2 * np.pi * s2) - 0.5 * ((Yb - m) ** 2 + v) / s2  # [B, K]
    sample = prop.latent[0]
    w, mu, sd = sample.w.numpy(), sample.mean.numpy()[:, None], sample.scale.numpy()[:, None]
    log_prior = _log_normal(w, 0.0, 1.0).sum(-1)
    log_q = _log_normal(w, mu, sd).sum(-1)
    kl = (0.5 * (mu**2 + sd**2 - 1.0) - np.log(sd)).sum(-1)[:, 0]

    log_p, log_q_lib, log_q_stopped = (t.numpy() for t in model.log_weight_terms(prop, Yb))
    np.testing.assert_allclose(log_p, var_exp + log_prior, rtol=1e-10)
    np.testing.assert_allclose(log_q_lib, log_q, rtol=1e-10)
    np.testing.assert_allclose(log_q_stopped, log_q, rtol=1e-10)

    iwae = logsumexp(var_exp + log_prior - log_q, axis=1) - np.log(K)
    vi = var_exp.mean(1) - kl
    expected = {"IWAE": iwae, "VI": vi, "CIWAE": model.beta * vi + (1 - model.beta) * iwae}
    try:
        for mode, per_point in expected.items():
            model.mode = mode
            np.testing.assert_allclose(model.per_point_bound(prop, Yb), per_point, rtol=1e-10)
            bound = model.num_data / B * per_point.sum() - prop.kl_u.numpy()
            np.testing.assert_allclose(model.bound(prop, Yb), bound, rtol=1e-10)
            # REG's and STL's surrogates equal the bound in value.
            for estimator in ("reg", "stl") if mode != "VI" else ("reg",):
                np.testing.assert_allclose(
                    model.encoder_surrogate(prop, Yb, estimator), bound, rtol=1e-10
                )
    finally:
        model.mode = "IWAE"
    kl_u = sum(layer.prior_kl().numpy() for layer in model.gp_layers)
    np.testing.assert_allclose(prop.kl_u, kl_u, rtol=1e-12)


def test_iwvi_with_one_sample_equals_vi_in_expectation(latent_setup):
    """With K = 1, log p(w) - log q(w) has expectation -KL[q || p]: over many replicas sharing
    their noise, the paired difference IWVI - VI has mean 0 (within 4 standard errors) while
    it is not identically zero."""
    X, Y, model = latent_setup
    model.rng.reset_from_seed(11)
    R = 3000
    bounds = replica_bounds(model, X[:8], Y[:8], 1, R, ("VI", "IWAE"))
    diff = bounds["IWAE"] - bounds["VI"]
    se = diff.std(ddof=1) / np.sqrt(R)
    assert se > 0
    assert abs(diff.mean()) < 4 * se, (diff.mean(), se)


def test_iwvi_bound_exceeds_vi_and_grows_with_k(latent_setup):
    """For K > 1 the mean IWVI bound is significantly above the mean VI bound, and it does not
    decrease with K (consecutive means compared with 4 combined standard errors; the largest
    K is significantly above K = 1)."""
    X, Y, model = latent_setup
    model.rng.reset_from_seed(12)
    R = 1500
    Xb, Yb = X[:8], Y[:8]
    stats = {}
    for K in (1, 2, 5, 20, 50):
        bounds = replica_bounds(model, Xb, Yb, K, R, ("VI", "IWAE"))
        stats[K] = {m: (b.mean(), b.std(ddof=1) / np.sqrt(R)) for m, b in bounds.items()}

    def gap(a, b):  # (difference of means, combined standard error)
        return a[0] - b[0], np.hypot(a[1], b[1])

    for K in (2, 5, 20, 50):
        d, se = gap(stats[K]["IWAE"], stats[K]["VI"])
        assert d > 4 * se, (K, d, se)
    Ks = sorted(stats)
    for K_lo, K_hi in zip(Ks[:-1], Ks[1:]):
        d, se = gap(stats[K_hi]["IWAE"], stats[K_lo]["IWAE"])
        assert d > -4 * se, (K_lo, K_hi, d, se)
    d, se = gap(stats[50]["IWAE"], stats[1]["IWAE"])
    assert d > 4 * se, (d, se)


def test_propagate_is_a_function_of_its_noise(latent_setup):
    X, Y, model = latent_setup
    noise = model.draw_noise(5, 3)
    assert [None if n is None else tuple(n.shape) for n in noise] == [(5, 3, 1), None]
    a = model.propagate(X[:5], Y[:5], 3, noise=noise)
    b = model.propagate(X[:5], Y[:5], 3, noise=noise)
    c = model.propagate(X[:5], Y[:5], 3)
    np.testing.assert_array_equal(a.f_mean, b.f_mean)
    np.testing.assert_array_equal(a.f_var, b.f_var)
    assert not np.allclose(a.f_mean, c.f_mean)
    # w = mean + scale * eps with the given noise, and the encoder's outputs from [x, y]
    sample = a.latent[0]
    mean, scale = model.layers[0].encoder(np.concatenate([X[:5], Y[:5]], 1))
    np.testing.assert_allclose(sample.mean, mean, rtol=1e-12)
    np.testing.assert_allclose(sample.w, mean[:, None] + scale[:, None] * noise[0], rtol=1e-12)


def test_draw_noise_shapes_for_hidden_layers():
    X, Y = toy_data(num_data=30, input_dim=3, seed=2)
    model = latent_model("L2_G4_G5", X, Y, M=8, randomise=False)
    shapes = [None if n is None else tuple(n.shape) for n in model.draw_noise(6, 4)]
    # latent: d = 2; hidden layers draw their k = 4 and 5 latent GPs (then mix them into D = 3
    # outputs); nothing for the last
    assert shapes == [(6, 4, 2), (6, 4, 4), (6, 4, 5), None]
    prop = model.propagate(X[:6], Y[:6], 4)
    assert prop.f_mean.shape == (6, 4, 1) and prop.f_var.shape == (6, 4, 1)
    assert np.all(prop.f_var.numpy() > 0)


def test_prediction_draws_w_from_the_prior(latent_setup):
    X, Y, model = latent_setup
    prop = model.propagate(X[:5], None, 4)
    np.testing.assert_array_equal(prop.latent[0].mean, np.zeros((5, 1)))
    np.testing.assert_array_equal(prop.latent[0].scale, np.ones((5, 1)))
    mean, var = model.predict_f_samples_marginals(X[:5], num_predictive_samples=4)
    assert mean.shape == (4, 5, 1) and var.shape == (4, 5, 1)


def test_log_predictive_density_matches_its_formula(latent_setup):
    """log (1/S) Σ_s N(y | m_s, v_s + s2) with the same prior draws (model rng reset)."""
    X, Y, model = latent_setup
    S = 7
    model.rng.reset_from_seed(5)
    lpd = model.log_predictive_density(X[:6], Y[:6], S).numpy()
    model.rng.reset_from_seed(5)
    mean, var = (t.numpy()[..., 0] for t in model.predict_f_samples_marginals(X[:6], S))
    var = var + model.likelihood.variance.numpy()
    expected = logsumexp(_log_normal(Y[:6, 0], mean, np.sqrt(var)), axis=0) - np.log(S)
    np.testing.assert_allclose(lpd, expected, rtol=1e-10)


def test_fixed_q_is_the_prior():
    """fixq: q(w) is the prior, so the KL is 0 and log p(w) = log q(w) in every log weight."""
    X, Y = toy_data(num_data=20, seed=1)
    model = build_model("L1", X, Y, M=8, encoder_dims=(4,), qz_mode="fix_mu_sigma", seed=0)
    prop = model.propagate(X[:5], Y[:5], 3)
    np.testing.assert_array_equal(prop.latent[0].kl, np.zeros(5))
    log_p, log_q, _ = model.log_weight_terms(prop, Y[:5])
    log_prior = _log_normal(prop.latent[0].w.numpy(), 0.0, 1.0).sum(-1)
    np.testing.assert_allclose(log_q, log_prior, rtol=1e-12)


def test_constructor_rejects_bad_structure():
    X, Y = toy_data(num_data=10, seed=0)
    final = GPLayer(gpflow.kernels.SquaredExponential(), X[:4])
    likelihood = gpflow.likelihoods.Gaussian()
    with pytest.raises(ValueError, match="unknown mode 'ELBO'"):
        DeepGP([final], likelihood, 10, mode="ELBO")
    with pytest.raises(ValueError, match="at least 1"):
        DeepGP([final], likelihood, 10, num_importance_samples=0)
    two_outputs = GPLayer(gpflow.kernels.SquaredExponential(), X[:4], num_latent_gps=2)
    with pytest.raises(ValueError, match="single-output GPLayer"):
        DeepGP([two_outputs], likelihood, 10)
    with pytest.raises(ValueError, match="single-output GPLayer"):
        DeepGP([], likelihood, 10)
    latent = LatentVariableLayer(Encoder(3, 1, (4,), rng=np.random.default_rng(0)))
    with pytest.raises(ValueError, match="single-output GPLayer"):
        DeepGP([final, latent], likelihood, 10)


def test_vi_mode_supports_only_reg(latent_setup):
    X, Y, model = latent_setup
    prop = model.propagate(X[:4], Y[:4], 2)
    model.mode = "VI"
    try:
        for estimator in ("stl", "dreg"):
            with pytest.raises(ValueError, match=f"estimator '{estimator}'.*only 'reg'"):
                model.encoder_surrogate(prop, Y[:4], estimator)
        with pytest.raises(ValueError, match="unknown estimator 'drg'"):
            model.encoder_surrogate(prop, Y[:4], "drg")
    finally:
        model.mode = "IWAE"
