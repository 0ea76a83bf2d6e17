"""Whitened sparse-GP conditionals for inputs that carry an extra sample axis.

Given inducing inputs Z [M, D_in], a (shared) kernel, and whitened q(v) = N(q_mu, q_sqrt q_sqrtᵀ)
for L independent latent GPs (u = chol(Kmm) v), these return the marginals of q(f(X)), or the
covariance over the K samples of each point for a single-output GP.
"""

from typing import Optional, Tuple

import gpflow
import tensorflow as tf
from check_shapes import check_shapes

from dgp_snr.precision import Precision


def _projection(kernel: gpflow.kernels.Kernel, Z: tf.Tensor, X: tf.Tensor) -> tf.Tensor:
    """A = chol(Kmm)⁻¹ Kmn, the whitened projection [M, N] of X [N, D_in]."""
    Kmm = kernel(Z) + gpflow.config.default_jitter() * tf.eye(
        tf.shape(Z)[0], dtype=gpflow.config.default_float()
    )
    Lm = tf.linalg.cholesky(Kmm)
    return tf.linalg.triangular_solve(Lm, kernel(Z, X), lower=True)


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


@tf.custom_gradient
def gram_quadratic_forms(G: tf.Tensor, A: tf.Tensor):
    """aᵀ G_l a = ||S_lᵀ a||² for G_l = S_l S_lᵀ [L, M, M] and A [M, N] in float32, as [L, N].

    The mixed-precision path's form. The product G_l a and its gradient's A diag(g) Aᵀ run in
    float32 (the dtype of G and A); the reductions over M and over L are float32 too, as their
    relative rounding (~sqrt(M) x 6e-8, measured 2e-7 on the forms) is that of the products.
    Same structure and hand-written gradient as diag_quadratic_forms: one GEMM each way.
    """
    L, M = tf.shape(G)[0], tf.shape(G)[1]
    N = tf.shape(A)[1]
    Q = tf.reshape(tf.linalg.matmul(tf.reshape(G, [L * M, M]), A), [L, M, N])
    forms = tf.reduce_sum(A[None] * Q, 1)  # [L, N]

    def grad(g: tf.Tensor):  # g: [L, N]
        gA = tf.reshape(A[None] * g[:, None, :], [L * M, N])
        dG = tf.reshape(tf.linalg.matmul(gA, A, transpose_b=True), [L, M, M])
        dA = 2.0 * tf.reduce_sum(Q * g[:, None, :], 0)  # [M, N]
        return dG, dA

    return forms, grad


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
    A = _projection(kernel, Z, X)  # [M, N]
    if precision is not None and precision.mixed:
        return _mixed_marginals(kernel, X, A, q_mu, q_sqrt, precision)
    mean = tf.linalg.matmul(A, q_mu, transpose_a=True)  # [N, L]
    eye = tf.eye(tf.shape(Z)[0], dtype=A.dtype)
    P = tf.linalg.matmul(q_sqrt, q_sqrt, transpose_b=True) - eye  # [L, M, M]
    var = kernel(X, full_cov=False)[:, None] + tf.transpose(diag_quadratic_forms(P, A))
    return mean, var


def _mixed_marginals(
    kernel: gpflow.kernels.Kernel,
    X: tf.Tensor,
    A: tf.Tensor,
    q_mu: tf.Tensor,
    q_sqrt: tf.Tensor,
    precision: Precision,
) -> Tuple[tf.Tensor, tf.Tensor]:
    """whitened_marginals' mean and variance [N, L] from the float64 projection A [M, N], with
    the large products on precision's float32 copies (see dgp_snr.precision for the errors)."""
    A_low = precision.low(A)  # one float32 copy of A serves the mean and the forms
    mean = precision.high(tf.linalg.matmul(A_low, precision.low(q_mu), transpose_a=True))
    # G = S Sᵀ stays float64: its L M³ product is ~3% of a step, and measured in float32 it
    # raised the largest DReG encoder-gradient error (L1_G5, winered) from 1.1e-6 to 8.3e-6.
    G = tf.linalg.matmul(q_sqrt, q_sqrt, transpose_b=True)  # [L, M, M]
    forms = precision.high(gram_quadratic_forms(precision.low(G), A_low))  # [L, N]
    # k(x, x) - aᵀa is where a small variance cancels: float64, O(MN) work.
    residual = kernel(X, full_cov=False) - tf.reduce_sum(tf.square(A), 0)  # [N]
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
