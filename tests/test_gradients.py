"""Gradients: the single-backward-pass gradients of bound_and_gradients against plain autodiff of
the surrogates, DReG against its written-out formula, EncoderGradientSampler against per-replica
gradients, unbiasedness of DReG, and the SNR direction of REG and DReG in K."""

import numpy as np
import pytest
import tensorflow as tf
from helpers import assert_rel_close, latent_model, toy_data
from scipy.special import softmax

from dgp_snr.gradients import EncoderGradientSampler, bound_and_gradients, snr
from dgp_snr.seeds import Stream, generator
from dgp_snr.training import Trainer, TrainingConfig

B, K = 5, 4


@pytest.fixture(scope="module")
def setup():
    """A latent layer, one hidden (mixed, 3 GPs) layer and the final layer, with a random final
    q(u) so that every gradient is non-trivial."""
    X, Y = toy_data(num_data=40, input_dim=2, seed=0)
    model = latent_model(
        "L1_G3", X, Y, M=10, encoder_dims=(6, 6), num_importance_samples=K, seed=2
    )
    return X, Y, model


def _tape_gradients(model, X, Y, estimator, noise, variables):
    """Plain autodiff: the bound's gradient in `variables`, the surrogate's in the encoder."""
    with tf.GradientTape(persistent=True) as tape:
        prop = model.propagate(X, Y, noise=noise)
        bound = model.bound(prop, Y)
        surrogate = model.encoder_surrogate(prop, Y, estimator)
    zero = tf.UnconnectedGradients.ZERO
    grads = tape.gradient(bound, variables, unconnected_gradients=zero)
    enc = tape.gradient(surrogate, model.encoder_variables, unconnected_gradients=zero)
    return bound, grads, enc


# ----------------------------------------------------------------------------- one pass


@pytest.mark.parametrize(
    "mode, estimator",
    [
        ("IWAE", "reg"),
        ("IWAE", "stl"),
        ("IWAE", "dreg"),
        ("CIWAE", "reg"),
        ("CIWAE", "dreg"),
        ("VI", "reg"),
    ],
)
def test_single_pass_gradients_equal_autodiff_of_the_surrogates(setup, mode, estimator):
    X, Y, model = setup
    Xb, Yb = tf.constant(X[:B]), tf.constant(Y[:B])
    variables = model.non_encoder_variables
    model.mode = mode
    try:
        noise = model.draw_noise(B, K)
        bound, grads, enc = bound_and_gradients(model, Xb, Yb, estimator, variables, noise=noise)
        bound_t, grads_t, enc_t = _tape_gradients(model, Xb, Yb, estimator, noise, variables)
    finally:
        model.mode = "IWAE"
    assert_rel_close(bound, bound_t, 1e-12, "bound")
    assert len(enc) == len(model.encoder_variables) == 6
    assert_rel_close(enc, enc_t, 1e-10, "encoder gradients")
    assert_rel_close(grads, grads_t, 1e-10, "non-encoder gradients")
    assert all(np.any(g.numpy() != 0) for g in enc), "an encoder gradient is zero"


@pytest.mark.parametrize("mode", ["IWAE", "CIWAE"])
def test_non_encoder_gradients_do_not_depend_on_the_estimator(setup, mode):
    X, Y, model = setup
    Xb, Yb = tf.constant(X[:B]), tf.constant(Y[:B])
    variables = model.non_encoder_variables
    model.mode = mode
    try:
        noise = model.draw_noise(B, K)
        results = {
            est: bound_and_gradients(model, Xb, Yb, est, variables, noise=noise)
            for est in ("reg", "stl", "dreg")
        }
    finally:
        model.mode = "IWAE"
    for est in ("stl", "dreg"):
        assert_rel_close(results[est][0], results["reg"][0], 1e-14, f"bound ({est})")
        assert_rel_close(results[est][1], results["reg"][1], 1e-12, f"gradients ({est})")
    # while the encoder gradients do depend on it
    for est in ("stl", "dreg"):
        diff = [np.max(np.abs(a - b)) for a, b in zip(results[est][2], results["reg"][2])]
        assert max(diff) > 1e-6, est


def test_bound_and_gradients_reject_bad_estimators(setup):
    X, Y, model = setup
    with pytest.raises(ValueError, match="unknown estimator 'dreg2'"):
        bound_and_gradients(model, X[:B], Y[:B], "dreg2", [])
    model.mode = "VI"
    try:
        with pytest.raises(ValueError, match="only 'reg'"):
            bound_and_gradients(model, X[:B], Y[:B], "stl", [])
    finally:
        model.mode = "IWAE"
    X2, Y2 = toy_data(num_data=20, input_dim=2, seed=1)
    late = latent_model("G3_L1", X2, Y2, M=6, encoder_dims=(4,))
    with pytest.raises(
        ValueError,
        match="'dreg' needs the latent-variable layer first.*layer 1 is a latent-variable layer",
    ):
        bound_and_gradients(late, X2[:3], Y2[:3], "dreg", [])
    with pytest.raises(
        ValueError,
        match="'dreg' needs the latent-variable layer first.*layer 1 is a latent-variable layer",
    ):
        EncoderGradientSampler(late, X2[:3], Y2[:3]).sample(2, 2, "dreg")


# ----------------------------------------------------------------------------- DReG written out


@pytest.mark.parametrize("estimator", ["dreg", "stl"])
def test_path_estimators_equal_their_written_out_formula(setup, estimator):
    """DReG = (N/B) Σ_b Σ_k wt_bk^2 dlogv_bk/dw_bk dw_bk/dphi (STL: wt_bk instead of wt_bk^2),
    with log v = E_q[log N(y | f)] + log N(w; 0, I) - log N(w; mean, scale) written out here,
    its per-sample gradient in w from the tape, wt from numpy, and dw/dphi the Jacobian of
    mean + scale * eps with respect to the encoder parameters."""
    X, Y, model = setup
    Xb, Yb = tf.constant(X[:B]), tf.constant(Y[:B])
    Kx = model.num_importance_samples  # bound_and_gradients propagates with the model's K
    noise = model.draw_noise(B, Kx)
    eps = noise[0]  # [B, K, d]
    s2 = model.likelihood.variance
    with tf.GradientTape(persistent=True) as tape:
        prop = model.propagate(Xb, Yb, Kx, noise=noise)
        sample = prop.latent[0]
        w = sample.w
        mu, sd = tf.stop_gradient(sample.mean)[:, None], tf.stop_gradient(sample.scale)[:, None]
        var_exp = (
            -0.5 * tf.math.log(2 * np.pi * s2)
            - 0.5 * (tf.square(Yb[:, None, :] - prop.f_mean) + prop.f_var) / s2
        )
        log_prior = -0.5 * np.log(2 * np.pi) - 0.5 * tf.square(w)
        log_q = -0.5 * np.log(2 * np.pi) - tf.math.log(sd) - 0.5 * tf.square((w - mu) / sd)
        log_v = var_exp[..., 0] + tf.reduce_sum(log_prior - log_q, -1)  # [B, K]
        total_log_v = tf.reduce_sum(log_v)
        surrogate = model.encoder_surrogate(prop, Yb, estimator)
        # w as a function of the encoder alone, for dw/dphi
        mean, scale = model.layers[0].encoder(tf.concat([Xb, Yb], -1))
        w_phi = mean[:, None, :] + scale[:, None, :] * eps
    dlogv_dw = tape.gradient(total_log_v, w).numpy()  # [B, K, d]
    jacobians = tape.jacobian(w_phi, model.encoder_variables)  # [B, K, d, *phi]
    autodiff = tape.gradient(surrogate, model.encoder_variables)
    del tape

    wt = softmax(log_v.numpy(), axis=-1)
    factor = wt**2 if estimator == "dreg" else wt
    upstream = model.num_data / B * factor[..., None] * dlogv_dw  # [B, K, d]
    explicit = [np.tensordot(upstream, J.numpy(), 3) for J in jacobians]
    assert_rel_close(autodiff, explicit, 1e-8, f"{estimator}: surrogate vs formula")
    _, _, single_pass = bound_and_gradients(model, Xb, Yb, estimator, [], noise=noise)
    assert_rel_close(single_pass, explicit, 1e-8, f"{estimator}: bound_and_gradients vs formula")


# ----------------------------------------------------------------------------- the sampler


@pytest.mark.parametrize("batch", [1, 4])
def test_sampler_chunks_agree_with_per_replica_gradients(setup, batch):
    """Identical noise (model.draw_noise(R * B, K), replica-major): one replica per call, all
    replicas in one call, uneven chunks, and a tape gradient of encoder_surrogate per replica
    agree for every estimator."""
    X, Y, model = setup
    Xb, Yb = X[:batch], Y[:batch]
    R, Ks = 3, 5
    sampler = EncoderGradientSampler(model, Xb, Yb)
    noise = model.draw_noise(R * batch, Ks)
    for estimator in ("reg", "stl", "dreg"):
        direct = []
        for r in range(R):
            noise_r = [None if n is None else n[r * batch : (r + 1) * batch] for n in noise]
            with tf.GradientTape() as tape:
                prop = model.propagate(tf.constant(Xb), tf.constant(Yb), Ks, noise=noise_r)
                surrogate = model.encoder_surrogate(prop, tf.constant(Yb), estimator)
            direct.append(tape.gradient(surrogate, model.encoder_variables))
        expected = [np.stack([d[i].numpy() for d in direct]) for i in range(len(direct[0]))]
        for chunk in (2, 1, R):  # uneven chunks first: fewer retraces
            got = sampler.sample(Ks, R, estimator, noise=noise, chunk_size=chunk)
            assert list(got) == sampler.names
            assert_rel_close(list(got.values()), expected, 1e-10, f"{estimator}, chunk {chunk}")


def test_sampler_names_shapes_and_errors(setup):
    X, Y, model = setup
    sampler = EncoderGradientSampler(model, X[:2], Y[:2])
    assert (
        sampler.names == ["layer0/" + v.name.split(":")[0] for v in model.encoder_variables]
        and len(set(sampler.names)) == 6
    )
    samples = sampler.sample(3, 5, "reg", rng=tf.random.Generator.from_seed(1))
    for name, v in zip(sampler.names, model.encoder_variables):
        assert samples[name].shape == (5, *v.shape)
    again = sampler.sample(3, 5, "reg", rng=tf.random.Generator.from_seed(1))
    for name in sampler.names:
        np.testing.assert_array_equal(samples[name], again[name])
    assert sampler.chunk_size(3) == sampler.max_rows // (2 * 3)
    with pytest.raises(ValueError, match="at least 1"):
        sampler.sample(0, 5, "reg")
    with pytest.raises(ValueError, match="unknown estimator 'rge'"):
        sampler.sample(2, 5, "rge")


def test_snr_is_mean_over_std():
    samples = np.array([[1.0, -2.0], [3.0, -4.0], [5.0, -9.0]])
    expected = np.abs(samples.mean(0)) / samples.std(0)
    np.testing.assert_allclose(snr(samples), expected, rtol=1e-14)
    np.testing.assert_allclose(snr(np.array([[1.0], [3.0]])), [2.0])


# ----------------------------------------------------------------------------- statistics


def test_dreg_encoder_gradients_are_unbiased(setup):
    """At a fixed model and batch, every encoder parameter's mean DReG gradient equals its mean
    REG gradient within 4 combined standard errors (independent draws); STL's mean differs
    from REG's for some parameter (biased for K > 1), so the comparison can see a bias."""
    X, Y, model = setup
    sampler = EncoderGradientSampler(model, X[:4], Y[:4])
    S, Ks = 4000, 5
    draws = {
        est: sampler.sample(Ks, S, est, rng=generator(seed, Stream.GRADIENTS))
        for seed, est in enumerate(("reg", "dreg", "stl"))
    }

    def z_scores(a, b):
        out = []
        for name in sampler.names:
            x, y = draws[a][name], draws[b][name]
            se = np.sqrt(x.var(0, ddof=1) / S + y.var(0, ddof=1) / S)
            assert np.all(se > 0), name
            out.append(((x.mean(0) - y.mean(0)) / se).ravel())
        return np.concatenate(out)

    z_dreg = z_scores("dreg", "reg")
    assert z_dreg.size == sum(int(np.prod(v.shape)) for v in model.encoder_variables)
    assert np.all(np.abs(z_dreg) < 4), np.abs(z_dreg).max()
    assert np.abs(z_scores("stl", "reg")).max() > 4


@pytest.fixture(scope="module")
def trained():
    """A depth-1 model trained for 300 full-batch DReG steps on a tiny bimodal 1-D set."""
    X, Y = toy_data(num_data=40, input_dim=1, seed=0, bimodal=True)
    model = latent_model("L1", X, Y, M=16, encoder_dims=(8, 8), num_importance_samples=10, seed=0)
    config = TrainingConfig(estimator="dreg", minibatch_size=None, lr=0.01, encoder_lr=0.01)
    trainer = Trainer(model, X, Y, config)
    bounds = [trainer.train_step() for _ in range(300)]
    assert np.mean(bounds[-20:]) > np.mean(bounds[:20])
    return X, Y, model


def test_snr_falls_with_k_for_reg_and_rises_for_dreg(trained):
    """Mean SNR over the encoder parameters, batch size 1, 1000 estimates, averaged over 3
    points: REG at K = 100 is below REG at K = 1; DReG at K = 100 is above DReG at K = 1."""
    X, Y, model = trained
    mean_snr = {}
    for i in range(3):
        sampler = EncoderGradientSampler(model, X[i : i + 1], Y[i : i + 1])
        for estimator in ("reg", "dreg"):
            for Ks in (1, 100):
                rng = generator(i, Stream.GRADIENTS, Ks)
                samples = sampler.sample(Ks, 1000, estimator, rng=rng)
                value = np.mean(np.concatenate([snr(s).ravel() for s in samples.values()]))
                mean_snr.setdefault((estimator, Ks), []).append(value)
    mean_snr = {key: np.mean(v) for key, v in mean_snr.items()}
    assert mean_snr["reg", 100] < mean_snr["reg", 1], mean_snr
    assert mean_snr["dreg", 100] > mean_snr["dreg", 1], mean_snr
