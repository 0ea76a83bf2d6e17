"""REPRODUCTION.md's generated blocks: the statistics against scipy, the markers, and the
committed report against what the committed CSVs give."""

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
