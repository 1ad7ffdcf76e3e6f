"""Memory a run has freed, given back to the system between steps.

A run allocates tensors of ever-changing sizes (keys/values of contexts growing turn by
turn, evaluation batches, credit passes), and glibc keeps much of what they free in its
heaps instead of returning it. ``malloc_trim`` hands the free pages of every heap back.
Measured side by side (two SGCD runs on airline_mini, 3 steps, evaluation every step, one
thread each): without it a run held 5.6 GB after its first evaluation and 9.2 GB from its
first step on; with a trim after each step and evaluation it went back to 3.5-3.9 GB
between them, at the same step times (69.1 vs 69.4 s). The peak inside a step (~9 GB) is
the same: this lowers what parallel runs hold together, not one run's peak. (A fixed
``M_MMAP_THRESHOLD`` held the growth to 4.0 GB too, but mapping every large tensor afresh
made the steps ~30% slower.)
"""

from __future__ import annotations

import ctypes
import os
import sys


def _glibc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return None
    return libc if hasattr(libc, "malloc_trim") else None  # musl has none


_LIBC = _glibc()


def give_back_freed_memory() -> None:
    """Return the free pages of glibc's heaps to the system (a no-op elsewhere)."""
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


def resident_gb() -> float:
    """This process's resident memory now, in GB (0.0 where /proc is not available)."""
    try:
        with open("/proc/self/statm") as statm:
            pages = int(statm.read().split()[1])
    except (OSError, IndexError, ValueError):
        return 0.0
    return pages * os.sysconf("SC_PAGE_SIZE") / 1e9
