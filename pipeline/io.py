"""Atomic file writes and safe array reads shared by every stage.

A stage that fails or is killed must leave the previous outputs intact, so nothing is written in
place: each file goes to a temporary sibling, is flushed to disk, then renamed over the target
(``os.replace`` is atomic on one file system). ``atomic_dir`` does the same for a folder of outputs.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from pipeline.errors import DataError, first_line

__all__ = [
    "atomic_dir",
    "atomic_save_npy",
    "atomic_save_npy_blocks",
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_json",
    "gib",
    "load_npy",
    "read_json",
]


def atomic_write(path: str | Path, write: Callable[[BinaryIO], object]) -> Path:
    """The one atomic writer: ``write(f)`` fills a temporary sibling of ``path``, which is flushed to
    disk and renamed over ``path``. Readers see the old file or the new one, never a part."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:  # write streams: a large array is not copied into memory
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; give the usual permissions
        os.replace(tmp, path)
    except BaseException:  # also on KeyboardInterrupt: never leave the temporary file behind
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    return atomic_write(path, lambda f: f.write(data))


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    """Write ``obj`` as indented JSON; NaN and inf are refused because JSON has no such numbers."""
    text = json.dumps(_finite(obj), indent=2, allow_nan=False) + "\n"
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_save_npy(path: str | Path, array: np.ndarray) -> Path:
    """Save one array as ``.npy`` (never pickled), atomically."""
    array = np.asarray(array)
    if array.dtype.hasobject:
        raise DataError(f"{path}: refusing to save an object array (it would need pickle)")
    return atomic_write(path, lambda f: np.save(f, array, allow_pickle=False))


def atomic_save_npy_blocks(
    path: str | Path, shape: tuple[int, int], dtype: np.dtype | type, blocks: Iterable[np.ndarray]
) -> Path:
    """Save an array of ``shape`` given as consecutive row ``blocks``, atomically, holding one block at a time.

    The same bytes as ``np.save`` of the whole array. The file is written, not memory-mapped, so
    what was written is page cache the kernel flushes and reclaims, never part of this process's
    resident memory (a mapped output of several GB would be). Refused (DataError) before writing
    when the disk has less room than the array.
    """
    path, dtype = Path(path), np.dtype(dtype)
    n_bytes = int(np.prod(shape)) * dtype.itemsize
    path.parent.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(path.parent).free
    if n_bytes > free:
        raise DataError(
            f"{path}: needs {gib(n_bytes)} on disk but {gib(free)} are free there; free disk space or bring less data"
        )

    def write(f: BinaryIO) -> None:
        np.lib.format.write_array_header_1_0(f, {"descr": dtype.str, "fortran_order": False, "shape": tuple(shape)})
        rows = 0
        for block in blocks:
            block = np.ascontiguousarray(block, dtype=dtype).reshape(-1, *shape[1:])
            f.write(memoryview(block).cast("B"))
            rows += len(block)
        if rows != shape[0]:  # a bug in the caller: never leave a file whose header lies
            raise ValueError(f"{path}: {rows} rows written for a header of {shape[0]}")

    return atomic_write(path, write)


def gib(n: int) -> str:
    """A byte count as people read it in a message: GiB from 128 MiB up, MiB below."""
    return f"{n / 2**30:.1f} GiB" if n >= 2**27 else f"{n / 2**20:.0f} MiB"


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a fresh temporary folder; on success it replaces ``path`` as a whole, on error it is removed.

    Readers see either the complete old folder or the complete new one; the swap is two renames.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    old = path.with_name(f".{path.name}.old")
    if old.exists() and not path.exists():  # a run was killed between the two renames below
        os.replace(old, path)
    for stale in path.parent.glob(f".{path.name}.*.tmp"):  # left by a run that was killed
        shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    os.chmod(tmp, 0o777 & ~_umask())
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(old, ignore_errors=True)
    if path.exists():
        os.replace(path, old)
    os.replace(tmp, path)
    shutil.rmtree(old, ignore_errors=True)


def load_npy(path: str | Path, mmap: bool = True) -> np.ndarray:
    """Read an ``.npy`` array without pickle, memory-mapped by default (mini-batches read slices)."""
    path = Path(path)
    try:
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except FileNotFoundError:
        raise DataError(f"{path}: not found; run the stage that writes it first (dvc repro)") from None
    except (ValueError, OSError) as e:
        if mmap and _readable_npy(path):  # a sound file that cannot be mapped (address space, file system)
            raise DataError(
                f"{path}: cannot be memory-mapped ({first_line(e)}); raise the address-space limit (ulimit -v) "
                "or move the data to a local file system"
            ) from None
        raise DataError(f"{path}: not a readable .npy array ({first_line(e)}); rerun the stage writing it") from None


def _readable_npy(path: Path) -> bool:
    """Whether ``path`` holds a complete .npy header and as many bytes as it promises."""
    try:
        with open(path, "rb") as f:
            fmt = np.lib.format
            read = fmt.read_array_header_1_0 if fmt.read_magic(f) == (1, 0) else fmt.read_array_header_2_0
            shape, _, dtype = read(f)
            return os.fstat(f.fileno()).st_size >= f.tell() + int(np.prod(shape)) * dtype.itemsize
    except (ValueError, OSError, EOFError):
        return False


def read_json(path: str | Path) -> Any:
    """Read a JSON file written by a stage; a missing or broken file is a DataError naming it."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{path}: not found; run the stage that writes it first (dvc repro)") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: not valid JSON ({first_line(e)})") from None


def _finite(obj: Any) -> Any:
    """Convert NumPy scalars/arrays to plain Python and check every float is finite."""
    if isinstance(obj, dict):
        return {str(k): _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _finite(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        raise ValueError(f"refusing to write non-finite number {obj} to JSON")
    if isinstance(obj, Path):
        return obj.as_posix()
    return obj


def _umask() -> int:
    mask = os.umask(0o022)  # the only way to read the umask is to set it; restore it at once
    os.umask(mask)
    return mask
