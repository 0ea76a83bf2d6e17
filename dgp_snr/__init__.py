"""Importance-weighted variational inference for latent-variable deep GPs, and the SNR of its
encoder-gradient estimators (Rudner, Key, Gal, Rainforth; ICML 2021), on GPflow 2."""

import os

# Quieten TensorFlow's C++ start-up and grappler chatter unless the user asks for it.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import gpflow  # noqa: E402

# The whole library works in float64, as GPflow's defaults and the reference code do.
gpflow.config.set_default_float("float64")

__version__ = "0.1.0"
