"""Evaluating a paper target's runs into its figure data files (Table 1, Figure 4): which runs
enter is the reference's rule (dgp_snr.protocol.splits), each is evaluated with its cache
(dgp_snr.run_evaluation) and the rows are written in the figure data format
(dgp_snr.figure_data). experiments/evaluate.py calls evaluate_target.
"""

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from dgp_snr.evaluation import DEFAULT_MAX_ELEMENTS
from dgp_snr.figure_data import FigureDataRow, figure_data_path, write_figure_data
from dgp_snr.protocol.commands import train_command
from dgp_snr.protocol.constants import (
    ELBO_REPEATS,
    EVALUATION_TARGETS,
    PAPER_ITERATIONS,
    TEST_REPEATS,
    TEST_SAMPLES,
)
from dgp_snr.protocol.splits import SplitSelection, TargetRun, missing_runs, select_splits
from dgp_snr.run_evaluation import RunEvaluation, evaluate_run


def target_files(target: str, results_path: os.PathLike = "results") -> Dict[str, Path]:
    """The data files a target writes: metric -> path."""
    if target == "figure_4":
        return {"test_ll": figure_data_path(results_path, "figure_4")}
    if target == "table_1":
        return {
            "test_ll": figure_data_path(results_path, "table_1_tll"),
            "train_elbo": figure_data_path(results_path, "table_1_elbo"),
        }
    raise ValueError(
        f"unknown evaluation target {target!r}; known: {', '.join(EVALUATION_TARGETS)}"
    )


@dataclass
class TargetReport:
    """What evaluate_target did: the files written, the runs evaluated, the split selection and
    the runs still to train (or finish) for the wanted number of splits."""

    written: Dict[str, Path]
    evaluated: List[RunEvaluation]
    selection: SplitSelection
    missing: List[TargetRun]


def evaluate_target(
    target: str,
    results_path: os.PathLike = "results",
    datasets: Optional[Sequence[str]] = None,
    splits: Optional[int] = None,
    iterations: int = PAPER_ITERATIONS,
    preview: bool = False,
    num_predictive_samples: int = TEST_SAMPLES,
    repeats: int = TEST_REPEATS,
    elbo_repeats: int = ELBO_REPEATS,
    seed: int = 0,
    max_elements: int = DEFAULT_MAX_ELEMENTS,
    recompute: bool = False,
    progress: bool = False,
    log=print,
) -> TargetReport:
    """Evaluates the runs that enter `target` (figure_4: test LL; table_1: test LL and train
    ELBO) and writes its data files. Which runs enter is the reference's rule
    (protocol.select_splits): per dataset the first `splits` splits whose runs all reached
    `iterations`, each evaluated at that step; `preview` lets unfinished runs in at their latest
    checkpoint and marks the files "PREVIEW: unfinished runs". The splits used and skipped, and
    the runs still to train, are logged. Nothing is written when no split qualifies."""
    selection = select_splits(target, results_path, datasets, splits, iterations, preview)
    for line in selection.describe():
        log(line)
    files = target_files(target, results_path)
    rows: Dict[str, List[FigureDataRow]] = {metric: [] for metric in files}
    evaluated = []
    for i, run in enumerate(selection.runs):
        log(f"[{i + 1}/{len(selection.runs)}] {run.config.run_name} (step {run.step})")
        result = evaluate_run(
            run.config.run_dir(),
            test_ll=True,
            elbo="train_elbo" in files,
            num_predictive_samples=num_predictive_samples,
            repeats=repeats,
            elbo_repeats=elbo_repeats,
            seed=seed,
            step=run.step,
            max_elements=max_elements,
            recompute=recompute,
            progress=progress,
        )
        evaluated.append(result)
        for metric in files:
            values = getattr(result, metric)
            elbo = metric == "train_elbo"
            made = {
                "run": run.config.run_name,
                "step": result.step,
                "samples": (
                    run.config.model.num_importance_samples if elbo else num_predictive_samples
                ),
                "repeats": elbo_repeats if elbo else repeats,
                "seed": seed,
            }
            rows[metric].append(FigureDataRow(run.dataset, run.flag, run.split, values, made))
            log(f"    {metric}: mean {np.mean(values):.6g} over {len(values)} repeats")
    written = {}
    if evaluated:
        for metric, path in files.items():
            written[metric] = write_figure_data(path, rows[metric], preview=preview)
    missing = missing_runs(selection, results_path)
    if missing:
        log(f"{len(missing)} run(s) to train or finish for {selection.num_splits} splits each:")
        for run in missing:
            log(f"  {run.config.run_name}: {train_command(run.config)}")
    return TargetReport(written, evaluated, selection, missing)
