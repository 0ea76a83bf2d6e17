"""Gradient sampling for a trained run: many independent estimates of every encoder-parameter
gradient at a fixed checkpoint and a fixed batch, for each K, written as .npz dumps
(dgp_snr.gradient_dumps). Also the in-process SNR that training logs, from the same sampler.
"""

import os
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Set, Tuple

import numpy as np
import tensorflow as tf
from tqdm.auto import tqdm

from dgp_snr.estimators import Estimator, check_num_importance_samples
from dgp_snr.gradient_dumps import (
    dump_path,
    dump_problem,
    dump_request,
    read_dump_meta,
    save_gradient_dump,
)
from dgp_snr.gradients import EncoderGradientSampler, snr
from dgp_snr.models import DeepGP
from dgp_snr.runs import RunConfig, latest_checkpoint_step, load_config, load_run
from dgp_snr.seeds import Stream, derived_rng


def check_ks(ks: Iterable[int]) -> List[int]:
    """The Ks as a list of ints; raises ValueError unless every K is an integer >= 1."""
    out = [check_num_importance_samples(K) for K in ks]
    if not out:
        raise ValueError("no K given: pass at least one K (e.g. ks=[1, 10, 100])")
    return out


def mean_snr(samples: Dict[str, np.ndarray]) -> Dict[str, float]:
    """Per parameter and over all encoder weights ("all"): the mean of gradients.snr over the
    parameter's entries, from samples {name: [R, *shape]} (an entry whose samples are all 0
    counts as SNR 0)."""
    out: Dict[str, float] = {}
    everything = []
    for name, values in samples.items():
        ratios = snr(values).ravel()
        everything.append(ratios)
        out[name] = float(ratios.mean()) if ratios.size else float("nan")
    flat = np.concatenate(everything) if everything else np.zeros(0)
    out["all"] = float(flat.mean()) if flat.size else float("nan")
    return out


def _check_has_encoder(model: DeepGP, where: str) -> None:
    if not model.latent_layers:
        raise ValueError(f"{where}: the model has no latent-variable layer, so no encoder")
    if all(layer.fix_q for layer in model.latent_layers):
        raise ValueError(
            f"{where}: q(w) is fixed to the prior (qz_mode='fix_mu_sigma'), so the encoder "
            "gets no gradient"
        )


def sample_gradients(
    run_dir: os.PathLike,
    ks: Sequence[int],
    num_estimates: int = 1000,
    batch_size: int = 1,
    num_datapoints: int = 1,
    estimator: str = "dreg",
    save_aggregates: bool = False,
    step: Optional[int] = None,
    progress: bool = True,
    rebuild: bool = False,
) -> List[Path]:
    """Draws `num_estimates` (R) independent estimates of every encoder-parameter gradient for
    each K in `ks`, at checkpoint `step` (default: the latest) of the run in `run_dir`, and
    writes one .npz per (estimator, batch size, K[, data point]) under <run_dir>/gradients/.

    batch_size 1: training points 0 .. num_datapoints-1, one at a time (file suffix _dp<i>).
    batch_size B > 1: the batch is training points [0, B) (num_datapoints must be 1).
    Raw dumps hold {name: [R, *phi.shape]}; with save_aggregates only each parameter's
    mean and std (what Figures 1, 3, 8, 9 read; a raw dump hardly compresses). Each dump records
    what made it (gradient_dumps.DumpRequest: step, K, batch, data point, estimator, R, seed,
    precision). An existing dump whose record matches is skipped. One that does not match, or
    is corrupt, raises ValueError naming the file, what it holds and what was asked, before
    anything is sampled; with `rebuild` it is sampled again and replaced atomically (kept as
    <name>.stale when it holds more estimates than asked). Returns the paths written.
    """
    ks = check_ks(ks)
    Estimator.parse(estimator)  # ValueError naming the known estimators
    if num_estimates < 2:
        raise ValueError(
            f"num_estimates must be at least 2 (a std needs two), got {num_estimates}"
        )
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if num_datapoints < 1:
        raise ValueError(f"num_datapoints must be at least 1, got {num_datapoints}")
    if batch_size > 1 and num_datapoints != 1:
        raise ValueError(
            "num_datapoints applies to batch_size 1 (one data point at a time); with "
            f"batch_size {batch_size} the batch is the training points [0, {batch_size})"
        )
    run_dir = Path(run_dir)
    # A clear error for a directory that is not a run, before building; its seed and precision
    # are what every dump records.
    run_config = load_config(run_dir)

    datapoints: List[Optional[int]] = list(range(num_datapoints)) if batch_size == 1 else [None]
    # The step existing dumps must record: as asked, else the newest checkpoint, else (dumps
    # kept without their checkpoints) the configured iterations, as the sweep and plots ask.
    latest = latest_checkpoint_step(run_dir) if step is None else step
    if latest is None:
        latest = run_config.training.iterations
    pending, set_aside = _pending(
        run_dir, run_config, datapoints, ks, num_estimates, batch_size, estimator,
        save_aggregates, latest, rebuild,
    )  # fmt: skip
    if not pending:
        return []

    # step None: the newest readable checkpoint (a damaged newer one is passed over, warned).
    model, trainer, data, config = load_run(run_dir, step)
    _check_has_encoder(model, str(run_dir))
    model.check_estimator(estimator)
    restored_step = int(trainer.step.numpy())
    N = data.X_train.shape[0]
    last = (num_datapoints if batch_size == 1 else batch_size) - 1
    if last >= N:
        raise ValueError(
            f"the run's training set has {N} points; batch_size {batch_size} with "
            f"num_datapoints {num_datapoints} needs {last + 1}"
        )

    written: List[Path] = []
    bar = tqdm(total=len(pending), disable=not progress, desc=f"{run_dir.name} {estimator}")
    for dp in datapoints:
        start = 0 if dp is None else dp
        X = data.X_train[start : start + batch_size]
        Y = data.Y_train[start : start + batch_size]
        sampler = EncoderGradientSampler(model, X, Y)  # cheap: samplers share their traces
        for K in ks:
            if (dp, K) not in pending:
                continue
            # One generator per file, so skipping existing files never changes the others.
            rng = derived_rng(
                config.effective_seed, Stream.GRADIENTS, restored_step, batch_size, start, K
            )
            bar.set_postfix(K=K, datapoint=dp, refresh=False)
            samples = sampler.sample(K, num_estimates, estimator, rng=rng)
            meta = dump_request(
                config, estimator, batch_size, K, dp, num_estimates, restored_step
            ).record()
            meta["batch_start"] = start
            path = dump_path(run_dir, estimator, batch_size, K, dp, save_aggregates)
            if path in set_aside:  # more estimates than asked: kept, not overwritten
                os.replace(path, stale_path(path))
            save_gradient_dump(path, samples, meta, aggregates=save_aggregates)
            written.append(path)
            bar.update(1)
    bar.close()
    return written


def stale_path(path: Path) -> Path:
    """Where a replaced dump that held more estimates than asked is kept: <name>.stale, or
    <name>.stale<i> when that is taken."""
    candidate = path.with_name(path.name + ".stale")
    i = 1
    while candidate.exists():
        i += 1
        candidate = path.with_name(f"{path.name}.stale{i}")
    return candidate


def _pending(
    run_dir: Path,
    config: RunConfig,
    datapoints: List[Optional[int]],
    ks: List[int],
    num_estimates: int,
    batch_size: int,
    estimator: str,
    aggregates: bool,
    step: int,
    rebuild: bool,
) -> Tuple[List[Tuple[Optional[int], int]], Set[Path]]:
    """The (data point, K) to sample, and the existing dumps to set aside as .stale when
    replaced. A dump is kept when its record matches the request; a mismatched or corrupt one
    (every array read, so a damaged one is found) is resampled with `rebuild`, else raises
    ValueError: one line naming the file, what it holds, what was asked and the flag."""
    pending: List[Tuple[Optional[int], int]] = []
    set_aside: Set[Path] = set()
    problems: List[str] = []
    for dp in datapoints:
        for K in ks:
            path = dump_path(run_dir, estimator, batch_size, K, dp, aggregates)
            if not path.exists():
                pending.append((dp, K))
                continue
            request = dump_request(config, estimator, batch_size, K, dp, num_estimates, step)
            problem = dump_problem(path, request, full=True)
            if problem is None:
                continue
            problems.append(problem)
            pending.append((dp, K))
            try:
                held = int(read_dump_meta(path).get("num_samples", 0))
            except (ValueError, TypeError):
                held = 0
            if held > num_estimates:
                set_aside.add(path)
    if problems and not rebuild:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise ValueError(f"{problems[0]}{more}; pass --rebuild to sample again")
    return pending, set_aside


def encoder_snr(
    model: DeepGP,
    X: np.ndarray,
    Y: np.ndarray,
    num_importance_samples: int,
    num_estimates: int,
    estimator: str,
    rng: tf.random.Generator,
) -> Dict[str, float]:
    """Mean SNR per encoder parameter and overall ("all") at the model's current state on the
    batch (X [B, D], Y [B, 1]), from `num_estimates` estimates at K = num_importance_samples:
    what training logs every
    log_snr_freq iterations, with the sampler sample_gradients uses."""
    sampler = EncoderGradientSampler(model, X, Y)
    samples = sampler.sample(num_importance_samples, num_estimates, estimator, rng=rng)
    return mean_snr(samples)
