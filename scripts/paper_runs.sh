#!/usr/bin/env bash
# The paper-length campaign (issue 18): sets up .venv, restores the checkpoints committed under
# reproduction/paper_runs/ into the results folder where it is behind, and resumes training and
# the protocol's evaluations. Hours; stop it any time (Ctrl-C saves), rerun to resume.
#   bash scripts/paper_runs.sh            # run (PAPER_RUNS: results folder, default ../paper_runs)
#   bash scripts/paper_runs.sh save       # before committing: each run's newest checkpoint only
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export DGP_SNR_DATA=${DGP_SNR_DATA:-$(cd .. && pwd)/shared/data/uci}
export TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-2}
RESULTS=${PAPER_RUNS:-$(cd .. && pwd)/paper_runs}
exec nice -n 5 .venv/bin/python experiments/paper_runs.py "${1:-run}" --results_path "$RESULTS" "${@:2}"
