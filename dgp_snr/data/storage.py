"""Prepared data files on disk: where they live, how they are read, verified and written.

A *data directory* holds ``<name>.csv.gz`` files (comma separated, no header, the input columns
then the target, one row per point) and optionally a ``MANIFEST.json`` mapping each name to
``{"N", "D", "file", "sha256_uncompressed", "source"}``. Two such directories are searched, in
order: ``$DGP_SNR_DATA`` (e.g. ``../shared/data/uci``) and the per-user cache (``$DGP_SNR_CACHE``,
else ``$XDG_CACHE_HOME/dgp_snr/uci``, else ``~/.cache/dgp_snr/uci``). Downloads and
``install-wilson`` write into the cache, and record the checksum of what they wrote in its
manifest, so cached files are verified exactly like the shared ones.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import os
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from dgp_snr.io import atomic_path

from .core import DataError

DATA_ENV = "DGP_SNR_DATA"
CACHE_ENV = "DGP_SNR_CACHE"
MANIFEST_NAME = "MANIFEST.json"

# Parsed tables, keyed by file identity, so loading many splits reads each file once.
_TABLE_CACHE: dict[tuple, np.ndarray] = {}
_TABLE_CACHE_SIZE = 16


def data_dir() -> Path | None:
    """The directory named by ``$DGP_SNR_DATA``, or None when unset/empty."""
    value = os.environ.get(DATA_ENV, "").strip()
    return Path(value).expanduser() if value else None


def cache_dir() -> Path:
    """The per-user cache directory (not created here)."""
    value = os.environ.get(CACHE_ENV, "").strip()
    if value:
        return Path(value).expanduser()
    if os.name == "nt":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "dgp_snr" / "uci"


def default_file_name(name: str) -> str:
    return f"{name}.csv.gz"


def read_manifest(directory: Path) -> dict[str, dict]:
    """The manifest of ``directory`` ({} when it has none); a malformed one is a DataError."""
    path = directory / MANIFEST_NAME
    if not path.is_file():
        return {}
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DataError(f"cannot read manifest {path}: {error}") from error
    if not isinstance(manifest, dict) or not all(isinstance(v, dict) for v in manifest.values()):
        raise DataError(f"manifest {path} must map dataset names to objects")
    return manifest


def find_prepared(name: str, directory: Path | None) -> tuple[Path, dict | None] | None:
    """``(path, manifest entry or None)`` of dataset ``name`` in ``directory``, if it is there."""
    if directory is None or not directory.is_dir():
        return None
    manifest = read_manifest(directory)
    entry = manifest.get(name)
    file_name = entry.get("file", default_file_name(name)) if entry else default_file_name(name)
    path = directory / file_name
    return (path, entry) if path.is_file() else None


def sha256_hex(payload: bytes) -> str:
    return hashlib.sha256(payload).hexdigest()


def read_prepared(
    path: Path,
    name: str,
    shape: tuple[int, int] | None,
    entry: dict | None,
    reference_sha256: str | None = None,
) -> np.ndarray:
    """Read, verify and parse a prepared ``.csv.gz`` file into a read-only float64 array.

    ``shape`` (N, D + 1) is what the dataset's definition expects (None: anything); ``entry`` is
    the file's manifest entry, whose sha256 and N, D are checked when present. A file without a
    manifest checksum is compared with ``reference_sha256`` (the registry's reference copy)
    instead. Any mismatch or damage raises a DataError naming the file.
    """
    stat = path.stat()
    key = (
        str(path.resolve()),
        stat.st_mtime_ns,
        stat.st_size,
        shape,
        _entry_key(entry),
        reference_sha256,
    )
    if key in _TABLE_CACHE:
        return _TABLE_CACHE[key]

    in_cache = path.parent.resolve() == cache_dir().resolve()
    hint = "delete it and fetch it again" if in_cache else "replace it with a good copy"
    try:
        with gzip.open(path, "rb") as handle:
            payload = handle.read()
    except (OSError, EOFError, zlib.error) as error:
        raise DataError(
            f"{path} is truncated or corrupt (cannot decompress: {error}); {hint}"
        ) from error

    if entry is not None and entry.get("sha256_uncompressed"):
        actual = sha256_hex(payload)
        if actual != entry["sha256_uncompressed"]:
            raise DataError(
                f"{path} fails its checksum: sha256 of the uncompressed data is {actual}, the "
                f"manifest says {entry['sha256_uncompressed']}; {hint}"
            )
    elif reference_sha256:
        actual = sha256_hex(payload)
        if actual != reference_sha256:
            raise DataError(
                f"{path} has no manifest entry and differs from the reference copy of {name!r} "
                f"(sha256 of the uncompressed data {actual} != {reference_sha256}); {hint}, or "
                f"record this copy in {path.parent / MANIFEST_NAME}"
            )

    try:
        frame = pd.read_csv(
            io.BytesIO(payload),
            header=None,
            dtype=np.float64,
            float_precision="round_trip",
        )
    except ValueError as error:  # includes pandas' ParserError and EmptyDataError
        raise DataError(f"{path} is not a numeric CSV table: {error}") from error
    table = frame.to_numpy(dtype=np.float64)
    if not np.isfinite(table).all():
        bad_row = int(np.flatnonzero(~np.isfinite(table).all(axis=1))[0])
        raise DataError(
            f"{path} has missing or non-finite values (first in data row {bad_row + 1}; "
            f"a short row reads as missing values)"
        )
    if table.shape[1] < 2:
        raise DataError(f"{path} has {table.shape[1]} column(s); expected inputs and a target")

    expectations = []
    if shape is not None:
        expectations.append((shape, f"dataset {name!r} has"))
    if entry is not None and "N" in entry and "D" in entry:
        expectations.append(((int(entry["N"]), int(entry["D"]) + 1), "its manifest says"))
    for expected, who in expectations:
        if table.shape != expected:
            raise DataError(
                f"{path} holds {table.shape[0]} rows x {table.shape[1]} columns, but {who} "
                f"N={expected[0]} points with D={expected[1] - 1} inputs plus a target"
            )

    table.flags.writeable = False
    if len(_TABLE_CACHE) >= _TABLE_CACHE_SIZE:
        _TABLE_CACHE.pop(next(iter(_TABLE_CACHE)))
    _TABLE_CACHE[key] = table
    return table


def _entry_key(entry: dict | None) -> tuple:
    if entry is None:
        return ()
    return tuple(sorted((k, str(v)) for k, v in entry.items()))


def format_value(value: float) -> str:
    """Shortest text that reads back as exactly ``value``; integers without ``.0``.

    This reproduces the byte layout of the shared copies, so a file prepared from the original
    UCI download has the same sha256 as the corresponding shared file.
    """
    value = float(value)
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def encode_table(table: np.ndarray) -> bytes:
    """The uncompressed CSV bytes of a (N, D + 1) table: one line per row, ``\\n`` ended."""
    table = np.asarray(table, dtype=np.float64)
    if table.ndim != 2 or not np.isfinite(table).all():
        raise DataError("a prepared table must be a finite 2-D array")
    lines = [",".join(map(format_value, row)) for row in table.tolist()]
    return ("\n".join(lines) + "\n").encode("ascii")


@contextlib.contextmanager
def _directory_lock(directory: Path) -> Iterator[None]:
    """Serialise manifest updates between processes (best effort where fcntl is missing)."""
    with open(directory / ".manifest.lock", "a+b") as handle:
        try:
            import fcntl
        except ImportError:  # Windows: no advisory locks, updates are still atomic renames
            yield
            return
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _atomic_write(path: Path, payload: bytes, compress: bool) -> None:
    """Write ``payload`` (gzipped when ``compress``) over ``path`` atomically."""
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        if compress:
            # mtime=0 and no file name make the .gz bytes reproducible.
            with gzip.GzipFile(filename="", mode="wb", fileobj=handle, mtime=0) as gz:
                gz.write(payload)
        else:
            handle.write(payload)


def write_prepared(directory: Path, name: str, table: np.ndarray, source: str) -> dict:
    """Write ``table`` (N, D + 1) as ``directory/<name>.csv.gz`` and record it in the manifest.

    Returns the manifest entry. Both the data file and the manifest are replaced atomically.
    """
    payload = encode_table(table)
    entry = {
        "D": int(table.shape[1] - 1),
        "N": int(table.shape[0]),
        "file": default_file_name(name),
        "sha256_uncompressed": sha256_hex(payload),
        "source": source,
    }
    directory.mkdir(parents=True, exist_ok=True)
    with _directory_lock(directory):
        manifest = read_manifest(directory)
        _atomic_write(directory / entry["file"], payload, compress=True)
        manifest[name] = entry
        text = json.dumps(dict(sorted(manifest.items())), indent=1, sort_keys=True) + "\n"
        _atomic_write(directory / MANIFEST_NAME, text.encode("utf-8"), compress=False)
    return entry


def clear_table_cache() -> None:
    """Forget the parsed tables kept in memory (files are re-read and re-verified)."""
    _TABLE_CACHE.clear()
