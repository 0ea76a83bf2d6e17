"""Regression datasets with the names, preprocessing and splits of `bayesian_benchmarks`.

``get_regression_data(name, split)`` returns a :class:`RegressionData` with normalised
``X_train`` (N, D), ``Y_train`` (N, 1), ``X_test``, ``Y_test`` and the normalisation statistics.
Files are read from ``$DGP_SNR_DATA``, then from the per-user cache (``$DGP_SNR_CACHE``); UCI
sets missing from both are downloaded (``$DGP_SNR_UCI_URL`` overrides the UCI address) and
cached; the "wilson_" sets are installed with ``dgp-snr-data install-wilson uci.tar.gz``.
"""

from .core import NUM_SPLITS, DataError, DataWarning, RegressionData
from .registry import DATASET_NAMES, get_regression_data, register
from .wilson import install_wilson

__all__ = [
    "DATASET_NAMES",
    "NUM_SPLITS",
    "DataError",
    "DataWarning",
    "RegressionData",
    "get_regression_data",
    "install_wilson",
    "register",
]
