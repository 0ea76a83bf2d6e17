"""The numeric precision policy of the GP layers: "float64" (the paper's, the default) or
"mixed", where the large products whose results are sums of squares run in float32.

Every parameter, kernel matrix over the inducing points, Cholesky factor, triangular solve, the
k(x, x) - aᵀa cancellation, log weight and logsumexp stay float64 in both modes. What "mixed"
moves to float32, and why (errors measured at L1_G5 on winered, K = 50, batch 64, M = 128, at
initialisation and at randomised parameters; see tests/test_precision.py):

- the q_sqrt quadratic forms aᵀ S_l S_lᵀ a = ||S_lᵀ a||² over the B x K rows and their
  gradients: 60-70% of a training step's work. A sum of squares has float32's relative rounding
  (~1e-7 x sqrt(M) at worst) relative to itself, and it is added to the float64
  k(x, x) - aᵀa >= 0, so each marginal variance keeps a relative error below ~1e-6 and stays
  positive. (The float64 path forms aᵀ (S Sᵀ - I) a in one product; there the -I part would
  cancel against k(x, x) in float32 and lose every digit of a small variance, which is why the
  mixed path splits it.)
- the mean projection Aᵀ q_mu: its error (~1e-7 of Σ |a_m q_mu,m|) enters the log weights
  as (y - m) / σ² x error, measured at ~1e-7 relative on the bound; it reuses the float32
  copy of A that the quadratic forms already need, so it costs nothing extra.

The projection A = chol(Kmm)⁻¹ Kmn itself stays float64: its entries come out of a solve with
chol(Kmm), whose inverse has entries up to ~1e3 at jitter 1e-6, so float32 would leave absolute
errors of ~1e-4 in a, far above what the k(x, x) - aᵀa cancellation can absorb.
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
