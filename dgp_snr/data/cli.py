"""Command line: ``dgp-snr-data {list, fetch, install-wilson}`` (or ``python -m dgp_snr.data``)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .core import DataError
from .registry import REGISTRY, FileDataset, get_dataset
from .storage import CACHE_ENV, DATA_ENV, cache_dir, data_dir
from .wilson import install_wilson

_EPILOG = f"""\
Data are looked for in ${DATA_ENV}, then in the cache (${CACHE_ENV}); missing UCI sets are
downloaded into the cache on first use. The "wilson_" sets must be installed from uci.tar.gz.
"""


def _list(_: argparse.Namespace) -> int:
    print(f"data dir: {data_dir() or f'(${DATA_ENV} not set)'}")
    print(f"cache:    {cache_dir()}")
    damaged = 0
    for name, dataset in REGISTRY.items():
        size = f"N={dataset.N:<6} D={dataset.D:<3}" if isinstance(dataset, FileDataset) else ""
        status = dataset.status()
        damaged += status.startswith("damaged")
        print(f"{name:<16} {size:<15} {status}")
    return 1 if damaged else 0


def _fetch(args: argparse.Namespace) -> int:
    for name in args.names:
        dataset = get_dataset(name)
        if not isinstance(dataset, FileDataset):
            print(f"{name}: synthetic, nothing to fetch")
            continue
        found = dataset.locate()
        path, entry = found if found is not None else dataset.fetch()
        dataset.read(path, entry)  # a damaged file is an error, not "found"
        print(f"{name}: {path}")
    return 0


def _install_wilson(args: argparse.Namespace) -> int:
    installed = install_wilson(args.tarball, names=args.names, target_dir=args.target_dir)
    for name, path in installed.items():
        print(f"installed {name}: {path}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the data command line; returns the exit status (0 ok, 1 data error or a damaged file,
    2 usage)."""
    parser = argparse.ArgumentParser(
        prog="dgp-snr-data",
        description="Manage the regression datasets of dgp-snr.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    listing = commands.add_parser("list", help="list datasets and where they are found")
    listing.set_defaults(run=_list)

    fetch = commands.add_parser("fetch", help="download UCI datasets into the cache now")
    fetch.add_argument("names", nargs="+", metavar="NAME")
    fetch.set_defaults(run=_fetch)

    wilson = commands.add_parser(
        "install-wilson",
        help="install wilson_ datasets from uci.tar.gz",
        description="Install the wilson_ datasets from the Wilson UCI collection "
        "(uci.tar.gz, from https://drive.google.com/open?id=0BxWe_IuTnMFcYXhxdUNwRHBKTlU).",
    )
    wilson.add_argument("tarball", metavar="PATH_TO_uci.tar.gz")
    wilson.add_argument(
        "--names",
        nargs="+",
        default=None,
        metavar="NAME",
        help="datasets to install, e.g. wilson_forest solar (default: forest, solar, pol)",
    )
    wilson.add_argument("--target-dir", default=None, help="install here instead of the cache")
    wilson.set_defaults(run=_install_wilson)

    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except DataError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
