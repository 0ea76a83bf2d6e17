"""Small committed evidence of a reproduction: a target's figure data as a tidy CSV, the figure
drawn from that CSV, and how it was made; plus the log-log slope of SNR against K.

    <out_dir>/<target>/data.csv      the figure's tidy data (dgp_snr.plotting.TIDY_FIGURES)
    <out_dir>/<target>/<target>.png  drawn from data.csv as read back (and .pdf; table_1 also
                                     writes the table as table_1.txt and table_1.md)
    <out_dir>/<target>/meta.json     target, profile, sweep command, git commit of the code,
                                     wall time, date, the figure's parameters

Every figure in the folder can be redrawn from its CSV alone (`redraw`), which the default test
suite does for each committed one.
"""

import json
import os
import subprocess
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Dict, List, Optional, TextIO

import numpy as np
import pandas as pd
import scipy.stats

from dgp_snr.plotting import TIDY_FIGURES

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


def _git(*args: str) -> Optional[str]:
    """`git <args>` in the folder of the running code; None outside a repository."""
    try:
        done = subprocess.run(
            ["git", *args],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            check=False,
            timeout=30,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def code_version() -> Dict[str, Any]:
    """{'git_commit': HEAD of the running code's repository or None, 'git_dirty': whether its
    tracked files differ from that commit (None outside git)}."""
    commit = _git("rev-parse", "HEAD")
    status = _git("status", "--porcelain", "--untracked-files=no") if commit else None
    return {"git_commit": commit, "git_dirty": None if status is None else bool(status)}


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
        "profile": profile_name,
        "command": command,
        **code_version(),
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


# ------------------------------------------------------------------------------ slopes
@dataclass(frozen=True)
class SlopeFit:
    """log(mean SNR) = intercept + slope * log K, least squares over `num_ks` values of K; the
    `level` confidence interval is slope ± t_{n-2} * stderr."""

    estimator: str
    slope: float
    stderr: float
    ci_low: float
    ci_high: float
    intercept: float
    num_ks: int
    level: float

    def __str__(self) -> str:
        return (
            f"{self.estimator}: slope {self.slope:+.3f} "
            f"({100 * self.level:.0f}% CI [{self.ci_low:+.3f}, {self.ci_high:+.3f}], "
            f"{self.num_ks} values of K)"
        )


def mean_snr_by_k(df: pd.DataFrame, estimator: str) -> pd.Series:
    """K -> the mean of `snr` over the estimator's rows at that K (for figure_1's frame: over
    the encoder weight entries, each already averaged over data points), sorted by K."""
    rows = df[df["estimator"] == estimator]
    if rows.empty:
        raise ValueError(f"no rows for estimator {estimator!r}")
    return rows.groupby("K")["snr"].mean().sort_index()


def loglog_slope(
    df: pd.DataFrame, estimator: str, *, level: float = 0.95, **where: Any
) -> SlopeFit:
    """The least-squares slope of log(mean SNR over parameters) against log K for `estimator`
    in an SNR-vs-K frame (columns estimator, K, snr; e.g. figure_1_data's), with its `level`
    confidence interval from the regression's standard error and Student's t with n - 2
    degrees of freedom. Theory (Rudner et al.): about -1/2 for REG, +1/2 for DReG. Needs at
    least 3 values of K and positive means. `where` keeps the rows whose columns equal the
    given values (e.g. batch_size=1 for figure_9's frame, dataset=..., depth=... for
    figure_3's)."""
    for column, value in where.items():
        df = df[df[column] == value]
    means = mean_snr_by_k(df, estimator)
    if len(means) < 3:
        raise ValueError(f"{estimator}: {len(means)} values of K; a slope's CI needs at least 3")
    if not np.all(means.to_numpy() > 0):
        raise ValueError(f"{estimator}: a mean SNR is not positive; no log-log fit")
    fit = scipy.stats.linregress(np.log(means.index.to_numpy(float)), np.log(means.to_numpy()))
    half = scipy.stats.t.ppf(0.5 + level / 2, len(means) - 2) * fit.stderr
    return SlopeFit(
        estimator,
        float(fit.slope),
        float(fit.stderr),
        float(fit.slope - half),
        float(fit.slope + half),
        float(fit.intercept),
        len(means),
        level,
    )
