"""Whitened sparse-GP conditionals for inputs that carry an extra sample axis.

Given inducing inputs Z [M, D_in], a (shared) kernel, and whitened q(v) = N(q_mu, q_sqrt q_sqrtᵀ)
for L independent latent GPs (u = chol(Kmm) v), these return the marginals of q(f(X)), or the
covariance over the K samples of each point for a single-output GP.
"""

from typing import Tuple

import gpflow
import tensorflow as tf
from check_shapes import check_shapes


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
) -> Tuple[tf.Tensor, tf.Tensor]:
    """Marginal mean and variance [N, L] of L latent GPs that share `kernel` and `Z`.

    All L GPs reuse one projection A [M, N], so the work is a few large products rather than L
    small conditionals: var_l = k(x, x) + aᵀ (S_l S_lᵀ - I) a.
    """
    A = _projection(kernel, Z, X)  # [M, N]
    mean = tf.linalg.matmul(A, q_mu, transpose_a=True)  # [N, L]
    eye = tf.eye(tf.shape(Z)[0], dtype=A.dtype)
    P = tf.linalg.matmul(q_sqrt, q_sqrt, transpose_b=True) - eye  # [L, M, M]
    var = kernel(X, full_cov=False)[:, None] + tf.transpose(diag_quadratic_forms(P, A))
    return mean, var


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
