"""Trainer: one trace for many steps, the bound improving, natural gradients for the final q(u)
against the closed-form optimum, exact SGD updates (with clipping and the staircase decay),
assert_no_nans, reproducibility, and configuration errors."""

import gpflow
import numpy as np
import pytest
import tensorflow as tf
from helpers import latent_model, toy_data

from dgp_snr.builder import build_model
from dgp_snr.gradients import bound_and_gradients
from dgp_snr.layers import GPLayer
from dgp_snr.models import DeepGP
from dgp_snr.training import Trainer, TrainingConfig


def _small_latent_model(X, Y, seed=1, **kwargs):
    return latent_model(
        "L1", X, Y, M=8, encoder_dims=(6,), num_importance_samples=3, seed=seed, **kwargs
    )


def test_compiled_step_traces_once_and_the_bound_improves():
    """Minibatches of 10 out of 40, 300 steps: one trace; the mean bound of the last 60 steps
    exceeds that of the first 60 by more than 4 combined standard errors."""
    X, Y = toy_data(num_data=40, input_dim=1, seed=0, bimodal=True)
    model = latent_model("L1", X, Y, M=10, encoder_dims=(6,), num_importance_samples=5, seed=0)
    trainer = Trainer(model, X, Y, TrainingConfig(minibatch_size=10, lr=0.01, encoder_lr=0.01))
    bounds = [trainer.train_step() for _ in range(250)]
    seen = []
    last = trainer.fit(
        300, callback=lambda step, bound: seen.append((step, bound)), progress=False
    )
    bounds += [b for _, b in seen]
    assert [s for s, _ in seen] == list(range(251, 301))
    assert last == seen[-1][1]
    assert int(trainer.step.numpy()) == 300
    assert trainer.trace_count == 1
    assert np.all(np.isfinite(bounds))
    early, late = np.array(bounds[:60]), np.array(bounds[-60:])
    se = np.hypot(early.std(ddof=1), late.std(ddof=1)) / np.sqrt(60)
    assert late.mean() - early.mean() > 4 * se, (early.mean(), late.mean(), se)


# ----------------------------------------------------------------------------- natural gradients


def _rbf(X1, X2, variance, lengthscales):
    d = (X1[:, None, :] - X2[None, :, :]) / lengthscales
    return variance * np.exp(-0.5 * np.sum(d**2, -1))


def _optimal_whitened_naturals(X, Y, layer, noise_variance):
    """The optimal whitened q(v) of a single-layer sparse GP with a Gaussian likelihood, as
    natural parameters: precision I + A A^T / s2 and precision-times-mean A y / s2, with
    A = chol(Kmm + jitter I)^-1 Kmn."""
    Z = layer.Z.numpy()
    variance = layer.kernel.variance.numpy()
    lengthscales = layer.kernel.lengthscales.numpy()
    jitter = gpflow.config.default_jitter()
    Kmm = _rbf(Z, Z, variance, lengthscales) + jitter * np.eye(len(Z))
    A = np.linalg.solve(np.linalg.cholesky(Kmm), _rbf(Z, X, variance, lengthscales))
    precision = np.eye(len(Z)) + A @ A.T / noise_variance
    return precision, A @ Y / noise_variance


def _naturals(layer):
    L = layer.q_sqrt.numpy()[0]
    precision = np.linalg.inv(L @ L.T)
    return precision, precision @ layer.q_mu.numpy()


def test_natural_gradient_steps_interpolate_to_the_optimal_q_u():
    """With a Gaussian likelihood a natural-gradient step of size gamma moves the natural
    parameters of q(u) a fraction gamma of the way to the optimum. gamma = 0.5 halves every
    step (decay_steps = 1), so after two steps the remaining distance is 0.5 * 0.75; Adam's
    learning rate is 0 so the optimum stays put."""
    X, Y = toy_data(num_data=25, input_dim=2, seed=3)
    rng = np.random.default_rng(0)
    kernel = gpflow.kernels.SquaredExponential(variance=1.5, lengthscales=[0.9, 1.3])
    layer = GPLayer(kernel, rng.standard_normal((6, 2)))
    model = DeepGP([layer], gpflow.likelihoods.Gaussian(variance=0.1), num_data=25)
    config = TrainingConfig(minibatch_size=None, lr=0.0, gamma=0.5, gamma_decay=0.5, decay_steps=1)
    trainer = Trainer(model, X, Y, config, seed=0)
    assert not layer.q_mu.trainable and not layer.q_sqrt.trainable
    assert all(v is not layer.q_mu.unconstrained_variable for v in trainer.other_variables)
    target = _optimal_whitened_naturals(X, Y, layer, 0.1)
    start = _naturals(layer)
    q_mu_before = layer.q_mu.numpy().copy()

    trainer.train_step()
    assert not np.allclose(layer.q_mu.numpy(), q_mu_before)
    assert trainer.learning_rates()["gamma"] == pytest.approx(0.25)
    for remaining, step in ((0.5, 1), (0.5 * 0.75, 2)):
        if step == 2:
            trainer.train_step()
        for got, s, t in zip(_naturals(layer), start, target):
            expected = t + remaining * (s - t)
            np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6 * np.abs(t).max())
    assert trainer.trace_count == 1


# ----------------------------------------------------------------------------- exact SGD updates


def _noise_of_next_step(model, num_points):
    """The noise the next compiled step will draw: a copy of the model's generator."""
    state = model.rng.state.numpy()
    copy = tf.random.Generator.from_state(state, model.rng.algorithm)
    return model.draw_noise(num_points, model.num_importance_samples, copy)


def test_sgd_steps_move_parameters_by_the_learning_rate_times_the_gradient():
    """Plain SGD on both groups, full batch: each step adds lr x the gradient that
    bound_and_gradients gives for the same noise (the bound's for non-encoder parameters, DReG's
    for the encoder, clipped to [-c, c]); the second step's learning rates are decayed
    (staircase, decay_steps = 1). Keras keeps learning rates in float32, hence 1e-6 relative."""
    X, Y = toy_data(num_data=30, input_dim=1, seed=2, bimodal=True)
    model = _small_latent_model(X, Y)
    encoder_ids = {id(v) for v in model.encoder_variables}
    final = model.layers[-1]
    natgrad_ids = {id(final.q_mu.unconstrained_variable), id(final.q_sqrt.unconstrained_variable)}
    others = [
        v
        for v in model.trainable_variables
        if id(v) not in encoder_ids and id(v) not in natgrad_ids
    ]
    Xt, Yt = tf.constant(X), tf.constant(Y)

    def expected_gradients():
        noise = _noise_of_next_step(model, len(X))
        _, grads, enc = bound_and_gradients(model, Xt, Yt, "dreg", others, noise=noise)
        return [g.numpy() for g in grads], [g.numpy() for g in enc]

    grads, enc = expected_gradients()
    clip = float(np.median(np.abs(np.concatenate([g.ravel() for g in enc]))))
    config = TrainingConfig(
        estimator="dreg",
        minibatch_size=None,
        optimizer="sgd",
        encoder_optimizer="sgd",
        lr=0.01,
        encoder_lr=0.02,
        lr_decay=0.5,
        encoder_lr_decay=0.25,
        decay_steps=1,
        clip_encoder_grads=clip,
    )
    trainer = Trainer(model, X, Y, config)
    assert [id(v) for v in trainer.other_variables] == [id(v) for v in others]
    for step, (lr, encoder_lr) in enumerate(((0.01, 0.02), (0.005, 0.005))):
        if step == 1:
            grads, enc = expected_gradients()
        before = [v.numpy().copy() for v in others]
        enc_before = [v.numpy().copy() for v in model.encoder_variables]
        q_mu_before = final.q_mu.numpy().copy()
        trainer.train_step()
        for v, b, g in zip(others, before, grads):
            # float32 learning rate; float64 cancellation in v - b for tiny updates
            atol = 1e-6 * lr * np.abs(g).max() + 1e-14 * (np.abs(b).max() + 1.0)
            np.testing.assert_allclose(v.numpy() - b, lr * g, rtol=0, atol=atol)
        clipped = [np.clip(g, -clip, clip) for g in enc]
        assert any(np.any(np.abs(g) > clip) for g in enc)  # clipping is exercised
        for v, b, g in zip(model.encoder_variables, enc_before, clipped):
            atol = 1e-6 * encoder_lr * clip + 1e-14 * (np.abs(b).max() + 1.0)
            np.testing.assert_allclose(v.numpy() - b, encoder_lr * g, rtol=0, atol=atol)
        assert not np.allclose(final.q_mu.numpy(), q_mu_before)  # natural gradients ran
    rates = trainer.learning_rates()
    assert rates["lr"] == pytest.approx(0.01 * 0.5**2)
    assert rates["encoder_lr"] == pytest.approx(0.02 * 0.25**2)
    assert trainer.trace_count == 1


def test_adam_uses_the_epsilon_of_the_papers_runs():
    """TF1's AdamOptimizer (the paper's runs) has epsilon 1e-8; Keras defaults to 1e-7."""
    X, Y = toy_data(num_data=20, input_dim=1, seed=2)
    trainer = Trainer(_small_latent_model(X, Y), X, Y, TrainingConfig(estimator="reg"))
    assert trainer.optimizer.epsilon == 1e-8
    assert trainer.encoder_optimizer.epsilon == 1e-8


# ----------------------------------------------------------------------------- options


def test_assert_no_nans_passes_healthy_steps_and_stops_on_nans():
    X, Y = toy_data(num_data=30, input_dim=1, seed=4)
    model = _small_latent_model(X, Y)
    # without natural gradients, whose gpflow Parameter.assign refuses NaNs on its own
    config = TrainingConfig(
        minibatch_size=10,
        encoder_minibatch_size=5,
        assert_no_nans=True,
        estimator="stl",
        use_nat_grad_for_final_layer=False,
    )
    trainer = Trainer(model, X, Y, config)
    assert trainer.encoder_batches is not None and trainer.encoder_batches.batch_size == 5
    for _ in range(5):
        assert np.isfinite(trainer.train_step())
    W = model.layers[0].encoder.weights[0]
    W.unconstrained_variable.assign(np.full(W.shape, np.nan))
    with pytest.raises(tf.errors.InvalidArgumentError, match="not finite"):
        trainer.train_step()


def test_without_assert_no_nans_a_nan_step_does_not_raise():
    X, Y = toy_data(num_data=20, input_dim=1, seed=4)
    layer = GPLayer(gpflow.kernels.SquaredExponential(), X[:5])
    model = DeepGP([layer], gpflow.likelihoods.Gaussian(0.1), num_data=20)
    # (without natural gradients: gpflow's Parameter.assign in the natural-gradient update
    # refuses NaNs on its own)
    config = TrainingConfig(minibatch_size=None, use_nat_grad_for_final_layer=False)
    trainer = Trainer(model, X, Y, config)
    layer.kernel.lengthscales.unconstrained_variable.assign(np.nan)
    assert np.isnan(trainer.train_step())


def _run(seed_model, seed_trainer, steps=15):
    X, Y = toy_data(num_data=30, input_dim=1, seed=5)
    model = _small_latent_model(X, Y, seed=seed_model)
    config = TrainingConfig(minibatch_size=7, estimator="dreg")
    trainer = Trainer(model, X, Y, config, seed=seed_trainer)
    bounds = [trainer.train_step() for _ in range(steps)]
    return bounds, [v.numpy() for v in model.variables]


def test_same_seed_same_results():
    bounds_a, values_a = _run(3, 7)
    bounds_b, values_b = _run(3, 7)
    assert bounds_a == bounds_b
    for a, b in zip(values_a, values_b):
        np.testing.assert_array_equal(a, b)
    bounds_c, _ = _run(3, 8)  # another minibatch order
    assert bounds_c != bounds_a


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(estimator="dreg2"), r"unknown estimator 'dreg2'; known estimators: reg, stl, dreg"),
        (dict(estimator=""), r"unknown estimator ''"),
        (dict(optimizer="rmsprop"), r"unknown optimizer 'rmsprop'"),
        (dict(encoder_optimizer="adagrad"), r"unknown encoder_optimizer 'adagrad'"),
        (dict(minibatch_size=0), r"minibatch_size must be at least 1"),
        (dict(encoder_minibatch_size=-3), r"encoder_minibatch_size must be at least 1"),
    ],
)
def test_bad_training_configurations_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TrainingConfig(**kwargs)


def test_trainer_rejects_estimators_the_model_does_not_support():
    X, Y = toy_data(num_data=20, input_dim=1, seed=6)
    vi_model = build_model("L1", X, Y, mode="VI", M=5, encoder_dims=(4,))
    for estimator in ("stl", "dreg"):
        with pytest.raises(ValueError, match=f"estimator '{estimator}' needs importance weights"):
            Trainer(vi_model, X, Y, TrainingConfig(estimator=estimator))
    late = build_model("G3_L1", X, Y, M=5, encoder_dims=(4,))
    with pytest.raises(
        ValueError,
        match="'dreg' needs the latent-variable layer first.*layer 1 is a latent-variable layer",
    ):
        Trainer(late, X, Y, TrainingConfig(estimator="dreg"))


# ----------------------------------------------------------------------------- update draws


def _draws(update_draws, n=300):
    """n gradient draws at fixed parameters on one minibatch: per draw, the first entry of the
    final layer's q_mu gradient (natural-gradient update), of the hidden layer's q_mu gradient
    (Adam update) and of the encoder's first kernel (encoder update)."""
    X, Y = toy_data(num_data=30, input_dim=1, seed=3, bimodal=True)
    model = latent_model("L1_G1", X, Y, M=6, encoder_dims=(4,), num_importance_samples=4, seed=2)
    trainer = Trainer(model, X, Y, TrainingConfig(minibatch_size=None, update_draws=update_draws))
    adam_index = next(
        i for i, v in enumerate(trainer.other_variables) if "q_mu" in v.name
    )  # the hidden layer's q_mu
    X, Y = tf.constant(X), tf.constant(Y)
    gradients = tf.function(trainer.gradients)  # one trace: the draws come from the generator
    out = []
    for _ in range(n):
        _, grads, encoder_grads = gradients(X, Y)
        nat = grads[len(trainer.other_variables)]
        out.append(
            [
                float(tf.reshape(nat, [-1])[0]),
                float(tf.reshape(grads[adam_index], [-1])[0]),
                float(tf.reshape(encoder_grads[0], [-1])[0]),
            ]
        )
    return np.array(out)


def test_independent_update_draws_decorrelate_the_three_updates_and_keep_their_means():
    """Shared draws: the natural-gradient, Adam and encoder gradients of one step come from one
    propagation, so they are correlated across draws; independent draws (the reference's three
    objectives): each update has its own noise, the correlations vanish within their standard
    error (1/sqrt(n) under independence), and the means agree with the shared ones within
    4 combined standard errors."""
    n = 300
    shared, independent = _draws("shared", n), _draws("independent", n)
    bound = 4 / np.sqrt(n)
    corr_shared, corr_independent = np.corrcoef(shared.T), np.corrcoef(independent.T)
    pairs = [(0, 1), (0, 2), (1, 2)]
    assert max(abs(corr_shared[i, j]) for i, j in pairs) > bound, corr_shared
    for i, j in pairs:
        assert abs(corr_independent[i, j]) < bound, (i, j, corr_independent)
    se = np.hypot(shared.std(0, ddof=1), independent.std(0, ddof=1)) / np.sqrt(n)
    assert np.all(np.abs(shared.mean(0) - independent.mean(0)) < 4 * se)


def test_update_draws_are_checked_by_name():
    with pytest.raises(ValueError, match="unknown update_draws 'paired'; known: shared, indep"):
        TrainingConfig(update_draws="paired")
