"""Hardware facts come from the machine (sysfs, LLVM, the CUDA driver)."""
from __future__ import annotations

import os

import pytest

from fusec.autotune.hardware import cpu_info, gpu_info


def test_cpu_facts_are_read_from_the_machine():
    info = cpu_info()
    assert info.cores == len(os.sched_getaffinity(0))
    assert info.vector_bits in (128, 256, 512)
    assert info.l1d_bytes >= 4096 and info.l2_bytes >= info.l1d_bytes
    assert info.source["vector_bits"] == "llvm host features"
    assert set(info.source) >= {"cores", "l1d_bytes", "l2_bytes", "l3_bytes"}


def test_no_gpu_gives_none_without_raising():
    try:
        import torch
        if torch.cuda.is_available():
            pytest.skip("a GPU is present")
    except ImportError:
        pass
    assert gpu_info() is None


@pytest.mark.gpu
def test_gpu_facts_from_the_driver():
    info = gpu_info()
    assert info is not None and info.arch.startswith("sm_")
    assert info.sm_count > 0 and info.smem_per_block_optin >= info.smem_per_block
    assert info.peak_bandwidth > 1e11
    assert all(v == "driver" for v in info.source.values())
