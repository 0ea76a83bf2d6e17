"""Parsers for the original UCI file formats.

Each parser takes the path of a downloaded file and returns a float64 table (N, D + 1): the input
columns in their original order, then the target, rows in file order (the row order fixes the
splits). Column choices follow `bayesian_benchmarks`: first target for energy and naval, naval's
two constant inputs removed, protein's leading RMSD column is the target.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from .core import DataError


def _finite_table(values: object, path: Path | str) -> np.ndarray:
    try:
        table = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise DataError(f"{path}: non-numeric values ({error})") from error
    if table.ndim != 2 or table.shape[0] == 0 or table.shape[1] < 2:
        raise DataError(f"{path}: expected a table with rows and >= 2 columns, got {table.shape}")
    if not np.isfinite(table).all():
        raise DataError(f"{path}: missing or non-finite values")
    return table


def _whitespace_table(text: str, path: Path | str) -> np.ndarray:
    """Rows of whitespace-separated numbers; blank lines (e.g. a trailing one) are skipped."""
    rows = [line.split() for line in text.splitlines() if line.strip()]
    widths = {len(row) for row in rows}
    if len(widths) > 1:
        raise DataError(f"{path}: rows have different numbers of fields {sorted(widths)}")
    try:
        return _finite_table([[float(field) for field in row] for row in rows], path)
    except ValueError as error:
        raise DataError(f"{path}: non-numeric field ({error})") from error


def _read_text(path: Path) -> str:
    try:
        return path.read_bytes().decode("latin-1")
    except OSError as error:
        raise DataError(f"cannot read {path}: {error}") from error


def _read_csv(source: Path | io.BytesIO, label: Path | str, **kwargs) -> pd.DataFrame:
    try:
        return pd.read_csv(source, float_precision="round_trip", **kwargs)
    except (ValueError, OSError) as error:
        raise DataError(f"{label}: cannot parse as CSV ({error})") from error


def _read_excel(source: Path | io.BytesIO, label: Path | str, engine: str) -> pd.DataFrame:
    try:
        frame = pd.read_excel(source, sheet_name=0, engine=engine)
    except ImportError as error:
        raise DataError(f"{label}: reading it needs the package {engine!r} ({error})") from error
    except Exception as error:  # the engines raise many unrelated types on bad files
        raise DataError(f"{label}: cannot read as a spreadsheet ({error})") from error
    # Spreadsheets sometimes carry formatted but empty trailing rows and columns.
    return frame.dropna(axis=0, how="all").dropna(axis=1, how="all")


def _zip_member(path: Path, suffix: str) -> tuple[bytes, str]:
    """The bytes and name of the one member of zip ``path`` whose name ends with ``suffix``."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = [n for n in archive.namelist() if n.endswith(suffix)]
            if len(names) != 1:
                raise DataError(
                    f"{path}: expected one member ending in {suffix!r}, found {names} among "
                    f"{archive.namelist()}"
                )
            return archive.read(names[0]), names[0]
    except (zipfile.BadZipFile, OSError, EOFError) as error:
        raise DataError(f"{path} is not a readable zip archive ({error})") from error


def _target_last(table: np.ndarray, inputs: Sequence[int] | slice, target: int) -> np.ndarray:
    return np.hstack([table[:, inputs], table[:, [target]]])


def parse_whitespace(path: Path) -> np.ndarray:
    """Whitespace-separated table, target last (housing.data, yacht_hydrodynamics.data)."""
    return _whitespace_table(_read_text(path), path)


def parse_concrete(path: Path) -> np.ndarray:
    """Concrete_Data.xls (legacy Excel, needs ``xlrd``): header row, 8 inputs, then strength."""
    return _finite_table(_read_excel(path, path, engine="xlrd").to_numpy(), path)


def parse_energy(path: Path) -> np.ndarray:
    """ENB2012_data.xlsx: header X1..X8, Y1, Y2; the target is Y1 (heating load)."""
    table = _finite_table(_read_excel(path, path, engine="openpyxl").to_numpy(), path)
    if table.shape[1] != 10:
        raise DataError(f"{path}: expected 10 columns (X1..X8, Y1, Y2), got {table.shape[1]}")
    return table[:, :9]


def parse_naval(path: Path) -> np.ndarray:
    """UCI CBM Dataset.zip -> data.txt: 16 inputs, compressor decay, turbine decay.

    The target is compressor decay; inputs 8 and 11 (0-based) are constant and removed.
    """
    payload, member = _zip_member(path, "data.txt")
    label = f"{path}:{member}"
    table = _whitespace_table(payload.decode("latin-1"), label)
    if table.shape[1] != 18:
        raise DataError(f"{label}: expected 18 columns, got {table.shape[1]}")
    for column in (8, 11):
        if np.ptp(table[:, column]) != 0:
            raise DataError(f"{label}: input {column} should be constant; unknown file layout")
    inputs = [c for c in range(16) if c not in (8, 11)]
    return _target_last(table, inputs, 16)


def parse_power(path: Path) -> np.ndarray:
    """CCPP.zip -> Folds5x2_pp.xlsx, first sheet: AT, V, AP, RH, then PE."""
    payload, member = _zip_member(path, "Folds5x2_pp.xlsx")
    label = f"{path}:{member}"
    frame = _read_excel(io.BytesIO(payload), label, engine="openpyxl")
    return _finite_table(frame.to_numpy(), label)


def parse_protein(path: Path) -> np.ndarray:
    """CASP.csv: header RMSD, F1..F9; the target RMSD is the first column."""
    table = _finite_table(_read_csv(path, path).to_numpy(), path)
    return _target_last(table, slice(1, None), 0)


def parse_wine(path: Path) -> np.ndarray:
    """winequality-{red,white}.csv: ';'-separated with a header, quality last."""
    return _finite_table(_read_csv(path, path, sep=";").to_numpy(), path)
