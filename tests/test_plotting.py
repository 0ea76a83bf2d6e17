"""The figures and Table 1 from small inputs: real gradient dumps of a tiny run (figure 1),
synthetic dumps and data files elsewhere; the printed commands, partial data, bad inputs; and
what the drawn figures show (log axes, fitted slopes, error bars, strip plots, ranges)."""

import importlib.util
import inspect
import io
import re
from pathlib import Path

import matplotlib
import matplotlib.collections
import numpy as np
import pandas as pd
import pytest
import scipy.stats
from matplotlib import pyplot as plt

from dgp_snr import plotting
from dgp_snr.figure_data import FigureDataRow, figure_data_path, write_figure_data
from dgp_snr.gradient_dumps import dump_path, load_gradient_dump, save_gradient_dump
from dgp_snr.gradients import EncoderGradientSampler
from dgp_snr.plotting import MissingInputsError, common, evaluation_figures, snr_batch, snr_summary
from dgp_snr.plotting import snr as snr_figures
from dgp_snr.plotting.common import target_data
from dgp_snr.protocol import paper_config
from dgp_snr.protocol import targets as protocol_targets
from dgp_snr.protocol.profiles import PROFILES
from dgp_snr.runs import RunCheckpoints, RunConfig, build_run, save_config
from dgp_snr.slopes import slope_fits

ROOT = Path(__file__).resolve().parents[1]
FIG1_RUN = "demo_normalized_L1_IWAE_SF0_K50_BS64_reg"


#: Estimates per synthetic dump (the figures are asked for this many).
R = 300


def _meta(estimator, K, batch_size=1, datapoint=0, num_samples=100, step=300_000, seed=0):
    """A dump's record (gradient_dumps.RECORD_FIELDS): synthetic dumps stand without their run,
    so the step they are asked at is the paper's iterations; seed = the run's split."""
    return {
        "K": K,
        "batch_size": batch_size,
        "num_samples": num_samples,
        "datapoint": datapoint,
        "batch_start": max(datapoint, 0),
        "step": step,
        "estimator": estimator,
        "seed": seed,
        "precision": "float64",
    }


def _synthetic_dump(path, estimator, K, rng, aggregates=True, batch_size=1, datapoint=0, seed=0):
    """Synthetic encoder gradients whose SNR grows (DReG) or falls (REG) with K."""
    snr = 0.5 * (np.sqrt(K) if estimator == "dreg" else 1 / np.sqrt(K))
    samples = {
        "layer0/W0": 1.0 + rng.standard_normal((R, 2, 20)) / snr,
        "layer0/W1": -1.0 + rng.standard_normal((R, 20, 2)) / snr,
        "layer0/b0": rng.standard_normal((R, 20)),
    }
    meta = _meta(estimator, K, batch_size, datapoint, R, seed=seed)
    save_gradient_dump(path, samples, meta, aggregates=aggregates)


def _png_ok(path: Path) -> bool:
    return path.is_file() and path.stat().st_size > 1000 and path.read_bytes()[:4] == b"\x89PNG"


@pytest.fixture(scope="module")
def fig1_results(tmp_path_factory):
    """The figure-1 run (depth 1, M = 8, one training step) and real aggregate dumps, reg and
    dreg, batch size 1, data points 0 and 1, K = 1, 5, 10."""
    results = tmp_path_factory.mktemp("results")
    config = RunConfig.from_flat(
        dataset="demo_normalized",
        configuration="L1",
        M=8,
        num_IW_samples=50,
        minibatch_size=64,
        iterations=1,
        results_path=str(results),
    )
    assert config.run_name == FIG1_RUN
    model, trainer, data = build_run(config)
    trainer.train_step()
    save_config(config, config.run_dir())
    RunCheckpoints(trainer, config.run_dir()).save()
    sampler = None
    for dp in (0, 1):
        sampler = EncoderGradientSampler(
            model, data.X_train[dp : dp + 1], data.Y_train[dp : dp + 1]
        )
        for estimator in ("reg", "dreg"):
            for K in (1, 5, 10):
                samples = sampler.sample(K, 200, estimator)
                path = dump_path(config.run_dir(), estimator, 1, K, dp, aggregates=True)
                meta = _meta(estimator, K, 1, dp, 200, step=1)  # the run's one checkpoint
                save_gradient_dump(path, samples, meta, aggregates=True)
    return results


def test_figure_1_from_real_dumps(fig1_results, tmp_path):
    out = io.StringIO()
    report = plotting.figure_1(
        fig1_results, tmp_path, ks=(1, 5, 10), num_datapoints=2, num_estimates=200, out=out
    )
    assert report.commands == [] and report.missing == []
    assert "#### figure_1: all inputs present ####" in out.getvalue()
    assert report.outputs == [tmp_path / "figure_1.pdf", tmp_path / "figure_1.png"]
    assert _png_ok(tmp_path / "figure_1.png") and (tmp_path / "figure_1.pdf").stat().st_size > 0


def test_figure_1_partial_data_draws_and_lists_the_rest(fig1_results, tmp_path):
    out = io.StringIO()
    # the paper's Ks, 10 points; the dumps' 200 estimates
    report = plotting.figure_1(fig1_results, tmp_path, num_estimates=200, out=out)
    assert _png_ok(tmp_path / "figure_1.png")
    # No training command (the run exists); one sampling command per estimator, every K.
    ks = ",".join(str(k) for k in plotting.FIGURE_1_KS)
    assert report.commands == [
        f"python experiments/sample_gradients.py {FIG1_RUN} --results_path {fig1_results} "
        f"--ks {ks} --num_estimates 200 --batch_size 1 --num_datapoints 10 --estimator {est} "
        "--save_aggregates"
        for est in ("reg", "dreg")
    ]
    assert len(report.missing) == 2 * (21 * 10 - 3 * 2)
    assert "drawn from partial data" in out.getvalue()


def test_figure_1_missing_inputs_prints_the_exact_commands(tmp_path):
    out = io.StringIO()
    with pytest.raises(MissingInputsError, match="figure_1: none of its inputs exist"):
        plotting.figure_1(tmp_path, tmp_path / "figures", ks=(1, 5), num_datapoints=2, out=out)
    assert out.getvalue() == (
        "#### figure_1: commands to create the missing inputs ####\n"
        "python experiments/train.py with dataset=demo_normalized split=0 configuration=L1 "
        "mode=IWAE num_IW_samples=50 minibatch_size=64 estimator=reg iterations=300000 "
        f"results_path={tmp_path}\n"
        f"python experiments/sample_gradients.py {FIG1_RUN} --results_path {tmp_path} --ks 1,5 "
        "--num_estimates 1000 --batch_size 1 --num_datapoints 2 --estimator reg "
        "--save_aggregates\n"
        f"python experiments/sample_gradients.py {FIG1_RUN} --results_path {tmp_path} --ks 1,5 "
        "--num_estimates 1000 --batch_size 1 --num_datapoints 2 --estimator dreg "
        "--save_aggregates\n"
        "#### end of commands ####\n"
    )
    assert not (tmp_path / "figures").exists()


def test_corrupt_dump_names_the_file(tmp_path):
    run_dir = tmp_path / FIG1_RUN
    path = dump_path(run_dir, "reg", 1, 1, 0, aggregates=True)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"PK\x03\x04 this is not a zip archive")
    with pytest.raises(ValueError, match=re.escape(f"corrupt gradient dump {path}")):
        plotting.figure_1(tmp_path, tmp_path, ks=(1,), num_datapoints=1, out=io.StringIO())


def test_figure_2_from_raw_dumps(tmp_path):
    rng = np.random.default_rng(0)
    run_dir = paper_config("demo_normalized", 0, 2, results_path=tmp_path).run_dir()
    for estimator in ("reg", "dreg"):
        for K in (1, 10, 100):
            _synthetic_dump(dump_path(run_dir, estimator, 1, K, 0), estimator, K, rng, False)
    out = io.StringIO()
    report = plotting.figure_2(tmp_path, tmp_path / "figs", num_estimates=R, out=out)
    assert report.commands == [] and report.missing == []
    assert _png_ok(tmp_path / "figs" / "figure_2.png")
    assert (tmp_path / "figs" / "figure_2.pdf").stat().st_size > 0

    # Aggregates alone do not serve figure 2: it asks for raw samples.
    (tmp_path / "figs" / "figure_2.png").unlink()
    dump_path(run_dir, "dreg", 1, 100, 0).unlink()
    _synthetic_dump(dump_path(run_dir, "dreg", 1, 100, 0, True), "dreg", 100, rng, True)
    report = plotting.figure_2(tmp_path, tmp_path / "figs", num_estimates=R, out=io.StringIO())
    assert report.commands[-1].endswith(
        f"--ks 100 --num_estimates {R} --batch_size 1 --num_datapoints 1 --estimator dreg"
    )
    assert _png_ok(tmp_path / "figs" / "figure_2.png")


@pytest.mark.parametrize("name", ["figure_3", "figure_8", "figure_9"])
def test_snr_bar_and_line_figures_from_aggregates(tmp_path, name):
    rng = np.random.default_rng(1)
    if name == "figure_3":
        kwargs = dict(datasets=("demo_normalized", "power"), depths=(1, 2), ks=(1, 10))
        kwargs["num_datapoints"] = 1
        for dataset in kwargs["datasets"]:
            for depth in (1, 2):
                run_dir = paper_config(dataset, 0, depth, results_path=tmp_path).run_dir()
                for est in ("reg", "dreg"):
                    for K in (1, 10):
                        _synthetic_dump(dump_path(run_dir, est, 1, K, 0, True), est, K, rng)
    elif name == "figure_8":
        kwargs = dict(datasets=("power", "winered"))
        for dataset in kwargs["datasets"]:
            run_dir = paper_config(dataset, 1, 2, results_path=tmp_path).run_dir()  # split 1
            for est in ("reg", "dreg"):
                path = dump_path(run_dir, est, 64, 50, None, True)
                _synthetic_dump(path, est, 50, rng, batch_size=64, datapoint=-1, seed=1)
    else:
        kwargs = dict(batch_sizes=(1, 64), ks=(1, 2, 5, 10), num_datapoints=2)
        run_dir = paper_config("power", 0, 3, K=30, results_path=tmp_path).run_dir()
        for K in (1, 2, 5, 10):
            for dp in (0, 1):
                path = dump_path(run_dir, "reg", 1, K, dp, True)
                _synthetic_dump(path, "reg", K, rng, datapoint=dp)
            path = dump_path(run_dir, "reg", 64, K, None, True)
            _synthetic_dump(path, "reg", K, rng, batch_size=64, datapoint=-1)
    report = plotting.FIGURES[name](
        tmp_path, tmp_path / "figs", out=io.StringIO(), num_estimates=R, **kwargs
    )
    assert report.commands == [] and report.missing == []
    assert _png_ok(tmp_path / "figs" / f"{name}.png")


def test_figure_4_from_its_data_file(tmp_path):
    rng = np.random.default_rng(2)
    rows = [
        FigureDataRow(d, flag, s, rng.normal(-1.0 if flag else 0.5, 0.1, size=10))
        for d in ("power", "winered")
        for flag in (False, True)
        for s in range(10)
    ]
    write_figure_data(figure_data_path(tmp_path, "figure_4"), rows)
    out = io.StringIO()
    report = plotting.figure_4(tmp_path, tmp_path / "figs", datasets=("power", "winered"), out=out)
    assert report.missing == [] and _png_ok(tmp_path / "figs" / "figure_4.png")
    # One dataset of the paper's six has data: the others are listed, training then evaluate.
    report = plotting.figure_4(tmp_path, tmp_path / "figs", out=io.StringIO())
    # the 4 x 10 pairs of runs to train, then one evaluate.py entry per short dataset
    assert len(report.missing) == 4 * 10 * 2 + 4
    assert (
        report.commands[-1] == f"python experiments/evaluate.py figure_4 --results_path {tmp_path}"
    )
    assert report.commands[0].startswith("python experiments/train.py with dataset=wilson_forest")


def test_figure_5_draws_what_exists(fig1_results, tmp_path):
    # Depth 1 panels on demo_normalized: the learned-q(w) run exists, its fixq twin does not.
    report = plotting.figure_5(
        fig1_results,
        tmp_path,
        panels=(("demo_normalized", 0, 0),),
        num_predictive_samples=500,
        depth=1,
        out=io.StringIO(),
    )
    assert report.missing == [f"run {FIG1_RUN}_fixq (no checkpoint)"]
    assert "qz_mode=fix_mu_sigma" in report.commands[0]
    assert _png_ok(tmp_path / "figure_5.png")


def test_table_1_wilcoxon_matches_scipy(tmp_path):
    rng = np.random.default_rng(3)
    datasets = ("power", "winered")
    tll, elbo = [], []
    for d in datasets:
        for s in range(6):
            base = rng.normal()
            for flag in (False, True):
                tll.append(FigureDataRow(d, flag, s, base + 0.05 * flag + rng.normal(0, 0.02, 10)))
                elbo.append(FigureDataRow(d, flag, s, rng.normal(-1000, 10, 10)))
    write_figure_data(figure_data_path(tmp_path, "table_1_tll"), tll)
    write_figure_data(figure_data_path(tmp_path, "table_1_elbo"), elbo)
    out = io.StringIO()
    report = plotting.table_1(tmp_path, tmp_path / "figs", datasets=datasets, splits=6, out=out)
    assert report.missing == []

    reg = [r.mean for r in tll if not r.flag]
    dreg = [r.mean for r in tll if r.flag]
    two = scipy.stats.wilcoxon(reg, dreg)
    one = scipy.stats.wilcoxon(reg, dreg, alternative="less")
    tests = plotting.wilcoxon_tests(reg, dreg)
    assert tests.two_sided.pvalue == two.pvalue and tests.one_sided.pvalue == one.pvalue
    assert tests.two_sided.statistic == two.statistic and tests.num_pairs == 12
    text = out.getvalue()
    assert f"p = {two.pvalue:.6g}" in text and f"p = {one.pvalue:.6g}" in text
    power_reg = [r.mean for r in tll if r.dataset == "power" and not r.flag]
    se = np.std(power_reg, ddof=1) / np.sqrt(6)
    assert f"{np.mean(power_reg):.3f} ± {se:.3f}" in text
    assert (tmp_path / "figs" / "table_1.txt").read_text().strip() == report.text.strip()
    with pytest.raises(ValueError, match="paired values"):
        plotting.wilcoxon_tests([1.0, 2.0], [1.0])


def test_plot_cli_exit_status(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("plot_cli", ROOT / "experiments" / "plot.py")
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    figures = tmp_path / "figs"
    assert (
        cli.main(["figure_2", "--results_path", str(tmp_path), "--figures_dir", str(figures)]) == 2
    )
    out, err = capsys.readouterr()
    assert out.startswith("#### figure_2: commands to create the missing inputs ####\n")
    assert "python experiments/train.py with dataset=demo_normalized split=0 " in out
    assert "configuration=L1_G5" in out and "none of its inputs exist" in err
    bad = figure_data_path(tmp_path, "figure_4")
    bad.parent.mkdir(parents=True)
    bad.write_text("power F 0 not-a-number\n")
    assert cli.main(["figure_4", "--results_path", str(tmp_path)]) == 1
    assert f"{bad}, line 1: malformed figure data" in capsys.readouterr().err


# ------------------------------------------------------------------------------ figures that
# show their claim (issue 19): drawn from frames alone, the drawn figure inspected


@pytest.fixture
def drawn(monkeypatch):
    """The figures the draw functions make, kept open (not saved) for inspection."""
    figures = []

    def keep(fig, name, figures_dir):
        figures.append(fig)
        return []

    for module in (snr_figures, snr_summary, snr_batch, evaluation_figures):
        monkeypatch.setattr(module, "_save", keep)
    yield figures
    for fig in figures:
        plt.close(fig)


def _summary(rows, se=True) -> pd.DataFrame:
    """An SNR_SUMMARY_COLUMNS frame from (dataset, depth, estimator, batch, K, snr, se)."""
    records = [
        (
            d,
            depth,
            50,
            est,
            bs,
            K,
            plotting.ALL_WEIGHTS,
            v,
            640,
            1,
            200,
            s,
            snr_summary.SE_BOOTSTRAP,
        )
        for d, depth, est, bs, K, v, s in rows
    ]
    df = pd.DataFrame(records, columns=list(plotting.SNR_SUMMARY_COLUMNS))
    return df if se else df.drop(columns=["snr_se", "snr_se_method"])


def _power_law(K, a, c=0.3):
    return c * K**a


def test_figure_3_keeps_the_paper_bars_and_adds_a_log_log_row(drawn):
    ks = (1, 10, 100)
    rows = [
        (d, depth, est, 1, K, _power_law(K, -0.5 if est == "reg" else 0.5, 0.2 * depth), 0.0)
        for est in ("reg", "dreg")
        for d in ("wilson_solar", "winered")
        for depth in (1, 2)
        for K in ks
    ]
    plotting.draw_figure_3(_summary(rows), "unused")
    (fig,) = drawn
    axes = np.array(fig.axes).reshape(3, 2)
    for ax in axes[:2].ravel():  # the paper's bar rows: linear, 2 depths x 3 Ks bars
        assert ax.get_yscale() == "linear" and len(ax.patches) == 2 * len(ks)
    for col, dataset in enumerate(("wilson_solar", "winered")):
        ax = axes[2, col]
        assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
        lines = {line.get_label(): line for line in ax.get_lines()}
        for est, label in (("reg", "REG"), ("dreg", "DReG")):
            for depth in (1, 2):
                line = lines[f"{label}, {depth} layer{'s' if depth > 1 else ''}"]
                want = [r[5] for r in rows if r[:3] == (dataset, depth, est)]
                np.testing.assert_allclose(line.get_xdata(), ks)
                np.testing.assert_allclose(line.get_ydata(), want)
        # the theory's slopes ±1/2 in log-log coordinates
        slopes = sorted(
            np.polyfit(np.log(line.get_xdata()), np.log(line.get_ydata()), 1)[0]
            for line in ax.get_lines()
            if line.get_linestyle() == ":"
        )
        np.testing.assert_allclose(slopes, [-0.5, 0.5], atol=1e-12)


def test_figure_9_has_log_axes_and_a_reference_per_batch_size(drawn):
    ks = (1, 5, 10, 30, 50)
    rows = [
        ("power", 3, "reg", bs, K, _power_law(K, -0.5, 0.1 * bs**0.5), 0.0)
        for bs in (1, 64)
        for K in ks
    ]
    plotting.draw_figure_9(_summary(rows), "unused")
    (ax,) = drawn[0].axes
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    assert list(ax.get_xticks()) == [1, 5, 10, 30, 50]
    curves = [line for line in ax.get_lines() if line.get_label().startswith("batch size")]
    assert [c.get_label() for c in curves] == ["batch size 1", "batch size 64"]
    references = [line for line in ax.get_lines() if line.get_linestyle() == ":"]
    assert len(references) == 2
    for line in references:
        x, y = line.get_xdata(), line.get_ydata()
        assert np.polyfit(np.log(x), np.log(y), 1)[0] == pytest.approx(-0.5, abs=1e-12)


def test_figure_8_error_bars_are_the_standard_errors(drawn):
    rows = [
        ("wilson_solar", 2, "reg", 64, 50, 0.106, 0.004),
        ("wilson_solar", 2, "dreg", 64, 50, 0.124, 0.006),
        ("winered", 2, "reg", 64, 50, 0.082, 0.003),
        ("winered", 2, "dreg", 64, 50, 0.525, 0.02),
    ]
    plotting.draw_figure_8(_summary(rows), "unused")
    fig = drawn[0]
    for ax, dataset in zip(fig.axes, ("wilson_solar", "winered")):
        bars = [c for c in ax.containers if isinstance(c, matplotlib.container.BarContainer)]
        assert len(bars) == 2
        for container, (_, _, _, _, _, value, se) in zip(
            bars, [r for r in rows if r[0] == dataset]
        ):
            (segment,) = container.errorbar.lines[2][0].get_segments()
            (x0, lo), (x1, hi) = segment
            assert x0 == x1 and hi - value == pytest.approx(se) and value - lo == pytest.approx(se)
    caption = " ".join(" ".join(t.get_text() for t in fig.texts).split())  # wrapped lines
    assert (
        "standard error" in caption and "bootstrap over the 640 encoder weight entries" in caption
    )

    # A frame exported before the standard errors existed: bars without error bars, said so.
    plotting.draw_figure_8(_summary(rows, se=False), "unused")
    fig = drawn[1]
    for ax in fig.axes:
        assert all(c.errorbar is None for c in ax.containers)
    assert "no error bars" in " ".join(t.get_text() for t in fig.texts)


def test_snr_standard_error_over_data_points_or_a_bootstrap_over_entries():
    rng = np.random.default_rng(7)
    per_datapoint = rng.gamma(2.0, 0.1, size=(4, 300))
    se, method = snr_summary.snr_standard_error(per_datapoint)
    means = per_datapoint.mean(axis=1)
    assert method == snr_summary.SE_DATAPOINTS
    assert se == pytest.approx(np.std(means, ddof=1) / 2.0, rel=1e-12)
    one = per_datapoint[:1]
    se, method = snr_summary.snr_standard_error(one)
    assert method == snr_summary.SE_BOOTSTRAP
    # the bootstrap's standard error of a mean: about sd / sqrt(P)
    assert se == pytest.approx(np.std(one) / np.sqrt(300), rel=0.1)
    assert snr_summary.snr_standard_error(one) == (se, method)  # a fixed seed


def test_figure_1_summary_panel_shows_the_fitted_slopes_on_log_axes(drawn):
    ks = (1, 5, 10, 20, 50, 100)
    rows = []
    for est, a in (("reg", -0.4), ("dreg", 0.3)):
        for K in ks:
            for p in range(6):
                value = _power_law(K, a, 0.2 + 0.05 * p) * (1.3 if K == 1 else 1.0)
                rows.append(("demo_normalized", 1, est, K, f"W0[0, {p}]", value, 5, 300, p % 4))
    df = pd.DataFrame(rows, columns=list(plotting.FIGURE_1_COLUMNS))
    plotting.draw_figure_1(df, "unused")
    fig = drawn[0]
    summary = next(ax for ax in fig.axes if ax.get_yscale() == "log")
    assert summary.get_xscale() == "log"
    labels = [line.get_label() for line in summary.get_lines()]
    for est in ("reg", "dreg"):
        for fit in slope_fits(df, est):
            assert not fit.too_few
            label = next(
                lab
                for lab in labels
                if lab.endswith(f"{fit.ci_high:+.2f}]") and f"{fit.slope:+.2f}" in lab
            )
            line = summary.get_lines()[labels.index(label)]
            slope = np.polyfit(np.log(line.get_xdata()), np.log(line.get_ydata()), 1)[0]
            assert slope == pytest.approx(fit.slope, abs=1e-9)
            assert min(line.get_xdata()) == pytest.approx(min(fit.ks))
    references = [line for line in summary.get_lines() if line.get_linestyle() == ":"]
    slopes = sorted(
        np.polyfit(np.log(r.get_xdata()), np.log(r.get_ydata()), 1)[0] for r in references
    )
    np.testing.assert_allclose(slopes, [-0.5, 0.5], atol=1e-12)


def test_figure_2_fits_each_panel_and_keeps_the_reference_range_an_option(drawn):
    rng = np.random.default_rng(8)
    frames = []
    for est in ("reg", "dreg"):
        for K, scale in ((1, 5000.0), (10, 300.0), (100, 30.0)):
            sample = (0.5 if est == "dreg" else 0.0) * scale + scale * rng.standard_normal(400)
            frames.append(
                pd.DataFrame(
                    dict(estimator=est, K=K, parameter="W0[0, 4]", quantity="loss", sample=sample)
                )
            )
    df = pd.concat(frames, ignore_index=True)
    plotting.draw_figure_2(df, "unused")
    axes = np.array(drawn[0].axes[: 2 * 3]).reshape(3, 2)
    for row, K in enumerate((1, 10, 100)):
        for col, est in enumerate(("reg", "dreg")):
            g = df[(df["estimator"] == est) & (df["K"] == K)]["sample"].to_numpy()
            lo, hi = axes[row, col].get_xlim()
            half = snr_figures.figure_2_panel_range(g)
            assert (lo, hi) == pytest.approx((-half, half))  # symmetric about zero
            assert half == pytest.approx(
                1.05 * max(np.quantile(np.abs(g), 0.99), 1.1 * abs(g.mean()))
            )
    plotting.draw_figure_2(df, "unused", x_range=plotting.FIGURE_2_X_RANGE)
    for ax in drawn[1].axes[: 2 * 3]:
        assert ax.get_xlim() == pytest.approx(plotting.FIGURE_2_X_RANGE)
        assert len(ax.patches) == plotting.FIGURE_2_BINS  # the reference's 200 bins


def _figure_4_frame(splits):
    rng = np.random.default_rng(9)
    rows = [
        (d, s, qw, rng.normal(0.5 if qw == "learned" else 0.0, 0.1), 3, 5000, False)
        for d in ("wilson_solar", "winered")
        for qw in ("learned", "fixed")
        for s in range(splits)
    ]
    return pd.DataFrame(rows, columns=list(plotting.FIGURE_4_COLUMNS))


def test_figure_4_draws_one_point_per_split_below_five_splits(drawn):
    df = _figure_4_frame(2)
    plotting.draw_figure_4(df, "unused")
    for ax, dataset in zip(drawn[0].axes, ("wilson_solar", "winered")):
        points = [
            c for c in ax.collections if isinstance(c, matplotlib.collections.PathCollection)
        ]
        assert len(points) == 2  # learned and fixed
        for collection, qw in zip(points, ("learned", "fixed")):
            want = df[(df["dataset"] == dataset) & (df["qw"] == qw)].sort_values("split")
            offsets = collection.get_offsets()
            assert len(offsets) == 2  # one marker per split
            np.testing.assert_allclose(offsets[:, 1], want["test_ll"])
        assert not any(
            isinstance(c, matplotlib.collections.PolyCollection) for c in ax.collections
        )  # no violin
        paired = [line for line in ax.get_lines() if len(line.get_xdata()) == 2]
        assert len(paired) == 2  # each split's learned and fixed runs joined

    plotting.draw_figure_4(_figure_4_frame(5), "unused")
    for ax in drawn[1].axes:
        assert (
            sum(isinstance(c, matplotlib.collections.PolyCollection) for c in ax.collections) == 2
        )


def test_summary_frames_record_the_standard_error_of_each_mean(tmp_path):
    rng = np.random.default_rng(10)
    run_dir = paper_config("power", 0, 3, K=30, results_path=tmp_path).run_dir()
    for K in (1, 10):
        for dp in (0, 1, 2):
            _synthetic_dump(dump_path(run_dir, "reg", 1, K, dp, True), "reg", K, rng, datapoint=dp)
        path = dump_path(run_dir, "reg", 64, K, None, True)
        _synthetic_dump(path, "reg", K, rng, batch_size=64, datapoint=-1)
    df, _ = plotting.figure_9_data(
        tmp_path,
        batch_sizes=(1, 64),
        ks=(1, 10),
        num_datapoints=3,
        out=io.StringIO(),
        num_estimates=R,
    )
    assert list(df.columns) == list(plotting.SNR_SUMMARY_COLUMNS)
    for row in df.itertuples():
        bs, K = int(row.batch_size), int(row.K)
        dps = (0, 1, 2) if bs == 1 else (None,)
        per_datapoint = np.stack(
            [
                plotting.weight_snr(load_gradient_dump(dump_path(run_dir, "reg", bs, K, dp, True)))
                for dp in dps
            ]
        )
        assert row.snr == np.mean(per_datapoint.mean(axis=0))
        se, method = snr_summary.snr_standard_error(per_datapoint)
        assert (row.snr_se, row.snr_se_method) == (se, method)
        assert method == (snr_summary.SE_DATAPOINTS if bs == 1 else snr_summary.SE_BOOTSTRAP)


# ------------------------------------------------------------------------------ one definition
# per target (issue 20): a figure takes its target's parameters from protocol.targets by name


def _own_options(name):
    """The parameters of a figure's collect function that are not its target's."""
    defined = inspect.signature(protocol_targets.TARGETS[name]).parameters
    collect = inspect.signature(plotting.TIDY_FIGURES[name].collect).parameters
    return [p for p in list(collect)[1:] if p not in defined]


@pytest.mark.parametrize("name", sorted(protocol_targets.TARGETS))
def test_a_figure_takes_its_targets_parameters_as_the_definition_declares_them(name):
    """The collect and figure functions show the definition's parameters (names, defaults,
    annotations) and only their own options besides: nothing copied that could drift."""
    defined = list(inspect.signature(protocol_targets.TARGETS[name]).parameters.values())[1:]
    figure = plotting.TIDY_FIGURES[name]
    assert figure.collect.target == name
    for function in (figure.collect, plotting.FIGURES[name]):
        params = inspect.signature(function).parameters
        for p in defined:
            assert params[p.name] == p  # keyword-only, the definition's default and type
    assert "out" in _own_options(name)
    assert not set(_own_options(name)) & {p.name for p in defined}


@pytest.mark.parametrize("name", sorted(protocol_targets.TARGETS))
def test_no_parameter_of_a_target_is_positional(name, tmp_path):
    """Keyword-only after the results path (and figures folder): a reordering of a definition's
    parameters cannot rebind an argument; a positional one is refused."""
    functions = (
        (protocol_targets.TARGETS[name], 1),
        (plotting.TIDY_FIGURES[name].collect, 1),
        (plotting.FIGURES[name], 2),
    )
    for function, positional in functions:
        params = list(inspect.signature(function).parameters.values())
        assert all(p.kind is p.POSITIONAL_OR_KEYWORD for p in params[:positional])
        assert all(p.kind is p.KEYWORD_ONLY for p in params[positional:])
        with pytest.raises(TypeError):
            function(*[tmp_path] * positional, 1)


def test_a_figure_option_named_as_a_target_parameter_is_refused():
    def figure_1_data(results_path="results", *, ks=(1,), out=None, **params):
        raise AssertionError("not called")

    with pytest.raises(ValueError, match="duplicate parameter name"):
        target_data("figure_1")(figure_1_data)


def _dump_description(job, K, datapoint):
    where = f"data point {datapoint}" if datapoint is not None else f"batch {job.batch_size}"
    run, est, batch = job.config.run_name, job.estimator, job.batch_size
    return f"gradient dump {run} {est} batch {batch} K={K} {where}"


@pytest.mark.parametrize("profile", ["smoke", "paper"])
@pytest.mark.parametrize("name", sorted(protocol_targets.TARGETS))
def test_a_figure_reads_what_its_definition_asks(name, profile, tmp_path, monkeypatch):
    """Called with a profile's parameters by name (nothing on disk), each figure asks for
    exactly the inputs of its definition's spec built from the same parameters (the dumps of
    its sampling jobs, its runs, its evaluation's datasets and splits) and prints that spec's
    commands: a parameter not passed on by name, or not read back from the spec, would show
    as other inputs."""
    params = PROFILES[profile].params(name)
    spec = protocol_targets.target_spec(name, tmp_path, **params)
    reports = []
    report = common._Needs.report
    monkeypatch.setattr(common._Needs, "report", lambda *a: reports.append(report(*a))
                        or reports[-1])  # fmt: skip
    out = io.StringIO()
    with pytest.raises(MissingInputsError):
        plotting.TIDY_FIGURES[name].collect(tmp_path, out=out, **params)
    assert reports[0].commands == spec.pending_commands() and reports[0].commands
    assert spec.pending_commands()[0] in out.getvalue()
    missing = reports[0].missing
    if spec.samples:
        found = {m.removeprefix("raw ") for m in missing if "gradient dump" in m}
        asked = {_dump_description(j, K, dp) for j in spec.samples for K in j.ks
                 for dp in j.datapoints()}  # fmt: skip
        assert found == asked
    elif spec.evaluation is not None:
        job = spec.evaluation
        files = [m for m in missing if ": fewer than" in m]
        assert len(files) == (2 if name == "table_1" else 1) * len(job.datasets)
        assert all(f"fewer than {job.splits} splits for" in m for m in files)
        assert {m.split()[1] for m in missing if m.startswith("run ")} == {
            c.run_name for c in spec.runs
        }
    else:
        assert set(missing) == {f"run {c.run_name} (no checkpoint)" for c in spec.runs}
