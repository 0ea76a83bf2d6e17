"""Integrations with other libraries, each an optional extra imported on its own:

- `dgp_snr.integrations.gpflux`: IWVI and the REG / STL / DReG encoder-gradient estimators for
  GPflux deep GPs (`pip install -e .[gpflux]`).

Importing this package imports none of them.
"""
