"""What every figure shares: the style and saving, the report of missing inputs (the commands
that make them), and the one collect -> draw template (TidyFigure) that every figure follows.

A figure is a TidyFigure: `collect(results_path, **params) -> (tidy DataFrame, FigureReport)`
gathers its inputs (printing the commands for the missing ones first; MissingInputsError when
nothing exists) and `draw(df, figures_dir, **draw_options) -> [paths]` draws that frame alone,
so dgp_snr.reproduction can commit the frame as CSV and redraw the figure from it.
`TidyFigure.make` does both in turn; `TidyFigure.function` builds the public `figure_N(...)`
with the signature the figure functions always had (results path, figures folder, then the
collect parameters with the draw options in their old places).

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
from typing import Any, Callable, Dict, List, Optional, TextIO, Tuple

import matplotlib.pyplot as plt
import pandas as pd

from dgp_snr.gradient_dumps import dump_problem, requested_step
from dgp_snr.plotting.dumps import find_dump
from dgp_snr.protocol import targets as protocol_targets
from dgp_snr.protocol.jobs import figure_record_path, write_figure_record
from dgp_snr.runs import RunConfig, latest_checkpoint_step

FIGURES_DIR = "figures"

ESTIMATORS = ("reg", "dreg")
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
        batch_size: int,
        K: int,
        datapoint: Optional[int],
        num_datapoints: int,
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
@dataclass(frozen=True)
class TidyFigure:
    """A figure split into `collect` (results path and the figure's parameters -> tidy
    DataFrame and report; raises MissingInputsError when nothing exists) and `draw` (DataFrame,
    figures folder and the `draw_options` -> written paths), for dgp_snr.reproduction.

    `draw_after`: the collect parameter after which the draw options stand in the figure
    function's signature (None: at the end); `text`: for a table, the frame -> the text that
    the figure function prints and puts in its report."""

    name: str
    collect: Callable[..., Tuple[pd.DataFrame, FigureReport]]
    draw: Callable[..., List[Path]]
    draw_options: Tuple[str, ...] = ()
    draw_after: Optional[str] = None
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
        """(results_path, figures_dir, *collect's parameters) with the draw options after
        `draw_after`: the figure function's signature."""
        collect = list(inspect.signature(self.collect).parameters.values())
        draw = inspect.signature(self.draw).parameters
        figures_dir = inspect.Parameter(
            "figures_dir",
            inspect.Parameter.POSITIONAL_OR_KEYWORD,
            default=FIGURES_DIR,
            annotation=os.PathLike,
        )
        params = collect[:1] + [figures_dir] + collect[1:]
        names = [p.name for p in params]
        at = names.index(self.draw_after) + 1 if self.draw_after else len(params)
        # Draw options go before keyword-only parameters (none today), as their old places.
        params[at:at] = [draw[k] for k in self.draw_options]
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
