"""Training a run end to end: build or resume it, train with checkpoints and TensorBoard logs,
survive interruptions, and compute its final results.

`train(config)` is what experiments/train.py calls. The run directory (RunConfig.run_dir) holds
config.json, checkpoints/ (every checkpoint_freq iterations, at the end and on SIGINT/SIGTERM),
tensorboard/ and results.json. Running it again resumes from the latest checkpoint; a run whose
results.json belongs to its final checkpoint is not trained again (runs.run_state, which the
protocol and the sweep ask too). The logs are dgp_snr.run_logging's, the final results
dgp_snr.metrics'.
"""

import math
import signal
import sys
import threading
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any, Dict, Iterator, Optional

import gpflow
import numpy as np
import tensorflow as tf
from tqdm.auto import tqdm

from dgp_snr.data import RegressionData
from dgp_snr.io import RunLock
from dgp_snr.metrics import final_results
from dgp_snr.models import DeepGP
from dgp_snr.run_logging import TENSORBOARD_DIR, RunLogger, purge_events_after
from dgp_snr.runs import (
    RunCheckpoints,
    RunConfig,
    build_run,
    check_resumable,
    load_results,
    run_state,
    save_config,
    save_results,
)
from dgp_snr.training import Trainer
from dgp_snr.training_record import TrainingSession


class TrainingInterrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM arrived during training; the checkpoint was saved before this rose."""

    def __init__(self, signum: int, step: Optional[int] = None):
        self.signum = signum
        self.step = step
        where = "" if step is None else f" at step {step}; checkpoint saved"
        super().__init__(f"interrupted by {signal.Signals(signum).name}{where}")

    @property
    def exit_code(self) -> int:
        """128 + the signal number, as a shell reports a process ended by the signal."""
        return 128 + self.signum


class NonFiniteError(FloatingPointError):
    """The bound or the parameters became non-finite; nothing was saved from that state."""


class _SignalGuard:
    """Turns SIGINT and SIGTERM into TrainingInterrupted in the main thread, held back while a
    checkpoint is written so that no save is cut short by Ctrl-C."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self._old: Dict[int, Any] = {}
        self._deferring = False
        self._pending: Optional[int] = None

    def __enter__(self) -> "_SignalGuard":
        if threading.current_thread() is threading.main_thread():  # only it may set handlers
            for signum in self.SIGNALS:
                self._old[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for signum, handler in self._old.items():
            signal.signal(signum, handler)
        self._old.clear()

    def _handle(self, signum: int, frame: Any) -> None:
        if self._deferring:
            self._pending = signum
            return
        raise TrainingInterrupted(signum)

    @contextmanager
    def deferred(self) -> Iterator[None]:
        """Signals arriving inside the block are raised when it ends."""
        self._deferring = True
        try:
            yield
        finally:
            self._deferring = False
        if self._pending is not None:
            signum, self._pending = self._pending, None
            raise TrainingInterrupted(signum)


def _every(freq: Optional[int], step: int) -> bool:
    return bool(freq) and step % int(freq) == 0


# ------------------------------------------------------------------------------- the run
def _say(message: str, verbose: bool) -> None:
    if verbose:
        tqdm.write(message, file=sys.stderr)


def train(config: RunConfig, progress: bool = True) -> Dict[str, Any]:
    """Trains the run of `config` to config.training.iterations and returns its results (as
    saved in <run_dir>/results.json).

    Resumes from the newest readable checkpoint; returns the saved results at once when they
    belong to a final checkpoint. On SIGINT or SIGTERM saves a checkpoint and raises
    TrainingInterrupted (a KeyboardInterrupt). Raises ValueError (ConfigError, DataError) for
    bad settings before anything is written, RunLockedError when another process trains in the
    run folder, and NonFiniteError, without saving, when the bound or parameters become
    non-finite."""
    config = config.validated()
    run_dir = config.run_dir()
    model, trainer, data = build_run(config)  # validates the settings and the data
    check_resumable(config, run_dir)
    # Nothing written yet: a finished run can be rerun from a read-only folder.
    saved = load_results(run_dir) if run_state(config).complete else None
    if saved is not None:
        _say(
            f"{run_dir.name}: complete at step {saved['step']}; results.json is up to date",
            progress,
        )
        return saved
    with RunLock(run_dir):
        return _train_locked(config, run_dir, model, trainer, data, progress)


def _train_locked(
    config: RunConfig,
    run_dir: Path,
    model: DeepGP,
    trainer: Trainer,
    data: RegressionData,
    progress: bool,
) -> Dict[str, Any]:
    checkpoints = RunCheckpoints(trainer, run_dir)
    # Restore before config.json is written: a failed restore leaves the folder as it was.
    start = checkpoints.restore()
    save_config(config, run_dir)
    if start is not None:
        _say(f"{run_dir.name}: resuming from step {start}", progress)
    iterations = config.training.iterations
    if start is not None and start > iterations:
        _say(
            f"{run_dir.name}: checkpoint step {start} is past iterations={iterations}",
            progress,
        )
    purge_events_after(run_dir / TENSORBOARD_DIR, start)

    logger = RunLogger(model, data, config, run_dir)
    session = _Session(trainer, checkpoints, logger, config, progress)
    record = TrainingSession.start(run_dir, start or 0, config.model.precision)
    with _SignalGuard() as guard:
        session.guard = guard
        try:
            session.run()
            # The final checkpoint comes before the evaluation, which a rerun can then redo.
            session.save()
        except KeyboardInterrupt as err:
            step = session.save()
            _say(f"{run_dir.name}: interrupted at step {step}; checkpoint saved", progress)
            signum = err.signum if isinstance(err, TrainingInterrupted) else signal.SIGINT
            raise TrainingInterrupted(signum, step) from err
        finally:
            logger.writer.flush()
            record.finish(int(trainer.step.numpy()))
    step = int(trainer.step.numpy())
    results: Dict[str, Any] = {"run_name": config.run_name, "step": step}
    results.update(final_results(model, data, config))
    logger.results(step, results)
    save_results(results, run_dir)
    return results


class _Session:
    """One call of `train`: the fit loop with its checkpoint and logging callback."""

    def __init__(
        self,
        trainer: Trainer,
        checkpoints: RunCheckpoints,
        logger: RunLogger,
        config: RunConfig,
        progress: bool,
    ):
        self.trainer = trainer
        self.checkpoints = checkpoints
        self.logger = logger
        self.config = config
        self.progress = progress
        self.guard: Optional[_SignalGuard] = None
        self.last_saved: Optional[int] = checkpoints.restored
        self.last_step = int(trainer.step.numpy())

    def _stop(self, step: int, what: str) -> "NonFiniteError":
        last = (
            f"step {self.last_saved} ({self.checkpoints.prefix(self.last_saved)})"
            if self.last_saved is not None
            else "none (no checkpoint was saved)"
        )
        return NonFiniteError(
            f"{self.config.run_name}: {what} not finite at step {step}; training stopped "
            f"without saving; last good checkpoint: {last}"
        )

    def _check_parameters(self, step: int) -> None:
        bad = []
        for path, value in gpflow.utilities.parameter_dict(self.trainer.model).items():
            if isinstance(value, gpflow.Parameter):
                value = value.unconstrained_variable
            if value.dtype.is_floating and not np.all(np.isfinite(value.numpy())):
                bad.append(path.lstrip("."))
        if bad:
            raise self._stop(step, f"parameters {', '.join(bad[:3])} are")

    def save(self) -> int:
        """Checkpoints the current step (once), with signals held back while it is written;
        never from non-finite parameters."""
        step = int(self.trainer.step.numpy())
        if step != self.last_saved:
            self._check_parameters(step)
            with self.guard.deferred() if self.guard else nullcontext():
                self.checkpoints.save()
                self.logger.writer.flush()
                self.last_saved = step
        return step

    def callback(self, step: int, bound: float) -> None:
        self.last_step = step
        if not math.isfinite(bound):
            raise self._stop(step, f"the bound ({bound}) is")
        logs = self.config.logging
        if _every(logs.log_main_freq, step):
            self.logger.main(step, bound, self.trainer.learning_rates())
        if _every(logs.log_test_freq, step):
            self.logger.test(step)
        if self.logger.with_snr and _every(logs.log_snr_freq, step):
            self.logger.snr(step)
        if _every(self.config.training.checkpoint_freq, step):
            self.save()

    def run(self) -> None:
        try:
            self.trainer.fit(
                self.config.training.iterations, self.callback, progress=self.progress
            )
        except tf.errors.InvalidArgumentError as err:
            # assert_no_nans's check, or GPflow's check of a natural-gradient update
            if "not finite" not in str(err) and "NaN or Inf" not in str(err):
                raise
            # The step counter of a failed compiled step is unreliable; the callback's is not.
            raise self._stop(self.last_step + 1, "parameters are") from err
