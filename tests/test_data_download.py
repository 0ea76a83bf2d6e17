"""The download path (against a local HTTP server) and the Wilson installer of dgp_snr.data."""

from __future__ import annotations

import gzip
import hashlib
import http.server
import importlib.util
import io
import json
import tarfile
import threading
import warnings
import zipfile
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import unquote

import numpy as np
import openpyxl
import pandas as pd
import pytest
from helpers import SHARED, needs_shared
from scipy.io import savemat

from dgp_snr.data import DataError, DataWarning, get_regression_data, install_wilson, parsers
from dgp_snr.data.cli import main as cli_main
from dgp_snr.data.registry import REGISTRY, WILSON_DOWNLOAD_URL, UCIDataset, WilsonDataset

PREFIX = "ml/machine-learning-databases"


def shared_table(name: str) -> np.ndarray:
    return pd.read_csv(
        SHARED / f"{name}.csv.gz", header=None, float_precision="round_trip"
    ).to_numpy(dtype=np.float64)


def shared_payload(name: str) -> bytes:
    return gzip.decompress((SHARED / f"{name}.csv.gz").read_bytes())


@pytest.fixture(autouse=True)
def env(tmp_path, monkeypatch):
    """No data dir, a private cache, and an unreachable UCI address unless a test serves one."""
    monkeypatch.setenv("DGP_SNR_DATA", str(tmp_path / "no-data-dir"))
    monkeypatch.setenv("DGP_SNR_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("DGP_SNR_UCI_URL", "http://127.0.0.1:9/")
    return SimpleNamespace(cache=tmp_path / "cache")


@pytest.fixture
def uci(tmp_path, monkeypatch):
    """A local HTTP server standing in for archive.ics.uci.edu; records the paths requested."""
    root = tmp_path / "www"
    (root / PREFIX).mkdir(parents=True)
    requests: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(root), **kwargs)

        def log_message(self, *args):
            pass

        def do_GET(self):
            requests.append(self.path)
            if "/truncated/" in self.path:  # announce 5000 bytes, send 100, hang up
                self.send_response(200)
                self.send_header("Content-Length", "5000")
                self.end_headers()
                self.wfile.write(b"x" * 100)
                self.wfile.flush()
                self.close_connection = True
                return
            super().do_GET()

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_address[1]}/{PREFIX}/"
    monkeypatch.setenv("DGP_SNR_UCI_URL", base)

    def serve(url_path: str, payload: bytes) -> None:
        path = root / PREFIX / unquote(url_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(payload)

    yield SimpleNamespace(base=base, requests=requests, serve=serve, cache=tmp_path / "cache")
    server.shutdown()
    server.server_close()
    thread.join()


# ------------------------------------------------------------- files in the original formats

WINE_HEADER = (
    '"fixed acidity";"volatile acidity";"citric acid";"residual sugar";"chlorides";'
    '"free sulfur dioxide";"total sulfur dioxide";"density";"pH";"sulphates";"alcohol";'
    '"quality"\n'
)


def wine_csv(table: np.ndarray) -> bytes:
    """Like the original: a quoted header, then rows such as ``7.4;0.7;0;1.9;...;5``."""
    lines = [";".join(_short(v) for v in row) + "\n" for row in table]
    return (WINE_HEADER + "".join(lines)).encode()


def _short(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def whitespace_table(table: np.ndarray) -> str:
    return "".join(" " + " ".join(f"{repr(float(v)):>12}" for v in row) + "\n" for row in table)


def xlsx(sheets: dict[str, tuple[list[str], np.ndarray]]) -> bytes:
    book = openpyxl.Workbook(write_only=True)
    for title, (header, table) in sheets.items():
        sheet = book.create_sheet(title)
        sheet.append(header)
        for row in table.tolist():
            sheet.append(row)
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


def zipped(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, payload in members.items():
            archive.writestr(name, payload)
    return buffer.getvalue()


def original_file(name: str, table: np.ndarray) -> bytes:
    """The shared table ``name`` (N, D + 1) written back in its UCI distribution format."""
    X, y = table[:, :-1], table[:, -1:]
    if name == "boston":
        return whitespace_table(table).encode()
    if name == "yacht":  # the original ends with a line of blanks
        return (whitespace_table(table) + "      \n").encode()
    if name in ("winered", "winewhite"):
        return wine_csv(table)
    if name == "protein":
        header = "RMSD," + ",".join(f"F{i}" for i in range(1, 10)) + "\n"
        rows = np.hstack([y, X])
        return (header + "".join(",".join(map(_short, r)) + "\n" for r in rows)).encode()
    if name == "energy":
        header = [f"X{i}" for i in range(1, 9)] + ["Y1", "Y2"]
        return xlsx({"Sheet1": (header, np.hstack([table, np.round(y * 1.1, 2)]))})
    if name == "power":
        book = xlsx(
            {
                "Sheet1": (["AT", "V", "AP", "RH", "PE"], table),
                "Sheet2": (["AT", "V", "AP", "RH", "PE"], table[::-1][:50]),
            }
        )
        return zipped({"CCPP/Folds5x2_pp.xlsx": book, "CCPP/Readme.txt": b"readme"})
    if name == "naval":
        full = np.hstack(
            [X[:, :8], np.full((len(X), 1), 288.0), X[:, 8:10], np.full((len(X), 1), 0.998)]
            + [X[:, 10:], y, np.full((len(X), 1), 0.975)]
        )
        text = "".join("   " + "   ".join(repr(float(v)) for v in row) + "\n" for row in full)
        return zipped(
            {"UCI CBM Dataset/data.txt": text.encode(), "UCI CBM Dataset/README.txt": b""}
        )
    raise AssertionError(name)


def tiny_wine(num_rows: int = 12) -> np.ndarray:
    rng = np.random.RandomState(7)
    table = np.round(rng.uniform(0, 20, size=(num_rows, 12)), 3)
    table[:, 2] = np.round(table[:, 2])  # integer-valued column: written without ".0"
    return table


@pytest.fixture
def tiny_winered(monkeypatch):
    dataset = UCIDataset(
        name="tiny_winered",
        N=12,
        D=11,
        url_path="wine-quality/winequality-red.csv",
        parser=parsers.parse_wine,
    )
    monkeypatch.setitem(REGISTRY, dataset.name, dataset)
    return dataset


# -------------------------------------------------------------------------------- downloads


def test_download_parses_caches_and_is_not_repeated(uci, tiny_winered):
    table = tiny_wine()
    uci.serve(tiny_winered.url_path, wine_csv(table))
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)
        data = get_regression_data("tiny_winered", split=2)
    url = uci.base + "wine-quality/winequality-red.csv"
    assert uci.requests == [f"/{PREFIX}/wine-quality/winequality-red.csv"]
    assert (data.N, data.D) == (10, 11)
    np.testing.assert_allclose(data.X_mean[0], table[:, :-1].mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(data.Y_std[0, 0], table[:, -1].std() + 1e-6, rtol=1e-12)

    payload = gzip.decompress((uci.cache / "tiny_winered.csv.gz").read_bytes())
    assert payload == "".join(",".join(map(_short, row)) + "\n" for row in table).encode()
    manifest = json.loads((uci.cache / "MANIFEST.json").read_text())
    assert manifest == {
        "tiny_winered": {
            "D": 11,
            "N": 12,
            "file": "tiny_winered.csv.gz",
            "sha256_uncompressed": hashlib.sha256(payload).hexdigest(),
            "source": url,
        }
    }
    assert sorted(p.name for p in uci.cache.iterdir()) == [
        ".manifest.lock",
        "MANIFEST.json",
        "tiny_winered.csv.gz",
    ]

    again = get_regression_data("tiny_winered", split=3)
    assert len(uci.requests) == 1
    assert again.N == 10 and not np.array_equal(again.Y_train, data.Y_train)


def test_cached_download_is_verified_like_shared_files(uci, tiny_winered):
    uci.serve(tiny_winered.url_path, wine_csv(tiny_wine()))
    get_regression_data("tiny_winered")
    path = uci.cache / "tiny_winered.csv.gz"
    payload = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(payload.replace(b",", b";", 1)))
    with pytest.raises(DataError, match="tiny_winered.csv.gz fails its checksum.*delete it"):
        get_regression_data("tiny_winered")
    assert len(uci.requests) == 1


def test_downloads_accumulate_in_the_manifest(uci, tiny_winered, monkeypatch):
    white = UCIDataset(
        name="tiny_winewhite",
        N=9,
        D=11,
        url_path="wine-quality/winequality-white.csv",
        parser=parsers.parse_wine,
    )
    monkeypatch.setitem(REGISTRY, white.name, white)
    uci.serve(tiny_winered.url_path, wine_csv(tiny_wine(12)))
    uci.serve(white.url_path, wine_csv(tiny_wine(9)))
    get_regression_data("tiny_winered")
    get_regression_data("tiny_winewhite")
    manifest = json.loads((uci.cache / "MANIFEST.json").read_text())
    assert sorted(manifest) == ["tiny_winered", "tiny_winewhite"]
    assert manifest["tiny_winewhite"]["N"] == 9


def test_download_differing_from_the_reference_copy_warns(uci, monkeypatch):
    dataset = UCIDataset(
        name="tiny_winered",
        N=12,
        D=11,
        url_path="wine-quality/winequality-red.csv",
        parser=parsers.parse_wine,
        reference_sha256="0" * 64,
    )
    monkeypatch.setitem(REGISTRY, dataset.name, dataset)
    uci.serve(dataset.url_path, wine_csv(tiny_wine()))
    with pytest.warns(DataWarning, match=r"tiny_winered: the data prepared from http://127\.0"):
        data = get_regression_data("tiny_winered")
    assert data.N == 10


@needs_shared
@pytest.mark.parametrize(
    "name", ["boston", "energy", "naval", "power", "protein", "winered", "winewhite", "yacht"]
)
def test_download_reproduces_the_shared_copy_exactly(uci, name):
    dataset = REGISTRY[name]
    uci.serve(dataset.url_path, original_file(name, shared_table(name)))
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)
        data = get_regression_data(name, split=1)
    assert uci.requests == [f"/{PREFIX}/{dataset.url_path}"]
    assert gzip.decompress((uci.cache / f"{name}.csv.gz").read_bytes()) == shared_payload(name)
    shared_manifest = json.loads((SHARED / "MANIFEST.json").read_text())
    entry = json.loads((uci.cache / "MANIFEST.json").read_text())[name]
    assert entry["sha256_uncompressed"] == shared_manifest[name]["sha256_uncompressed"]
    assert (entry["N"], entry["D"]) == (shared_manifest[name]["N"], shared_manifest[name]["D"])
    assert data.N == int(0.9 * dataset.N)


@pytest.mark.skipif(importlib.util.find_spec("xlrd") is not None, reason="xlrd is installed")
def test_concrete_without_xlrd_explains_and_does_not_download(uci):
    with pytest.raises(DataError) as info:
        get_regression_data("concrete")
    message = str(info.value)
    assert "Concrete_Data.xls needs xlrd (pip install xlrd)" in message
    assert "concrete.csv.gz" in message
    assert uci.requests == []


def _cache_is_empty(cache: Path) -> bool:
    return not cache.exists() or list(cache.iterdir()) == []


def test_http_error_leaves_nothing(uci, tiny_winered):
    with pytest.raises(DataError) as info:
        get_regression_data("tiny_winered")
    assert str(info.value) == (
        f"download of {uci.base}wine-quality/winequality-red.csv failed: HTTP 404 File not found"
    )
    assert _cache_is_empty(uci.cache)


def test_truncated_download_leaves_nothing(uci, monkeypatch):
    dataset = UCIDataset(
        name="tiny_winered",
        N=12,
        D=11,
        url_path="truncated/winequality-red.csv",
        parser=parsers.parse_wine,
    )
    monkeypatch.setitem(REGISTRY, dataset.name, dataset)
    with pytest.raises(
        DataError, match=r"incomplete download of http://.*: got 100 of 5000 bytes"
    ):
        get_regression_data("tiny_winered")
    assert uci.requests == [f"/{PREFIX}/truncated/winequality-red.csv"]
    assert _cache_is_empty(uci.cache)


def test_mis_shaped_download_is_not_cached(uci, tiny_winered):
    uci.serve(tiny_winered.url_path, wine_csv(tiny_wine(11)))
    with pytest.raises(DataError) as info:
        get_regression_data("tiny_winered")
    assert str(info.value) == (
        f"{uci.base}wine-quality/winequality-red.csv parsed to 11 rows x 12 columns, but dataset "
        "'tiny_winered' has N=12 points with D=11 inputs plus a target; nothing was cached"
    )
    assert _cache_is_empty(uci.cache)


def test_unparsable_downloads_are_not_cached(uci):
    uci.serve("00294/CCPP.zip", b"<html>not a zip</html>")
    with pytest.raises(DataError, match=r"CCPP\.zip is not a readable zip archive"):
        get_regression_data("power")
    uci.serve("00294/CCPP.zip", zipped({"CCPP/Readme.txt": b""}))
    with pytest.raises(DataError, match="expected one member ending in 'Folds5x2_pp.xlsx'"):
        get_regression_data("power")
    table = tiny_wine(1599)
    text = wine_csv(table).decode().replace("\n7", "\nseven", 1).encode()
    assert text != wine_csv(table)
    uci.serve("wine-quality/winequality-red.csv", text)
    with pytest.raises(DataError, match="winequality-red.csv: non-numeric values"):
        get_regression_data("winered")
    assert len(uci.requests) == 3
    assert _cache_is_empty(uci.cache)


def test_unreachable_server_is_a_clear_error(env):
    with pytest.raises(
        DataError,
        match=r"^download of http://127\.0\.0\.1:9/wine-quality/.*offline\? point DGP_SNR_DATA",
    ):
        get_regression_data("winered")
    assert _cache_is_empty(env.cache)


def test_kin8nm_is_not_downloaded_and_says_where_to_get_it(uci):
    with pytest.raises(DataError) as info:
        get_regression_data("kin8nm")
    message = str(info.value)
    assert "kin8nm is not hosted by UCI" in message and "https://www.openml.org/d/189" in message
    assert str(uci.cache) in message
    assert uci.requests == []


def test_cli_fetch_downloads_into_the_cache(uci, tiny_winered, capsys):
    uci.serve(tiny_winered.url_path, wine_csv(tiny_wine()))
    assert cli_main(["fetch", "tiny_winered"]) == 0
    assert capsys.readouterr().out == f"tiny_winered: {uci.cache / 'tiny_winered.csv.gz'}\n"
    assert cli_main(["fetch", "tiny_winered"]) == 0
    assert len(uci.requests) == 1


# --------------------------------------------------------------------------- Wilson datasets


def mat(array: np.ndarray, key: str = "data") -> bytes:
    buffer = io.BytesIO()
    savemat(buffer, {key: array})
    return buffer.getvalue()


def tarball(path: Path, members: dict[str, bytes], mode: str = "w:gz") -> Path:
    with tarfile.open(path, mode) as archive:
        directory = tarfile.TarInfo("uci")
        directory.type = tarfile.DIRTYPE
        archive.addfile(directory)
        for name, payload in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            archive.addfile(info, io.BytesIO(payload))
    return path


@pytest.fixture
def wilson_tiny(monkeypatch):
    dataset = WilsonDataset(name="wilson_tiny", N=20, D=3)
    monkeypatch.setitem(REGISTRY, dataset.name, dataset)
    return np.random.RandomState(5).normal(size=(20, 4))


@pytest.mark.parametrize("mode, suffix", [("w:gz", ".tar.gz"), ("w", ".tar")])
def test_install_wilson_from_a_small_tarball(tmp_path, env, wilson_tiny, mode, suffix):
    archive = tarball(
        tmp_path / f"uci{suffix}",
        {"uci/other/other.mat": mat(np.ones((5, 2))), "uci/tiny/tiny.mat": mat(wilson_tiny)},
        mode,
    )
    installed = install_wilson(archive, names=["tiny"])
    assert installed == {"wilson_tiny": env.cache / "wilson_tiny.csv.gz"}
    entry = json.loads((env.cache / "MANIFEST.json").read_text())["wilson_tiny"]
    assert entry["source"] == f"Wilson UCI collection {archive}:uci/tiny/tiny.mat"
    assert (entry["N"], entry["D"]) == (20, 3)
    data = get_regression_data("wilson_tiny", split=0)
    X = np.vstack([data.X_train, data.X_test]) * data.X_std + data.X_mean
    order = np.lexsort(X.T)
    expected = wilson_tiny[:, :-1]
    np.testing.assert_allclose(X[order], expected[np.lexsort(expected.T)], rtol=1e-12)


def test_install_wilson_reports_missing_members_and_installs_nothing(tmp_path, env, wilson_tiny):
    archive = tarball(tmp_path / "uci.tar.gz", {"uci/tiny/tiny.mat": mat(wilson_tiny)})
    with pytest.raises(DataError) as info:
        install_wilson(archive)  # all registered Wilson sets: forest, solar, pol and tiny
    message = str(info.value)
    assert message.startswith(f"{archive} lacks uci/forest/forest.mat (wilson_forest), ")
    assert "uci/pol/pol.mat (wilson_pol)" in message
    assert ".mat files found: uci/tiny/tiny.mat. Nothing was installed." in message
    assert _cache_is_empty(env.cache)


def test_install_wilson_rejects_bad_input(tmp_path, env, wilson_tiny):
    bad_shape = tarball(tmp_path / "a.tar.gz", {"uci/tiny/tiny.mat": mat(wilson_tiny[:19])})
    with pytest.raises(DataError, match="'data' is 19 x 4, but 'wilson_tiny' has N=20 points"):
        install_wilson(bad_shape, names=["wilson_tiny"])
    no_data = tarball(tmp_path / "b.tar.gz", {"uci/tiny/tiny.mat": mat(wilson_tiny, key="X")})
    with pytest.raises(DataError, match=r"no 'data' matrix \(variables: \['X'\]\)"):
        install_wilson(no_data, names=["wilson_tiny"])
    (tmp_path / "c.tar.gz").write_bytes(b"not a tarball")
    with pytest.raises(DataError, match="c.tar.gz is not a readable tar archive"):
        install_wilson(tmp_path / "c.tar.gz", names=["tiny"])
    with pytest.raises(DataError, match="missing.tar.gz does not exist"):
        install_wilson(tmp_path / "missing.tar.gz", names=["tiny"])
    with pytest.raises(DataError, match="unknown Wilson dataset 'nope'; known: wilson_forest"):
        install_wilson(bad_shape, names=["nope"])
    assert _cache_is_empty(env.cache)


def test_install_wilson_cli(tmp_path, env, wilson_tiny, capsys):
    archive = tarball(tmp_path / "uci.tar.gz", {"uci/tiny/tiny.mat": mat(wilson_tiny)})
    target = tmp_path / "elsewhere"
    assert (
        cli_main(["install-wilson", str(archive), "--names", "tiny", "--target-dir", str(target)])
        == 0
    )
    assert capsys.readouterr().out == f"installed wilson_tiny: {target / 'wilson_tiny.csv.gz'}\n"
    assert (target / "MANIFEST.json").is_file() and _cache_is_empty(env.cache)
    assert cli_main(["install-wilson", str(tmp_path / "nothing.tar.gz")]) == 1
    assert capsys.readouterr().err.startswith("error: ")


def test_missing_wilson_set_says_what_to_get_and_what_to_run(env):
    with pytest.raises(DataError) as info:
        get_regression_data("wilson_forest", split=3)
    message = str(info.value)
    assert "uci.tar.gz" in message and WILSON_DOWNLOAD_URL in message
    assert "dgp-snr-data install-wilson /path/to/uci.tar.gz --names wilson_forest" in message
    assert "uci/forest/forest.mat" in message and str(env.cache) in message


@needs_shared
def test_install_wilson_reproduces_the_shared_copies(tmp_path, env):
    archive = tarball(
        tmp_path / "uci.tar.gz",
        {
            "uci/forest/forest.mat": mat(shared_table("wilson_forest")),
            "uci/solar/solar.mat": mat(shared_table("wilson_solar")),
        },
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)
        installed = install_wilson(archive, names="wilson_forest,solar")
    assert sorted(installed) == ["wilson_forest", "wilson_solar"]
    for name in installed:
        assert gzip.decompress(installed[name].read_bytes()) == shared_payload(name)
    data = get_regression_data("wilson_solar", split=0)
    assert (data.N, data.D) == (959, 9)
