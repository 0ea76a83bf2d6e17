"""The data container and the preprocessing shared by all file-backed datasets.

Preprocessing (as in `bayesian_benchmarks` plus the reference experiments' fixes):

1. normalise inputs and outputs per column over the *whole* dataset,
   ``(A - mean) / (1e-6 + std)`` with the population std (ddof = 0);
2. shuffle the row indices with a NumPy ``RandomState`` seeded by ``split``, which draws the
   same permutation as the reference's ``np.random.seed(0 + split); np.random.shuffle(ind)``
   without touching NumPy's global random state;
3. the first ``int(0.9 * N)`` shuffled rows are the training set, the rest the test set, of which
   only the first 10,000 are kept;
4. input columns that are constant over the training set are dropped, the same columns from the
   test set and from the normalisation statistics.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

import numpy as np

#: Valid splits are ``0 <= split < NUM_SPLITS`` (the paper uses at most 20).
NUM_SPLITS = 100
TRAIN_FRACTION = 0.9
MAX_TEST_POINTS = 10_000
#: Added to every standard deviation, as in `bayesian_benchmarks.data.normalize`.
STD_JITTER = 1e-6


class DataError(ValueError):
    """Any data problem: unknown name, bad split, missing or corrupt file, failed download."""


class DataWarning(UserWarning):
    """Something worth knowing that does not stop loading (e.g. a download differing from the
    reference copy the project was checked against)."""


@dataclass(frozen=True, eq=False)
class RegressionData:
    """One train/test split of a regression dataset.

    Shapes: ``X_train`` (N, D), ``Y_train`` (N, 1), ``X_test`` (N_test, D), ``Y_test`` (N_test, 1),
    ``X_mean``/``X_std`` (1, D), ``Y_mean``/``Y_std`` (1, 1); all float64. The arrays are
    normalised; ``X_train * X_std + X_mean`` recovers the original inputs (likewise for Y).
    """

    name: str
    split: int
    X_train: np.ndarray
    Y_train: np.ndarray
    X_test: np.ndarray
    Y_test: np.ndarray
    X_mean: np.ndarray
    X_std: np.ndarray
    Y_mean: np.ndarray
    Y_std: np.ndarray

    def __post_init__(self) -> None:
        arrays = {
            "X_train": self.X_train,
            "Y_train": self.Y_train,
            "X_test": self.X_test,
            "Y_test": self.Y_test,
            "X_mean": self.X_mean,
            "X_std": self.X_std,
            "Y_mean": self.Y_mean,
            "Y_std": self.Y_std,
        }
        for key, value in arrays.items():
            if not isinstance(value, np.ndarray) or value.ndim != 2 or value.dtype != np.float64:
                raise DataError(f"{self.name}: {key} must be a 2-D float64 array")
        n, d = self.X_train.shape
        expected = {
            "Y_train": (n, 1),
            "X_test": (self.X_test.shape[0], d),
            "Y_test": (self.X_test.shape[0], 1),
            "X_mean": (1, d),
            "X_std": (1, d),
            "Y_mean": (1, 1),
            "Y_std": (1, 1),
        }
        for key, shape in expected.items():
            if arrays[key].shape != shape:
                raise DataError(
                    f"{self.name}: {key} has shape {arrays[key].shape}, expected {shape}"
                )

    @property
    def N(self) -> int:
        """Number of training points."""
        return self.X_train.shape[0]

    @property
    def D(self) -> int:
        """Number of input dimensions (after dropping constant columns)."""
        return self.X_train.shape[1]


def check_split(split: object) -> int:
    """Return ``split`` as an int, or raise DataError unless ``0 <= split < NUM_SPLITS``."""
    # bool is an int subclass, but split=True is certainly a mistake.
    if isinstance(split, bool) or not isinstance(split, numbers.Integral):
        raise DataError(f"split must be an int in [0, {NUM_SPLITS}), got {split!r}")
    split = int(split)
    if not 0 <= split < NUM_SPLITS:
        raise DataError(f"split must be an int in [0, {NUM_SPLITS}), got {split}")
    return split


def normalize(A: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Normalise each column of ``A`` (n, k); returns ``(A_normalised, mean, std)`` with the
    statistics of shape (1, k) and ``std`` including the 1e-6 jitter."""
    mean = np.mean(A, axis=0, keepdims=True)
    std = STD_JITTER + np.std(A, axis=0, keepdims=True)
    return (A - mean) / std, mean, std


def split_indices(num_points: int, split: int) -> tuple[np.ndarray, np.ndarray]:
    """Row indices ``(train, test)`` of a split: a seeded shuffle, first 90% train, test capped.

    Shapes: (int(0.9 * num_points),) and (min(rest, 10000),).
    """
    index = np.arange(num_points)
    np.random.RandomState(split).shuffle(index)
    num_train = int(num_points * TRAIN_FRACTION)
    return index[:num_train], index[num_train:][:MAX_TEST_POINTS]


def split_table(name: str, split: int, table: np.ndarray) -> RegressionData:
    """Preprocess a raw table (N, D + 1) (inputs, then the target) into a RegressionData."""
    X, X_mean, X_std = normalize(table[:, :-1])
    Y, Y_mean, Y_std = normalize(table[:, -1:])
    train, test = split_indices(table.shape[0], split)
    if train.size == 0 or test.size == 0:
        raise DataError(f"{name}: {table.shape[0]} points are too few for a train/test split")
    X_train = X[train]
    # Columns constant over the training set carry no information for the model.
    keep = np.flatnonzero(np.ptp(X_train, axis=0) > 0)
    return RegressionData(
        name=name,
        split=split,
        X_train=X_train[:, keep],
        Y_train=Y[train],
        X_test=X[test][:, keep],
        Y_test=Y[test],
        X_mean=X_mean[:, keep],
        X_std=X_std[:, keep],
        Y_mean=Y_mean,
        Y_std=Y_std,
    )
