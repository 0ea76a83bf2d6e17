#!/usr/bin/env bash
# The main job: set up, train a depth-1 latent-variable DGP on the built-in demo data
# (demo_normalized, K = 50, batch 64), sample REG and DReG encoder gradients for
# K = 1, 5, ..., 100 at 10 data points, and draw Figure 1 (SNR vs K).
# ITERATIONS (default 1500) and RESULTS (default results) can be set in the environment.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
PY=.venv/bin/python
# TensorFlow's C++ logging below warnings stays quiet (the scripts also hold back its start-up
# lines), so the progress bars, the result and the figure's path are what the user sees.
export TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-2}
RESULTS=${RESULTS:-results}
ITERATIONS=${ITERATIONS:-1500}
RUN=demo_normalized_L1_IWAE_SF0_K50_BS64_reg
KS=1$(printf ',%s' $(seq 5 5 100))

$PY experiments/train.py with dataset=demo_normalized configuration=L1 mode=IWAE \
  num_IW_samples=50 minibatch_size=64 estimator=reg iterations="$ITERATIONS" \
  results_path="$RESULTS"
for estimator in reg dreg; do
  $PY experiments/sample_gradients.py "$RUN" --results_path "$RESULTS" --ks "$KS" \
    --num_estimates 1000 --batch_size 1 --num_datapoints 10 --estimator "$estimator" \
    --save_aggregates --rebuild
done
$PY experiments/plot.py figure_1 --results_path "$RESULTS" --iterations "$ITERATIONS"
echo "Figure 1 (SNR vs K, REG and DReG): $(pwd)/figures/figure_1.png (and .pdf)"
