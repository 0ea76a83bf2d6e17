"""Whitened sparse-GP conditionals for inputs that carry an extra sample axis.

Given inducing inputs Z [M, D_in], a (shared) kernel, and whitened q(v) = N(q_mu, q_sqrt q_sqrtᵀ)
for L independent latent GPs (u = chol(Kmm) v), these return the marginals of q(f(X)), or the
covariance over the K samples of each point for a single-output GP.
"""

from typing import Optional, Sequence, Tuple

import gpflow
import tensorflow as tf
from check_shapes import check_shapes

from dgp_snr.precision import Precision, input_gradients_only_active


def _cholesky_kmm(kernel: gpflow.kernels.Kernel, Z: tf.Tensor) -> tf.Tensor:
    """chol(Kmm + jitter I) [M, M] for inducing inputs Z [M, D_in]."""
    Kmm = kernel(Z) + gpflow.config.default_jitter() * tf.eye(
        tf.shape(Z)[0], dtype=gpflow.config.default_float()
    )
    return tf.linalg.cholesky(Kmm)


def _projection(kernel: gpflow.kernels.Kernel, Z: tf.Tensor, X: tf.Tensor) -> tf.Tensor:
    """A = chol(Kmm)⁻¹ Kmn, the whitened projection [M, N] of X [N, D_in]."""
    return tf.linalg.triangular_solve(_cholesky_kmm(kernel, Z), kernel(Z, X), lower=True)


@tf.custom_gradient
def diag_quadratic_forms(P: tf.Tensor, A: tf.Tensor):
    """diag(Aᵀ P_l A) for symmetric P [L, M, M] and A [M, N], as [L, N].

    The hand-written gradient reuses Q = P A from the forward pass: ∂/∂A = 2 Q g, so the
    backward pass needs one large product (for ∂/∂P = A diag(g) Aᵀ) where autodiff needs two.
    """
    L, M = tf.shape(P)[0], tf.shape(P)[1]
    N = tf.shape(A)[1]
    Q = tf.reshape(tf.linalg.matmul(tf.reshape(P, [L * M, M]), A), [L, M, N])  # one GEMM
    forms = tf.reduce_sum(A[None] * Q, 1)  # [L, N]

    def grad(g: tf.Tensor):  # g: [L, N]
        gA = tf.reshape(A[None] * g[:, None, :], [L * M, N])
        dP = tf.reshape(tf.linalg.matmul(gA, A, transpose_b=True), [L, M, M])  # one GEMM
        dA = 2.0 * tf.reduce_sum(Q * g[:, None, :], 0)  # [M, N]
        return dP, dA

    return forms, grad


def _mixed_forward(Lm: tf.Tensor, Kmn: tf.Tensor, q_mu: tf.Tensor, G: tf.Tensor):
    """The forward pass of the mixed path: A = Lm⁻¹ Kmn and aᵀa in float64, the mean and the
    forms on a float32 copy of A. Returns (mean, forms, aa) and what the backward pass reuses."""
    L, M, N = tf.shape(G)[0], tf.shape(G)[1], tf.shape(Kmn)[1]
    A = tf.linalg.triangular_solve(Lm, Kmn, lower=True)  # [M, N], float64
    A32, q_mu32 = tf.cast(A, tf.float32), tf.cast(q_mu, tf.float32)
    mean = tf.linalg.matmul(A32, q_mu32, transpose_a=True)  # [N, L]
    Q = tf.linalg.matmul(tf.reshape(tf.cast(G, tf.float32), [L * M, M]), A32)
    Q = tf.reshape(Q, [L, M, N])  # G_l a for every l and row
    forms = tf.reduce_sum(A32[None] * Q, 1)  # [L, N]
    aa = tf.reduce_sum(tf.square(A), 0)  # [N], float64: it cancels against k(x, x)
    outputs = (tf.cast(mean, tf.float64), tf.cast(forms, tf.float64), aa)
    return outputs, (A, A32, Q, q_mu32)


def _mixed_backward(Lm: tf.Tensor, saved: tuple, upstream: Sequence[Optional[tf.Tensor]]):
    """The backward pass of _mixed_forward from the upstream gradients of (mean, forms, aa).

    Returns ∂A [M, N] (float32), ∂Kmn = Lm⁻ᵀ ∂A [M, N] by a float64 triangular solve, and
    ∂Lm = -tril(∂Kmn Aᵀ), ∂q_mu, ∂G (float64). ∂A, ∂q_mu and ∂G are float32 products."""
    A, A32, Q, q_mu32 = saved
    L, M, N = tf.shape(Q)[0], tf.shape(Q)[1], tf.shape(Q)[2]
    zeros = (tf.zeros([N, L], tf.float32), tf.zeros([L, N], tf.float32), tf.zeros([N], tf.float32))
    g_mean, g_forms, g_aa = (
        z if g is None else tf.cast(g, tf.float32) for g, z in zip(upstream, zeros)
    )
    dA = (
        tf.linalg.matmul(q_mu32, g_mean, transpose_b=True)
        + 2.0 * tf.reduce_sum(Q * g_forms[:, None, :], 0)
        + 2.0 * A32 * g_aa[None]
    )  # [M, N]
    dKmn = tf.linalg.triangular_solve(Lm, tf.cast(dA, tf.float64), lower=True, adjoint=True)
    # float64: ∂Lm reaches Z through Kmm's Cholesky, which amplifies its rounding by cond(Kmm);
    # in float32 the small inducing-input gradients of a trained model (demo, L1) were off by up
    # to 3.5 times their Monte Carlo noise.
    dLm = -tf.linalg.band_part(tf.linalg.matmul(dKmn, A, transpose_b=True), -1, 0)
    dq_mu = tf.linalg.matmul(A32, g_mean)  # [M, L]
    gA = tf.reshape(A32[None] * g_forms[:, None, :], [L * M, N])
    dG = tf.reshape(tf.linalg.matmul(gA, A32, transpose_b=True), [L, M, M])
    return dA, dKmn, dLm, tf.cast(dq_mu, tf.float64), tf.cast(dG, tf.float64)


@tf.custom_gradient
def mixed_projected_moments(Lm: tf.Tensor, Kmn: tf.Tensor, q_mu: tf.Tensor, G: tf.Tensor):
    """The mixed-precision path for any kernel: from Lm = chol(Kmm) [M, M], Kmn [M, N],
    q_mu [M, L] and G_l = S_l S_lᵀ [L, M, M] (float64), the float64 tensors

        mean [N, L] = Aᵀ q_mu,   forms [L, N] = aᵀ G_l a,   aa [N] = aᵀa,   A = Lm⁻¹ Kmn.

    A, aᵀa and the solves are float64, the products float32 (see dgp_snr.precision)."""
    outputs, saved = _mixed_forward(Lm, Kmn, q_mu, G)

    def grad(*upstream: tf.Tensor):
        _, dKmn, dLm, dq_mu, dG = _mixed_backward(Lm, saved, upstream)
        return dLm, dKmn, dq_mu, dG

    return outputs, grad


def _se_backward(W: tf.Tensor, Zs: tf.Tensor, Xs: tf.Tensor):
    """∂Zs [M, D] and ∂Xs [N, D] of r² = ||zs - xs||² through Kmn = σ² exp(-r²/2), given
    W = ∂Kmn ⊙ Kmn [M, N] (all in W's dtype)."""
    dZs = tf.linalg.matmul(W, Xs) - tf.reduce_sum(W, 1)[:, None] * Zs
    dXs = tf.linalg.matmul(W, Zs, transpose_a=True) - tf.reduce_sum(W, 0)[:, None] * Xs
    return dZs, dXs


def mixed_se_projected_moments(
    Lm: tf.Tensor,
    Z: tf.Tensor,
    X: tf.Tensor,
    lengthscales: tf.Tensor,
    variance: tf.Tensor,
    q_mu: tf.Tensor,
    G: tf.Tensor,
    float32_input_gradients: bool = False,
):
    """mixed_projected_moments for a squared-exponential kernel on Z [M, D] and X [N, D],
    Kmn = σ² exp(-||z - x||²_ℓ / 2), with the kernel's backward pass written out: one pass over
    W = ∂Kmn ⊙ Kmn [M, N] instead of autodiff's several.

    `float32_input_gradients` (see dgp_snr.precision.input_gradients_only) takes the gradient
    in X from a float32 ∂Kmn = Lm⁻ᵀ ∂A (a GEMM with an explicit Lm⁻¹) instead of the float64
    triangular solve. Every parameter's gradient (Z, ℓ, σ², through Lm) comes from the float64
    solve either way; a compiled graph that needs only ∂X prunes that solve."""

    @tf.custom_gradient
    def moments(Lm, Z, X, lengthscales, variance, q_mu, G):
        Zs, Xs = Z / lengthscales, X / lengthscales
        # log Kmn = log σ² - |zs|²/2 - |xs|²/2 + zs·xs: one GEMM with two extra columns, then
        # one exp, instead of gpflow's five passes over [M, N] (the same expansion of r²).
        ones_m, ones_n = tf.ones_like(Zs[:, :1]), tf.ones_like(Xs[:, :1])
        half_z2 = 0.5 * tf.reduce_sum(tf.square(Zs), 1, keepdims=True)
        half_x2 = 0.5 * tf.reduce_sum(tf.square(Xs), 1, keepdims=True)
        Z_aug = tf.concat([Zs, tf.math.log(variance) * ones_m - half_z2, ones_m], 1)
        X_aug = tf.concat([Xs, ones_n, -half_x2], 1)
        Kmn = tf.exp(tf.linalg.matmul(Z_aug, X_aug, transpose_b=True))  # [M, N]
        outputs, saved = _mixed_forward(Lm, Kmn, q_mu, G)

        def grad(*upstream: tf.Tensor):
            dA, dKmn, dLm, dq_mu, dG = _mixed_backward(Lm, saved, upstream)
            W = dKmn * Kmn  # [M, N]
            dZs, dXs = _se_backward(W, Zs, Xs)
            # Zs = Z / ℓ, Xs = X / ℓ: ∂ℓ = -(Σ ∂Zs ⊙ Zs + Σ ∂Xs ⊙ Xs) / ℓ, per input dimension
            dscaled = tf.reduce_sum(dZs * Zs, 0) + tf.reduce_sum(dXs * Xs, 0)  # [D]
            dlengthscales = (
                tf.reshape(
                    -tf.reduce_sum(tf.reshape(dscaled, [-1, tf.size(lengthscales)]), 0),
                    tf.shape(lengthscales),
                )
                / lengthscales
            )
            if float32_input_gradients:
                eye = tf.eye(tf.shape(Lm)[0], dtype=tf.float64)
                Lm_inv = tf.cast(tf.linalg.triangular_solve(Lm, eye, lower=True), tf.float32)
                W32 = tf.linalg.matmul(Lm_inv, dA, transpose_a=True) * tf.cast(Kmn, tf.float32)
                _, dXs32 = _se_backward(W32, tf.cast(Zs, tf.float32), tf.cast(Xs, tf.float32))
                dXs = tf.cast(dXs32, tf.float64)
            dvariance = tf.reduce_sum(W) / variance
            return dLm, dZs / lengthscales, dXs / lengthscales, dlengthscales, dvariance, dq_mu, dG

        return outputs, grad

    return moments(Lm, Z, X, lengthscales, variance, q_mu, G)


@check_shapes(
    "Z: [M, D_in]",
    "X: [N, D_in]",
    "q_mu: [M, L]",
    "q_sqrt: [L, M, M]",
    "return[0]: [N, L]",
    "return[1]: [N, L]",
)
def whitened_marginals(
    kernel: gpflow.kernels.Kernel,
    Z: tf.Tensor,
    X: tf.Tensor,
    q_mu: tf.Tensor,
    q_sqrt: tf.Tensor,
    precision: Optional[Precision] = None,
) -> Tuple[tf.Tensor, tf.Tensor]:
    """Marginal mean and variance [N, L] of L latent GPs that share `kernel` and `Z`.

    All L GPs reuse one projection A [M, N], so the work is a few large products rather than L
    small conditionals: var_l = k(x, x) + aᵀ (S_l S_lᵀ - I) a. With a mixed `precision`
    (dgp_snr.precision) the mean projection and the sums of squares ||S_lᵀ a||² run in float32
    and var_l = (k(x, x) - aᵀa) + ||S_lᵀ a||², the cancellation in float64.
    """
    if precision is not None and precision.mixed:
        return _mixed_marginals(kernel, Z, X, q_mu, q_sqrt)
    A = _projection(kernel, Z, X)  # [M, N]
    mean = tf.linalg.matmul(A, q_mu, transpose_a=True)  # [N, L]
    eye = tf.eye(tf.shape(Z)[0], dtype=A.dtype)
    P = tf.linalg.matmul(q_sqrt, q_sqrt, transpose_b=True) - eye  # [L, M, M]
    var = kernel(X, full_cov=False)[:, None] + tf.transpose(diag_quadratic_forms(P, A))
    return mean, var


def _mixed_marginals(
    kernel: gpflow.kernels.Kernel,
    Z: tf.Tensor,
    X: tf.Tensor,
    q_mu: tf.Tensor,
    q_sqrt: tf.Tensor,
) -> Tuple[tf.Tensor, tf.Tensor]:
    """whitened_marginals' mean and variance [N, L] with the large products, and the backward
    pass, in float32 (mixed_projected_moments; dgp_snr.precision gives the errors)."""
    # G = S Sᵀ stays float64: its L M³ product is ~3% of a step, and measured in float32 it
    # raised the largest DReG encoder-gradient error (L1_G5, winered) from 1.1e-6 to 8.3e-6.
    G = tf.linalg.matmul(q_sqrt, q_sqrt, transpose_b=True)  # [L, M, M]
    Lm, q_mu = _cholesky_kmm(kernel, Z), tf.convert_to_tensor(q_mu)
    if type(kernel) is gpflow.kernels.SquaredExponential:  # the builder's kernel
        lengthscales = tf.convert_to_tensor(kernel.lengthscales)
        variance = tf.convert_to_tensor(kernel.variance)
        Z, X = tf.convert_to_tensor(Z), tf.convert_to_tensor(X)  # custom gradients need tensors
        moments = mixed_se_projected_moments(
            Lm, Z, X, lengthscales, variance, q_mu, G, input_gradients_only_active()
        )
    else:
        moments = mixed_projected_moments(Lm, kernel(Z, X), q_mu, G)
    mean, forms, aa = moments
    # k(x, x) - aᵀa is where a small variance cancels: float64, O(MN) work.
    residual = kernel(X, full_cov=False) - aa  # [N]
    return mean, residual[:, None] + tf.transpose(forms)


@check_shapes(
    "Z: [M, D_in]",
    "X: [B, K, D_in]",
    "q_mu: [M, 1]",
    "q_sqrt: [1, M, M]",
    "return[0]: [B, K, 1]",
    "return[1]: [B, K, K]",
)
def whitened_cov_over_samples(
    kernel: gpflow.kernels.Kernel,
    Z: tf.Tensor,
    X: tf.Tensor,
    q_mu: tf.Tensor,
    q_sqrt: tf.Tensor,
) -> Tuple[tf.Tensor, tf.Tensor]:
    """Mean [B, K, 1] and covariance [B, K, K] over the K samples of each of B points.

    This is the IWVI paper's joint sampling for a single-output layer: the K inputs of one point
    are correlated through f, the B points are independent.
    """
    B, K, D_in = tf.unstack(tf.shape(X))
    X_flat = tf.reshape(X, [-1, D_in])
    A = _projection(kernel, Z, X_flat)  # [M, B*K]
    A = tf.transpose(tf.reshape(A, [-1, B, K]), [1, 0, 2])  # [B, M, K]
    mean = tf.linalg.matmul(A, q_mu, transpose_a=True)  # [B, K, 1]
    SA = tf.linalg.matmul(q_sqrt, A, transpose_a=True)  # [B, M, K]
    cov = (
        kernel(X, full_cov=True)
        - tf.linalg.matmul(A, A, transpose_a=True)
        + tf.linalg.matmul(SA, SA, transpose_a=True)
    )  # [B, K, K]
    return mean, cov
