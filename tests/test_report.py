"""REPRODUCTION.md's generated blocks: the statistics against scipy, the markers, and the
committed report against what the committed CSVs give."""

import json
from pathlib import Path

import numpy as np
import pytest
import scipy.stats

from dgp_snr import report

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("n, method", [(5, "exact"), (12, "exact"), (20, "approx")])
def test_signed_rank_p_values_are_scipys(n, method):
    d = np.random.default_rng(n).normal(0.4, 1.0, size=(40, n))
    expected = [scipy.stats.wilcoxon(row, method=method, correction=False).pvalue for row in d]
    np.testing.assert_allclose(report.signed_rank_p(d), expected, rtol=1e-10, atol=1e-12)


def test_power_rises_with_the_number_of_splits_and_is_alpha_without_a_difference():
    shifted = np.random.default_rng(0).normal(0.5, 1.0, size=200)
    powers = [report.wilcoxon_power(shifted, n, 1000, 0) for n in (6, 20, 40)]
    assert powers[0] < powers[1] < powers[2]
    # Symmetric about 0: rejections at most alpha, up to 4 binomial standard errors.
    null = np.concatenate([shifted - shifted.mean(), shifted.mean() - shifted])
    size = report.wilcoxon_power(null, 20, 2000, 1)
    assert size <= report.POWER_ALPHA + 4 * np.sqrt(0.05 * 0.95 / 2000)


def test_the_smallest_two_sided_p_of_n_pairs():
    assert report.min_two_sided_p(6) == pytest.approx(0.03125)  # 2 / 64: the 0.031
    assert report.min_two_sided_p(1) == 1.0


def test_paired_standard_error():
    d = np.array([0.1, 0.3, -0.2, 0.4])
    assert report.paired_se(d) == pytest.approx(np.std(d, ddof=1) / 2)
    assert np.isnan(report.paired_se(np.array([0.1])))


def test_blocks_are_filled_between_their_markers_only():
    text = f"a\n{report.begin_marker('x')}\nold\n{report.end_marker('x')}\nb\n"
    assert report.fill_blocks(text, {"x": "new\n"}) == (
        f"a\n{report.begin_marker('x')}\nnew\n{report.end_marker('x')}\nb\n"
    )
    with pytest.raises(ValueError, match=r"no markers for \['y'\]"):
        report.fill_blocks(text, {"x": "", "y": ""})
    with pytest.raises(ValueError, match=r"no generator for the report's blocks \['x'\]"):
        report.fill_blocks(text, {})


def test_the_committed_report_is_what_the_committed_csvs_give():
    """Drift test: regenerating every block from the committed CSVs gives the committed
    REPRODUCTION.md (run `python experiments/report.py --markdown` after changing a CSV)."""
    committed = report.block_bodies((ROOT / report.REPORT_FILE).read_text())
    assert set(committed) == set(report.GENERATORS)
    assert report.render_blocks(ROOT) == committed


def _findings(tmp_path, rows, authors):
    import pandas as pd

    (tmp_path / report.PAPER_RUNS_CSV).parent.mkdir(parents=True)
    (tmp_path / report.AUTHORS_CSV).parent.mkdir(parents=True)
    pd.DataFrame(rows).to_csv(tmp_path / report.PAPER_RUNS_CSV, index=False)
    pd.DataFrame(authors).to_csv(tmp_path / report.AUTHORS_CSV, index=False)
    schedule = dict(lr_decay=0.5, encoder_lr_decay=0.5, gamma_decay=0.5, decay_steps=100)
    for run in {row["run"] for row in rows}:
        folder = tmp_path / report.PAPER_RUNS_CSV.parent / run
        folder.mkdir()
        (folder / "config.json").write_text(json.dumps({"training": schedule}))
    return report.paper_runs_findings(tmp_path)


def test_the_paper_runs_findings_flag_gaps_rank_among_the_authors_splits_and_compare_seeds(
    tmp_path,
):
    def row(run, estimator, seed, step, value, authors, dataset="d"):
        return dict(
            run=f"{dataset}_L1_G5_IWAE_SF0_K50_BS64_{run}", dataset=dataset, split=0, seed=seed,
            estimator=estimator, qw="learned", step=step, test_ll_mean=value,
            authors_test_ll=authors, gap_to_authors=value - authors,
        )  # fmt: skip

    rows = [
        row("reg", "reg", 0, 100, 1.0, 2.0), row("reg", "reg", 0, 200, 1.5, 2.0),
        row("dreg", "dreg", 0, 200, 2.2, 2.4),
        row("reg_seed1", "reg", 1, 200, 1.9, 2.0),
        # A second dataset, its runs behind (order and seeds are per dataset).
        row("reg", "reg", 0, 100, 0.5, 0.1, "e"), row("dreg", "dreg", 0, 100, 0.2, 0.3, "e"),
    ]  # fmt: skip
    authors = [
        dict(quantity="table_1_tll", dataset="d", flag=flag, split=split, repeat=0, value=v)
        for flag, values in ((False, [2.0, 1.0, 3.0]), (True, [2.4, 2.5, 2.1]))
        for split, v in enumerate(values)
    ]
    text = _findings(tmp_path, rows, authors)
    lines = {" | ".join(line.split(" | ")[:2]): line for line in text.splitlines()}
    reg, dreg, seed1 = lines["| d | REG"], lines["| d | DReG"], lines["| d | REG seed 1"]
    assert "| e | REG | 100 | +0.500 | - | +0.100 | +0.400 | **yes** |" in text
    assert "+0.500 (from 100)" in reg and "-0.500 | **yes**" in reg
    assert "+1.000 / +2.000 / +3.000 (3) | 1 of 3" in reg  # 1.5 beats the split at 1.0
    assert "-0.200 | no" in dreg and "| 1 of 3 |" in dreg  # 2.2 beats 2.1 only
    assert "-0.100 | no" in seed1 and "| 1 of 3 |" in seed1  # 1.9 < 2.0
    # REG - DReG at 200: ours 1.5 - 2.2 < 0, the authors' 2.0 - 2.4 < 0
    assert (
        "d split 0, REG − DReG at 200 (seed = split): ours -0.700, the authors' -0.400 on the "
        "same split; the order agrees" in text
    )
    # e: ours 0.5 - 0.2 > 0, the authors' 0.1 - 0.3 < 0
    assert "e split 0, REG − DReG at 100 (seed = split): ours +0.300, the authors' -0.200" in text
    assert "on the same split; the order is the opposite" in text
    # the authors' REG - DReG per split: -0.4, -1.5, +0.9; two share our sign
    assert "over their 3 paired splits: min -1.500, median -0.400, max +0.900; 2 of 3" in text
    seeds = (
        "q(w) learned on d at 200: seed 0 +1.500 (-0.500 from the authors'), seed 1 +1.900 "
        "(-0.100 from the authors'); spread (max − min) 0.400"
    )
    assert seeds in text
    assert "learned on e" not in text  # one seed there
    assert "by 0.5 every 100 steps (staircase): they stand at 50% at 100, 25% at 200" in text


def test_the_breakdown_says_what_the_off_mode_points_would_need_to_reach_the_authors(tmp_path):
    import pandas as pd

    run = "d_L1_G5_IWAE_SF0_K50_BS64_reg"
    folder = tmp_path / report.PAPER_RUNS_CSV.parent
    folder.mkdir(parents=True)
    pd.DataFrame([dict(run=run, authors_test_ll=2.0)]).to_csv(
        tmp_path / report.PAPER_RUNS_CSV, index=False
    )
    rows = []
    for repeat, (mode, off) in enumerate([(3.0, -3.0), (3.2, -3.4)]):
        for group, points, lpd in (("all", 10, (8 * mode + 2 * off) / 10), ("mode", 8, mode),
                                   ("off-mode", 2, off)):  # fmt: skip
            rows.append(dict(run=run, step=5, precision="mixed", S=10_000, repeat=repeat,
                             group=group, points=points, mean_lpd=lpd))  # fmt: skip
    pd.DataFrame(rows).to_csv(folder / "test_ll_breakdown.csv", index=False)
    text = report.test_ll_breakdown_block(tmp_path)
    # mode 3.1 over 8 points; (2.0 * 10 - 3.1 * 8) / 2 = -2.4; the off-mode points have -3.2
    assert "- REG at 5: needs -2.400, has -3.200 (authors' +2.000, mode +3.100)." in text
    assert (
        "Over the 1 (run, step) rows: the modal points' mean lpd ranges +3.100 to +3.100" in text
    )
