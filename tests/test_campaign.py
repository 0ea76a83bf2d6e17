"""Committing a long run's newest checkpoint and restoring it elsewhere: training resumes
bit-identically, evaluations and scalars survive."""

import json
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dgp_snr import campaign, report
from dgp_snr.configs import RunConfig
from dgp_snr.evaluation import Evaluator
from dgp_snr.runs import CHECKPOINT_DIR, checkpoint_steps, load_run
from dgp_snr.source import code_version
from dgp_snr.train_run import train
from dgp_snr.training_record import read_training_record, summarize


def _config(results_path, iterations):
    return RunConfig.from_flat(
        dataset="demo_normalized", configuration="L1", M=8, minibatch_size=16,
        num_IW_samples=3, iterations=iterations, checkpoint_freq=2, log_main_freq=1,
        log_test_freq=2, num_predictive_samples=20, results_path=str(results_path),
    )  # fmt: skip


def _parameters(run_dir):
    model = load_run(run_dir)[0]
    return [v.numpy() for v in model.trainable_variables]


def test_a_saved_run_restored_elsewhere_resumes_bit_identically(tmp_path, monkeypatch):
    monkeypatch.setattr(campaign, "SCALAR_EVERY", 2)
    straight = _config(tmp_path / "straight", 8)
    train(straight, progress=False)

    first = _config(tmp_path / "machine_a", 4)
    train(first, progress=False)
    committed = tmp_path / "committed"
    assert campaign.save_run(first.run_dir(), committed) == 4
    saved = committed / first.run_name
    assert checkpoint_steps(saved) == [4]  # the newest only
    scalars = pd.read_csv(saved / campaign.SCALARS_FILE)
    assert set(scalars["step"]) == {2, 4}

    # Machine B, another results folder: the committed state only; training resumes to 8.
    later = _config(tmp_path / "machine_b", 8)
    message = campaign.restore_run(saved, tmp_path / "machine_b")
    assert "restored the committed checkpoint at step 4" in message
    train(later, progress=False)
    for a, b in zip(_parameters(straight.run_dir()), _parameters(later.run_dir())):
        np.testing.assert_array_equal(a, b)
    # The training record travels with the checkpoint: machine A's session, then B's.
    sessions = read_training_record(later.run_dir())
    assert [(s["from_step"], s["to_step"]) for s in sessions] == [(0, 4), (4, 8)]
    assert {s["git_commit"] for s in sessions} == {code_version()["git_commit"]}
    assert {s["precision"] for s in sessions} == {"float64"}
    assert summarize(sessions)["unrecorded_steps"] == 0

    # Saving again replaces the checkpoint and extends the scalars past the restore.
    assert campaign.save_run(later.run_dir(), committed) == 8
    assert checkpoint_steps(saved) == [8]
    assert set(pd.read_csv(saved / campaign.SCALARS_FILE)["step"]) == {2, 4, 6, 8}
    assert read_training_record(saved) == sessions
    # Saving again keeps the committed scalars to the last digit (pandas' default parser reads
    # this value one ulp off, which rewrote unchanged rows).
    path = saved / campaign.SCALARS_FILE
    path.write_text(path.read_text() + "x,2,3.6472606658935542\n")
    before = path.read_text()
    campaign.save_run(later.run_dir(), committed)
    assert path.read_text() == before
    # A folder already ahead is left alone.
    again = campaign.restore_run(saved, tmp_path / "machine_b")
    assert "kept the local checkpoint at step 8" in again


def test_restore_refuses_a_folder_with_other_settings(tmp_path):
    first = _config(tmp_path / "a", 2)
    train(first, progress=False)
    campaign.save_run(first.run_dir(), tmp_path / "committed")
    other = tmp_path / "b" / first.run_name
    shutil.copytree(first.run_dir(), other)
    config = json.loads((other / "config.json").read_text())
    config["model"]["M"] = 9
    (other / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="other settings"):
        campaign.restore_run(tmp_path / "committed" / first.run_name, tmp_path / "b")


def test_save_skips_a_damaged_newest_checkpoint(tmp_path):
    config = _config(tmp_path / "a", 4)
    train(config, progress=False)
    data = config.run_dir() / CHECKPOINT_DIR / "ckpt-4.data-00000-of-00001"
    data.write_bytes(data.read_bytes()[:10])
    assert campaign.save_run(config.run_dir(), tmp_path / "committed") == 2


def test_the_campaign_runs_the_sweep_restricted_to_its_datasets_and_splits(tmp_path):
    argv = campaign.PAPER_CAMPAIGN.sweep_argv(tmp_path)
    assert argv[:2] == ["table_1", "figure_4"]
    assert argv[argv.index("--splits") + 1] == "0,"
    assert argv[argv.index("--datasets") + 1] == "wilson_solar,wilson_forest"


def _authors():
    rows = []
    for quantity, flag, values in (
        ("table_1_tll", False, [1.0, 3.0]),
        ("table_1_tll", True, [5.0, 7.0]),
        ("figure_4_tll", False, [9.0]),
        ("figure_4_tll", True, [-1.0]),
    ):
        for r, v in enumerate(values):
            rows.append(
                dict(quantity=quantity, dataset="d", flag=flag, split=0, repeat=r, value=v)
            )
    return pd.DataFrame(rows)


@pytest.mark.parametrize(
    "estimator, qw, expected",
    [("reg", "learned", 2.0), ("dreg", "learned", 6.0), ("reg", "fixed", -1.0)],
)
def test_each_run_is_compared_with_the_authors_run_of_its_setting(estimator, qw, expected):
    value, source = campaign.authors_value(_authors(), "d", 0, estimator, qw)
    assert value == expected and source
    assert campaign.authors_value(_authors(), "d", 1, estimator, qw) == (None, "")


def test_the_learning_curve_reads_the_protocols_evaluations_only(tmp_path):
    config = _config(tmp_path / "r", 2)
    train(config, progress=False)
    committed = tmp_path / "committed"
    campaign.save_run(config.run_dir(), committed)
    tll = [0.5, 0.7, 0.6]
    elbo = [-300.0, -310.0, -320.0]
    evaluations = {
        "test_ll:step=2:S=10000:R=3:seed=0": {"values": tll, "step": 2},
        "test_ll:step=2:S=50:R=3:seed=0": {"values": [9.0, 9.0, 9.0], "step": 2},  # not it
        "train_elbo:step=2:S=3:R=3:seed=0": {"values": elbo, "step": 2},
    }
    (committed / config.run_name / "evaluation.json").write_text(json.dumps(evaluations))
    authors = tmp_path / "authors.csv"
    _authors().assign(dataset="demo_normalized").to_csv(authors, index=False)
    protocol = campaign.Campaign(
        targets=(), datasets=(), splits=(), precision="float64", repeats=3, elbo_repeats=3,
        eval_steps=(1, 2),
    )  # fmt: skip
    assert campaign.pending_evaluations(committed / config.run_name, protocol) == []
    (committed / config.run_name / "evaluation.json").unlink()
    assert campaign.pending_evaluations(committed / config.run_name, protocol) == [2]
    (committed / config.run_name / "evaluation.json").write_text(json.dumps(evaluations))
    curve = campaign.learning_curve_frame(committed, authors, protocol)
    assert len(curve) == 1
    row = curve.iloc[0]
    assert row["step"] == 2 and row["test_ll_mean"] == pytest.approx(np.mean(tll))
    assert row["test_ll_se"] == pytest.approx(np.std(tll, ddof=1) / np.sqrt(3))
    from dgp_snr.data import get_regression_data

    n = get_regression_data("demo_normalized", 0).X_train.shape[0]
    assert row["elbo_per_point_mean"] == pytest.approx(np.mean(elbo) / n)
    assert row["gap_to_authors"] == pytest.approx(np.mean(tll) - 2.0)
    assert row["seed"] == 0  # the paper's: the split
    table = report.learning_curve_markdown(curve)
    assert (
        f"{np.mean(tll):+.3f}" in table
        and "+2.000 (Table 1's REG run, mean of 2 repeats)" in table
    )


def test_the_committed_learning_curve_is_what_the_committed_evaluations_give():
    root = Path(__file__).resolve().parents[1]
    committed = root / campaign.COMMITTED_DIR
    if not (committed / campaign.CURVE_FILE).is_file():
        assert not any((run / "evaluation.json").is_file() for run in campaign.committed_runs())
        return
    written = pd.read_csv(committed / campaign.CURVE_FILE, keep_default_na=False, na_values=[""])
    again = campaign.learning_curve_frame(committed, root / campaign.AUTHORS_CSV)
    pd.testing.assert_frame_equal(again, written, check_dtype=False, rtol=1e-9)


def test_the_sweep_gets_the_cores_the_further_seeds_leave(tmp_path):
    argv = campaign.PAPER_CAMPAIGN.sweep_argv(tmp_path, workers=1)
    assert argv[argv.index("--workers") + 1] == "1"
    assert "--workers" not in campaign.PAPER_CAMPAIGN.sweep_argv(tmp_path)


def test_a_further_seed_is_the_sweeps_run_with_its_seed_alone_changed(tmp_path):
    """The seed run trains what the sweep's Table 1 REG run trains (same data split, settings,
    precision, results folder), in its own folder, from other random streams."""
    from dgp_snr.protocol.targets import target_spec

    spec = target_spec("table_1", tmp_path, **campaign.PAPER_CAMPAIGN.profile().params("table_1"))
    (reg,) = [
        config for config in spec.runs
        if config.training.estimator == "reg" and config.dataset == "wilson_solar"
    ]  # fmt: skip
    (seeded,) = campaign.PAPER_CAMPAIGN.seed_run_configs(tmp_path)
    before, after = reg.to_flat(), seeded.to_flat()
    changed = {key for key in before if before[key] != after[key]}
    assert changed == {"seed", "name_suffix"}
    assert (reg.effective_seed, seeded.effective_seed) == (0, 1)
    assert seeded.run_name == reg.run_name + "_seed1" and seeded.model.precision == "mixed"
    assert seeded.run_dir().parent == reg.run_dir().parent == tmp_path
    assert seeded.training.iterations == 300_000


def test_figure_8_samples_the_campaigns_reg_run_at_its_final_step(tmp_path):
    commands = campaign.figure_8_commands(tmp_path, campaign.PAPER_CAMPAIGN)
    assert len(commands) == 2  # REG and DReG estimates
    for command, estimator in zip(commands, ("reg", "dreg")):
        assert "wilson_solar_L1_G5_IWAE_SF0_K50_BS64_reg " in command  # split 0, REG-trained
        assert f"--estimator {estimator}" in command and "--ks 50" in command
        assert "--batch_size 64" in command and command.endswith("--rebuild")
    params = campaign.figure_8_params(campaign.PAPER_CAMPAIGN)
    assert params["split"] == 0 and params["settings"]["precision"] == "mixed"
    assert params["datasets"] == ("wilson_solar",)  # the campaign's first dataset only
    assert campaign.figure_8_unfinished(tmp_path, campaign.PAPER_CAMPAIGN) == [
        "wilson_solar_L1_G5_IWAE_SF0_K50_BS64_reg"
    ]


def test_the_test_ll_breakdown_is_the_protocols_estimate_split_by_target_group(tmp_path):
    """The "all" group reproduces the protocol's estimate (same streams), the groups partition
    the test points; both precisions are evaluated from the one checkpoint."""
    config = _config(tmp_path, 4)
    config = RunConfig.from_flat(**{**config.to_flat(), "precision": "mixed"})
    train(config, progress=False)
    frame = campaign.test_ll_breakdown(config.run_dir(), 4, (20,), repeats=2)
    model, _, data, _ = load_run(config.run_dir())
    protocol = Evaluator(model).test_log_likelihood(data.X_test, data.Y_test, 20, repeats=2)
    mixed = frame[frame["precision"] == "mixed"].set_index(["repeat", "group"])
    np.testing.assert_array_equal(mixed.xs("all", level="group")["mean_lpd"], protocol.values)
    for repeat in (0, 1):
        parts = mixed.loc[repeat].drop("all")
        assert parts["points"].sum() == len(data.Y_test) == mixed.loc[(repeat, "all"), "points"]
        weighted = (parts["mean_lpd"] * parts["points"]).sum() / parts["points"].sum()
        np.testing.assert_allclose(weighted, mixed.loc[(repeat, "all"), "mean_lpd"], rtol=1e-12)
    assert set(frame["precision"]) == {"mixed", "float64"}


def test_an_interrupt_of_the_campaign_reaches_its_sweep_even_when_started_in_the_background(
    tmp_path,
):
    """`kill -INT` (or -TERM) of experiments/paper_runs.py alone stops the sweep and the
    training beside it, each of which saves: the signal is forwarded although a shell started
    the job with SIGINT ignored."""
    root = Path(__file__).resolve().parents[1]

    def fake(name):
        script = tmp_path / f"{name}.py"
        script.write_text(textwrap.dedent(f"""
            import pathlib, signal, sys, time
            def save(signum, frame):
                pathlib.Path({str(tmp_path / (name + "_got"))!r}).write_text(str(signum))
                sys.exit(130)
            signal.signal(signal.SIGINT, save)
            pathlib.Path({str(tmp_path / (name + "_started"))!r}).touch()
            time.sleep(60)
            """))
        return [sys.executable, str(script)]

    driver = textwrap.dedent(f"""
        import runpy, signal, sys
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # as a shell's background job
        sys.argv = ["paper_runs.py"]
        m = runpy.run_path({str(root / "experiments" / "paper_runs.py")!r}, run_name="paper_runs")
        m["_evaluate_in_subprocess"].__globals__["_evaluate_in_subprocess"] = lambda path: None
        from pathlib import Path
        sys.exit(m["run_sweep"]({fake("sweep")!r}, Path("."), 0.2, [("seed", {fake("seed")!r})]))
        """)
    for signum in (signal.SIGINT, signal.SIGTERM):
        for name in ("sweep", "seed"):
            (tmp_path / f"{name}_got").unlink(missing_ok=True)
            (tmp_path / f"{name}_started").unlink(missing_ok=True)
        proc = subprocess.Popen([sys.executable, "-c", driver], cwd=tmp_path)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not all(
            (tmp_path / f"{name}_started").exists() for name in ("sweep", "seed")
        ):
            time.sleep(0.1)
        proc.send_signal(signum)
        assert proc.wait(timeout=60) == 130
        for name in ("sweep", "seed"):
            assert (tmp_path / f"{name}_got").read_text() == str(int(signal.SIGINT))
    assert (tmp_path / "sweep_logs" / "seed.log").is_file()  # the training's output


def test_a_failed_training_beside_the_sweep_fails_the_campaign_and_each_gets_one_thread(
    tmp_path,
):
    m = __import__("runpy").run_path(
        str(Path(__file__).resolve().parents[1] / "experiments" / "paper_runs.py"),
        run_name="paper_runs",
    )
    m["_evaluate_in_subprocess"].__globals__["_evaluate_in_subprocess"] = lambda path: None
    ok = [sys.executable, "-c", "pass"]
    failing = [sys.executable, "-c", "raise SystemExit(3)"]
    one_thread = [sys.executable, "-c", "import os; assert os.environ['OMP_NUM_THREADS'] == '1'"]
    assert m["run_sweep"](ok, tmp_path, 0.1, [("a", one_thread)]) == 0  # as a sweep task
    assert m["run_sweep"](ok, tmp_path, 0.1, [("a", ok)]) == 0
    assert m["run_sweep"](ok, tmp_path, 0.1, [("a", ok), ("b", failing)]) == 1
    assert m["run_sweep"](failing, tmp_path, 0.1, [("a", ok)]) == 3
