"""Scans on a GPU through both backends against float64 references: bf16, fp16 and fp32,
scan lengths 1 to 20000 (past 8192 walked in chunks), rows along the last and an outer
axis, reversed, strided inputs, and an output poisoned with NaN that every element of must
be written."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import fusec
import fusec.language as fl
from conftest import assert_close

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))
import test_scan as scans  # noqa: E402

pytestmark = pytest.mark.gpu

NAMES = {torch.float32: "float32", torch.bfloat16: "bfloat16", torch.float16: "float16"}


def _want(x: torch.Tensor, kind: str, axis: int, reverse: bool) -> np.ndarray:
    return scans.running(x.double().cpu().numpy(), kind, axis, reverse)


@pytest.mark.parametrize("backend", ["cuda", "ptx"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("shape, axis", [((1, 1), 1), ((7, 7), 1), ((100, 100), 0),
                                         ((3, 1000), 1), ((2, 4097), 1), ((5, 9, 33), 1),
                                         ((2, 20000), 1), ((9000, 3), 0)])
@pytest.mark.parametrize("reverse", [False, True])
def test_cumsum_and_cummax(backend, dtype, shape, axis, reverse):
    torch.manual_seed(sum(shape))
    x = (torch.randn(shape, device="cuda") * 3).to(dtype)
    for kind in ("sum", "max"):
        got = scans.tensor_scans.compile(x, kind, axis, reverse, backend=backend)(
            x, kind, axis, reverse)
        assert_close(got.double().cpu().numpy(), _want(x, kind, axis, reverse), NAMES[dtype],
                     f"cum{kind} {backend} {shape} axis {axis} reverse={reverse}")


@pytest.mark.parametrize("backend", ["cuda", "ptx"])
@pytest.mark.parametrize("kind", ["sum", "prod", "max", "min"])
def test_tile_scans_of_ints_and_bools(backend, kind):
    for dtype in (np.int32, np.bool_):
        x = torch.from_numpy(scans._input(kind, dtype, (10, 100), 5)).cuda()
        for reverse in (False, True):
            got = scans.tile_scans.compile(x, kind, reverse, backend=backend)(x, kind, reverse)
            want = scans.running(x.cpu().numpy(), kind, 1, reverse)
            np.testing.assert_array_equal(got.cpu().numpy(), want)


@fusec.kernel
def scan_into(x, out):
    out[:, :] = fl.cumsum(x * 2, axis=1) - 1
    return out


@pytest.mark.parametrize("backend", ["cuda", "ptx"])
def test_strided_input_and_poisoned_output(backend):
    base = torch.randn(333, 514, device="cuda")
    x = base[:, ::2]                                  # a stride of 2 along the scan
    out = torch.full((333, 257), float("nan"), device="cuda")
    scan_into.compile(x, out, backend=backend)(x, out)
    want = np.cumsum(x.double().cpu().numpy() * 2, 1) - 1
    assert_close(out.double().cpu().numpy(), want, "float32")
    xt = torch.randn(257, 333, device="cuda").t()     # rows along the slow dim
    out = torch.full((333, 257), float("nan"), device="cuda")
    scan_into.compile(xt, out, backend=backend)(xt, out)
    assert_close(out.double().cpu().numpy(), np.cumsum(xt.double().cpu().numpy() * 2, 1) - 1,
                 "float32")


def test_cumsum_and_its_gradient_through_torch_compile():
    """cumsum's gradient (flip, cumsum, flip) is one reversed scan in a fused region."""
    x = torch.randn(64, 1000, device="cuda", requires_grad=True)

    def f(t):
        return torch.cumsum(torch.sin(t), 1) * t
    y = torch.compile(f, backend="fusec")(x)
    xd = x.detach().double().requires_grad_()
    want = f(xd)
    assert_close(y.detach().double().cpu().numpy(), want.detach().cpu().numpy(), "float32")
    y.backward(torch.ones_like(y))
    want.backward(torch.ones_like(want))
    assert_close(x.grad.double().cpu().numpy(), xd.grad.cpu().numpy(), "float32")
