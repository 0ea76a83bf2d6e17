"""Run naming: the paper's generated names, and the reference's name_suffix / override_name."""

import json

import pytest

from dgp_snr.runs import RunConfig, load_config

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
