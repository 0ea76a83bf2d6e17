import os
from pathlib import Path

import pytest

# Tests read the offline UCI copies beside the checkout unless told otherwise.
_SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "uci"
os.environ.setdefault("DGP_SNR_DATA", str(_SHARED))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory):
    """No test reads or writes the user's real download cache."""
    old = os.environ.get("DGP_SNR_CACHE")
    os.environ["DGP_SNR_CACHE"] = str(tmp_path_factory.mktemp("dgp_snr_cache"))
    yield
    if old is None:
        os.environ.pop("DGP_SNR_CACHE", None)
    else:
        os.environ["DGP_SNR_CACHE"] = old


def pytest_addoption(parser):
    parser.addoption(
        "--runslow", action="store_true", default=False, help="run the slow reproduction tests"
    )


def pytest_collection_modifyitems(config, items):
    # The SLURM tests start daemons as root: only when asked for by name (pytest -m slurm).
    if "slurm" not in (config.getoption("markexpr") or ""):
        skip_slurm = pytest.mark.skip(reason="starts a local SLURM; use pytest -m slurm")
        for item in items:
            if "slurm" in item.keywords:
                item.add_marker(skip_slurm)
    # Long end-to-end fault and pipeline tests: only when asked for (pytest -m long).
    if "long" not in (config.getoption("markexpr") or ""):
        skip_long = pytest.mark.skip(reason="long end-to-end test; use pytest -m long")
        for item in items:
            if "long" in item.keywords:
                item.add_marker(skip_long)
    if config.getoption("--runslow"):
        return
    skip = pytest.mark.skip(reason="slow reproduction run; use --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
