"""Evaluates the runs of Table 1 or Figure 4 and writes their figure data files (the work is
dgp_snr.evaluation).

    python experiments/evaluate.py table_1 [--results_path results]
    python experiments/evaluate.py figure_4 [--results_path results]
    python experiments/evaluate.py runs RUN_NAME [RUN_NAME ...] [--elbo]

table_1: depth-2, K = 50 runs, REG and DReG: the test log-likelihood (10,000 samples, repeated
10 times) and the full-data train ELBO (10 repeats), written to
<results_path>/figure_data/table_1_tll.txt and table_1_elbo.txt. figure_4: the REG-trained
runs with learned and with fixed q(w): the test log-likelihood, written to
<results_path>/figure_data/figure_4.txt. Each line: dataset, flag (T: DReG / fixq), split, then
the repeated values. As in the reference, per dataset the first 20 (Table 1) or 10 (Figure 4)
splits among 0..40 whose runs all reached --iterations (default 300000) enter, evaluated at
that step; the splits used and skipped are printed. --preview lets unfinished runs in at their
latest checkpoint and marks every output "PREVIEW: unfinished runs". Results are cached per run
in <run>/evaluation.json. Runs still to train are listed with their train.py commands.
Exit status: 0 when every dataset has its splits, 3 when some are short, 2 when none qualify.
"""

import sys
from argparse import ArgumentParser
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from dgp_snr.scripting import (  # noqa: E402
    add_renamed_argument,
    import_tensorflow_quietly,
    one_line_warnings,
)

import_tensorflow_quietly()

from dgp_snr.evaluation import DEFAULT_MAX_ELEMENTS  # noqa: E402
from dgp_snr.io import describe_write_error  # noqa: E402
from dgp_snr.protocol import (  # noqa: E402
    ELBO_REPEATS,
    PAPER_ITERATIONS,
    TEST_REPEATS,
    TEST_SAMPLES,
    evaluate_target,
)
from dgp_snr.protocol.profiles import PROFILES  # noqa: E402
from dgp_snr.protocol.targets import target_spec  # noqa: E402
from dgp_snr.run_evaluation import evaluate_run  # noqa: E402


def _fill_from_protocol(args) -> None:
    """Unset options take the profile's definition of the target (protocol.targets)."""
    job = None
    if args.target in ("table_1", "figure_4"):
        profile = PROFILES[args.profile]
        job = target_spec(args.target, args.results_path, **profile.params(args.target)).evaluation
    defaults = dict(
        splits=job.splits if job else None,
        iterations=job.iterations if job else PAPER_ITERATIONS,
        num_predictive_samples=job.num_predictive_samples if job else TEST_SAMPLES,
        repeats=job.repeats if job else TEST_REPEATS,
        elbo_repeats=job.elbo_repeats if job else ELBO_REPEATS,
    )
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.datasets is not None:
        args.datasets = [d.strip() for d in args.datasets.split(",") if d.strip()]
    elif job is not None:
        args.datasets = list(job.datasets)


def main(argv=None) -> int:
    parser = ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("target", choices=["table_1", "figure_4", "runs"])
    parser.add_argument("names", nargs="*", help="run names (target 'runs' only)")
    parser.add_argument("--results_path", default="results")
    parser.add_argument(
        "--profile",
        choices=sorted(PROFILES),
        default="paper",
        help="the target's definition (datasets, splits, iterations, samples) gives the defaults",
    )
    parser.add_argument("--datasets", default=None, help="comma list (default: the target's)")
    parser.add_argument("--splits", type=int, default=None, help="default: 20 / 10")
    parser.add_argument(
        "--iterations",
        type=int,
        default=None,
        help="the iteration count a run must reach to enter (the paper's: 300000)",
    )
    parser.add_argument(
        "--preview",
        action="store_true",
        help="let unfinished runs enter at their latest checkpoint (outputs marked PREVIEW)",
    )
    add_renamed_argument(  # --num_samples: the reference's name (S here, R elsewhere)
        parser, "--num_predictive_samples", "--num_samples", type=int, default=None,
        help=f"predictive samples S (default {TEST_SAMPLES})",
    )  # fmt: skip
    parser.add_argument("--repeats", type=int, default=None, help=f"{TEST_REPEATS}")
    parser.add_argument("--elbo_repeats", type=int, default=None, help=f"{ELBO_REPEATS}")
    parser.add_argument("--elbo", action="store_true", help="target 'runs': also the ELBO")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--step", type=int, default=None, help="target 'runs': the checkpoint (default: latest)"
    )
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
    _fill_from_protocol(args)
    common = dict(
        num_predictive_samples=args.num_predictive_samples,
        repeats=args.repeats,
        elbo_repeats=args.elbo_repeats,
        seed=args.seed,
        max_elements=args.max_elements,
        recompute=args.recompute,
        progress=args.progress,
    )
    try:
        if args.target == "runs":
            if not args.names:
                parser.error("target 'runs' needs at least one run name")
            for name in args.names:
                result = evaluate_run(
                    Path(args.results_path) / name, elbo=args.elbo, step=args.step, **common
                )
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
        if args.step is not None:
            parser.error("--step is for target 'runs'; targets use --iterations")
        report = evaluate_target(
            args.target,
            args.results_path,
            datasets=args.datasets,
            splits=args.splits,
            iterations=args.iterations,
            preview=args.preview,
            **common,
        )
    except (ValueError, FileNotFoundError, FloatingPointError) as err:
        print(f"evaluate.py: {err}", file=sys.stderr)
        return 1
    except OSError as err:  # e.g. a read-only results folder; the values were printed above
        print(f"evaluate.py: {describe_write_error(err)}", file=sys.stderr)
        return 1
    for metric, path in report.written.items():
        print(f"wrote {path} ({len(report.evaluated)} runs)")
    if not report.evaluated:
        print(
            f"evaluate.py: no split of {args.target} has all its runs at {args.iterations} "
            f"iterations under {args.results_path}; train them with the commands above "
            "(or pass --preview)",
            file=sys.stderr,
        )
        return 2
    return 3 if report.missing else 0


if __name__ == "__main__":
    sys.exit(main())
