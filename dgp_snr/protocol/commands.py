"""The exact command lines that make each input of the paper's targets: experiments/train.py
(a run), experiments/sample_gradients.py (gradient dumps) and experiments/evaluate.py (the
data files of Table 1 and Figure 4).
"""

import os
import shlex
from typing import Sequence

from dgp_snr.protocol.constants import (
    GRADIENT_SAMPLES,
    NUM_DATAPOINTS,
    PAPER_ITERATIONS,
    TEST_REPEATS,
    TEST_SAMPLES,
)
from dgp_snr.runs import RunConfig

#: The settings every train command names, in this order; any other one is named when it
#: differs from RunConfig's default (e.g. M=8 of the smoke profile). The command line's names
#: are the reference's (num_IW_samples, num_predict_samples; RunConfig.to_flat).
_TRAIN_ARGS = (
    "dataset",
    "split",
    "configuration",
    "mode",
    "num_IW_samples",
    "minibatch_size",
    "estimator",
)
_DEFAULTS = RunConfig().to_flat(reference_names=True)


def train_command(config: RunConfig) -> str:
    """The exact experiments/train.py command line that trains `config`'s run."""
    flat = config.to_flat(reference_names=True)
    args = [f"{name}={flat[name]}" for name in _TRAIN_ARGS]
    if flat["qz_mode"] != "encoder":
        args.append(f"qz_mode={flat['qz_mode']}")
    for name, value in flat.items():
        if name in _TRAIN_ARGS or name in ("qz_mode", "iterations", "results_path"):
            continue
        if value != _DEFAULTS[name]:
            args.append(f"{name}={value}")
    args += [f"iterations={flat['iterations']}", f"results_path={flat['results_path']}"]
    return "python experiments/train.py with " + " ".join(shlex.quote(a) for a in args)


def sample_command(
    config: RunConfig,
    estimator: str,
    ks: Sequence[int],
    batch_size: int = 1,
    num_datapoints: int = NUM_DATAPOINTS,
    aggregates: bool = True,
    num_estimates: int = GRADIENT_SAMPLES,
) -> str:
    """The exact experiments/sample_gradients.py command line for these dumps of a run."""
    parts = [
        "python experiments/sample_gradients.py",
        shlex.quote(config.run_name),
        f"--results_path {shlex.quote(str(config.results_path))}",
        f"--ks {','.join(str(k) for k in sorted(ks))}",
        f"--num_estimates {num_estimates}",
        f"--batch_size {batch_size}",
        f"--num_datapoints {num_datapoints if batch_size == 1 else 1}",
        f"--estimator {estimator}",
    ]
    if aggregates:
        parts.append("--save_aggregates")
    return " ".join(parts)


def evaluate_command(
    target: str,
    results_path: os.PathLike = "results",
    num_predictive_samples: int = TEST_SAMPLES,
    repeats: int = TEST_REPEATS,
    iterations: int = PAPER_ITERATIONS,
) -> str:
    """The exact experiments/evaluate.py command line that writes `target`'s data files."""
    cmd = (
        f"python experiments/evaluate.py {target} --results_path {shlex.quote(str(results_path))}"
    )
    if iterations != PAPER_ITERATIONS:
        cmd += f" --iterations {iterations}"
    if num_predictive_samples != TEST_SAMPLES:
        cmd += f" --num_predictive_samples {num_predictive_samples}"
    if repeats != TEST_REPEATS:
        cmd += f" --repeats {repeats}"
    return cmd
