"""Keep freed CPU memory inside the process for reuse (glibc's allocator), instead of handing it back each step.

glibc serves every allocation above its mmap threshold (at most 32 MB) with a fresh `mmap` and unmaps it on
`free`. A training step on wide piano rolls allocates and frees many such tensors, so every step pays for
hundreds of thousands of page faults: at crop 512 on the small fractal preset about 300,000 faults and 1.5 s of
kernel time per 3 s step (docs/BENCHMARKS.md). With mmap off (`M_MMAP_MAX = 0`) and heap trimming off
(`M_TRIM_THRESHOLD = -1`) freed blocks stay in the heap and the next step reuses them without faults, as PyTorch's
CUDA caching allocator does on a GPU. The process keeps its peak memory until it exits; that is the price.

Only glibc understands these settings; elsewhere (macOS, Windows, musl) nothing is changed.
"""
from __future__ import annotations

import ctypes
import platform
import sys

M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4

_applied = False


def keep_freed_memory() -> bool:
    """Switch glibc to reuse freed memory (process-wide, once); True when it is (or already was) in effect."""
    global _applied
    if _applied:
        return True
    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    _applied = bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, -1))
    return _applied
