"""The newer torch rules on CUDA: tiling max/avg pools (forward and backward), global average
pooling, slice assignments (copy + slice_scatter) and batch statistics without running
statistics (InstanceNorm), compiled with backend="fusec" against float64 eager on the CPU."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402

import fusec  # noqa: E402
import fusec.dynamo  # noqa: E402

pytestmark = [pytest.mark.gpu, pytest.mark.usefixtures("fresh_dynamo")]

TOLERANCE = {torch.float32: dict(rtol=2e-5, atol=2e-5), torch.bfloat16: dict(rtol=2e-2, atol=2e-2)}


def _matches_float64_eager(fn, *inputs, dtype, grad=True):
    """fn compiled on CUDA in dtype against fn in float64 on the CPU, the outputs and the
    inputs' gradients; returns the fusec graphs."""
    cuda = [t.to("cuda", dtype).requires_grad_(grad and t.is_floating_point()) for t in inputs]
    ref = [t.double().requires_grad_(grad and t.is_floating_point()) for t in inputs]
    got, want = torch.compile(fn, backend="fusec")(*cuda), fn(*ref)
    torch.testing.assert_close(got.double().cpu(), want, **TOLERANCE[dtype])
    if grad:
        g = torch.randn(want.shape, dtype=torch.float64)
        got.backward(g.to("cuda", dtype))
        want.backward(g)
        for c, r in zip(cuda, ref):
            torch.testing.assert_close(c.grad.double().cpu(), r.grad, **TOLERANCE[dtype])
    return fusec.dynamo.graphs()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("shape, k", [((5, 3, 38, 102), 2), ((2, 7, 27, 33), 3)])
def test_tiling_avg_pool_forward_and_backward(dtype, shape, k):
    torch.manual_seed(sum(shape))
    graphs = _matches_float64_eager(lambda t: F.avg_pool2d(torch.relu(t) - t * 0.25, k) * 2,
                                    torch.randn(*shape), dtype=dtype)
    assert not any(g.aten_ops for g in graphs), [g.aten_ops for g in graphs]


@pytest.mark.parametrize("shape, k", [((5, 3, 38, 102), 2), ((2, 7, 27, 33), 3)])
def test_tiling_max_pool_forward_and_backward(shape, k):
    """float32: the values before the pool are computed the same way as eager's, so the
    argmax (and the gradient's position) is the same; float64 eager on the GPU."""
    torch.manual_seed(sum(shape))
    x = torch.randn(*shape, device="cuda")

    def fn(t):
        return F.max_pool2d(torch.relu(t) * 0.5 + t, k) * 2
    xc, xe = x.clone().requires_grad_(), x.clone().requires_grad_()
    got, want = torch.compile(fn, backend="fusec")(xc), fn(xe)
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    g = torch.randn_like(want)
    got.backward(g)
    want.backward(g)
    torch.testing.assert_close(xc.grad, xe.grad, rtol=0, atol=0)
    assert not any(g.aten_ops for g in fusec.dynamo.graphs())


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_global_average_pool(dtype):
    torch.manual_seed(3)
    graphs = _matches_float64_eager(lambda t: F.adaptive_avg_pool2d(t * 3, 1).relu(),
                                    torch.randn(6, 37, 13, 11), dtype=dtype)
    assert not any("adaptive" in op for g in graphs for op, _ in g.aten_ops)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_slice_assignment(dtype):
    torch.manual_seed(4)

    def fn(a, b):
        z = a * 2
        z[:, 1:97:3] = b.sin()
        z[-5:] = 5.0
        return z + 1
    _matches_float64_eager(fn, torch.randn(131, 100), torch.randn(131, 32), dtype=dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_instance_norm(dtype):
    torch.manual_seed(5)
    norm = torch.nn.InstanceNorm2d(6, affine=True)
    with torch.no_grad():
        norm.weight.copy_(torch.randn(6))
        norm.bias.copy_(torch.randn(6))
    cuda_norm = torch.nn.InstanceNorm2d(6, affine=True).to("cuda", dtype)
    cuda_norm.load_state_dict(norm.state_dict())
    x = torch.randn(3, 6, 29, 31)
    xc = x.to("cuda", dtype).requires_grad_()
    xr = x.double().requires_grad_()
    got = torch.compile(cuda_norm, backend=fusec.torch_backend(strict=True))(xc)
    want = norm.double()(xr)
    torch.testing.assert_close(got.double().cpu(), want, **TOLERANCE[dtype])
    got.sum().backward()
    want.sum().backward()
    torch.testing.assert_close(xc.grad.double().cpu(), xr.grad, **TOLERANCE[dtype])
