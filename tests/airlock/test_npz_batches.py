"""Streaming an .npz a batch at a time (airlock/quality/npz_batches.py): bounded, refusing what it cannot stream."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest

from airlock.quality.npz_batches import NpzRows, NpzRowsError

MiB = 1 << 20


def _npz(path: Path, compressed: bool = False, **arrays: np.ndarray) -> Path:
    (np.savez_compressed if compressed else np.savez)(path, **arrays)
    return path


@pytest.mark.parametrize("compressed", [False, True])
def test_rows_stream_in_batches_equal_to_the_arrays(tmp_path: Path, compressed: bool) -> None:
    x = np.arange(50 * 3, dtype=np.float32).reshape(50, 3)
    y = np.arange(50, dtype=">i4")  # big-endian comes back native
    with NpzRows(_npz(tmp_path / "d.npz", compressed, x=x, y=y)) as rows:
        assert rows.count == 50 and rows.arrays["x"].shape == (50, 3)
        got = list(rows.batches(16, max_batch_bytes=MiB))
    assert [s for s, _ in got] == [0, 16, 32, 48]
    assert np.array_equal(np.concatenate([b["x"] for _, b in got]), x)
    ys = np.concatenate([b["y"] for _, b in got])
    assert np.array_equal(ys, y) and ys.dtype.isnative


def test_limit_and_names_pick_rows_and_arrays(tmp_path: Path) -> None:
    path = _npz(tmp_path / "d.npz", x=np.zeros((10, 2)), y=np.ones(10))
    with NpzRows(path) as rows:
        got = list(rows.batches(4, limit=6, names=["y"], max_batch_bytes=MiB))
    assert [(s, list(b), len(b["y"])) for s, b in got] == [(0, ["y"], 4), (4, ["y"], 2)]


def test_a_batch_larger_than_the_bound_is_refused_before_reading(tmp_path: Path) -> None:
    path = _npz(tmp_path / "d.npz", x=np.zeros((100, 1024), np.float64))
    with NpzRows(path) as rows, pytest.raises(NpzRowsError, match="use a smaller batch"):
        next(rows.batches(64, max_batch_bytes=64 * 1024))


@pytest.mark.parametrize(("arrays", "error"), [
    ({"x": np.zeros(3), "y": np.zeros(4)}, "different numbers of rows"),
    ({"x": np.array([{"a": 1}], dtype=object)}, "Python objects, which are never unpickled"),
    ({"x": np.float32(1.0)}, "is a scalar"),
    ({"x": np.asfortranarray(np.zeros((3, 2)))}, "Fortran order"),
])
def test_files_it_cannot_stream_are_refused_in_one_line(
        tmp_path: Path, arrays: dict[str, np.ndarray], error: str) -> None:
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)  # type: ignore[arg-type]
    with pytest.raises(NpzRowsError, match=error) as e:
        NpzRows(path)
    assert "\n" not in str(e.value)


def test_not_a_zip_and_not_an_array_are_refused(tmp_path: Path) -> None:
    with pytest.raises(NpzRowsError, match=r"is not an \.npz archive"):
        NpzRows(io.BytesIO(b"not a zip"))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("x.npy", b"plain text, no magic")
    with pytest.raises(NpzRowsError, match="member 'x' is not a numpy array"):
        NpzRows(io.BytesIO(buf.getvalue()))


def test_an_array_shorter_than_its_header_promises_is_caught_while_streaming(
        tmp_path: Path) -> None:
    full = io.BytesIO()
    np.save(full, np.zeros((100, 2), np.float32))
    truncated = full.getvalue()[: -8 * 60]  # 60 rows missing
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("x.npy", truncated)
    with NpzRows(io.BytesIO(buf.getvalue())) as rows, pytest.raises(
            NpzRowsError, match="array 'x' ends at row 40 of the 100 its header promises"):
        list(rows.batches(10, max_batch_bytes=MiB))
