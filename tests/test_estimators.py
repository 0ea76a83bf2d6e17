"""The REG / STL / DReG surrogates of dgp_snr.estimators on a conjugate toy problem whose
gradients are known in closed form:

    p(w) = N(0, 1),  p(y | w) = N(y; w, 1),  q(w) = N(mu, s^2),  w_k = mu + s eps_k,

so the posterior is N(y / 2, 1 / 2) and p(y) = N(y; 0, 2). Each of S independent "points" has its
own (mu, s), so the gradient of the summed surrogate in mu [S], s [S] is S independent estimates.
"""

import numpy as np
import pytest
import tensorflow as tf
from scipy.special import logsumexp, softmax

from dgp_snr.estimators import (
    ESTIMATORS,
    Estimator,
    check_compatible,
    dreg,
    get_estimator,
    iwae_bound,
    reg,
    stl,
)

Y_OBS = 1.3


def _log_normal(x, mean, scale):
    x, mean, scale = (tf.convert_to_tensor(t, tf.float64) for t in (x, mean, scale))
    return -0.5 * np.log(2 * np.pi) - tf.math.log(scale) - 0.5 * tf.square((x - mean) / scale)


def _toy_log_terms(mu, s, eps):
    """(log_p, log_q, log_q_stopped) [S, K] for mu, s [S] and eps [S, K]."""
    w = mu[:, None] + s[:, None] * eps
    log_p = _log_normal(Y_OBS, w, 1.0) + _log_normal(w, 0.0, 1.0)
    log_q = _log_normal(w, mu[:, None], s[:, None])
    log_q_stopped = _log_normal(w, tf.stop_gradient(mu)[:, None], tf.stop_gradient(s)[:, None])
    return log_p, log_q, log_q_stopped


def _surrogate_gradients(estimator, mu0, s0, eps):
    """Per-point gradients (d/dmu, d/ds) [S] of the estimator's surrogate, and its value [S]."""
    S = eps.shape[0]
    mu = tf.Variable(np.full(S, mu0))
    s = tf.Variable(np.full(S, s0))
    with tf.GradientTape() as tape:
        value = get_estimator(estimator)(*_toy_log_terms(mu, s, tf.constant(eps)))
        total = tf.reduce_sum(value)
    g_mu, g_s = tape.gradient(total, [mu, s])
    return g_mu.numpy(), g_s.numpy(), value.numpy()


def _explicit_gradients(estimator, mu, s, eps):
    """The estimators written out: with log v_k = log p(y, w_k) - log q(w_k), wt = softmax(log v),
    dlogv_k/dw_k = (y - w_k) - w_k + (w_k - mu) / s^2 and dw_k/d(mu, s) = (1, eps_k),
      REG:  Σ wt_k (dlogv_k/dw_k dw_k/dphi + ∂log v_k/∂phi)   (direct terms of -log q),
      STL:  Σ wt_k   dlogv_k/dw_k dw_k/dphi,
      DReG: Σ wt_k^2 dlogv_k/dw_k dw_k/dphi."""
    w = mu + s * eps
    log_v = (
        -0.5 * (Y_OBS - w) ** 2 - 0.5 * w**2 + np.log(s) + 0.5 * eps**2 - 0.5 * np.log(2 * np.pi)
    )
    wt = softmax(log_v, axis=-1)
    dlogv_dw = (Y_OBS - w) - w + (w - mu) / s**2
    path_mu, path_s = dlogv_dw, dlogv_dw * eps
    if estimator == "reg":
        direct_mu = -(w - mu) / s**2
        direct_s = 1.0 / s - (w - mu) ** 2 / s**3
        return (wt * (path_mu + direct_mu)).sum(-1), (wt * (path_s + direct_s)).sum(-1)
    factor = wt if estimator == "stl" else wt**2
    return (factor * path_mu).sum(-1), (factor * path_s).sum(-1)


@pytest.fixture(scope="module")
def eps():
    return np.random.default_rng(0).standard_normal((50, 7))


# ----------------------------------------------------------------------------- values


def test_iwae_bound_is_a_stable_log_mean_exp():
    rng = np.random.default_rng(1)
    log_w = rng.standard_normal((3, 4, 6)) * 5.0 - 2000.0  # exp underflows
    expected = logsumexp(log_w, axis=-1) - np.log(6)
    np.testing.assert_allclose(iwae_bound(tf.constant(log_w)), expected, rtol=1e-12)
    assert iwae_bound(tf.constant(log_w)).shape == (3, 4)
    one = rng.standard_normal((5, 1))
    np.testing.assert_allclose(iwae_bound(tf.constant(one)), one[:, 0], rtol=1e-14)


def test_surrogate_values():
    """REG and STL equal the bound in value; DReG is Σ wt_k^2 log v_k."""
    rng = np.random.default_rng(2)
    log_p, log_q, log_q_s = (tf.constant(rng.standard_normal((4, 5)) * 3) for _ in range(3))
    log_v = (log_p - log_q).numpy()
    np.testing.assert_allclose(
        reg(log_p, log_q, log_q_s), logsumexp(log_v, -1) - np.log(5), rtol=1e-12
    )
    log_v_s = (log_p - log_q_s).numpy()
    np.testing.assert_allclose(
        stl(log_p, log_q, log_q_s), logsumexp(log_v_s, -1) - np.log(5), rtol=1e-12
    )
    wt = softmax(log_v_s, -1)
    np.testing.assert_allclose(dreg(log_p, log_q, log_q_s), (wt**2 * log_v_s).sum(-1), rtol=1e-12)


def test_path_weights():
    log_v = tf.constant(np.random.default_rng(3).standard_normal((2, 3, 4)))
    weights = Estimator.DREG.path_weights(log_v)
    np.testing.assert_allclose(weights, softmax(log_v.numpy(), -1), rtol=1e-12)
    for name in ("reg", "stl"):
        np.testing.assert_array_equal(Estimator(name).path_weights(log_v), np.ones((2, 3, 4)))


def test_estimator_object_requirements_and_the_one_compatibility_check():
    assert (
        Estimator.parse("dreg") is Estimator.DREG
        and Estimator.parse(Estimator.STL) is Estimator.STL
    )
    terms = [tf.constant(np.random.default_rng(1).standard_normal((3, 5))) for _ in range(3)]
    for est, fn in ((Estimator.REG, reg), (Estimator.STL, stl), (Estimator.DREG, dreg)):
        np.testing.assert_array_equal(est.surrogate(*terms), fn(*terms))
    assert [e.needs_importance_weights for e in Estimator] == [False, True, True]
    assert [e.needs_latent_first for e in Estimator] == [False, False, True]
    assert check_compatible("dreg", "IWAE", [0]) is Estimator.DREG
    assert check_compatible("reg", "VI", [2]) is Estimator.REG
    assert check_compatible("stl", "CIWAE", [1]) is Estimator.STL
    with pytest.raises(ValueError, match="'stl' needs importance weights.*only 'reg'"):
        check_compatible("stl", "VI", [0])
    with pytest.raises(
        ValueError, match="'dreg' needs the latent-variable layer first.*layer 2 is"
    ):
        check_compatible("dreg", "IWAE", [0, 2])
    with pytest.raises(ValueError, match=r"unknown estimator 'rge'.*reg, stl, dreg"):
        check_compatible("rge", "IWAE", [0])


def test_get_estimator_names_the_known_ones():
    assert set(ESTIMATORS) == {"reg", "stl", "dreg"}
    assert get_estimator("dreg") is dreg
    with pytest.raises(ValueError, match=r"unknown estimator 'DReG'.*reg, stl, dreg"):
        get_estimator("DReG")


# ----------------------------------------------------------------------------- gradients


@pytest.mark.parametrize("estimator", ["reg", "stl", "dreg"])
def test_surrogate_gradients_equal_the_written_out_estimators(estimator, eps):
    mu, s = 0.3, 0.9
    g_mu, g_s, _ = _surrogate_gradients(estimator, mu, s, eps)
    e_mu, e_s = _explicit_gradients(estimator, mu, s, eps)
    np.testing.assert_allclose(g_mu, e_mu, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(g_s, e_s, rtol=1e-10, atol=1e-13)


def test_dreg_equals_stl_for_one_sample(eps):
    a = _surrogate_gradients("dreg", 0.3, 0.9, eps[:, :1])
    b = _surrogate_gradients("stl", 0.3, 0.9, eps[:, :1])
    np.testing.assert_allclose(a[0], b[0], rtol=1e-12)
    np.testing.assert_allclose(a[1], b[1], rtol=1e-12)


def test_at_the_exact_posterior_stl_and_dreg_have_zero_variance(eps):
    """q = p(w | y): every log weight is log p(y), so the bound is exact for every draw, the
    path-derivative estimators are exactly zero and REG still fluctuates."""
    mu, s = Y_OBS / 2, np.sqrt(0.5)
    log_evidence = -0.5 * np.log(2 * np.pi * 2.0) - Y_OBS**2 / 4.0
    for estimator in ("stl", "dreg"):
        g_mu, g_s, value = _surrogate_gradients(estimator, mu, s, eps)
        np.testing.assert_allclose(g_mu, 0.0, atol=1e-12)
        np.testing.assert_allclose(g_s, 0.0, atol=1e-12)
    g_mu, g_s, value = _surrogate_gradients("reg", mu, s, eps)
    np.testing.assert_allclose(value, log_evidence, rtol=1e-12)
    assert g_mu.std() > 0.1 and g_s.std() > 0.1


def _mean_and_se(samples):
    return samples.mean(), samples.std(ddof=1) / np.sqrt(len(samples))


def test_one_sample_estimators_are_unbiased_for_the_elbo_gradient():
    """K = 1: the ELBO is -log 2pi - ((y - mu)^2 + s^2)/2 - (mu^2 + s^2)/2 + log(s) + const, so
    dELBO/dmu = y - 2 mu and dELBO/ds = 1/s - 2 s; all three estimators average to it."""
    mu, s = 0.3, 0.9
    e = np.random.default_rng(4).standard_normal((20000, 1))
    exact = {0: Y_OBS - 2 * mu, 1: 1.0 / s - 2 * s}
    for estimator in ("reg", "stl", "dreg"):
        grads = _surrogate_gradients(estimator, mu, s, e)
        for i in (0, 1):
            mean, se = _mean_and_se(grads[i])
            assert abs(mean - exact[i]) < 4 * se, (estimator, i, mean, exact[i], se)


def test_dreg_is_unbiased_and_stl_is_biased_for_many_samples():
    """K = 10: DReG's mean gradient equals REG's (4 combined standard errors, independent
    draws); STL's differs (Tucker et al. 2019), which shows the comparison has the power to
    see a biased estimator."""
    mu, s, K, S = 0.3, 0.9, 10, 40000
    rng = np.random.default_rng(5)
    means = {}
    for estimator in ("reg", "dreg", "stl"):
        grads = _surrogate_gradients(estimator, mu, s, rng.standard_normal((S, K)))
        means[estimator] = [_mean_and_se(g) for g in grads[:2]]
    for i in (0, 1):
        (m_reg, se_reg), (m_dreg, se_dreg) = means["reg"][i], means["dreg"][i]
        assert abs(m_reg - m_dreg) < 4 * np.hypot(se_reg, se_dreg), (i, m_reg, m_dreg)
        m_stl, se_stl = means["stl"][i]
        assert abs(m_reg - m_stl) > 4 * np.hypot(se_reg, se_stl), (i, m_reg, m_stl)


def test_snr_falls_with_k_for_reg_and_grows_for_dreg():
    """Rainforth et al. (2018) / Tucker et al. (2019): the inference-network gradient's SNR
    falls with K under REG and rises under DReG (here for s, at K = 1 vs K = 100)."""
    mu, s, S = 0.3, 0.9, 4000
    rng = np.random.default_rng(6)
    snr = {}
    for estimator in ("reg", "dreg"):
        for K in (1, 100):
            g_s = _surrogate_gradients(estimator, mu, s, rng.standard_normal((S, K)))[1]
            snr[estimator, K] = abs(g_s.mean()) / g_s.std()
    assert snr["reg", 100] < snr["reg", 1], snr
    assert snr["dreg", 100] > snr["dreg", 1], snr


def test_estimators_accept_extra_batch_axes():
    rng = np.random.default_rng(7)
    terms = [tf.constant(rng.standard_normal((2, 3, 4))) for _ in range(3)]
    for name in ESTIMATORS:
        assert get_estimator(name)(*terms).shape == (2, 3), name


def test_log_mean_exp_and_the_one_range_check_of_K():
    from dgp_snr.estimators import check_num_importance_samples, log_mean_exp

    values = np.random.default_rng(0).normal(size=(3, 7)) * 50.0  # exp overflows naively at 700
    expected = np.log(np.mean(np.exp(values - values.max(-1, keepdims=True)), -1))
    expected += values.max(-1)
    np.testing.assert_allclose(log_mean_exp(tf.constant(values)).numpy(), expected, rtol=1e-12)
    assert check_num_importance_samples(np.int64(5)) == 5
    for bad in (0, -1, 1.5, True, "5"):
        with pytest.raises(ValueError, match=r"num_importance_samples \(K\) must be an integer"):
            check_num_importance_samples(bad)
