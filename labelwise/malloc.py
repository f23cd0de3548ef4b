"""Keep large CPU tensors out of mmap: glibc's allocator tuned once per process (Linux only).

glibc serves every allocation above its mmap threshold (at most 32 MiB) with a fresh ``mmap`` and
returns it with ``munmap`` when freed. Training at photo sizes allocates and frees activations of
50-400 MiB every step, so each step faults in and zeroes those pages again: the kernel's share of
the CPU time (``sy`` in top) reached 100% on one core. With mmap off for the main heap and freed
memory kept for reuse, one EfficientNet-Lite0 epoch at 224 px (1,200 images, batch 64, 2 cores) went
from 80 s to 40 s, and from 52 s to 28 s with --frozen-stages 3 (``bench/speed.py`` photos). At
28 px (Fashion-MNIST) no tensor is that large and nothing changes. PyTorch's CPU tuning guide gives
the same advice (jemalloc or tcmalloc); this needs no extra library.

The cost: memory freed by a step stays in the process for the next one (peak RSS is unchanged; it
is not handed back to the system between steps). ``LABELWISE_MALLOC=0`` leaves glibc's defaults.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_MAX = -1, -2, -4  # malloc.h
TOP_PAD = 256 << 20  # grow the heap 256 MiB at a time
_done: bool | None = None


def _libc():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc if hasattr(libc, "mallopt") else None
    except OSError:
        return None


def tune_malloc() -> bool:
    """Tune glibc malloc for large tensors (once); True when it is in effect."""
    global _done
    if _done is not None:
        return _done
    libc = None if os.environ.get("LABELWISE_MALLOC", "1") == "0" else _libc()
    _done = bool(libc) and all(libc.mallopt(param, value) == 1 for param, value in (
        (M_MMAP_MAX, 0),  # no mmap for the main heap: large blocks come from (and go back to) the heap
        (M_TRIM_THRESHOLD, 2**31 - 1),  # and freed memory stays there for the next step
        (M_TOP_PAD, TOP_PAD)))
    return _done
