"""The paper-length campaign (dgp_snr.campaign.PAPER_CAMPAIGN): one command resumes it from the
committed state on any machine.

    python experiments/paper_runs.py run      [--results_path ../paper_runs]  # hours; resumable
    python experiments/paper_runs.py save     # newest checkpoints -> reproduction/paper_runs/
    python experiments/paper_runs.py evaluate # the protocol's evaluation at each kept step
    python experiments/paper_runs.py restore  # committed checkpoints -> the results folder
    python experiments/paper_runs.py report   # learning_curve.csv, its figure, REPRODUCTION.md
    python experiments/paper_runs.py breakdown --run reg --step 100000
        # test LL by target group, S and precision -> reproduction/paper_runs/test_ll_breakdown.csv
    python experiments/paper_runs.py figure_8 # once the REG run has finished (run does it too)

`run` restores the committed checkpoints where the results folder is behind, then runs the
campaign's sweep (experiments/sweep.py, paper profile) and, beside it, trains the campaign's
further seeds (experiments/train.py, one core each, the sweep getting the other cores; logs in
<results>/sweep_logs/<run>.log). While they train, it evaluates every run at each step of the
campaign's eval_steps as its checkpoint appears. Once all have finished, it samples Figure 8's
SNR (REG and DReG, K = 50, batch 64, on the REG run's final checkpoint) and exports it to
reproduction/paper_runs/figure_8/. `save` before committing: it keeps each run's newest
checkpoint only.
"""

import os
import shlex
import signal
import subprocess
import sys
import time
from argparse import ArgumentParser
from pathlib import Path
from typing import List, Sequence, Tuple

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout

from dgp_snr.scripting import import_tensorflow_quietly  # noqa: E402

import_tensorflow_quietly()

from dgp_snr import campaign as c  # noqa: E402
from dgp_snr import report  # noqa: E402
from dgp_snr.protocol.commands import train_command  # noqa: E402
from dgp_snr.runs import run_state  # noqa: E402
from dgp_snr.sweep.engine import task_environment  # noqa: E402

DEFAULT_RESULTS = ROOT.parent / "paper_runs"


def restore(results_path: Path, committed: Path) -> None:
    for run in c.committed_runs(committed):
        print(c.restore_run(run, results_path), flush=True)


def save(results_path: Path, committed: Path) -> None:
    for run_dir in c.run_folders(results_path):
        try:
            step = c.save_run(run_dir, committed)
        except FileNotFoundError as err:
            print(f"{run_dir.name}: nothing saved ({err})", flush=True)
            continue
        print(f"{run_dir.name}: saved step {step} to {committed / run_dir.name}", flush=True)


def evaluate(results_path: Path, progress: bool = False) -> None:
    for run_dir in c.run_folders(results_path):
        for step in c.evaluate_steps(run_dir, c.PAPER_CAMPAIGN, progress=progress):
            print(f"{run_dir.name}: evaluated step {step}", flush=True)


def _evaluate_in_subprocess(results_path: Path) -> None:
    """A fresh interpreter per round: an evaluation that fails (or code edited since the
    campaign started, which autograph would read mid-run) never stops the campaign."""
    if not any(c.pending_evaluations(run_dir) for run_dir in c.run_folders(results_path)):
        return
    argv = [sys.executable, __file__, "evaluate", "--results_path", str(results_path)]
    done = subprocess.run(argv)
    if done.returncode:
        print(f"paper_runs: evaluation failed (exit {done.returncode}); retrying", flush=True)


def sweep_argv(results_path: Path, workers: int) -> List[str]:
    """The campaign's sweep command (experiments/sweep.py, paper profile)."""
    argv = [sys.executable, str(ROOT / "experiments" / "sweep.py")]
    return argv + c.PAPER_CAMPAIGN.sweep_argv(results_path, workers) + ["--no-progress"]


def seed_trainings(results_path: Path) -> List[Tuple[str, List[str]]]:
    """(run name, experiments/train.py argv) of the campaign's further seeds not finished yet."""
    out = []
    for config in c.PAPER_CAMPAIGN.seed_run_configs(results_path):
        if not run_state(config).complete:
            out.append(
                (config.run_name, [sys.executable] + shlex.split(train_command(config))[1:])
            )
    return out


def run_sweep(
    argv: List[str],
    results_path: Path,
    poll_s: float,
    beside: Sequence[Tuple[str, List[str]]] = (),
) -> int:
    """Runs the sweep and the `beside` trainings ((name, argv), output to
    <results>/sweep_logs/<name>.log), evaluating between polls, until all have ended. Returns
    130 when any was interrupted, else the sweep's exit status, or 1 if a training beside it
    failed. SIGINT or SIGTERM of this process alone (a terminal's Ctrl-C reaches all) is
    forwarded to each as SIGINT, which saves their trainings. The handlers are installed
    explicitly because a shell starts a background job with SIGINT ignored, and Python then
    keeps ignoring it."""
    print("$", " ".join(argv), flush=True)
    procs = [subprocess.Popen(argv)]
    for name, train_argv in beside:
        log_path = results_path / "sweep_logs" / f"{name}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        print("$", shlex.join(train_argv), ">>", log_path, flush=True)
        with open(log_path, "a") as log:  # one TensorFlow thread, as each sweep task has
            procs.append(
                subprocess.Popen(
                    train_argv, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                    env={**os.environ, **task_environment(1)},
                )  # fmt: skip
            )

    def forward(signum: int, frame: object) -> None:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        while any(proc.poll() is None for proc in procs):
            _evaluate_in_subprocess(results_path)
            try:
                next(p for p in procs if p.poll() is None).wait(timeout=poll_s)
            except (subprocess.TimeoutExpired, StopIteration):
                pass
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    codes = [proc.returncode for proc in procs]
    for (name, _), code in zip(beside, codes[1:]):
        if code not in (0, 130):
            print(f"paper_runs: training {name} failed (exit {code}); see its log", flush=True)
    if 130 in codes:
        return 130
    return codes[0] or (1 if any(codes[1:]) else 0)


def figure_8(results_path: Path) -> int:
    """Figure 8's SNR at the REG run's final checkpoint, exported; 1 if not ready or failed."""
    unfinished = c.figure_8_unfinished(results_path, c.PAPER_CAMPAIGN)
    if unfinished:
        print(f"paper_runs: Figure 8 waits for {', '.join(unfinished)} to finish", flush=True)
        return 1
    start = time.monotonic()
    for command in c.figure_8_commands(results_path, c.PAPER_CAMPAIGN):
        print("$", command, flush=True)
        if subprocess.run([sys.executable] + shlex.split(command)[1:], cwd=ROOT).returncode:
            return 1
    wall = round(time.monotonic() - start, 1)
    out = c.export_figure_8(results_path, c.PAPER_CAMPAIGN, ROOT, wall_time_s=wall)
    print(f"paper_runs: Figure 8 in {out} (sampled in {wall} s)")
    return 0


def run(results_path: Path, committed: Path, poll_s: float) -> int:
    restore(results_path, committed)
    beside = seed_trainings(results_path)
    workers = max(1, (os.cpu_count() or 1) - len(beside))
    status = run_sweep(sweep_argv(results_path, workers), results_path, poll_s, beside)
    if status == 130:  # interrupted: nothing more to do now, the rerun resumes
        return 130
    _evaluate_in_subprocess(results_path)
    if status == 0:  # every run finished
        return figure_8(results_path)
    return status


def breakdown(
    results_path: Path, dataset: str, run: str, step: int, sample_sizes, repeats: int
) -> None:
    matches = [
        d for d in c.run_folders(results_path)
        if d.name.startswith(f"{dataset}_") and d.name.endswith(f"_{run}")
    ]  # fmt: skip
    if len(matches) != 1:
        names = ", ".join(d.name for d in c.run_folders(results_path))
        raise SystemExit(
            f"paper_runs: --dataset {dataset} --run {run} names no single run folder "
            f"(have: {names})"
        )
    frame = c.test_ll_breakdown(matches[0], step, sample_sizes, repeats=repeats)
    path = ROOT / c.BREAKDOWN_CSV
    if path.is_file():  # replace this run's rows at this step, keep the others
        old = pd.read_csv(path)
        old = old[~((old["run"] == matches[0].name) & (old["step"] == step))]
        frame = pd.concat([old, frame], ignore_index=True)
    frame.to_csv(path, index=False)
    print(f"paper_runs: wrote {path}")


def main() -> int:
    parser = ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "command",
        choices=("run", "save", "evaluate", "restore", "report", "breakdown", "figure_8"),
    )
    parser.add_argument("--results_path", type=Path, default=DEFAULT_RESULTS)
    parser.add_argument("--committed", type=Path, default=ROOT / c.COMMITTED_DIR)
    parser.add_argument("--poll", type=float, default=60.0, help="seconds between evaluations")
    group = parser.add_argument_group("breakdown")
    group.add_argument("--dataset", default=c.PAPER_CAMPAIGN.datasets[0])
    group.add_argument(
        "--run", default="reg", help="run name suffix: reg, dreg, reg_fixq, reg_seed1"
    )
    group.add_argument("--step", type=int, default=None, help="a kept checkpoint's step")
    group.add_argument("--sample_sizes", default="1000,10000,100000", help="values of S")
    group.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if args.command == "breakdown":
        if args.step is None:
            parser.error("breakdown needs --step")
        sizes = [int(v) for v in args.sample_sizes.split(",")]
        breakdown(args.results_path, args.dataset, args.run, args.step, sizes, args.repeats)
        return 0
    if args.command == "run":
        return run(args.results_path, args.committed, args.poll)
    if args.command == "figure_8":
        return figure_8(args.results_path)
    if args.command == "save":
        save(args.results_path, args.committed)
    elif args.command == "evaluate":
        evaluate(args.results_path, progress=True)
    elif args.command == "restore":
        restore(args.results_path, args.committed)
    else:
        curve = c.write_report(ROOT)
        print(report.learning_curve_markdown(curve))
    return 0


if __name__ == "__main__":
    sys.exit(main())
