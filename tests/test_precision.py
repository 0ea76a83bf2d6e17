"""Mixed precision (dgp_snr.precision) against float64 on the same model, noise and batch: the
bound, every gradient, the marginal variances, SNR estimates, and (slow) a training run.

Tolerances come from float32's unit roundoff u = 2⁻²⁴ ≈ 6e-8: one float32 product over M = 128
terms has a relative error of about u sqrt(M) ≈ 7e-7 (rounding errors add like a random walk),
and a gradient that sums such products over B x K rows keeps that relative size unless terms
cancel. DReG's weights square the normalised importance weights, which doubles the relative
error of the log-weight differences; the largest measured (L1_G5, winered, K = 50, batch 64) is
6e-6, so RTOL = 1e-5 is the issue's ~1e-5 with a margin of 2 over the worst measured case.
"""

import json

import gpflow
import numpy as np
import pytest
import tensorflow as tf
from helpers import needs_shared, random_lower_triangular, randomise_final_layer, toy_data

from dgp_snr.builder import build_model
from dgp_snr.conditionals import whitened_marginals
from dgp_snr.gradients import EncoderGradientSampler, bound_and_gradients, snr
from dgp_snr.precision import (
    FLOAT64,
    MIXED,
    PRECISIONS,
    get_precision,
    input_gradients_only,
    input_gradients_only_active,
)
from dgp_snr.runs import CONFIG_FILE, RunConfig, build_run, load_config
from dgp_snr.seeds import Stream, generator

U32 = 2.0**-24  # float32 unit roundoff
RTOL = 1e-5  # see the module docstring


# ----------------------------------------------------------------------------- the policy


def test_precision_names_and_errors():
    assert PRECISIONS == ("float64", "mixed")
    assert get_precision(None) is FLOAT64 and get_precision("mixed") == MIXED
    assert get_precision(MIXED) is MIXED
    assert MIXED.mixed and not FLOAT64.mixed
    with pytest.raises(ValueError, match="known precisions: float64, mixed"):
        get_precision("float16")
    X, Y = toy_data(num_data=20)
    with pytest.raises(ValueError, match="unknown precision 'half'"):
        build_model("L1", X, Y, M=5, precision="half")


def test_run_config_carries_the_precision_and_old_folders_read_as_float64(tmp_path):
    assert RunConfig().model.precision == "float64"
    # config.json as versions before the setting wrote it: flat, the reference's names
    flat = RunConfig.from_flat(dataset="winered").to_flat(reference_names=True)
    old = {k: v for k, v in flat.items() if k != "precision"}
    (tmp_path / CONFIG_FILE).write_text(json.dumps(old))
    assert load_config(tmp_path).model.precision == "float64"
    assert RunConfig.from_dict({"precision": "mixed"}).model.precision == "mixed"
    config = RunConfig.from_flat(
        dataset="demo_normalized", configuration="L1", M=8, precision="mixed"
    )
    model, _, _ = build_run(config)
    assert model.precision == "mixed"


def test_precision_changes_no_parameter_and_checkpoints_interchange(tmp_path):
    X, Y = toy_data(num_data=30)
    m64 = build_model("L1_G3", X, Y, M=8, encoder_dims=(4,), seed=3)
    mixed = build_model("L1_G3", X, Y, M=8, encoder_dims=(4,), seed=3, precision="mixed")
    assert m64.precision == "float64" and mixed.precision == "mixed"
    # TensorFloat-32 (GPUs) would round the float32 products to 10-bit mantissas
    assert not tf.config.experimental.tensor_float_32_execution_enabled()
    assert [v.name for v in m64.variables] == [v.name for v in mixed.variables]
    randomise_final_layer(m64)
    path = tf.train.Checkpoint(model=m64).save(str(tmp_path / "ckpt"))
    tf.train.Checkpoint(model=mixed).restore(path).assert_existing_objects_matched()
    for a, b in zip(m64.variables, mixed.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


# ----------------------------------------------------------------------------- conditionals


def test_mixed_marginals_keep_small_variances_accurate_and_positive():
    """At the inducing inputs themselves k(x, x) - aᵀa is ~jitter: the float64 cancellation keeps
    those variances, and the float32 sum of squares is relative to itself (error <= ~u sqrt(M)
    of ||Sᵀa||² <= var), so each variance has a relative error below RTOL and stays > 0."""
    rng = np.random.default_rng(0)
    M, D, L = 32, 3, 4
    kernel = gpflow.kernels.SquaredExponential(lengthscales=np.full(D, 1.5))
    Z = tf.constant(rng.standard_normal((M, D)))
    X = tf.concat([Z, tf.constant(rng.standard_normal((50, D)))], 0)
    q_mu = tf.constant(rng.standard_normal((M, L)))
    for scale in (1e-5, 0.3, 1.0):  # the builder's hidden-layer init, a random S, the final init
        q_sqrt = tf.constant(np.stack([random_lower_triangular(rng, M, scale) for _ in range(L)]))
        if scale != 0.3:
            q_sqrt = tf.constant(np.tile(np.eye(M)[None] * scale, [L, 1, 1]))
        m64, v64 = whitened_marginals(kernel, Z, X, q_mu, q_sqrt)
        m32, v32 = whitened_marginals(kernel, Z, X, q_mu, q_sqrt, MIXED)
        assert m32.dtype == v32.dtype == tf.float64
        assert np.all(v32.numpy() > 0)
        np.testing.assert_allclose(v32, v64, rtol=RTOL, atol=0)
        # mean: a float32 projection, error ~u sqrt(M) of Σ|a_m q_mu,m| <= ||a|| ||q_mu||
        atol = U32 * np.sqrt(M) * np.linalg.norm(q_mu.numpy(), axis=0)
        assert np.all(np.abs(m32.numpy() - m64.numpy()) <= atol)


def _marginal_gradients(kernel, Z, X, q_mu, q_sqrt, precision, coefficients, inputs_only=False):
    """Gradients of Σ c_mean ⊙ mean + Σ c_var ⊙ var in (X, Z, q_mu, q_sqrt, kernel parameters)."""
    sources = [X, Z, q_mu, q_sqrt, *kernel.trainable_variables]
    with tf.GradientTape() as tape:
        tape.watch([X, Z, q_mu, q_sqrt])
        if inputs_only:
            with input_gradients_only():
                assert input_gradients_only_active()
                mean, var = whitened_marginals(kernel, Z, X, q_mu, q_sqrt, precision)
        else:
            mean, var = whitened_marginals(kernel, Z, X, q_mu, q_sqrt, precision)
        loss = tf.reduce_sum(coefficients[0] * mean) + tf.reduce_sum(coefficients[1] * var)
    return [g.numpy() for g in tape.gradient(loss, sources)]


def _lm_condition(kernel, Z) -> float:
    """κ(Lm) = ||Lm|| ||Lm⁻¹|| (2-norms) of chol(Kmm + jitter I)."""
    Kmm = kernel(Z).numpy() + gpflow.config.default_jitter() * np.eye(Z.shape[0])
    return float(np.sqrt(np.linalg.cond(Kmm)))


@pytest.mark.parametrize("kernel_class", ["SquaredExponential", "Matern32"])
@pytest.mark.parametrize("conditioning", ["random", "near_duplicate_Z"])
def test_mixed_marginal_gradients_agree_with_float64(kernel_class, conditioning):
    """The hand-written backward passes of the mixed path (dgp_snr.conditionals) against float64
    autodiff, for the builder's kernel (squared exponential, its own fused pass) and another
    (the generic pass), with a well-conditioned Kmm and with two inducing inputs 1e-3 apart.

    Every gradient comes from float64 solves and float32 products (∂A, ∂q_mu, ∂G), so each
    entry is within RTOL of itself plus U32 times its parameter's gradient norm (the float32
    rounding of the products it sums), in both modes and even at κ(Kmm) ~ 1e7: entry by entry,
    because rounding ∂Kmn or ∂Lm to float32 leaves the norms nearly intact but spoils the small
    entries (measured on a trained model: inducing-input gradients off by 3.5 times their Monte
    Carlo noise). The one exception is the input gradient (X) inside input_gradients_only(),
    where the squared-exponential path multiplies by a float32 Lm⁻¹: a product with an explicit
    inverse is accurate to ~u κ(Lm) (u = U32) relative in norm, so that is its tolerance, with a
    factor 4 for the sums of M terms around it."""
    rng = np.random.default_rng(7)
    M, D, L, N = 24, 3, 4, 300
    kernel = getattr(gpflow.kernels, kernel_class)(
        variance=1.7, lengthscales=rng.uniform(0.7, 1.5, D)
    )
    Z = rng.standard_normal((M, D))
    if conditioning == "near_duplicate_Z":
        Z[1] = Z[0] + 1e-3 * rng.standard_normal(D)
    Z, X = tf.constant(Z), tf.constant(rng.standard_normal((N, D)))
    q_mu = tf.constant(rng.standard_normal((M, L)))
    q_sqrt = tf.constant(np.stack([random_lower_triangular(rng, M, 0.3) for _ in range(L)]))
    coefficients = (rng.standard_normal((N, L)), rng.standard_normal((N, L)))
    args = (kernel, Z, X, q_mu, q_sqrt)
    reference = _marginal_gradients(*args, FLOAT64, coefficients)
    names = ["X", "Z", "q_mu", "q_sqrt"] + [v.name for v in kernel.trainable_variables]
    kappa = _lm_condition(kernel, Z)
    assert kappa > (1e3 if conditioning == "near_duplicate_Z" else 1.0)
    for inputs_only in (False, True):
        mixed = _marginal_gradients(*args, MIXED, coefficients, inputs_only)
        for name, a, b in zip(names, reference, mixed):
            if name == "X" and inputs_only and kernel_class == "SquaredExponential":
                err, bound = np.linalg.norm(b - a), 4.0 * U32 * kappa * np.linalg.norm(a)
            else:
                err, bound = np.abs(b - a), RTOL * np.abs(a) + U32 * np.linalg.norm(a)
            worst = np.argmax(err - bound)
            assert np.all(err <= bound), (
                f"{name} (inputs_only={inputs_only}): {np.ravel(err)[worst]:.3g} > "
                f"{np.ravel(bound)[worst]:.3g}"
            )
    assert not input_gradients_only_active()


def test_input_gradients_only_is_scoped():
    assert not input_gradients_only_active()
    with pytest.raises(RuntimeError, match="inside"):
        with input_gradients_only():
            assert input_gradients_only_active()
            raise RuntimeError("inside")
    assert not input_gradients_only_active()


# ----------------------------------------------------------------------------- the paper's model


def _pair(dataset_X, dataset_Y, randomise: bool):
    """The same L1_G5 model (M = 128, K = 50) in float64 and in mixed precision."""
    models = [
        build_model(
            "L1_G5",
            dataset_X,
            dataset_Y,
            num_importance_samples=50,
            M=128,
            seed=0,
            precision=precision,
        )
        for precision in PRECISIONS
    ]
    if randomise:
        rng = np.random.default_rng(1)
        values = {}
        for i, layer in enumerate(models[0].gp_layers):
            M, L = layer.q_mu.shape
            values[i] = (
                rng.standard_normal((M, L)),
                np.stack([random_lower_triangular(rng, M, 0.3) for _ in range(L)]),
                layer.Z.numpy() + 0.1 * rng.standard_normal(layer.Z.shape),
                layer.kernel.lengthscales.numpy() * rng.uniform(0.5, 1.5, (layer.Z.shape[1],)),
            )
        for model in models:
            for i, layer in enumerate(model.gp_layers):
                q_mu, q_sqrt, Z, lengthscales = values[i]
                layer.q_mu.assign(q_mu)
                layer.q_sqrt.assign(q_sqrt)
                layer.Z.assign(Z)
                layer.kernel.lengthscales.assign(lengthscales)
    return models


@pytest.fixture(scope="module")
def winered():
    from dgp_snr.data import get_regression_data

    return get_regression_data("winered", 0)


@needs_shared
@pytest.mark.parametrize("randomise", [False, True], ids=["init", "random"])
def test_mixed_bound_and_gradients_agree_with_float64(winered, randomise):
    """L1_G5 on winered, batch 64, K = 50, one noise draw shared by both precisions: the bound,
    the gradient of every non-encoder parameter and the encoder's REG and DReG gradients agree
    to RTOL (module docstring), per parameter. Where the float64 gradient is exactly 0 (at
    initialisation the final layer ignores its input, q_mu = 0, S = I), float64 cancels
    aᵀ(S Sᵀ - I)a exactly and mixed leaves the float32 rounding of ||Sᵀa||²: at most u times
    the whole gradient's norm. The variances stay positive."""
    m64, mixed = _pair(winered.X_train, winered.Y_train, randomise)
    X, Y = tf.constant(winered.X_train[:64]), tf.constant(winered.Y_train[:64])
    noise = m64.draw_noise(64, 50)
    for estimator in ("reg", "dreg"):
        results = [
            bound_and_gradients(m, X, Y, estimator, m.non_encoder_variables, noise=noise)
            for m in (m64, mixed)
        ]
        (b64, g64, e64), (b32, g32, e32) = results
        np.testing.assert_allclose(b32, b64, rtol=RTOL * 1e-2)  # a sum of B x K log weights
        grads64, grads32 = g64 + e64, g32 + e32
        total = np.sqrt(sum(np.sum(g.numpy() ** 2) for g in grads64))
        names = [v.name for v in m64.non_encoder_variables + m64.encoder_variables]
        for name, a, b in zip(names, grads64, grads32):
            err = np.linalg.norm(b.numpy() - a.numpy())
            bound = RTOL * np.linalg.norm(a.numpy()) + U32 * total
            assert err <= bound, f"{estimator} {name}: |Δ| {err:.3g} > {bound:.3g}"
    for m in (m64, mixed):
        prop = m.propagate(X, Y, noise=noise)
        assert np.all(prop.f_var.numpy() > 0)
    f64 = m64.propagate(X, Y, noise=noise).f_var.numpy()
    f32 = mixed.propagate(X, Y, noise=noise).f_var.numpy()
    np.testing.assert_allclose(f32, f64, rtol=RTOL)
    hidden = mixed.gp_layers[0]
    H = tf.concat([tf.tile(X[:, None], [1, 50, 1]), 0.5 * noise[0]], -1)
    assert np.all(hidden.marginals(H)[1].numpy() > 0)


@needs_shared
def test_mixed_snr_agrees_with_float64_within_monte_carlo_error():
    """Figure 1's setting (demo_normalized, L1, one data point, REG and DReG) with a random final
    layer: with independent noise, each precision's mean SNR over the encoder's entries agrees
    within 4 standard errors; with shared noise, to float32 rounding.

    Standard error of one entry's SNR from R estimates (delta method, Gaussian gradients):
    sqrt((1 + SNR²/2) / R); the mean over entries has a standard error no larger than the mean
    of the entries' (they are correlated, not independent), and the difference of two
    independent estimates has sqrt(2) times that.

    With shared noise the sampler's mixed path differs from float64 only by its float32 input
    gradient (input_gradients_only): each estimate within 4 u κ(Lm) relative, as in
    test_mixed_marginal_gradients_agree_with_float64, and every entry's SNR within a tenth of
    its Monte Carlo standard error, so the rounding cannot move any conclusion."""
    from dgp_snr.data import get_regression_data

    data = get_regression_data("demo_normalized", 0)
    models = [
        build_model(
            "L1", data.X_train, data.Y_train, num_importance_samples=50, M=128, precision=p
        )
        for p in PRECISIONS
    ]
    for m in models:
        randomise_final_layer(m, seed=5)
    samplers = [EncoderGradientSampler(m, data.X_train[:1], data.Y_train[:1]) for m in models]
    final = models[0].layers[-1]
    kappa = _lm_condition(final.kernel, final.Z)
    R = 1000
    for estimator in ("reg", "dreg"):
        for K in (1, 10, 100):
            rngs = [generator(s, Stream.GRADIENTS) for s in (11, 12)]
            draws = [s.sample(K, R, estimator, rng=g) for s, g in zip(samplers, rngs)]
            ratios = [np.concatenate([snr(v).ravel() for v in d.values()]) for d in draws]
            se = np.mean(np.sqrt((1.0 + ratios[0] ** 2 / 2.0) / R))
            gap = abs(ratios[1].mean() - ratios[0].mean())
            assert gap <= 4.0 * np.sqrt(2.0) * se, f"{estimator} K={K}: {gap:.3g} vs SE {se:.3g}"
            # shared noise: the same estimates up to rounding
            noise = models[0].draw_noise(R, K, tf.random.Generator.from_seed(13))
            same = [s.sample(K, R, estimator, noise=noise) for s in samplers]
            for name in same[0]:
                a, b = same[0][name], same[1][name]
                assert np.linalg.norm(b - a) <= 4.0 * U32 * kappa * np.linalg.norm(a), name
                entry_se = np.sqrt((1.0 + snr(a) ** 2 / 2.0) / R)
                assert np.all(np.abs(snr(b) - snr(a)) <= 0.1 * entry_se), name


# ----------------------------------------------------------------------------- training


@pytest.mark.slow
@needs_shared
def test_training_in_each_precision_ends_at_the_same_elbo(winered):
    """2,000 iterations (L1_G5, winered, K = 10, batch 64, M = 64, DReG) in each precision from
    the same initialisation and seeds. The two runs part at float32 rounding and then follow
    different minibatch-noise paths, so the yardstick is the Monte Carlo noise of training: a
    float64 run with another seed. Full-data ELBOs are means of 10 independent estimates, with
    standard errors from their spread; the mixed run must lie within 4 combined standard errors
    plus 3 times the seed-to-seed gap of float64."""
    from dgp_snr.training import Trainer, TrainingConfig

    def run(precision, seed):
        model = build_model(
            "L1_G5",
            winered.X_train,
            winered.Y_train,
            num_importance_samples=10,
            M=64,
            estimator="dreg",
            seed=0,
            precision=precision,
        )
        trainer = Trainer(
            model,
            winered.X_train,
            winered.Y_train,
            TrainingConfig(estimator="dreg", minibatch_size=64),
            seed=seed,
        )
        model.rng.reset_from_seed(seed)
        trainer.fit(2000, progress=False)
        X, Y = tf.constant(winered.X_train), tf.constant(winered.Y_train)
        elbo = tf.function(lambda: model.elbo(X, Y, num_importance_samples=50))
        values = np.array([float(elbo()) for _ in range(10)])
        return values.mean(), values.std(ddof=1) / np.sqrt(len(values))

    (e64, s64), (e32, s32), (other, _) = (
        run("float64", 0),
        run("mixed", 0),
        run("float64", 1),
    )
    assert np.isfinite([e64, e32, other]).all()
    tolerance = 4.0 * np.hypot(s64, s32) + 3.0 * abs(e64 - other)
    print(f"ELBO float64 {e64:.2f} ± {s64:.2f}, mixed {e32:.2f} ± {s32:.2f}, seed 1 {other:.2f}")
    assert abs(e32 - e64) <= tolerance, (e64, e32, other, s64, s32)
