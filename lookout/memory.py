"""Giving freed memory back to the operating system.

glibc's allocator keeps memory a process has freed for later use, so a device's resident
size stays at its high-water mark after a one-off burst: loading models (their weights are
read, then repacked by OpenVINO) or a gallery (its metadata is read into Python objects,
then kept compactly). ``release_freed_memory()`` asks glibc to return those pages
(``malloc_trim``); it is called after such bursts. Measured on the device with a
25,000-photo gallery: about 35 MB (docs/benchmarks.md). Elsewhere than glibc it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Callable

from lookout.log import get_logger

log = get_logger(__name__)


def _malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    try:
        return getattr(ctypes.CDLL(name), "malloc_trim", None) if name else None
    except OSError:
        return None


_TRIM = _malloc_trim()


def release_freed_memory() -> bool:
    """Return freed heap pages to the OS; True where the C library can (glibc)."""
    if _TRIM is None:
        return False
    _TRIM(0)
    return True


def resident_mb() -> float | None:
    """This process's resident set size in MB (Linux), for logs and benchmarks."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None
