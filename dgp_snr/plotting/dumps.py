"""Reading the gradient dumps of the SNR figures: which dump serves a (run, estimator, batch
size, K, data point), and the SNR / raw samples of the encoder weight entries in it.

"Mean SNR over encoder weights" averages |mean| / std over every entry of the encoder's weight
matrices (W0, W1, ...; biases left out), an entry with zero mean and zero std counting as 0, as
the reference does; per-data-point SNRs (batch size 1) are averaged over the data points.
"""

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Dict, List, Optional, Sequence, Tuple

import numpy as np

from dgp_snr.gradient_dumps import GradientDump, load_gradient_dump
from dgp_snr.gradient_dumps import find_dump as find_dump  # re-exported (plotting.find_dump)
from dgp_snr.runs import RunConfig

if TYPE_CHECKING:  # common imports this module
    from dgp_snr.plotting.common import _Needs

_WEIGHT = re.compile(r"(?:^|/)W(\d+)$")


def _weight_key(name: str) -> Tuple[int, int, str]:
    layer = re.search(r"layer(\d+)", name)
    index = _WEIGHT.search(name)
    return (int(layer.group(1)) if layer else 0, int(index.group(1)) if index else 0, name)


def weight_names(names: Sequence[str]) -> List[str]:
    """The encoder weight matrices among parameter names ('layer0/W0', ...), in layer and
    matrix order; biases are left out."""
    return sorted((n for n in names if _WEIGHT.search(n)), key=_weight_key)


def weight_snr(dump: GradientDump, path: Optional[os.PathLike] = None) -> np.ndarray:
    """[P]: the SNR (GradientDump.snr: 0 where mean and std are both 0) of every encoder weight
    entry, flattened in weight_names order."""
    names = weight_names(list(dump.mean))
    if not names:
        raise ValueError(f"gradient dump {path or ''} holds no encoder weights (W0, W1, ...)")
    snrs = dump.snr()
    values = np.concatenate([np.ravel(snrs[n]) for n in names])
    if not np.all(np.isfinite(values)):
        raise ValueError(f"gradient dump {path or ''} has non-finite SNRs (std 0 or NaN)")
    return values


def weight_samples(dump: GradientDump, path: Optional[os.PathLike] = None) -> np.ndarray:
    """[R, P]: the raw gradient samples of every encoder weight entry, flattened as
    weight_snr does."""
    if dump.samples is None:
        raise ValueError(f"gradient dump {path or ''} holds aggregates only, not raw samples")
    names = weight_names(list(dump.samples))
    R = next(iter(dump.samples.values())).shape[0]
    return np.concatenate([dump.samples[n].reshape(R, -1) for n in names], axis=1)


def weight_entry_labels(dump: GradientDump) -> List[str]:
    """[P]: a label per flattened weight entry, e.g. 'W0[0, 4]' (in weight_snr's order)."""
    labels = []
    for name in weight_names(list(dump.mean)):
        short = name.rsplit("/", 1)[-1]
        for index in np.ndindex(*np.shape(dump.mean[name])):
            labels.append(f"{short}[{', '.join(str(i) for i in index)}]")
    return labels


def mean_snr_over_datapoints(paths: Sequence[os.PathLike]) -> np.ndarray:
    """[P]: per weight entry, the SNR averaged over the dumps (one per data point)."""
    return np.mean([weight_snr(load_gradient_dump(p), p) for p in paths], axis=0)


def _collect_snr_paths(
    needs: "_Needs",
    config: RunConfig,
    estimator: str,
    *,
    ks: Sequence[int],
    batch_size: int,
    num_datapoints: int,
) -> Dict[int, List[Path]]:
    """K -> the existing dumps (one per data point for batch size 1), missing ones recorded."""
    out: Dict[int, List[Path]] = {}
    datapoints = list(range(num_datapoints)) if batch_size == 1 else [None]
    for K in ks:
        paths = []
        for dp in datapoints:
            path = needs.dump(
                config, estimator, batch_size=batch_size, K=K, datapoint=dp, raw=False
            )
            if path is not None:
                paths.append(path)
        if paths:
            out[K] = paths
    return out


def _snr_over_datapoints(paths: Sequence[os.PathLike]) -> Tuple[np.ndarray, List[str], int]:
    """([P] SNR per weight entry averaged over the dumps, [P] entry labels, the number of
    gradient estimates per dump: the smallest over the dumps)."""
    dumps = [load_gradient_dump(p) for p in paths]
    values = np.mean([weight_snr(d, p) for d, p in zip(dumps, paths)], axis=0)
    num_estimates = min(int(d.meta.get("num_samples", -1)) for d in dumps)
    return values, weight_entry_labels(dumps[0]), num_estimates
