#!/usr/bin/env bash
# Sets up the environment, then runs the linters and the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export DGP_SNR_DATA=${DGP_SNR_DATA:-$(cd .. && pwd)/shared/data/uci}
export TF_CPP_MIN_LOG_LEVEL=2
.venv/bin/python -m ruff check dgp_snr experiments benchmarks tests
.venv/bin/python -m black --check --line-length 99 -q dgp_snr experiments benchmarks tests
.venv/bin/python -m pytest -q --durations=15 "$@"
