"""The committed reproduction evidence: every reproduction/<target>/data.csv redraws its figure;
export_target writes CSV, figure and meta.json; the CSV keeps the figure's numbers (SNR figures,
Figures 4 and 5, Table 1 with its Wilcoxon tests, the learning curves read from real event
files); the log-log slope and its confidence interval."""

import importlib.util
import io
import json
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.stats
import tensorflow as tf
from tensorflow.core.framework import summary_pb2

from dgp_snr import plotting
from dgp_snr.data import get_regression_data
from dgp_snr.evaluation import Evaluator
from dgp_snr.figure_data import FigureDataRow, figure_data_path, write_figure_data
from dgp_snr.gradient_dumps import dump_path, save_gradient_dump
from dgp_snr.protocol import PROFILES, paper_config
from dgp_snr.protocol.profiles import REDUCED_ITERATIONS
from dgp_snr.protocol.targets import runs_of_targets
from dgp_snr.reproduction import (
    DATA_FILE,
    META_FILE,
    export_target,
    read_data,
    redraw,
    redraw_in_place,
    write_data,
)
from dgp_snr.run_evaluation import EVALUATION_FILE
from dgp_snr.run_logging import TENSORBOARD_DIR
from dgp_snr.runs import RunCheckpoints, RunConfig, build_run, load_run, save_config
from dgp_snr.slopes import (
    ALL_K,
    LARGE_K,
    SLOPE_RANGES,
    TOO_FEW_POINTS,
    curve_slopes,
    loglog_slope,
    slope_fits,
)

ROOT = Path(__file__).resolve().parents[1]
COMMITTED = sorted(p.parent for p in (ROOT / "reproduction").glob("*/data.csv"))
FIG1_KS = (1, 5, 10)
FIG2_KS = (1, 10)
R = 200  # gradient estimates per synthetic dump
STEP = REDUCED_ITERATIONS  # the step the synthetic dumps record
RECORDED = dict(num_estimates=R, iterations=STEP)  # what the figures ask: the dumps' record


def _png_ok(path: Path) -> bool:
    return path.is_file() and path.stat().st_size > 1000 and path.read_bytes()[:4] == b"\x89PNG"


def _dump(
    path: Path, estimator: str, K: int, rng, aggregates: bool, datapoint: int, batch_size: int = 1
) -> None:
    """Synthetic encoder gradients (2 weight matrices, 80 entries) whose SNR is
    0.5 K^(-1/2) (REG) or 0.5 K^(1/2) (DReG)."""
    snr = 0.5 * (np.sqrt(K) if estimator == "dreg" else 1 / np.sqrt(K))
    samples = {
        "layer0/W0": 1.0 + rng.standard_normal((R, 2, 20)) / snr,
        "layer0/W1": -1.0 + rng.standard_normal((R, 20, 2)) / snr,
        "layer0/b0": rng.standard_normal((R, 20)),
    }
    meta = dict(K=K, batch_size=batch_size, num_samples=R, datapoint=datapoint)
    # the record figures check (gradient_dumps.RECORD_FIELDS): without their run, the dumps
    # are asked at the iterations (the reduced profile's); split 0, so seed 0
    meta.update(batch_start=max(datapoint, 0), step=STEP, estimator=estimator)
    meta.update(seed=0, precision="float64")
    save_gradient_dump(path, samples, meta, aggregates=aggregates)


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    """Synthetic dumps for figure 1 (aggregates, data points 0 and 1, K = 1, 5, 10) and
    figure 2 (raw, data point 0, K = 1, 10) and figure 9 (REG aggregates, batch sizes 1 and
    64, K = 1, 5, 10), in the runs' folders the figures read."""
    path = tmp_path_factory.mktemp("results")
    rng = np.random.default_rng(13)
    fig1 = paper_config("demo_normalized", 0, 1, results_path=path).run_dir()
    fig2 = paper_config("demo_normalized", 0, 2, results_path=path).run_dir()
    for est in plotting.ESTIMATORS:
        for K in FIG1_KS:
            for dp in (0, 1):
                _dump(dump_path(fig1, est, 1, K, dp, True), est, K, rng, True, dp)
        for K in FIG2_KS:
            _dump(dump_path(fig2, est, 1, K, 0), est, K, rng, False, 0)
    fig9 = paper_config("power", 0, 3, K=30, results_path=path).run_dir()
    for K in FIG1_KS:
        _dump(dump_path(fig9, "reg", 1, K, 0, True), "reg", K, rng, True, 0)
        _dump(dump_path(fig9, "reg", 64, K, None, True), "reg", K, rng, True, -1, 64)
    return path


FIGURE_PARAMS = {
    "figure_1": dict(ks=FIG1_KS, num_datapoints=2, num_estimates=R, iterations=STEP),
    # draw options travel through meta.json (None: ranges and bins from the samples)
    "figure_2": dict(ks=FIG2_KS, x_range=None, bins=None, num_estimates=R, iterations=STEP),
    "figure_9": dict(
        batch_sizes=(1, 64), ks=FIG1_KS, num_datapoints=1, num_estimates=R, iterations=STEP
    ),
}


@pytest.fixture(scope="module")
def exported(results, tmp_path_factory) -> Path:
    out_dir = tmp_path_factory.mktemp("reproduction")
    for target, params in FIGURE_PARAMS.items():
        export_target(
            target,
            results,
            out_dir,
            profile_name="test",
            command="python experiments/sweep.py figure_1 figure_2 figure_9 --profile test",
            wall_time_s=12.5,
            out=io.StringIO(),
            **params,
        )
    return out_dir


def test_every_committed_figure_redraws_from_its_csv(exported, tmp_path):
    # Without committed evidence yet, the synthetic export stands in: never a vacuous pass.
    target_dirs = COMMITTED or sorted(p.parent for p in exported.glob("*/data.csv"))
    assert target_dirs
    for target_dir in target_dirs:
        paths = redraw(target_dir, tmp_path / target_dir.name)
        png = tmp_path / target_dir.name / f"{target_dir.name}.png"
        assert png in paths and _png_ok(png), target_dir


def test_redraw_in_place_keeps_the_export_record_and_names_the_drawing_code(exported, tmp_path):
    target_dir = tmp_path / "figure_9"
    target_dir.mkdir()
    for name in (DATA_FILE, META_FILE):
        (target_dir / name).write_bytes((exported / "figure_9" / name).read_bytes())
    before = json.loads((target_dir / META_FILE).read_text())
    paths = redraw_in_place(target_dir)
    assert target_dir / "figure_9.png" in paths and _png_ok(target_dir / "figure_9.png")
    after = json.loads((target_dir / META_FILE).read_text())
    assert {k: v for k, v in after.items() if k != "redrawn"} == before
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert after["redrawn"]["git_commit"] == (
        head.stdout.strip() if head.returncode == 0 else None
    )
    assert pd.Timestamp(after["redrawn"]["date"]).tzinfo is not None


def test_export_target_writes_data_figure_and_meta(exported, results):
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    for target in FIGURE_PARAMS:
        target_dir = exported / target
        assert _png_ok(target_dir / f"{target}.png")
        assert (target_dir / f"{target}.pdf").stat().st_size > 0
        meta = json.loads((target_dir / META_FILE).read_text())
        assert meta["target"] == target and meta["profile"] == "test"
        assert meta["command"].startswith("python experiments/sweep.py figure_1 figure_2 ")
        assert meta["wall_time_s"] == 12.5 and meta["results_path"] == str(results)
        assert meta["git_commit"] == (head.stdout.strip() if head.returncode == 0 else None)
        assert meta["missing"] == [] and meta["rows"] == len(read_data(target_dir / DATA_FILE))
        assert pd.Timestamp(meta["date"]).tzinfo is not None
    meta = json.loads((exported / "figure_2" / META_FILE).read_text())
    assert meta["draw_options"] == {"x_range": None, "bins": None}
    assert "x_range" not in meta["figure_params"]


def test_csv_round_trip_keeps_the_figure_numbers(results, exported, tmp_path):
    out = io.StringIO()
    fig1, _ = plotting.figure_1_data(results, ks=FIG1_KS, num_datapoints=2, out=out, **RECORDED)
    fig2, _ = plotting.figure_2_data(results, ks=FIG2_KS, out=out, **RECORDED)
    fig9, _ = plotting.figure_9_data(
        results, batch_sizes=(1, 64), ks=FIG1_KS, num_datapoints=1, out=out, **RECORDED
    )
    assert list(fig1.columns) == list(plotting.FIGURE_1_COLUMNS)
    assert list(fig2.columns) == list(plotting.FIGURE_2_COLUMNS)
    assert list(fig9.columns) == list(plotting.SNR_SUMMARY_COLUMNS)
    for name, df in (("figure_1", fig1), ("figure_2", fig2), ("figure_9", fig9)):
        back = read_data(write_data(df, tmp_path / f"{name}.csv"))
        pd.testing.assert_frame_equal(back, df, check_exact=True)
        # the exported file holds the same numbers
        pd.testing.assert_frame_equal(read_data(exported / name / DATA_FILE), df)

    # figure 1: 2 estimators x 3 Ks x 80 weight entries; SNRs are the dumps' means over points
    assert len(fig1) == 2 * len(FIG1_KS) * 80 and set(fig1["num_datapoints"]) == {2}
    assert set(fig1["num_estimates"]) == {R}
    run_dir = paper_config("demo_normalized", 0, 1, results_path=results).run_dir()
    paths = [dump_path(run_dir, "dreg", 1, 5, dp, True) for dp in (0, 1)]
    rows = fig1[(fig1["estimator"] == "dreg") & (fig1["K"] == 5)]
    np.testing.assert_array_equal(rows["snr"].to_numpy(), plotting.mean_snr_over_datapoints(paths))
    drawn = rows[rows["plot_index"] >= 0].sort_values("plot_index")
    assert list(drawn["parameter"]) == ["W0[0, 0]", "W0[0, 1]", "W0[0, 2]", "W0[0, 3]"]
    # figure 2: every raw estimate of the loss's gradient in W0[0, 4]
    assert len(fig2) == 2 * len(FIG2_KS) * R and set(fig2["parameter"]) == {"W0[0, 4]"}
    assert set(fig2["quantity"]) == {"loss"}
    # figure 9: one row per batch size and K, the mean SNR over the 80 weight entries
    assert len(fig9) == 2 * len(FIG1_KS) and set(fig9["num_parameters"]) == {80}
    assert set(fig9["train_K"]) == {30} and set(fig9["depth"]) == {3}
    run_dir = paper_config("power", 0, 3, K=30, results_path=results).run_dir()
    path = dump_path(run_dir, "reg", 64, 10, None, True)
    row = fig9[(fig9["batch_size"] == 64) & (fig9["K"] == 10)]
    assert row["snr"].item() == np.mean(plotting.mean_snr_over_datapoints([path]))


def _snr_frame(rng, ks, slopes, c=2.0, sigma=0.1, num_parameters=40) -> pd.DataFrame:
    """SNR = c K^a per parameter (a fixed spread across parameters) times one log-normal
    factor exp(N(0, sigma^2)) per K, so log(mean SNR) is linear in log K plus N(0, sigma^2)."""
    spread = rng.uniform(0.5, 1.5, num_parameters)
    rows = []
    for estimator, a in slopes.items():
        for K in ks:
            values = c * K**a * np.exp(sigma * rng.standard_normal()) * spread
            rows += [(estimator, K, f"W0[0, {p}]", v) for p, v in enumerate(values)]
    return pd.DataFrame(rows, columns=["estimator", "K", "parameter", "snr"])


def test_loglog_slope_recovers_a_known_slope():
    rng = np.random.default_rng(0)
    ks = np.array([1, 2, 5, 10, 20, 50, 100])
    sigma = 0.1
    df = _snr_frame(rng, ks, {"reg": -0.5, "dreg": 0.5}, sigma=sigma)
    # the standard error OLS would have with the true noise level
    se_true = sigma / np.sqrt(np.sum((np.log(ks) - np.log(ks).mean()) ** 2))
    for estimator, a in (("reg", -0.5), ("dreg", 0.5)):
        fit = loglog_slope(df, estimator)
        assert fit.num_ks == len(ks) and fit.ci_low < a < fit.ci_high
        t = scipy.stats.t.ppf(0.975, len(ks) - 2)
        np.testing.assert_allclose(fit.ci_high - fit.slope, t * fit.stderr, rtol=1e-12)
        # the estimated standard error: chi with 5 degrees of freedom; within [0.3, 1.8] x
        # the true one with probability > 0.98
        assert 0.3 * se_true < fit.stderr < 1.8 * se_true
        assert abs(fit.slope - a) < 4 * se_true

    # Without noise the fit is exact.
    exact = loglog_slope(_snr_frame(rng, ks, {"reg": -0.5}, sigma=0.0), "reg")
    assert exact.slope == pytest.approx(-0.5, abs=1e-12) and exact.stderr < 1e-12
    assert loglog_slope(_snr_frame(rng, [1, 10], {"reg": -0.5}), "reg").too_few
    with pytest.raises(ValueError, match="no rows"):
        loglog_slope(df, "iwae")

    # `where` selects one curve of a frame with several (figure 9's batch sizes).
    one = _snr_frame(rng, ks, {"reg": -0.5}, sigma=0.0).assign(batch_size=1)
    other = _snr_frame(rng, ks, {"reg": -0.2}, sigma=0.0).assign(batch_size=64)
    both = pd.concat([one, other], ignore_index=True)
    assert loglog_slope(both, "reg", batch_size=64).slope == pytest.approx(-0.2, abs=1e-12)
    assert loglog_slope(both, "reg", batch_size=1).slope == pytest.approx(-0.5, abs=1e-12)


def test_a_slope_from_two_values_of_k_reports_too_few_points():
    fit = loglog_slope(_snr_frame(np.random.default_rng(2), [1, 10], {"reg": -0.5}), "reg")
    assert fit.too_few and fit.num_ks == 2 and fit.ks == (1.0, 10.0)
    assert np.isnan(fit.slope) and np.isnan(fit.ci_low) and np.isnan(fit.ci_high)
    text = str(fit)
    assert TOO_FEW_POINTS in text and "CI" not in text and "[" not in text
    assert text == "reg, all K (K = 1-10, 2 values): too few points (a slope needs 3 values of K)"


def test_slope_ranges_are_declared_and_the_large_k_range_needs_three_values():
    # Declared in code, before any data: the whole range and K >= 10.
    assert SLOPE_RANGES == (ALL_K, LARGE_K) and (LARGE_K.k_min, LARGE_K.k_max) == (10, np.inf)
    rng = np.random.default_rng(3)
    # Exact power laws: SNR = 2 K^(-1/2) for K >= 10, and a K = 1 point off the law; the
    # K >= 10 fit sees only its own values of K and gives -1/2 exactly.
    df = _snr_frame(rng, [1, 10, 30, 100], {"reg": -0.5}, sigma=0.0)
    df.loc[df["K"] == 1, "snr"] *= 0.25
    full, large = slope_fits(df, "reg")
    assert (full.k_range, full.ks, full.num_ks) == ("all K", (1.0, 10.0, 30.0, 100.0), 4)
    assert full.slope > -0.5 + 0.1  # the K = 1 point flattens the whole-range fit
    assert (large.k_range, large.ks, large.num_ks) == ("K >= 10", (10.0, 30.0, 100.0), 3)
    assert large.slope == pytest.approx(-0.5, abs=1e-12) and large.dof == 1
    # the 95% t-interval with n - 2 = 1 degree of freedom (zero width for exact data)
    assert large.ci_low <= large.slope <= large.ci_high
    # 2 values of K >= 10: declared, reported as too few points, never an interval
    full, large = slope_fits(_snr_frame(rng, [1, 5, 10, 100], {"dreg": 0.5}), "dreg")
    assert not full.too_few and full.num_ks == 4
    assert large.too_few and large.ks == (10.0, 100.0) and TOO_FEW_POINTS in str(large)
    # no value of K >= 10, or the same values as the whole range: one fit
    assert [f.k_range for f in slope_fits(_snr_frame(rng, [1, 2, 5], {"reg": -0.5}), "reg")] == [
        "all K"
    ]
    only = slope_fits(_snr_frame(rng, [10, 20, 50], {"reg": -0.5}, sigma=0.0), "reg")
    assert len(only) == 1 and only[0].slope == pytest.approx(-0.5, abs=1e-12)


def test_exact_power_law_data_gives_its_exponent_in_every_range():
    rng = np.random.default_rng(4)
    ks = [1, 2, 5, 10, 20, 50, 100]
    for a in (-0.5, 0.5, -0.37, 1.2):
        for c in (0.01, 3.0):
            df = _snr_frame(rng, ks, {"dreg": a}, c=c, sigma=0.0)
            fits = slope_fits(df, "dreg")
            assert [f.k_range for f in fits] == ["all K", "K >= 10"]
            for fit in fits:
                assert fit.slope == pytest.approx(a, abs=1e-12)
                # the mean over parameters is c K^a times the parameters' mean spread: at
                # K = 1, exp(intercept)
                at_1 = df.loc[df["K"] == 1, "snr"].mean()
                assert fit.intercept == pytest.approx(np.log(at_1), abs=1e-12)


def test_curve_slopes_fits_each_curve_of_a_frame():
    rng = np.random.default_rng(5)
    ks = [1, 5, 10, 20, 50]
    frames = [
        _snr_frame(rng, ks, {"reg": a}, sigma=0.0).assign(batch_size=bs)
        for bs, a in ((1, -0.3), (64, -0.5))
    ]
    slopes = curve_slopes(pd.concat(frames, ignore_index=True))
    assert [(c, f.k_range) for c, f in slopes] == [
        ({"batch_size": 1}, "all K"),
        ({"batch_size": 1}, "K >= 10"),
        ({"batch_size": 64}, "all K"),
        ({"batch_size": 64}, "K >= 10"),
    ]
    for (curve, fit), a in zip(slopes, (-0.3, -0.3, -0.5, -0.5)):
        assert fit.slope == pytest.approx(a, abs=1e-12)


def test_loglog_slope_interval_covers_at_its_level():
    # Over 400 independent noisy frames the 95% interval covers the true slope 95% of the
    # time; 3 binomial standard errors (0.033) of slack.
    rng = np.random.default_rng(1)
    ks = [1, 5, 10, 20, 50, 100]
    fits = [
        loglog_slope(_snr_frame(rng, ks, {"dreg": 0.5}, num_parameters=4), "dreg")
        for _ in range(400)
    ]
    covered = np.mean([f.ci_low < 0.5 < f.ci_high for f in fits])
    assert abs(covered - 0.95) < 3 * np.sqrt(0.95 * 0.05 / len(fits))


def test_report_cli_exports_and_prints_slopes(results, tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("report_cli", ROOT / "experiments" / "report.py")
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    argv = ["figure_1", "figure_2", "figure_9", "--profile", "reduced"]
    argv += ["--results_path", str(results), "--num_estimates", str(R)]  # the dumps' R
    argv += ["--out", str(tmp_path), "--command", "sweep", "--wall_time_s", "3"]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    # the declared ranges: all K fitted; K >= 10 holds one K here, so too few points
    assert "figure_1: reg, all K (K = 1-10, 3 values): slope -" in out
    assert "figure_1: dreg, all K (K = 1-10, 3 values): slope +" in out
    assert "figure_1: reg, K >= 10 (K = 10, 1 value): too few points" in out
    assert "figure_9 (batch_size=1): reg, all K (K = 1-10, 3 values): slope -" in out
    assert "figure_9 (batch_size=64): reg, all K (K = 1-10, 3 values): slope -" in out
    assert "CI" not in "".join(line for line in out.splitlines() if "too few" in line)
    assert _png_ok(tmp_path / "figure_1" / "figure_1.png")
    meta = json.loads((tmp_path / "figure_1" / META_FILE).read_text())
    # the reduced profile's K grid and points: partial data, the rest listed
    assert meta["profile"] == "reduced" and meta["figure_params"]["num_datapoints"] == 5
    assert meta["missing"] and meta["figure_params"]["iterations"] == 5000
    assert (
        cli.main(["figure_1", "--results_path", str(tmp_path / "none"), "--out", str(tmp_path)])
        == 2
    )


# ------------------------------------------------------------------------------ evaluation targets
EVAL_ITERATIONS = 40
TABLE_DATASETS = ("demo_normalized", "winered", "winewhite")  # winewhite: no rows at all
TABLE_SPLITS = 4
FIG4_DATASETS = ("power", "winered", "winewhite")
FIG4_SPLITS = 3
CACHED_STEP = 1234  # the step of the one evaluation cache entry written (see eval_results)
FIG5_PANELS = (("demo_normalized", 0, 0), ("demo_normalized", 0, 3))
FIG5_SAMPLES, FIG5_BINS = 300, 30


def _table_rows(rng):
    """Table 1's inputs: per dataset and split a REG and a DReG run (3 repeats each), DReG
    better by 0.05 on average; winered split 3 has no DReG run (unpaired) and one ELBO row
    is missing."""
    tll, elbo = [], []
    for d in TABLE_DATASETS[:2]:
        for s in range(TABLE_SPLITS):
            base = rng.normal()
            for flag in (False, True):
                if d == "winered" and s == 3 and flag:
                    continue
                tll.append(FigureDataRow(d, flag, s, base + 0.05 * flag + rng.normal(0, 0.02, 3)))
                if not (d == "demo_normalized" and s == 1 and flag):
                    elbo.append(FigureDataRow(d, flag, s, rng.normal(-1000, 10, 3)))
    return tll, elbo


@pytest.fixture(scope="module")
def eval_results(tmp_path_factory):
    """Data files of Figure 4 and Table 1 (as evaluate.py writes them), an evaluation cache
    naming the step of one run, and a tiny trained run (depth 1, M = 8, one step) for
    Figure 5's learned-q(w) panels (its fixed-q(w) twin is missing)."""
    path = tmp_path_factory.mktemp("eval_results")
    rng = np.random.default_rng(21)
    tll, elbo = _table_rows(rng)
    write_figure_data(figure_data_path(path, "table_1_tll"), tll)
    write_figure_data(figure_data_path(path, "table_1_elbo"), elbo)
    fig4 = [
        FigureDataRow(d, flag, s, rng.normal(-1.0 if flag else 0.5, 0.1, size=4))
        for d in FIG4_DATASETS[:2]
        for flag in (False, True)
        for s in range(FIG4_SPLITS)
    ]
    write_figure_data(figure_data_path(path, "figure_4"), fig4)
    # evaluate.py caches each run's values by step; this one was evaluated at CACHED_STEP
    cached = paper_config("power", 1, 2, fixq=True, results_path=path).run_dir()
    cached.mkdir(parents=True)
    entry = {"values": fig4[4].values.tolist(), "step": CACHED_STEP}  # power, fixed, split 1
    assert (fig4[4].dataset, fig4[4].flag, fig4[4].split) == ("power", True, 1)
    (cached / EVALUATION_FILE).write_text(json.dumps({"test_ll:step=1234:S=5:R=4:seed=0": entry}))

    config = RunConfig.from_flat(
        dataset="demo_normalized",
        configuration="L1",
        M=8,
        num_IW_samples=50,
        minibatch_size=64,
        iterations=1,
        results_path=str(path),
    )
    model, trainer, _ = build_run(config)
    trainer.train_step()
    save_config(config, config.run_dir())
    RunCheckpoints(trainer, config.run_dir()).save()
    return path, {"tll": tll, "elbo": elbo, "figure_4": fig4}


EVAL_PARAMS = {
    "figure_4": dict(datasets=FIG4_DATASETS, splits=FIG4_SPLITS, iterations=EVAL_ITERATIONS),
    "table_1": dict(datasets=TABLE_DATASETS, splits=TABLE_SPLITS, iterations=EVAL_ITERATIONS),
    "figure_5": dict(
        panels=FIG5_PANELS,
        num_predictive_samples=FIG5_SAMPLES,
        depth=1,
        bins=FIG5_BINS,
        iterations=1,
    ),
}


@pytest.fixture(scope="module")
def eval_exported(eval_results, tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("eval_reproduction")
    for target, params in EVAL_PARAMS.items():
        export_target(
            target,
            eval_results[0],
            out_dir,
            profile_name="test",
            command=None,
            wall_time_s=None,
            out=io.StringIO(),
            **params,
        )
    return out_dir


def test_figure_4_csv_keeps_each_runs_mean_and_redraws_the_same_figure(
    eval_results, eval_exported, tmp_path
):
    results, inputs = eval_results
    df = read_data(eval_exported / "figure_4" / DATA_FILE)
    assert list(df.columns) == list(plotting.FIGURE_4_COLUMNS)
    data = df[df["qw"] != plotting.NO_DATA]
    assert len(data) == len(inputs["figure_4"]) == 2 * 2 * FIG4_SPLITS
    for row in inputs["figure_4"]:
        mine = data[(data["dataset"] == row.dataset) & (data["split"] == row.split)]
        mine = mine[mine["qw"] == ("fixed" if row.flag else "learned")]
        assert mine["test_ll"].item() == np.mean(row.values)  # exactly, through the CSV
        assert mine["num_repeats"].item() == 4
        # the cached run names its step; the others entered at the protocol's iterations
        cached = (row.dataset, row.flag, row.split) == ("power", True, 1)
        expected = CACHED_STEP if cached else EVAL_ITERATIONS
        assert mine["step"].item() == expected
    # the dataset without data keeps its ('missing') panel
    assert df[df["qw"] == plotting.NO_DATA]["dataset"].tolist() == ["winewhite"]
    assert not df["preview"].any()
    # the figure redrawn from the CSV is the one figure_4 draws from the data file
    report = plotting.figure_4(results, tmp_path, out=io.StringIO(), **EVAL_PARAMS["figure_4"])
    assert any("winewhite" in m for m in report.missing)
    redrawn = redraw(eval_exported / "figure_4", tmp_path / "redrawn")
    assert _png_ok(redrawn[1])
    assert redrawn[1].read_bytes() == (tmp_path / "figure_4.png").read_bytes()


def _expected_table(tll, elbo):
    """Table 1's cells and Wilcoxon tests computed here from the data-file rows (REG vs DReG
    means per split, scipy directly): {dataset: (pairs, 4 cells)}, (two-sided, one-sided)."""
    means = {(r.dataset, r.flag, r.split): float(np.mean(r.values)) for r in tll}
    elbos = {(r.dataset, r.flag, r.split): float(np.mean(r.values)) for r in elbo}

    def cell(values):
        values = np.asarray(values)
        se = np.std(values, ddof=1) / np.sqrt(len(values))
        return f"{np.mean(values):.3f} ± {se:.3f}"

    cells, reg_all, dreg_all = {}, [], []
    for d in TABLE_DATASETS[:2]:
        pairs = sorted(s for (dd, f, s) in means if dd == d and not f and (d, True, s) in means)
        reg = [means[(d, False, s)] for s in pairs]
        dreg = [means[(d, True, s)] for s in pairs]
        reg_all += reg
        dreg_all += dreg
        n = get_regression_data(d, 0).X_train.shape[0]
        row = [cell(reg), cell(dreg)]
        for flag in (False, True):
            row.append(
                cell(np.array([elbos[(d, flag, s)] for s in pairs if (d, flag, s) in elbos]) / n)
            )
        cells[d] = (len(pairs), row)
    tests = (
        scipy.stats.wilcoxon(reg_all, dreg_all),
        scipy.stats.wilcoxon(reg_all, dreg_all, alternative="less"),
    )
    return cells, tests, (reg_all, dreg_all)


def test_table_1_from_its_csv_equals_the_table_of_the_inputs(
    eval_results, eval_exported, tmp_path
):
    results, inputs = eval_results
    target_dir = eval_exported / "table_1"
    df = read_data(target_dir / DATA_FILE)
    assert list(df.columns) == list(plotting.TABLE_1_COLUMNS)
    # one row per test log-likelihood row, the numbers kept exactly
    data = df[df["estimator"] != plotting.NO_DATA]
    assert len(data) == len(inputs["tll"])
    elbo = {(r.dataset, r.flag, r.split): r for r in inputs["elbo"]}
    for row in inputs["tll"]:
        mine = data[(data["dataset"] == row.dataset) & (data["split"] == row.split)]
        mine = mine[mine["estimator"] == ("dreg" if row.flag else "reg")]
        assert mine["test_ll"].item() == np.mean(row.values)
        key = (row.dataset, row.flag, row.split)
        if key in elbo:
            assert mine["train_elbo"].item() == np.mean(elbo[key].values)
        else:
            assert np.isnan(mine["train_elbo"].item())
        assert mine["step"].item() == EVAL_ITERATIONS and not mine["preview"].item()
    assert df[df["estimator"] == plotting.NO_DATA]["dataset"].tolist() == ["winewhite"]

    # the Wilcoxon tests from the CSV alone (scipy directly) equal those of the inputs
    cells, (two, one), (reg_in, dreg_in) = _expected_table(inputs["tll"], inputs["elbo"])
    wide = data.pivot_table(index=["dataset", "split"], columns="estimator", values="test_ll")
    wide = wide.dropna().loc[list(TABLE_DATASETS[:2])]  # the table's dataset order
    assert wide["reg"].tolist() == reg_in and wide["dreg"].tolist() == dreg_in
    from_csv = scipy.stats.wilcoxon(wide["reg"], wide["dreg"])
    assert from_csv.pvalue == two.pvalue and from_csv.statistic == two.statistic
    one_csv = scipy.stats.wilcoxon(wide["reg"], wide["dreg"], alternative="less")
    assert one_csv.pvalue == one.pvalue

    # the printed table: from the CSV (redraw) the same as table_1 prints from the data files
    out = io.StringIO()
    report = plotting.table_1(results, tmp_path, out=out, **EVAL_PARAMS["table_1"])
    text = (target_dir / "table_1.txt").read_text()
    assert text == (tmp_path / "table_1.txt").read_text() == report.text + "\n"
    assert report.text in out.getvalue()
    assert plotting.table_1_text(df) == report.text
    for d, (pairs, row) in cells.items():
        line = next(li for li in text.splitlines() if li.startswith(d.replace("_normalized", "")))
        assert line.split()[1] == str(pairs) and all(c in line for c in row)
    assert f"over {len(reg_in)} paired runs" in text
    assert f"p = {two.pvalue:.6g}" in text and f"p = {one.pvalue:.6g}" in text
    winewhite = next(li for li in text.splitlines() if li.startswith("winewhite"))
    assert winewhite.split() == ["winewhite", "0", "-", "-", "-", "-"]
    # the same table in Markdown and as a figure, next to the CSV
    markdown = (target_dir / "table_1.md").read_text()
    assert "| dataset | pairs | REG test LL |" in markdown
    assert f"| winered | {cells['winered'][0]} | {cells['winered'][1][0]} |" in markdown
    assert f"p = {one.pvalue:.6g}" in markdown
    assert _png_ok(target_dir / "table_1.png")
    assert (tmp_path / "table_1.md").read_text() == markdown


def test_table_1_preview_and_evaluated_step_travel_in_the_csv(eval_results, tmp_path):
    results, inputs = eval_results
    preview = tmp_path / "results"
    write_figure_data(figure_data_path(preview, "table_1_tll"), inputs["tll"], preview=True)
    write_figure_data(figure_data_path(preview, "table_1_elbo"), inputs["elbo"])
    # the REG run of demo_normalized split 2 was evaluated at step 17 (its cache says so)
    row = next(
        r for r in inputs["tll"] if (r.dataset, r.flag, r.split) == ("demo_normalized", False, 2)
    )
    run_dir = paper_config("demo_normalized", 2, 2, results_path=preview).run_dir()
    run_dir.mkdir(parents=True)
    cache = {"test_ll:step=17:S=5:R=3:seed=0": {"values": row.values.tolist(), "step": 17}}
    (run_dir / EVALUATION_FILE).write_text(json.dumps(cache))
    target_dir = export_target(
        "table_1",
        preview,
        tmp_path / "out",
        profile_name="test",
        command=None,
        wall_time_s=None,
        out=io.StringIO(),
        **EVAL_PARAMS["table_1"],
    )
    df = read_data(target_dir / DATA_FILE)
    assert df["preview"].all()
    steps = df.set_index(["dataset", "estimator", "split"])["step"]
    assert steps[("demo_normalized", "reg", 2)] == 17
    # a preview's other runs entered at a checkpoint nobody recorded
    assert steps[("demo_normalized", "dreg", 2)] == plotting.UNKNOWN_STEP
    text = (target_dir / "table_1.txt").read_text()
    assert text.startswith("PREVIEW: unfinished runs") and "PREVIEW: Wilcoxon" in text
    assert (target_dir / "table_1.md").read_text().startswith("**PREVIEW: unfinished runs**")


def test_figure_5_csv_holds_the_histograms_of_the_predictive_samples(eval_results, eval_exported):
    results, _ = eval_results
    target_dir = eval_exported / "figure_5"
    df = read_data(target_dir / DATA_FILE)
    assert list(df.columns) == list(plotting.FIGURE_5_COLUMNS)
    assert _png_ok(target_dir / "figure_5.png")
    # learned q(w) only: the fixed-q(w) run is missing (meta.json lists it)
    assert set(df["qw"]) == {"learned"} and len(df) == len(FIG5_PANELS) * FIG5_BINS
    meta = json.loads((target_dir / META_FILE).read_text())
    assert meta["missing"] == ["run demo_normalized_L1_IWAE_SF0_K50_BS64_reg_fixq (no checkpoint)"]
    # each panel's bins: the density histogram of the run's predictive samples at its point
    config = paper_config("demo_normalized", 0, 1, results_path=results)
    model, _, data, _ = load_run(config.run_dir())
    for dataset, split, point in FIG5_PANELS:
        panel = df[(df["test_point"] == point) & (df["split"] == split)]
        ys = Evaluator(model).predictive_samples(data.X_test[point], FIG5_SAMPLES, 0, point)
        density, edges = np.histogram(ys, bins=FIG5_BINS, density=True)
        np.testing.assert_array_equal(panel["density"].to_numpy(), density)
        np.testing.assert_array_equal(panel["bin_left"].to_numpy(), edges[:-1])
        np.testing.assert_array_equal(panel["bin_right"].to_numpy(), edges[1:])
        assert set(panel["y_observed"]) == {float(data.Y_test[point, 0])}
        assert set(panel["num_samples"]) == {FIG5_SAMPLES}
        widths = panel["bin_right"] - panel["bin_left"]
        assert np.sum(panel["density"] * widths) == pytest.approx(1.0, rel=1e-9)


# ------------------------------------------------------------------------------ learning curves
_SCALAR = summary_pb2.SummaryMetadata(
    plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars")
)


def _write_events(
    run_dir: Path, scalars: dict, legacy: bool = False, histogram: bool = True
) -> None:
    """One event file in <run_dir>/tensorboard with {tag: {step: value}}: written as training
    writes them (tf.summary.write of a float32 tensor) or, `legacy`, as v1 simple_values;
    then (`histogram`) a histogram record."""
    writer = tf.summary.create_file_writer(str(run_dir / TENSORBOARD_DIR))
    with writer.as_default():
        for tag, values in scalars.items():
            for step, value in values.items():
                if legacy:
                    summary = tf.compat.v1.Summary(
                        value=[tf.compat.v1.Summary.Value(tag=tag, simple_value=value)]
                    )
                    tf.summary.experimental.write_raw_pb(summary.SerializeToString(), step=step)
                else:
                    tf.summary.write(
                        tag, tf.constant(value, tf.float32), step=step, metadata=_SCALAR
                    )
        if histogram:  # a histogram in the same log is not a curve
            tf.summary.write("encoder/layer0/scale", tf.ones([3, 3], tf.float64), step=0)
    writer.close()


@pytest.fixture(scope="module")
def curve_results(tmp_path_factory):
    """Training logs of the smoke profile's Table 1 / Figure 4 runs (demo_normalized, depth 2,
    split 0): REG (two event files, as a resumed run leaves them), REG with q(w) fixed (v1
    simple values); the DReG run has no log and no checkpoint. Returns the path and the
    test_loglik values written, {run name: {step: float32 value}}."""
    path = tmp_path_factory.mktemp("curve_results")
    rng = np.random.default_rng(5)
    reg = paper_config("demo_normalized", 0, 2, results_path=path)
    fixq = paper_config("demo_normalized", 0, 2, fixq=True, results_path=path)
    written = {}
    for config, steps in ((reg, (10, 20, 30)), (fixq, (10, 20))):
        values = {s: float(np.float32(-2.0 + 0.01 * s + rng.normal(0, 0.01))) for s in steps}
        written[config.run_name] = values
        other = {s: float(np.float32(rng.uniform())) for s in steps}
        tags = {"test/test_loglik": values, "test/test_rmse": other, "train/elbo": other}
        if config is reg:  # resumed after step 20: steps 30 in a second file
            first = {t: {s: v for s, v in vs.items() if s <= 20} for t, vs in tags.items()}
            second = {t: {s: v for s, v in vs.items() if s > 20} for t, vs in tags.items()}
            _write_events(config.run_dir(), first)
            _write_events(config.run_dir(), second)
        else:
            _write_events(config.run_dir(), tags, legacy=True)
    return path, written


def test_learning_curves_read_the_logged_test_log_likelihood(curve_results, tmp_path):
    results, written = curve_results
    params = PROFILES["smoke"].params("learning_curves")
    # the profile's Table 1 and Figure 4 runs, the shared REG run once
    assert set(params["target_params"]) == {"table_1", "figure_4"}
    runs = runs_of_targets(("table_1", "figure_4"), results, params["target_params"])
    assert [c.run_name for c in runs] == [
        "demo_normalized_L1_G5_IWAE_SF0_K50_BS64_reg",
        "demo_normalized_L1_G5_IWAE_SF0_K50_BS64_dreg",
        "demo_normalized_L1_G5_IWAE_SF0_K50_BS64_reg_fixq",
    ]
    out = io.StringIO()
    target_dir = export_target(
        "learning_curves",
        results,
        tmp_path,
        profile_name="smoke",
        command=None,
        wall_time_s=None,
        out=out,
        **params,
    )
    df = read_data(target_dir / DATA_FILE)
    assert list(df.columns) == list(plotting.LEARNING_CURVES_COLUMNS)
    assert set(df["metric"]) == {"test_loglik"} and set(df["depth"]) == {2}
    got = {
        run: dict(zip(group["step"], group["value"]))
        for run, group in df.groupby("run", sort=False)
    }
    assert got == written  # every step once, the float32 values exactly
    first = df.drop_duplicates("run").set_index("run")
    assert first.loc["demo_normalized_L1_G5_IWAE_SF0_K50_BS64_reg_fixq", "qw"] == "fixed"
    assert first.loc["demo_normalized_L1_G5_IWAE_SF0_K50_BS64_reg", "qw"] == "learned"
    assert set(first["estimator"]) == {"reg"} and set(first["split"]) == {0}
    # the DReG run is missing, and its training command is printed
    meta = json.loads((target_dir / META_FILE).read_text())
    assert meta["missing"] == ["run demo_normalized_L1_G5_IWAE_SF0_K50_BS64_dreg (no checkpoint)"]
    assert "estimator=dreg" in out.getvalue() and "M=8" in out.getvalue()
    assert _png_ok(target_dir / "learning_curves.png")
    assert _png_ok(redraw(target_dir, tmp_path / "redrawn")[1])
    # another metric, read from the same logs
    rmse, _ = plotting.learning_curves_data(
        results, target_params=params["target_params"], metrics=("test_rmse",), out=io.StringIO()
    )
    assert set(rmse["metric"]) == {"test_rmse"} and len(rmse) == len(df)
    with pytest.raises(plotting.MissingInputsError):
        plotting.learning_curves_data(tmp_path / "none", out=io.StringIO())


def test_report_cli_exports_learning_curves_and_table_1(
    curve_results, eval_results, tmp_path, capsys
):
    spec = importlib.util.spec_from_file_location("report_cli", ROOT / "experiments" / "report.py")
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    argv = ["learning_curves", "--profile", "smoke", "--results_path", str(curve_results[0])]
    assert cli.main(argv + ["--out", str(tmp_path), "--command", "sweep"]) == 0
    assert _png_ok(tmp_path / "learning_curves" / "learning_curves.png")
    meta = json.loads((tmp_path / "learning_curves" / META_FILE).read_text())
    assert meta["figure_params"]["target_params"]["table_1"]["splits"] == 1
    argv = ["table_1", "--profile", "smoke", "--datasets", "demo_normalized,winered"]
    argv += ["--splits", "4", "--iterations", "40", "--results_path", str(eval_results[0])]
    assert cli.main(argv + ["--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert (tmp_path / "table_1" / "table_1.txt").read_text() in out


def test_read_scalars_keeps_the_readable_part_of_a_cut_event_file(tmp_path):
    values = {1: 0.5, 2: 0.25, 3: 0.125}
    _write_events(tmp_path, {"test/test_loglik": values, "train/loss": values}, histogram=False)
    (path,) = (tmp_path / TENSORBOARD_DIR).glob("events.out.tfevents.*")
    whole = plotting.read_scalars(tmp_path / TENSORBOARD_DIR, "test/")
    assert whole["tag"].tolist() == ["test/test_loglik"] * 3
    assert dict(zip(whole["step"], whole["value"])) == values
    path.write_bytes(path.read_bytes()[:-5])  # killed while writing the last record
    cut = plotting.read_scalars(tmp_path / TENSORBOARD_DIR)
    assert len(cut) == 5 and set(cut["tag"]) == {"test/test_loglik", "train/loss"}
