"""Gradient dumps on disk: compressed writes, old uncompressed dumps, aggregate (stats-only)
dumps against raw ones (dgp_snr.gradient_dumps)."""

import importlib.util
import zipfile
from pathlib import Path

import numpy as np
import pytest

from dgp_snr.gradient_dumps import (
    DumpRequest,
    dump_problem,
    load_gradient_dump,
    read_dump_meta,
    save_gradient_dump,
)
from dgp_snr.gradients import snr
from dgp_snr.plotting.dumps import weight_snr

REQUEST = DumpRequest(30, 5, 1, 0, "reg", 200, 0, "float64")
RECORD = {**REQUEST.record(), "batch_start": 0}


def _samples(seed: int = 0):
    """Encoder-gradient-like samples {name: [R, *shape]}: float64 noise, a constant entry, an
    all-zero entry (SNR 0 by convention) and a bias."""
    rng = np.random.default_rng(seed)
    W0 = rng.standard_normal((200, 2, 5)) * 3.0 + 1.0
    W0[:, 0, 0] = 0.0
    W1 = rng.standard_normal((200, 5, 2)) * np.linspace(0.1, 10, 10).reshape(5, 2)
    return {"layer0/W0": W0, "layer0/W1": W1, "layer0/b0": rng.standard_normal((200, 5))}


def test_a_compressed_dump_round_trips_bit_identically(tmp_path):
    path = tmp_path / "reg_bs1_K5_dp0.npz"
    samples = _samples()
    save_gradient_dump(path, samples, RECORD)
    with zipfile.ZipFile(path) as archive:
        assert {i.compress_type for i in archive.infolist()} == {zipfile.ZIP_DEFLATED}
    dump = load_gradient_dump(path)
    assert set(dump.samples) == set(samples)
    for name, values in samples.items():
        assert dump.samples[name].dtype == values.dtype
        assert np.array_equal(dump.samples[name], values)
    assert dump.meta == RECORD and read_dump_meta(path) == RECORD
    assert dump_problem(path, REQUEST, full=True) is None


def test_an_uncompressed_dump_written_before_still_loads(tmp_path):
    """Dumps were np.savez archives (stored, not deflated): they read as before."""
    path = tmp_path / "reg_bs1_K5_dp0.npz"
    samples = _samples()
    arrays = {**samples, **{f"meta/{k}": np.asarray(v) for k, v in RECORD.items()}}
    with open(path, "wb") as handle:
        np.savez(handle, **arrays)  # as save_gradient_dump wrote them
    with zipfile.ZipFile(path) as archive:
        assert {i.compress_type for i in archive.infolist()} == {zipfile.ZIP_STORED}
    dump = load_gradient_dump(path)
    assert all(np.array_equal(dump.samples[k], v) for k, v in samples.items())
    assert read_dump_meta(path) == RECORD
    assert dump_problem(path, REQUEST, full=True) is None
    save_gradient_dump(path, samples, RECORD, compress=False)  # still on offer
    assert open(path, "rb").read() == _stored_bytes(tmp_path, arrays)


def _stored_bytes(tmp_path, arrays) -> bytes:
    other = tmp_path / "other.npz"
    with open(other, "wb") as handle:
        np.savez(handle, **arrays)
    return other.read_bytes()


def test_aggregate_dumps_give_the_snr_of_the_raw_estimates(tmp_path):
    """--save_aggregates keeps each parameter's mean and std only: the SNRs the figures read
    (GradientDump.snr, plotting.weight_snr) equal those of the raw dump, bit for bit."""
    samples = _samples(1)
    raw, agg = tmp_path / "raw.npz", tmp_path / "agg.npz"
    save_gradient_dump(raw, samples, RECORD)
    save_gradient_dump(agg, samples, RECORD, aggregates=True)
    from_raw, from_agg = load_gradient_dump(raw), load_gradient_dump(agg)
    assert from_agg.samples is None and from_agg.meta == from_raw.meta
    for name, values in samples.items():
        assert np.array_equal(from_agg.snr()[name], snr(values))
        assert np.array_equal(from_agg.snr()[name], from_raw.snr()[name])
    assert from_agg.snr()["layer0/W0"][0, 0] == 0.0  # always-zero gradient: SNR 0
    assert np.array_equal(weight_snr(from_agg), weight_snr(from_raw))
    assert agg.stat().st_size < raw.stat().st_size / 10  # 200 estimates: meta dominates


def test_a_damaged_compressed_dump_is_named_corrupt(tmp_path):
    path = tmp_path / "reg_bs1_K5_dp0.npz"
    save_gradient_dump(path, _samples(), RECORD)
    payload = bytearray(path.read_bytes())
    start = payload.index(b"layer0/W1.npy") + 300  # inside that member's deflated bytes
    payload[start : start + 64] = bytes(64)
    path.write_bytes(bytes(payload))
    assert read_dump_meta(path) == RECORD  # the record alone still reads
    with pytest.raises(ValueError, match=f"corrupt gradient dump {path}"):
        load_gradient_dump(path)
    assert dump_problem(path, REQUEST, full=True).startswith(f"corrupt gradient dump {path}")


def test_dump_size_benchmark_measures_figure_1s_grid():
    """benchmarks/dump_size.py at a few estimates: every form written and read back, and the
    extrapolation is per-dump size x Figure 1's 420 dumps."""
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "dump_size.py"
    spec = importlib.util.spec_from_file_location("dump_size", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = module.measure([1], 20)
    assert out["figure_1_dumps"] == 21 * 10 * 2
    assert out["encoder_gradient_shapes"]["layer0/W1"] == [20, 20, 20]
    for form, size in out["mean_bytes_per_dump"].items():
        assert out["figure_1_mb"][form] == size * 420 / 1e6
    sizes = out["mean_bytes_per_dump"]
    assert sizes["aggregates_compressed"] < sizes["raw_compressed"] <= sizes["raw_uncompressed"]
