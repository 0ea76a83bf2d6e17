"""Training runs on disk: building a run from its RunConfig (dgp_snr.configs, imported here
too), the run directory named as the paper names runs, config.json, crash-safe checkpoints to
resume from, and the one reading of how far a run got (run_state).

A run directory holds config.json (enough to rebuild the model), checkpoints/, tensorboard/ and
results.json.
"""

import json
import os
import re
import shutil
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Any, Dict, List, NamedTuple, Optional, Tuple

import tensorflow as tf

from dgp_snr.builder import build_model
from dgp_snr.configs import ConfigError, RunConfig
from dgp_snr.data import RegressionData, get_regression_data
from dgp_snr.io import atomic_write_text, write_json
from dgp_snr.models import DeepGP
from dgp_snr.training import Trainer

CONFIG_FILE = "config.json"
CHECKPOINT_DIR = "checkpoints"
RESULTS_FILE = "results.json"
_CKPT_INDEX = re.compile(r"^ckpt-(\d+)\.index$")
#: Where checkpoints at KEPT_STEPS stay after the rolling window (max_to_keep) moves past them.
KEPT_DIR = "kept"
#: The steps at which the paper-length learning curves are read (beyond the rolling window).
KEPT_STEPS = (25_000, 50_000, 100_000, 200_000)
#: Settings that may change between a run's sessions; every other one must match config.json.
RUN_CONTROL_FIELDS = frozenset(
    {
        "iterations",
        "results_path",
        "checkpoint_freq",
        "log_snr_freq",
        "log_main_freq",
        "log_test_freq",
        "num_predictive_samples",
        "assert_no_nans",
    }
)


def build_run(config: RunConfig) -> Tuple[DeepGP, Trainer, RegressionData]:
    """Data, model and trainer for a run, freshly initialised (deterministic in the seed)."""
    config = config.validated()
    data = get_regression_data(config.dataset, config.split)
    N = data.X_train.shape[0]
    for name in ("minibatch_size", "encoder_minibatch_size"):
        size = getattr(config.training, name)
        if size is not None and size > N:
            raise ConfigError(
                f"{name} must be at most the {N} training points of {config.dataset} split "
                f"{config.split} (or None for full batch), got {size}"
            )
    seed = config.effective_seed
    tf.random.set_seed(seed)
    model = build_model(
        config.model, data.X_train, data.Y_train, estimator=config.training.estimator, seed=seed
    )
    trainer = Trainer(model, data.X_train, data.Y_train, config.training, seed=seed)
    return model, trainer, data


def save_config(config: RunConfig, run_dir: Path) -> None:
    """Writes config.json (nested: the run's keys, then "model", "training", "logging")
    atomically; unchanged contents are not rewritten, so a finished run can be rerun from a
    read-only folder."""
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
    """The RunConfig of a run folder's config.json: nested as save_config writes it, or flat as
    earlier versions wrote it (num_IW_samples, num_predict_samples; a folder from before
    mixing_init existed reads as "pca", one from before precision as "float64")."""
    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir} is not a run directory: {CONFIG_FILE} is missing")
    try:
        values = json.loads(path.read_text())
        if not isinstance(values, dict):
            raise ValueError("expected a JSON object")
        if not isinstance(values.get("model"), dict):
            # Flat folders written before mixing_init existed used the PCA directions.
            values.setdefault("mixing_init", "pca")
        return RunConfig.from_dict(values)
    except (ValueError, TypeError, UnicodeDecodeError) as err:
        raise ValueError(f"corrupt {path}: {err}") from err


def checkpoint_steps(run_dir: os.PathLike, kept: bool = False) -> List[int]:
    """Steps of the ckpt-<step>.index files in <run_dir>/checkpoints (`kept`: in
    <run_dir>/checkpoints/kept), ascending. Read from the files themselves, not the `checkpoint`
    state file, which may be lost or damaged."""
    directory = Path(run_dir) / CHECKPOINT_DIR
    if kept:
        directory = directory / KEPT_DIR
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

    The manager keeps the newest `max_to_keep`; a checkpoint at one of `keep_steps` is also
    linked into checkpoints/kept/ when written, where `restore(step)` finds it later. Resuming
    always starts from the rolling window.
    """

    def __init__(
        self,
        trainer: Trainer,
        run_dir: os.PathLike,
        max_to_keep: Optional[int] = 3,
        keep_steps: Tuple[int, ...] = KEPT_STEPS,
    ):
        self.trainer = trainer
        self.run_dir = Path(run_dir)
        self.checkpoint = tf.train.Checkpoint(trainer=trainer)
        self.directory = self.run_dir / CHECKPOINT_DIR
        self.max_to_keep = max_to_keep
        self.keep_steps = frozenset(keep_steps)
        self._manager: Optional[tf.train.CheckpointManager] = None
        self.restored: Optional[int] = None

    def steps(self) -> List[int]:
        return checkpoint_steps(self.run_dir)

    def prefix(self, step: int) -> str:
        """The checkpoint at `step`: in the rolling window if there, else the kept one."""
        prefix = self.directory / f"ckpt-{step}"
        kept = self.directory / KEPT_DIR / prefix.name
        if not Path(f"{prefix}.index").is_file() and Path(f"{kept}.index").is_file():
            return str(kept)
        return str(prefix)

    def _manager_for_saving(self) -> tf.train.CheckpointManager:
        """The manager, created after the state file has been rewritten from the files (the
        restored checkpoint last), so it deletes old checkpoints and never orphans any."""
        if self._manager is None:
            steps = [s for s in self.steps() if self.restored is None or s <= self.restored]
            if steps:
                lines = [f'model_checkpoint_path: "ckpt-{steps[-1]}"']
                lines += [f'all_model_checkpoint_paths: "ckpt-{s}"' for s in steps]
                # Without timestamps newer than last_preserved_timestamp (0) the manager
                # treats every listed checkpoint as preserved and never deletes it.
                lines += [f"all_model_checkpoint_timestamps: {1.0 + i}" for i in range(len(steps))]
                lines += ["last_preserved_timestamp: 0.0"]
                atomic_write_text(self.directory / "checkpoint", "\n".join(lines) + "\n")
            self._manager = tf.train.CheckpointManager(
                self.checkpoint, str(self.directory), max_to_keep=self.max_to_keep
            )
        return self._manager

    def save(self) -> str:
        step = int(self.trainer.step.numpy())
        prefix = self._manager_for_saving().save(checkpoint_number=step)
        if step in self.keep_steps:
            self._keep(Path(prefix))
        return prefix

    def _keep(self, prefix: Path) -> None:
        """Links (or copies) the checkpoint's files into kept/; the index last, as the manager
        writes them, so a kept index always has its data."""
        kept = self.directory / KEPT_DIR
        kept.mkdir(exist_ok=True)
        for suffix in (".data-00000-of-00001", ".index"):
            source, target = Path(f"{prefix}{suffix}"), kept / f"{prefix.name}{suffix}"
            partial = target.with_name(target.name + ".partial")
            partial.unlink(missing_ok=True)
            try:
                os.link(source, partial)
            except OSError:
                shutil.copyfile(source, partial)
            os.replace(partial, target)

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
            kept = checkpoint_steps(self.run_dir, kept=True)
            if step not in available and step not in kept:
                raise FileNotFoundError(
                    f"no checkpoint at step {step} in {self.directory}; available: "
                    f"{sorted(set(available + kept))}"
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


#: results.json keys of earlier versions -> the Python names they are read as.
RENAMED_RESULT_KEYS = {"num_predict_samples": "num_predictive_samples"}


def load_results(run_dir: os.PathLike) -> Optional[Dict[str, Any]]:
    """results.json's object, its keys as the Python names (a file of an earlier version, with
    the reference's `num_predict_samples`, reads the same); None when it is missing or
    unreadable (then it is recomputed)."""
    try:
        results = json.loads((Path(run_dir) / RESULTS_FILE).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(results, dict):
        return None
    for old, new in RENAMED_RESULT_KEYS.items():
        if old in results and new not in results:
            results[new] = results.pop(old)
    return results


# ------------------------------------------------------------------------------ run state
#: run_state's answers: no checkpoint yet; a checkpoint before `iterations`; trained to them.
MISSING, UNFINISHED, FINISHED = "missing", "unfinished", "finished"


class RunState(NamedTuple):
    """How far a run got toward a number of iterations, read from its files (run_state).

    state: MISSING, UNFINISHED or FINISHED. step: the checkpoint that stands for the run: for
    FINISHED the one at `iterations` (None when the run went past them without keeping it), for
    UNFINISHED the newest, for MISSING None. complete: FINISHED and results.json holds the
    results of the newest checkpoint (training has nothing left to do)."""

    state: str
    step: Optional[int]
    complete: bool = False


def run_state(config: RunConfig, iterations: Optional[int] = None) -> RunState:
    """The one answer to "is this run finished?" (training, the protocol and the sweep ask it):
    read from config.json, the ckpt-<step>.index files and results.json, never from the
    `checkpoint` state file, which may be lost, stale or damaged; no checkpoint is opened.

    FINISHED when the newest checkpoint is at `iterations` (default: the config's) or later;
    complete when, besides, results.json is of that checkpoint at the config's
    num_predictive_samples (as training writes it last)."""
    run_dir = config.run_dir()
    iterations = config.training.iterations if iterations is None else int(iterations)
    steps = checkpoint_steps(run_dir) if (run_dir / CONFIG_FILE).is_file() else []
    if not steps:
        return RunState(MISSING, None)
    latest = steps[-1]
    if latest < iterations:
        return RunState(UNFINISHED, latest)
    # A checkpoint at `iterations` past the rolling window is still there when it was kept.
    kept = iterations in steps or iterations in checkpoint_steps(run_dir, kept=True)
    results = load_results(run_dir) or {}
    complete = (
        results.get("step") == latest
        and results.get("num_predictive_samples") == config.logging.num_predictive_samples
    )
    return RunState(FINISHED, iterations if kept else None, complete)


def check_resumable(config: RunConfig, run_dir: Path) -> None:
    """Raises ValueError when run_dir holds checkpoints of a run with other settings (other
    than the RUN_CONTROL_FIELDS), which they would not fit. A folder without a checkpoint may
    be started again with new settings."""
    run_dir = Path(run_dir)
    if not (run_dir / CONFIG_FILE).is_file() or not checkpoint_steps(run_dir):
        return
    saved = load_config(run_dir)
    old, new = saved.to_flat(), config.to_flat()
    old["seed"] = saved.effective_seed
    new["seed"] = config.effective_seed
    diffs = [
        f"{key}={old.get(key)!r} there, {new[key]!r} now"
        for key in new
        if key not in RUN_CONTROL_FIELDS and old.get(key) != new[key]
    ]
    if diffs:
        raise ValueError(
            f"{run_dir} holds checkpoints of a run with other settings ({'; '.join(diffs)}); "
            f"rerun with the settings in its {CONFIG_FILE} to resume it, or use another "
            "results_path"
        )
