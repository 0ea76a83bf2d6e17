"""Committing a long run's newest checkpoint and restoring it elsewhere: training resumes
bit-identically, evaluations and scalars survive."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from dgp_snr import campaign
from dgp_snr.configs import RunConfig
from dgp_snr.runs import CHECKPOINT_DIR, checkpoint_steps, load_run
from dgp_snr.train_run import train


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

    # Machine B: the committed state only; training resumes to 8.
    later = _config(tmp_path / "machine_b", 8)
    message = campaign.restore_run(saved, tmp_path / "machine_b")
    assert "restored the committed checkpoint at step 4" in message
    train(later, progress=False)
    for a, b in zip(_parameters(straight.run_dir()), _parameters(later.run_dir())):
        np.testing.assert_array_equal(a, b)

    # Saving again replaces the checkpoint and extends the scalars past the restore.
    assert campaign.save_run(later.run_dir(), committed) == 8
    assert checkpoint_steps(saved) == [8]
    assert set(pd.read_csv(saved / campaign.SCALARS_FILE)["step"]) == {2, 4, 6, 8}
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
    assert argv[argv.index("--datasets") + 1] == "wilson_solar"
