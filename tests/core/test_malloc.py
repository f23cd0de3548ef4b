"""glibc tuned for large tensors: a 64 MiB tensor comes from the heap, not from a fresh mmap, once tuned."""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import subprocess
import sys

import pytest

PROBE = r"""
import ctypes, ctypes.util, sys, torch
from labelwise.malloc import tune_malloc
class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                               "fsmblks", "uordblks", "fordblks", "keepcost")]
libc = ctypes.CDLL(ctypes.util.find_library("c"))
libc.mallinfo2.restype = Info
tuned = tune_malloc()
before = libc.mallinfo2().hblks
x = torch.empty(64 << 20, dtype=torch.uint8).fill_(1)
print(tuned, libc.mallinfo2().hblks - before)
"""


def _mallinfo2() -> bool:
    name = ctypes.util.find_library("c")
    return sys.platform.startswith("linux") and bool(name) and hasattr(ctypes.CDLL(name), "mallinfo2")


@pytest.mark.skipif(not _mallinfo2(), reason="needs glibc >= 2.33 (mallinfo2)")
@pytest.mark.parametrize("setting, tuned, new_mmaps", [("1", True, 0), ("0", False, 1)])
def test_large_tensors_stay_out_of_mmap_once_tuned(setting, tuned, new_mmaps):
    env = {**os.environ, "LABELWISE_MALLOC": setting}
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True).stdout
    assert out.split() == [str(tuned), str(new_mmaps)]
