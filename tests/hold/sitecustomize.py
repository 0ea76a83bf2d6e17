"""Test-only fault injection for tests/test_sweep.py's `faulty` fixture: a training that holds
at a known step until it is killed, so the kill never races the training's end.

With this folder on PYTHONPATH, Python runs this module at start-up. When the environment
variable DGP_SNR_TEST_HOLD holds {"argv": [...], "step": S, "marker": path} and this process's
command line is `argv`, the training (dgp_snr.training.Trainer.fit) holds after step S's
callback, so after that step's checkpoint is written: it creates `marker` holding its PID
(once, atomically; the test waits for it) and sleeps until killed. A process that finds the
marker already there trains through, so the killed task's retry finishes. Any other process:
nothing happens.
"""

import importlib.abc
import importlib.util
import json
import os
import sys
import time

HOLD_ENV = "DGP_SNR_TEST_HOLD"


def _hold_after(callback, step_to_hold: int, marker: str):
    def hold(step: int, bound: float) -> None:
        if callback is not None:
            callback(step, bound)  # the checkpoint of `step` is written here
        if step != step_to_hold:
            return
        # The marker appears with its PID in it, once: linked from a file written beforehand.
        written = f"{marker}.{os.getpid()}"
        with open(written, "w") as handle:
            handle.write(f"{os.getpid()}\n")
        try:
            os.link(written, marker)
        except FileExistsError:  # held once already: this is a retry
            return
        finally:
            os.unlink(written)
        while True:  # until killed (the runner's PDEATHSIG follows the worker's SIGKILL)
            time.sleep(3600)

    return hold


def _patch(training, spec: dict) -> None:
    fit = training.Trainer.fit

    def held_fit(self, iterations, callback=None, progress=True):
        return fit(self, iterations, _hold_after(callback, spec["step"], spec["marker"]), progress)

    training.Trainer.fit = held_fit


class _PatchOnImport(importlib.abc.MetaPathFinder):
    """Patches dgp_snr.training once it is imported (so the training starts as it would)."""

    def __init__(self, spec: dict):
        self.spec = spec

    def find_spec(self, name, path, target=None):
        if name != "dgp_snr.training":
            return None
        sys.meta_path.remove(self)
        found = importlib.util.find_spec(name)
        exec_module = found.loader.exec_module

        def exec_and_patch(module):
            exec_module(module)
            _patch(module, self.spec)

        found.loader.exec_module = exec_and_patch
        return found


def _install() -> None:
    text = os.environ.get(HOLD_ENV)
    if not text:
        return
    spec = json.loads(text)
    if sys.argv != spec["argv"] or os.path.exists(spec["marker"]):
        return
    sys.meta_path.insert(0, _PatchOnImport(spec))


_install()
