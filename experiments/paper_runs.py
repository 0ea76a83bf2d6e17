"""The paper-length campaign (dgp_snr.campaign.PAPER_CAMPAIGN): one command resumes it from the
committed state on any machine.

    python experiments/paper_runs.py run      [--results_path ../paper_runs]  # hours; resumable
    python experiments/paper_runs.py save     # newest checkpoints -> reproduction/paper_runs/
    python experiments/paper_runs.py evaluate # the protocol's evaluation at each kept step
    python experiments/paper_runs.py restore  # committed checkpoints -> the results folder
    python experiments/paper_runs.py report   # learning_curve.csv, its figure, REPRODUCTION.md
    python experiments/paper_runs.py breakdown --run reg --step 100000
        # test LL by target group, S and precision -> reproduction/paper_runs/test_ll_breakdown.csv

`run` restores the committed checkpoints where the results folder is behind, then runs the
campaign's sweep (experiments/sweep.py, paper profile) and, while it trains, evaluates every
run at each step of the campaign's eval_steps as its checkpoint appears; once every run has
finished, it samples Figure 8's SNR (REG and DReG, K = 50, batch 64, on the REG run's final
checkpoint) and exports it to reproduction/paper_runs/figure_8/. `save` before
committing: it keeps each run's newest checkpoint only.
"""

import shlex
import signal
import subprocess
import sys
from argparse import ArgumentParser
from pathlib import Path
from typing import List

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout

from dgp_snr.scripting import import_tensorflow_quietly  # noqa: E402

import_tensorflow_quietly()

from dgp_snr import campaign as c  # noqa: E402
from dgp_snr import report  # noqa: E402

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


def sweep_argv(results_path: Path) -> List[str]:
    """The campaign's sweep command (experiments/sweep.py, paper profile)."""
    argv = [sys.executable, str(ROOT / "experiments" / "sweep.py")]
    return argv + c.PAPER_CAMPAIGN.sweep_argv(results_path) + ["--no-progress"]


def run_sweep(argv: List[str], results_path: Path, poll_s: float) -> int:
    """Runs the sweep, evaluating between polls; returns its exit status. SIGINT or SIGTERM of
    this process alone (a terminal's Ctrl-C reaches both) is forwarded to the sweep as SIGINT,
    which saves its trainings. The handlers are installed explicitly because a shell starts a
    background job with SIGINT ignored, and Python then keeps ignoring it."""
    print("$", " ".join(argv), flush=True)
    sweep = subprocess.Popen(argv)

    def forward(signum: int, frame: object) -> None:
        if sweep.poll() is None:
            sweep.send_signal(signal.SIGINT)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        while sweep.poll() is None:
            _evaluate_in_subprocess(results_path)
            try:
                sweep.wait(timeout=poll_s)
            except subprocess.TimeoutExpired:
                pass
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return sweep.returncode


def run(results_path: Path, committed: Path, poll_s: float) -> int:
    restore(results_path, committed)
    status = run_sweep(sweep_argv(results_path), results_path, poll_s)
    if status == 130:  # interrupted: nothing more to do now, the rerun resumes
        return 130
    _evaluate_in_subprocess(results_path)
    if status == 0:  # every run finished: Figure 8's SNR at the final checkpoints
        for command in c.figure_8_commands(results_path, c.PAPER_CAMPAIGN):
            argv = [sys.executable] + shlex.split(command)[1:]
            print("$", command, flush=True)
            if subprocess.run(argv, cwd=ROOT).returncode:
                return 1
        print(f"paper_runs: Figure 8 in {c.export_figure_8(results_path, c.PAPER_CAMPAIGN, ROOT)}")
    return status


def breakdown(results_path: Path, run: str, step: int, sample_sizes, repeats: int) -> None:
    matches = [d for d in c.run_folders(results_path) if d.name.endswith(f"_{run}")]
    if len(matches) != 1:
        names = ", ".join(d.name for d in c.run_folders(results_path))
        raise SystemExit(f"paper_runs: --run {run!r} names no single run folder (have: {names})")
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
        "command", choices=("run", "save", "evaluate", "restore", "report", "breakdown")
    )
    parser.add_argument("--results_path", type=Path, default=DEFAULT_RESULTS)
    parser.add_argument("--committed", type=Path, default=ROOT / c.COMMITTED_DIR)
    parser.add_argument("--poll", type=float, default=60.0, help="seconds between evaluations")
    group = parser.add_argument_group("breakdown")
    group.add_argument("--run", default="reg", help="run name suffix: reg, dreg, reg_fixq")
    group.add_argument("--step", type=int, default=None, help="a kept checkpoint's step")
    group.add_argument("--sample_sizes", default="1000,10000,100000", help="values of S")
    group.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if args.command == "breakdown":
        if args.step is None:
            parser.error("breakdown needs --step")
        sizes = [int(v) for v in args.sample_sizes.split(",")]
        breakdown(args.results_path, args.run, args.step, sizes, args.repeats)
        return 0
    if args.command == "run":
        return run(args.results_path, args.committed, args.poll)
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
