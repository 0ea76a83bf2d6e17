"""Synthetic datasets: ``demo``, ``demo_normalized`` and ``two_points``.

``demo`` follows the reference's ``experiments/demo_dataset.py``: x lies in 6 unit blocks
covering [-3, 3); each block is a test strip of width 200/2200 followed by a train strip of width
2000/2200 (train and test have equal density). Each block holds ``int(200 / 6) = 33`` test and
``int(2000 / 6) = 333`` train points, so the nominal 2000/200 points are in fact **1998 train and
198 test** points, exactly as in the reference. Arrays are block-ordered (block 0 first).
y is, with probability 0.6, ``sin(4x)/3 + 0.2 exp(e)`` and otherwise ``1.5 - (3x)^2/30 +
0.2 exp(e)`` with e standard normal.

The data are drawn from ``numpy.random.RandomState(split)`` with the same sequence of calls as
the reference, which seeded the global generator with ``--seed`` (by default the split) before
building the data; so ``split`` is the seed and the reference's default runs are reproduced.
"""

from __future__ import annotations

import numpy as np

from .core import RegressionData, normalize

DEMO_NUM_TRAIN = 2000
DEMO_NUM_TEST = 200
DEMO_NUM_BLOCKS = 6
DEMO_X_START = -3.0
DEMO_P_SINE = 0.6
DEMO_NOISE_SCALE = 0.2

TWO_POINTS_X = ((-1.0,), (1.0,))
TWO_POINTS_Y = ((1.0,), (2.0,))


def _demo_targets(X: np.ndarray, rng: np.random.RandomState) -> np.ndarray:
    """Targets (n, 1) for inputs X (n, 1); the draw order matches the reference."""
    sine = rng.choice([True, False], size=X.shape, p=(DEMO_P_SINE, 1 - DEMO_P_SINE))
    Y = np.empty(X.shape)
    x = X[sine]
    Y[sine] = np.sin(x * 4) / 3 + DEMO_NOISE_SCALE * np.exp(rng.randn(*x.shape))
    x = X[~sine]
    Y[~sine] = -np.power(x * 3, 2) / 30 + 1.5 + DEMO_NOISE_SCALE * np.exp(rng.randn(*x.shape))
    return Y


def demo_arrays(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(X_train, Y_train, X_test, Y_test)``, shapes (1998, 1), (1998, 1), (198, 1), (198, 1)."""
    rng = np.random.RandomState(seed)
    train_width = DEMO_NUM_TRAIN / (DEMO_NUM_TRAIN + DEMO_NUM_TEST)
    test_width = 1 - train_width
    train_per_block = DEMO_NUM_TRAIN // DEMO_NUM_BLOCKS
    test_per_block = DEMO_NUM_TEST // DEMO_NUM_BLOCKS
    train_xs, test_xs = [], []
    for block in range(DEMO_NUM_BLOCKS):
        start = DEMO_X_START + block
        test_xs.append(rng.uniform(start, start + test_width, size=(test_per_block, 1)))
        train_xs.append(rng.uniform(start + test_width, start + 1, size=(train_per_block, 1)))
    X_train = np.concatenate(train_xs, axis=0)
    X_test = np.concatenate(test_xs, axis=0)
    Y_train = _demo_targets(X_train, rng)
    Y_test = _demo_targets(X_test, rng)
    return X_train, Y_train, X_test, Y_test


def _identity_stats(d: int) -> dict[str, np.ndarray]:
    return {
        "X_mean": np.zeros((1, d)),
        "X_std": np.ones((1, d)),
        "Y_mean": np.zeros((1, 1)),
        "Y_std": np.ones((1, 1)),
    }


def make_demo(split: int) -> RegressionData:
    """The raw demo data (not normalised; identity statistics)."""
    X_train, Y_train, X_test, Y_test = demo_arrays(split)
    return RegressionData(
        name="demo",
        split=split,
        X_train=X_train,
        Y_train=Y_train,
        X_test=X_test,
        Y_test=Y_test,
        **_identity_stats(1),
    )


def make_demo_normalized(split: int) -> RegressionData:
    """The demo data with *each of the four arrays* normalised by its own mean and std.

    That is the reference's behaviour (it maps ``normalize`` over the arrays). The statistics
    stored are those of the training arrays; the test arrays were scaled by their own.
    """
    X_train, Y_train, X_test, Y_test = demo_arrays(split)
    X_train, X_mean, X_std = normalize(X_train)
    Y_train, Y_mean, Y_std = normalize(Y_train)
    return RegressionData(
        name="demo_normalized",
        split=split,
        X_train=X_train,
        Y_train=Y_train,
        X_test=normalize(X_test)[0],
        Y_test=normalize(Y_test)[0],
        X_mean=X_mean,
        X_std=X_std,
        Y_mean=Y_mean,
        Y_std=Y_std,
    )


def make_two_points(split: int) -> RegressionData:
    """x = -1, 1 with y = 1, 2; the test set is the same two points; no normalisation.

    ``split`` is accepted (and validated) but changes nothing.
    """
    X = np.array(TWO_POINTS_X, dtype=np.float64)
    Y = np.array(TWO_POINTS_Y, dtype=np.float64)
    return RegressionData(
        name="two_points",
        split=split,
        X_train=X,
        Y_train=Y,
        X_test=X.copy(),
        Y_test=Y.copy(),
        **_identity_stats(1),
    )
