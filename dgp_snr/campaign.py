"""Paper-length runs that outlive a working session: each run's newest checkpoint, its
config.json, its evaluations and its TensorBoard scalars are committed under
reproduction/paper_runs/<run>/, and restored from there into a results folder on any machine,
from which training resumes bit-identically.

The campaign itself (which targets, datasets, splits, precision) is `PAPER_CAMPAIGN`; its
command is experiments/paper_runs.py (`bash scripts/paper_runs.sh`).
"""

import dataclasses
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import pandas as pd

from dgp_snr import report
from dgp_snr.configs import RunConfig
from dgp_snr.data import get_regression_data
from dgp_snr.evaluation import Evaluator
from dgp_snr.io import atomic_write_text
from dgp_snr.plotting.curves import read_scalars
from dgp_snr.plotting.paper_runs import draw_paper_runs
from dgp_snr.protocol.profiles import PROFILES, Overrides, Profile
from dgp_snr.protocol.targets import target_spec
from dgp_snr.reproduction import export_target
from dgp_snr.run_evaluation import EVALUATION_FILE, evaluate_run
from dgp_snr.run_logging import TENSORBOARD_DIR
from dgp_snr.runs import (
    CHECKPOINT_DIR,
    CONFIG_FILE,
    KEPT_STEPS,
    RESULTS_FILE,
    DamagedCheckpointError,
    RunCheckpoints,
    build_run,
    check_checkpoint,
    check_resumable,
    checkpoint_steps,
    load_config,
    run_state,
)
from dgp_snr.training_record import TRAINING_RECORD_FILE

#: Where the committed state lives, relative to the repository root.
COMMITTED_DIR = Path("reproduction") / "paper_runs"
#: The committed scalars: every scalar tag, at the steps that are multiples of SCALAR_EVERY.
SCALARS_FILE = "scalars.csv"
SCALAR_EVERY = 1000
_DATA_SUFFIX = ".data-00000-of-00001"


@dataclass(frozen=True)
class Campaign:
    """A sweep restricted to some datasets and splits, and the steps its runs are evaluated at
    (the paper's protocol: S predictive samples x repeats, the train ELBO with elbo_repeats)."""

    targets: Tuple[str, ...]
    datasets: Tuple[str, ...]
    splits: Tuple[int, ...]
    precision: str
    iterations: int = 300_000
    eval_steps: Tuple[int, ...] = KEPT_STEPS + (300_000,)
    num_predictive_samples: int = 10_000
    repeats: int = 10
    elbo_repeats: int = 10
    #: Further seeds for the seed-to-seed spread: (estimator, seed) of Table 1's learned-q(w)
    #: run on the first dataset and split, trained beside the sweep (run name suffix seed<N>).
    seed_runs: Tuple[Tuple[str, int], ...] = ()

    def sweep_argv(self, results_path: os.PathLike, workers: Optional[int] = None) -> List[str]:
        """experiments/sweep.py's arguments for this campaign (the paper profile)."""
        argv = [
            *self.targets, "--profile", "paper", "--iterations", str(self.iterations),
            "--datasets", ",".join(self.datasets),
            "--splits", ",".join(map(str, self.splits)) + ",",
            "--precision", self.precision, "--results_path", str(results_path),
        ]  # fmt: skip
        return argv + ([] if workers is None else ["--workers", str(workers)])

    def profile(self) -> Profile:
        """The paper profile with the campaign's restrictions (what sweep_argv asks for)."""
        overrides = Overrides(
            iterations=self.iterations, splits=self.splits, datasets=self.datasets,
            precision=self.precision,
        )  # fmt: skip
        return PROFILES["paper"].with_overrides(overrides)

    def seed_run_configs(self, results_path: os.PathLike) -> List[RunConfig]:
        """The seed_runs' configs: the sweep's Table 1 run of that estimator on the first
        dataset and split, with only `seed` and the run name's suffix changed."""
        spec = target_spec("table_1", results_path, **self.profile().params("table_1"))
        out = []
        for estimator, seed in self.seed_runs:
            (base,) = [
                config for config in spec.runs
                if config.training.estimator == estimator and config.dataset == self.datasets[0]
                and config.split == self.splits[0]
            ]  # fmt: skip
            out.append(base.with_settings(seed=seed, name_suffix=f"seed{seed}"))
        return out


def figure_8_params(campaign: "Campaign") -> Dict:
    """Figure 8's parameters (paper profile) on the campaign's first dataset and split: the SNR
    of REG and DReG at K = 50 over a batch of 64, on the REG-trained run with learned q(w)."""
    params = campaign.profile().params("figure_8")
    return dict(params, datasets=tuple(campaign.datasets[:1]), split=campaign.splits[0])


def figure_8_commands(results_path: os.PathLike, campaign: "Campaign") -> List[str]:
    """The sample_gradients.py commands of Figure 8 for the campaign (each with --rebuild, so
    a dump from an earlier checkpoint is resampled at the final one)."""
    spec = target_spec("figure_8", results_path, **figure_8_params(campaign))
    return [job.command() + " --rebuild" for job in spec.samples]


def figure_8_unfinished(results_path: os.PathLike, campaign: "Campaign") -> List[str]:
    """The runs Figure 8 samples that have not finished training (names; empty: ready)."""
    spec = target_spec("figure_8", results_path, **figure_8_params(campaign))
    return [config.run_name for config in spec.runs if not run_state(config).complete]


def export_figure_8(
    results_path: os.PathLike,
    campaign: "Campaign",
    root: os.PathLike = ".",
    wall_time_s: Optional[float] = None,
) -> Path:
    """reproduction/paper_runs/figure_8/: data.csv, the figure and meta.json from the dumps
    (`wall_time_s`: the sampling's, as measured by its caller)."""
    return export_target(
        "figure_8", results_path, Path(root) / COMMITTED_DIR, profile_name="paper",
        command="python experiments/paper_runs.py figure_8", wall_time_s=wall_time_s,
        **figure_8_params(campaign),
    )  # fmt: skip


#: Issue 18: split 0, REG and DReG with learned q(w), REG with q(w) fixed to the prior, on solar
#: and then (the issue's stretch) forest; REG with learned q(w) at a second seed on solar (its
#: first seed's 200k value sat 0.6 nats below the authors'). Figure 8 on solar only.
PAPER_CAMPAIGN = Campaign(
    targets=("table_1", "figure_4"), datasets=("wilson_solar", "wilson_forest"), splits=(0,),
    precision="mixed", seed_runs=(("reg", 1),),
)  # fmt: skip


def newest_readable_step(run_dir: os.PathLike) -> Optional[int]:
    """The step of the run's newest checkpoint that reads back whole, or None."""
    for step in reversed(checkpoint_steps(run_dir)):
        try:
            check_checkpoint(str(Path(run_dir) / CHECKPOINT_DIR / f"ckpt-{step}"))
        except DamagedCheckpointError:
            continue
        return step
    return None


def _copy(source: Path, target: Path) -> None:
    partial = target.with_name(target.name + ".partial")
    shutil.copyfile(source, partial)
    os.replace(partial, target)


def _copy_checkpoint(source_dir: Path, step: int, target_dir: Path) -> None:
    """The data file first, the index last (an index always has its data)."""
    target_dir.mkdir(parents=True, exist_ok=True)
    for suffix in (_DATA_SUFFIX, ".index"):
        _copy(source_dir / f"ckpt-{step}{suffix}", target_dir / f"ckpt-{step}{suffix}")


def _scalars(run_dir: Path, committed: Path, up_to: int) -> pd.DataFrame:
    """The committed scalars merged with the run's event files (the events win), every
    SCALAR_EVERY steps up to the saved step (a resume logs later steps again)."""
    frames = []
    if (committed / SCALARS_FILE).is_file():
        # round_trip: the default parser can move the last digit, rewriting unchanged rows.
        frames.append(pd.read_csv(committed / SCALARS_FILE, float_precision="round_trip"))
    events = read_scalars(run_dir / TENSORBOARD_DIR)
    frames.append(events[events["step"] % SCALAR_EVERY == 0])
    df = pd.concat(frames, ignore_index=True).drop_duplicates(["tag", "step"], keep="last")
    df = df[df["step"] <= up_to]
    return df.sort_values(["tag", "step"], ignore_index=True)


def _merged_json(paths: Sequence[Path]) -> Dict:
    """The union of JSON objects, later files winning."""
    out: Dict = {}
    for path in paths:
        if path.is_file():
            out.update(json.loads(path.read_text()))
    return out


def save_run(run_dir: os.PathLike, committed_root: os.PathLike = COMMITTED_DIR) -> int:
    """Copies the run's newest readable checkpoint (the previous one removed), config.json,
    evaluations, results, the training record and scalars to <committed_root>/<run>/; returns
    the saved step. Raises FileNotFoundError when the run has no readable checkpoint."""
    run_dir = Path(run_dir)
    load_config(run_dir)  # a run folder, readable
    step = newest_readable_step(run_dir)
    if step is None:
        raise FileNotFoundError(f"{run_dir} has no readable checkpoint to save")
    committed = Path(committed_root) / run_dir.name
    target = committed / CHECKPOINT_DIR
    _copy_checkpoint(run_dir / CHECKPOINT_DIR, step, target)
    for old in target.iterdir():
        if old.name.startswith("ckpt-") and not old.name.startswith(f"ckpt-{step}."):
            old.unlink()
    _copy(run_dir / CONFIG_FILE, committed / CONFIG_FILE)
    evaluations = _merged_json([committed / EVALUATION_FILE, run_dir / EVALUATION_FILE])
    if evaluations:
        text = json.dumps(evaluations, indent=2, sort_keys=True, allow_nan=False)
        atomic_write_text(committed / EVALUATION_FILE, text + "\n")
    for name in (RESULTS_FILE, TRAINING_RECORD_FILE):
        if (run_dir / name).is_file():
            _copy(run_dir / name, committed / name)
    scalars = _scalars(run_dir, committed, step)
    atomic_write_text(committed / SCALARS_FILE, scalars.to_csv(index=False))
    return step


def restore_run(committed: os.PathLike, results_path: os.PathLike) -> str:
    """Brings the committed run into <results_path>/<run>/ unless that folder already has a
    checkpoint at least as new; returns what it did, in words. Evaluations are merged (the
    local ones win). Raises ValueError when the folder holds checkpoints of a run with other
    settings (runs.check_resumable)."""
    committed = Path(committed)
    run_dir = Path(results_path) / committed.name
    steps = checkpoint_steps(committed)
    if not steps:
        raise FileNotFoundError(f"{committed} holds no committed checkpoint")
    step = steps[-1]
    local_config = run_dir / CONFIG_FILE
    # As a resume would: settings must agree, run-control ones (results_path, ...) may differ.
    check_resumable(load_config(committed), run_dir)
    evaluations = _merged_json([committed / EVALUATION_FILE, run_dir / EVALUATION_FILE])
    if evaluations:
        run_dir.mkdir(parents=True, exist_ok=True)
        text = json.dumps(evaluations, indent=2, sort_keys=True, allow_nan=False)
        atomic_write_text(run_dir / EVALUATION_FILE, text + "\n")
    local = newest_readable_step(run_dir) if local_config.is_file() else None
    if local is not None and local >= step:
        return f"{run_dir.name}: kept the local checkpoint at step {local} (committed: {step})"
    _copy_checkpoint(committed / CHECKPOINT_DIR, step, run_dir / CHECKPOINT_DIR)
    _copy(committed / CONFIG_FILE, local_config)
    if (committed / RESULTS_FILE).is_file() and not (run_dir / RESULTS_FILE).is_file():
        _copy(committed / RESULTS_FILE, run_dir / RESULTS_FILE)
    if (committed / TRAINING_RECORD_FILE).is_file():  # the sessions up to the checkpoint
        _copy(committed / TRAINING_RECORD_FILE, run_dir / TRAINING_RECORD_FILE)
    return f"{run_dir.name}: restored the committed checkpoint at step {step}"


def committed_runs(committed_root: os.PathLike = COMMITTED_DIR) -> List[Path]:
    root = Path(committed_root)
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if (p / CONFIG_FILE).is_file())


def run_folders(results_path: os.PathLike) -> List[Path]:
    """The run folders (with a config.json) directly under `results_path`."""
    root = Path(results_path)
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if (p / CONFIG_FILE).is_file())


def protocol_evaluations(run_dir: Path, campaign: Campaign) -> Dict[int, Dict[str, np.ndarray]]:
    """step -> {"test_ll": [repeats], "train_elbo": [repeats]}: the run's cached evaluations
    made with the campaign's protocol (other sample counts or repeats left out)."""
    config = load_config(run_dir)
    wanted = {
        "test_ll": (campaign.num_predictive_samples, campaign.repeats),
        "train_elbo": (config.model.num_importance_samples, campaign.elbo_repeats),
    }
    out: Dict[int, Dict[str, np.ndarray]] = {}
    for key, entry in _merged_json([run_dir / EVALUATION_FILE]).items():
        fields = _parse_key(key)
        if wanted.get(fields["kind"]) == (int(fields["S"]), int(fields["R"])):
            values = np.asarray(entry["values"], dtype=np.float64)
            out.setdefault(int(fields["step"]), {})[fields["kind"]] = values
    return out


def _evaluated(run_dir: Path, campaign: Campaign) -> set:
    """Steps whose test log-likelihood and ELBO at the campaign's protocol are both cached."""
    found = protocol_evaluations(run_dir, campaign)
    return {step for step, kinds in found.items() if set(kinds) == {"test_ll", "train_elbo"}}


def pending_evaluations(run_dir: os.PathLike, campaign: Campaign = PAPER_CAMPAIGN) -> List[int]:
    """The campaign's eval_steps that the run has a checkpoint for (rolling or kept) and that
    are not evaluated yet (reads files only)."""
    run_dir = Path(run_dir)
    available = set(checkpoint_steps(run_dir)) | set(checkpoint_steps(run_dir, kept=True))
    done = _evaluated(run_dir, campaign)
    return [s for s in campaign.eval_steps if s in available and s not in done]


def evaluate_steps(
    run_dir: os.PathLike, campaign: Campaign = PAPER_CAMPAIGN, progress: bool = False
) -> List[int]:
    """Evaluates the run with the campaign's protocol at every pending step; returns them."""
    steps = pending_evaluations(run_dir, campaign)
    for step in steps:
        evaluate_run(
            run_dir, test_ll=True, elbo=True, step=step,
            num_predictive_samples=campaign.num_predictive_samples, repeats=campaign.repeats,
            elbo_repeats=campaign.elbo_repeats, progress=progress,
        )  # fmt: skip
    return steps


# ------------------------------------------------------------------------------------ report
#: learning_curve.csv: one row per (run, evaluated step).
CURVE_COLUMNS = (
    "run", "dataset", "split", "seed", "estimator", "qw", "precision", "step", "test_ll_mean",
    "test_ll_se", "test_ll_repeats", "elbo_per_point_mean", "elbo_per_point_se",
    "elbo_repeats", "authors_test_ll", "authors_source", "gap_to_authors",
)  # fmt: skip
CURVE_FILE = report.PAPER_RUNS_CSV.name
AUTHORS_CSV = report.AUTHORS_CSV


def _setting(config: RunConfig) -> Tuple[str, str]:
    """(estimator, q(w)): ("reg" | "dreg", "learned" | "fixed")."""
    return config.training.estimator, (
        "fixed" if config.model.qz_mode == "fix_mu_sigma" else "learned"
    )


def authors_value(authors: pd.DataFrame, dataset: str, split: int, estimator: str, qw: str):
    """The authors' released test log-likelihood of the run with this setting (the mean of its
    repeats) and where it comes from: Table 1 for REG / DReG with learned q(w), Figure 4 for
    q(w) fixed to the prior; (None, "") when they released none."""
    rows = report.authors_repeats(authors, dataset, estimator, qw)
    rows = rows[rows["split"] == split]
    if rows.empty:
        return None, ""
    if qw == "fixed":
        label = "Figure 4's fixed-q(w) run"
    else:
        label = f"Table 1's {'DReG' if estimator == 'dreg' else 'REG'} run"
    repeats = f"mean of {len(rows)} repeats" if len(rows) > 1 else "1 evaluation"
    return float(rows["value"].mean()), f"{label}, {repeats}"


def _parse_key(key: str) -> Dict[str, str]:
    kind, *fields = key.split(":")
    out = dict(field.split("=", 1) for field in fields)
    out["kind"] = kind
    return out


def learning_curve_frame(
    committed_root: os.PathLike = COMMITTED_DIR,
    authors_csv: os.PathLike = AUTHORS_CSV,
    campaign: Campaign = PAPER_CAMPAIGN,
) -> pd.DataFrame:
    """The protocol's evaluations of every committed run at each evaluated step, beside the
    authors' released value for the same dataset, split and setting."""
    authors = pd.read_csv(authors_csv)
    rows = []
    for run in committed_runs(committed_root):
        config = load_config(run)
        estimator, qw = _setting(config)
        by_step = protocol_evaluations(run, campaign)
        num_train = get_regression_data(config.dataset, config.split).X_train.shape[0]
        reference, source = authors_value(authors, config.dataset, config.split, estimator, qw)
        for step, values in sorted(by_step.items()):
            tll = values.get("test_ll", np.array([]))
            elbo = values.get("train_elbo", np.array([])) / num_train
            mean = float(tll.mean()) if tll.size else np.nan
            rows.append(dict(
                run=run.name, dataset=config.dataset, split=config.split,
                seed=config.effective_seed, estimator=estimator,
                qw=qw, precision=config.model.precision, step=step, test_ll_mean=mean,
                test_ll_se=_se(tll), test_ll_repeats=tll.size,
                elbo_per_point_mean=float(elbo.mean()) if elbo.size else np.nan,
                elbo_per_point_se=_se(elbo), elbo_repeats=elbo.size,
                authors_test_ll=np.nan if reference is None else reference,
                authors_source=source,
                gap_to_authors=np.nan if reference is None else mean - reference,
            ))  # fmt: skip
    return pd.DataFrame(rows, columns=list(CURVE_COLUMNS))


def _se(values: np.ndarray) -> float:
    """Standard error of the mean over repeats (sample standard deviation, n - 1)."""
    return float(values.std(ddof=1) / np.sqrt(values.size)) if values.size > 1 else np.nan


def committed_scalars(committed_root: os.PathLike = COMMITTED_DIR) -> Dict[str, pd.DataFrame]:
    out = {}
    for run in committed_runs(committed_root):
        if (run / SCALARS_FILE).is_file():
            out[run.name] = pd.read_csv(run / SCALARS_FILE)
    return out


def write_report(root: os.PathLike = ".") -> pd.DataFrame:
    """learning_curve.csv from the committed evaluations, then, from that CSV as read back,
    the figure and REPRODUCTION.md's generated blocks (dgp_snr.report)."""
    root = Path(root)
    committed = root / COMMITTED_DIR
    curve = learning_curve_frame(committed, root / AUTHORS_CSV)
    atomic_write_text(committed / CURVE_FILE, curve.to_csv(index=False, float_format="%.10g"))
    curve = pd.read_csv(committed / CURVE_FILE, keep_default_na=False, na_values=[""])
    draw_paper_runs(curve, committed_scalars(committed), committed)
    report.write_report(root)
    return curve


# ------------------------------------------------------------------ test LL investigation
BREAKDOWN_CSV = COMMITTED_DIR / "test_ll_breakdown.csv"


def test_ll_breakdown(
    run_dir: os.PathLike,
    step: int,
    sample_sizes: Sequence[int] = (1_000, 10_000, 100_000),
    precisions: Sequence[str] = ("mixed", "float64"),
    repeats: int = 3,
    seed: int = 0,
) -> pd.DataFrame:
    """The test log predictive density of one checkpoint split by the test points whose target
    is the training set's most frequent value ("mode") and the others ("off-mode"), for each
    precision (the same checkpoint restored into a model of that precision) and number of
    predictive samples S, `repeats` independent estimates each (the protocol's streams).

    One row per (precision, S, repeat, group): mean lpd over the group's points and their count.
    wilson_solar's target has a few values, most test points at one (setup_audit.md, note B):
    the off-mode points decide the mean, and this shows whether S = 10,000 has converged."""
    run_dir = Path(run_dir)
    config = load_config(run_dir)
    rows = []
    for precision in precisions:
        model_config = dataclasses.replace(config.model, precision=precision)
        model, trainer, data = build_run(dataclasses.replace(config, model=model_config))
        RunCheckpoints(trainer, run_dir).restore(step)
        values, counts = np.unique(data.Y_train, return_counts=True)
        at_mode = np.isclose(data.Y_test[:, 0], values[np.argmax(counts)])
        evaluator = Evaluator(model)
        for S in sample_sizes:
            for repeat in range(repeats):
                lpd = evaluator.log_predictive_density(data.X_test, data.Y_test, S, seed, repeat)
                for group, mask in (
                    ("all", slice(None)),
                    ("mode", at_mode),
                    ("off-mode", ~at_mode),
                ):
                    rows.append(
                        {
                            "run": run_dir.name,
                            "step": step,
                            "precision": precision,
                            "S": S,
                            "repeat": repeat,
                            "group": group,
                            "points": int(np.size(lpd[mask])),
                            "mean_lpd": float(np.mean(lpd[mask])) if lpd[mask].size else np.nan,
                        }
                    )
    return pd.DataFrame(rows)
