"""The log-log slope of the mean SNR against K, over the K ranges declared before fitting
(SLOPE_RANGES), with its confidence interval: theory (Rudner et al.) says about -1/2 for REG
and +1/2 for DReG. The SNR figures (dgp_snr.plotting), experiments/report.py and
REPRODUCTION.md's tables (dgp_snr.report) fit them here.
"""

import math
from dataclasses import dataclass
from typing import Any, Dict, List, Sequence, Tuple

import numpy as np
import pandas as pd
import scipy.stats

#: The estimators the SNR figures compare, in their order (dgp_snr.plotting's ESTIMATORS).
COMPARED_ESTIMATORS = ("reg", "dreg")


@dataclass(frozen=True)
class KRange:
    """The values of K a slope is fitted over: `k_min` <= K <= `k_max`."""

    name: str
    k_min: float = 0.0
    k_max: float = math.inf

    def select(self, ks: Sequence[float]) -> List[float]:
        return [k for k in ks if self.k_min <= k <= self.k_max]


#: Every slope's range of K, declared here before any fit was seen (issue 19), never chosen
#: per target: the whole range, and K >= 10 (the theory's ±1/2 is a large-K limit; at K = 1
#: REG and DReG are the same estimator in expectation).
ALL_K = KRange("all K")
LARGE_K = KRange("K >= 10", k_min=10)
SLOPE_RANGES: Tuple[KRange, ...] = (ALL_K, LARGE_K)
#: The fewest values of K a slope is fitted from: its interval has n - 2 degrees of freedom.
MIN_SLOPE_KS = 3
#: What a range with fewer than MIN_SLOPE_KS values of K reports instead of an interval.
TOO_FEW_POINTS = "too few points"


@dataclass(frozen=True)
class SlopeFit:
    """log(mean SNR) = intercept + slope * log K, least squares over the `num_ks` values of K
    `ks` in `k_range`; the `level` confidence interval is slope ± t_{n-2} * stderr. With fewer
    than MIN_SLOPE_KS values of K nothing is fitted (`too_few`; the numbers are NaN)."""

    estimator: str
    slope: float
    stderr: float
    ci_low: float
    ci_high: float
    intercept: float
    num_ks: int
    level: float
    k_range: str = ALL_K.name
    ks: Tuple[float, ...] = ()

    @property
    def too_few(self) -> bool:
        return self.num_ks < MIN_SLOPE_KS

    @property
    def dof(self) -> int:
        """The t distribution's degrees of freedom (n - 2)."""
        return self.num_ks - 2

    def describe_ks(self) -> str:
        """'1-100, 6 values of K'."""
        if not self.ks:
            return f"{self.num_ks} values of K"
        lo, hi = min(self.ks), max(self.ks)
        span = f"K = {lo:g}" if lo == hi else f"K = {lo:g}-{hi:g}"
        return f"{span}, {self.num_ks} value{'s' if self.num_ks != 1 else ''}"

    def __str__(self) -> str:
        where = f"{self.estimator}, {self.k_range} ({self.describe_ks()})"
        if self.too_few:
            return f"{where}: {TOO_FEW_POINTS} (a slope needs {MIN_SLOPE_KS} values of K)"
        return (
            f"{where}: slope {self.slope:+.3f} "
            f"({100 * self.level:.0f}% CI [{self.ci_low:+.3f}, {self.ci_high:+.3f}], "
            f"t with {self.dof} df)"
        )


def mean_snr_by_k(df: pd.DataFrame, estimator: str) -> pd.Series:
    """K -> the mean of `snr` over the estimator's rows at that K (for figure_1's frame: over
    the encoder weight entries, each already averaged over data points), sorted by K."""
    rows = df[df["estimator"] == estimator]
    if rows.empty:
        raise ValueError(f"no rows for estimator {estimator!r}")
    return rows.groupby("K")["snr"].mean().sort_index()


def loglog_slope(
    df: pd.DataFrame,
    estimator: str,
    *,
    level: float = 0.95,
    k_range: KRange = ALL_K,
    **where: Any,
) -> SlopeFit:
    """The least-squares slope of log(mean SNR over parameters) against log K for `estimator`
    in an SNR-vs-K frame (columns estimator, K, snr; e.g. figure_1_data's) over the values of
    K in `k_range`, with its `level` confidence interval from the regression's standard error
    and Student's t with n - 2 degrees of freedom. Theory (Rudner et al.): about -1/2 for REG,
    +1/2 for DReG. With fewer than MIN_SLOPE_KS values of K it returns a fit that reports
    TOO_FEW_POINTS (NaN numbers), not an interval; a mean SNR that is not positive raises
    ValueError. `where` keeps the rows whose columns equal the given values (e.g.
    batch_size=1 for figure_9's frame, dataset=..., depth=... for figure_3's)."""
    for column, value in where.items():
        df = df[df[column] == value]
    means = mean_snr_by_k(df, estimator)
    means = means[means.index.isin(k_range.select(list(means.index)))]
    ks = tuple(float(k) for k in means.index)
    if len(means) < MIN_SLOPE_KS:
        nan = float("nan")
        return SlopeFit(estimator, nan, nan, nan, nan, nan, len(means), level, k_range.name, ks)
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
        k_range.name,
        ks,
    )


def slope_fits(
    df: pd.DataFrame, estimator: str, *, level: float = 0.95, **where: Any
) -> List[SlopeFit]:
    """The fits over the declared SLOPE_RANGES, whole range first. A narrower range is left out
    where it holds no value of K or the same ones as the whole range; with fewer than
    MIN_SLOPE_KS values of K a range reports TOO_FEW_POINTS (so a reader sees it was declared
    and not fitted). `where` as loglog_slope's."""
    fits = [loglog_slope(df, estimator, level=level, k_range=ALL_K, **where)]
    for k_range in SLOPE_RANGES:
        if k_range == ALL_K:
            continue
        fit = loglog_slope(df, estimator, level=level, k_range=k_range, **where)
        if fit.num_ks and fit.ks != fits[0].ks:
            fits.append(fit)
    return fits


#: The columns that tell the curves of an SNR-vs-K frame apart (figure 3's datasets and
#: depths, figure 9's batch sizes).
CURVE_COLUMNS = ("dataset", "depth", "batch_size")


def curve_slopes(
    df: pd.DataFrame, *, level: float = 0.95, estimators: Sequence[str] = COMPARED_ESTIMATORS
) -> List[Tuple[Dict[str, Any], SlopeFit]]:
    """(curve, fit) for every curve of an SNR-vs-K frame (columns estimator, K, snr), estimator
    and declared range (slope_fits): `curve` maps the CURVE_COLUMNS that vary in the frame to
    the curve's values, in the frame's order."""
    by = [c for c in CURVE_COLUMNS if c in df and df[c].nunique() > 1]
    groups = df.groupby(by, sort=False) if by else [((), df)]
    out = []
    for key, group in groups:
        key = key if isinstance(key, tuple) else (key,)
        curve = {c: v.item() if hasattr(v, "item") else v for c, v in zip(by, key)}
        for estimator in estimators:
            if estimator in set(group["estimator"]):
                out += [(curve, fit) for fit in slope_fits(group, estimator, level=level)]
    return out
