"""Training runs on disk: the run configuration (the reference trainer's settings), the run
directory named as the paper names runs, and crash-safe checkpoints to resume from.

A run directory holds config.json (enough to rebuild the model), checkpoints/, tensorboard/ and
results.json.
"""

import json
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import numpy as np
import tensorflow as tf

from dgp_snr.builder import build_model
from dgp_snr.data import RegressionData, get_regression_data
from dgp_snr.models import DeepGP
from dgp_snr.training import Trainer, TrainingConfig

CONFIG_FILE = "config.json"
CHECKPOINT_DIR = "checkpoints"
RESULTS_FILE = "results.json"


@dataclass
class RunConfig:
    """Every setting of a training run, with the reference trainer's defaults."""

    dataset: str = "energy"
    split: int = 0
    configuration: str = "L1_G5"
    mode: str = "IWAE"
    M: int = 128
    likelihood_variance: float = 0.01
    num_IW_samples: int = 5
    encoder_dims: str = "20,20"
    qz_mode: str = "encoder"
    minibatch_size: Optional[int] = 512
    encoder_minibatch_size: Optional[int] = None
    iterations: int = 5000
    gamma: float = 0.01
    gamma_decay: float = 0.98
    lr: float = 5e-3
    encoder_lr: float = 5e-3
    lr_decay: float = 0.98
    encoder_lr_decay: float = 0.98
    fix_linear: bool = True
    mixing_init: str = "reference"  # hidden layers' mixing: the runs' Vh[:, :k], or "pca"
    precision: str = "float64"  # or "mixed": the GP layers' large products in float32
    num_predict_samples: int = 2000
    estimator: str = "reg"
    optimizer: str = "adam"
    encoder_optimizer: str = "adam"
    assert_no_nans: bool = False
    clip_encoder_grads: Optional[float] = None
    beta: float = 0.5
    use_nat_grad_for_final_layer: bool = True
    seed: Optional[int] = None  # None: the split, as in the reference
    results_path: str = "results"
    checkpoint_freq: int = 500
    log_snr_freq: int = 0
    log_main_freq: int = 100
    log_test_freq: int = 1000
    name_suffix: str = ""  # appended to the run name as _<suffix> (the reference's --name_suffix)
    override_name: str = ""  # the run's folder name instead of the generated one

    @classmethod
    def from_dict(cls, values: Dict[str, Any]) -> "RunConfig":
        """Keeps the known keys (a sacred config carries a few of its own)."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in values.items() if k in known}
        if isinstance(values.get("encoder_dims"), (list, tuple)):  # sacred reads 20,20 as a list
            values["encoder_dims"] = ",".join(str(int(d)) for d in values["encoder_dims"])
        return cls(**values)

    @property
    def effective_seed(self) -> int:
        return self.split if self.seed is None else int(self.seed)

    @property
    def run_name(self) -> str:
        """The paper's run name, e.g. winered_L1_G5_IWAE_SF0_K50_BS64_dreg; `override_name`
        replaces it, `name_suffix` is appended to it (as the reference's options do)."""
        if self.override_name:
            if self.name_suffix:
                raise ValueError("set override_name or name_suffix, not both")
            return self.override_name
        bs = "full" if self.minibatch_size is None else self.minibatch_size
        name = (
            f"{self.dataset}_{self.configuration}_{self.mode}_SF{self.split}"
            f"_K{self.num_IW_samples}_BS{bs}_{self.estimator}"
        )
        if self.qz_mode == "fix_mu_sigma":
            name += "_fixq"
        if self.mode == "CIWAE":
            name += f"_beta{self.beta}"
        if self.name_suffix:
            name += f"_{self.name_suffix}"
        return name

    def run_dir(self) -> Path:
        return Path(self.results_path) / self.run_name

    def training_config(self) -> TrainingConfig:
        return TrainingConfig(
            estimator=self.estimator,
            minibatch_size=self.minibatch_size,
            encoder_minibatch_size=self.encoder_minibatch_size,
            lr=self.lr,
            encoder_lr=self.encoder_lr,
            lr_decay=self.lr_decay,
            encoder_lr_decay=self.encoder_lr_decay,
            gamma=self.gamma,
            gamma_decay=self.gamma_decay,
            optimizer=self.optimizer,
            encoder_optimizer=self.encoder_optimizer,
            use_nat_grad_for_final_layer=self.use_nat_grad_for_final_layer,
            clip_encoder_grads=self.clip_encoder_grads,
            assert_no_nans=self.assert_no_nans,
            seed=self.effective_seed,
        )


def build_run(config: RunConfig) -> Tuple[DeepGP, Trainer, RegressionData]:
    """Data, model and trainer for a run, freshly initialised (deterministic in the seed)."""
    if config.num_IW_samples < 1:
        raise ValueError(f"num_IW_samples (K) must be at least 1, got {config.num_IW_samples}")
    data = get_regression_data(config.dataset, config.split)
    encoder_dims = tuple(int(d) for d in str(config.encoder_dims).split(",") if d.strip())
    tf.random.set_seed(config.effective_seed)
    model = build_model(
        config.configuration,
        data.X_train,
        data.Y_train,
        mode=config.mode,
        num_samples=config.num_IW_samples,
        M=config.M,
        likelihood_variance=config.likelihood_variance,
        encoder_dims=encoder_dims,
        fix_linear=config.fix_linear,
        mixing_init=config.mixing_init,
        qz_mode=config.qz_mode,
        beta=config.beta,
        estimator=config.estimator,
        seed=config.effective_seed,
        precision=config.precision,
    )
    trainer = Trainer(model, data.X_train, data.Y_train, config.training_config())
    return model, trainer, data


def save_config(config: RunConfig, run_dir: Path) -> None:
    """Writes config.json atomically."""
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / CONFIG_FILE, json.dumps(asdict(config), indent=2, sort_keys=True))


def load_config(run_dir: os.PathLike) -> RunConfig:
    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir} is not a run directory: {CONFIG_FILE} is missing")
    values = json.loads(path.read_text())
    # Folders written before mixing_init existed were initialised with the PCA directions.
    values.setdefault("mixing_init", "pca")
    return RunConfig.from_dict(values)


def atomic_write_text(path: Path, text: str) -> None:
    """Writes `text` to a temporary file beside `path`, then renames it over `path`: a reader
    (or a crash) never sees half a file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _checkpoint_step(path: str) -> int:
    """The step in a checkpoint path (<run_dir>/checkpoints/ckpt-<step>)."""
    return int(path.rsplit("-", 1)[1])


def latest_checkpoint_step(run_dir: os.PathLike) -> Optional[int]:
    """The step of the run's latest checkpoint, or None when it has no config or checkpoint.

    Reads the checkpoint index only (no model is built): the checkpoint that RunCheckpoints
    and load_run restore by default."""
    run_dir = Path(run_dir)
    if not (run_dir / CONFIG_FILE).is_file():
        return None
    state = tf.train.get_checkpoint_state(str(run_dir / CHECKPOINT_DIR))
    if state is None or not state.model_checkpoint_path:
        return None
    try:
        return _checkpoint_step(state.model_checkpoint_path)
    except (IndexError, ValueError):
        return None


class RunCheckpoints:
    """Checkpoints of a run's model, optimisers, step and random state.

    tf.train.CheckpointManager writes each checkpoint's files before it updates the index
    file that names the latest one, so a run killed mid-save restores the previous checkpoint.
    """

    def __init__(self, trainer: Trainer, run_dir: os.PathLike, max_to_keep: Optional[int] = 3):
        self.trainer = trainer
        self.checkpoint = tf.train.Checkpoint(trainer=trainer)
        self.directory = Path(run_dir) / CHECKPOINT_DIR
        self.manager = tf.train.CheckpointManager(
            self.checkpoint, str(self.directory), max_to_keep=max_to_keep
        )

    @property
    def latest(self) -> Optional[str]:
        return self.manager.latest_checkpoint

    def steps(self) -> list:
        return [_checkpoint_step(p) for p in self.manager.checkpoints]

    def save(self) -> str:
        return self.manager.save(checkpoint_number=int(self.trainer.step.numpy()))

    def restore(self, step: Optional[int] = None) -> Optional[int]:
        """Restores the checkpoint at `step` (default: latest); returns its step or None."""
        if step is None:
            path = self.latest
            if path is None:
                return None
        else:
            path = str(self.directory / f"ckpt-{step}")
            if not Path(path + ".index").exists():
                raise FileNotFoundError(
                    f"no checkpoint at step {step} in {self.directory}; available: {self.steps()}"
                )
        self.checkpoint.restore(path).assert_existing_objects_matched()
        return int(self.trainer.step.numpy())


def load_run(
    run_dir: os.PathLike, step: Optional[int] = None
) -> Tuple[DeepGP, Trainer, RegressionData, RunConfig]:
    """Rebuilds a run from its directory alone and restores its checkpoint (default latest).

    Raises FileNotFoundError when the directory has no config or no checkpoint."""
    config = load_config(run_dir)
    model, trainer, data = build_run(config)
    restored = RunCheckpoints(trainer, run_dir).restore(step)
    if restored is None:
        raise FileNotFoundError(f"{run_dir} has no checkpoint in {CHECKPOINT_DIR}/ yet")
    return model, trainer, data, config


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    raise TypeError(type(value))


def save_results(results: Dict[str, Any], run_dir: os.PathLike) -> None:
    atomic_write_text(
        Path(run_dir) / RESULTS_FILE, json.dumps(results, indent=2, default=_json_default)
    )
