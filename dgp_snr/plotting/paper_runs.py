"""The paper-length runs' learning curves (dgp_snr.campaign): the protocol's test
log-likelihood at each evaluated step, the in-training log between them, and the authors'
released value for the same split as a dashed line."""

import os
from pathlib import Path
from typing import Dict, List

import numpy as np
import pandas as pd
from matplotlib import pyplot as plt

from dgp_snr.plotting.common import _save, _setup_style
from dgp_snr.protocol import PAPER_ITERATIONS

#: Colours per (estimator, q(w)), as the learning-curves figure of the reduced runs.
_COLORS = {("reg", "learned"): "#1f77b4", ("dreg", "learned"): "#ff7f0e"}
_COLORS[("reg", "fixed")] = "#2ca02c"
_LABELS = {("reg", "learned"): "REG", ("dreg", "learned"): "DReG"}
_LABELS[("reg", "fixed")] = "REG, q(w) fixed"
LOG_TAG = "test/test_loglik"
#: Logged values per running median of the training log's line.
LOG_MEDIAN = 9
#: Nats shown below the lowest evaluation or authors' value (the training log may go lower).
LOG_MARGIN = 3.0


def draw_paper_runs(
    curve: pd.DataFrame, scalars: Dict[str, pd.DataFrame], out_dir: os.PathLike
) -> List[Path]:
    """learning_curve.pdf/.png: one panel per dataset and split; per run, the protocol's
    evaluations (mean ± 2 SE over repeats), the training log's 100-sample test log-likelihood
    (thin line: running median of LOG_MEDIAN logged values, cut at LOG_MARGIN below the
    evaluations) and the authors' value (dashed)."""
    _setup_style()
    panels = curve[["dataset", "split"]].drop_duplicates().itertuples(index=False)
    panels = list(panels)
    fig, axes = plt.subplots(1, max(1, len(panels)), figsize=(6.5 * max(1, len(panels)), 4.2))
    axes = np.atleast_1d(axes)
    for ax, (dataset, split) in zip(axes, panels):
        rows = curve[(curve["dataset"] == dataset) & (curve["split"] == split)]
        for run, df in rows.groupby("run", sort=True):
            key = (df["estimator"].iloc[0], df["qw"].iloc[0])
            color, label = _COLORS.get(key, "k"), _LABELS.get(key, run)
            # The paper's seed is the split; another seed is the same setting, drawn apart.
            seed = int(df["seed"].iloc[0]) if "seed" in df else split
            other_seed = seed != split
            if other_seed:
                label += f", seed {seed}"
            log = scalars.get(run)
            if log is not None and not log.empty:
                # The 100-sample log is heavy-tailed (the off-mode points): a running median.
                log = log[log["tag"] == LOG_TAG].sort_values("step")
                smooth = log["value"].rolling(LOG_MEDIAN, center=True, min_periods=1).median()
                ax.plot(
                    log["step"], smooth, color=color, lw=0.8, alpha=0.5,
                    ls=":" if other_seed else "-",
                )  # fmt: skip
            ax.errorbar(
                df["step"], df["test_ll_mean"], yerr=2 * df["test_ll_se"].fillna(0),
                color=color, marker="s" if other_seed else "o", ms=4, lw=1.4, capsize=3,
                label=label, ls=":" if other_seed else "-", mfc="white" if other_seed else color,
            )  # fmt: skip
            reference = df["authors_test_ll"].dropna()
            if not reference.empty and not other_seed:
                ax.axhline(reference.iloc[0], color=color, ls="--", lw=1)
        # The 100-sample training log dips far below the evaluations; keep those in view.
        anchors = pd.concat([rows["test_ll_mean"], rows["authors_test_ll"]]).dropna()
        if not anchors.empty:
            ax.set_ylim(anchors.min() - LOG_MARGIN, anchors.max() + 0.5)
        ax.set_xscale("log")
        ax.set_xlabel("iteration")
        ax.set_ylabel("test log-likelihood")
        precision = ", ".join(sorted(rows["precision"].unique()))
        ax.set_title(f"{dataset} split {split} ({precision} precision)")
        ax.set_xlim(800, 1.1 * PAPER_ITERATIONS)
        legend = ax.legend(
            loc="lower right", fontsize=8, title_fontsize=8, ncol=3,
            title=(
                "dots: 10 x 10,000 samples; lines: training log (100 samples, running median "
                f"of {LOG_MEDIAN}); dashed: authors'"
            ),
        )  # fmt: skip
        legend.get_frame().set_alpha(0.9)
    fig.tight_layout()
    return _save(fig, "learning_curve", out_dir)
