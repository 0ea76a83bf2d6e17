"""Run folders: the paper's generated names, the reference's name_suffix / override_name,
checkpoints, and the one reading of how far a run got (run_state) that training, the protocol
and the sweep share."""

import json
import shutil

import numpy as np
import pytest

from dgp_snr import protocol, train_run
from dgp_snr.protocol import missing_runs, paper_config, select_splits
from dgp_snr.runs import (
    FINISHED,
    UNFINISHED,
    RunCheckpoints,
    RunConfig,
    RunState,
    build_run,
    checkpoint_steps,
    load_config,
    load_run,
    run_state,
    save_config,
)
from dgp_snr.sweep.tasks import DONE, RESUME, train_state

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


# ------------------------------------------------------------------------------ run state
PAIR_ITERATIONS = 4


def _pair(results):
    """The REG and DReG runs of Table 1's demo_normalized split 0, tiny (M = 8, 4 iterations,
    a checkpoint every 2)."""
    return [
        paper_config(
            "demo_normalized", 0, 2, estimator=estimator, results_path=results,
            iterations=PAIR_ITERATIONS,
        ).with_settings(M=8, checkpoint_freq=2, num_predictive_samples=20)
        for estimator in ("reg", "dreg")
    ]  # fmt: skip


@pytest.fixture(scope="module")
def trained_pair(tmp_path_factory):
    results = tmp_path_factory.mktemp("pair")
    for config in _pair(results):
        train_run.train(config, progress=False)
    return results


@pytest.mark.parametrize("state_file", ["missing", "stale", "garbage"])
def test_training_the_protocol_and_the_sweep_read_the_checkpoint_files(
    trained_pair, tmp_path, monkeypatch, state_file
):
    """With the `checkpoint` state file lost, stale (naming a checkpoint that is not the newest
    on disk) or garbage, training, the protocol and the sweep all agree with the ckpt-<step>
    files: REG finished (and complete), DReG, whose final checkpoint is gone, unfinished at 2."""
    results = tmp_path / "results"
    shutil.copytree(trained_pair, results)
    reg, dreg = _pair(results)
    for path in (dreg.run_dir() / "checkpoints").glob(f"ckpt-{PAIR_ITERATIONS}.*"):
        path.unlink()
    for config in (reg, dreg):
        state = config.run_dir() / "checkpoints" / "checkpoint"
        if state_file == "missing":
            state.unlink()
        elif state_file == "stale":  # REG's names ckpt-2; DReG's still names the lost ckpt-4
            if config is reg:
                state.write_text('model_checkpoint_path: "ckpt-2"\n')
            assert "ckpt-2" in state.read_text() or config is dreg
        else:
            state.write_text("garbage {{{ not a checkpoint state\n")

    # one function, wherever it is asked
    assert protocol.run_state is run_state
    assert run_state(reg) == RunState(FINISHED, PAIR_ITERATIONS, True)
    assert run_state(dreg) == RunState(UNFINISHED, 2, False)
    # the sweep
    assert (train_state(reg), train_state(dreg)) == (DONE, RESUME)
    # the protocol: the pair is skipped (DReG stopped at 2), enters as a preview at (4, 2)
    selection = select_splits("table_1", results, ["demo_normalized"], 1, PAIR_ITERATIONS)
    assert selection.used == {"demo_normalized": []}
    (reason,) = [why for _, why in selection.skipped["demo_normalized"]]
    assert f"{dreg.run_name} stopped at step 2" in reason and reg.run_name not in reason
    assert [r.config.run_name for r in missing_runs(selection, results)] == [dreg.run_name]
    preview = select_splits("table_1", results, ["demo_normalized"], 1, PAIR_ITERATIONS, True)
    assert [r.step for r in preview.runs] == [PAIR_ITERATIONS, 2]
    # training: REG is not trained again; DReG resumes from its checkpoint at 2
    with monkeypatch.context() as patch:
        patch.setattr(train_run, "_train_locked", lambda *a: pytest.fail("REG trained again"))
        assert train_run.train(reg, progress=False)["step"] == PAIR_ITERATIONS
    assert RunCheckpoints(build_run(dreg)[1], dreg.run_dir()).restore() == 2
    assert train_run.train(dreg, progress=False)["step"] == PAIR_ITERATIONS
    # and then all three see the pair finished
    assert run_state(dreg) == RunState(FINISHED, PAIR_ITERATIONS, True)
    assert train_state(dreg) == DONE
    selection = select_splits("table_1", results, ["demo_normalized"], 1, PAIR_ITERATIONS)
    assert selection.used == {"demo_normalized": [0]}


def test_a_run_trained_past_the_iterations_is_finished_where_its_checkpoint_is_kept(tmp_path):
    """FINISHED from the newest checkpoint on; the protocol's step is the one at the
    iterations, which the run must still have (in the rolling window or kept)."""
    config, trainer, run_dir = _small_run(tmp_path)
    checkpoints = RunCheckpoints(trainer, run_dir, max_to_keep=1, keep_steps=(2,))
    for _ in range(3):
        trainer.train_step()
        checkpoints.save()
    assert checkpoint_steps(run_dir) == [3]
    assert run_state(config, 4) == RunState(UNFINISHED, 3)
    assert run_state(config, 3) == RunState(FINISHED, 3)
    assert run_state(config, 2) == RunState(FINISHED, 2)  # kept
    assert run_state(config, 1) == RunState(FINISHED, None)  # gone: no step to evaluate at
    (run_dir / "config.json").unlink()
    assert run_state(config, 1).state == "missing"
