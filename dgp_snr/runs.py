"""Training runs on disk: the run configuration (the reference trainer's settings), the run
directory named as the paper names runs, and crash-safe checkpoints to resume from.

A run directory holds config.json (enough to rebuild the model), checkpoints/, tensorboard/ and
results.json.
"""

import json
import math
import numbers
import os
import re
import warnings
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import tensorflow as tf

from dgp_snr.builder import MIXING_INITS, build_model
from dgp_snr.data import RegressionData, get_regression_data
from dgp_snr.data.core import NUM_SPLITS
from dgp_snr.io import atomic_write_text, write_json
from dgp_snr.models import DeepGP
from dgp_snr.precision import PRECISIONS
from dgp_snr.training import Trainer, TrainingConfig

CONFIG_FILE = "config.json"
CHECKPOINT_DIR = "checkpoints"
RESULTS_FILE = "results.json"
#: Learning rates above this are certainly typos (and overflow the optimisers' float32).
MAX_LEARNING_RATE = 1e6
_CKPT_INDEX = re.compile(r"^ckpt-(\d+)\.index$")


class ConfigError(ValueError):
    """A RunConfig setting has the wrong type or is out of range (the message names the key)."""


def _int(name: str, value: Any, low: Optional[int] = None, allow_none: bool = False) -> Any:
    if value is None and allow_none:
        return None
    # Integral floats (1e4) are accepted; bools and fractions are mistakes.
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ConfigError(f"{name} must be an integer, got {value!r}")
    if low is not None and value < low:
        raise ConfigError(f"{name} must be at least {low}, got {value}")
    return int(value)


def _float(
    name: str,
    value: Any,
    low: float,
    high: float = math.inf,
    low_open: bool = True,
    allow_none: bool = False,
) -> Any:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ConfigError(f"{name} must be a number, got {value!r}")
    value = float(value)  # an int where a float is meant (lr=1) becomes 1.0
    above_low = value > low if low_open else value >= low
    if not (math.isfinite(value) and above_low and value <= high):
        bracket = "(" if low_open else "["
        upper = "inf)" if math.isinf(high) else f"{high:g}]"
        raise ConfigError(
            f"{name} must be a finite number in {bracket}{low:g}, {upper}, got {value!r}"
        )
    return value


def _str(name: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{name} must be a non-empty string, got {value!r}")
    return value


def _bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, numbers.Integral) and value in (0, 1):
        return bool(value)
    raise ConfigError(f"{name} must be true or false, got {value!r}")


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

    def validated(self) -> "RunConfig":
        """A copy with every field's type and range checked (ints where floats are meant become
        floats, ~ in results_path is expanded); raises ConfigError naming the key."""
        v: Dict[str, Any] = {}
        for name in ("dataset", "configuration", "mode", "qz_mode", "estimator", "optimizer"):
            v[name] = _str(name, getattr(self, name))
        v["encoder_optimizer"] = _str("encoder_optimizer", self.encoder_optimizer)
        split = _int("split", self.split)
        if not 0 <= split < NUM_SPLITS:
            raise ConfigError(f"split must be an integer in [0, {NUM_SPLITS}), got {split}")
        v["split"] = split
        v["M"] = _int("M", self.M, 1)
        v["num_IW_samples"] = _int("num_IW_samples", self.num_IW_samples, 1)
        v["minibatch_size"] = _int("minibatch_size", self.minibatch_size, 1, allow_none=True)
        v["encoder_minibatch_size"] = _int(
            "encoder_minibatch_size", self.encoder_minibatch_size, 1, allow_none=True
        )
        v["iterations"] = _int("iterations", self.iterations, 0)
        v["num_predict_samples"] = _int("num_predict_samples", self.num_predict_samples, 1)
        v["checkpoint_freq"] = _int("checkpoint_freq", self.checkpoint_freq, 1)
        for name in ("log_snr_freq", "log_main_freq", "log_test_freq"):
            v[name] = _int(name, getattr(self, name), 0)
        v["seed"] = _int("seed", self.seed, 0, allow_none=True)
        v["likelihood_variance"] = _float("likelihood_variance", self.likelihood_variance, 0.0)
        for name in ("lr", "encoder_lr", "gamma"):
            v[name] = _float(name, getattr(self, name), 0.0, MAX_LEARNING_RATE)
        for name in ("lr_decay", "encoder_lr_decay", "gamma_decay"):
            v[name] = _float(name, getattr(self, name), 0.0)
        v["beta"] = _float("beta", self.beta, 0.0, 1.0, low_open=False)
        v["clip_encoder_grads"] = _float(
            "clip_encoder_grads", self.clip_encoder_grads, 0.0, allow_none=True
        )
        for name in ("fix_linear", "assert_no_nans", "use_nat_grad_for_final_layer"):
            v[name] = _bool(name, getattr(self, name))
        dims = self.encoder_dims
        if not isinstance(dims, str) or not re.fullmatch(r"\s*(\d+\s*(,\s*\d+\s*)*)?", dims):
            raise ConfigError(
                f"encoder_dims must be comma-separated layer widths like '20,20', got {dims!r}"
            )
        if any(int(d) < 1 for d in dims.split(",") if d.strip()):
            raise ConfigError(f"encoder_dims must hold widths of at least 1, got {dims!r}")
        v["encoder_dims"] = dims
        v["results_path"] = os.path.expanduser(_str("results_path", self.results_path))
        v["mixing_init"] = _str("mixing_init", self.mixing_init)
        if v["mixing_init"] not in MIXING_INITS:
            raise ConfigError(
                f"mixing_init must be one of {', '.join(MIXING_INITS)}, got {self.mixing_init!r}"
            )
        v["precision"] = _str("precision", self.precision)
        if v["precision"] not in PRECISIONS:
            raise ConfigError(
                f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}"
            )
        for name in ("name_suffix", "override_name"):
            value = getattr(self, name)
            if value is None or value == "":
                v[name] = ""
                continue
            value = _str(name, value)
            if "/" in value or "\\" in value or value in (".", ".."):
                raise ConfigError(f"{name} must be a plain folder name, got {value!r}")
            v[name] = value
        if v["name_suffix"] and v["override_name"]:
            raise ConfigError("set override_name or name_suffix, not both")
        return replace(self, **v)

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
    config = config.validated()
    data = get_regression_data(config.dataset, config.split)
    N = data.X_train.shape[0]
    for name in ("minibatch_size", "encoder_minibatch_size"):
        size = getattr(config, name)
        if size is not None and size > N:
            raise ConfigError(
                f"{name} must be at most the {N} training points of {config.dataset} split "
                f"{config.split} (or None for full batch), got {size}"
            )
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
    """Writes config.json atomically (unchanged contents are not rewritten, so a finished run
    can be rerun from a read-only folder)."""
    path = Path(run_dir) / CONFIG_FILE
    text = json.dumps(asdict(config), indent=2, sort_keys=True, allow_nan=False)
    if path.is_file():
        try:
            if path.read_text() == text:
                return
        except OSError:
            pass
    atomic_write_text(path, text)


def load_config(run_dir: os.PathLike) -> RunConfig:
    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir} is not a run directory: {CONFIG_FILE} is missing")
    try:
        values = json.loads(path.read_text())
        if not isinstance(values, dict):
            raise ValueError("expected a JSON object")
        # Folders written before mixing_init existed were initialised with the PCA directions.
        values.setdefault("mixing_init", "pca")
        return RunConfig.from_dict(values)
    except (ValueError, TypeError, UnicodeDecodeError) as err:
        raise ValueError(f"corrupt {path}: {err}") from err


def checkpoint_steps(run_dir: os.PathLike) -> List[int]:
    """Steps of the ckpt-<step>.index files in <run_dir>/checkpoints, ascending. Read from the
    files themselves, not the `checkpoint` state file, which may be lost or damaged."""
    directory = Path(run_dir) / CHECKPOINT_DIR
    if not directory.is_dir():
        return []
    steps = []
    for path in directory.iterdir():
        match = _CKPT_INDEX.match(path.name)
        if match:
            steps.append(int(match.group(1)))
    return sorted(steps)


def latest_checkpoint_step(run_dir: os.PathLike) -> Optional[int]:
    """The step of the run's latest checkpoint file, or None when it has no config or checkpoint
    (no model is built; whether that checkpoint is readable is checked when it is restored)."""
    run_dir = Path(run_dir)
    if not (run_dir / CONFIG_FILE).is_file():
        return None
    steps = checkpoint_steps(run_dir)
    return steps[-1] if steps else None


class DamagedCheckpointError(ValueError):
    """A checkpoint's files are missing, truncated or not a checkpoint."""


def _first_line(err: BaseException) -> str:
    text = str(getattr(err, "message", None) or err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def check_checkpoint(prefix: str) -> None:
    """Reads every tensor of the checkpoint at `prefix`; raises DamagedCheckpointError naming
    the damaged file."""
    index, data = Path(prefix + ".index"), Path(prefix + ".data-00000-of-00001")
    for path in (index, data):
        if not path.is_file():
            raise DamagedCheckpointError(f"damaged checkpoint {prefix}: {path.name} is missing")
    try:
        reader = tf.train.load_checkpoint(prefix)
    except (tf.errors.OpError, ValueError, IndexError, RuntimeError, OSError) as err:
        raise DamagedCheckpointError(
            f"damaged checkpoint file {index}: {_first_line(err)}"
        ) from err
    try:
        for key in reader.get_variable_to_shape_map():
            reader.get_tensor(key)
    except (tf.errors.OpError, ValueError, IndexError, RuntimeError, OSError) as err:
        raise DamagedCheckpointError(
            f"damaged checkpoint file {data}: {_first_line(err)}"
        ) from err


class RunCheckpoints:
    """Checkpoints of a run's model, optimisers, step and random state.

    tf.train.CheckpointManager writes each checkpoint's files before it updates the index
    file that names the latest one. The checkpoints are found from their ckpt-<step> files, so
    a lost or damaged state file never hides them, and a damaged checkpoint is passed over
    (with a warning) for the newest readable one.
    """

    def __init__(self, trainer: Trainer, run_dir: os.PathLike, max_to_keep: Optional[int] = 3):
        self.trainer = trainer
        self.run_dir = Path(run_dir)
        self.checkpoint = tf.train.Checkpoint(trainer=trainer)
        self.directory = self.run_dir / CHECKPOINT_DIR
        self.max_to_keep = max_to_keep
        self._manager: Optional[tf.train.CheckpointManager] = None
        self.restored: Optional[int] = None

    def steps(self) -> List[int]:
        return checkpoint_steps(self.run_dir)

    def prefix(self, step: int) -> str:
        return str(self.directory / f"ckpt-{step}")

    def _manager_for_saving(self) -> tf.train.CheckpointManager:
        """The manager, created after the state file has been rewritten from the files (the
        restored checkpoint last), so it deletes old checkpoints and never orphans any."""
        if self._manager is None:
            steps = [s for s in self.steps() if self.restored is None or s <= self.restored]
            if steps:
                lines = [f'model_checkpoint_path: "ckpt-{steps[-1]}"']
                lines += [f'all_model_checkpoint_paths: "ckpt-{s}"' for s in steps]
                atomic_write_text(self.directory / "checkpoint", "\n".join(lines) + "\n")
            self._manager = tf.train.CheckpointManager(
                self.checkpoint, str(self.directory), max_to_keep=self.max_to_keep
            )
        return self._manager

    def save(self) -> str:
        return self._manager_for_saving().save(checkpoint_number=int(self.trainer.step.numpy()))

    def _restore_prefix(self, step: int) -> None:
        prefix = self.prefix(step)
        check_checkpoint(prefix)
        try:
            self.checkpoint.restore(prefix).assert_existing_objects_matched()
        except (tf.errors.OpError, AssertionError, ValueError) as err:
            raise DamagedCheckpointError(
                f"checkpoint {prefix} does not fit this run's model: {_first_line(err)}"
            ) from err

    def restore(self, step: Optional[int] = None) -> Optional[int]:
        """Restores the checkpoint at `step` (default: the newest readable one, warning about
        each newer damaged one); returns its step, or None when there is no checkpoint.

        Raises FileNotFoundError for a `step` without a checkpoint and DamagedCheckpointError
        when the one asked for (or, by default, every one) is damaged."""
        available = self.steps()
        if step is not None:
            if step not in available:
                raise FileNotFoundError(
                    f"no checkpoint at step {step} in {self.directory}; available: {available}"
                )
            self._restore_prefix(step)
            self.restored = int(self.trainer.step.numpy())
            return self.restored
        if not available:
            return None
        problems = []
        for candidate in reversed(available):
            try:
                self._restore_prefix(candidate)
            except DamagedCheckpointError as err:
                problems.append(str(err))
                warnings.warn(f"{err}; trying an older checkpoint", stacklevel=2)
                continue
            if problems:
                warnings.warn(
                    f"restored the newest readable checkpoint, step {candidate}", stacklevel=2
                )
            self.restored = int(self.trainer.step.numpy())
            return self.restored
        raise DamagedCheckpointError(
            f"no readable checkpoint in {self.directory} ({'; '.join(problems)})"
        )


def load_run(
    run_dir: os.PathLike, step: Optional[int] = None
) -> Tuple[DeepGP, Trainer, RegressionData, RunConfig]:
    """Rebuilds a run from its directory alone and restores its checkpoint (default: the
    newest readable one).

    Raises FileNotFoundError when the directory has no config or no checkpoint."""
    config = load_config(run_dir)
    model, trainer, data = build_run(config)
    restored = RunCheckpoints(trainer, run_dir).restore(step)
    if restored is None:
        raise FileNotFoundError(f"{run_dir} has no checkpoint in {CHECKPOINT_DIR}/ yet")
    return model, trainer, data, config


def save_results(results: Dict[str, Any], run_dir: os.PathLike) -> None:
    """results.json as strict JSON (null for a non-finite number)."""
    write_json(Path(run_dir) / RESULTS_FILE, results, indent=2)
