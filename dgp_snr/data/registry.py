"""The dataset registry and :func:`get_regression_data`.

Adding a dataset is one entry: ``register(UCIDataset(name=..., N=..., D=..., url_path=...,
parser=...))`` for a UCI download, ``register(FileDataset(...))`` for a file the user must supply,
``register(SyntheticDataset(name=..., make=...))`` for generated data.
"""

from __future__ import annotations

import importlib.util
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote

import numpy as np

from . import parsers, synthetic
from .core import DataError, DataWarning, RegressionData, check_split, split_table
from .download import download, uci_url
from .storage import DATA_ENV, cache_dir, data_dir, find_prepared, read_prepared, write_prepared

WILSON_DOWNLOAD_URL = "https://drive.google.com/open?id=0BxWe_IuTnMFcYXhxdUNwRHBKTlU"
WILSON_PREFIX = "wilson_"


@dataclass(frozen=True, kw_only=True)
class Dataset:
    """A named dataset; subclasses say where its data come from."""

    name: str
    description: str = ""

    def load(self, split: int) -> RegressionData:
        raise NotImplementedError

    def status(self) -> str:
        """Where the data would come from now, for ``dgp-snr-data list``."""
        raise NotImplementedError


@dataclass(frozen=True, kw_only=True)
class SyntheticDataset(Dataset):
    """Data generated in memory by ``make(split)``."""

    make: Callable[[int], RegressionData]

    def load(self, split: int) -> RegressionData:
        return self.make(split)

    def status(self) -> str:
        return "synthetic"


@dataclass(frozen=True, kw_only=True)
class FileDataset(Dataset):
    """A table of N points with D inputs kept as a prepared ``<name>.csv.gz`` file.

    ``reference_sha256`` is the checksum of the project's reference copy (the shared
    ``MANIFEST.json``); files prepared here from an original source are compared with it.
    """

    N: int
    D: int
    reference_sha256: str | None = None
    hint: str = ""

    @property
    def shape(self) -> tuple[int, int]:
        return (self.N, self.D + 1)

    def locate(self) -> tuple[Path, dict | None] | None:
        """The prepared file and its manifest entry: ``$DGP_SNR_DATA`` first, then the cache."""
        for directory in (data_dir(), cache_dir()):
            found = find_prepared(self.name, directory)
            if found is not None:
                return found
        return None

    def fetch(self) -> tuple[Path, dict]:
        """Obtain the prepared file when it is nowhere on disk (here: explain how to)."""
        raise DataError(self.missing_message())

    def how_to_obtain(self) -> str:
        return (
            f"Put a prepared copy ({self.name}.csv.gz: comma separated, no header, {self.D} "
            f"input columns then the target, {self.N} rows) in one of the directories above."
            + (f" {self.hint}" if self.hint else "")
        )

    def missing_message(self) -> str:
        return (
            f"dataset {self.name!r} is not available. {_searched_locations()}\n"
            f"{self.how_to_obtain()}"
        )

    def read(self, path: Path, entry: dict | None) -> np.ndarray:
        """The verified table of the prepared file (DataError naming it when damaged)."""
        return read_prepared(path, self.name, self.shape, entry, self.reference_sha256)

    def load(self, split: int) -> RegressionData:
        found = self.locate()
        path, entry = found if found is not None else self.fetch()
        return split_table(self.name, split, self.read(path, entry))

    def found_status(self) -> str | None:
        """ "found: <path>" for a file that reads and verifies, "damaged: <why>" for one that
        does not, None when there is no file."""
        found = self.locate()
        if found is None:
            return None
        try:
            self.read(*found)
        except DataError as error:
            return f"damaged: {error}"
        return f"found: {found[0]}"

    def status(self) -> str:
        return self.found_status() or "missing"

    def check_reference(self, entry: dict, origin: str) -> None:
        """Warn when a freshly prepared file differs from the reference copy."""
        if self.reference_sha256 and entry["sha256_uncompressed"] != self.reference_sha256:
            warnings.warn(
                f"{self.name}: the data prepared from {origin} differ from the reference copy "
                f"this project was checked against (sha256 {entry['sha256_uncompressed']} != "
                f"{self.reference_sha256}); results may not match the paper's splits exactly",
                DataWarning,
                stacklevel=2,
            )


@dataclass(frozen=True, kw_only=True)
class UCIDataset(FileDataset):
    """A dataset downloadable from the UCI repository and parsed from its original format.

    ``url_path`` is relative to the UCI base URL; ``parser`` maps the downloaded file to the
    table (N, D + 1); ``requires`` lists optional modules the parser needs.
    """

    url_path: str
    parser: Callable[[Path], np.ndarray]
    requires: tuple[str, ...] = field(default=())

    @property
    def url(self) -> str:
        return uci_url(self.url_path)

    def fetch(self) -> tuple[Path, dict]:
        missing = [m for m in self.requires if importlib.util.find_spec(m) is None]
        if missing:
            raise DataError(
                f"dataset {self.name!r} is not on disk, and parsing its UCI file {self.url_path} "
                f"needs {', '.join(missing)} (pip install {' '.join(missing)}). "
                f"{_searched_locations()}\nAlternatively: {self.how_to_obtain()}"
            )
        target_dir = cache_dir()
        target_dir.mkdir(parents=True, exist_ok=True)
        url = self.url
        # The raw download lives in a private temporary directory that is always removed.
        with tempfile.TemporaryDirectory(dir=target_dir, prefix=f".{self.name}-") as temp:
            raw = Path(temp) / (unquote(self.url_path.rsplit("/", 1)[-1]) or "download")
            download(url, raw)
            table = self.parser(raw)
            if table.shape != self.shape:
                raise DataError(
                    f"{url} parsed to {table.shape[0]} rows x {table.shape[1]} columns, but "
                    f"dataset {self.name!r} has N={self.N} points with D={self.D} inputs plus a "
                    f"target; nothing was cached"
                )
            entry = write_prepared(target_dir, self.name, table, source=url)
        self.check_reference(entry, url)
        return target_dir / entry["file"], entry

    def status(self) -> str:
        return self.found_status() or f"downloadable: {self.url}"


@dataclass(frozen=True, kw_only=True)
class WilsonDataset(FileDataset):
    """A set from Andrew Wilson's UCI collection (``uci.tar.gz``, ``uci/<short>/<short>.mat``).

    It cannot be downloaded automatically; :func:`dgp_snr.data.install_wilson` installs it.
    """

    @property
    def short_name(self) -> str:
        return self.name[len(WILSON_PREFIX) :]

    @property
    def member_suffix(self) -> str:
        return f"{self.short_name}/{self.short_name}.mat"

    def how_to_obtain(self) -> str:
        return (
            f"It comes from the Wilson UCI collection (uci.tar.gz, member "
            f"uci/{self.member_suffix}), which cannot be downloaded automatically. Download "
            f"uci.tar.gz from {WILSON_DOWNLOAD_URL} and run\n"
            f"    dgp-snr-data install-wilson /path/to/uci.tar.gz --names {self.name}\n"
            f"(or: python -m dgp_snr.data install-wilson ...), which installs it into the cache."
        )

    def status(self) -> str:
        return self.found_status() or "missing: needs install-wilson"


def _searched_locations() -> str:
    directory = data_dir()
    if directory is None:
        first = f"${DATA_ENV} is not set"
    elif not directory.is_dir():
        first = f"${DATA_ENV}={directory} (does not exist)"
    else:
        first = f"${DATA_ENV}={directory}"
    return f"Searched: {first}; cache {cache_dir()} (set $DGP_SNR_CACHE to change it)."


#: All known datasets by name. Prefer :func:`register` to adding entries by hand.
REGISTRY: dict[str, Dataset] = {}


def register(dataset: Dataset, replace: bool = False) -> Dataset:
    """Add ``dataset`` to the registry (an existing name is an error unless ``replace``)."""
    if dataset.name in REGISTRY and not replace:
        raise DataError(f"dataset {dataset.name!r} is already registered")
    REGISTRY[dataset.name] = dataset
    return dataset


def get_dataset(name: str) -> Dataset:
    """The registry entry of ``name``; unknown names raise a DataError listing the known ones."""
    if not isinstance(name, str) or name not in REGISTRY:
        raise DataError(f"unknown dataset {name!r}; known datasets: {', '.join(REGISTRY)}")
    return REGISTRY[name]


def get_regression_data(name: str, split: int = 0) -> RegressionData:
    """Load split ``split`` (an int in [0, 100)) of dataset ``name``.

    See :mod:`dgp_snr.data.core` for the preprocessing and :mod:`dgp_snr.data.storage` for where
    files are looked for. Raises DataError for unknown names, bad splits and unavailable or
    damaged data.
    """
    dataset = get_dataset(name)
    return dataset.load(check_split(split))


_UCI = "UCI Machine Learning Repository: "

register(
    UCIDataset(
        name="boston",
        N=506,
        D=13,
        url_path="housing/housing.data",
        parser=parsers.parse_whitespace,
        description=_UCI + "Housing",
        reference_sha256="bbb99c2bb3ea5c12da4fd204648c310b7a48f504e0fcaa6bbb4f4f57174c5514",
    )
)
register(
    UCIDataset(
        name="concrete",
        N=1030,
        D=8,
        url_path="concrete/compressive/Concrete_Data.xls",
        parser=parsers.parse_concrete,
        requires=("xlrd",),
        description=_UCI + "Concrete Compressive Strength",
        reference_sha256="5a128e9b3691404f10718d636a0d55db242e7d0dac572d538d127e2cd39459b9",
    )
)
register(
    UCIDataset(
        name="energy",
        N=768,
        D=8,
        url_path="00242/ENB2012_data.xlsx",
        parser=parsers.parse_energy,
        description=_UCI + "Energy Efficiency, first target (heating load)",
        reference_sha256="46dcb8d535014350bb833c51bb492fb7bce9d0379ebedf5482ba01c5da150c40",
    )
)
register(
    FileDataset(
        name="kin8nm",
        N=8192,
        D=8,
        description="kin8nm (Delve family, as used in UCI regression benchmarks)",
        hint="kin8nm is not hosted by UCI, so it is not downloaded automatically; a copy is "
        "e.g. OpenML data set 189 (https://www.openml.org/d/189): 8 inputs, then y.",
        reference_sha256="5bea8b503d19f127c6e7f3842dcbbc5e66c5dd7b5218b2f4e214fe35ef8d5bda",
    )
)
register(
    UCIDataset(
        name="naval",
        N=11934,
        D=14,
        url_path="00316/UCI%20CBM%20Dataset.zip",
        parser=parsers.parse_naval,
        description=_UCI + "Condition Based Maintenance of Naval Propulsion Plants, "
        "first target (compressor decay)",
        reference_sha256="d7cc31e6a77d2425bb1399371478f64020492260b6dd6920c1d934f811031e47",
    )
)
register(
    UCIDataset(
        name="power",
        N=9568,
        D=4,
        url_path="00294/CCPP.zip",
        parser=parsers.parse_power,
        description=_UCI + "Combined Cycle Power Plant",
        reference_sha256="cdcd6986360350a188cc851769caec70ebdaa75791975a63cec7a6488f1207bc",
    )
)
register(
    UCIDataset(
        name="protein",
        N=45730,
        D=9,
        url_path="00265/CASP.csv",
        parser=parsers.parse_protein,
        description=_UCI + "Physicochemical Properties of Protein Tertiary Structure",
        reference_sha256="e7a2c4569eaae07b4053520bbd4e9038cb8114d792204214769905298181c893",
    )
)
register(
    UCIDataset(
        name="winered",
        N=1599,
        D=11,
        url_path="wine-quality/winequality-red.csv",
        parser=parsers.parse_wine,
        description=_UCI + "Wine Quality (red)",
        reference_sha256="31ef8eff38b3ce66612fe84c2033237bf5618506add2c47ad5b6046a8d97511c",
    )
)
register(
    UCIDataset(
        name="winewhite",
        N=4898,
        D=11,
        url_path="wine-quality/winequality-white.csv",
        parser=parsers.parse_wine,
        description=_UCI + "Wine Quality (white)",
        reference_sha256="c406e96a37e87fdef305a07816f4fa1a7996bf708888ab2e1f64d38c49554424",
    )
)
register(
    UCIDataset(
        name="yacht",
        N=308,
        D=6,
        url_path="00243/yacht_hydrodynamics.data",
        parser=parsers.parse_whitespace,
        description=_UCI + "Yacht Hydrodynamics",
        reference_sha256="b97446828454c4bff91c6448b7c26720bd0b3bc95ded59d6ac0cb3e0c82b6717",
    )
)
register(
    WilsonDataset(
        name="wilson_forest",
        N=517,
        D=12,
        description="Wilson UCI collection: forest",
        reference_sha256="5e93f58feeeee7d1c8a093383de7fbd7763a2529e783d169d2dbd568a93ecb38",
    )
)
register(
    WilsonDataset(
        name="wilson_solar",
        N=1066,
        D=10,
        description="Wilson UCI collection: solar (one input is constant and is dropped)",
        reference_sha256="2257aa48f6fdb8266b8d7f1b70b7bf38860873f5acd38ac63be5f7fb0f01543d",
    )
)
register(
    WilsonDataset(
        name="wilson_pol",
        N=15000,
        D=26,
        description="Wilson UCI collection: pol",
        reference_sha256="1f4370e9c9448dc537601710d8744d3ea8f5532b93512288c27abb50120f367c",
    )
)
register(
    SyntheticDataset(
        name="demo",
        make=synthetic.make_demo,
        description="synthetic 1-D bimodal set, 1998 train / 198 test, seeded by split",
    )
)
register(
    SyntheticDataset(
        name="demo_normalized",
        make=synthetic.make_demo_normalized,
        description="demo with each array normalised separately",
    )
)
register(
    SyntheticDataset(
        name="two_points",
        make=synthetic.make_two_points,
        description="x = -1, 1 and y = 1, 2; test set = training set (for tests)",
    )
)

#: The names of the built-in datasets, in registration order.
DATASET_NAMES: tuple[str, ...] = tuple(REGISTRY)
