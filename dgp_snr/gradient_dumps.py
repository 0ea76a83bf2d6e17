"""Gradient-sample dumps: one .npz per (estimator, batch size, K[, data point]) in a run's
gradients/ folder, loadable without pickle.

Raw dumps hold one array [num_samples, *phi.shape] per encoder parameter, keyed by its name
(e.g. "layer0/W1"); aggregate dumps hold "<name>/mean" and "<name>/std" instead. Every dump also
holds the scalars "meta/K", "meta/batch_size", "meta/num_samples", "meta/datapoint" (-1 when the
batch is a range), "meta/batch_start", "meta/step", "meta/seed" (the run's effective seed) and
the strings "meta/estimator" and "meta/precision".

Dumps are written zip-deflated (np.savez_compressed); uncompressed ones (written before) load
the same. Raw dumps of float64 gradients shrink little (their mantissas are noise; see
benchmarks/dump_size.py), so the figures that need SNRs only (1, 3, 8, 9) ask for aggregate
dumps, a few KB each; Figure 2's histograms need the raw estimates of its one data point.

A dump is what made it: DumpRequest holds the fields a request must match (RECORD_FIELDS), and
a dump is reused only when its record matches; one without a field (written before the field
existed) does not match. read_dump_meta reads the record alone, not the arrays.
"""

import os
import zipfile
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

from dgp_snr.configs import RunConfig
from dgp_snr.gradients import snr_from_moments
from dgp_snr.io import atomic_path
from dgp_snr.runs import latest_checkpoint_step

GRADIENTS_DIR = "gradients"
META = "meta/"
#: The metadata a dump must match to be reused (DumpRequest's fields, in its order).
RECORD_FIELDS = (
    "step",
    "K",
    "batch_size",
    "datapoint",
    "estimator",
    "num_samples",
    "seed",
    "precision",
)


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


def find_dump(
    run_dir: os.PathLike,
    estimator: str,
    batch_size: int,
    K: int,
    datapoint: Optional[int] = None,
    raw: bool = False,
) -> Optional[Path]:
    """The existing dump for (estimator, batch size, K, data point): the aggregate dump when
    `raw` is False and it exists, else the raw one; None when neither exists. For data point 0
    a dump without data-point suffix also counts."""
    candidates = [datapoint] + ([None] if datapoint == 0 else [])
    for dp in candidates:
        for aggregates in ([False] if raw else [True, False]):
            path = dump_path(run_dir, estimator, batch_size, K, dp, aggregates)
            if path.is_file():
                return path
    return None


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
    compress: bool = True,
) -> None:
    """Writes samples {name: [R, *shape]} (or, with aggregates, their mean and std [*shape])
    and the meta/* record atomically to `path`, zip-deflated unless `compress` is False."""
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
    write = np.savez_compressed if compress else np.savez
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        write(handle, **arrays)  # a file object: savez would append .npz to a name


def load_gradient_dump(path: os.PathLike) -> GradientDump:
    """Loads a dump; raises ValueError naming the file when it is corrupt or not a dump."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (zipfile.BadZipFile, zlib.error, ValueError, OSError, EOFError) as err:
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


def read_dump_meta(path: os.PathLike) -> Dict[str, object]:
    """The meta/* scalars of a dump, reading only those members of the .npz (a zip), not the
    arrays. Raises ValueError naming the file when it is corrupt (e.g. truncated) or not a
    dump, FileNotFoundError when it does not exist."""
    path = Path(path)
    meta: Dict[str, object] = {}
    try:
        with zipfile.ZipFile(path) as archive:
            for name in archive.namelist():
                if name.startswith(META) and name.endswith(".npy"):
                    with archive.open(name) as member:
                        value = np.lib.format.read_array(member, allow_pickle=False)
                    meta[name[len(META) : -len(".npy")]] = value.item()
    except FileNotFoundError:
        raise
    except (zipfile.BadZipFile, zlib.error, ValueError, OSError, EOFError) as err:
        raise ValueError(f"corrupt gradient dump {path}: {err}") from err
    if "estimator" not in meta or "K" not in meta:
        raise ValueError(f"{path} is not a gradient dump (no meta/estimator or meta/K)")
    return meta


def _describe(name: str, value: object) -> str:
    if value is None:
        return f"no {name.replace('num_samples', 'number of estimates')}"
    if name == "num_samples":
        return f"{value} estimates"
    if name == "datapoint":
        return "the batch" if value == -1 else f"data point {value}"
    if name == "batch_size":
        return f"batch {value}"
    if name in ("estimator", "precision"):
        return str(value)
    return f"{name} {value}" if name != "K" else f"K={value}"


@dataclass(frozen=True)
class DumpRequest:
    """What a dump must record to serve a request: the checkpoint step, K, batch size, data
    point (-1 for a batch of the first `batch_size` points), estimator, number of estimates
    R ("num_samples", the dumps' key), the run's effective seed and its precision."""

    step: int
    K: int
    batch_size: int
    datapoint: int
    estimator: str
    num_samples: int
    seed: int
    precision: str

    def record(self) -> Dict[str, object]:
        return asdict(self)

    def differences(self, meta: Dict[str, object]) -> List[str]:
        """The fields of RECORD_FIELDS whose value in `meta` differs from the request's, or
        that `meta` lacks."""
        return [k for k, v in self.record().items() if k not in meta or meta[k] != v]

    def mismatch(self, path: os.PathLike, meta: Dict[str, object]) -> Optional[str]:
        """None when `meta` matches; else one line naming the file, what it holds and what
        was asked (only the fields that differ)."""
        fields = self.differences(meta)
        if not fields:
            return None
        held = ", ".join(_describe(k, meta.get(k)) for k in fields)
        asked = ", ".join(_describe(k, getattr(self, k)) for k in fields)
        return f"gradient dump {path} holds {held}; asked: {asked}"


def dump_problem(path: os.PathLike, request: DumpRequest, full: bool = False) -> Optional[str]:
    """None when the dump at `path` exists and matches `request`; else one line saying why
    not: missing, corrupt (`full`: every array is read, so a damaged one is found; otherwise
    only the metadata) or recorded with other settings."""
    path = Path(path)
    if not path.is_file():
        return f"gradient dump {path} is missing"
    try:
        meta = load_gradient_dump(path).meta if full else read_dump_meta(path)
    except Exception as err:  # zip, CRC, header or key errors all mean: not usable
        text = str(err)
        return (
            text
            if text.startswith(("corrupt", str(path)))
            else f"corrupt gradient dump {path}: {text}"
        )
    return request.mismatch(path, meta)


def requested_step(config: RunConfig) -> int:
    """The checkpoint step a run's dumps are asked at: its newest checkpoint, or the
    configured iterations while it has none (dumps without their run)."""
    latest = latest_checkpoint_step(config.run_dir())
    return config.training.iterations if latest is None else latest


def dump_request(
    config: RunConfig,
    estimator: str,
    batch_size: int,
    K: int,
    datapoint: Optional[int],
    num_estimates: int,
    step: Optional[int] = None,
) -> DumpRequest:
    """The DumpRequest of a run's dump (datapoint None: the batch); `step` defaults to
    requested_step(config)."""
    return DumpRequest(
        step=requested_step(config) if step is None else int(step),
        K=int(K),
        batch_size=int(batch_size),
        datapoint=-1 if datapoint is None else int(datapoint),
        estimator=estimator,
        num_samples=int(num_estimates),
        seed=config.effective_seed,
        precision=config.model.precision,
    )
