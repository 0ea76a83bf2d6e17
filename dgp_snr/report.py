"""REPRODUCTION.md's generated blocks: every table between a pair of markers

    <!-- generated: NAME (python experiments/report.py --markdown) -->
    ...
    <!-- end: NAME -->

is written from committed CSVs by `render_blocks`, so no number in them is typed by hand and a
test can regenerate the report and compare (tests/test_report.py).

Blocks: `table_1_splits` and `figure_4_splits` (each of our reduced runs beside the authors'
released value for the same dataset, split and setting, with paired differences and paired
standard errors), `wilcoxon_power` (how many splits a Wilcoxon signed-rank test needs to see
the paper's solar REG/DReG difference) and `paper_runs` (dgp_snr.campaign).
"""

import json
import os
import re
from pathlib import Path
from typing import Callable, Dict, Tuple

import numpy as np
import pandas as pd
import scipy.stats

from dgp_snr.io import atomic_write_text
from dgp_snr.slopes import TOO_FEW_POINTS, curve_slopes

REPORT_FILE = Path("reproduction") / "REPRODUCTION.md"
AUTHORS_CSV = Path("reproduction") / "authors" / "figure_data.csv"
#: The paper-length runs' evaluations (written by dgp_snr.campaign).
PAPER_RUNS_CSV = Path("reproduction") / "paper_runs" / "learning_curve.csv"
_BLOCK = re.compile(
    r"(<!-- generated: (?P<name>[a-z0-9_]+) \(python experiments/report.py --markdown\) -->\n)"
    r"(?P<body>.*?)"
    r"(<!-- end: (?P=name) -->)",
    re.DOTALL,
)


def begin_marker(name: str) -> str:
    return f"<!-- generated: {name} (python experiments/report.py --markdown) -->"


def end_marker(name: str) -> str:
    return f"<!-- end: {name} -->"


def fill_blocks(text: str, blocks: Dict[str, str]) -> str:
    """`text` with the body of each named block replaced. Raises ValueError for a block that
    `text` lacks, or a block in `text` with no generator."""
    found = {m.group("name") for m in _BLOCK.finditer(text)}
    if set(blocks) - found:
        raise ValueError(f"the report has no markers for {sorted(set(blocks) - found)}")
    if found - set(blocks):
        raise ValueError(f"no generator for the report's blocks {sorted(found - set(blocks))}")

    def body(match: "re.Match[str]") -> str:
        return match.group(1) + blocks[match.group("name")] + match.group(4)

    return _BLOCK.sub(body, text)


def block_bodies(text: str) -> Dict[str, str]:
    return {m.group("name"): m.group("body") for m in _BLOCK.finditer(text)}


# ----------------------------------------------------------------------------- formatting
def _f(value: float, digits: int = 3, sign: bool = True) -> str:
    if value is None or not np.isfinite(value):
        return "-"
    return f"{value:+.{digits}f}" if sign else f"{value:.{digits}f}"


def _short(dataset: str) -> str:
    return dataset.replace("wilson_", "")


def _agrees(ours: float, theirs: float) -> str:
    if not (np.isfinite(ours) and np.isfinite(theirs)):
        return "-"
    return "yes" if np.sign(ours) == np.sign(theirs) else "**no**"


def paired_se(differences: np.ndarray) -> float:
    """Standard error of the mean paired difference: sd (n - 1) / sqrt(n)."""
    differences = np.asarray(differences, dtype=np.float64)
    if differences.size < 2:
        return np.nan
    return float(differences.std(ddof=1) / np.sqrt(differences.size))


# ------------------------------------------------------------------------ authors' values
def authors_means(authors: pd.DataFrame, quantity: str) -> pd.DataFrame:
    """[dataset, split] x flag (False / True): the mean over each run's released repeats."""
    rows = authors[authors["quantity"] == quantity]
    return rows.groupby(["dataset", "split", "flag"])["value"].mean().unstack("flag")


# ---------------------------------------------------------------------------- the blocks
def _pair_table(
    ours: pd.DataFrame, theirs: pd.DataFrame, first: str, second: str, labels: Tuple[str, str]
) -> str:
    """Per split: each setting's value, ours and the authors', the gap, and the paired
    difference second - first for both, with whether the orders agree; then per dataset the
    mean paired difference ± paired SE over our splits, ours and the authors' on the same
    splits."""
    a, b = labels
    lines = [
        f"| dataset | split | {a} (ours) | {a} (authors) | gap | {b} (ours) | {b} (authors) "
        f"| gap | {b} − {a} (ours) | {b} − {a} (authors) | same order |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    summary = []
    for dataset, group in ours.groupby("dataset", sort=False):
        diffs_ours, diffs_theirs = [], []
        for split, row in group.groupby("split")[[first, second]].first().iterrows():
            ref = (
                theirs.loc[(dataset, split)]
                if (dataset, split) in theirs.index
                else pd.Series({False: np.nan, True: np.nan})
            )
            ours_d = row[second] - row[first]
            theirs_d = ref[True] - ref[False]
            diffs_ours.append(ours_d)
            diffs_theirs.append(theirs_d)
            lines.append(
                f"| {_short(dataset)} | {split} | {_f(row[first])} | {_f(ref[False])} "
                f"| {_f(row[first] - ref[False])} | {_f(row[second])} | {_f(ref[True])} "
                f"| {_f(row[second] - ref[True])} | {_f(ours_d)} | {_f(theirs_d)} "
                f"| {_agrees(ours_d, theirs_d)} |"
            )
        d_ours, d_theirs = np.array(diffs_ours), np.array(diffs_theirs)
        summary.append(
            f"| {_short(dataset)} | {d_ours.size} | {_f(d_ours.mean())} ± "
            f"{_f(paired_se(d_ours), sign=False)} | {_f(np.nanmean(d_theirs))} ± "
            f"{_f(paired_se(d_theirs[np.isfinite(d_theirs)]), sign=False)} |"
        )
    lines += [
        "",
        f"Mean paired difference {b} − {a} over the same splits (± paired standard error, "
        "sd with n − 1 over the splits' differences / √n):",
        "",
        "| dataset | splits | ours | authors (same splits) |",
        "|---|---:|---:|---:|",
        *summary,
    ]
    return "\n".join(lines) + "\n"


def table_1_splits(root: Path) -> str:
    ours = pd.read_csv(root / "reproduction" / "table_1" / "data.csv")
    wide = ours.pivot_table(index=["dataset", "split"], columns="estimator", values="test_ll")
    wide = wide.reset_index()
    theirs = authors_means(pd.read_csv(root / AUTHORS_CSV), "table_1_tll")
    return _pair_table(wide, theirs, "reg", "dreg", ("REG", "DReG"))


def figure_4_splits(root: Path) -> str:
    ours = pd.read_csv(root / "reproduction" / "figure_4" / "data.csv")
    wide = ours.pivot_table(index=["dataset", "split"], columns="qw", values="test_ll")
    wide = wide.reset_index()
    theirs = authors_means(pd.read_csv(root / AUTHORS_CSV), "figure_4_tll")
    # The authors' flag is True for fixed q(w): "second - first" is fixed - learned.
    return _pair_table(wide, theirs, "learned", "fixed", ("learned q(w)", "fixed q(w)"))


#: Power analysis: the test, its level and the power asked for; splits tried; Monte Carlo draws.
POWER_ALPHA, POWER_TARGET = 0.05, 0.80
POWER_SPLITS = (2, 3, 4, 6, 8, 10, 12, 15, 20, 25, 30, 40, 50)
POWER_DRAWS, POWER_SEED = 2000, 20211
POWER_DATASET = "wilson_solar"


#: Up to this many splits the signed-rank p is exact (all 2^n sign flips of the ranks).
EXACT_UP_TO = 14


def signed_rank_p(d: np.ndarray) -> np.ndarray:
    """Two-sided Wilcoxon signed-rank p-values of the rows of `d` [draws, n] (zeros dropped
    as in scipy's "wilcox" method would change n per row, so a zero counts as rank with no
    sign). Exact permutation p (average ranks for ties) for n <= EXACT_UP_TO, else the normal
    approximation with the tie-corrected variance."""
    draws, n = d.shape
    ranks = scipy.stats.rankdata(np.abs(d), axis=1)  # average ranks for ties
    signs = np.sign(d)
    w = np.sum(ranks * signs, axis=1)  # W+ - W-, mean 0 under the null
    if n <= EXACT_UP_TO:
        flips = 1 - 2 * ((np.arange(2**n)[:, None] >> np.arange(n)) & 1)  # [2^n, n] of +-1
        null = (ranks * np.abs(signs)) @ flips.T  # [draws, 2^n]
        return np.mean(np.abs(null) >= np.abs(w)[:, None] - 1e-9, axis=1)
    nonzero = np.abs(signs) * ranks
    var = np.sum(nonzero**2, axis=1)  # the variance of W+ - W- given the ranks
    z = np.abs(w) / np.sqrt(np.where(var > 0, var, np.inf))
    return 2 * scipy.stats.norm.sf(z)


def wilcoxon_power(differences: np.ndarray, n: int, draws: int, seed: int) -> float:
    """Power of the two-sided Wilcoxon signed-rank test at POWER_ALPHA with n splits whose
    paired differences are drawn with replacement from `differences` (the authors' splits as
    the population)."""
    rng = np.random.default_rng([seed, n])
    sample = rng.choice(np.asarray(differences, dtype=np.float64), size=(draws, n))
    return float(np.mean(signed_rank_p(sample) < POWER_ALPHA))


def min_two_sided_p(n: int) -> float:
    """The smallest two-sided p of an exact Wilcoxon signed-rank test on n pairs: 2 / 2^n."""
    return min(1.0, 2.0 / 2.0**n)


def wilcoxon_power_block(root: Path) -> str:
    theirs = authors_means(pd.read_csv(root / AUTHORS_CSV), "table_1_tll").dropna()
    d = (theirs[True] - theirs[False]).loc[POWER_DATASET].to_numpy()
    ours = pd.read_csv(root / "reproduction" / "table_1" / "data.csv")
    n_ours = int(ours.groupby(["dataset", "split"]).ngroups)
    powers = {n: wilcoxon_power(d, n, POWER_DRAWS, POWER_SEED) for n in POWER_SPLITS}
    enough = [n for n, power in powers.items() if power >= POWER_TARGET]
    needed = f"{enough[0]}" if enough else f"more than {POWER_SPLITS[-1]}"
    lines = [
        f"The authors' {d.size} {_short(POWER_DATASET)} splits give DReG − REG differences with "
        f"mean {_f(d.mean())} and standard deviation {_f(d.std(ddof=1), sign=False)} (n − 1). "
        f"Drawing n splits with replacement from them ({POWER_DRAWS:,} draws per n, seed "
        f"{POWER_SEED}), a two-sided Wilcoxon signed-rank test at α = {POWER_ALPHA} (exact "
        f"up to {EXACT_UP_TO} splits, normal approximation above) detects the difference "
        f"with probability:",
        "",
        "| splits n | power | smallest possible two-sided p |",
        "|---:|---:|---:|",
        *(f"| {n} | {p:.2f} | {min_two_sided_p(n):.2g} |" for n, p in powers.items()),
        "",
        f"So {needed} splits of solar are needed for {POWER_TARGET:.0%} power. Our Table 1 has "
        f"{n_ours} (dataset, split) pairs in all; its smallest possible two-sided p is "
        f"{min_two_sided_p(n_ours):.3g}. A p-value above that says nothing about equivalence.",
    ]
    return "\n".join(lines) + "\n"


def learning_curve_markdown(curve: pd.DataFrame) -> str:
    """The report's table, generated from learning_curve.csv alone."""
    lines = [
        "| run | precision | step | test LL (± SE) | train ELBO / point (± SE) "
        "| authors' (same split: run, repeats) | ours − authors' |",
        "|---|---|---:|---|---|---|---:|",
    ]
    for row in curve.itertuples(index=False):
        tll = f"{_f(row.test_ll_mean)} ± {row.test_ll_se:.3f}"
        elbo = f"{_f(row.elbo_per_point_mean)} ± {row.elbo_per_point_se:.3f}"
        authors = (
            "-" if not row.authors_source
            else f"{_f(row.authors_test_ll)} ({row.authors_source})"
        )  # fmt: skip
        setting = f"{row.estimator.upper().replace('DREG', 'DReG')}, q(w) {row.qw}"
        lines.append(
            f"| {row.dataset} split {row.split}, {setting} | {row.precision} | {row.step:,} "
            f"| {tll} | {elbo} | {authors} | {_f(row.gap_to_authors)} |"
        )
    return "\n".join(lines) + "\n"


def _paper_runs(root: Path) -> str:
    path = root / PAPER_RUNS_CSV
    if not path.is_file():
        return "(no paper-length evaluation committed yet)\n"
    return learning_curve_markdown(pd.read_csv(path, keep_default_na=False, na_values=[""]))


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
            f"| {_short(dataset)} | {_f(reg[0])} ± {_f(reg[1], sign=False)} "
            f"| {_f(dreg[0])} ± {_f(dreg[1], sign=False)} | {reg[2]} "
            f"| {_f(p_reg.mean(), 4)} ± {_f(_paper_se(p_reg), 4, False)} "
            f"| {_f(p_dreg.mean(), 4)} ± {_f(_paper_se(p_dreg), 4, False)} | {len(p_reg)} "
            f"| {_f(reg[0] - p_reg.mean())} | {_f(dreg[0] - p_dreg.mean())} |"
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
            f"{_short(ds)} {_f(elbo[(ds, 'reg')])} / {_f(elbo[(ds, 'dreg')])}"
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
            f"| {_short(dataset)} | {_f(learned.mean())} | {_f(fixed.mean())} | {len(learned)} "
            f"| {_f(paper[False].mean(), 2)} | {_f(paper[True].mean(), 2)} | {len(paper)} |"
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
            f"| {label_of(key)} | " + " | ".join(_f(v, digits, False) for v in row) + " |"
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
    df = _data(root, "figure_8")
    table = df.groupby(["dataset", "estimator"])["snr"].mean().unstack("estimator")
    lines = ["| dataset | REG | DReG | DReG / REG |", "|---|---:|---:|---:|"]
    for dataset, row in table.iterrows():
        lines.append(
            f"| {_short(dataset)} | {_f(row['reg'], 3, False)} | {_f(row['dreg'], 3, False)} "
            f"| {_f(row['dreg'] / row['reg'], 1, False)} |"
        )
    return "\n".join(lines) + "\n"


def provenance(root: Path) -> str:
    """Per target: the command, the commit of the exporting code, the wall time and the date,
    as each meta.json records them."""
    lines = ["| target | command | exported at | wall time | date |", "|---|---|---|---:|---|"]
    for meta_path in sorted((root / "reproduction").glob("*/meta.json")):
        meta = json.loads(meta_path.read_text())
        wall = meta.get("wall_time_s")
        wall = "-" if wall is None else f"{int(wall // 60)} min {int(round(wall % 60))} s"
        lines.append(
            f"| {meta.get('target', meta_path.parent.name)} | `{meta.get('command')}` "
            f"| {str(meta.get('git_commit'))[:7]} | {wall} | {str(meta.get('date'))[:10]} |"
        )
    return "\n".join(lines) + "\n"


def _slopes(target: str) -> Callable[[Path], str]:
    """The log-log slopes of a target's SNR-vs-K curves over the declared K ranges
    (slopes.SLOPE_RANGES), as slopes.curve_slopes fits them."""

    def block(root: Path) -> str:
        fits = curve_slopes(_data(root, target))
        columns = list(fits[0][0]) if fits else []
        head = "| " + " | ".join(columns + ["estimator", "K range", "values of K", "slope"])
        lines = [head + " | 95% CI |", "|" + "---|" * (len(columns) + 5)]
        for curve, fit in fits:
            cells = [_short(str(curve[c])) for c in columns]
            cells += [LABELS.get(fit.estimator, fit.estimator), fit.k_range, fit.describe_ks()]
            if fit.too_few:
                cells += [TOO_FEW_POINTS, "-"]
            else:
                cells += [_f(fit.slope), f"[{_f(fit.ci_low)}, {_f(fit.ci_high)}] ({fit.dof} df)"]
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


GENERATORS: Dict[str, Callable[[Path], str]] = {
    "thread_layout": thread_layout,
    "figure_1_slopes": _slopes("figure_1"),
    "figure_3_slopes": _slopes("figure_3"),
    "figure_9_slopes": _slopes("figure_9"),
    "provenance": provenance,
    "figure_1_snr": figure_1_snr,
    "figure_2_snr": figure_2_snr,
    "figure_9_snr": figure_9_snr,
    "table_1_main": table_1_main,
    "figure_4_main": figure_4_main,
    "figure_8_snr": figure_8_snr,
    "table_1_splits": table_1_splits,
    "figure_4_splits": figure_4_splits,
    "wilcoxon_power": wilcoxon_power_block,
    "paper_runs": _paper_runs,
}


def render_blocks(root: os.PathLike = ".") -> Dict[str, str]:
    root = Path(root)
    return {name: make(root) for name, make in GENERATORS.items()}


def write_report(root: os.PathLike = ".") -> Path:
    """Regenerates every block of REPRODUCTION.md in place."""
    path = Path(root) / REPORT_FILE
    atomic_write_text(path, fill_blocks(path.read_text(), render_blocks(root)))
    return path
