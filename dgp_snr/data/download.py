"""Downloading original files from the UCI Machine Learning Repository (stdlib urllib only).

Every download goes through :func:`download`, and every UCI address is built by :func:`uci_url`
from :func:`uci_base_url`, which honours ``$DGP_SNR_UCI_URL`` (a mirror, or a local server in
the tests).
"""

from __future__ import annotations

import contextlib
import http.client
import os
import urllib.error
import urllib.request
from pathlib import Path

from dgp_snr.io import WriteError, atomic_path

from .core import DataError

UCI_BASE_URL = "https://archive.ics.uci.edu/ml/machine-learning-databases/"
UCI_URL_ENV = "DGP_SNR_UCI_URL"
DOWNLOAD_TIMEOUT_S = 60.0
_CHUNK_BYTES = 1 << 20


def uci_base_url() -> str:
    """``$DGP_SNR_UCI_URL`` if set, else :data:`UCI_BASE_URL`."""
    return os.environ.get(UCI_URL_ENV, "").strip() or UCI_BASE_URL


def uci_url(relative_path: str) -> str:
    """The address of a file given by its path below the UCI repository's root."""
    return uci_base_url().rstrip("/") + "/" + relative_path.lstrip("/")


def download(url: str, destination: Path, timeout: float = DOWNLOAD_TIMEOUT_S) -> int:
    """Download ``url`` to ``destination``; returns the number of bytes.

    The bytes go to a temporary file beside ``destination`` and are renamed only when complete
    (the length announced by the server, if any, is checked), so a failure leaves no file
    behind.
    """
    request = urllib.request.Request(url, headers={"User-Agent": "dgp-snr-data"})
    try:
        with atomic_path(destination) as partial, urllib.request.urlopen(
            request, timeout=timeout
        ) as response, open(partial, "wb") as handle:
            expected = response.headers.get("Content-Length")
            expected = int(expected) if expected and expected.isdigit() else None
            received = 0
            with _progress(expected, destination.name) as bar:
                while chunk := response.read(_CHUNK_BYTES):
                    handle.write(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
            if expected is not None and received != expected:
                raise DataError(
                    f"incomplete download of {url}: got {received} of {expected} bytes"
                )
        return received
    except (DataError, WriteError):
        raise
    except urllib.error.HTTPError as error:
        raise DataError(f"download of {url} failed: HTTP {error.code} {error.reason}") from error
    except http.client.IncompleteRead as error:
        raise DataError(
            f"incomplete download of {url}: the connection closed after "
            f"{len(error.partial)} bytes of a chunk"
        ) from error
    except (urllib.error.URLError, http.client.HTTPException, OSError) as error:
        reason = getattr(error, "reason", error)
        raise DataError(
            f"download of {url} failed: {reason} (offline? point DGP_SNR_DATA at a folder with "
            "the data files; `dgp-snr-data list` shows where each set is looked for)"
        ) from error


class _NoProgress:
    def update(self, _: int) -> None:
        pass


@contextlib.contextmanager
def _progress(total: int | None, label: str):
    try:
        from tqdm.auto import tqdm
    except ImportError:
        yield _NoProgress()
        return
    # disable=None: draw the bar only on a terminal, keep logs and test output clean.
    with tqdm(total=total, unit="B", unit_scale=True, desc=label, disable=None) as bar:
        yield bar
