"""The nested run settings (dgp_snr.configs): the flat form and its old names, config.json of
earlier versions, build_model given a ModelConfig whole, and errors that name the key."""

import json
from pathlib import Path

import numpy as np
import pytest
from helpers import toy_data

from dgp_snr.builder import build_model
from dgp_snr.configs import (
    FLAT_KEYS,
    ConfigError,
    LoggingConfig,
    ModelConfig,
    RunConfig,
    _section_of,
)
from dgp_snr.runs import CONFIG_FILE, build_run, load_config, save_config
from dgp_snr.training import TrainingConfig

#: config.json as the flat RunConfig of earlier versions wrote it (json.dumps(asdict(config)),
#: sorted keys), for a folder from before mixing_init and precision existed.
OLD_FLAT_CONFIG = {
    "assert_no_nans": False,
    "beta": 0.5,
    "checkpoint_freq": 500,
    "clip_encoder_grads": None,
    "configuration": "L1_G5",
    "dataset": "winered",
    "encoder_dims": "20,20",
    "encoder_lr": 0.005,
    "encoder_lr_decay": 0.98,
    "encoder_minibatch_size": None,
    "encoder_optimizer": "adam",
    "estimator": "dreg",
    "fix_linear": True,
    "gamma": 0.01,
    "gamma_decay": 0.98,
    "iterations": 300000,
    "likelihood_variance": 0.01,
    "log_main_freq": 100,
    "log_snr_freq": 0,
    "log_test_freq": 1000,
    "lr": 0.005,
    "lr_decay": 0.98,
    "M": 128,
    "minibatch_size": 64,
    "mode": "IWAE",
    "name_suffix": "",
    "num_IW_samples": 50,
    "num_predict_samples": 10000,
    "optimizer": "adam",
    "override_name": "",
    "qz_mode": "fix_mu_sigma",
    "results_path": "results",
    "seed": None,
    "split": 3,
    "use_nat_grad_for_final_layer": True,
}


def test_an_old_flat_config_json_loads_nested_with_the_same_meaning_and_name(tmp_path):
    (tmp_path / CONFIG_FILE).write_text(json.dumps(OLD_FLAT_CONFIG, indent=2, sort_keys=True))
    config = load_config(tmp_path)
    assert config.dataset == "winered" and config.split == 3 and config.seed is None
    assert config.effective_seed == 3
    assert config.model == ModelConfig(
        configuration="L1_G5",
        mode="IWAE",
        num_importance_samples=50,
        M=128,
        encoder_dims=(20, 20),
        qz_mode="fix_mu_sigma",
        mixing_init="pca",  # folders from before the setting used the PCA directions
        precision="float64",
    )
    assert config.training == TrainingConfig(
        estimator="dreg", minibatch_size=64, iterations=300000, checkpoint_freq=500
    )
    assert config.logging == LoggingConfig(num_predictive_samples=10000)
    assert config.run_name == "winered_L1_G5_IWAE_SF3_K50_BS64_dreg_fixq"
    # The flat form by the reference's names gives the old file back (plus the newer settings).
    flat = config.to_flat(reference_names=True)
    assert {k: flat[k] for k in OLD_FLAT_CONFIG} == OLD_FLAT_CONFIG
    assert config.validated() == config


def test_config_json_is_written_nested_and_reads_back(tmp_path):
    config = RunConfig.from_flat(
        dataset="demo_normalized", num_IW_samples=7, precision="mixed", log_snr_freq=5
    )
    save_config(config, tmp_path)
    written = json.loads((tmp_path / CONFIG_FILE).read_text())
    assert written["model"]["num_importance_samples"] == 7
    assert written["logging"]["log_snr_freq"] == 5 and "num_IW_samples" not in written
    assert load_config(tmp_path) == config
    # A nested file keeps its mixing_init (only flat files predate the setting).
    assert load_config(tmp_path).model.mixing_init == "reference"


def test_the_flat_form_names_every_setting_once():
    assert sorted(FLAT_KEYS) == sorted(_section_of())
    assert list(RunConfig().to_flat()) == list(FLAT_KEYS)


def test_old_and_new_names_set_the_same_setting():
    old = RunConfig.from_flat(num_IW_samples=50, num_predict_samples=100)
    new = RunConfig.from_flat(num_importance_samples=50, num_predictive_samples=100)
    assert old == new and old.model.num_importance_samples == 50 and old.num_IW_samples == 50
    assert new.logging.num_predictive_samples == 100
    assert RunConfig().with_settings(num_IW_samples=3).model.num_importance_samples == 3
    with pytest.raises(ConfigError, match="set num_importance_samples or num_IW_samples"):
        RunConfig.from_flat(num_IW_samples=5, num_importance_samples=6)


@pytest.mark.parametrize(
    "changes, message",
    [
        (dict(num_IW_samples=0), "num_importance_samples (num_IW_samples) must be at least 1"),
        (dict(num_importance_samples="5"), "num_importance_samples (num_IW_samples) must be an"),
        (dict(num_predict_samples=0), "num_predictive_samples (num_predict_samples) must be at"),
        (dict(decay_steps=0), "decay_steps must be at least 1, got 0"),
        (dict(encoder_dims="20,x"), "encoder_dims must be comma-separated layer widths"),
        (dict(encoder_dims=[20, 0]), "encoder_dims must hold widths of at least 1"),
        (dict(checkpoint_freq=0.5), "checkpoint_freq must be an integer, got 0.5"),
    ],
)
def test_bad_values_name_the_key_in_one_line(changes, message):
    with pytest.raises(ConfigError) as info:
        RunConfig.from_flat(**changes).validated()
    assert message in str(info.value) and "\n" not in str(info.value)


def test_unknown_keys_are_named_and_sacred_extras_dropped():
    with pytest.raises(ConfigError, match="unknown setting 'num_samples'"):
        RunConfig.from_flat(num_samples=5)
    with pytest.raises(ConfigError, match="unknown estimator 'dreg2'"):
        RunConfig.from_flat(estimator="dreg2")
    # from_dict reads config files and sacred configs, which carry keys of their own.
    assert RunConfig.from_dict({"M": 9, "__doc__": "x"}).model.M == 9


def test_build_model_given_a_model_config_whole_equals_the_keyword_form():
    X, Y = toy_data(num_data=40, input_dim=3, seed=2)
    settings = dict(
        mode="CIWAE",
        num_importance_samples=4,
        M=12,
        likelihood_variance=0.05,
        encoder_dims=(6, 5),
        fix_linear=False,
        beta=0.25,
        mixing_init="pca",
    )
    whole = build_model(ModelConfig("L1_G3", **settings), X, Y, estimator="reg", seed=5)
    keywords = build_model("L1_G3", X, Y, estimator="reg", seed=5, **settings)
    assert whole.num_importance_samples == 4 and whole.mode == "CIWAE" and whole.beta == 0.25
    assert [v.name for v in whole.variables] == [v.name for v in keywords.variables]
    for a, b in zip(whole.variables, keywords.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert len(whole.trainable_variables) == len(keywords.trainable_variables)
    with pytest.raises(TypeError, match="num_samples"):
        build_model("L1", X, Y, num_samples=5)


def test_build_run_passes_the_sections_whole():
    config = RunConfig.from_flat(
        dataset="demo_normalized", configuration="L1", M=6, num_IW_samples=3, seed=4
    )
    model, trainer, data = build_run(config)
    direct = build_model(config.model, data.X_train, data.Y_train, estimator="reg", seed=4)
    assert model.num_importance_samples == 3 and trainer.config == config.training
    for a, b in zip(model.variables, direct.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_the_command_line_alias_num_IW_samples_sets_K():
    """What train.py does with `with num_IW_samples=3 num_predict_samples=3 ...`: sacred parses
    the updates onto the experiment's config (RunConfig's flat form by the reference's names)
    and main builds the run with RunConfig.from_dict. (tests/test_pipeline.py runs train.py
    itself end to end.)"""
    from sacred.arg_parser import get_config_updates

    defaults = RunConfig().to_flat(reference_names=True)  # train.py's ex.add_config
    assert {"num_IW_samples", "num_predict_samples"} <= set(defaults)
    assert not {"num_importance_samples", "num_predictive_samples"} & set(defaults)
    args = dict(
        dataset="demo_normalized",
        configuration="L1",
        M=4,
        encoder_dims="4",
        num_IW_samples=3,
        num_predict_samples=3,
        minibatch_size=16,
    )
    updates, named = get_config_updates([f"{k}={v}" for k, v in args.items()])
    assert named == [] and updates["num_IW_samples"] == 3
    config = RunConfig.from_dict({**defaults, **updates, "seed": 0}).validated()
    assert config.model.num_importance_samples == 3
    assert config.logging.num_predictive_samples == 3
    assert config.run_name == "demo_normalized_L1_IWAE_SF0_K3_BS16_reg"


# ------------------------------------------------------------------------------ renamed flags
def _load_script(name):
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "experiments" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"_script_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_num_samples_is_a_deprecated_alias_of_num_estimates(capsys):
    """One name per quantity: R is --num_estimates (S is evaluate.py's
    --num_predictive_samples); the reference's --num_samples still sets R, with one line."""
    from dgp_snr.sweep.cli import parser as sweep_parser

    sample_parser = _load_script("sample_gradients").parser()
    new = sample_parser.parse_args(["run", "--ks", "1", "--num_estimates", "7"])
    assert new.num_estimates == 7 and capsys.readouterr().err == ""
    old = sample_parser.parse_args(["run", "--ks", "1", "--num_samples", "7"])
    assert old.num_estimates == 7 and not hasattr(old, "num_samples")
    err = capsys.readouterr().err
    assert err.strip().endswith("--num_samples is deprecated; use --num_estimates")
    assert len(err.strip().splitlines()) == 1
    assert sample_parser.parse_args(["run", "--ks", "1"]).num_estimates == 1000
    assert "--num_samples" not in sample_parser.format_help()
    sweep = sweep_parser().parse_args(["figure_1", "--num_samples", "9"])
    assert sweep.num_estimates == 9 and "use --num_estimates" in capsys.readouterr().err
    assert sweep_parser().parse_args(["figure_1"]).num_estimates is None


def test_results_json_keys_follow_the_python_names_and_old_ones_still_read(tmp_path):
    from dgp_snr.runs import RESULTS_FILE, load_results

    (tmp_path / RESULTS_FILE).write_text(json.dumps({"step": 3, "num_predict_samples": 10}))
    assert load_results(tmp_path) == {"step": 3, "num_predictive_samples": 10}
    (tmp_path / RESULTS_FILE).write_text(json.dumps({"step": 3, "num_predictive_samples": 4}))
    assert load_results(tmp_path) == {"step": 3, "num_predictive_samples": 4}
