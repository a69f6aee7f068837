"""The float32 math of the PTX backend on the GPU (math.py's functions, with the hardware's
ex2 on the reduced range, and torch's gelu) within the ulp bounds of the CPU
(tests/unit/test_llvm_math.py), over the same inputs."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import fusec
import fusec.language as fl

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))
import test_llvm_math as cpu_math  # noqa: E402
import test_ops as ops  # noqa: E402

pytestmark = pytest.mark.gpu


@fusec.kernel
def gelu_tanh(x, OUT: fusec.constexpr):
    out = fusec.empty(x.shape, OUT)
    for t in fusec.tile(x.shape[0]):
        out[t] = fl.gelu(x[t], approximate="tanh")
    return out


KERNELS = {**ops.UNARY_KERNELS, "gelu_tanh": gelu_tanh}


@pytest.mark.parametrize("name", list(cpu_math.REFERENCE))
def test_ptx_float32_math_accuracy(name, monkeypatch):
    """gelu is torch's formula there (NVPTXTarget.gelu_tail_absolute): its bound is taken
    relative to max(|gelu(x)|, |x| / 2)."""
    x = cpu_math.inputs()
    xd = torch.from_numpy(x).cuda()
    ck = KERNELS[name].compile(xd, fl.float32, backend="ptx")
    got = ck(xd, fl.float32).cpu().numpy()
    if name == "gelu":
        monkeypatch.setattr(cpu_math, "ABSOLUTE_TAIL", {"gelu"})
        cpu_math.assert_within_ulps(name, x, got, bound=4)
    else:
        cpu_math.assert_within_ulps(name, x, got)


def test_ptx_exp2_of_integers_is_exact():
    """2**n for integers n: 2**n from its bits times the hardware's 2**0 (n >= -126), or its
    2**(n + 126) for subnormal results; 2**128 overflows."""
    x = np.arange(-149, 129, dtype=np.float32)
    xd = torch.from_numpy(x).cuda()
    got = KERNELS["exp2"].compile(xd, fl.float32, backend="ptx")(xd, fl.float32).cpu().numpy()
    assert (got == np.exp2(x.astype(np.float64)).astype(np.float32)).all()
