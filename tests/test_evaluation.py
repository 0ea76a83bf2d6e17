"""Evaluation of a tiny trained run: compiled, chunked test log-likelihood, train ELBO,
predictive samples, the per-run cache, the figure data files and experiments/evaluate.py."""

import importlib.util
import shutil
from pathlib import Path

import numpy as np
import pytest
from scipy.special import logsumexp

from dgp_snr.evaluation import Evaluator
from dgp_snr.figure_data import (
    FigureDataRow,
    figure_data_path,
    read_figure_data,
    write_figure_data,
)
from dgp_snr.protocol import evaluate_target, paper_config, train_command
from dgp_snr.run_evaluation import EVALUATION_FILE, evaluate_run
from dgp_snr.runs import RunCheckpoints, RunConfig, build_run, load_run, save_config

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """demo_normalized_L1_G5_IWAE_SF0_K50_BS64_reg (the name of a paper run) with M = 8,
    trained for 2 steps."""
    results = tmp_path_factory.mktemp("results")
    config = RunConfig.from_flat(
        dataset="demo_normalized",
        split=0,
        configuration="L1_G5",
        M=8,
        num_IW_samples=50,
        minibatch_size=64,
        estimator="reg",
        iterations=2,
        results_path=str(results),
    )
    assert config.run_name == paper_config("demo_normalized", 0, 2).run_name
    _, trainer, _ = build_run(config)
    for _ in range(2):
        trainer.train_step()
    save_config(config, config.run_dir())
    RunCheckpoints(trainer, config.run_dir()).save()
    return config.run_dir()


@pytest.fixture(scope="module")
def loaded(run_dir):
    model, _, data, _ = load_run(run_dir)
    return model, data, Evaluator(model)


def test_log_predictive_density_is_finite_and_chunking_invariant(loaded):
    model, data, evaluator = loaded
    X, Y = data.X_test[:12], data.Y_test[:12]
    S = 200
    one_chunk = evaluator
    assert one_chunk.chunk_sizes(S, 12) == (12, S)
    by_points = Evaluator(model, max_elements=one_chunk.row_cost * S * 5)
    assert by_points.chunk_sizes(S, 12) == (5, S)
    by_samples = Evaluator(model, max_elements=one_chunk.row_cost * 60)
    assert by_samples.chunk_sizes(S, 12) == (1, 60)

    reference = one_chunk.log_predictive_density(X, Y, S, seed=7)
    assert reference.shape == (12,) and np.all(np.isfinite(reference))
    np.testing.assert_allclose(
        by_points.log_predictive_density(X, Y, S, seed=7), reference, atol=1e-10
    )
    np.testing.assert_allclose(
        by_samples.log_predictive_density(X, Y, S, seed=7), reference, atol=1e-10
    )
    # Another seed or repeat draws other samples.
    assert not np.allclose(one_chunk.log_predictive_density(X, Y, S, seed=8), reference)
    assert not np.allclose(one_chunk.log_predictive_density(X, Y, S, seed=7, repeat=1), reference)


def test_repeated_test_ll_agrees_with_numpy_within_monte_carlo_error(loaded):
    model, data, evaluator = loaded
    X, Y = data.X_test[:30], data.Y_test[:30]
    S, R = 300, 6
    result = evaluator.test_log_likelihood(X, Y, S, R, seed=1)
    assert result.values.shape == (R,) and np.all(np.isfinite(result.values))
    assert result.std > 0

    sigma2 = float(model.likelihood.variance.numpy())
    direct = []
    for _ in range(R):
        mean, var = (a.numpy()[..., 0] for a in model.predict_f_samples_marginals(X, S))  # [S, N]
        var = var + sigma2
        log_dens = -0.5 * (np.log(2 * np.pi) + np.log(var) + (Y[:, 0] - mean) ** 2 / var)
        direct.append(np.mean(logsumexp(log_dens, axis=0) - np.log(S)))
    direct = np.array(direct)
    se = np.sqrt(result.values.var(ddof=1) / R + direct.var(ddof=1) / R)
    assert abs(result.mean - direct.mean()) < 5 * se + 1e-9


def test_train_elbo_is_chunking_invariant_and_matches_the_model_bound(loaded):
    model, data, evaluator = loaded
    X, Y = data.X_train[:300], data.Y_train[:300]
    R = 3
    values = evaluator.train_elbo(X, Y, repeats=R, seed=3)
    assert values.shape == (R,) and np.all(np.isfinite(values))
    small = Evaluator(model, max_elements=evaluator.row_cost * 50 * 70)  # 70 points per call
    np.testing.assert_allclose(small.train_elbo(X, Y, repeats=R, seed=3), values, rtol=1e-12)

    # model.elbo scales the batch by N/B; undo it to get Σ per-point terms - KL[q(u) || p(u)].
    kl = sum(float(layer.prior_kl()) for layer in model.gp_layers)
    scale = len(X) / model.num_data
    direct = np.array([(float(model.elbo(X, Y)) + kl) * scale - kl for _ in range(R)])
    se = np.sqrt(values.var(ddof=1) / R + direct.var(ddof=1) / R)
    assert abs(values.mean() - direct.mean()) < 5 * se + 1e-6 * abs(direct.mean())


def test_predictive_samples(loaded):
    model, data, evaluator = loaded
    x = data.X_test[3]
    ys = evaluator.predictive_samples(x, 4000, seed=2, index=3)
    assert ys.shape == (4000,) and np.all(np.isfinite(ys))
    np.testing.assert_array_equal(evaluator.predictive_samples(x, 4000, seed=2, index=3), ys)
    chunked = Evaluator(model, max_elements=evaluator.row_cost * 700)
    np.testing.assert_allclose(
        chunked.predictive_samples(x, 4000, seed=2, index=3), ys, atol=1e-12
    )
    direct = model.predict_y_samples(x[None], 4000).numpy()[:, 0, 0]
    se = np.sqrt(ys.var() / 4000 + direct.var() / 4000)
    assert abs(ys.mean() - direct.mean()) < 5 * se


def test_bad_inputs(loaded):
    model, data, evaluator = loaded
    with pytest.raises(ValueError, match=r"expected X \[N, D\] and Y \[N, 1\]"):
        evaluator.log_predictive_density(data.X_test[:3], data.Y_test[:2], 10)
    with pytest.raises(ValueError, match="num_predictive_samples"):
        evaluator.log_predictive_density(data.X_test[:3], data.Y_test[:3], 0)
    with pytest.raises(ValueError, match="max_elements"):
        Evaluator(model, max_elements=0)


def test_evaluate_run_caches_its_results(run_dir):
    first = evaluate_run(run_dir, elbo=True, num_predictive_samples=50, repeats=2, elbo_repeats=2)
    assert first.step == 2 and first.run_name == run_dir.name
    assert first.test_ll.shape == (2,) and first.train_elbo.shape == (2,)
    assert np.all(np.isfinite(first.test_ll)) and np.all(np.isfinite(first.train_elbo))
    assert first.cached == {"test_ll": False, "train_elbo": False}
    assert (run_dir / EVALUATION_FILE).is_file()
    second = evaluate_run(run_dir, elbo=True, num_predictive_samples=50, repeats=2, elbo_repeats=2)
    assert second.cached == {"test_ll": True, "train_elbo": True}
    np.testing.assert_array_equal(second.test_ll, first.test_ll)
    np.testing.assert_array_equal(second.train_elbo, first.train_elbo)


def test_evaluate_run_errors(tmp_path, run_dir):
    with pytest.raises(FileNotFoundError, match="config.json is missing"):
        evaluate_run(tmp_path / "nothing")
    bare = tmp_path / "bare"
    save_config(RunConfig.from_flat(dataset="demo_normalized"), bare)
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        evaluate_run(bare)
    broken = tmp_path / "broken"
    shutil.copytree(run_dir, broken)
    (broken / EVALUATION_FILE).write_text("{not json")
    with pytest.raises(ValueError, match=f"corrupt evaluation cache {broken / EVALUATION_FILE}"):
        evaluate_run(broken, num_predictive_samples=10, repeats=1)


def test_evaluate_target_writes_data_and_lists_missing_runs(run_dir):
    """The fixture's run finished its 2 iterations; its fixq partner does not exist, so split 0
    is skipped until that run exists, and the runs to train are listed with their commands."""
    results = run_dir.parent
    fixq = paper_config("demo_normalized", 0, 2, fixq=True, results_path=results, iterations=2)
    log = []
    kwargs = dict(datasets=["demo_normalized"], splits=1, iterations=2, num_predictive_samples=50)
    report = evaluate_target("figure_4", results, repeats=2, log=log.append, **kwargs)
    assert report.written == {} and report.evaluated == []
    assert [r.config.run_name for r in report.missing] == [fixq.run_name]
    text = "\n".join(log)
    assert "splits used (0 of 1): none" in text
    assert f"split 0 skipped: not finished at 2 iterations: {fixq.run_name} has no" in text
    assert train_command(fixq) in text

    _, trainer, _ = build_run(fixq)
    trainer.step.assign(2)
    save_config(fixq, fixq.run_dir())
    RunCheckpoints(trainer, fixq.run_dir()).save()
    report = evaluate_target("figure_4", results, repeats=2, log=log.append, **kwargs)
    path = figure_data_path(results, "figure_4")
    assert report.written == {"test_ll": path} and report.missing == []
    rows = read_figure_data(path)
    assert [(r.dataset, r.flag, r.split) for r in rows] == [
        ("demo_normalized", False, 0),
        ("demo_normalized", True, 0),
    ]
    np.testing.assert_array_equal(rows[0].values, report.evaluated[0].test_ll)
    assert "PREVIEW" not in path.read_text()


def test_train_command_is_exact():
    config = paper_config("wilson_pol", 3, 2, fixq=True, results_path="my results")
    assert train_command(config) == (
        "python experiments/train.py with dataset=wilson_pol split=3 configuration=L1_G5 "
        "mode=IWAE num_IW_samples=50 minibatch_size=64 estimator=reg qz_mode=fix_mu_sigma "
        "iterations=300000 'results_path=my results'"
    )
    assert config.run_name == "wilson_pol_L1_G5_IWAE_SF3_K50_BS64_reg_fixq"


def test_figure_data_roundtrip_and_malformed_files(tmp_path):
    rows = [
        FigureDataRow("power", False, 0, np.array([0.1, 1 / 3])),
        FigureDataRow("power", True, 0, np.array([-2.5e-7])),
    ]
    path = write_figure_data(tmp_path / "fd" / "x.txt", rows)
    back = read_figure_data(path)
    assert [(r.dataset, r.flag, r.split) for r in back] == [
        ("power", False, 0),
        ("power", True, 0),
    ]
    np.testing.assert_array_equal(back[0].values, rows[0].values)  # exact round trip
    assert path.read_text().splitlines()[1] == "power\tT\t0\t-2.5e-07"

    bad = tmp_path / "bad.txt"
    bad.write_text("power\tF\t0\t0.1\npower\tX\t1\t0.2\n")
    with pytest.raises(ValueError, match=r"bad\.txt, line 2: malformed figure data"):
        read_figure_data(bad)
    bad.write_text("power F zero 0.1\n")
    with pytest.raises(ValueError, match=r"bad\.txt, line 1"):
        read_figure_data(bad)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_figure_data(tmp_path / "none.txt")


def test_evaluate_cli_lists_missing_runs(tmp_path, capsys):
    """The script's main(), in process (a subprocess would import TensorFlow again)."""
    spec = importlib.util.spec_from_file_location(
        "evaluate_cli", ROOT / "experiments" / "evaluate.py"
    )
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    assert cli.main(["figure_4", "--results_path", str(tmp_path)]) == 2
    out, err = capsys.readouterr()
    assert "120 run(s) to train or finish for 10 splits each" in out
    assert "wilson_forest_L1_G5_IWAE_SF0_K50_BS64_reg_fixq" in out
    assert "no split of figure_4 has all its runs at 300000 iterations" in err
    assert not (tmp_path / "figure_data").exists()
    assert cli.main(["runs", "--results_path", str(tmp_path), "nope"]) == 1
    assert "config.json is missing" in capsys.readouterr().err
