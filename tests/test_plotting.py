"""The figures and Table 1 from small inputs: real gradient dumps of a tiny run (figure 1),
synthetic dumps and data files elsewhere; the printed commands, partial data, bad inputs."""

import importlib.util
import io
import re
from pathlib import Path

import numpy as np
import pytest
import scipy.stats

from dgp_snr import plotting
from dgp_snr.evaluation import FigureDataRow, figure_data_path, write_figure_data
from dgp_snr.gradient_dumps import dump_path, save_gradient_dump
from dgp_snr.gradients import EncoderGradientSampler
from dgp_snr.plotting import MissingInputsError
from dgp_snr.protocol import paper_config
from dgp_snr.runs import RunCheckpoints, RunConfig, build_run, save_config

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
        f"--ks {ks} --num_samples 200 --batch_size 1 --num_datapoints 10 --estimator {est} "
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
        "--num_samples 1000 --batch_size 1 --num_datapoints 2 --estimator reg --save_aggregates\n"
        f"python experiments/sample_gradients.py {FIG1_RUN} --results_path {tmp_path} --ks 1,5 "
        "--num_samples 1000 --batch_size 1 --num_datapoints 2 --estimator dreg --save_aggregates\n"
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
        f"--ks 100 --num_samples {R} --batch_size 1 --num_datapoints 1 --estimator dreg"
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
