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
    n = 64 * 2**20 // 4  # 64 MB of float32: above glibc's largest mmap threshold, so it would be mmap-ed and unmapped
    faults = []
    for i in range(16):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        # written in full: fresh memory faults on each of its pages. Later rounds ask for 1 MB less: small
        # allocations between rounds can take the front of a freed block, and an equal size would then need a new one
        y = torch.ones(n if i == 0 else n - 2**18)
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
        assert float(y[-1]) == 1.0
        del y
    # the heap settles after a few rounds (a few freed blocks kept side by side); unmapped memory would fault on all
    # 15,000+ pages every round, forever
    assert max(faults[-4:]) < 2000, faults


def test_on_by_default_and_can_be_turned_off():
    assert TrainConfig().keep_freed_memory is True
    assert TrainConfig(keep_freed_memory=False).keep_freed_memory is False
