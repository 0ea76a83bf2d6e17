"""The blocks beside each target's section: Table 1 and Figure 4 beside the paper's means, the
SNR tables and slopes, Figure 8, provenance and the thread layout."""

import json
from pathlib import Path
from typing import Callable, Dict, Optional, Tuple

import numpy as np
import pandas as pd
import scipy.stats

from dgp_snr.report.authors import authors_means, min_two_sided_p, paired_se
from dgp_snr.report.blocks import (
    AUTHORS_CSV,
    NOT_RECORDED,
    PAPER_RUNS_CSV,
    fmt,
    minutes,
    short_name,
)
from dgp_snr.slopes import TOO_FEW_POINTS, curve_slopes


def _data(root: Path, target: str) -> pd.DataFrame:
    return pd.read_csv(root / "reproduction" / target / "data.csv")


def _means(values: pd.Series) -> Tuple[float, float, int]:
    """Mean, standard error (sd with n - 1, / sqrt(n)) and n."""
    values = values.to_numpy(dtype=np.float64)
    return float(values.mean()), paired_se(values), values.size


def _paper_se(values: np.ndarray) -> float:
    """The paper's standard error: sd with n in the denominator (population), / sqrt(n); it
    reproduces every published Table 1 value from the authors' per-run data."""
    return float(np.std(values, ddof=0) / np.sqrt(len(values)))


def table_1_main(root: Path) -> str:
    ours = _data(root, "table_1")
    theirs = authors_means(pd.read_csv(root / AUTHORS_CSV), "table_1_tll")
    lines = [
        "| dataset | REG (ours) | DReG (ours) | splits | REG (paper) | DReG (paper) | n (paper) "
        "| REG: ours − paper | DReG: ours − paper |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for dataset, group in ours.groupby("dataset", sort=False):
        reg = _means(group[group["estimator"] == "reg"]["test_ll"])
        dreg = _means(group[group["estimator"] == "dreg"]["test_ll"])
        paper = theirs.loc[dataset].dropna()
        p_reg, p_dreg = paper[False].to_numpy(), paper[True].to_numpy()
        lines.append(
            f"| {short_name(dataset)} | {fmt(reg[0])} ± {fmt(reg[1], sign=False)} "
            f"| {fmt(dreg[0])} ± {fmt(dreg[1], sign=False)} | {reg[2]} "
            f"| {fmt(p_reg.mean(), 4)} ± {fmt(_paper_se(p_reg), 4, False)} "
            f"| {fmt(p_dreg.mean(), 4)} ± {fmt(_paper_se(p_dreg), 4, False)} | {len(p_reg)} "
            f"| {fmt(reg[0] - p_reg.mean())} | {fmt(dreg[0] - p_dreg.mean())} |"
        )
    elbo = ours.assign(per_point=ours["train_elbo"] / ours["num_train"])
    elbo = elbo.groupby(["dataset", "estimator"], sort=False)["per_point"].mean()
    pairs = ours.pivot_table(index=["dataset", "split"], columns="estimator", values="test_ll")
    d = (pairs["dreg"] - pairs["reg"]).to_numpy()
    two = scipy.stats.wilcoxon(d, alternative="two-sided", method="exact").pvalue
    one = scipy.stats.wilcoxon(d, alternative="greater", method="exact").pvalue
    lines += [
        "",
        "Ours: mean ± standard error over our splits (sd with n − 1); each split is the mean "
        f"of its {int(ours['num_repeats'].iloc[0])} repeats; {int(ours['step'].iloc[0]):,} "
        "iterations. Paper: recomputed from the authors' per-run values (the mean of each "
        "run's 10 repeats) over the n splits they released; its standard error divides the "
        "variance by n (population sd), which reproduces every published value.",
        "",
        "Train ELBO per point (ours, REG / DReG): "
        + ", ".join(
            f"{short_name(ds)} {fmt(elbo[(ds, 'reg')])} / {fmt(elbo[(ds, 'dreg')])}"
            for ds in ours["dataset"].unique()
        )
        + ".",
        "",
        f"Wilcoxon signed-rank test (exact) over our {d.size} (dataset, split) pairs: two-sided "
        f"p = {two:.2f}, one-sided (DReG > REG) p = {one:.2f}; the smallest possible "
        f"two-sided p with {d.size} pairs is {min_two_sided_p(d.size):.3f}.",
    ]
    return "\n".join(lines) + "\n"


def figure_4_main(root: Path) -> str:
    ours = _data(root, "figure_4")
    theirs = authors_means(pd.read_csv(root / AUTHORS_CSV), "figure_4_tll")
    lines = [
        "| dataset | learned (ours) | fixed (ours) | splits | learned (paper) | fixed (paper) "
        "| splits (paper) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for dataset, group in ours.groupby("dataset", sort=False):
        learned = group[group["qw"] == "learned"]["test_ll"]
        fixed = group[group["qw"] == "fixed"]["test_ll"]
        paper = theirs.loc[dataset].dropna()
        lines.append(
            f"| {short_name(dataset)} | {fmt(learned.mean())} | {fmt(fixed.mean())} "
            f"| {len(learned)} "
            f"| {fmt(paper[False].mean(), 2)} | {fmt(paper[True].mean(), 2)} | {len(paper)} |"
        )
    lines += [
        "",
        "Means over splits. Paper: the means of the authors' released Figure 4 values (one "
        "evaluation per run), which give the published numbers.",
    ]
    return "\n".join(lines) + "\n"


def _snr_table(
    df: pd.DataFrame, rows: str, columns: str, digits: int = 3, label: Callable = None
) -> str:
    table = df.groupby([rows, columns])["snr"].mean().unstack(columns)
    head = f"| {rows} | " + " | ".join(str(c) for c in table.columns) + " |"
    lines = [head, "|---|" + "---:|" * len(table.columns)]
    label_of = label or (lambda k: LABELS.get(k, k))
    for key, row in table.iterrows():
        lines.append(
            f"| {label_of(key)} | " + " | ".join(fmt(v, digits, False) for v in row) + " |"
        )
    return "\n".join(lines) + "\n"


LABELS = {"reg": "REG", "dreg": "DReG"}


def figure_1_snr(root: Path) -> str:
    df = _data(root, "figure_1")
    # Mean SNR over the encoder weights per estimator and K (each weight already averaged over
    # the data points).
    table = _snr_table(df, "estimator", "K")
    n_weights = df.groupby(["estimator", "K"])["parameter"].nunique().iloc[0]
    return (
        f"Mean SNR over all {n_weights} encoder weights (each averaged over "
        f"{int(df['num_datapoints'].iloc[0])} data points, {int(df['num_estimates'].iloc[0])} "
        f"estimates per dump), by K:\n\n" + table
    )


def figure_2_snr(root: Path) -> str:
    df = _data(root, "figure_2")
    stats = df.groupby(["estimator", "K"])["sample"].agg(["mean", "std", "count"])
    stats["snr"] = stats["mean"].abs() / stats["std"]
    parameter = df["parameter"].iloc[0]
    table = _snr_table(stats.reset_index(), "estimator", "K")
    return (
        f"SNR |mean| / sd (sd with n − 1) of encoder weight {parameter}'s "
        f"{df['quantity'].iloc[0]} gradient, {int(stats['count'].iloc[0]):,} estimates each:\n\n"
        + table
    )


def figure_9_snr(root: Path) -> str:
    df = _data(root, "figure_9")
    df = df[df["estimator"] == "reg"]
    table = _snr_table(df, "batch_size", "K", label=lambda b: f"batch {b}")
    return "REG mean SNR over the encoder weights:\n\n" + table


def figure_8_snr(root: Path) -> str:
    """Mean SNR per dataset and estimator, with its standard error (± snr_se, the export's
    snr_se_method) where the data have one."""
    return _figure_8_table(_data(root, "figure_8"))


def paper_runs_figure_8(root: Path) -> str:
    """Figure 8's table at the paper-length REG run's final checkpoint (dgp_snr.campaign)."""
    path = root / PAPER_RUNS_CSV.parent / "figure_8" / "data.csv"
    if not path.is_file():
        return "(not sampled yet: `python experiments/paper_runs.py figure_8`)\n"
    meta = json.loads((path.parent / "meta.json").read_text())
    df = pd.read_csv(path)
    commit = str(meta.get("git_commit") or NOT_RECORDED)[:7]
    estimates = ", ".join(f"{n:,}" for n in sorted(df["num_estimates"].unique()))
    return (
        _figure_8_table(df)
        + f"\nThe REG run's checkpoint at {meta['figure_params']['iterations']:,} iterations, "
        f"{estimates} estimates per estimator; sampled in {minutes(meta.get('wall_time_s'))}, "
        f"exported at {commit}.\n"
    )


def _figure_8_table(df: pd.DataFrame) -> str:
    table = df.groupby(["dataset", "estimator"])["snr"].mean().unstack("estimator")
    se = None
    if "snr_se" in df:
        se = df.groupby(["dataset", "estimator"])["snr_se"].mean().unstack("estimator")

    def cell(dataset: str, estimator: str) -> str:
        value = fmt(table.loc[dataset, estimator], 3, False)
        return value if se is None else f"{value} ± {se.loc[dataset, estimator]:.3f}"

    lines = ["| dataset | REG | DReG | DReG / REG |", "|---|---:|---:|---:|"]
    for dataset, row in table.iterrows():
        lines.append(
            f"| {short_name(dataset)} | {cell(dataset, 'reg')} | {cell(dataset, 'dreg')} "
            f"| {fmt(row['dreg'] / row['reg'], 1, False)} |"
        )
    if se is not None:
        lines.append(f"\n± one standard error: {df['snr_se_method'].iloc[0]}.")
    return "\n".join(lines) + "\n"


def runs_trained_with(runs: Optional[Dict[str, Dict]]) -> Tuple[str, str, str]:
    """(commits, precisions, training wall time) over a target's runs as meta.json's "runs"
    records them (reproduction.training_records); "not recorded" where a run has no record."""
    if not runs:
        return NOT_RECORDED, NOT_RECORDED, NOT_RECORDED
    summaries = list(runs.values())
    unrecorded = sum(1 for s in summaries if not s["commits"] or s["unrecorded_steps"])
    commits = list(dict.fromkeys(c for s in summaries for c in s["commits"]))
    precisions = list(dict.fromkeys(p for s in summaries for p in s["precisions"]))
    note = f" ({unrecorded} of {len(summaries)} runs partly {NOT_RECORDED})" if unrecorded else ""
    wall = sum(s["wall_time_s"] or 0.0 for s in summaries)
    return (
        (", ".join(commits) or "-") + note,
        ", ".join(map(str, precisions)) or "-",
        minutes(wall) + f" over {len(summaries)} runs",
    )


def provenance(root: Path) -> str:
    """Per target: the command, the commit of the exporting code, the wall time and the date,
    as each meta.json records them; and the commits, precision and training wall time of the
    runs its data came from (exports before runs recorded their code: "not recorded", with the
    sweep's precision setting where the export names it)."""
    lines = [
        "| target | command | exported at | wall time | date | runs trained at | precision "
        "| training wall time |",
        "|---|---|---|---:|---|---|---|---|",
    ]
    for meta_path in sorted((root / "reproduction").glob("*/meta.json")):
        meta = json.loads(meta_path.read_text())
        commits, precisions, training = runs_trained_with(meta.get("runs"))
        setting = meta.get("figure_params", {}).get("settings", {}).get("precision")
        if precisions == NOT_RECORDED and setting:
            precisions = f"{setting} (sweep setting)"
        lines.append(
            f"| {meta.get('target', meta_path.parent.name)} | `{meta.get('command')}` "
            f"| {str(meta.get('git_commit'))[:7]} | {minutes(meta.get('wall_time_s'))} "
            f"| {str(meta.get('date'))[:10]} | {commits} | {precisions} | {training} |"
        )
    return "\n".join(lines) + "\n"


def slopes_block(target: str) -> Callable[[Path], str]:
    """The log-log slopes of a target's SNR-vs-K curves over the declared K ranges
    (slopes.SLOPE_RANGES), as slopes.curve_slopes fits them."""

    def block(root: Path) -> str:
        fits = curve_slopes(_data(root, target))
        columns = list(fits[0][0]) if fits else []
        head = "| " + " | ".join(columns + ["estimator", "K range", "values of K", "slope"])
        lines = [head + " | 95% CI |", "|" + "---|" * (len(columns) + 5)]
        for curve, fit in fits:
            cells = [short_name(str(curve[c])) for c in columns]
            cells += [LABELS.get(fit.estimator, fit.estimator), fit.k_range, fit.describe_ks()]
            if fit.too_few:
                cells += [TOO_FEW_POINTS, "-"]
            else:
                cells += [
                    fmt(fit.slope),
                    f"[{fmt(fit.ci_low)}, {fmt(fit.ci_high)}] ({fit.dof} df)",
                ]
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines) + "\n"

    return block


THREAD_LAYOUT_JSON = Path("benchmarks") / "measured" / "thread_layout_cpu_2026-12-03.json"


def thread_layout(root: Path) -> str:
    m = json.loads((root / THREAD_LAYOUT_JSON).read_text())
    two = m["two_x1_it_per_s"]
    return (
        f"`{m['command']}` on {m['machine']} ({m['dataset']}, {m['precision']} precision, "
        f"{m['steps']} timed steps; [`{THREAD_LAYOUT_JSON.name}`](../{THREAD_LAYOUT_JSON})): "
        f"one training with 2 threads {m['one_x2_it_per_s']:.1f} it/s; two trainings with 1 "
        f"thread each {two[0]:.1f} and {two[1]:.1f} it/s, {m['two_x1_total_over_one_x2']:.2f}x "
        f"the throughput; projected {m['campaign_hours_two_x1']:.1f} h against "
        f"{m['campaign_hours_one_x2']:.1f} h for the three 300,000-iteration runs on an idle "
        "machine.\n"
    )
