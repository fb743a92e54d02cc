"""Will it fit? Estimate a data set's memory before allocating it, and say so when it will not.

A source is decoded into one uint8 array in memory before the prepare stage streams it to disk, so
that array must fit in the memory available now (MemAvailable: free memory plus what the kernel can
reclaim from caches). Failing early, with the estimate, beats a MemoryError traceback minutes in,
or a machine that swaps itself to a halt.
"""

from __future__ import annotations

import os

from pipeline.errors import DataError


def available_bytes() -> int:
    """Memory available for new allocations, from /proc/meminfo (Linux), else free physical pages."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def check_fits(n_bytes: int, what: str, hint: str) -> None:
    """DataError (exit 3) if ``n_bytes`` exceed the memory available, naming the estimate and the memory."""
    available = available_bytes()
    if n_bytes > available:
        raise DataError(f"{what} needs about {_gib(n_bytes)} in memory but {_gib(available)} are available; {hint}")


def _gib(n: int) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**27 else f"{n / 2**20:.0f} MiB"
