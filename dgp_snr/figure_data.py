"""The figure data files of Table 1 and Figure 4 (``<results_path>/figure_data/*.txt``).

Tab-separated text, one line per run: ``dataset  flag  split  value_1 ... value_R`` with flag T
or F (Figure 4: T = q(w) fixed to the prior; Table 1: T = DReG) and the R repeated estimates,
as the reference writes them. Each line is preceded by a comment recording what made it
(FigureDataRow.made: the run, the checkpoint step it was evaluated at, the samples per
estimate, the repeats and the seed), so a file evaluated at an older checkpoint or with other
settings is not taken as complete (protocol.jobs.EvalJob.complete). Readers of the reference's
format skip comments.
"""

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, List, Optional

import numpy as np

from dgp_snr.io import atomic_write_text

FIGURE_DATA_DIR = "figure_data"


@dataclass
class FigureDataRow:
    """One line of a figure data file: dataset, flag (Figure 4: fixq; Table 1: DReG), split and
    the repeated values [R]; `made`: what made them (MADE_FIELDS; None when not recorded)."""

    dataset: str
    flag: bool
    split: int
    values: np.ndarray
    made: Optional[Dict[str, object]] = None

    @property
    def mean(self) -> float:
        return float(np.mean(self.values))


def figure_data_path(results_path: os.PathLike, name: str) -> Path:
    """<results_path>/figure_data/<name>.txt"""
    return Path(results_path) / FIGURE_DATA_DIR / f"{name}.txt"


PREVIEW_MARKER = "PREVIEW: unfinished runs"
#: The comment before a data line that records what made it: "# made: {json}".
MADE_MARKER = "made:"
#: What a row's record holds: its run, the checkpoint step evaluated, S (samples per test
#: log-likelihood, or the run's K for the ELBO), the repeats R and the evaluation seed.
MADE_FIELDS = ("run", "step", "samples", "repeats", "seed")


def write_figure_data(
    path: os.PathLike, rows: Iterable[FigureDataRow], preview: bool = False
) -> Path:
    """Writes rows (tab-separated: dataset, T/F, split, values) atomically; `preview` marks the
    file (a comment line) as holding runs that had not reached the protocol's iterations."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [f"# {PREVIEW_MARKER}\n"] if preview else []
    for row in rows:
        if row.made is not None:
            lines.append(f"# {MADE_MARKER} {json.dumps(row.made, sort_keys=True)}\n")
        values = "\t".join(repr(float(v)) for v in np.atleast_1d(row.values))
        lines.append(f"{row.dataset}\t{'T' if row.flag else 'F'}\t{row.split}\t{values}\n")
    atomic_write_text(path, "".join(lines))
    return path


def read_figure_data(path: os.PathLike) -> List[FigureDataRow]:
    """Reads a figure data file (tabs or spaces); raises ValueError naming the file and line
    for a malformed line, FileNotFoundError when it does not exist."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"figure data file {path} does not exist")
    rows = []
    made: Optional[Dict[str, object]] = None  # the record of the next data line
    for number, line in enumerate(path.read_text().splitlines(), 1):
        comment = line.lstrip()
        if comment.startswith("#"):
            text = comment[1:].strip()
            if text.startswith(MADE_MARKER):
                try:
                    made = json.loads(text[len(MADE_MARKER) :])
                except ValueError:
                    made = None  # an unreadable record counts as none
            continue
        if not line.strip():
            continue
        cols = line.split()
        try:
            if len(cols) < 4:
                raise ValueError("expected: dataset, T/F, split, one or more values")
            if cols[1] not in ("T", "F"):
                raise ValueError(f"flag must be T or F, got {cols[1]!r}")
            values = np.array([float(v) for v in cols[3:]])
            record = made if isinstance(made, dict) else None
            rows.append(FigureDataRow(cols[0], cols[1] == "T", int(cols[2]), values, record))
            made = None
        except ValueError as err:
            raise ValueError(f"{path}, line {number}: malformed figure data ({err})") from None
    return rows


def figure_data_is_preview(path: os.PathLike) -> bool:
    """Whether a figure data file was written from unfinished runs (evaluate.py --preview)."""
    path = Path(path)
    return path.is_file() and any(
        line.strip() == f"# {PREVIEW_MARKER}" for line in path.read_text().splitlines()
    )
