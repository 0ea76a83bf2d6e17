"""Files the project writes: strict JSON (null for non-finite numbers), atomic writes whose
failures name the path in one line, and the exclusive lock of a run folder."""

import contextlib
import errno
import json
import math
import os
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Any, Iterator, Optional, Type

import numpy as np

LOCK_FILE = ".lock"


class WriteError(OSError):
    """A file could not be written; the message names the path and the reason in one line."""

    def __str__(self) -> str:
        return self.strerror or super().__str__()


class RunLockedError(RuntimeError):
    """Another live process holds the run folder's lock."""


def strict_json_value(value: Any) -> Any:
    """`value` with numpy scalars and arrays as Python values and every non-finite float as
    None, so json.dumps(..., allow_nan=False) accepts it (bare NaN is not JSON)."""
    if isinstance(value, dict):
        return {str(k): strict_json_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json_value(v) for v in value]
    if isinstance(value, np.ndarray):
        return strict_json_value(value.tolist())
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return value if math.isfinite(value) else None
    return value


def dumps_strict(value: Any, **kwargs: Any) -> str:
    """json.dumps of strict_json_value(value); raises ValueError rather than write NaN."""
    return json.dumps(strict_json_value(value), allow_nan=False, **kwargs)


def _reason(err: OSError) -> str:
    return err.strerror or str(err)


@contextlib.contextmanager
def atomic_path(path: os.PathLike, mode: int = 0o644) -> Iterator[Path]:
    """The one way the project replaces a file: yields a fresh temporary path beside `path` for
    the caller to write; when the block succeeds the file is fsynced and renamed over `path`
    (a reader, or a crash, never sees half a file); when it fails the temporary file is removed
    and the error propagates. Creating, syncing or renaming fails with WriteError naming
    `path`."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
    except OSError as err:
        raise WriteError(err.errno, f"cannot write {path}: {_reason(err)}") from err
    tmp = Path(name)
    try:
        yield tmp
        try:
            with open(tmp, "rb+") as handle:
                os.fsync(handle.fileno())
            os.chmod(tmp, mode)  # mkstemp creates 0600
            os.replace(tmp, path)
        except OSError as err:
            raise WriteError(err.errno, f"cannot write {path}: {_reason(err)}") from err
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def atomic_write_bytes(path: os.PathLike, payload: bytes) -> None:
    """Writes `payload` to `path` atomically (see atomic_path). Raises WriteError naming
    `path`."""
    try:
        with atomic_path(path) as tmp:
            tmp.write_bytes(payload)
    except WriteError:
        raise
    except OSError as err:
        raise WriteError(err.errno, f"cannot write {path}: {_reason(err)}") from err


def atomic_write_text(path: os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def write_json(path: os.PathLike, value: Any, **kwargs: Any) -> None:
    """Strict JSON (null for non-finite numbers), written atomically."""
    atomic_write_text(path, dumps_strict(value, **kwargs))


def describe_write_error(err: OSError) -> str:
    """One line for a failed write (WriteError already says where)."""
    if isinstance(err, WriteError) or err.filename is None:
        return err.strerror or str(err)
    return f"cannot write {err.filename}: {_reason(err)}"


class RunLock:
    """An exclusive advisory lock (flock) on <run_dir>/.lock holding the owner's PID.

    The kernel releases it when the holder exits or dies, so a lock left by a killed process
    is never stale. Where flock is missing (Windows) the lock is a no-op."""

    def __init__(self, run_dir: os.PathLike):
        self.path = Path(run_dir) / LOCK_FILE
        self._handle: Optional[Any] = None

    def acquire(self) -> "RunLock":
        try:
            import fcntl
        except ImportError:
            return self
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            handle = open(self.path, "a+")
        except OSError as err:
            raise WriteError(err.errno, f"cannot write {self.path}: {_reason(err)}") from err
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            handle.close()
            if err.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise RunLockedError(
                    f"{self.path.parent} is in use by another process (PID {holder}); wait "
                    "for it to finish or stop it"
                ) from None
            raise
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self._handle = handle
        return self

    def release(self) -> None:
        if self._handle is not None:
            self._handle.close()  # closing the descriptor releases the flock
            self._handle = None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.release()
