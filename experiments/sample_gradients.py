"""Samples encoder gradients of trained runs for SNR studies (the work is
dgp_snr.sample_run.sample_gradients).

    python experiments/sample_gradients.py RUN [RUN ...] --ks 1,10,100 --estimator dreg \
        [--results_path results] [--num_estimates 1000] [--batch_size 1] [--num_datapoints 10] \
        [--save_aggregates] [--step 5000] [--rebuild]

Writes <run>/gradients/<estimator>_bs<B>_K<K>[_dp<i>][_agg].npz (compressed). Each dump
records what made it (checkpoint step, K, batch, data point, estimator, number of estimates,
seed, precision); an existing dump whose record matches is skipped. One that does not match,
or is corrupt, is an error (one line naming the file, what it holds and what was asked)
unless --rebuild, which samples it again and replaces it (keeping it as <name>.stale when it
holds more estimates).
"""

import argparse
import sys
from pathlib import Path
from typing import List, Optional

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from dgp_snr.scripting import add_renamed_argument  # noqa: E402 (light: no TensorFlow)

ESTIMATORS = ("reg", "stl", "dreg")  # checked again by the library


def _ks(text: str) -> List[int]:
    try:
        ks = [int(k) for k in text.split(",") if k.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}")
    return ks  # their range: the library's one check (estimators.check_num_importance_samples)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", help="run names (directories)")
    p.add_argument(
        "--results_path", default=None, help="folder holding the runs (default: runs are paths)"
    )
    p.add_argument("--ks", type=_ks, required=True, help="comma list of K, e.g. 1,10,100")
    add_renamed_argument(  # --num_samples: the reference's name (R here, S in evaluate.py)
        p,
        "--num_estimates",
        "--num_samples",
        type=int,
        default=1000,
        help="estimates per file (R)",
    )
    p.add_argument("--batch_size", type=int, default=1)
    p.add_argument(
        "--num_datapoints", type=int, default=1, help="with batch size 1: points 0..n-1"
    )
    p.add_argument("--estimator", choices=ESTIMATORS, default="dreg")
    p.add_argument(
        "--save_aggregates",
        action="store_true",
        help="store per-parameter mean and std only (what the SNR figures 1, 3, 8, 9 read; "
        "a few KB per dump instead of about 4 MB at R = 1000)",
    )
    p.add_argument("--step", type=int, default=None, help="checkpoint step (default: latest)")
    p.add_argument(
        "--rebuild",
        action="store_true",
        help="resample dumps recorded with other settings (or corrupt) instead of refusing",
    )
    p.add_argument("--no_progress", action="store_true")
    return p


def main(argv: Optional[List[str]] = None) -> int:
    args = parser().parse_args(argv)
    # Imported after parsing, so that usage errors come without TensorFlow's start-up.
    from dgp_snr.scripting import import_tensorflow_quietly, one_line_warnings

    import_tensorflow_quietly()
    one_line_warnings("sample_gradients.py")
    from dgp_snr.io import describe_write_error
    from dgp_snr.sample_run import sample_gradients

    for run in args.runs:
        run_dir = Path(args.results_path).expanduser() / run if args.results_path else Path(run)
        try:
            written = sample_gradients(
                run_dir,
                args.ks,
                num_estimates=args.num_estimates,
                batch_size=args.batch_size,
                num_datapoints=args.num_datapoints,
                estimator=args.estimator,
                save_aggregates=args.save_aggregates,
                step=args.step,
                progress=not args.no_progress,
                rebuild=args.rebuild,
            )
        except ValueError as err:
            print(f"sample_gradients.py: error: {err}", file=sys.stderr)
            return 2
        except OSError as err:  # FileNotFoundError, or a write failure naming its path
            text = str(err) if isinstance(err, FileNotFoundError) else describe_write_error(err)
            print(f"sample_gradients.py: error: {text}", file=sys.stderr)
            return 2
        print(f"{run_dir}: wrote {len(written)} file(s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
