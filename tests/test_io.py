"""Atomic writes: a failure at any point leaves the previous file or folder exactly as it was."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from pipeline import io
from pipeline.errors import DataError
from tests.data.helpers import tree_bytes


def test_atomic_write_json_round_trips_numpy_values(tmp_path: Path) -> None:
    path = io.atomic_write_json(tmp_path / "a" / "m.json", {"x": np.float32(0.5), "n": np.int64(3), "v": np.arange(2)})
    assert io.read_json(path) == {"x": 0.5, "n": 3, "v": [0, 1]}
    assert os.stat(path).st_mode & 0o777 == 0o666 & ~_umask()


def test_failed_writes_keep_the_previous_file_and_leave_no_temporaries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    io.atomic_write_json(tmp_path / "m.json", {"ok": 1})
    io.atomic_save_npy(tmp_path / "a.npy", np.arange(3))
    with pytest.raises(ValueError, match="non-finite"):
        io.atomic_write_json(tmp_path / "m.json", {"bad": float("nan")})

    def boom(*args: object) -> None:
        raise KeyboardInterrupt  # as if the process were interrupted at the rename

    monkeypatch.setattr(io.os, "replace", boom)
    with pytest.raises(KeyboardInterrupt):
        io.atomic_save_npy(tmp_path / "a.npy", np.arange(1000))
    with pytest.raises(KeyboardInterrupt):
        io.atomic_write_bytes(tmp_path / "m.json", b"{}")
    assert io.read_json(tmp_path / "m.json") == {"ok": 1}
    np.testing.assert_array_equal(io.load_npy(tmp_path / "a.npy"), np.arange(3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.npy", "m.json"]


def test_atomic_dir_replaces_whole_folders_or_nothing(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with io.atomic_dir(out) as d:
        (d / "a.txt").write_text("old")
        (d / "b.txt").write_text("old")
    before = tree_bytes(out)
    with pytest.raises(RuntimeError), io.atomic_dir(out) as d:
        (d / "a.txt").write_text("new")
        raise RuntimeError("the stage failed half way")
    assert tree_bytes(out) == before
    with io.atomic_dir(out) as d:
        (d / "c.txt").write_text("new")
    assert tree_bytes(out) == {"c.txt": b"new"}  # files of the old run do not linger
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_atomic_dir_cleans_up_after_a_killed_run(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "a").write_text("1")
    (tmp_path / ".out.abc123.tmp").mkdir()  # what SIGKILL during a run leaves behind
    with io.atomic_dir(out) as d:
        (d / "a").write_text("2")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    os.replace(out, tmp_path / ".out.old")  # killed between the two renames of the swap
    with pytest.raises(RuntimeError), io.atomic_dir(out):
        raise RuntimeError
    assert (out / "a").read_text() == "2"


def test_load_npy_refuses_pickle_and_names_missing_files(tmp_path: Path) -> None:
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(DataError, match=r"obj.npy: not a readable .npy array"):
        io.load_npy(tmp_path / "obj.npy", mmap=False)
    with pytest.raises(DataError, match=r"missing.npy: not found; run the stage"):
        io.load_npy(tmp_path / "missing.npy")
    with pytest.raises(DataError, match="refusing to save an object array"):
        io.atomic_save_npy(tmp_path / "x.npy", np.array([None], dtype=object))


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def test_npy_blocks_give_np_saves_bytes_without_a_mapped_output(tmp_path: Path) -> None:
    a = np.random.default_rng(0).random((1000, 37)).astype(np.float32)
    blocks = (a[i : i + 77].astype(np.float64) for i in range(0, 1000, 77))  # converted to the file's dtype
    io.atomic_save_npy_blocks(tmp_path / "a.npy", a.shape, np.float32, blocks)
    np.save(tmp_path / "b.npy", a)
    assert (tmp_path / "a.npy").read_bytes() == (tmp_path / "b.npy").read_bytes()
    io.atomic_save_npy_blocks(tmp_path / "e.npy", (0, 5), np.float32, [])
    assert np.load(tmp_path / "e.npy").shape == (0, 5)


def test_npy_blocks_refuse_a_full_disk_and_a_short_array(tmp_path: Path, monkeypatch) -> None:
    import shutil

    with pytest.raises(ValueError, match="2 rows written for a header of 3"):
        io.atomic_save_npy_blocks(tmp_path / "short.npy", (3, 2), np.float32, [np.zeros((2, 2))])
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(shutil, "disk_usage", lambda _p: usage._replace(free=2**20))
    with pytest.raises(DataError, match=r"big.npy: needs 4 MiB on disk but 1 MiB are free there; free disk space"):
        io.atomic_save_npy_blocks(tmp_path / "big.npy", (2**20, 1), np.float32, [])
    assert not list(tmp_path.iterdir())  # no file, no temporary
