"""The trainer's CPU allocator setting: freed big tensors are reused without page faults (glibc only)."""
import platform
import resource
import sys

import pytest
import torch

from fractalmusic.training import cpu_memory
from fractalmusic.training.config import TrainConfig

glibc = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"


@pytest.mark.skipif(not glibc, reason="mallopt is glibc's")
def test_big_tensors_reuse_freed_memory():
    assert cpu_memory.keep_freed_memory()
    assert cpu_memory.keep_freed_memory()  # idempotent
    n = 64 * 2**20 // 4  # 64 MB of float32: above glibc's largest mmap threshold
    faults = []
    for _ in range(4):  # the heap settles after a round or two (small allocations land between the big ones)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        y = torch.ones(n)  # written in full: a fresh mmap would fault on each of its 16,384 pages
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
        assert float(y[-1]) == 1.0
        del y
    assert min(faults[2:]) < 2000, faults


def test_on_by_default_and_can_be_turned_off():
    assert TrainConfig().keep_freed_memory is True
    assert TrainConfig(keep_freed_memory=False).keep_freed_memory is False
