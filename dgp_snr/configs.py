"""The settings of a training run as nested dataclasses: `ModelConfig` (what build_model needs),
`TrainingConfig` (dgp_snr.training: the optimisation schedule), `LoggingConfig` (what the run
records), inside `RunConfig` (the run itself: data, seed, where it lives).

One vocabulary: K is `num_importance_samples`, S (predictive samples) `num_predictive_samples`.
The reference's names stay where users type them: `num_IW_samples` and `num_predict_samples`
on train.py's command line and in flat config files (`RunConfig.from_flat` takes both names).

The flat form (every setting at top level) is what the command line, sacred and the config
files of older versions use; config.json is written nested (runs.save_config) and read in
either form (`RunConfig.from_dict`).
"""

import math
import numbers
import os
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

from dgp_snr.data.core import NUM_SPLITS
from dgp_snr.precision import PRECISIONS
from dgp_snr.training import UPDATE_DRAWS, TrainingConfig

MIXING_INITS = ("reference", "pca")
QZ_MODES = ("encoder", "fix_mu_sigma")
#: Learning rates above this are certainly typos (and overflow the optimisers' float32).
MAX_LEARNING_RATE = 1e6


class ConfigError(ValueError):
    """A RunConfig setting has the wrong type or is out of range (the message names the key)."""


@dataclass
class ModelConfig:
    """Everything build_model needs besides the data, the estimator check and the seed
    (defaults: the reference trainer's)."""

    configuration: str = "L1_G5"  # "L1", "L1_G5", ...: see builder.parse_configuration
    mode: str = "IWAE"  # "VI", "IWAE" or "CIWAE"
    num_importance_samples: int = 5  # K
    M: int = 128  # inducing points per GP layer
    likelihood_variance: float = 0.01
    encoder_dims: Tuple[int, ...] = (20, 20)  # hidden widths of the encoder MLP
    qz_mode: str = "encoder"  # or "fix_mu_sigma": q(w) fixed at the prior
    fix_linear: bool = True  # hidden layers' mixing and mean function not trained
    beta: float = 0.5  # CIWAE's weight of the VI bound
    mixing_init: str = "reference"  # hidden layers' mixing: the runs' Vh[:, :k], or "pca"
    precision: str = "float64"  # or "mixed": the GP layers' large products in float32


@dataclass
class LoggingConfig:
    """What a run records: TensorBoard log frequencies (0: never) and the predictive samples S
    of its final test log-likelihood (the in-training test logs use at most 100)."""

    log_snr_freq: int = 0
    log_main_freq: int = 100
    log_test_freq: int = 1000
    num_predictive_samples: int = 2000


SECTIONS = {"model": ModelConfig, "training": TrainingConfig, "logging": LoggingConfig}
#: Old names of renamed settings, still accepted in flat form (the command line, old files).
ALIASES = {
    "num_IW_samples": "num_importance_samples",
    "num_predict_samples": "num_predictive_samples",
}
REFERENCE_NAMES = {new: old for old, new in ALIASES.items()}
#: The flat settings in the order the command lines and sacred list them (the reference's).
FLAT_KEYS = (
    "dataset", "split", "configuration", "mode", "M", "likelihood_variance",
    "num_importance_samples", "encoder_dims", "qz_mode", "minibatch_size",
    "encoder_minibatch_size", "iterations", "gamma", "gamma_decay", "lr", "encoder_lr",
    "lr_decay", "encoder_lr_decay", "decay_steps", "fix_linear", "mixing_init", "precision",
    "num_predictive_samples", "estimator", "optimizer", "encoder_optimizer", "assert_no_nans",
    "clip_encoder_grads", "beta", "use_nat_grad_for_final_layer", "update_draws", "seed",
    "results_path", "checkpoint_freq", "log_snr_freq", "log_main_freq", "log_test_freq",
    "name_suffix", "override_name",
)  # fmt: skip
_DIMS = re.compile(r"\s*(\d+\s*(,\s*\d+\s*)*)?")


def _section_of() -> Dict[str, str]:
    """Flat key -> "model", "training", "logging" or "" (the run itself)."""
    out = {f.name: name for name, cls in SECTIONS.items() for f in fields(cls)}
    out.update({f.name: "" for f in fields(RunConfig) if f.name not in SECTIONS})
    return out


# ------------------------------------------------------------------------------ checks
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


def _one_of(name: str, value: Any, known: Tuple[str, ...]) -> str:
    if _str(name, value) not in known:
        raise ConfigError(f"{name} must be one of {', '.join(known)}, got {value!r}")
    return value


def _label(name: str) -> str:
    """A renamed key as messages name it: both names, the one users type in parentheses."""
    return f"{name} ({REFERENCE_NAMES[name]})" if name in REFERENCE_NAMES else name


def parse_dims(value: Any) -> Any:
    """Encoder widths as a tuple of ints from '20,20', [20, 20] (sacred's reading of 20,20), 20
    (sacred's reading of 20) or a tuple; anything else is returned as it is, for `validated` to
    name."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return (int(value),)
    if isinstance(value, str) and _DIMS.fullmatch(value):
        return tuple(int(d) for d in value.split(",") if d.strip())
    if isinstance(value, (list, tuple)) and all(
        isinstance(d, numbers.Integral) and not isinstance(d, bool) for d in value
    ):
        return tuple(int(d) for d in value)
    return value


def _check_dims(value: Any) -> Tuple[int, ...]:
    dims = parse_dims(value)
    if not isinstance(dims, tuple):
        raise ConfigError(
            f"encoder_dims must be comma-separated layer widths like '20,20', got {value!r}"
        )
    if any(d < 1 for d in dims):
        raise ConfigError(f"encoder_dims must hold widths of at least 1, got {value!r}")
    return dims


def _check_flat(s: Dict[str, Any]) -> Dict[str, Any]:
    """The flat settings `s` with every type and range checked; raises ConfigError naming the
    key (renamed keys by both names)."""
    v: Dict[str, Any] = {}
    for name in ("dataset", "configuration", "mode", "qz_mode", "estimator", "optimizer"):
        v[name] = _str(name, s[name])
    v["encoder_optimizer"] = _str("encoder_optimizer", s["encoder_optimizer"])
    split = _int("split", s["split"])
    if not 0 <= split < NUM_SPLITS:
        raise ConfigError(f"split must be an integer in [0, {NUM_SPLITS}), got {split}")
    v["split"] = split
    v["M"] = _int("M", s["M"], 1)
    for name in ("num_importance_samples", "num_predictive_samples", "checkpoint_freq"):
        v[name] = _int(_label(name), s[name], 1)
    for name in ("minibatch_size", "encoder_minibatch_size"):
        v[name] = _int(name, s[name], 1, allow_none=True)
    v["iterations"] = _int("iterations", s["iterations"], 0)
    v["decay_steps"] = _int("decay_steps", s["decay_steps"], 1)
    for name in ("log_snr_freq", "log_main_freq", "log_test_freq"):
        v[name] = _int(name, s[name], 0)
    v["seed"] = _int("seed", s["seed"], 0, allow_none=True)
    v["likelihood_variance"] = _float("likelihood_variance", s["likelihood_variance"], 0.0)
    for name in ("lr", "encoder_lr", "gamma"):
        v[name] = _float(name, s[name], 0.0, MAX_LEARNING_RATE)
    for name in ("lr_decay", "encoder_lr_decay", "gamma_decay"):
        v[name] = _float(name, s[name], 0.0)
    v["beta"] = _float("beta", s["beta"], 0.0, 1.0, low_open=False)
    v["clip_encoder_grads"] = _float(
        "clip_encoder_grads", s["clip_encoder_grads"], 0.0, allow_none=True
    )
    for name in ("fix_linear", "assert_no_nans", "use_nat_grad_for_final_layer"):
        v[name] = _bool(name, s[name])
    v["encoder_dims"] = _check_dims(s["encoder_dims"])
    v["results_path"] = os.path.expanduser(_str("results_path", s["results_path"]))
    v["mixing_init"] = _one_of("mixing_init", s["mixing_init"], MIXING_INITS)
    v["precision"] = _one_of("precision", s["precision"], PRECISIONS)
    v["update_draws"] = _one_of("update_draws", s["update_draws"], UPDATE_DRAWS)
    for name in ("name_suffix", "override_name"):
        value = s[name]
        if value is None or value == "":
            v[name] = ""
            continue
        value = _str(name, value)
        if "/" in value or "\\" in value or value in (".", ".."):
            raise ConfigError(f"{name} must be a plain folder name, got {value!r}")
        v[name] = value
    if v["name_suffix"] and v["override_name"]:
        raise ConfigError("set override_name or name_suffix, not both")
    return v


# ------------------------------------------------------------------------------ the run
@dataclass
class RunConfig:
    """Every setting of a training run, with the reference trainer's defaults: the run's own
    (data, seed, folder) and its `model`, `training` and `logging` sections.

    `RunConfig.from_flat(dataset=..., num_IW_samples=50, estimator="dreg")` builds one from
    flat settings (either name of a renamed one)."""

    dataset: str = "energy"
    split: int = 0
    seed: Optional[int] = None  # None: the split, as in the reference
    results_path: str = "results"
    name_suffix: str = ""  # appended to the run name as _<suffix> (the reference's --name_suffix)
    override_name: str = ""  # the run's folder name instead of the generated one
    model: ModelConfig = field(default_factory=ModelConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)

    # -------------------------------------------------------------- flat form
    @classmethod
    def from_flat(cls, **settings: Any) -> "RunConfig":
        """From flat settings (FLAT_KEYS, or a renamed key's old name); the rest default.
        Raises ConfigError naming an unknown key, or a renamed key given by both names."""
        sections = _section_of()
        parts: Dict[str, Dict[str, Any]] = {"": {}, **{name: {} for name in SECTIONS}}
        for key, value in settings.items():
            name = ALIASES.get(key, key)
            if name not in sections:
                raise ConfigError(f"unknown setting {key!r}; known: {', '.join(FLAT_KEYS)}")
            part = parts[sections[name]]
            if name in part and part[name] != value:
                raise ConfigError(f"set {name} or {REFERENCE_NAMES[name]}, not both")
            part[name] = parse_dims(value) if name == "encoder_dims" else value
        try:
            training = TrainingConfig(**parts["training"])
        except ValueError as err:  # its own checks (estimator, optimizers) name the key
            raise ConfigError(str(err)) from err
        return cls(
            **parts[""],
            model=ModelConfig(**parts["model"]),
            training=training,
            logging=LoggingConfig(**parts["logging"]),
        )

    def to_flat(self, reference_names: bool = False) -> Dict[str, Any]:
        """Every setting at top level, in FLAT_KEYS order; encoder_dims as '20,20'.
        `reference_names`: renamed keys by their old names (the command line's)."""
        values: Dict[str, Any] = {f.name: getattr(self, f.name) for f in fields(self)}
        for name in SECTIONS:
            section = values.pop(name)
            values.update({f.name: getattr(section, f.name) for f in fields(section)})
        dims = values["encoder_dims"]
        if isinstance(dims, (list, tuple)):
            values["encoder_dims"] = ",".join(str(d) for d in dims)
        rename = REFERENCE_NAMES if reference_names else {}
        return {rename.get(key, key): values[key] for key in FLAT_KEYS}

    def with_settings(self, **settings: Any) -> "RunConfig":
        """A copy with flat settings changed (either name of a renamed one)."""
        flat = self.to_flat()
        flat.update({ALIASES.get(k, k): v for k, v in settings.items()})
        return RunConfig.from_flat(**flat)

    @classmethod
    def from_dict(cls, values: Dict[str, Any]) -> "RunConfig":
        """From config.json's nested form, or a flat one (a sacred config, a config.json of an
        older version); unknown keys are dropped (a sacred config carries a few of its own)."""
        known = set(_section_of()) | set(ALIASES)
        flat = {k: v for k, v in values.items() if k not in SECTIONS}
        for name in SECTIONS:
            if isinstance(values.get(name), dict):
                flat.update(values[name])
        return cls.from_flat(**{k: v for k, v in flat.items() if k in known})

    # -------------------------------------------------------------- checks, names
    def validated(self) -> "RunConfig":
        """A copy with every setting's type and range checked (ints where floats are meant
        become floats, ~ in results_path is expanded); raises ConfigError naming the key."""
        return RunConfig.from_flat(**_check_flat(self.to_flat()))

    @property
    def effective_seed(self) -> int:
        return self.split if self.seed is None else int(self.seed)

    @property
    def num_IW_samples(self) -> int:
        """Deprecated: K, `model.num_importance_samples` (for callers of the old flat form)."""
        return self.model.num_importance_samples

    @property
    def run_name(self) -> str:
        """The paper's run name, e.g. winered_L1_G5_IWAE_SF0_K50_BS64_dreg; `override_name`
        replaces it, `name_suffix` is appended to it (as the reference's options do)."""
        if self.override_name:
            if self.name_suffix:
                raise ValueError("set override_name or name_suffix, not both")
            return self.override_name
        m, t = self.model, self.training
        bs = "full" if t.minibatch_size is None else t.minibatch_size
        name = (
            f"{self.dataset}_{m.configuration}_{m.mode}_SF{self.split}"
            f"_K{m.num_importance_samples}_BS{bs}_{t.estimator}"
        )
        if m.qz_mode == "fix_mu_sigma":
            name += "_fixq"
        if m.mode == "CIWAE":
            name += f"_beta{m.beta}"
        if self.name_suffix:
            name += f"_{self.name_suffix}"
        return name

    def run_dir(self) -> Path:
        return Path(self.results_path) / self.run_name
