"""The committed reproduction evidence: every reproduction/<target>/data.csv redraws its figure;
export_target writes CSV, figure and meta.json; the CSV keeps the figure's numbers; the log-log
slope and its confidence interval."""

import importlib.util
import io
import json
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.stats

from dgp_snr import plotting
from dgp_snr.gradient_dumps import dump_path, save_gradient_dump
from dgp_snr.protocol import paper_config
from dgp_snr.reproduction import (
    DATA_FILE,
    META_FILE,
    export_target,
    loglog_slope,
    read_data,
    redraw,
    write_data,
)

ROOT = Path(__file__).resolve().parents[1]
COMMITTED = sorted(p.parent for p in (ROOT / "reproduction").glob("*/data.csv"))
FIG1_KS = (1, 5, 10)
FIG2_KS = (1, 10)
R = 200  # gradient estimates per synthetic dump


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
    meta.update(batch_start=max(datapoint, 0), step=1, estimator=estimator)
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
    "figure_1": dict(ks=FIG1_KS, num_datapoints=2),
    # draw options travel through meta.json (None: ranges and bins from the samples)
    "figure_2": dict(ks=FIG2_KS, x_range=None, bins=None),
    "figure_9": dict(batch_sizes=(1, 64), ks=FIG1_KS, num_datapoints=1),
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
    fig1, _ = plotting.figure_1_data(results, FIG1_KS, 2, out=out)
    fig2, _ = plotting.figure_2_data(results, FIG2_KS, out=out)
    fig9, _ = plotting.figure_9_data(results, (1, 64), FIG1_KS, 1, out=out)
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
    with pytest.raises(ValueError, match="at least 3"):
        loglog_slope(_snr_frame(rng, [1, 10], {"reg": -0.5}), "reg")
    with pytest.raises(ValueError, match="no rows"):
        loglog_slope(df, "iwae")

    # `where` selects one curve of a frame with several (figure 9's batch sizes).
    one = _snr_frame(rng, ks, {"reg": -0.5}, sigma=0.0).assign(batch_size=1)
    other = _snr_frame(rng, ks, {"reg": -0.2}, sigma=0.0).assign(batch_size=64)
    both = pd.concat([one, other], ignore_index=True)
    assert loglog_slope(both, "reg", batch_size=64).slope == pytest.approx(-0.2, abs=1e-12)
    assert loglog_slope(both, "reg", batch_size=1).slope == pytest.approx(-0.5, abs=1e-12)


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
    argv += ["--results_path", str(results)]
    argv += ["--out", str(tmp_path), "--command", "sweep", "--wall_time_s", "3"]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "figure_1: reg: slope -" in out and "figure_1: dreg: slope +" in out
    assert "figure_9 (batch_size=1): reg: slope -" in out
    assert "figure_9 (batch_size=64): reg: slope -" in out
    assert _png_ok(tmp_path / "figure_1" / "figure_1.png")
    meta = json.loads((tmp_path / "figure_1" / META_FILE).read_text())
    # the reduced profile's K grid and points: partial data, the rest listed
    assert meta["profile"] == "reduced" and meta["figure_params"]["num_datapoints"] == 5
    assert meta["missing"] and meta["figure_params"]["iterations"] == 5000
    assert (
        cli.main(["figure_1", "--results_path", str(tmp_path / "none"), "--out", str(tmp_path)])
        == 2
    )
