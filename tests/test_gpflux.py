"""dgp_snr.integrations.gpflux: a GPflux DeepGP and dgp_snr's DeepGP with identical parameters,
fed the same noise, agree to round-off (log weights, the three bounds, every estimator's encoder
gradients, the non-encoder gradients, the single-pass gradients and the gradient sampler); the
VI bound at K = 1 equals GPflux's own ELBO on the same draw; DReG is unbiased and REG's SNR falls
with K on a GPflux model; training the twin retraces dgp_snr's training, and training a model
GPflux built improves its bound; unsupported structures raise errors naming the layer."""

import functools

import gpflow
import gpflux  # the [gpflux] extra; the [test] extra installs it, so CI runs these tests
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_probability as tfp
from gpflow.keras import tf_keras
from helpers import assert_rel_close, latent_model, random_lower_triangular, toy_data

from dgp_snr.builder import build_model
from dgp_snr.data import get_regression_data
from dgp_snr.gradients import EncoderGradientSampler, bound_and_gradients, snr
from dgp_snr.integrations import gpflux as G
from dgp_snr.seeds import Stream, generator
from dgp_snr.slopes import loglog_slope
from dgp_snr.training import Trainer, TrainingConfig

tfd = tfp.distributions
RTOL = 1e-10
B, K = 5, 4
MODES_ESTIMATORS = [
    ("IWAE", "reg"),
    ("IWAE", "stl"),
    ("IWAE", "dreg"),
    ("CIWAE", "reg"),
    ("CIWAE", "stl"),
    ("CIWAE", "dreg"),
    ("VI", "reg"),
]


# ----------------------------------------------------------------------------- twins


def _randomise_hidden_layers(model, seed: int = 7) -> None:
    """Random q(u) for the hidden GP layers, so that their samples depend on it."""
    rng = np.random.default_rng(seed)
    for layer in model.gp_layers[:-1]:
        M, L = layer.q_mu.shape
        layer.q_mu.assign(rng.standard_normal((M, L)))
        layer.q_sqrt.assign(np.stack([random_lower_triangular(rng, M, 0.3) for _ in range(L)]))


@functools.lru_cache(maxsize=None)
def _twins(name: str):
    """dgp_snr's model `name` (random final and hidden q(u)) and its GPflux twin (to_gpflux),
    with a batch of B points."""
    X, Y = toy_data(num_data=30, input_dim=2, seed=0)
    ours = latent_model(name, X, Y, M=8, encoder_dims=(6, 6), num_importance_samples=K, seed=2)
    _randomise_hidden_layers(ours)
    ours.likelihood.variance.assign(0.3)
    return name, X[:B], Y[:B], ours, G.to_gpflux(ours)


@pytest.fixture(scope="module", params=["L1", "L1_G5"])
def twins(request):
    return _twins(request.param)


def _paired_parameters(ours, theirs):
    """The unconstrained variables of corresponding parameters, in the same order: kernel,
    inducing inputs, q(u), mixing and mean function of each GP layer, then the likelihood."""
    mine, its = [], []
    gp_layers = [layer for layer in theirs.f_layers if isinstance(layer, gpflux.layers.GPLayer)]
    for our, their in zip(ours.gp_layers, gp_layers):
        kernel = their.kernel
        base = kernel.kernels[0] if isinstance(kernel, gpflow.kernels.Combination) else kernel
        base = getattr(base, "kernel", base)  # SharedIndependent
        mine += [our.kernel.variance, our.kernel.lengthscales, our.Z, our.q_mu, our.q_sqrt]
        its += [base.variance, base.lengthscales, their.inducing_variable.inducing_variable.Z]
        its += [their.q_mu, their.q_sqrt]
        if our.mixing is not None:
            mine += [our.mixing, our.mean_function.A, our.mean_function.b]
            its += [kernel.W, their.mean_function.A, their.mean_function.b]
    mine.append(ours.likelihood.variance)
    its.append(theirs.likelihood_layer.likelihood.variance)
    return [p.unconstrained_variable for p in mine], [p.unconstrained_variable for p in its]


def _encoder_variables(theirs):
    return [
        v
        for layer in theirs.f_layers
        if isinstance(layer, gpflux.layers.LatentVariableLayer)
        for v in layer.encoder.trainable_variables
    ]


def _by_name(variables, values):
    """{"W0": value, ...}: values keyed by their variable's name (dgp_snr's Encoder and the
    KerasEncoder both name theirs W<i>, b<i>, in different orders)."""
    names = [v.name.split(":")[0].split("/")[-1] for v in variables]
    assert len(set(names)) == len(names), names
    return dict(zip(names, values))


def _assert_same_by_name(got_vars, got, want_vars, want, what):
    got, want = _by_name(got_vars, got), _by_name(want_vars, want)
    assert sorted(got) == sorted(want)
    for name in want:
        assert_rel_close(got[name], want[name], RTOL, f"{what} {name}")


def test_twin_structure_and_variables(twins):
    """The view's layers and variables are the GPflux model's: encoder variables are the
    encoders', the others every other variable GPflux's Keras model trains."""
    name, _, _, ours, theirs = twins
    view = G.GPfluxView(theirs)
    assert [type(v).__name__ for v in view.layers] == (
        ["LatentLayerView", "GPLayerView"] + (["GPLayerView"] if name == "L1_G5" else [])
    )
    assert [layer.noise_width for layer in view.layers] == [
        layer.noise_width for layer in ours.layers
    ]
    keras_vars = theirs.as_training_model().trainable_variables
    assert {id(v) for v in view.encoder_variables} == {id(v) for v in _encoder_variables(theirs)}
    assert {id(v) for v in view.trainable_variables} == {id(v) for v in keras_vars}
    assert len(view.non_encoder_variables) == len(ours.non_encoder_variables)
    assert len(view.encoder_variables) == len(ours.encoder_variables)


def test_twin_log_weights_and_bounds_agree(twins):
    """Log weights (both log q terms), the inducing KL and the VI, IWAE and CIWAE bounds of the
    GPflux model equal dgp_snr's to 1e-10 relative on shared noise."""
    _, X, Y, ours, theirs = twins
    noise = ours.draw_noise(B, K)
    prop = ours.propagate(X, Y, noise=noise)
    expected = ours.log_weight_terms(prop, Y)
    weights = G.log_weights(theirs, X, Y, K, noise)
    assert weights.log_w.shape == (B, K)
    for got, want, what in zip(
        (weights.log_p, weights.log_q, weights.log_q_stopped), expected, ("p", "q", "q_stop")
    ):
        assert_rel_close(got, want, RTOL, f"log {what}")
    assert_rel_close(weights.log_w, expected[0] - expected[1], RTOL, "log w")
    assert_rel_close(weights.kl_u, prop.kl_u, RTOL, "KL[q(u) || p(u)]")
    for mode in ("VI", "IWAE", "CIWAE"):
        ours.mode = mode
        try:
            want = ours.bound(prop, Y)
        finally:
            ours.mode = "IWAE"
        assert_rel_close(G.iwvi_bound(theirs, X, Y, K, noise, mode=mode), want, RTOL, mode)


def _our_gradients(model, X, Y, noise, estimator, variables):
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(variables)  # fixed parameters too (mixing, mean functions, σ² of G<k>)
        prop = model.propagate(X, Y, noise=noise)
        bound = model.bound(prop, Y)
        surrogate = model.encoder_surrogate(prop, Y, estimator)
    zero = tf.UnconnectedGradients.ZERO
    grads = tape.gradient(bound, variables, unconnected_gradients=zero)
    return grads, tape.gradient(surrogate, model.encoder_variables, unconnected_gradients=zero)


def _gpflux_gradients(model, X, Y, noise, estimator, variables, mode):
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(variables)
        bound = G.iwvi_bound(model, X, Y, K, noise, mode=mode)
        surrogate = G.encoder_surrogate(model, X, Y, K, estimator, noise, mode=mode)
    zero = tf.UnconnectedGradients.ZERO
    grads = tape.gradient(bound, variables, unconnected_gradients=zero)
    encoder = _encoder_variables(model)
    return grads, tape.gradient(surrogate, encoder, unconnected_gradients=zero)


@pytest.mark.parametrize("mode, estimator", MODES_ESTIMATORS)
def test_twin_gradients_agree(twins, mode, estimator):
    """Every estimator's encoder gradients and the bound's gradients in every other parameter
    (kernels, Z, q(u), mixing, mean functions, likelihood) agree to 1e-10 relative."""
    _, X, Y, ours, theirs = twins
    mine, its = _paired_parameters(ours, theirs)
    noise = ours.draw_noise(B, K)
    ours.mode = mode
    try:
        want_grads, want_enc = _our_gradients(ours, X, Y, noise, estimator, mine)
    finally:
        ours.mode = "IWAE"
    got_grads, got_enc = _gpflux_gradients(theirs, X, Y, noise, estimator, its, mode)
    assert all(np.any(g.numpy() != 0) for g in want_enc + want_grads)
    _assert_same_by_name(
        _encoder_variables(theirs),
        got_enc,
        ours.encoder_variables,
        want_enc,
        f"{mode} {estimator}",
    )
    assert_rel_close(got_grads, want_grads, RTOL, f"{mode} non-encoder")


@pytest.mark.parametrize("estimator", ["reg", "stl", "dreg"])
def test_twin_single_pass_gradients_and_sampler_agree(twins, estimator):
    """bound_and_gradients and EncoderGradientSampler run on the view and give dgp_snr's
    numbers to 1e-10 relative on shared noise."""
    _, X, Y, ours, theirs = twins
    view = G.GPfluxView(theirs, num_importance_samples=K)
    mine, its = _paired_parameters(ours, theirs)
    noise = ours.draw_noise(B, K)
    want = bound_and_gradients(ours, X, Y, estimator, mine, noise=noise)
    got = bound_and_gradients(view, X, Y, estimator, its, noise=noise)
    assert_rel_close(got[0], want[0], RTOL, "bound")
    assert_rel_close(got[1], want[1], RTOL, "non-encoder")
    _assert_same_by_name(view.encoder_variables, got[2], ours.encoder_variables, want[2], "enc")

    R = 3
    replica_noise = ours.draw_noise(R * B, K)
    want = EncoderGradientSampler(ours, X, Y).sample(K, R, estimator, noise=replica_noise)
    got = G.gradient_sampler(theirs, X, Y).sample(K, R, estimator, noise=replica_noise)
    assert sorted(got) == sorted(want) == [f"layer0/{p}{i}" for p in "Wb" for i in range(3)]
    for name in want:
        assert_rel_close(got[name], want[name], RTOL, name)


# ----------------------------------------------------------------------------- GPflux's ELBO


def test_vi_bound_at_k1_equals_gpflux_elbo(twins):
    """With K = 1 and mode VI, the bound equals GPflux's own `elbo` (-Σ losses x N) on the
    same draw: a fixed global seed, the draw recovered by replaying the layers' calls. A mixed
    hidden layer is sampled as GPflux samples it ("marginal")."""
    name, X, Y, _, theirs = twins
    X, Y = tf.constant(X), tf.constant(Y)
    try:
        tf.random.set_seed(11)
        elbo = theirs.elbo((X, Y))
        tf.random.set_seed(11)  # replay: the same random ops in the same order draw the same
        H, noise = X, []
        for layer in theirs.f_layers[:-1]:
            if isinstance(layer, gpflux.layers.LatentVariableLayer):
                out = layer(H, observations=[X, Y], training=True)
                mean, scale = layer.encoder(tf.concat([X, Y], -1))
                noise.append(((out[:, H.shape[1] :] - mean) / scale)[:, None])
            else:
                out = tf.convert_to_tensor(layer(H, training=True))
                mean, var = layer.predict(H)
                noise.append(((out - mean) / tf.sqrt(var))[:, None])
            H = out
        noise.append(None)
    finally:
        tf.random.set_seed(None)  # no global seed for the tests that follow
    bound = G.iwvi_bound(theirs, X, Y, 1, noise, mode="VI", mixed_sampling="marginal")
    assert_rel_close(bound, elbo, RTOL, "VI bound vs GPflux's elbo")


# ----------------------------------------------------------------------------- statistics


def test_dreg_encoder_gradients_are_unbiased_on_a_gpflux_model():
    """At a fixed GPflux model (L1) and batch, every encoder parameter's mean DReG gradient
    equals its mean REG gradient within 4 combined standard errors; STL's mean is further off
    (biased for K > 1), so the comparison can see a bias."""
    _, X, Y, _, theirs = _twins("L1")
    sampler = G.gradient_sampler(theirs, X[:4], Y[:4])
    S, Ks = 3000, 5
    draws = {
        est: sampler.sample(Ks, S, est, rng=generator(seed, Stream.GRADIENTS))
        for seed, est in enumerate(("reg", "dreg", "stl"))
    }

    def z_scores(a, b):
        out = []
        for key in sampler.names:
            x, y = draws[a][key], draws[b][key]
            se = np.sqrt(x.var(0, ddof=1) / S + y.var(0, ddof=1) / S)
            assert np.all(se > 0), key
            out.append(((x.mean(0) - y.mean(0)) / se).ravel())
        return np.concatenate(out)

    assert np.abs(z_scores("dreg", "reg")).max() < 4
    assert np.abs(z_scores("stl", "reg")).max() > 4


def _demo_model(num_data: int = 200):
    """A depth-1 GPflux model (the reference initialisation, through to_gpflux) on the first
    `num_data` points of demo_normalized."""
    data = get_regression_data("demo_normalized", split=0)
    X, Y = data.X_train[:num_data], data.Y_train[:num_data]
    ours = build_model("L1", X, Y, M=16, encoder_dims=(10, 10), seed=0)
    return X, Y, G.to_gpflux(ours)


KS_LAW = (1, 3, 10, 30, 100)


def test_snr_law_on_a_gpflux_model():
    """The paper's law on a GPflux model: after 300 DReG steps on demo data (200 points), the
    log-log slope of the mean encoder-gradient SNR (batch size 1, 400 estimates, 3 points)
    over K = 1, 3, 10, 30, 100 is below 0 for REG with its 95% interval, and DReG's interval
    lies above REG's (printed; theory: -1/2 and +1/2, measured: about -0.56 and +0.1)."""
    import pandas as pd

    X, Y, model = _demo_model()
    trainer = G.make_trainer(
        model,
        X,
        Y,
        TrainingConfig("dreg", minibatch_size=64, lr=0.01, encoder_lr=0.01),
        num_importance_samples=20,
    )
    for _ in range(300):
        trainer.train_step()
    rows = []
    for i in range(3):
        sampler = G.gradient_sampler(model, X[i : i + 1], Y[i : i + 1])
        for estimator in ("reg", "dreg"):
            for Ks in KS_LAW:
                samples = sampler.sample(Ks, 400, estimator, rng=generator(i, Stream.GRADIENTS))
                values = np.concatenate([snr(s).ravel() for s in samples.values()])
                rows.append(dict(estimator=estimator, K=Ks, point=i, snr=values.mean()))
    df = pd.DataFrame(rows).groupby(["estimator", "K"], as_index=False)["snr"].mean()
    fits = {est: loglog_slope(df, est) for est in ("reg", "dreg")}
    print("\n" + "\n".join(str(fit) for fit in fits.values()))
    assert fits["reg"].ci_high < 0, str(fits["reg"])
    assert fits["dreg"].ci_low > fits["reg"].ci_high, [str(fit) for fit in fits.values()]


# ----------------------------------------------------------------------------- training


def _native_model(X: np.ndarray, hidden: bool = False, latent_dim: int = 1):
    """A latent-variable DGP as GPflux's own docs build one: GPflux helpers, a
    DirectlyParameterizedNormalDiag encoder (full batch) and a MultivariateNormalDiag prior."""
    N, D = X.shape
    rng = np.random.default_rng(0)
    prior = tfd.MultivariateNormalDiag(np.zeros(latent_dim), np.ones(latent_dim))
    encoder = gpflux.encoders.DirectlyParameterizedNormalDiag(N, latent_dim)
    layers = [gpflux.layers.LatentVariableLayer(prior, encoder)]
    D_in = D + latent_dim
    if hidden:
        layers.append(
            gpflux.helpers.construct_gp_layer(N, 8, D_in, D, z_init=rng.standard_normal((8, D_in)))
        )
        layers[-1].mean_function = gpflux.helpers.construct_mean_function(
            _padded(X, D_in), D_in, D
        )
        D_in = D
    layers.append(
        gpflux.helpers.construct_gp_layer(N, 8, D_in, 1, z_init=rng.standard_normal((8, D_in)))
    )
    return gpflux.models.DeepGP(layers, gpflow.likelihoods.Gaussian(0.1), num_data=N)


def _padded(X: np.ndarray, D_in: int) -> np.ndarray:
    """X padded with zeros to D_in columns (for construct_mean_function's PCA)."""
    return np.concatenate([X, np.zeros((X.shape[0], D_in - X.shape[1]))], 1)


def _mean_gpflux_elbo(model, X, Y, repeats: int = 20) -> float:
    """GPflux's own elbo() averaged over `repeats` draws (global seed 0, reset after)."""
    try:
        tf.random.set_seed(0)
        return float(np.mean([model.elbo((X, Y)).numpy() for _ in range(repeats)]))
    finally:
        tf.random.set_seed(None)


def test_training_a_gpflux_built_model_improves_its_bound():
    """make_trainer trains a model GPflux built (no subclass): IWAE with DReG for the
    encoder, Adam for the rest, natural gradients for the final q(u); the bound rises, the
    GPflux model's own variables moved, and GPflux's own ELBO rose too."""
    X, Y = toy_data(num_data=30, input_dim=1, seed=3, bimodal=True)
    model = _native_model(X)
    final = model.f_layers[-1]
    before = {
        "encoder": model.f_layers[0].encoder.means.numpy().copy(),
        "q_mu": final.q_mu.numpy().copy(),
        "Z": final.inducing_variable.inducing_variable.Z.numpy().copy(),
    }
    elbo_before = _mean_gpflux_elbo(model, X, Y)
    config = TrainingConfig("dreg", minibatch_size=None, lr=0.02, encoder_lr=0.02, gamma=0.05)
    trainer = G.make_trainer(model, X, Y, config, num_importance_samples=5)
    bounds = [trainer.train_step() for _ in range(150)]
    assert np.mean(bounds[-10:]) > np.mean(bounds[:10]) + 1.0, (bounds[:10], bounds[-10:])
    assert trainer.trace_count == 1
    assert not final.q_mu.trainable  # natural gradients move it
    after = {
        "encoder": model.f_layers[0].encoder.means.numpy(),
        "q_mu": final.q_mu.numpy(),
        "Z": final.inducing_variable.inducing_variable.Z.numpy(),
    }
    for key in before:
        assert np.any(before[key] != after[key]), key
    elbo_after = _mean_gpflux_elbo(model, X, Y)
    assert elbo_after > elbo_before, (elbo_before, elbo_after)


@pytest.mark.parametrize("name", ["L1", "L1_G5"])
def test_trainer_on_the_twin_follows_dgp_snr_training(name):
    """20 steps of make_trainer on the GPflux twin (DReG, Adam, natural gradients, minibatches)
    retrace dgp_snr's Trainer on its own model with the same seed: same bounds, same
    parameters after, to round-off."""
    X, Y = toy_data(num_data=30, input_dim=2, seed=0)
    ours = latent_model(name, X, Y, M=8, encoder_dims=(6, 6), num_importance_samples=K, seed=2)
    theirs = G.to_gpflux(ours)
    config = TrainingConfig("dreg", minibatch_size=10, lr=0.01, encoder_lr=0.01)
    trainer = Trainer(ours, X, Y, config, seed=2)
    twin_trainer = G.make_trainer(theirs, X, Y, config, num_importance_samples=K, seed=2)
    want = [trainer.train_step() for _ in range(20)]
    got = [twin_trainer.train_step() for _ in range(20)]
    assert_rel_close(got, want, 1e-10, "bounds")
    mine, its = _paired_parameters(ours, theirs)
    assert_rel_close(its, mine, 1e-10, "parameters after training")
    _assert_same_by_name(
        _encoder_variables(theirs),
        _encoder_variables(theirs),
        ours.encoder_variables,
        ours.encoder_variables,
        "encoder after training",
    )


def test_view_predicts_and_runs_a_gpflux_built_hidden_layer():
    """A GPflux-built model with a hidden SharedIndependent layer: finite bounds for every
    mode, and prediction (w from the prior) through the view."""
    X, Y = toy_data(num_data=20, input_dim=2, seed=1)
    model = _native_model(X, hidden=True, latent_dim=2)
    view = G.GPfluxView(model, num_importance_samples=3, seed=0)
    assert [layer.noise_width for layer in view.layers[:-1]] == [2, 2]
    for mode in ("VI", "IWAE", "CIWAE"):
        assert np.isfinite(G.iwvi_bound(model, X, Y, 3, mode=mode).numpy())
    lpd = view.log_predictive_density(tf.constant(X), tf.constant(Y), 10)
    assert lpd.shape == (20,) and np.all(np.isfinite(lpd.numpy()))


def test_normal_prior_sums_over_latent_dimensions():
    """A Normal prior with batch shape [d] gives the same log weights as the equivalent
    MultivariateNormalDiag: log densities and KLs are summed over the d dimensions."""
    X, Y = toy_data(num_data=20, input_dim=2, seed=1)
    model = _native_model(X, latent_dim=2)
    noise = G.GPfluxView(model, seed=0).draw_noise(20, 3)
    mvn = G.log_weights(model, X, Y, 3, noise)
    mvn_bound = G.iwvi_bound(model, X, Y, 3, noise, mode="CIWAE")
    encoder = model.f_layers[0].encoder
    normal = gpflux.models.DeepGP(
        [
            gpflux.layers.LatentVariableLayer(tfd.Normal(np.zeros(2), np.ones(2)), encoder),
            model.f_layers[1],
        ],
        model.likelihood_layer,
        num_data=20,
    )
    got = G.log_weights(normal, X, Y, 3, noise)
    for a, b in zip(
        (got.log_p, got.log_q, got.log_q_stopped), (mvn.log_p, mvn.log_q, mvn.log_q_stopped)
    ):
        assert_rel_close(a, b, 1e-12)
    assert_rel_close(G.iwvi_bound(normal, X, Y, 3, noise, mode="CIWAE"), mvn_bound, 1e-12)


# ----------------------------------------------------------------------------- errors


def _gp_layer(N, D_in, D_out=1, **kwargs):
    rng = np.random.default_rng(0)
    layer = gpflux.helpers.construct_gp_layer(
        N, 4, D_in, D_out, z_init=rng.standard_normal((4, D_in))
    )
    for key, value in kwargs.items():
        setattr(layer, key, value)
    return layer


def _latent_layer(N, d=1, prior=None):
    prior = prior or tfd.MultivariateNormalDiag(np.zeros(d), np.ones(d))
    return gpflux.layers.LatentVariableLayer(
        prior, gpflux.encoders.DirectlyParameterizedNormalDiag(N, d)
    )


def _deep_gp(layers, N=10):
    return gpflux.models.DeepGP(layers, gpflow.likelihoods.Gaussian(0.1), num_data=N)


@pytest.mark.parametrize(
    "make_layers, message",
    [
        (
            lambda: [_latent_layer(10), tf_keras.layers.Dense(2), _gp_layer(10, 2)],
            r"f_layers\[1\] \(Dense .*\) is not supported",
        ),
        (
            lambda: [_latent_layer(10), _gp_layer(10, 3, 3, full_cov=True), _gp_layer(10, 3)],
            r"f_layers\[1\] \(GPLayer .*\): full_cov=True",
        ),
        (
            lambda: [_latent_layer(10), _gp_layer(10, 3, 3, num_samples=4), _gp_layer(10, 3)],
            r"f_layers\[1\] \(GPLayer .*\): num_samples=4",
        ),
        (
            lambda: [_latent_layer(10), _gp_layer(10, 3, 2)],
            r"f_layers\[1\] \(GPLayer .*\): the last layer must be a single-output GPLayer",
        ),
        (
            lambda: [_gp_layer(10, 2, 2), _latent_layer(10)],
            r"f_layers\[1\] \(LatentVariableLayer .*\): the last layer",
        ),
        (
            lambda: [
                _latent_layer(10, prior=tfd.Laplace(np.zeros(1), np.ones(1))),
                _gp_layer(10, 3),
            ],
            r"f_layers\[0\] \(LatentVariableLayer .*\): a latent prior Laplace",
        ),
        (
            lambda: [
                _latent_layer(10, prior=tfd.Normal(np.float64(0), np.float64(1))),
                _gp_layer(10, 3),
            ],
            r"f_layers\[0\] .*must describe one vector w \[d\]",
        ),
    ],
)
def test_unsupported_structures_are_named(make_layers, message):
    X = np.zeros((10, 2))
    model = _deep_gp(make_layers())
    with pytest.raises(ValueError, match=message):
        G.GPfluxView(model)
    with pytest.raises(ValueError, match=message):
        G.log_weights(model, X, np.zeros((10, 1)), 2)


def test_estimator_mode_and_layer_order_errors():
    X, Y = np.zeros((10, 2)), np.zeros((10, 1))
    late = _deep_gp([_gp_layer(10, 2, 2), _latent_layer(10), _gp_layer(10, 3)])
    with pytest.raises(
        ValueError,
        match=r"'dreg' needs the latent-variable layer first.*"
        r"f_layers\[1\] \(LatentVariableLayer",
    ):
        G.encoder_surrogate(late, X, Y, 2, "dreg")
    assert np.isfinite(G.encoder_surrogate(late, X, Y, 2, "stl").numpy())
    model = _deep_gp([_latent_layer(10), _gp_layer(10, 3)])
    with pytest.raises(ValueError, match="'stl' needs importance weights"):
        G.encoder_surrogate(model, X, Y, 2, "stl", mode="VI")
    with pytest.raises(ValueError, match="unknown estimator 'rge'"):
        G.encoder_surrogate(model, X, Y, 2, "rge")
    with pytest.raises(ValueError, match="unknown mixed_sampling 'joint'"):
        G.GPfluxView(model, mixed_sampling="joint")
    with pytest.raises(ValueError, match="unknown mode 'IWVI'"):
        G.iwvi_bound(model, X, Y, 2, mode="IWVI")
    with pytest.raises(ValueError, match="'dreg' needs the latent-variable layer first"):
        G.make_trainer(late, X, Y, TrainingConfig("dreg"))
    with pytest.raises(TypeError, match="expected a gpflux.models.DeepGP"):
        G.log_weights(object(), X, Y, 2)


def test_to_gpflux_refuses_what_gpflux_cannot_express():
    X, Y = toy_data(num_data=20, input_dim=2, seed=0)
    fixed = build_model("L1", X, Y, M=4, encoder_dims=(4,), qz_mode="fix_mu_sigma")
    with pytest.raises(ValueError, match=r"layer 0 \(LatentVariableLayer\): fix_q=True"):
        G.to_gpflux(fixed)


def test_mixed_layer_with_separate_kernel_objects_agrees():
    """A LinearCoregionalization layer whose latent GPs have separate (equal) kernel objects
    takes GPflow's general conditional (one Cholesky per latent GP) and agrees too."""
    _, X, Y, ours, theirs = _twins("L1_G5")
    noise = ours.draw_noise(B, K)
    ours.mode = "CIWAE"
    try:
        want = ours.bound(ours.propagate(X, Y, noise=noise), Y)
    finally:
        ours.mode = "IWAE"
    hidden = theirs.f_layers[1]
    kernel = hidden.kernel
    separate = gpflow.kernels.LinearCoregionalization(
        [gpflow.utilities.deepcopy(kernel.kernels[0]) for _ in kernel.kernels], W=kernel.W.numpy()
    )
    hidden.kernel = separate
    try:
        view = G.GPfluxView(theirs, mode="CIWAE")
        assert view.layers[1].latent_kernel is separate
        got = view.bound(view.propagate(X, Y, noise=noise), Y)
    finally:
        hidden.kernel = kernel
    assert_rel_close(got, want, RTOL, "separate kernels")
