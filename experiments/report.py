"""Exports targets' results as small committed evidence (the work is dgp_snr.reproduction):
per target <out>/<target>/data.csv (tidy figure data), <target>.png/.pdf drawn from that CSV,
and meta.json (profile, sweep command, git commit, wall time, date); prints the log-log slopes
of mean SNR against K (theory: about -1/2 for REG, +1/2 for DReG) over the K ranges declared
before fitting: all K, and K >= 10 where a curve has 3 or more values of K there.

    python experiments/report.py figure_1 figure_2 --profile reduced \
        [--results_path results/reduced] [--out reproduction] [--command "..."] [--wall_time_s N]

The figure's parameters are the profile's (as sweep.py and plot.py use them, overrides
included). Besides the paper's targets, `learning_curves` exports the test log-likelihood that
training logged against the iterations, for the runs of Table 1 and Figure 4 under the profile
(it has no sweep job: the curves come from the runs' training logs).

    python experiments/report.py --markdown   # REPRODUCTION.md's generated tables, from the CSVs

`--markdown` rewrites every generated block of reproduction/REPRODUCTION.md (dgp_snr.report)
from the committed CSVs and exports nothing.

    python experiments/report.py --slopes [figure_1 ...]   # the committed targets' slopes

`--slopes` prints the slopes of the targets' data.csv under --out (every SNR-vs-K target when
none is named) and exports nothing.

Exit status: 0 when every target was exported (possibly from partial data), 2 when one had no
inputs at all, 1 for a bad input.
"""

import sys
from argparse import ArgumentParser
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout

from dgp_snr.scripting import import_tensorflow_quietly  # noqa: E402

import_tensorflow_quietly()

from dgp_snr.plotting import TIDY_FIGURES, MissingInputsError  # noqa: E402
from dgp_snr.report import write_report  # noqa: E402
from dgp_snr.reproduction import DATA_FILE, export_target, read_data  # noqa: E402
from dgp_snr.slopes import MIN_SLOPE_KS, SLOPE_RANGES, curve_slopes  # noqa: E402
from dgp_snr.sweep.cli import add_profile_arguments, profile_from_args  # noqa: E402


def print_slopes(target_dir: Path) -> None:
    """The log-log slopes per estimator (and per dataset, depth and batch size where the frame
    has several) over the K ranges declared before fitting (dgp_snr.slopes.SLOPE_RANGES),
    for SNR-vs-K data (columns estimator, K, snr) with 2 or more values of K; a range with
    fewer than 3 values of K prints "too few points", not an interval."""
    df = read_data(target_dir / DATA_FILE)
    if not {"estimator", "K", "snr"} <= set(df.columns) or df["K"].nunique() < 2:
        return
    ranges = "; ".join(r.name for r in SLOPE_RANGES)
    print(
        f"{target_dir.name}: log-log slopes of mean SNR against K over the declared K ranges "
        f"({ranges}); a range with fewer than {MIN_SLOPE_KS} values of K is not fitted; "
        "95% t-intervals with n - 2 degrees of freedom"
    )
    try:
        slopes = curve_slopes(df)
    except ValueError as err:  # a mean SNR of 0: no log-log fit for this target
        print(f"{target_dir.name}: no slopes: {err}")
        return
    for curve, fit in slopes:
        where = ", ".join(f"{c}={v}" for c, v in curve.items())
        name = target_dir.name + (f" ({where})" if where else "")
        print(f"{name}: {fit}")


def main(argv=None) -> int:
    parser = ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("targets", nargs="*", help=f"of: {', '.join(sorted(TIDY_FIGURES))}")
    parser.add_argument(
        "--markdown", action="store_true", help="regenerate REPRODUCTION.md's tables only"
    )
    parser.add_argument(
        "--slopes",
        action="store_true",
        help="print the slopes of the targets' committed data in --out only (default: all)",
    )
    parser.add_argument("--results_path", default=None, help="default: results/<profile>")
    parser.add_argument("--out", default="reproduction", help="the evidence folder")
    parser.add_argument("--command", default=None, help="the sweep command that made the runs")
    parser.add_argument("--wall_time_s", type=float, default=None, help="the sweep's wall time")
    add_profile_arguments(parser, default="reduced")
    args = parser.parse_args(argv)
    if args.markdown:
        print(f"report.py: wrote {write_report(ROOT)}")
        return 0
    if args.slopes:
        for target_dir in sorted(p.parent for p in Path(args.out).glob(f"*/{DATA_FILE}")):
            if not args.targets or target_dir.name in args.targets:
                print_slopes(target_dir)
        return 0
    if not args.targets:
        parser.error("name at least one target, or --markdown")
    unknown = sorted(set(args.targets) - set(TIDY_FIGURES))
    if unknown:
        parser.error(f"unknown targets {unknown}; known: {', '.join(sorted(TIDY_FIGURES))}")
    profile, _ = profile_from_args(args)
    results_path = args.results_path or str(Path("results") / profile.name)
    if args.command is None:
        print("report.py: no --command given; meta.json records it as null", file=sys.stderr)
    status = 0
    for target in args.targets:
        try:
            target_dir = export_target(
                target,
                results_path,
                args.out,
                profile_name=profile.name,
                command=args.command,
                wall_time_s=args.wall_time_s,
                **profile.params(target),
            )
        except MissingInputsError as err:
            print(f"report.py: {err}", file=sys.stderr)
            status = max(status, 2)
            continue
        except (ValueError, FileNotFoundError) as err:
            print(f"report.py: {target}: {err}", file=sys.stderr)
            status = max(status, 1)
            continue
        print(f"report.py: exported {target} to {target_dir}")
        if TIDY_FIGURES[target].text is not None:  # a table: print it, as plot.py does
            print(TIDY_FIGURES[target].text(read_data(target_dir / DATA_FILE)))
        print_slopes(target_dir)
    return status


if __name__ == "__main__":
    sys.exit(main())
