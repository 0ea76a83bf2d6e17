"""The generated blocks of REPRODUCTION.md: their markers, how they are filled, the committed
files they read, and how their numbers are written."""

import re
from pathlib import Path
from typing import Dict, Optional

import numpy as np

REPORT_FILE = Path("reproduction") / "REPRODUCTION.md"
AUTHORS_CSV = Path("reproduction") / "authors" / "figure_data.csv"
#: The paper-length runs' evaluations (written by dgp_snr.campaign).
PAPER_RUNS_CSV = Path("reproduction") / "paper_runs" / "learning_curve.csv"
NOT_RECORDED = "not recorded"
_BLOCK = re.compile(
    r"(<!-- generated: (?P<name>[a-z0-9_]+) \(python experiments/report.py --markdown\) -->\n)"
    r"(?P<body>.*?)"
    r"(<!-- end: (?P=name) -->)",
    re.DOTALL,
)


def begin_marker(name: str) -> str:
    return f"<!-- generated: {name} (python experiments/report.py --markdown) -->"


def end_marker(name: str) -> str:
    return f"<!-- end: {name} -->"


def fill_blocks(text: str, blocks: Dict[str, str]) -> str:
    """`text` with the body of each named block replaced. Raises ValueError for a block that
    `text` lacks, or a block in `text` with no generator."""
    found = {m.group("name") for m in _BLOCK.finditer(text)}
    if set(blocks) - found:
        raise ValueError(f"the report has no markers for {sorted(set(blocks) - found)}")
    if found - set(blocks):
        raise ValueError(f"no generator for the report's blocks {sorted(found - set(blocks))}")

    def body(match: "re.Match[str]") -> str:
        return match.group(1) + blocks[match.group("name")] + match.group(4)

    return _BLOCK.sub(body, text)


def block_bodies(text: str) -> Dict[str, str]:
    return {m.group("name"): m.group("body") for m in _BLOCK.finditer(text)}


# ----------------------------------------------------------------------------- formatting
def fmt(value: float, digits: int = 3, sign: bool = True) -> str:
    if value is None or not np.isfinite(value):
        return "-"
    return f"{value:+.{digits}f}" if sign else f"{value:.{digits}f}"


def short_name(dataset: str) -> str:
    return dataset.replace("wilson_", "")


def order_agrees(ours: float, theirs: float) -> str:
    if not (np.isfinite(ours) and np.isfinite(theirs)):
        return "-"
    return "yes" if np.sign(ours) == np.sign(theirs) else "**no**"


def minutes(seconds: Optional[float]) -> str:
    if seconds is None:
        return "-"
    return f"{int(seconds // 60)} min {int(round(seconds % 60))} s"
