"""A run's evaluation at one checkpoint, cached: the test log-likelihood and the full-data train
ELBO of the Evaluator (dgp_snr.evaluation), repeated, kept in <run_dir>/evaluation.json so
that a run is evaluated once per checkpoint and setting.
"""

import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Optional

import numpy as np

from dgp_snr.evaluation import (
    DEFAULT_MAX_ELEMENTS,
    ELBO_REPEATS,
    TEST_REPEATS,
    TEST_SAMPLES,
    Evaluator,
)
from dgp_snr.io import describe_write_error, write_json
from dgp_snr.runs import CHECKPOINT_DIR, latest_checkpoint_step, load_config, load_run

EVALUATION_FILE = "evaluation.json"


@dataclass
class RunEvaluation:
    """What evaluate_run computed (or found cached) for one run at one checkpoint.

    test_ll: [R] mean test log-likelihood per repeat (None when not asked for);
    train_elbo: [R] full-data train ELBO per repeat (None when not asked for)."""

    run_name: str
    step: int
    test_ll: Optional[np.ndarray] = None
    train_elbo: Optional[np.ndarray] = None
    cached: Dict[str, bool] = field(default_factory=dict)


def _cache_key(kind: str, step: int, samples: Optional[int], repeats: int, seed: int) -> str:
    # "S=": the samples per point (S or K); the key's spelling is evaluation.json's format.
    return f"{kind}:step={step}:S={samples}:R={repeats}:seed={seed}"


def _read_cache(run_dir: Path) -> Dict[str, dict]:
    path = run_dir / EVALUATION_FILE
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(
            f"corrupt evaluation cache {path}: {err}; delete it to recompute"
        ) from err
    if not isinstance(data, dict):
        raise ValueError(f"corrupt evaluation cache {path}: expected a JSON object")
    return data


def _write_cache(run_dir: Path, data: Dict[str, dict]) -> None:
    """Caches results; a failed write (e.g. a read-only folder) only warns, since the results
    are returned anyway."""
    try:
        write_json(run_dir / EVALUATION_FILE, data, indent=2, sort_keys=True)
    except OSError as err:
        warnings.warn(f"results not cached: {describe_write_error(err)}", stacklevel=3)


def evaluate_run(
    run_dir: os.PathLike,
    test_ll: bool = True,
    elbo: bool = False,
    num_predictive_samples: int = TEST_SAMPLES,
    repeats: int = TEST_REPEATS,
    elbo_repeats: int = ELBO_REPEATS,
    seed: int = 0,
    step: Optional[int] = None,
    max_elements: int = DEFAULT_MAX_ELEMENTS,
    recompute: bool = False,
    progress: bool = False,
) -> RunEvaluation:
    """Test log-likelihood ([repeats] values, S = `num_predictive_samples` each) and/or the
    full-data train ELBO ([elbo_repeats] values, the run's K) of a run's checkpoint (default:
    latest).

    Results are cached in <run_dir>/evaluation.json, keyed by step, samples, repeats and seed;
    `recompute` ignores the cache. Raises FileNotFoundError for a run without a checkpoint."""
    run_dir = Path(run_dir)
    config = load_config(run_dir)
    explicit_step = step is not None
    if step is None:
        step = latest_checkpoint_step(run_dir)
        if step is None:
            raise FileNotFoundError(f"{run_dir} has no checkpoint in {CHECKPOINT_DIR}/ yet")
    cache = {} if recompute else _read_cache(run_dir)
    keys = {
        "test_ll": _cache_key("test_ll", step, num_predictive_samples, repeats, seed),
        "train_elbo": _cache_key(
            "train_elbo", step, config.model.num_importance_samples, elbo_repeats, seed
        ),
    }
    wanted = [k for k, on in (("test_ll", test_ll), ("train_elbo", elbo)) if on]
    result = RunEvaluation(config.run_name, step)
    todo = []
    for kind in wanted:
        if keys[kind] in cache:
            setattr(result, kind, np.asarray(cache[keys[kind]]["values"], dtype=np.float64))
            result.cached[kind] = True
        else:
            todo.append(kind)
    if not todo:
        return result

    # Default: the newest readable checkpoint (a damaged newer one is passed over, warned).
    model, trainer, data, _ = load_run(run_dir, step if explicit_step else None)
    restored = int(trainer.step.numpy())
    if restored != step:
        return evaluate_run(
            run_dir, test_ll, elbo, num_predictive_samples, repeats, elbo_repeats, seed, restored,
            max_elements, recompute, progress,
        )  # fmt: skip
    evaluator = Evaluator(model, max_elements)
    if recompute:
        cache = _read_cache(run_dir)
    for kind in todo:
        if kind == "test_ll":
            values = evaluator.test_log_likelihood(
                data.X_test, data.Y_test, num_predictive_samples, repeats, seed, progress
            ).values
        else:
            values = evaluator.train_elbo(
                data.X_train, data.Y_train, None, elbo_repeats, seed, progress
            )
        if not np.all(np.isfinite(values)):
            raise FloatingPointError(f"{run_dir}: {kind} is not finite: {values}")
        setattr(result, kind, values)
        result.cached[kind] = False
        cache[keys[kind]] = {"values": values.tolist(), "step": step}
    _write_cache(run_dir, cache)
    return result
