"""fast_math=True on the GPU: the approximations stay within a few ulp of float64."""
import importlib
import sys
from pathlib import Path

import pytest

import fusec

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.gpu

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples"))


@pytest.mark.parametrize("n", [7, 1000, 4097])
def test_fast_softmax_and_gelu_match_float64(n):
    softmax = fusec.kernel(importlib.import_module("softmax").softmax.fn, fast_math=True)
    x = (torch.randn(33, n, device="cuda") * 4 - 1)
    x[0, 0] = -80.0                                  # exp near the bottom of its range
    got = softmax(x).double()
    want = torch.softmax(x.double(), dim=1)
    assert ((got - want).abs() / (1 + want.abs())).max().item() < 2e-6
    bias_gelu = fusec.kernel(importlib.import_module("bias_gelu").bias_gelu.fn,
                             fast_math=True)
    b = torch.randn(n, device="cuda")
    got = bias_gelu(x, b).double()
    want = torch.nn.functional.gelu(x.double() + b.double())
    assert ((got - want).abs() / (1 + want.abs())).max().item() < 2e-6
