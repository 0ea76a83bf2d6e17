"""Installing the "wilson_" datasets from a user-supplied ``uci.tar.gz``.

Andrew Wilson's collection (``uci.tar.gz``, distributed through Google Drive, so it cannot be
fetched automatically) holds ``uci/<short>/<short>.mat`` files whose ``data`` matrix is
(N, D + 1): the inputs, then the target. Installing converts the requested ones to the prepared
layout (``wilson_<short>.csv.gz`` + manifest entry) in the cache or in ``target_dir``.
"""

from __future__ import annotations

import io
import os
import tarfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from scipy.io import loadmat

from .core import DataError
from .registry import REGISTRY, WILSON_PREFIX, WilsonDataset
from .storage import cache_dir, write_prepared


def wilson_datasets() -> dict[str, WilsonDataset]:
    """The registered Wilson datasets by name."""
    return {n: d for n, d in REGISTRY.items() if isinstance(d, WilsonDataset)}


def _resolve_names(names: Iterable[str] | None) -> list[WilsonDataset]:
    known = wilson_datasets()
    if names is None:
        return list(known.values())
    if isinstance(names, str):
        names = [names]
    chosen = []
    for raw in names:
        for part in str(raw).split(","):  # accept "forest,solar" like the reference script
            part = part.strip()
            if not part:
                continue
            name = part if part.startswith(WILSON_PREFIX) else WILSON_PREFIX + part
            if name not in known:
                raise DataError(
                    f"unknown Wilson dataset {part!r}; known: {', '.join(sorted(known))}"
                )
            if known[name] not in chosen:
                chosen.append(known[name])
    if not chosen:
        raise DataError("no dataset names given")
    return chosen


def _read_mat(payload: bytes, label: str, dataset: WilsonDataset) -> np.ndarray:
    try:
        contents = loadmat(io.BytesIO(payload))
    except Exception as error:  # scipy raises several unrelated types on bad files
        raise DataError(f"{label}: not a readable MATLAB file ({error})") from error
    if "data" not in contents:
        keys = sorted(k for k in contents if not k.startswith("__"))
        raise DataError(f"{label}: no 'data' matrix (variables: {keys})")
    table = np.asarray(contents["data"], dtype=np.float64)
    if table.shape != dataset.shape:
        raise DataError(
            f"{label}: 'data' is {table.shape[0]} x {table.shape[1]}, but {dataset.name!r} has "
            f"N={dataset.N} points with D={dataset.D} inputs plus a target"
        )
    if not np.isfinite(table).all():
        raise DataError(f"{label}: missing or non-finite values")
    return table


def install_wilson(
    tarball_path: str | os.PathLike,
    names: Iterable[str] | None = None,
    target_dir: str | os.PathLike | None = None,
) -> dict[str, Path]:
    """Install Wilson datasets from ``tarball_path`` (``uci.tar.gz`` or an uncompressed tar).

    ``names``: e.g. ``["wilson_forest", "solar"]`` (prefix optional); None installs all
    registered Wilson sets (forest, solar, pol). ``target_dir``: defaults to the cache directory.
    Returns the installed files by dataset name. Every file is validated (shape, finite values)
    before it is written; a name missing from the archive raises a DataError listing what is there.
    """
    wanted = {d.member_suffix: d for d in _resolve_names(names)}
    target = Path(target_dir).expanduser() if target_dir is not None else cache_dir()
    path = Path(tarball_path).expanduser()
    if not path.is_file():
        raise DataError(f"{path} does not exist; download uci.tar.gz first")

    tables: dict[str, tuple[np.ndarray, str]] = {}
    seen: list[str] = []
    try:
        # "r:*" detects the compression; iterating reads the archive once, front to back.
        with tarfile.open(path, "r:*") as archive:
            for member in archive:
                if not member.isfile() or not member.name.endswith(".mat"):
                    continue
                seen.append(member.name)
                dataset = next(
                    (d for s, d in wanted.items() if _member_matches(member.name, s)), None
                )
                if dataset is None or dataset.name in tables:
                    continue
                handle = archive.extractfile(member)
                label = f"{path}:{member.name}"
                tables[dataset.name] = (_read_mat(handle.read(), label, dataset), label)
    except (tarfile.TarError, OSError, EOFError) as error:
        raise DataError(f"{path} is not a readable tar archive ({error})") from error

    missing = [d for d in wanted.values() if d.name not in tables]
    if missing:
        listing = ", ".join(seen[:40]) + (" ..." if len(seen) > 40 else "") or "none"
        raise DataError(
            f"{path} lacks "
            + ", ".join(f"uci/{d.member_suffix} ({d.name})" for d in missing)
            + f"; .mat files found: {listing}. Nothing was installed."
        )

    installed = {}
    for dataset in wanted.values():
        table, label = tables[dataset.name]
        entry = write_prepared(
            target, dataset.name, table, source=f"Wilson UCI collection {label}"
        )
        dataset.check_reference(entry, label)
        installed[dataset.name] = target / entry["file"]
    return installed


def _member_matches(member_name: str, suffix: str) -> bool:
    parts = member_name.replace("\\", "/").split("/")
    return "/".join(parts[-2:]) == suffix
