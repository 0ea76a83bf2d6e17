"""Which runs enter Table 1 and Figure 4: each (dataset, split) is a pair of runs (flag F and
flag T), and per dataset the first splits whose pair finished enter (the reference's rule,
select_splits); the runs still to train for the wanted number of splits (missing_runs).
"""

import os
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

from dgp_snr.protocol.constants import (
    EVALUATION_TARGETS,
    FIGURE_4_DATASETS,
    FIGURE_4_SPLITS,
    MAX_SPLIT,
    PAPER_ITERATIONS,
    TABLE_1_DATASETS,
    TABLE_1_SPLITS,
    paper_config,
)
from dgp_snr.runs import FINISHED, MISSING, UNFINISHED, RunConfig, RunState, run_state


@dataclass
class TargetRun:
    """One run a target needs: where it goes in the data file and its configuration; `step` is
    the checkpoint that enters (set by select_splits)."""

    dataset: str
    flag: bool
    split: int
    config: RunConfig
    step: Optional[int] = None


def target_defaults(target: str) -> Tuple[Sequence[str], int, List[Tuple[bool, dict]]]:
    """(datasets, number of splits, [(flag, paper_config kwargs)]) of an evaluation target."""
    if target == "figure_4":  # flag T: q(w) fixed to the prior
        return FIGURE_4_DATASETS, FIGURE_4_SPLITS, [(False, {}), (True, dict(fixq=True))]
    if target == "table_1":  # flag T: DReG-trained
        pairs = [(False, dict(estimator="reg")), (True, dict(estimator="dreg"))]
        return TABLE_1_DATASETS, TABLE_1_SPLITS, pairs
    raise ValueError(
        f"unknown evaluation target {target!r}; known: {', '.join(EVALUATION_TARGETS)}"
    )


def pair_runs(
    target: str,
    dataset: str,
    split: int,
    results_path: os.PathLike = "results",
    iterations: int = PAPER_ITERATIONS,
) -> List[TargetRun]:
    """The two runs of one (dataset, split) of a target: flag F and flag T."""
    _, _, flags = target_defaults(target)
    return [
        TargetRun(
            dataset,
            flag,
            split,
            paper_config(
                dataset, split, 2, results_path=results_path, iterations=iterations, **kw
            ),
        )
        for flag, kw in flags
    ]


def target_runs(
    target: str,
    results_path: os.PathLike = "results",
    datasets: Optional[Sequence[str]] = None,
    splits: Optional[int] = None,
    iterations: int = PAPER_ITERATIONS,
) -> List[TargetRun]:
    """The runs the reference trains for a target: 'figure_4' (learned q(w) vs fixq,
    REG-trained) and 'table_1' (REG vs DReG); depth 2, K = 50, minibatch 64, splits
    0..splits-1 (select_splits decides which of the existing runs enter)."""
    default_datasets, default_splits, _ = target_defaults(target)
    datasets = default_datasets if datasets is None else datasets
    splits = default_splits if splits is None else splits
    return [
        run
        for dataset in datasets
        for run in sorted(
            (
                r
                for s in range(splits)
                for r in pair_runs(target, dataset, s, results_path, iterations)
            ),
            key=lambda r: (r.flag, r.split),
        )
    ]


@dataclass
class SplitSelection:
    """The splits of a target that enter its data file, per dataset, and why others did not.

    runs: the selected runs (both of each pair) with the step that enters; skipped: per dataset,
    (split, reason) for splits with at least one run on disk that were passed over; short: per
    dataset, how many selected splits are missing from the wanted number."""

    target: str
    iterations: int
    num_splits: int
    preview: bool
    runs: List[TargetRun] = field(default_factory=list)
    used: Dict[str, List[int]] = field(default_factory=dict)
    skipped: Dict[str, List[Tuple[int, str]]] = field(default_factory=dict)
    unfinished_used: List[TargetRun] = field(default_factory=list)

    def short(self, dataset: str) -> int:
        return self.num_splits - len(self.used.get(dataset, []))

    def describe(self) -> List[str]:
        """Human-readable lines: the splits used and skipped per dataset."""
        lines = []
        if self.preview:
            lines.append(
                f"PREVIEW: unfinished runs ({self.target}: runs not yet at "
                f"{self.iterations} iterations enter at their latest checkpoint)"
            )
        for dataset, used in self.used.items():
            text = ", ".join(str(s) for s in used) or "none"
            lines.append(
                f"{self.target} {dataset}: splits used ({len(used)} of {self.num_splits}): {text}"
            )
            for split, reason in self.skipped.get(dataset, []):
                lines.append(f"    split {split} skipped: {reason}")
        return lines


def select_splits(
    target: str,
    results_path: os.PathLike = "results",
    datasets: Optional[Sequence[str]] = None,
    num_splits: Optional[int] = None,
    iterations: int = PAPER_ITERATIONS,
    preview: bool = False,
    max_split: int = MAX_SPLIT,
) -> SplitSelection:
    """Per dataset, the first `num_splits` splits in 0..max_split for which every run of the
    pair reached `iterations` (the reference's rule; they enter at that step). With `preview`,
    a pair whose runs merely have a checkpoint enters too, each run at its latest checkpoint
    (finished runs at `iterations`)."""
    default_datasets, default_splits, _ = target_defaults(target)
    datasets = default_datasets if datasets is None else datasets
    num_splits = default_splits if num_splits is None else num_splits
    selection = SplitSelection(target, iterations, num_splits, preview)
    for dataset in datasets:
        used = selection.used.setdefault(dataset, [])
        for split in range(max_split + 1):
            if len(used) == num_splits:
                break
            pair = pair_runs(target, dataset, split, results_path, iterations)
            states = [run_state(run.config, iterations) for run in pair]
            if all(state.state == MISSING for state in states):
                continue
            if not all(_enters(state, preview) for state in states):
                reasons = [
                    f"{run.config.run_name} {_why_not(state, iterations)}"
                    for run, state in zip(pair, states)
                    if not _enters(state, False)
                ]
                selection.skipped.setdefault(dataset, []).append(
                    (split, f"not finished at {iterations} iterations: " + "; ".join(reasons))
                )
                continue
            used.append(split)
            for run, state in zip(pair, states):
                run.step = state.step
                selection.runs.append(run)
                if state.state == UNFINISHED:
                    selection.unfinished_used.append(run)
    return selection


def _enters(state: RunState, preview: bool) -> bool:
    """Whether a run can enter at its state's step: finished with a checkpoint at the
    iterations, or (`preview`) unfinished, at its newest checkpoint."""
    if state.state == FINISHED:
        return state.step is not None
    return preview and state.state == UNFINISHED


def _why_not(state: RunState, iterations: int) -> str:
    if state.state == MISSING:
        return "has no checkpoint"
    if state.state == UNFINISHED:
        return f"stopped at step {state.step}"
    return f"was trained past step {iterations} without keeping its checkpoint"


def missing_runs(selection: SplitSelection, results_path: os.PathLike) -> List[TargetRun]:
    """The runs to train (or finish) so that each dataset reaches its number of splits: those of
    the lowest splits not yet selected."""
    out = []
    for dataset, used in selection.used.items():
        need = selection.short(dataset)
        split = 0
        while need > 0 and split <= MAX_SPLIT:
            if split not in used:
                for run in pair_runs(
                    selection.target, dataset, split, results_path, selection.iterations
                ):
                    if run_state(run.config, selection.iterations).state != FINISHED:
                        out.append(run)
                need -= 1
            split += 1
    return out
