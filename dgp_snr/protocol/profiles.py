"""Profiles: the paper's targets at the paper's settings (`paper`), at a budget that fits a
2-core CPU (`reduced`), and as tiny end-to-end runs (`smoke`, used by the tests); plus the
overrides (--iterations, --splits, --datasets, ...) that every script shares (their command
line: dgp_snr.sweep.cli.add_profile_arguments).

A profile maps each target to the parameters of its definition (dgp_snr.protocol.targets) and
of its figure function (dgp_snr.plotting), which take the same names.
"""

from dataclasses import dataclass, field, replace
from typing import Any, Dict, List, Mapping, Optional, Tuple

PROFILE_NAMES = ("paper", "reduced", "smoke")
#: Targets whose definition has a list of datasets / a number of splits (Table 1, Figure 4).
DATASET_TARGETS = ("figure_3", "figure_4", "figure_8", "table_1")
SPLIT_TARGETS = ("figure_4", "table_1")
SNR_TARGETS = ("figure_1", "figure_2", "figure_3", "figure_8", "figure_9")
#: The report-only target (dgp_snr.plotting.learning_curves; not a sweep target) and the
#: targets whose runs it shows, each with its own parameters under a profile.
LEARNING_CURVES = "learning_curves"
LEARNING_CURVE_TARGETS = ("table_1", "figure_4")


@dataclass(frozen=True)
class Profile:
    """A named set of target parameters. `common` goes to every target (iterations, settings:
    further flat RunConfig settings such as M); `targets` holds each target's own parameters;
    `reductions` says, for people, what differs from the paper."""

    name: str
    description: str
    common: Mapping[str, Any] = field(default_factory=dict)
    targets: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    reductions: Tuple[str, ...] = ()

    def params(self, target: str) -> Dict[str, Any]:
        """The keyword parameters of `target`'s definition and figure function. For
        'learning_curves' (no definition of its own): the common ones and `target_params`, the
        parameters of each of LEARNING_CURVE_TARGETS (whose runs it shows)."""
        out = dict(self.common)
        out.update(self.targets.get(target, {}))
        if target == LEARNING_CURVES:
            out["target_params"] = {t: self.params(t) for t in LEARNING_CURVE_TARGETS}
        if "settings" in out:
            out["settings"] = dict(out["settings"])
        return out

    def with_overrides(self, overrides: "Overrides") -> "Profile":
        """This profile with the command line's overrides applied to every target they fit."""
        common = dict(self.common)
        targets = {name: dict(values) for name, values in self.targets.items()}
        reductions = list(self.reductions)
        settings = dict(common.get("settings", {}))
        if overrides.iterations is not None:
            common["iterations"] = overrides.iterations
            reductions.append(f"--iterations {overrides.iterations}")
        if overrides.M is not None:
            settings["M"] = overrides.M
        if overrides.checkpoint_freq is not None:
            settings["checkpoint_freq"] = overrides.checkpoint_freq
        if overrides.precision is not None and overrides.precision != "float64":
            settings["precision"] = overrides.precision
            reductions.append(f"--precision {overrides.precision} (paper: float64)")
        if settings:
            common["settings"] = settings
        if overrides.splits is not None:
            for name in SPLIT_TARGETS:
                targets.setdefault(name, {})["splits"] = tuple(overrides.splits)
            reductions.append(f"--splits {','.join(map(str, overrides.splits))}")
        if overrides.datasets is not None:
            for name in DATASET_TARGETS:
                targets.setdefault(name, {})["datasets"] = tuple(overrides.datasets)
            reductions.append(f"--datasets {','.join(overrides.datasets)}")
        if overrides.num_estimates is not None:
            for name in SNR_TARGETS:
                targets.setdefault(name, {})["num_estimates"] = overrides.num_estimates
            reductions.append(f"--num_estimates {overrides.num_estimates}")
        return replace(self, common=common, targets=targets, reductions=tuple(reductions))


PAPER = Profile("paper", "the paper's settings exactly (300,000 iterations, 20 / 10 splits)")

#: Iterations of the reduced profile's runs (the paper's: 300,000).
REDUCED_ITERATIONS = 5000
REDUCED = Profile(
    "reduced",
    "the paper's targets at a 2-core CPU budget (estimated below, at most 8 hours in all)",
    common=dict(iterations=REDUCED_ITERATIONS),
    targets=dict(
        figure_1=dict(ks=(1, 5, 10, 20, 50, 100), num_datapoints=5, num_estimates=300),
        figure_2=dict(num_estimates=1000),
        figure_3=dict(depths=(1, 2, 3), ks=(1, 10, 100), num_datapoints=3, num_estimates=200),
        figure_4=dict(splits=2, num_predictive_samples=1000, test_repeats=3),
        # split-0 runs shared with Figure 4 and Table 1; winered stands in for winewhite
        figure_5=dict(
            panels=(("wilson_forest", 0, 2), ("winered", 0, 0)),
            num_predictive_samples=5000,
        ),
        table_1=dict(splits=3, num_predictive_samples=1000, test_repeats=3, elbo_repeats=3),
        figure_8=dict(num_estimates=200),
        figure_9=dict(batch_sizes=(1, 64, 256), ks=(1, 5, 10, 30, 50), num_estimates=200),
    ),
    reductions=(
        f"iterations: {REDUCED_ITERATIONS} per run (paper: 300,000)",
        "splits: Table 1 3 (paper 20), Figure 4 2 (paper 10)",
        "estimates: 200-300 gradient estimates per dump (paper 1,000; Figure 2 keeps 1,000); "
        "test log-likelihood 1,000 samples x 3 repeats (paper 10,000 x 10); ELBO 3 repeats",
        "K grids: Figure 1 K in 1, 5, 10, 20, 50, 100 over 5 points (paper 1, 5, ..., 100 over "
        "10); Figure 3 depths 1-3, K in 1, 10, 100 over 3 points (paper depths 1-4, K up to "
        "1000 over 10); Figure 9 batch sizes 1, 64, 256 and K in 1, 5, 10, 30, 50",
        "Figure 5: 5,000 predictive samples (paper 10,000); panels wilson_forest split 0 and "
        "winered split 0, whose runs Figure 4 trains (paper: wilson_forest and winewhite, "
        "split 2)",
    ),
)

_SMOKE_SNR = dict(ks=(1, 10), num_datapoints=2, num_estimates=20, aggregates=False)
_DEMO = ("demo_normalized",)
SMOKE = Profile(
    "smoke",
    "every target's whole pipeline on tiny runs (demo_normalized, depth 2, M = 8, 30 "
    "iterations); the runs are shared between targets",
    common=dict(iterations=30, settings=dict(M=8, num_predictive_samples=100, checkpoint_freq=10)),
    targets=dict(
        figure_1=dict(_SMOKE_SNR, depth=2),
        figure_2=dict(ks=(1, 10), num_estimates=20),
        figure_3=dict(_SMOKE_SNR, datasets=_DEMO, depths=(2,)),
        figure_4=dict(datasets=_DEMO, splits=1, num_predictive_samples=50, test_repeats=2),
        figure_5=dict(panels=(("demo_normalized", 0, 0),), num_predictive_samples=200),
        table_1=dict(
            datasets=_DEMO, splits=1, num_predictive_samples=50, test_repeats=2, elbo_repeats=2
        ),
        figure_8=dict(
            datasets=_DEMO,
            split=0,
            sampling_K=10,
            batch_size=8,
            num_estimates=20,
            aggregates=False,
        ),
        figure_9=dict(
            _SMOKE_SNR, batch_sizes=(1, 8), dataset="demo_normalized", depth=2, train_K=50
        ),
    ),
    reductions=(
        "iterations: 30 (paper 300,000); M = 8 inducing points (paper 128)",
        "datasets: demo_normalized only, depth 2, split 0 (one run per estimator / q(w))",
        "estimates: 20 raw gradient estimates at K = 1, 10 over 2 points; batch 8 for "
        "Figures 8 and 9; test log-likelihood 50 samples x 2",
    ),
)

PROFILES: Dict[str, Profile] = {p.name: p for p in (PAPER, REDUCED, SMOKE)}


@dataclass(frozen=True)
class Overrides:
    """Command-line changes to a profile; None: keep the profile's."""

    iterations: Optional[int] = None
    splits: Optional[Tuple[int, ...]] = None
    datasets: Optional[Tuple[str, ...]] = None
    M: Optional[int] = None
    #: R, gradient estimates per dump (SNR targets); --num_estimates on the command line.
    num_estimates: Optional[int] = None
    checkpoint_freq: Optional[int] = None
    precision: Optional[str] = None

    def argv(self) -> List[str]:
        """The same overrides as command-line arguments (for plot.py)."""
        out: List[str] = []
        flags = dict(
            iterations="iterations",
            M="M",
            num_estimates="num_estimates",
            checkpoint_freq="checkpoint_freq",
            precision="precision",
        )
        for name, flag in flags.items():
            value = getattr(self, name)
            if value is not None:
                out += [f"--{flag}", str(value)]
        if self.splits is not None:  # the trailing comma: "0," is split 0, "1" a count
            out += ["--splits", ",".join(map(str, self.splits)) + ","]
        if self.datasets is not None:
            out += ["--datasets", ",".join(self.datasets)]
        return out
