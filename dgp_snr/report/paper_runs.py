"""The paper-length runs' blocks: the learning-curve table and each committed run's recorded
code (dgp_snr.campaign writes what they read)."""

import json
from pathlib import Path
from typing import Tuple

import numpy as np
import pandas as pd

from dgp_snr.report.blocks import (
    AUTHORS_CSV,
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
        setting = f"{_estimator_label(row.estimator)}, q(w) {row.qw}"
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
    folders = (root / PAPER_RUNS_CSV.parent).iterdir()  # figure_8/ beside the runs: no config
    for run_dir in sorted(p for p in folders if (p / "config.json").is_file()):
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


_WORDS = {"reg": "REG", "dreg": "DReG", "fixq": "q(w) fixed"}


def _estimator_label(estimator: str) -> str:
    return _WORDS.get(estimator, estimator)


def _run_label(run: str) -> str:
    """wilson_solar_..._BS64_reg_seed1 -> "REG seed 1" (the part after the batch size)."""
    parts = run.split("_BS", 1)[-1].split("_")[1:]
    return " ".join(_WORDS.get(p, p.replace("seed", "seed ")) for p in parts)


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
    lines += _off_mode_needed(df, root / PAPER_RUNS_CSV)
    return "\n".join(lines) + "\n"


#: The protocol's number of predictive samples (the breakdown rows the next lines read).
PROTOCOL_S = 10_000


def _off_mode_needed(df: pd.DataFrame, curve_path: Path) -> list:
    """Per run and step: the mean lpd the off-mode points would need for the whole mean to
    reach the authors' value, the modal points scoring as they do (protocol S, mixed)."""
    if not curve_path.is_file():
        return []
    curve = pd.read_csv(curve_path, keep_default_na=False, na_values=[""])
    authors = curve.drop_duplicates("run").set_index("run")["authors_test_ll"]
    precision = "mixed" if "mixed" in set(df["precision"]) else df["precision"].iloc[0]
    rows = df[(df["S"] == PROTOCOL_S) & (df["precision"] == precision)]
    if rows.empty:
        return []
    out = [
        f"\nThe off-mode mean lpd that would bring the mean to the authors' value for the same "
        f"split, the modal points scoring as here ({precision}, "
        f"S = {PROTOCOL_S:,}): ((authors' × all) − (mode × its points)) / off-mode points."
    ]
    by_group = rows.groupby(["run", "step", "group"])["mean_lpd"].mean().unstack("group")
    out.append(
        f"\nOver the {len(by_group)} (run, step) rows: the modal points' mean lpd ranges "
        f"{fmt(by_group['mode'].min())} to {fmt(by_group['mode'].max())}, the off-mode "
        f"points' {fmt(by_group['off-mode'].min())} to {fmt(by_group['off-mode'].max())}.\n"
    )
    for (run, step), frame in rows.groupby(["run", "step"], sort=True):
        reference = authors.get(run)
        if reference is None or not np.isfinite(reference):
            continue
        means = frame.groupby("group")["mean_lpd"].mean()
        points = frame.groupby("group")["points"].max()
        needed = (reference * points["all"] - means["mode"] * points["mode"]) / points["off-mode"]
        out.append(
            f"- {_run_label(str(run))} at {int(step):,}: needs {fmt(needed)}, has "
            f"{fmt(means['off-mode'])} (authors' {fmt(reference)}, mode {fmt(means['mode'])})."
        )
    return out


#: How far (nats) a paper-length run may sit from the authors' value before issue 18 asks why.
GAP_TO_EXPLAIN = 0.3


def authors_quantity(estimator: str, qw: str) -> Tuple[str, bool]:
    """(quantity, flag) of the authors' figure_data.csv for a setting: Table 1 for REG / DReG
    with learned q(w), Figure 4's fixed-q(w) arm for q(w) fixed to the prior."""
    if qw == "fixed":
        return "figure_4_tll", True
    return "table_1_tll", estimator == "dreg"


def authors_repeats(authors: pd.DataFrame, dataset: str, estimator: str, qw: str) -> pd.DataFrame:
    """The authors' released rows (split, repeat, value, ...) for one dataset and setting."""
    quantity, flag = authors_quantity(estimator, qw)
    return authors[
        (authors["quantity"] == quantity) & (authors["dataset"] == dataset)
        & (authors["flag"] == flag)
    ]  # fmt: skip


def _authors_splits(authors: pd.DataFrame, dataset: str, estimator: str, qw: str) -> pd.Series:
    """The authors' released value per split (mean over its repeats) for one setting."""
    return authors_repeats(authors, dataset, estimator, qw).groupby("split")["value"].mean()


def paper_runs_findings(root: Path) -> str:
    """Per paper-length run at its newest evaluated step: the gain over the previous evaluated
    step, the gap to the authors' value for the same split and setting (flagged beyond
    GAP_TO_EXPLAIN), and where the value falls among the authors' values of that setting over
    all their released splits (their split-to-split spread: other data, other seed); then the
    REG − DReG order against the authors' on the same split, and seed-to-seed differences."""
    path = root / PAPER_RUNS_CSV
    if not path.is_file():
        return "(no paper-length evaluation committed yet)\n"
    curve = pd.read_csv(path, keep_default_na=False, na_values=[""])
    authors = pd.read_csv(root / AUTHORS_CSV)
    lines = [
        "| dataset | run | newest step | test LL | gain since the previous step "
        "| authors' (same split) "
        f"| ours − authors' | beyond {GAP_TO_EXPLAIN}? | authors' over their splits: "
        "min / median / max (n) | authors' splits below ours |",
        "|---|---|---:|---|---|---|---:|---|---|---|",
    ]
    for (dataset, run), df in curve.groupby(["dataset", "run"], sort=True):
        df = df.sort_values("step")
        last = df.iloc[-1]
        gain = "-" if len(df) < 2 else (
            f"{fmt(last.test_ll_mean - df.iloc[-2].test_ll_mean)} "
            f"(from {int(df.iloc[-2].step):,})"
        )  # fmt: skip
        spread = _authors_splits(authors, last.dataset, last.estimator, last.qw)
        below = int((spread < last.test_ll_mean).sum())
        beyond = "-" if not np.isfinite(last.gap_to_authors) else (
            "**yes**" if abs(last.gap_to_authors) > GAP_TO_EXPLAIN else "no"
        )  # fmt: skip
        lines.append(
            f"| {dataset} | {_run_label(run)} | {int(last.step):,} | {fmt(last.test_ll_mean)} "
            f"| {gain} "
            f"| {fmt(last.authors_test_ll)} | {fmt(last.gap_to_authors)} | {beyond} "
            f"| {fmt(spread.min())} / {fmt(spread.median())} / {fmt(spread.max())} "
            f"({spread.size}) | {below} of {spread.size} |"
        )
    lines.append("")
    lines += _order_and_seeds(curve, authors)
    lines.append(_schedule_line(root, curve))
    return "\n".join(lines) + "\n"


def _schedule_line(root: Path, curve: pd.DataFrame) -> str:
    """Where the runs' step-size schedules stand at the evaluated steps (from config.json)."""
    run = sorted(curve["run"])[0]
    training = json.loads((root / PAPER_RUNS_CSV.parent / run / "config.json").read_text())
    training = training["training"]
    decays = {training[k] for k in ("lr_decay", "encoder_lr_decay", "gamma_decay")}
    if len(decays) != 1:
        return "(the runs' step sizes decay at different rates)\n"
    decay, every = decays.pop(), int(training["decay_steps"])
    steps = sorted(int(s) for s in curve["step"].unique())[-2:]
    at = ", ".join(f"{100 * decay ** (s // every):.2g}% at {s:,}" for s in steps)
    return (
        f"Step sizes (Adam's lr, the encoder's lr, the natural-gradient γ) are multiplied by "
        f"{decay} every {every:,} steps (staircase): they stand at {at} of their start.\n"
    )


def _order_and_seeds(curve: pd.DataFrame, authors: pd.DataFrame) -> list:
    out = []
    for dataset, frame in curve.groupby("dataset", sort=True):
        out += _order_and_seeds_of(dataset, frame, authors)
    if not out:
        out.append("(no second seed evaluated yet)")
    return [line + "\n" for line in out]


def _order_and_seeds_of(dataset: str, curve: pd.DataFrame, authors: pd.DataFrame) -> list:
    """The REG − DReG order and the seed-to-seed spread of one dataset's runs."""
    out = []
    learned = curve[(curve["qw"] == "learned") & (curve["seed"] == curve["split"])]
    both = learned.pivot_table(index="step", columns="estimator", values="test_ll_mean")
    both = both.dropna()
    if {"reg", "dreg"} <= set(both.columns) and not both.empty:
        step = int(both.index.max())
        ours = both.loc[step, "reg"] - both.loc[step, "dreg"]
        row = learned[learned["step"] == step].set_index("estimator")
        theirs = row.loc["reg", "authors_test_ll"] - row.loc["dreg", "authors_test_ll"]
        split = int(row["split"].iloc[0])
        out.append(
            f"{dataset} split {split}, REG − DReG at {step:,} (seed = split): ours {fmt(ours)}, "
            f"the authors' {fmt(theirs)} on the same split; the order "
            f"{'agrees' if np.sign(ours) == np.sign(theirs) else 'is the opposite'}."
        )
        pairs = (
            _authors_splits(authors, dataset, "reg", "learned")
            - _authors_splits(authors, dataset, "dreg", "learned")
        ).dropna()
        if not pairs.empty:
            same = int((np.sign(pairs) == np.sign(ours)).sum())
            out.append(
                f"The authors' REG − DReG on {dataset} over their {pairs.size} paired splits: "
                f"min {fmt(pairs.min())}, median {fmt(pairs.median())}, max {fmt(pairs.max())}; "
                f"{same} of {pairs.size} have the order ours has here."
            )
    for (estimator, qw), df in curve.groupby(["estimator", "qw"]):
        by_seed = df.pivot_table(index="step", columns="seed", values="test_ll_mean").dropna()
        if by_seed.shape[1] < 2 or by_seed.empty:
            continue
        step = int(by_seed.index.max())
        values = by_seed.loc[step]
        gaps = df[df["step"] == step].set_index("seed")["gap_to_authors"]
        seeds = ", ".join(
            f"seed {int(s)} {fmt(v)}"
            + (f" ({fmt(gaps[s])} from the authors')" if np.isfinite(gaps[s]) else "")
            for s, v in values.items()
        )
        out.append(
            f"Seeds of {_estimator_label(estimator)}, q(w) {qw} on {dataset} at {step:,}: "
            f"{seeds}; spread (max − min) {fmt(values.max() - values.min(), sign=False)}."
        )
    return out
