import os
from pathlib import Path

import pytest

# Tests read the offline UCI copies beside the checkout unless told otherwise.
_SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "uci"
os.environ.setdefault("DGP_SNR_DATA", str(_SHARED))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def pytest_addoption(parser):
    parser.addoption(
        "--runslow", action="store_true", default=False, help="run the slow reproduction tests"
    )


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow"):
        return
    skip = pytest.mark.skip(reason="slow reproduction run; use --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
