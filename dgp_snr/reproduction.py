"""Small committed evidence of a reproduction: a target's figure data as a tidy CSV, the figure
drawn from that CSV, and how it was made (the log-log slopes of its SNR curves:
dgp_snr.slopes).

    <out_dir>/<target>/data.csv      the figure's tidy data (dgp_snr.plotting.TIDY_FIGURES)
    <out_dir>/<target>/<target>.png  drawn from data.csv as read back (and .pdf; table_1 also
                                     writes the table as table_1.txt and table_1.md)
    <out_dir>/<target>/meta.json     target, profile, sweep command, git commit of the code,
                                     wall time, date, the figure's parameters, and per run
                                     the commits, precision and wall time it trained with

Every figure in the folder can be redrawn from its CSV alone (`redraw`), which the default test
suite does for each committed one.
"""

import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Dict, List, Optional, TextIO

import pandas as pd

from dgp_snr.plotting import TIDY_FIGURES
from dgp_snr.source import CODE_FILES, code_version
from dgp_snr.training_record import read_training_record, summarize

DATA_FILE = "data.csv"
META_FILE = "meta.json"


def write_data(df: pd.DataFrame, path: os.PathLike) -> Path:
    """Writes a figure's frame as CSV (floats as their shortest exact repr, no index)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(path, index=False)
    return path


def read_data(path: os.PathLike) -> pd.DataFrame:
    """Reads a frame written by write_data; 'round_trip' parsing gives back the exact floats
    (pandas' default fast parser may be off by an ulp)."""
    return pd.read_csv(path, float_precision="round_trip")


def _figure(target: str):
    if target not in TIDY_FIGURES:
        raise ValueError(f"no tidy figure data for {target!r}; known: {sorted(TIDY_FIGURES)}")
    return TIDY_FIGURES[target]


def export_target(
    target: str,
    results_path: os.PathLike,
    out_dir: os.PathLike,
    *,
    profile_name: str,
    command: Optional[str],
    wall_time_s: Optional[float],
    out: Optional[TextIO] = None,
    **figure_params: Any,
) -> Path:
    """Collects `target`'s figure data from `results_path` (with the figure function's
    parameters, e.g. a profile's `params(target)`), writes <out_dir>/<target>/data.csv and
    meta.json, then draws <target>.png and .pdf from the CSV read back. Returns the target's
    folder. Raises plotting.MissingInputsError when none of its inputs exist; with partial
    inputs it exports what exists and meta.json lists the rest under "missing"."""
    figure = _figure(target)
    params = dict(figure_params)
    draw_options = {k: params.pop(k) for k in figure.draw_options if k in params}
    df, report = figure.collect(results_path, out=out, **params)
    target_dir = Path(out_dir) / target
    write_data(df, target_dir / DATA_FILE)
    meta = {
        "target": target,
        "runs": training_records(results_path, df),
        "profile": profile_name,
        "command": command,
        **code_version(CODE_FILES),  # dirty: the code, not results in the tree
        "wall_time_s": wall_time_s,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "results_path": str(results_path),
        "rows": len(df),
        "missing": list(report.missing),
        # tuples become lists; redraw turns the draw options back into tuples
        "figure_params": params,
        "draw_options": draw_options,
    }
    (target_dir / META_FILE).write_text(json.dumps(meta, indent=2, default=str) + "\n")
    redraw(target_dir, target_dir)
    return target_dir


def training_records(results_path: os.PathLike, df: pd.DataFrame) -> Dict[str, Dict[str, Any]]:
    """{run folder name: training_record.summarize of its sessions} for the run folders under
    `results_path` of the datasets in `df` (all of them when `df` has no dataset column): the
    commits, precisions and wall time of the runs a target's data came from."""
    datasets = set(df["dataset"]) if "dataset" in df.columns else None
    out = {}
    root = Path(results_path)
    for run_dir in sorted(root.iterdir()) if root.is_dir() else []:
        try:  # dataset is a top-level key in every version of config.json
            dataset = json.loads((run_dir / "config.json").read_text()).get("dataset")
        except (OSError, ValueError):
            continue
        if datasets is not None and dataset not in datasets:
            continue
        out[run_dir.name] = summarize(read_training_record(run_dir))
    return out


def redraw(target_dir: os.PathLike, figures_dir: os.PathLike) -> List[Path]:
    """Draws a target's figure from <target_dir>/data.csv alone (with meta.json's draw options
    when present) into <figures_dir>/<target>.pdf and .png; returns their paths. The target is
    meta.json's, else the folder's name."""
    target_dir = Path(target_dir)
    meta_path = target_dir / META_FILE
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    figure = _figure(meta.get("target", target_dir.name))
    options = {
        k: tuple(v) if isinstance(v, list) else v
        for k, v in meta.get("draw_options", {}).items()
        if k in figure.draw_options
    }
    return figure.draw(read_data(target_dir / DATA_FILE), figures_dir, **options)


def redraw_in_place(target_dir: os.PathLike) -> List[Path]:
    """Redraws a committed target's figure from its data.csv into its own folder (after the
    drawing code changed; the data stay as exported) and records who drew it in meta.json's
    "redrawn": the code version (commit; dirty: whether a tracked Python file differs from
    it) and the date. The export's own record
    (git_commit, date, ...) is kept: it names the code that collected the data."""
    target_dir = Path(target_dir)
    paths = redraw(target_dir, target_dir)
    meta_path = target_dir / META_FILE
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    meta["redrawn"] = {
        **code_version(CODE_FILES),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    meta_path.write_text(json.dumps(meta, indent=2, default=str) + "\n")
    return paths
