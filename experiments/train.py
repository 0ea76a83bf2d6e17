"""Trains one run of the paper (a sacred experiment; the work is dgp_snr.train_run.train).

    python experiments/train.py with dataset=winered configuration=L1_G5 num_IW_samples=50 \
        minibatch_size=64 estimator=dreg

The run lives in <results_path>/<run name> (e.g. results/winered_L1_G5_IWAE_SF0_K50_BS64_dreg);
the same command again resumes it from its latest checkpoint. Sacred records every run under
<results_path>/sacred unless --file_storage=DIR (or -u) says otherwise; its other observers
(-m, --sql, ...) come with its own flags. Settings and defaults: `python experiments/train.py
print_config`.

Config files (`with settings.json`) must be plain JSON (or YAML with PyYAML): jsonpickle's
'py/' tags and pickle files are refused, since loading them could run code.
"""

import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from dgp_snr.scripting import (  # noqa: E402
    check_config_files,
    import_tensorflow_quietly,
    install_safe_config_loaders,
    one_line_warnings,
)

import_tensorflow_quietly()

import sacred.observers.sql as sacred_sql  # noqa: E402
from sacred import SETTINGS, Experiment  # noqa: E402
from sacred.observers import FileStorageObserver  # noqa: E402
from sacred.utils import apply_backspaces_and_linefeeds  # noqa: E402

from dgp_snr.io import RunLockedError, describe_write_error  # noqa: E402
from dgp_snr.runs import RunConfig  # noqa: E402
from dgp_snr.train_run import TrainingInterrupted, train  # noqa: E402

# "sys" tees stdout/stderr in Python, so tqdm keeps drawing on the terminal; the filter keeps
# only the last state of the bar in sacred's captured output.
SETTINGS.CAPTURE_MODE = "sys"


def _scalar(result):
    return result.get("test_loglik") if isinstance(result, dict) else result


class _SqlObserver(sacred_sql.SqlObserver):
    """sacred's SQL run table keeps a float result: there it gets the test log-likelihood, and
    the whole results dict goes into the run's info (JSON) as "results"."""

    def heartbeat_event(self, info, captured_out, beat_time, result):
        super().heartbeat_event(info, captured_out, beat_time, _scalar(result))

    def completed_event(self, stop_time, result):
        if isinstance(result, dict):
            info = json.loads(self.run.info or "{}")
            info["results"] = result
            self.run.info = json.dumps(info, default=float)
        super().completed_event(stop_time, _scalar(result))


sacred_sql.SqlObserver = _SqlObserver  # what sacred's --sql flag (-s) builds

ex = Experiment("dgp_snr_train")
ex.captured_out_filter = apply_backspaces_and_linefeeds
# One place for the defaults: RunConfig, flat, by the reference's names (num_IW_samples=...).
ex.add_config(RunConfig().to_flat(reference_names=True))
install_safe_config_loaders()  # config files are plain JSON/YAML: no jsonpickle, no pickle

# Either flag replaces the default file observer.
_OBSERVER_FLAGS = ("--file_storage", "--unobserved")
_options: dict = {}


def _fail(err: BaseException, status: int) -> None:
    """One line on stderr, then exit (sacred records the run as failed)."""
    text = describe_write_error(err) if isinstance(err, OSError) else str(err)
    print(f"train.py: error: {text}", file=sys.stderr)
    raise SystemExit(status)


@ex.option_hook
def _remember_options(options: dict) -> None:
    _options.update(options)


@ex.config_hook
def _resolve(config: dict, command_name: str, logger) -> dict:
    """Checks every setting before sacred seeds or writes anything. seed None means the split
    (as in the reference); a relative results_path is relative to the current directory, ~ is
    the home directory. Adds the default file observer."""
    try:
        RunConfig.from_dict(config).validated()
    except ValueError as err:
        _fail(err, 2)
    updates = {"results_path": os.path.abspath(os.path.expanduser(config["results_path"]))}
    if config.get("seed") is None:
        updates["seed"] = config["split"]  # before sacred would draw a random one
    wants_default = not any(_options.get(flag) for flag in _OBSERVER_FLAGS)
    if command_name == "main" and wants_default and not ex.observers:
        ex.observers.append(FileStorageObserver(os.path.join(updates["results_path"], "sacred")))
    return updates


@ex.main
def main(_config: dict) -> dict:
    try:
        return train(RunConfig.from_dict(_config))
    except (ValueError, OSError, FloatingPointError, RunLockedError) as err:
        # ValueError includes ConfigError, DataError and DamagedCheckpointError;
        # FloatingPointError: training became non-finite (nothing was saved from it).
        _fail(err, 1)


if __name__ == "__main__":
    one_line_warnings("train.py")
    try:
        check_config_files(sys.argv[1:])
    except ValueError as err:
        print(f"train.py: error: {err}", file=sys.stderr)
        sys.exit(2)
    try:
        ex.run_commandline()
    except TrainingInterrupted as err:
        print(f"train.py: {err}", file=sys.stderr)
        sys.exit(err.exit_code)
