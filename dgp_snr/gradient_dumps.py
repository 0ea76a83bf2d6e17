"""Gradient-sample dumps: one .npz per (estimator, batch size, K[, data point]) in a run's
gradients/ folder, loadable without pickle.

Raw dumps hold one array [num_samples, *phi.shape] per encoder parameter, keyed by its name
(e.g. "layer0/W1"); aggregate dumps hold "<name>/mean" and "<name>/std" instead. Every dump also
holds the scalars "meta/K", "meta/batch_size", "meta/num_samples", "meta/datapoint" (-1 when the
batch is a range), "meta/batch_start", "meta/step" and the string "meta/estimator".
"""

import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional

import numpy as np

from dgp_snr.gradients import snr_from_moments
from dgp_snr.io import atomic_path

GRADIENTS_DIR = "gradients"
META = "meta/"


def dump_path(
    run_dir: os.PathLike,
    estimator: str,
    batch_size: int,
    K: int,
    datapoint: Optional[int] = None,
    aggregates: bool = False,
) -> Path:
    """<run_dir>/gradients/<estimator>_bs<B>_K<K>[_dp<i>][_agg].npz"""
    name = f"{estimator}_bs{batch_size}_K{K}"
    if datapoint is not None:
        name += f"_dp{datapoint}"
    if aggregates:
        name += "_agg"
    return Path(run_dir) / GRADIENTS_DIR / f"{name}.npz"


@dataclass
class GradientDump:
    """A loaded dump: raw samples (or None), per-parameter mean and std, and its metadata."""

    samples: Optional[Dict[str, np.ndarray]]
    mean: Dict[str, np.ndarray]
    std: Dict[str, np.ndarray]
    meta: Dict[str, object]

    def snr(self) -> Dict[str, np.ndarray]:
        """|mean| / std per parameter entry (gradients.snr_from_moments: 0/0 is 0)."""
        return {k: snr_from_moments(self.mean[k], self.std[k]) for k in self.mean}


def save_gradient_dump(
    path: os.PathLike,
    samples: Dict[str, np.ndarray],
    meta: Dict[str, object],
    aggregates: bool = False,
) -> None:
    """Writes samples (or, with aggregates, their mean and std) atomically to `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays: Dict[str, np.ndarray] = {}
    for name, values in samples.items():
        if aggregates:
            arrays[f"{name}/mean"] = values.mean(0)
            arrays[f"{name}/std"] = values.std(0)
        else:
            arrays[name] = values
    for key, value in meta.items():
        arrays[META + key] = np.asarray(value)
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, **arrays)  # a file object: savez would append .npz to a name


def load_gradient_dump(path: os.PathLike) -> GradientDump:
    """Loads a dump; raises ValueError naming the file when it is corrupt or not a dump."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as err:
        if isinstance(err, FileNotFoundError):
            raise
        raise ValueError(f"corrupt gradient dump {path}: {err}") from err
    meta = {k[len(META) :]: v.item() for k, v in arrays.items() if k.startswith(META)}
    if "estimator" not in meta or "K" not in meta:
        raise ValueError(f"{path} is not a gradient dump (no meta/estimator or meta/K)")
    data = {k: v for k, v in arrays.items() if not k.startswith(META)}
    if any(k.endswith("/mean") for k in data):
        mean = {k[: -len("/mean")]: v for k, v in data.items() if k.endswith("/mean")}
        std = {k[: -len("/std")]: v for k, v in data.items() if k.endswith("/std")}
        return GradientDump(None, mean, std, meta)
    mean = {k: v.mean(0) for k, v in data.items()}
    std = {k: v.std(0) for k, v in data.items()}
    return GradientDump(data, mean, std, meta)
