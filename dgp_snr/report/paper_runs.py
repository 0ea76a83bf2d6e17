"""The paper-length runs' blocks: the learning-curve table and each committed run's recorded
code (dgp_snr.campaign writes what they read)."""

import json
from pathlib import Path

import pandas as pd

from dgp_snr.report.blocks import (
    NOT_RECORDED,
    PAPER_RUNS_CSV,
    fmt,
    minutes,
)
from dgp_snr.training_record import read_training_record, summarize


def learning_curve_markdown(curve: pd.DataFrame) -> str:
    """The report's table, generated from learning_curve.csv alone."""
    lines = [
        "| run | precision | step | test LL (± SE) | train ELBO / point (± SE) "
        "| authors' (same split: run, repeats) | ours − authors' |",
        "|---|---|---:|---|---|---|---:|",
    ]
    for row in curve.itertuples(index=False):
        tll = f"{fmt(row.test_ll_mean)} ± {row.test_ll_se:.3f}"
        elbo = f"{fmt(row.elbo_per_point_mean)} ± {row.elbo_per_point_se:.3f}"
        authors = (
            "-" if not row.authors_source
            else f"{fmt(row.authors_test_ll)} ({row.authors_source})"
        )  # fmt: skip
        setting = f"{row.estimator.upper().replace('DREG', 'DReG')}, q(w) {row.qw}"
        seed = getattr(row, "seed", row.split)
        setting += f", seed {seed}" + (" (= split)" if seed == row.split else "")
        lines.append(
            f"| {row.dataset} split {row.split}, {setting} | {row.precision} | {row.step:,} "
            f"| {tll} | {elbo} | {authors} | {fmt(row.gap_to_authors)} |"
        )
    return "\n".join(lines) + "\n"


def paper_runs_block(root: Path) -> str:
    path = root / PAPER_RUNS_CSV
    if not path.is_file():
        return "(no paper-length evaluation committed yet)\n"
    curve = learning_curve_markdown(pd.read_csv(path, keep_default_na=False, na_values=[""]))
    return curve + "\n" + paper_runs_code(root)


def paper_runs_code(root: Path) -> str:
    """Per committed paper-length run: its newest checkpoint, the commits and precision its
    training sessions record (training_record.json) and their wall time, and the steps no
    session records (trained before the record existed)."""
    lines = [
        "| run | committed step | trained at | precision | training wall time "
        "| steps without a record |",
        "|---|---:|---|---|---:|---:|",
    ]
    for run_dir in sorted(p for p in (root / PAPER_RUNS_CSV.parent).iterdir() if p.is_dir()):
        steps = [int(p.name[5:-6]) for p in run_dir.glob("checkpoints/ckpt-*.index")]
        step = max(steps, default=0)
        summary = summarize(read_training_record(run_dir))
        unrecorded = step if summary["unrecorded_steps"] is None else summary["unrecorded_steps"]
        config = json.loads((run_dir / "config.json").read_text())
        precisions = ", ".join(summary["precisions"])
        precisions = precisions or f"{config['model']['precision']} (config.json)"
        lines.append(
            f"| {run_dir.name} | {step:,} | {', '.join(summary['commits']) or NOT_RECORDED} "
            f"| {precisions} "
            f"| {minutes(summary['wall_time_s'])} | {unrecorded:,} |"
        )
    return "\n".join(lines) + "\n"


def _run_label(run: str) -> str:
    """wilson_solar_..._BS64_reg_seed1 -> "REG seed 1" (the part after the batch size)."""
    parts = run.split("_BS", 1)[-1].split("_")[1:]
    words = {"reg": "REG", "dreg": "DReG", "fixq": "q(w) fixed"}
    return " ".join(words.get(p, p.replace("seed", "seed ")) for p in parts)


#: campaign.test_ll_breakdown's committed output.
BREAKDOWN_CSV = PAPER_RUNS_CSV.parent / "test_ll_breakdown.csv"
_GROUPS = ("all", "mode", "off-mode")


def test_ll_breakdown_block(root: Path) -> str:
    """Per run, step, precision and S: the mean test log predictive density over all test
    points, over those at the training set's modal target and over the others, each as mean ±
    sd over the repeats (n − 1), with the points per group."""
    path = root / BREAKDOWN_CSV
    if not path.is_file():
        return "(not computed yet: `python experiments/paper_runs.py breakdown --step 100000`)\n"
    df = pd.read_csv(path)
    counts = df[df["repeat"] == 0].groupby("group")["points"].max()
    head = " | ".join(f"{g} ({int(counts.get(g, 0))} points)" for g in _GROUPS)
    lines = [f"| run | step | precision | S | {head} |", "|---|---:|---|---:|---|---|---|"]
    keys = ["run", "step", "precision", "S"]
    for (run, step, precision, S), frame in df.groupby(keys, sort=True):
        cells = []
        for group in _GROUPS:
            values = frame[frame["group"] == group]["mean_lpd"].to_numpy()
            sd = values.std(ddof=1) if values.size > 1 else float("nan")
            cells.append(f"{fmt(values.mean())} ± {sd:.3f}")
        estimator = _run_label(str(run))
        lines.append(
            f"| {estimator} | {int(step):,} | {precision} | {int(S):,} | "
            + " | ".join(cells)
            + " |"
        )
    if df["precision"].nunique() == 2:
        both = df.pivot_table(
            index=["run", "step", "S", "repeat", "group"], columns="precision", values="mean_lpd"
        )
        diff = (both.iloc[:, 0] - both.iloc[:, 1]).abs().max()
        lines.append(
            f"\nLargest difference between the two precisions, over every row: {diff:.1e}."
        )
    return "\n".join(lines) + "\n"
