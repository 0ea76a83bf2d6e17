"""What every figure shares: the style and saving, the report of missing inputs (the commands
that make them), and the one collect -> draw template (TidyFigure) that every figure follows.

A figure is a TidyFigure: `collect(results_path, **params) -> (tidy DataFrame, FigureReport)`
gathers its inputs (printing the commands for the missing ones first; MissingInputsError when
nothing exists) and `draw(df, figures_dir, **draw_options) -> [paths]` draws that frame alone,
so dgp_snr.reproduction can commit the frame as CSV and redraw the figure from it.
`TidyFigure.make` does both in turn; `TidyFigure.function` builds the public `figure_N(...)`:
(results path, figures folder, then keyword-only the collect parameters and draw options).

A target's parameters are defined once, by its definition in dgp_snr.protocol.targets: a
figure's collect function is marked `@target_data(name)`, takes them as keyword arguments
(`**params`, passed on by name to the definition) and reads them back from the spec the
definition returns (TargetSpec.params); its signature shows them, keyword-only, with the
definition's defaults. Nothing after the results path is positional, so a reordering of a
definition's parameters cannot rebind an argument.

A figure is drawn only from inputs that match what it asks: a gradient dump whose record
(gradient_dumps.DumpRequest: step = the run's newest checkpoint, K, batch, data point,
estimator, number of estimates, seed, precision) differs, or that is corrupt, stops it with
StaleInputsError (one line naming the file, what it holds, what was asked and the command
that rebuilds it). `make` writes the identity of each input (protocol.jobs.file_record: path
relative to the figures folder, sha256, a dump's record) to <figures_dir>/<name>.inputs.json
beside the figure, which the sweep compares with the current inputs to decide whether the
figure is up to date.
"""

import inspect
import os
import shutil
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, TextIO, Tuple, TypeVar

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from dgp_snr.gradient_dumps import dump_problem, requested_step
from dgp_snr.plotting.dumps import find_dump
from dgp_snr.protocol import targets as protocol_targets
from dgp_snr.protocol.jobs import figure_record_path, write_figure_record
from dgp_snr.runs import RunConfig, latest_checkpoint_step
from dgp_snr.slopes import COMPARED_ESTIMATORS

FIGURES_DIR = "figures"

ESTIMATORS = COMPARED_ESTIMATORS
LABELS = {"reg": "REG", "dreg": "DReG"}
COLORS = {"reg": "#1f77b4", "dreg": "#ff7f0e", "fixq": "#2ca02c"}
FIT_COLOR = "#b2182b"


class MissingInputsError(RuntimeError):
    """Nothing of a figure can be drawn: its inputs are missing (the commands were printed)."""


class StaleInputsError(ValueError):
    """An input of a figure is corrupt or was made with other settings than the figure asks
    (e.g. a dump of an older checkpoint): the figure is not drawn. One line: the file, what it
    holds, what was asked and the command that rebuilds it."""


@dataclass
class FigureReport:
    """What a figure function did: the commands for its missing inputs, a description of each
    missing input, the files it wrote, (table_1) the printed table, and `inputs`: the identity
    of each input it was drawn from (protocol.jobs.file_record, read before the inputs were;
    None when not known)."""

    name: str
    commands: List[str] = field(default_factory=list)
    missing: List[str] = field(default_factory=list)
    outputs: List[Path] = field(default_factory=list)
    text: Optional[str] = None
    inputs: Optional[List[Dict[str, Any]]] = None


# ------------------------------------------------------------------------------ style
def _setup_style() -> None:
    usetex = shutil.which("latex") is not None
    plt.rcParams.update(
        {
            "text.usetex": usetex,
            "font.family": "serif",
            "font.size": 11,
            "axes.labelsize": 11,
            "axes.titlesize": 11,
            "legend.fontsize": 9,
            "lines.linewidth": 1.6,
            "grid.linestyle": "--",
            "grid.linewidth": 0.5,
            "grid.color": "0.7",
            "savefig.bbox": "tight",
        }
    )


def _label(dataset: str) -> str:
    """A short, TeX-safe dataset label ('wilson_forest' -> 'forest')."""
    return dataset.replace("wilson_", "").replace("_normalized", "").replace("_", " ")


def _save(fig: "plt.Figure", name: str, figures_dir: os.PathLike) -> List[Path]:
    figures_dir = Path(figures_dir)
    figures_dir.mkdir(parents=True, exist_ok=True)
    paths = [figures_dir / f"{name}.pdf", figures_dir / f"{name}.png"]
    fig.savefig(paths[0])
    fig.savefig(paths[1], dpi=150)
    plt.close(fig)
    return paths


def _in_order(values: pd.Series) -> List[Any]:
    """The distinct values in their first rows' order (the collection order)."""
    return list(pd.unique(values))


def _missing_panel(ax: "plt.Axes") -> None:
    ax.text(0.5, 0.5, "missing", ha="center", va="center", transform=ax.transAxes)
    ax.set_yticks([])


def _depth(config: RunConfig) -> int:
    """'L1' -> 1, 'L1_G5' -> 2, ... (protocol.configuration_for_depth's inverse)."""
    return len(config.model.configuration.split("_"))


# ------------------------------------------------------------------------------ log-log axes
#: How the theory's slopes (Rudner et al.: REG -1/2, DReG +1/2) are drawn.
REFERENCE_STYLE = dict(color="0.45", linestyle=":", lw=1.2)


def _reference_lines(
    ax: "plt.Axes",
    k_lo: float,
    k_hi: float,
    snr_at_lo: float,
    slopes: Sequence[float] = (-0.5, 0.5),
    **style: Any,
) -> List["matplotlib.lines.Line2D"]:
    """Lines SNR = snr_at_lo (K / k_lo)^slope from k_lo to k_hi: the theory's slopes, started
    at a measured value (at the smallest K, where REG and DReG agree in expectation)."""
    ks = np.geomspace(k_lo, k_hi, 50)
    style = {**REFERENCE_STYLE, **style}
    return [ax.plot(ks, snr_at_lo * (ks / k_lo) ** a, **style)[0] for a in slopes]


def _integer_log_ticks(ax: "plt.Axes", ks: Sequence[int]) -> None:
    """A log x axis with plain integer ticks: at the data's values of K when they are few
    (one closer than a factor 1.5 to the previous is left out, as their labels would touch),
    else at 1, 2, 5, 10, 20, ... within their range."""
    ax.set_xscale("log")
    ks = sorted(int(k) for k in ks)
    if len(ks) > 6:
        nice = [m * 10**e for e in range(5) for m in (1, 2, 5)]
        ticks = [k for k in nice if ks[0] <= k <= ks[-1]]
    else:
        ticks = []
        for k in ks:
            if ticks and k < 1.5 * ticks[-1]:
                if k != ks[-1]:
                    continue
                ticks.pop()  # the largest K keeps its tick
            ticks.append(k)
    ax.set_xticks(ticks)
    ax.get_xaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax.get_xaxis().set_minor_formatter(matplotlib.ticker.NullFormatter())


# ------------------------------------------------------------------------------ commands
class _Needs:
    """Collects a figure's missing inputs (for the report); the commands that make them are
    those of the target's definition (protocol.targets) whose outputs are missing, the same jobs
    experiments/sweep.py runs."""

    def __init__(self, name: str, spec: protocol_targets.TargetSpec):
        self.name = name
        self.spec = spec
        self.missing: List[str] = []
        self._run_ok: Dict[str, bool] = {}
        self._steps: Dict[str, int] = {}
        #: (reason, job, K) of each dump found but not matching the request (or corrupt)
        self.stale: List[Tuple[str, Any, int]] = []

    def has_run(self, config: RunConfig) -> bool:
        name = config.run_name
        if name not in self._run_ok:
            self._run_ok[name] = latest_checkpoint_step(config.run_dir()) is not None
        return self._run_ok[name]

    def run(self, config: RunConfig) -> bool:
        """Whether the run has a checkpoint; otherwise records it as missing."""
        if self.has_run(config):
            return True
        description = f"run {config.run_name} (no checkpoint)"
        if description not in self.missing:
            self.missing.append(description)
        return False

    def dump(
        self,
        config: RunConfig,
        estimator: str,
        *,
        batch_size: int,
        K: int,
        datapoint: Optional[int],
        raw: bool,
    ) -> Optional[Path]:
        """The dump's path when it exists (an aggregate or, unless `raw` is needed, a raw one)
        and its record matches the target's sampling job at the run's newest checkpoint;
        otherwise None, recording either the run's training (if needed) and the sampling
        command, or (a dump that does not match, or is corrupt) why, for report() to refuse."""
        path = find_dump(config.run_dir(), estimator, batch_size, K, datapoint, raw)
        if path is not None:
            job = self._job(config, estimator, batch_size)
            if job is None:  # no sampling job asks for it: nothing to compare with
                return path
            if config.run_name not in self._steps:
                self._steps[config.run_name] = requested_step(config)
            step = self._steps[config.run_name]
            problem = dump_problem(path, job.request(K, datapoint, step))
            if problem is None:
                return path
            self.stale.append((problem, job, K))
            return None
        self.run(config)
        where = f"data point {datapoint}" if datapoint is not None else f"batch {batch_size}"
        self.missing.append(
            f"{'raw ' if raw else ''}gradient dump {config.run_name} {estimator} "
            f"batch {batch_size} K={K} {where}"
        )
        return None

    def _job(
        self, config: RunConfig, estimator: str, batch_size: int
    ) -> Optional[protocol_targets.SampleJob]:
        for job in self.spec.samples:
            if (job.config.run_name, job.estimator, job.batch_size) == (
                config.run_name,
                estimator,
                batch_size,
            ):
                return job
        return None

    def data(self, description: str) -> None:
        self.missing.append(description)

    def commands(self) -> List[str]:
        return self.spec.pending_commands()

    def refuse_stale(self) -> None:
        """Raises StaleInputsError for the first dump that does not match (and how many
        more), with the sampling commands that rebuild them (each job's Ks concerned)."""
        if not self.stale:
            return
        jobs: Dict[int, Tuple[Any, List[int]]] = {}
        for _, job, K in self.stale:
            ks = jobs.setdefault(id(job), (job, []))[1]
            if K not in ks:
                ks.append(K)
        commands = [
            replace(job, ks=tuple(sorted(ks))).command() + " --rebuild"
            for job, ks in jobs.values()
        ]
        more = f" (and {len(self.stale) - 1} more)" if len(self.stale) > 1 else ""
        raise StaleInputsError(f"{self.stale[0][0]}{more}; to rebuild: {' && '.join(commands)}")

    def report(self, out: Optional[TextIO]) -> FigureReport:
        """Refuses stale inputs (StaleInputsError); prints the commands (the first thing every
        figure prints) and starts the report, with the identity of every input as it is
        now, before the figure reads them (a later change then shows as a mismatch)."""
        self.refuse_stale()
        out = sys.stdout if out is None else out
        commands = self.commands()
        if commands:
            print(f"#### {self.name}: commands to create the missing inputs ####", file=out)
            for command in commands:
                print(command, file=out)
            print("#### end of commands ####", file=out)
        else:
            print(f"#### {self.name}: all inputs present ####", file=out)
        out.flush()
        return FigureReport(
            self.name, commands, list(self.missing), inputs=self.spec.input_records()
        )


def _finish(report: FigureReport, out: Optional[TextIO]) -> FigureReport:
    out = sys.stdout if out is None else out
    if report.outputs:
        print(f"{report.name}: wrote {', '.join(str(p) for p in report.outputs)}", file=out)
    if report.missing:
        print(
            f"{report.name}: drawn from partial data; {len(report.missing)} input(s) missing "
            "(the commands above create them)",
            file=out,
        )
    return report


def _nothing(report: FigureReport, results_path: os.PathLike) -> MissingInputsError:
    return MissingInputsError(
        f"{report.name}: none of its inputs exist under {results_path}; run the "
        f"{len(report.commands)} command(s) printed above first"
    )


# ------------------------------------------------------------------------------ template
Collect = TypeVar("Collect", bound=Callable[..., Tuple[pd.DataFrame, FigureReport]])


def target_data(target: str) -> Callable[[Collect], Collect]:
    """Marks `<name>_data(results_path, *, <the figure's own options>, **params)` as taking
    the parameters of the target's definition (protocol.targets.TARGETS[target]) as `params`:
    its signature becomes results_path, then keyword-only the definition's parameters (names,
    defaults, annotations: the one list of them) and the figure's own options. The function
    passes `params` by name to the definition and reads them from the spec
    (TargetSpec.params). A figure option named as a definition's parameter fails here."""

    def mark(collect: Collect) -> Collect:
        own = list(inspect.signature(collect).parameters.values())
        head = [p for p in own if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD]
        options = [p for p in own if p.kind is inspect.Parameter.KEYWORD_ONLY]
        if len(head) != 1 or len(head) + len(options) + 1 != len(own):
            raise TypeError(f"{collect.__name__}: (results_path, *, options..., **params) needed")
        defined = list(inspect.signature(protocol_targets.TARGETS[target]).parameters.values())
        params = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in defined[1:]]
        signature = inspect.signature(collect)
        collect.__signature__ = signature.replace(  # type: ignore[attr-defined]
            parameters=head + params + options
        )
        collect.target = target  # type: ignore[attr-defined]
        return collect

    return mark


@dataclass(frozen=True)
class TidyFigure:
    """A figure split into `collect` (results path and the figure's parameters -> tidy
    DataFrame and report; raises MissingInputsError when nothing exists) and `draw` (DataFrame,
    figures folder and the `draw_options` -> written paths), for dgp_snr.reproduction.

    `text`: for a table, the frame -> the text that the figure function prints and puts in
    its report."""

    name: str
    collect: Callable[..., Tuple[pd.DataFrame, FigureReport]]
    draw: Callable[..., List[Path]]
    draw_options: Tuple[str, ...] = ()
    text: Optional[Callable[[pd.DataFrame], str]] = None

    def make(
        self, results_path: os.PathLike, figures_dir: os.PathLike, **params: Any
    ) -> FigureReport:
        """Collects the inputs (printing the commands for the missing ones; raises
        MissingInputsError when none exist), prints the text of a table, draws and saves the
        figure into `figures_dir`, and prints what was written and what is missing."""
        out = params.get("out")
        draw_options = {k: params.pop(k) for k in self.draw_options if k in params}
        df, report = self.collect(results_path, **params)
        # Gone while drawing: a figure interrupted half-way is never taken as up to date.
        record = figure_record_path(figures_dir, self.name)
        record.unlink(missing_ok=True)
        if self.text is not None:
            report.text = self.text(df)
            print(report.text, file=sys.stdout if out is None else out)
        report.outputs = self.draw(df, figures_dir, **draw_options)
        if report.inputs is not None:
            write_figure_record(figures_dir, self.name, report.inputs)
        return _finish(report, out)

    def signature(self) -> inspect.Signature:
        """(results_path, figures_dir, *, collect's other parameters, the draw options): the
        figure function's signature."""
        collect = list(inspect.signature(self.collect).parameters.values())
        draw = inspect.signature(self.draw).parameters
        figures_dir = inspect.Parameter(
            "figures_dir",
            inspect.Parameter.POSITIONAL_OR_KEYWORD,
            default=FIGURES_DIR,
            annotation=os.PathLike,
        )
        keyword = inspect.Parameter.KEYWORD_ONLY
        params = collect[:1] + [figures_dir]
        params += [p.replace(kind=keyword) for p in collect[1:]]
        params += [draw[k].replace(kind=keyword) for k in self.draw_options]
        return inspect.Signature(params, return_annotation=FigureReport)

    def function(self, doc: str) -> Callable[..., FigureReport]:
        """The public `figure_N(results_path, figures_dir, ...)`: binds its arguments as the
        signature says and calls `make`."""
        signature = self.signature()

        def figure(*args: Any, **kwargs: Any) -> FigureReport:
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            params = dict(bound.arguments)
            return self.make(params.pop("results_path"), params.pop("figures_dir"), **params)

        figure.__name__ = figure.__qualname__ = self.name
        figure.__doc__ = doc
        figure.__signature__ = signature  # type: ignore[attr-defined]
        figure.__module__ = self.collect.__module__
        return figure
