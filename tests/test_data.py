"""Loading, preprocessing, splits and integrity checks of dgp_snr.data (no network)."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import json
import re
import runpy
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import SHARED, needs_shared

from dgp_snr.data import (
    DATASET_NAMES,
    DataError,
    RegressionData,
    get_regression_data,
    register,
)
from dgp_snr.data.cli import main as cli_main
from dgp_snr.data.core import split_table
from dgp_snr.data.registry import REGISTRY, FileDataset

FILE_DATASETS = (
    "boston",
    "concrete",
    "energy",
    "kin8nm",
    "naval",
    "power",
    "protein",
    "winered",
    "winewhite",
    "yacht",
    "wilson_forest",
    "wilson_solar",
    "wilson_pol",
)
# wilson_solar's input 9 is constant over the whole set, so it is dropped from every split.
DROPPED_COLUMNS = {"wilson_solar": [9]}


@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path):
    """A private cache, and an unreachable UCI address so no test can touch the network."""
    monkeypatch.setenv("DGP_SNR_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("DGP_SNR_UCI_URL", "http://127.0.0.1:9/unreachable/")
    if SHARED is not None:
        monkeypatch.setenv("DGP_SNR_DATA", str(SHARED))
    else:
        monkeypatch.delenv("DGP_SNR_DATA", raising=False)


@pytest.fixture(scope="session")
def manifest() -> dict:
    if SHARED is None:
        pytest.skip("shared UCI copies not found")
    return json.loads((SHARED / "MANIFEST.json").read_text())


_RAW: dict[str, np.ndarray] = {}


def raw_table(name: str) -> np.ndarray:
    """The shared file of ``name`` read independently of dgp_snr (memoised: protein is big)."""
    if name not in _RAW:
        _RAW[name] = pd.read_csv(
            SHARED / f"{name}.csv.gz", header=None, float_precision="round_trip"
        ).to_numpy(dtype=np.float64)
    return _RAW[name]


def reference_split(table: np.ndarray, split: int) -> dict[str, np.ndarray]:
    """The reference recipe, literally: bayesian_benchmarks + the experiments' fixes."""
    X, Y = table[:, :-1], table[:, -1:]
    X_mean, X_std = np.average(X, 0)[None, :], 1e-6 + np.std(X, 0)[None, :]
    Y_mean, Y_std = np.average(Y, 0)[None, :], 1e-6 + np.std(Y, 0)[None, :]
    X, Y = (X - X_mean) / X_std, (Y - Y_mean) / Y_std
    index = np.arange(len(table))
    state = np.random.get_state()
    try:
        np.random.seed(0 + split)
        np.random.shuffle(index)
    finally:
        np.random.set_state(state)
    n = int(len(table) * 0.9)
    X_train, Y_train = X[index[:n]], Y[index[:n]]
    X_test, Y_test = X[index[n:]][:10000], Y[index[n:]][:10000]
    used = np.argwhere(X_train.std(axis=0) != 0.0).squeeze(axis=1)
    assert np.array_equal(used, np.argwhere(X_test.std(axis=0) != 0.0).squeeze(axis=1))
    return {
        "X_train": X_train[:, used],
        "Y_train": Y_train,
        "X_test": X_test[:, used],
        "Y_test": Y_test,
        "X_mean": X_mean[:, used],
        "X_std": X_std[:, used],
    }


def write_gz(path: Path, text: str) -> str:
    """Write ``text`` gzipped; returns the sha256 of the uncompressed bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = text.encode()
    path.write_bytes(gzip.compress(payload))
    return hashlib.sha256(payload).hexdigest()


def csv_text(table: np.ndarray) -> str:
    return "".join(",".join(repr(float(v)) for v in row) + "\n" for row in table)


def write_manifest(directory: Path, entries: dict) -> None:
    (directory / "MANIFEST.json").write_text(json.dumps(entries))


# --------------------------------------------------------------------------- names and registry


def test_dataset_names_are_the_papers():
    assert DATASET_NAMES == FILE_DATASETS + ("demo", "demo_normalized", "two_points")


def test_unknown_name_lists_known_names():
    with pytest.raises(DataError) as info:
        get_regression_data("bostn")
    assert isinstance(info.value, ValueError)
    message = str(info.value)
    assert message.startswith("unknown dataset 'bostn'; known datasets: boston, concrete")
    for name in DATASET_NAMES:
        assert name in message


def test_register_refuses_duplicates_and_adds_one_entry(tmp_path, monkeypatch):
    with pytest.raises(DataError, match="'boston' is already registered"):
        register(REGISTRY["boston"])
    extra = FileDataset(name="tiny_table", N=20, D=2)
    try:
        assert register(extra) is extra
        with pytest.raises(DataError, match="'tiny_table' is not available"):
            get_regression_data("tiny_table")
        write_gz(tmp_path / "cache" / "tiny_table.csv.gz", csv_text(np.eye(20, 3)))
        assert get_regression_data("tiny_table").X_train.shape == (18, 2)
    finally:
        del REGISTRY["tiny_table"]


@pytest.mark.parametrize("bad", [-1, 100, 10**6, 1.0, 0.5, True, "0", None])
def test_bad_splits_are_rejected(bad):
    with pytest.raises(DataError, match=r"split must be an int in \[0, 100\)"):
        get_regression_data("two_points", split=bad)


def test_numpy_integer_splits_are_accepted():
    assert get_regression_data("demo", split=np.int64(99)).split == 99


# ----------------------------------------------------------------------- the shared UCI copies


@needs_shared
@pytest.mark.parametrize("name", FILE_DATASETS)
def test_shared_dataset_loads_with_manifest_size(name, manifest):
    entry = manifest[name]
    spec = REGISTRY[name]
    assert (spec.N, spec.D, spec.reference_sha256) == (
        entry["N"],
        entry["D"],
        entry["sha256_uncompressed"],
    )
    data = get_regression_data(name, split=0)
    n_train = int(entry["N"] * 0.9)
    D = entry["D"] - len(DROPPED_COLUMNS.get(name, []))
    assert data.N == n_train and data.D == D
    assert data.X_train.shape == (n_train, D) and data.Y_train.shape == (n_train, 1)
    assert data.X_test.shape == (entry["N"] - n_train, D)
    assert data.Y_test.shape == (entry["N"] - n_train, 1)
    assert data.X_mean.shape == data.X_std.shape == (1, D)
    assert data.Y_mean.shape == data.Y_std.shape == (1, 1)
    for array in (data.X_train, data.Y_train, data.X_test, data.Y_test):
        assert array.dtype == np.float64 and np.isfinite(array).all()


@needs_shared
@pytest.mark.parametrize(
    "name, split",
    [("yacht", 0), ("yacht", 19), ("winered", 3), ("wilson_solar", 0), ("wilson_solar", 11)]
    + [("protein", 0), ("naval", 5), ("boston", 7)],
)
def test_splits_reproduce_the_reference_recipe(name, split):
    data = get_regression_data(name, split=split)
    expected = reference_split(raw_table(name), split)
    for key, value in expected.items():
        assert np.array_equal(getattr(data, key), value), key


@needs_shared
@pytest.mark.parametrize("name", ["yacht", "energy", "wilson_solar", "protein"])
def test_splits_are_deterministic_disjoint_and_cover_the_data(name):
    first = get_regression_data(name, split=4)
    again = get_regression_data(name, split=4)
    other = get_regression_data(name, split=5)
    for key in ("X_train", "Y_train", "X_test", "Y_test"):
        assert np.array_equal(getattr(first, key), getattr(again, key))
    assert not np.array_equal(first.Y_train, other.Y_train)

    # Train and test together are exactly the rows of the normalised file, each once.
    table = raw_table(name)
    keep = [c for c in range(table.shape[1] - 1) if c not in DROPPED_COLUMNS.get(name, [])]
    X, Y = table[:, keep], table[:, -1:]
    everything = np.hstack(
        [(X - X.mean(axis=0)) / (X.std(axis=0) + 1e-6), (Y - Y.mean()) / (Y.std() + 1e-6)]
    )
    split_rows = np.vstack(
        [np.hstack([first.X_train, first.Y_train]), np.hstack([first.X_test, first.Y_test])]
    )
    assert split_rows.shape == everything.shape
    split_sorted = split_rows[np.lexsort(split_rows.T)]
    assert np.array_equal(split_sorted, everything[np.lexsort(everything.T)])
    # And un-normalising gives back the file's values.
    raw = np.hstack(
        [split_sorted[:, :-1] * first.X_std + first.X_mean, split_sorted[:, -1:] * first.Y_std]
    )
    raw[:, -1] += first.Y_mean[0, 0]
    original = np.hstack([X, Y])
    np.testing.assert_allclose(raw, original[np.lexsort(everything.T)], rtol=1e-12, atol=1e-9)


@needs_shared
@pytest.mark.parametrize("name", ["power", "wilson_solar", "kin8nm"])
def test_normalisation_is_over_the_whole_dataset(name):
    table = raw_table(name)
    keep = [c for c in range(table.shape[1] - 1) if c not in DROPPED_COLUMNS.get(name, [])]
    data = get_regression_data(name, split=2)
    np.testing.assert_allclose(data.X_mean[0], table[:, keep].mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(data.X_std[0], table[:, keep].std(axis=0) + 1e-6, rtol=1e-12)
    np.testing.assert_allclose(data.Y_mean[0, 0], table[:, -1].mean(), rtol=1e-12)
    np.testing.assert_allclose(data.Y_std[0, 0], table[:, -1].std() + 1e-6, rtol=1e-12)
    # Over train and test together the data are centred with unit (up to the jitter) std.
    X = np.vstack([data.X_train, data.X_test])
    Y = np.vstack([data.Y_train, data.Y_test])
    np.testing.assert_allclose(X.mean(axis=0), 0.0, atol=1e-9)
    np.testing.assert_allclose(Y.mean(), 0.0, atol=1e-9)
    raw_std = table[:, keep].std(axis=0)
    np.testing.assert_allclose(X.std(axis=0), raw_std / (raw_std + 1e-6), rtol=1e-9)
    # The training part alone is only approximately standardised.
    assert np.all(np.abs(data.X_train.mean(axis=0)) < 0.1)
    assert np.all(np.abs(data.X_train.std(axis=0) - 1) < 0.1)


def test_test_set_is_capped_and_constant_columns_dropped():
    rng = np.random.RandomState(1)
    table = rng.normal(size=(120_000, 4))
    table[:, 1] = 3.0
    data = split_table("synthetic", 0, table)
    assert (data.N, data.D) == (108_000, 2)
    assert data.X_test.shape == (10_000, 2)
    assert data.X_mean.shape == (1, 2)
    np.testing.assert_allclose(data.X_mean[0], table[:, [0, 2]].mean(axis=0), rtol=1e-12)
    index = np.arange(120_000)
    np.random.RandomState(0).shuffle(index)
    np.testing.assert_allclose(
        data.X_test * data.X_std + data.X_mean, table[index[108_000:118_000]][:, [0, 2]]
    )


# ------------------------------------------------------------------------- integrity checking


@pytest.fixture
def fake_yacht(tmp_path, monkeypatch):
    """A data dir with a made-up 'yacht' (308 x 7) and a correct manifest."""
    directory = tmp_path / "data"
    table = np.round(np.random.RandomState(3).normal(size=(308, 7)), 4)
    sha = write_gz(directory / "yacht.csv.gz", csv_text(table))
    write_manifest(
        directory,
        {"yacht": {"N": 308, "D": 6, "file": "yacht.csv.gz", "sha256_uncompressed": sha}},
    )
    monkeypatch.setenv("DGP_SNR_DATA", str(directory))
    return directory, table


def test_valid_file_loads_and_is_verified(fake_yacht):
    directory, table = fake_yacht
    data = get_regression_data("yacht", split=1)
    assert (data.N, data.D) == (277, 6)
    np.testing.assert_allclose(data.X_mean[0], table[:, :-1].mean(axis=0), rtol=1e-12)


def test_bad_checksum_is_an_error_naming_the_file(fake_yacht):
    directory, _ = fake_yacht
    manifest = json.loads((directory / "MANIFEST.json").read_text())
    manifest["yacht"]["sha256_uncompressed"] = "0" * 64
    write_manifest(directory, manifest)
    with pytest.raises(DataError) as info:
        get_regression_data("yacht")
    message = str(info.value)
    assert str(directory / "yacht.csv.gz") in message
    assert "fails its checksum" in message and "manifest says " + "0" * 64 in message


def test_damaged_file_is_not_bypassed_by_a_good_cached_copy(fake_yacht, tmp_path):
    directory, table = fake_yacht
    write_gz(tmp_path / "cache" / "yacht.csv.gz", csv_text(table))
    payload = gzip.decompress((directory / "yacht.csv.gz").read_bytes())
    (directory / "yacht.csv.gz").write_bytes(gzip.compress(payload[:-2] + b"9\n"))
    with pytest.raises(DataError, match="fails its checksum"):
        get_regression_data("yacht")


def test_truncated_gzip_is_an_error_naming_the_file(fake_yacht):
    directory, _ = fake_yacht
    path = directory / "yacht.csv.gz"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(DataError, match="truncated or corrupt") as info:
        get_regression_data("yacht")
    assert str(path) in str(info.value)


def test_non_gzip_file_is_an_error(fake_yacht):
    directory, _ = fake_yacht
    (directory / "yacht.csv.gz").write_bytes(b"1,2,3\n")
    with pytest.raises(DataError, match=r"yacht\.csv\.gz is truncated or corrupt"):
        get_regression_data("yacht")


def _rewrite(directory: Path, text: str, manifest_entry: dict | None = None) -> None:
    sha = write_gz(directory / "yacht.csv.gz", text)
    entry = {"file": "yacht.csv.gz", "sha256_uncompressed": sha, **(manifest_entry or {})}
    write_manifest(directory, {"yacht": entry})


def test_wrong_row_count_is_an_error_even_with_a_matching_manifest(fake_yacht):
    directory, table = fake_yacht
    _rewrite(directory, csv_text(table[:-1]), {"N": 307, "D": 6})
    with pytest.raises(DataError) as info:
        get_regression_data("yacht")
    assert "holds 307 rows x 7 columns, but dataset 'yacht' has N=308 points with D=6" in str(
        info.value
    )


def test_file_disagreeing_with_its_manifest_is_an_error(fake_yacht):
    directory, table = fake_yacht
    _rewrite(directory, csv_text(table), {"N": 308, "D": 5})
    with pytest.raises(DataError, match="but its manifest says N=308 points with D=5"):
        get_regression_data("yacht")


def test_ragged_and_non_numeric_files_are_errors(fake_yacht):
    directory, table = fake_yacht
    lines = csv_text(table).splitlines(keepends=True)
    _rewrite(directory, "".join(lines[:5] + ["1,2,3\n"] + lines[6:]))
    with pytest.raises(DataError, match="missing or non-finite values .first in data row 6"):
        get_regression_data("yacht")
    _rewrite(directory, "".join(lines[:5] + ["1,2,3,4,5,6,x\n"] + lines[6:]))
    with pytest.raises(DataError, match="is not a numeric CSV table"):
        get_regression_data("yacht")
    _rewrite(directory, "".join(lines[:5] + ["1,2,3,4,5,6,7,8\n"] + lines[6:]))
    with pytest.raises(DataError, match="is not a numeric CSV table"):
        get_regression_data("yacht")


def test_file_without_manifest_is_checked_against_the_reference(tmp_path, monkeypatch):
    directory = tmp_path / "plain"
    table = np.random.RandomState(0).normal(size=(308, 7))
    write_gz(directory / "yacht.csv.gz", csv_text(table))
    monkeypatch.setenv("DGP_SNR_DATA", str(directory))
    with pytest.raises(
        DataError, match=r"yacht.csv.gz has no manifest entry and differs from the reference"
    ):
        get_regression_data("yacht")
    # A copy recorded in the manifest is checked against its entry instead.
    sha = write_gz(directory / "yacht.csv.gz", csv_text(table))
    write_manifest(directory, {"yacht": {"N": 308, "D": 6, "sha256_uncompressed": sha}})
    assert get_regression_data("yacht").N == 277


@needs_shared
def test_reference_copy_without_manifest_loads(tmp_path, monkeypatch):
    directory = tmp_path / "plain"
    directory.mkdir()
    shutil.copy(SHARED / "yacht.csv.gz", directory / "yacht.csv.gz")
    monkeypatch.setenv("DGP_SNR_DATA", str(directory))
    assert get_regression_data("yacht").N == 277


def test_list_and_fetch_report_a_damaged_file(tmp_path, monkeypatch, capsys):
    directory = tmp_path / "plain"
    directory.mkdir()
    (directory / "yacht.csv.gz").write_bytes(b"\x1f\x8b\x08\x00truncated")
    monkeypatch.setenv("DGP_SNR_DATA", str(directory))
    assert cli_main(["list"]) == 1
    out = capsys.readouterr().out
    assert re.search(r"yacht .*damaged: .*yacht.csv.gz is truncated or corrupt", out)
    assert cli_main(["fetch", "yacht"]) == 1
    assert "yacht.csv.gz is truncated or corrupt" in capsys.readouterr().err


def test_missing_data_dir_falls_back_to_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DGP_SNR_DATA", str(tmp_path / "does-not-exist"))
    table = np.random.RandomState(0).normal(size=(308, 7))
    sha = write_gz(tmp_path / "cache" / "yacht.csv.gz", csv_text(table))
    write_manifest(tmp_path / "cache", {"yacht": {"sha256_uncompressed": sha}})
    data = get_regression_data("yacht")
    np.testing.assert_allclose(data.Y_mean[0, 0], table[:, -1].mean(), rtol=1e-12)


def test_corrupt_manifest_is_an_error(fake_yacht):
    directory, _ = fake_yacht
    (directory / "MANIFEST.json").write_text("{not json")
    with pytest.raises(DataError, match=r"cannot read manifest .*MANIFEST\.json"):
        get_regression_data("yacht")


# ------------------------------------------------------------------------- synthetic datasets


def reference_demo(seed: int):
    """experiments/demo_dataset.py's create_demo_data after np.random.seed(seed)."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:

        def f1(x):
            return np.sin(x * 4) / 3 + 0.2 * np.exp(np.random.randn(*x.shape))

        def f2(x):
            return -np.power(x * 3, 2) / 30 + 1.5 + 0.2 * np.exp(np.random.randn(*x.shape))

        def f(X):
            ind = np.random.choice([True, False], size=X.shape, p=(0.6, 0.4))
            Y = np.empty(X.shape)
            Y[ind] = f1(X[ind])
            Y[np.invert(ind)] = f2(X[np.invert(ind)])
            return Y

        train_width = 2000.0 / 2200.0
        test_width = 1 - train_width
        train_xs, test_xs = [], []
        for block in range(6):
            start = -3 + block
            test_xs.append(np.random.uniform(start, start + test_width, size=(int(200 / 6), 1)))
            train_xs.append(np.random.uniform(start + test_width, start + 1, size=(333, 1)))
        train_X, test_X = np.concatenate(train_xs), np.concatenate(test_xs)
        return train_X, f(train_X), test_X, f(test_X)
    finally:
        np.random.set_state(state)


@pytest.mark.parametrize("split", [0, 1, 17])
def test_demo_reproduces_the_reference_generator(split):
    data = get_regression_data("demo", split=split)
    for actual, expected in zip(
        (data.X_train, data.Y_train, data.X_test, data.Y_test), reference_demo(split)
    ):
        assert np.array_equal(actual, expected)


def test_demo_sizes_layout_and_seed():
    data = get_regression_data("demo", split=0)
    assert data.X_train.shape == data.Y_train.shape == (1998, 1)
    assert data.X_test.shape == data.Y_test.shape == (198, 1)
    assert (data.N, data.D) == (1998, 1)
    for key in ("X_mean", "Y_mean"):
        assert np.array_equal(getattr(data, key), np.zeros((1, 1)))
    for key in ("X_std", "Y_std"):
        assert np.array_equal(getattr(data, key), np.ones((1, 1)))
    test_width = 200 / 2200
    for block in range(6):
        start = -3.0 + block
        x_test = data.X_test[33 * block : 33 * (block + 1)]
        x_train = data.X_train[333 * block : 333 * (block + 1)]
        assert np.all((start <= x_test) & (x_test < start + test_width))
        assert np.all((start + test_width <= x_train) & (x_train < start + 1))
    # Both branches add 0.2 * exp(noise) > 0 on top of their mean function.
    x, y = data.X_train[:, 0], data.Y_train[:, 0]
    assert np.all(y > np.minimum(np.sin(4 * x) / 3, 1.5 - (3 * x) ** 2 / 30))
    again = get_regression_data("demo", split=0)
    assert np.array_equal(again.Y_train, data.Y_train)
    assert not np.array_equal(get_regression_data("demo", split=1).Y_train, data.Y_train)


def test_demo_normalized_normalises_each_array_separately():
    raw = get_regression_data("demo", split=3)
    data = get_regression_data("demo_normalized", split=3)
    for key in ("X_train", "Y_train", "X_test", "Y_test"):
        array = getattr(raw, key)
        expected = (array - array.mean(axis=0)) / (array.std(axis=0) + 1e-6)
        np.testing.assert_allclose(getattr(data, key), expected, rtol=1e-12, atol=1e-12)
        assert abs(getattr(data, key).mean()) < 1e-12
    np.testing.assert_allclose(data.X_mean, raw.X_train.mean(axis=0, keepdims=True), rtol=1e-12)
    np.testing.assert_allclose(data.Y_std, raw.Y_train.std(axis=0, keepdims=True) + 1e-6)
    np.testing.assert_allclose(data.X_train * data.X_std + data.X_mean, raw.X_train, atol=1e-12)


def test_two_points():
    data = get_regression_data("two_points", split=5)
    assert np.array_equal(data.X_train, [[-1.0], [1.0]])
    assert np.array_equal(data.Y_train, [[1.0], [2.0]])
    assert np.array_equal(data.X_test, data.X_train) and np.array_equal(data.Y_test, data.Y_train)
    assert (data.name, data.split, data.N, data.D) == ("two_points", 5, 2, 1)


def test_regression_data_is_frozen_and_validated():
    data = get_regression_data("two_points")
    with pytest.raises(dataclasses.FrozenInstanceError):
        data.X_train = np.zeros((2, 1))
    fields = {f.name: getattr(data, f.name) for f in dataclasses.fields(RegressionData)}
    with pytest.raises(DataError, match=r"Y_train has shape \(1, 1\), expected \(2, 1\)"):
        RegressionData(**{**fields, "Y_train": np.zeros((1, 1))})
    with pytest.raises(DataError, match="X_test must be a 2-D float64 array"):
        RegressionData(**{**fields, "X_test": np.zeros((2, 1), dtype=np.float32)})


# ------------------------------------------------------------------------------------- CLI


def test_cli_list(capsys, fake_yacht):
    directory, _ = fake_yacht
    assert cli_main(["list"]) == 0
    out = capsys.readouterr().out
    lines = {line.split()[0]: line for line in out.splitlines()[2:]}
    assert tuple(lines) == DATASET_NAMES
    assert f"found: {directory / 'yacht.csv.gz'}" in lines["yacht"]
    assert "N=308" in lines["yacht"] and "D=6" in lines["yacht"]
    assert "synthetic" in lines["demo"]
    assert "needs install-wilson" in lines["wilson_pol"]
    assert "downloadable: http://127.0.0.1:9/unreachable/wine-quality/" in lines["winered"]


def test_cli_fetch_reports_errors(capsys, fake_yacht):
    assert cli_main(["fetch", "yacht", "demo"]) == 0
    assert "yacht.csv.gz" in capsys.readouterr().out
    assert cli_main(["fetch", "nope"]) == 1
    assert "error: unknown dataset 'nope'" in capsys.readouterr().err


def test_python_dash_m_entry_point(capsys, monkeypatch):
    # In-process (runpy) rather than a subprocess: importing dgp_snr pulls in TensorFlow.
    monkeypatch.setattr(sys, "argv", ["python -m dgp_snr.data", "list"])
    with pytest.raises(SystemExit) as info:
        runpy.run_module("dgp_snr.data", run_name="__main__")
    assert info.value.code == 0
    assert "two_points" in capsys.readouterr().out
