"""Importance-weighted variational inference for latent-variable deep GPs, and the SNR of its
encoder-gradient estimators (Rudner, Key, Gal, Rainforth; ICML 2021), on GPflow 2.

Everything works in float64, GPflow's default. The package root imports nothing heavy, so
`dgp_snr.data` and its command line start quickly; importing it changes no settings (the
command-line scripts quieten TensorFlow's start-up logs themselves).
"""

__version__ = "0.1.0"
