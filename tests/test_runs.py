"""Run naming: the paper's generated names, and the reference's name_suffix / override_name."""

import json

import numpy as np
import pytest

from dgp_snr.runs import (
    RunCheckpoints,
    RunConfig,
    build_run,
    checkpoint_steps,
    load_config,
    load_run,
    save_config,
)

BASE = dict(dataset="winered", configuration="L1_G5", num_IW_samples=50, minibatch_size=64)


def test_generated_name_and_suffix_and_override(tmp_path):
    assert (
        RunConfig.from_flat(**BASE, estimator="dreg").run_name
        == "winered_L1_G5_IWAE_SF0_K50_BS64_dreg"
    )
    suffixed = RunConfig.from_flat(**BASE, name_suffix="rerun2")
    assert suffixed.run_name == "winered_L1_G5_IWAE_SF0_K50_BS64_reg_rerun2"
    named = RunConfig.from_flat(**BASE, override_name="my_run", results_path=str(tmp_path))
    assert named.run_name == "my_run" and named.run_dir() == tmp_path / "my_run"


def test_override_name_and_suffix_together_are_refused():
    with pytest.raises(ValueError, match="override_name or name_suffix, not both"):
        RunConfig.from_flat(**BASE, override_name="a", name_suffix="b").run_name


def test_folders_from_before_mixing_init_load_as_pca(tmp_path):
    """Runs written before the option existed were initialised with the PCA directions."""
    values = dict(BASE)
    (tmp_path / "config.json").write_text(json.dumps(values))
    assert load_config(tmp_path).model.mixing_init == "pca"
    (tmp_path / "config.json").write_text(json.dumps({**values, "mixing_init": "reference"}))
    assert load_config(tmp_path).model.mixing_init == "reference"
    assert RunConfig().model.mixing_init == "reference"


def _small_run(tmp_path):
    """A depth-1 demo run, built and with its config.json written: (config, trainer, run_dir)."""
    config = RunConfig.from_flat(
        dataset="demo_normalized", configuration="L1", M=8, minibatch_size=16,
        results_path=str(tmp_path),
    )  # fmt: skip
    _, trainer, _ = build_run(config)
    run_dir = config.run_dir()
    save_config(config, run_dir)
    return config, trainer, run_dir


def test_checkpoints_at_kept_steps_outlive_the_rolling_window(tmp_path):
    config, trainer, run_dir = _small_run(tmp_path)
    checkpoints = RunCheckpoints(trainer, run_dir, max_to_keep=2, keep_steps=(2,))
    at_step_2 = None
    for step in range(1, 6):
        trainer.train_step()
        checkpoints.save()
        if step == 2:
            at_step_2 = [v.numpy().copy() for v in trainer.model.trainable_variables]
    assert checkpoint_steps(run_dir) == [4, 5]
    assert checkpoint_steps(run_dir, kept=True) == [2]
    model, trainer2, _, _ = load_run(run_dir, step=2)
    assert int(trainer2.step.numpy()) == 2
    for saved, restored in zip(at_step_2, model.trainable_variables):
        np.testing.assert_array_equal(saved, restored.numpy())
    assert int(load_run(run_dir)[1].step.numpy()) == 5  # resuming: the rolling window's newest
    with pytest.raises(FileNotFoundError, match=r"available: \[2, 4, 5\]"):
        load_run(run_dir, step=3)


def test_a_resumed_run_keeps_only_max_to_keep_checkpoints(tmp_path):
    config, trainer, run_dir = _small_run(tmp_path)
    checkpoints = RunCheckpoints(trainer, run_dir, max_to_keep=2)
    for _ in range(3):
        trainer.train_step()
        checkpoints.save()
    assert checkpoint_steps(run_dir) == [2, 3]
    _, resumed, _ = build_run(config)
    again = RunCheckpoints(resumed, run_dir, max_to_keep=2)
    assert again.restore() == 3
    for _ in range(2):
        resumed.train_step()
        again.save()
    assert checkpoint_steps(run_dir) == [4, 5]  # 2 and 3, listed at the resume, are gone
