"""Draws a figure or table of the paper from the results (the work is dgp_snr.plotting).

    python experiments/plot.py figure_1 [--results_path results] [--figures_dir figures]
    python experiments/plot.py all

Names: figure_1, figure_2, figure_3, figure_4, figure_5, figure_8, figure_9, table_1 (or all).
Each first prints the exact commands that create its missing inputs (train.py, then
sample_gradients.py, then evaluate.py), then draws what exists into <figures_dir>/<name>.pdf and
.png (table_1 prints the table and the Wilcoxon tests). --profile reduced|smoke (and the overrides
--iterations, --splits, --datasets, --M, --num_estimates) draw a profile's runs, as sweep.py does.
Exit status: 0 when drawn (possibly from
partial data; with `all`, when at least one was drawn), 2 when none of the inputs exist, 1 for a
bad input (e.g. a corrupt dump or data file, or a dump recorded with other settings than asked,
such as an older checkpoint or another --num_estimates: one line names it and the
sample_gradients.py --rebuild command). Beside each figure, <name>.inputs.json records the
identity of every input it was drawn from.
"""

import sys
from argparse import ArgumentParser
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from dgp_snr.scripting import import_tensorflow_quietly  # noqa: E402

import_tensorflow_quietly()

from dgp_snr.plotting import FIGURES, FIGURES_DIR, MissingInputsError  # noqa: E402
from dgp_snr.sweep.cli import add_profile_arguments, profile_from_args  # noqa: E402


def main(argv=None) -> int:
    parser = ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("figure", choices=sorted(FIGURES) + ["all"], help="what to draw")
    parser.add_argument(
        "--results_path", default="results", help="where the runs live (train.py's results_path)"
    )
    parser.add_argument("--figures_dir", default=FIGURES_DIR, help="where figures are written")
    # The profile (default: the paper's) sets each figure's runs, K grids, data points, ...
    add_profile_arguments(parser)
    args = parser.parse_args(argv)
    profile, _ = profile_from_args(args)
    names = sorted(FIGURES) if args.figure == "all" else [args.figure]
    errors, nothing = 0, 0
    for name in names:
        try:
            FIGURES[name](args.results_path, args.figures_dir, **profile.params(name))
        except MissingInputsError as err:
            print(f"plot.py: {err}", file=sys.stderr)
            nothing += 1
        except (ValueError, FileNotFoundError) as err:
            print(f"plot.py: {name}: {err}", file=sys.stderr)
            errors += 1
    if errors:
        return 1
    return 2 if nothing == len(names) else 0


if __name__ == "__main__":
    sys.exit(main())
