"""The jobs a paper target is made of, and the spec that collects them: SampleJob (one
experiments/sample_gradients.py call), EvalJob (one experiments/evaluate.py call) and TargetSpec
(a target's training runs, sampling jobs and evaluation). The targets themselves are defined in
dgp_snr.protocol.targets, which also exports these names.

Vocabulary (as in dgp_snr.configs / evaluation / gradients): `num_estimates` (R) is the number
of gradient estimates per dump, `num_predictive_samples` (S) the number of predictive samples
per test log-likelihood; the scripts' flag for either is still `--num_samples`.

Provenance: a SampleJob's dumps are done when each one's record matches the job's request at
the run's newest checkpoint (SampleJob.problems); an EvalJob's data files when every pair was
evaluated at its iterations with its samples and repeats; a figure records file_record of each
of its TargetSpec.input_files beside it (write_figure_record) and is current while they are
unchanged (figure_is_current).
"""

import hashlib
import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

from dgp_snr.figure_data import figure_data_is_preview, read_figure_data
from dgp_snr.gradient_dumps import (
    RECORD_FIELDS,
    DumpRequest,
    dump_path,
    dump_problem,
    dump_request,
    find_dump,
    read_dump_meta,
    requested_step,
)
from dgp_snr.io import write_json
from dgp_snr.protocol.commands import evaluate_command, sample_command, train_command
from dgp_snr.protocol.constants import ELBO_REPEATS, GRADIENT_SAMPLES, TEST_REPEATS, TEST_SAMPLES
from dgp_snr.protocol.splits import target_defaults
from dgp_snr.protocol.target_evaluation import target_files
from dgp_snr.runs import FINISHED, MISSING, RESULTS_FILE, RunConfig, run_state

Splits = Union[int, Sequence[int]]
#: Beside each figure (<name>.pdf / .png / table_1.txt): the identity of every input it was
#: drawn from (figure_record_path).
FIGURE_RECORD_SUFFIX = ".inputs.json"


def split_list(splits: Splits) -> List[int]:
    """A number of splits (0..n-1) or the splits themselves, as a list."""
    return list(range(splits)) if isinstance(splits, int) else [int(s) for s in splits]


@dataclass
class SampleJob:
    """One experiments/sample_gradients.py call: dumps of `estimator` at every K of `ks` for a
    run, batch size 1 (data points 0..num_datapoints-1) or a batch of the first B points."""

    config: RunConfig
    estimator: str
    ks: Tuple[int, ...]
    batch_size: int = 1
    num_datapoints: int = 1
    aggregates: bool = True
    num_estimates: int = GRADIENT_SAMPLES

    def datapoints(self) -> List[Optional[int]]:
        return list(range(self.num_datapoints)) if self.batch_size == 1 else [None]

    def outputs(self) -> List[Path]:
        run_dir = self.config.run_dir()
        return [
            dump_path(run_dir, self.estimator, self.batch_size, K, dp, self.aggregates)
            for K in self.ks
            for dp in self.datapoints()
        ]

    def missing(self) -> List[Tuple[int, Path]]:
        """(K, path) of the dumps not on disk (for an aggregate dump, the raw one counts too,
        as the figures read either)."""
        run_dir = self.config.run_dir()
        out = []
        for K in self.ks:
            for dp in self.datapoints():
                forms = [self.aggregates] + ([False] if self.aggregates else [])
                paths = [
                    dump_path(run_dir, self.estimator, self.batch_size, K, dp, a) for a in forms
                ]
                if dp == 0:  # a dump without data-point suffix also counts for point 0
                    paths += [dump_path(run_dir, self.estimator, 1, K, None, a) for a in forms]
                if not any(p.is_file() for p in paths):
                    out.append((K, paths[0]))
        return out

    def serving(self, K: int, datapoint: Optional[int]) -> Path:
        """The dump that serves (K, data point): the existing one a figure reads (for an
        aggregate job, the raw one serves too; gradient_dumps.find_dump), else the path this
        job writes."""
        run_dir = self.config.run_dir()
        found = find_dump(
            run_dir, self.estimator, self.batch_size, K, datapoint, raw=not self.aggregates
        )
        if found is not None:
            return found
        return dump_path(run_dir, self.estimator, self.batch_size, K, datapoint, self.aggregates)

    def request(self, K: int, datapoint: Optional[int], step: Optional[int] = None) -> DumpRequest:
        """What the dump of (K, data point) must record: this job's settings at `step`
        (default: the run's newest checkpoint; gradient_dumps.requested_step)."""
        return dump_request(
            self.config,
            self.estimator,
            self.batch_size,
            K,
            datapoint,
            self.num_estimates,
            step,
        )

    def problems(self) -> List[Tuple[int, Path, str]]:
        """(K, path, reason) of each dump that is missing, corrupt or recorded with other
        settings than this job asks at the run's newest checkpoint. Reads the dumps' metadata
        only (not their arrays)."""
        step = requested_step(self.config)
        out = []
        for K in self.ks:
            for dp in self.datapoints():
                path = self.serving(K, dp)
                problem = dump_problem(path, self.request(K, dp, step))
                if problem is not None:
                    out.append((K, path, problem))
        return out

    def inputs(self) -> List[Path]:
        """The dumps a figure reads for this job (serving), one per (K, data point)."""
        return [self.serving(K, dp) for K in self.ks for dp in self.datapoints()]

    def command(self) -> str:
        return sample_command(
            self.config,
            self.estimator,
            self.ks,
            self.batch_size,
            self.num_datapoints,
            self.aggregates,
            self.num_estimates,
        )

    def merge_key(self) -> tuple:
        return (
            self.config.run_name,
            self.estimator,
            self.batch_size,
            self.aggregates,
            self.num_estimates,
        )


@dataclass
class EvalJob:
    """One experiments/evaluate.py call for Table 1 or Figure 4."""

    target: str
    results_path: str
    datasets: Tuple[str, ...]
    splits: int
    iterations: int
    num_predictive_samples: int = TEST_SAMPLES
    repeats: int = TEST_REPEATS
    elbo_repeats: int = ELBO_REPEATS

    def outputs(self) -> List[Path]:
        return list(target_files(self.target, self.results_path).values())

    def short_datasets(self) -> List[str]:
        """The datasets with fewer than `splits` paired splits in the data files (all of them
        when a file is missing, unreadable or a preview). A row counts only when its record
        (figure_data.FigureDataRow.made) says it was evaluated as this job asks: at `iterations`
        with this job's samples (test log-likelihood) and repeats; a row without one does not."""
        short: List[str] = []
        for metric, path in target_files(self.target, self.results_path).items():
            if not path.is_file() or figure_data_is_preview(path):
                return list(self.datasets)
            try:
                rows = {
                    (r.dataset, r.flag, r.split)
                    for r in read_figure_data(path)
                    if self._as_asked(metric, r.made)
                }
            except (ValueError, OSError):
                return list(self.datasets)
            for dataset in self.datasets:
                pairs = sum(
                    1 for d, f, s in rows if d == dataset and not f and (d, True, s) in rows
                )
                if pairs < self.splits and dataset not in short:
                    short.append(dataset)
        return short

    def _as_asked(self, metric: str, made: Optional[Dict[str, Any]]) -> bool:
        if not made:
            return False
        if metric == "train_elbo":  # samples: the run's own K
            wanted = {"step": self.iterations, "repeats": self.elbo_repeats}
        else:
            wanted = {
                "step": self.iterations,
                "samples": self.num_predictive_samples,
                "repeats": self.repeats,
            }
        return all(made.get(k) == v for k, v in wanted.items())

    def complete(self) -> bool:
        """Every data file exists, is not a preview and holds `splits` paired splits for every
        dataset."""
        return not self.short_datasets()

    def command(self) -> str:
        """evaluate.py's command line; options at evaluate.py's (the paper's) defaults are left
        out."""
        cmd = evaluate_command(
            self.target,
            self.results_path,
            self.num_predictive_samples,
            self.repeats,
            self.iterations,
        )
        default_datasets, default_splits, _ = target_defaults(self.target)
        if tuple(self.datasets) != tuple(default_datasets):
            cmd += f" --datasets {','.join(self.datasets)}"
        if self.splits != default_splits:
            cmd += f" --splits {self.splits}"
        if self.target == "table_1" and self.elbo_repeats != ELBO_REPEATS:
            cmd += f" --elbo_repeats {self.elbo_repeats}"
        return cmd


@dataclass
class TargetSpec:
    """What a target needs: its training runs, sampling jobs and evaluation (then its plot).
    `params`: the parameters its definition (protocol.targets) was called with, by name and
    with the defaults applied, results_path left out; the figure reads them from here."""

    name: str
    runs: List[RunConfig] = field(default_factory=list)
    samples: List[SampleJob] = field(default_factory=list)
    evaluation: Optional[EvalJob] = None
    params: Dict[str, Any] = field(default_factory=dict)

    def add_run(self, config: RunConfig) -> RunConfig:
        if all(c.run_name != config.run_name for c in self.runs):
            self.runs.append(config)
        return config

    def input_files(self) -> List[Path]:
        """The files the target's figure is drawn from: its evaluation's data files, else its
        sampling jobs' dumps (SampleJob.inputs), else its runs' results.json."""
        if self.evaluation is not None:
            return self.evaluation.outputs()
        if self.samples:
            return [p for job in self.samples for p in job.inputs()]
        return [c.run_dir() / RESULTS_FILE for c in self.runs]

    def inputs_ready(self) -> bool:
        """Whether the inputs are what the target asks now: every dump matches its request
        (SampleJob.problems), the evaluation's data files are complete."""
        if self.evaluation is not None and not self.evaluation.complete():
            return False
        return not any(job.problems() for job in self.samples)

    def input_records(self) -> List[Dict[str, Any]]:
        """file_record of each input file, in input_files order: what a figure records."""
        return [file_record(p) for p in self.input_files()]

    def pending_commands(self) -> List[str]:
        """The commands that make the target's missing inputs, in order: runs, dumps, data.
        SNR targets need a checkpoint of each run (dumps use the latest); evaluation targets
        need finished runs, unless their data files are already complete."""
        if self.evaluation is not None:
            short = self.evaluation.short_datasets()
            if not short:
                return []
            iterations = self.evaluation.iterations
            train = [
                c
                for c in self.runs
                if c.dataset in short and run_state(c, iterations).state != FINISHED
            ]
            return [train_command(c) for c in train] + [self.evaluation.command()]
        # Only the Ks with a dump missing (sample_gradients skips existing dumps anyway).
        pending = [
            replace(s, ks=tuple(sorted({k for k, _ in s.missing()})))
            for s in self.samples
            if s.missing()
        ]
        needed = {s.config.run_name for s in pending}
        if not self.samples:  # figure 5 reads the checkpoints themselves
            needed = {c.run_name for c in self.runs}
        train = [c for c in self.runs if c.run_name in needed and run_state(c).state == MISSING]
        return [train_command(c) for c in train] + [s.command() for s in pending]


# ------------------------------------------------------------------------------ provenance
def file_record(path: os.PathLike) -> Dict[str, Any]:
    """The identity of an input file: its absolute path, the sha256 of its contents (None when
    it does not exist) and, for a gradient dump, the settings it records (RECORD_FIELDS)."""
    path = Path(path).absolute()
    record: Dict[str, Any] = {"path": str(path), "sha256": None}
    try:
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        record["sha256"] = digest.hexdigest()
    except FileNotFoundError:
        return record
    if path.suffix == ".npz":
        try:
            meta = read_dump_meta(path)
            record["record"] = {k: meta[k] for k in RECORD_FIELDS if k in meta}
        except ValueError:
            record["record"] = None  # corrupt: the hash still identifies it
    return record


def figure_record_path(figures_dir: os.PathLike, name: str) -> Path:
    """<figures_dir>/<name>.inputs.json: the inputs a figure (or table) was drawn from."""
    return Path(figures_dir) / f"{name}{FIGURE_RECORD_SUFFIX}"


def relative_records(
    records: List[Dict[str, Any]], figures_dir: os.PathLike
) -> List[Dict[str, Any]]:
    """file_record's with each path relative to `figures_dir` (as a figure's record holds them,
    so a results folder moved or copied whole keeps its figures up to date)."""
    base = Path(figures_dir).absolute()
    return [{**r, "path": os.path.relpath(r["path"], base)} for r in records]


def write_figure_record(
    figures_dir: os.PathLike, name: str, records: List[Dict[str, Any]]
) -> Path:
    """Writes the figure's input records (paths relative to `figures_dir`) beside it."""
    path = figure_record_path(figures_dir, name)
    inputs = relative_records(records, figures_dir)
    write_json(path, {"figure": name, "inputs": inputs}, indent=1)
    return path


def read_figure_record(figures_dir: os.PathLike, name: str) -> Optional[List[Dict[str, Any]]]:
    """The input records saved beside a figure; None when there are none (or unreadable)."""
    try:
        data = json.loads(figure_record_path(figures_dir, name).read_text())
        inputs = data["inputs"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return inputs if isinstance(inputs, list) else None


def figure_is_current(figures_dir: os.PathLike, name: str, spec: "TargetSpec") -> bool:
    """Whether the inputs recorded beside the figure are the target's inputs now, file by file
    (path and contents)."""
    recorded = read_figure_record(figures_dir, name)
    if recorded is None:
        return False
    current = relative_records(spec.input_records(), figures_dir)
    try:
        return [(r["path"], r["sha256"]) for r in recorded] == [
            (r["path"], r["sha256"]) for r in current
        ]
    except (KeyError, TypeError):
        return False
