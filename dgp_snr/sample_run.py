"""Gradient sampling for a trained run: many independent estimates of every encoder-parameter
gradient at a fixed checkpoint and a fixed batch, for each K, written as .npz dumps
(dgp_snr.gradient_dumps). Also the in-process SNR that training logs, from the same sampler.
"""

import os
import warnings
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence

import numpy as np
import tensorflow as tf
from tqdm.auto import tqdm

from dgp_snr.estimators import Estimator
from dgp_snr.gradient_dumps import dump_path, load_gradient_dump, save_gradient_dump
from dgp_snr.gradients import EncoderGradientSampler, snr
from dgp_snr.models import DeepGP
from dgp_snr.runs import latest_checkpoint_step, load_config, load_run
from dgp_snr.seeds import Stream, derived_rng


def check_ks(ks: Iterable[int]) -> List[int]:
    """The Ks as a list of ints; raises ValueError unless every K is an integer >= 1."""
    out = []
    for K in ks:
        if isinstance(K, bool) or int(K) != K or K < 1:
            raise ValueError(f"every K must be an integer of at least 1, got {K!r}")
        out.append(int(K))
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
) -> List[Path]:
    """Draws `num_estimates` (R) independent estimates of every encoder-parameter gradient for
    each K in `ks`, at checkpoint `step` (default: the latest) of the run in `run_dir`, and
    writes one .npz per (estimator, batch size, K[, data point]) under <run_dir>/gradients/.

    batch_size 1: training points 0 .. num_datapoints-1, one at a time (file suffix _dp<i>).
    batch_size B > 1: the batch is training points [0, B) (num_datapoints must be 1).
    Raw dumps hold {name: [R, *phi.shape]}; with save_aggregates only each parameter's
    mean and std. Existing files are skipped (a warning when they come from another step).
    Returns the paths written.
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
    load_config(run_dir)  # a clear error for a directory that is not a run, before building

    datapoints: List[Optional[int]] = list(range(num_datapoints)) if batch_size == 1 else [None]
    latest = latest_checkpoint_step(run_dir) if step is None else step
    pending = [
        (dp, K)
        for dp in datapoints
        for K in ks
        if not _existing(dump_path(run_dir, estimator, batch_size, K, dp, save_aggregates), latest)
    ]
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
            meta = {
                "K": K,
                "batch_size": batch_size,
                "num_samples": num_estimates,  # the dumps' key (plotting reads it)
                "datapoint": -1 if dp is None else dp,
                "batch_start": start,
                "step": restored_step,
                "estimator": estimator,
            }
            path = dump_path(run_dir, estimator, batch_size, K, dp, save_aggregates)
            save_gradient_dump(path, samples, meta, aggregates=save_aggregates)
            written.append(path)
            bar.update(1)
    bar.close()
    return written


def _existing(path: Path, step: Optional[int]) -> bool:
    """Whether `path` is already there (then it is skipped). Reads all of it, so that a dump
    with a damaged array is reported rather than skipped, and warns when it comes from another
    checkpoint; raises ValueError for a corrupt file."""
    if not path.exists():
        return False
    try:
        found = load_gradient_dump(path).meta.get("step")
    except Exception as err:  # zip, CRC, header or key errors all mean the same here
        reason = str(err).replace(f"corrupt gradient dump {path}: ", "")
        raise ValueError(
            f"corrupt gradient dump {path}: {reason}; delete it to sample it again"
        ) from err
    if step is not None and found is not None and found != step:
        warnings.warn(
            f"skipping {path}: it exists, from step {found} (not {step}); delete it or use "
            "another run directory to resample",
            stacklevel=3,
        )
    return True


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
