"""The numeric precision policy of the GP layers: "float64" (the paper's, the default) or
"mixed", where the large products whose results are sums of squares run in float32.

Every parameter, kernel matrix over the inducing points, Cholesky factor, triangular solve, the
k(x, x) - aᵀa cancellation, log weight and logsumexp stay float64 in both modes. Each product
was decided from its measured error against float64 (L1_G5 on winered, K = 50, batch 64,
M = 128, shared noise, at initialisation and at randomised parameters; tests/test_precision.py):

- float32: the q_sqrt quadratic forms aᵀ S_l S_lᵀ a over the B x K rows, as the product
  (S_l S_lᵀ) a and the gradient's A diag(g) Aᵀ (60-70% of a float64 training step). They are
  sums of squares, so float32 rounding (u sqrt(M), u = 2⁻²⁴) is relative to the form itself;
  the form is added to the float64 k(x, x) - aᵀa >= 0, so a marginal variance keeps that
  relative error however small it is, and stays positive. (The float64 path forms
  aᵀ (S Sᵀ - I) a in one product; in float32 its -aᵀa part would cancel against k(x, x) and
  lose every digit of a small variance, so the mixed path splits it off.)
- float32: the mean projection Aᵀ q_mu and its gradients. It reuses the float32 copy of A the
  forms need; measured, it moves the bound's relative error from 3e-9 to 9e-9 and leaves the
  gradients' (<= 6e-6 relative, per parameter) within their scatter.
- float64: G = S Sᵀ (L M³, ~3% of a step): in float32 it raised the largest DReG
  encoder-gradient error from 1.1e-6 to 8.3e-6.
- float64: the projection A = chol(Kmm)⁻¹ Kmn, forward. chol(Kmm)⁻¹ has entries up to ~1e3
  at jitter 1e-6, so a float32 A would leave absolute errors ~1e-4, more than the
  k(x, x) - aᵀa cancellation can absorb (measured: bound errors 6e-6 relative on trained
  models, gradients off by up to 9%).
- float64: the projection's backward for parameters, ∂Kmn = Lm⁻ᵀ ∂A (a triangular solve) and
  ∂Lm = -tril(∂Kmn Aᵀ), and the kernel's backward to Z, ℓ, σ². ∂Kmn's entries are large and
  cancel in Σ ∂Kmn ∂k/∂z, and ∂Lm passes Kmm's Cholesky, which amplifies by cond(Kmm): rounding
  either to float32 left the small inducing-input gradients of a trained model (demo, L1,
  cond(Kmm) 6e7) off by up to 3.5 times their Monte Carlo noise, against 2e-5 times here.
- float32, only inside input_gradients_only() (encoder-gradient sampling, which needs the
  gradient in the layers' inputs and nothing else): the input gradient's ∂Kmn = Lm⁻ᵀ ∂A, as a
  GEMM with an explicit Lm⁻¹, and the kernel's backward to X. This is accurate to ~u κ(Lm)
  relative (the explicit inverse's error), measured on four trained checkpoints (demo L1;
  winered, solar, forest L1_G5; K = 1, 10, 100): each gradient estimate within 8e-5 relative,
  against Monte Carlo errors of an SNR from 1,000 estimates of >= 3%. Parameter gradients,
  if asked for anyway, still come from the float64 solve.
- float64: the joint K x K covariance of full_cov layers (not used by the paper's models): its
  Cholesky's jitter (1e-6) is too close to float32's rounding of the covariance.

The squared-exponential kernel (the builder's) has its own mixed path: Kmn as one GEMM and one
exp, and its backward pass written out (dgp_snr.conditionals.mixed_se_projected_moments);
other kernels go through gpflow and autodiff in float64.

Measured results: bound within 1e-8 relative; at initialisation and random parameters every
gradient within 1e-5 relative per parameter; on trained checkpoints every gradient entry
within 1e-4 of its own Monte Carlo standard deviation.
"""

import contextlib
import contextvars
from dataclasses import dataclass
from typing import Iterator, Union

import tensorflow as tf

PRECISIONS = ("float64", "mixed")


@dataclass(frozen=True)
class Precision:
    """Which products of the GP layers run in float32: `name` is "float64" (none) or "mixed"
    (those listed in the module docstring; dgp_snr.conditionals makes the float32 copies)."""

    name: str = "float64"

    def __post_init__(self) -> None:
        if self.name not in PRECISIONS:
            raise ValueError(
                f"unknown precision {self.name!r}; known precisions: {', '.join(PRECISIONS)}"
            )

    @property
    def mixed(self) -> bool:
        return self.name == "mixed"

    def require_full_float32(self) -> None:
        """In mixed mode, turns off TensorFloat-32: on Ampere and newer NVIDIA GPUs TensorFlow
        otherwise multiplies float32 matrices with 10-bit mantissas (relative error ~5e-4), 50x
        the error budget above. Process-wide (TensorFlow has no per-op switch); a no-op on
        CPUs and for float64."""
        if self.mixed and tf.config.experimental.tensor_float_32_execution_enabled():
            tf.config.experimental.enable_tensor_float_32_execution(False)


FLOAT64 = Precision("float64")
MIXED = Precision("mixed")


def get_precision(precision: Union[str, Precision, None]) -> Precision:
    """The Precision for a name ("float64", "mixed"), a Precision, or None (float64)."""
    if precision is None:
        return FLOAT64
    if isinstance(precision, Precision):
        return precision
    return Precision(precision)


_INPUT_GRADIENTS_ONLY = contextvars.ContextVar("input_gradients_only", default=False)


@contextlib.contextmanager
def input_gradients_only() -> Iterator[None]:
    """Declares that the GP layers traced inside are differentiated in their inputs only (not in
    Z, the kernel or q(u)), as encoder-gradient sampling does. Mixed-precision layers then take
    the input gradient from a float32 solve (see the module docstring); float64 layers, and any
    parameter gradient that is asked for anyway, are unchanged. Read when a function is traced,
    so a tf.function must be traced inside the block."""
    token = _INPUT_GRADIENTS_ONLY.set(True)
    try:
        yield
    finally:
        _INPUT_GRADIENTS_ONLY.reset(token)


def input_gradients_only_active() -> bool:
    """Whether the code being traced is inside input_gradients_only()."""
    return _INPUT_GRADIENTS_ONLY.get()
