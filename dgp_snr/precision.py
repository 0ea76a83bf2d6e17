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
- float64: the projection A = chol(Kmm)⁻¹ Kmn and its gradient. chol(Kmm)⁻¹ has entries up to
  ~1e3 at jitter 1e-6, so float32 would leave absolute errors ~1e-4 in a, more than the
  k(x, x) - aᵀa cancellation can absorb, and the gradient through Kmm's Cholesky amplifies
  errors by cond(Kmm).
- float64: the joint K x K covariance of full_cov layers (not used by the paper's models): its
  Cholesky's jitter (1e-6) is too close to float32's rounding of the covariance.

Measured results: bound within 1e-8 relative, every gradient within 6e-6 relative.
"""

from dataclasses import dataclass
from typing import Union

import tensorflow as tf

PRECISIONS = ("float64", "mixed")


@dataclass(frozen=True)
class Precision:
    """Which products of the GP layers run in float32: `name` is "float64" (none) or "mixed".

    The float32 copies and the casts back are made here (`low`, `high`), nowhere else."""

    name: str = "float64"

    def __post_init__(self) -> None:
        if self.name not in PRECISIONS:
            raise ValueError(
                f"unknown precision {self.name!r}; known precisions: {', '.join(PRECISIONS)}"
            )

    @property
    def mixed(self) -> bool:
        return self.name == "mixed"

    @property
    def low_dtype(self) -> tf.DType:
        """The dtype of the large products: float32 in mixed mode, else float64."""
        return tf.float32 if self.mixed else tf.float64

    def low(self, x: tf.Tensor) -> tf.Tensor:
        """A copy of x in the products' dtype (x itself in float64 mode)."""
        return tf.cast(x, self.low_dtype) if self.mixed else x

    def require_full_float32(self) -> None:
        """In mixed mode, turns off TensorFloat-32: on Ampere and newer NVIDIA GPUs TensorFlow
        otherwise multiplies float32 matrices with 10-bit mantissas (relative error ~5e-4), 50x
        the error budget above. Process-wide (TensorFlow has no per-op switch); a no-op on
        CPUs and for float64."""
        if self.mixed and tf.config.experimental.tensor_float_32_execution_enabled():
            tf.config.experimental.enable_tensor_float_32_execution(False)

    @staticmethod
    def high(x: tf.Tensor) -> tf.Tensor:
        """x back in float64 (x itself when it is float64 already)."""
        return x if x.dtype == tf.float64 else tf.cast(x, tf.float64)


FLOAT64 = Precision("float64")
MIXED = Precision("mixed")


def get_precision(precision: Union[str, Precision, None]) -> Precision:
    """The Precision for a name ("float64", "mixed"), a Precision, or None (float64)."""
    if precision is None:
        return FLOAT64
    if isinstance(precision, Precision):
        return precision
    return Precision(precision)
