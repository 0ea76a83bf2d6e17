"""Trains one run of the paper (a sacred experiment; the work is dgp_snr.train_run.train).

    python experiments/train.py with dataset=winered configuration=L1_G5 num_IW_samples=50 \
        minibatch_size=64 estimator=dreg

The run lives in <results_path>/<run name> (e.g. results/winered_L1_G5_IWAE_SF0_K50_BS64_dreg);
the same command again resumes it from its latest checkpoint. Sacred records every run under
<results_path>/sacred unless --file_storage=DIR (or -u) says otherwise; its other observers
(-m, --sql, ...) come with its own flags. Settings and defaults: `python experiments/train.py
print_config`.
"""

import json
import os
import sys
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

import sacred.observers.sql as sacred_sql  # noqa: E402
from sacred import SETTINGS, Experiment  # noqa: E402
from sacred.observers import FileStorageObserver  # noqa: E402
from sacred.utils import apply_backspaces_and_linefeeds  # noqa: E402

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
ex.add_config(asdict(RunConfig()))  # one place for the defaults: RunConfig

# Either flag replaces the default file observer.
_OBSERVER_FLAGS = ("--file_storage", "--unobserved")
_options: dict = {}


@ex.option_hook
def _remember_options(options: dict) -> None:
    _options.update(options)


@ex.config_hook
def _resolve(config: dict, command_name: str, logger) -> dict:
    """seed None means the split (as in the reference); a relative results_path is relative to
    the current directory. Adds the default file observer."""
    updates = {"results_path": os.path.abspath(config["results_path"])}
    if config.get("seed") is None:
        updates["seed"] = config["split"]  # before sacred would draw a random one
    wants_default = not any(_options.get(flag) for flag in _OBSERVER_FLAGS)
    if command_name == "main" and wants_default and not ex.observers:
        ex.observers.append(FileStorageObserver(os.path.join(updates["results_path"], "sacred")))
    return updates


@ex.main
def main(_config: dict) -> dict:
    return train(RunConfig.from_dict(_config))


if __name__ == "__main__":
    try:
        ex.run_commandline()
    except TrainingInterrupted as err:
        print(f"train.py: {err}", file=sys.stderr)
        sys.exit(err.exit_code)
