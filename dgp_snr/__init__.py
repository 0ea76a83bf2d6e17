"""Importance-weighted variational inference for latent-variable deep GPs, and the SNR of its
encoder-gradient estimators (Rudner, Key, Gal, Rainforth; ICML 2021), on GPflow 2.

Everything works in float64, GPflow's default. The package root imports nothing heavy, so
`dgp_snr.data` and its command line start quickly.
"""

import os

# Quieten TensorFlow's C++ start-up and grappler chatter unless the user asks for it.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"
