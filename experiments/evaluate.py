"""Evaluates the runs of Table 1 or Figure 4 and writes their figure data files (the work is
dgp_snr.evaluation).

    python experiments/evaluate.py table_1 [--results_path results]
    python experiments/evaluate.py figure_4 [--results_path results]
    python experiments/evaluate.py runs RUN_NAME [RUN_NAME ...] [--elbo]

table_1: depth-2, K = 50 runs, REG and DReG, splits 0-19: the test log-likelihood (10,000
samples, repeated 10 times) and the full-data train ELBO (10 repeats) of each run's latest
checkpoint, written to <results_path>/figure_data/table_1_tll.txt and table_1_elbo.txt.
figure_4: the REG-trained runs with learned and with fixed q(w), splits 0-9: the test
log-likelihood, written to <results_path>/figure_data/figure_4.txt. Each line: dataset, flag
(T: DReG / fixq), split, then the repeated values. Results are cached per run in
<run>/evaluation.json. Runs without a checkpoint are listed with their train.py commands.
Exit status: 0 when every run was evaluated, 3 when some were missing, 2 when none exist.
"""

import sys
from argparse import ArgumentParser
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from dgp_snr.scripting import import_tensorflow_quietly, one_line_warnings  # noqa: E402

import_tensorflow_quietly()

from dgp_snr.evaluation import (  # noqa: E402
    DEFAULT_MAX_ELEMENTS,
    ELBO_REPEATS,
    TEST_REPEATS,
    TEST_SAMPLES,
    evaluate_run,
    evaluate_target,
)
from dgp_snr.io import describe_write_error  # noqa: E402


def main(argv=None) -> int:
    parser = ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("target", choices=["table_1", "figure_4", "runs"])
    parser.add_argument("names", nargs="*", help="run names (target 'runs' only)")
    parser.add_argument("--results_path", default="results")
    parser.add_argument("--splits", type=int, default=None, help="default: 20 / 10")
    parser.add_argument("--num_samples", type=int, default=TEST_SAMPLES)
    parser.add_argument("--repeats", type=int, default=TEST_REPEATS)
    parser.add_argument("--elbo_repeats", type=int, default=ELBO_REPEATS)
    parser.add_argument("--elbo", action="store_true", help="target 'runs': also the ELBO")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--step", type=int, default=None, help="default: latest checkpoint")
    parser.add_argument(
        "--max_elements",
        type=int,
        default=DEFAULT_MAX_ELEMENTS,
        help="memory bound: points x samples x M x latent GPs per compiled call",
    )
    parser.add_argument("--recompute", action="store_true", help="ignore cached results")
    parser.add_argument("--progress", action="store_true", help="progress bars")
    args = parser.parse_intermixed_args(argv)
    one_line_warnings("evaluate.py")
    args.results_path = str(Path(args.results_path).expanduser())
    common = dict(
        num_samples=args.num_samples,
        repeats=args.repeats,
        elbo_repeats=args.elbo_repeats,
        seed=args.seed,
        step=args.step,
        max_elements=args.max_elements,
        recompute=args.recompute,
        progress=args.progress,
    )
    try:
        if args.target == "runs":
            if not args.names:
                parser.error("target 'runs' needs at least one run name")
            for name in args.names:
                result = evaluate_run(Path(args.results_path) / name, elbo=args.elbo, **common)
                print(f"{name} (step {result.step})")
                for metric in ("test_ll", "train_elbo"):
                    values = getattr(result, metric)
                    if values is not None:
                        print(
                            f"  {metric}: mean {values.mean():.6g}, std {values.std():.3g}, "
                            f"values {' '.join(f'{v:.6g}' for v in values)}"
                        )
            return 0
        if args.names:
            parser.error(f"target {args.target!r} takes no run names")
        report = evaluate_target(args.target, args.results_path, splits=args.splits, **common)
    except (ValueError, FloatingPointError) as err:
        print(f"evaluate.py: {err}", file=sys.stderr)
        return 1
    except OSError as err:  # e.g. a read-only results folder; the values were printed above
        print(f"evaluate.py: {describe_write_error(err)}", file=sys.stderr)
        return 1
    for metric, path in report.written.items():
        print(f"wrote {path} ({len(report.evaluated)} runs)")
    if not report.evaluated:
        print(
            f"evaluate.py: no run of {args.target} has a checkpoint under "
            f"{args.results_path}; train them with the commands above",
            file=sys.stderr,
        )
        return 2
    return 3 if report.missing else 0


if __name__ == "__main__":
    sys.exit(main())
