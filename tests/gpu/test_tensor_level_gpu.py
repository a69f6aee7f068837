"""Whole-tensor kernels (fused and tiled by the compiler) on a GPU, both backends, against
float64 torch references: bf16 and fp32, odd sizes, negative values; each anchor kernel is
one launch; outputs written into a poisoned tensor are fully overwritten."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from conftest import assert_close

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import tensor_kernels as K  # noqa: E402

pytestmark = pytest.mark.gpu

SHAPES = [(1, 1), (7, 100), (100, 1000), (4097, 33)]


def _refs(x, w, b):
    x = x.double()
    w, b = w.double(), b.double()
    c = x - x.mean(1, keepdim=True)
    return {
        K.softmax: ((x.clone(),), torch.softmax(x, 1)),
        K.log_softmax: ((x.clone(),), torch.log_softmax(x, 1)),
        K.layernorm: (None, c / torch.sqrt((c * c).mean(1, keepdim=True) + 1e-5) * w + b),
        K.rmsnorm: (None, x * torch.rsqrt((x * x).mean(1, keepdim=True) + 1e-5) * w),
        K.bias_gelu: (None, torch.nn.functional.gelu(x + b)),
    }


@pytest.mark.parametrize("backend", ["cuda", "ptx"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("shape", SHAPES)
def test_anchor_kernels(backend, dtype, shape):
    torch.manual_seed(sum(shape))
    x = (torch.randn(shape, device="cuda") * 2).to(dtype)
    w = torch.randn(shape[1], device="cuda").to(dtype)
    b = torch.randn(shape[1], device="cuda").to(dtype)
    args = {K.softmax: (x,), K.log_softmax: (x,), K.layernorm: (x, w, b, 1e-5),
            K.rmsnorm: (x, w, 1e-5), K.bias_gelu: (x, b)}
    name = "bfloat16" if dtype == torch.bfloat16 else "float32"
    for kernel, (_, want) in _refs(x, w, b).items():
        compiled = kernel.compile(*args[kernel], backend=backend)
        assert compiled.num_launches == 1
        got = compiled(*args[kernel])
        assert_close(got.double().cpu().numpy(), want.cpu().numpy(), name,
                     f"{kernel.fn.__name__} {backend} {shape}")


@pytest.mark.parametrize("backend", ["cuda", "ptx"])
def test_rowsum_and_poisoned_output(backend):
    x = torch.randn(333, 257, device="cuda")
    b = torch.randn(257, device="cuda")
    y, s = K.bias_gelu_rowsum.compile(x, b, backend=backend)(x, b)
    want = torch.nn.functional.gelu(x.double() + b.double())
    assert_close(y.double().cpu().numpy(), want.cpu().numpy(), "float32")
    assert_close(s.double().cpu().numpy(), want.sum(1).cpu().numpy(), "float32")
    out = torch.full((333, 257), float("nan"), device="cuda")
    K.into_output.compile(x, out, backend=backend)(x, out)
    assert_close(out.double().cpu().numpy(),
                 torch.where(x > 0, x, 0.5 * x).double().cpu().numpy(), "float32")


@pytest.mark.parametrize("backend", ["cuda", "ptx"])
def test_split_groups_on_the_gpu(backend):
    x = torch.randn(300, 70, device="cuda")
    got = K.scale_by_total.compile(x, backend=backend)(x)
    assert_close(got.double().cpu().numpy(), (x.double() / x.double().sum()).cpu().numpy(),
                 "float32")
    got = K.row_and_column_means.compile(x, backend=backend)(x)
    xd = x.double()
    want = xd - xd.mean(1, keepdim=True) - xd.mean(0, keepdim=True)
    assert_close(got.double().cpu().numpy(), want.cpu().numpy(), "float32")


@pytest.mark.parametrize("backend", ["cuda", "ptx"])
def test_reductions_over_several_short_axes_on_the_gpu(backend):
    """GroupNorm's backward sums (H looped, W whole) and a convolution's bias gradient (split
    into two launches). float32 only: a whole-tensor sum over several axes of a bf16 tensor
    rounds each axis's partial sums to bf16 (the IR's reduction chain), off a float64
    reference by several bf16 ulps over 10^5 elements."""
    dtype, name = torch.float32, "float32"
    x = torch.randn(3, 5, 97, 100, device="cuda").to(dtype)
    g = torch.randn(3, 5, 97, 100, device="cuda").to(dtype)
    a, s = K.pixel_sums.compile(x, g, backend=backend)(x, g)
    xd, gd = x.double(), g.double()
    assert_close(a.double().cpu().numpy(), (xd * gd).sum((2, 3)).cpu().numpy(), name)
    assert_close(s.double().cpu().numpy(), xd.sum((2, 3)).cpu().numpy(), name)
    x = torch.randn(16, 3, 101, 90, device="cuda").to(dtype)
    compiled = K.bias_grad.compile(x, backend=backend)
    assert compiled.num_launches == 2
    total, scaled = compiled(x)
    want = x.double() * 0.5
    assert_close(scaled.double().cpu().numpy(), want.cpu().numpy(), name)
    assert_close(total.double().cpu().numpy(), want.sum((0, 2, 3)).cpu().numpy(), name)


@pytest.mark.parametrize("backend", ["cuda", "ptx"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("mkn", [(100, 72, 200), (1, 16, 7), (1000, 130, 33), (512, 256, 384)])
def test_matmul_epilogue(backend, dtype, mkn):
    m, k, n = mkn
    torch.manual_seed(m + k + n)
    a = (torch.randn(m, k, device="cuda") / k ** 0.5).to(dtype)
    b = torch.randn(k, n, device="cuda").to(dtype)
    bias = torch.randn(n, device="cuda").to(dtype)
    compiled = K.half_matmul_epilogue.compile(a, b, bias, backend=backend)
    assert compiled.num_launches == 1
    got = compiled(a, b, bias)
    z = a.double() @ b.double() + bias.double()
    name = {torch.float32: "float32", torch.bfloat16: "bfloat16", torch.float16: "float16"}[dtype]
    # float32 accumulation over K in another order than float64: a K-sized tolerance
    tol = {"float32": 1e-4}.get(name, name)
    got64, want = got.double().cpu().numpy(), torch.nn.functional.silu(z).cpu().numpy()
    if tol == 1e-4:
        assert abs(got64 - want).max() <= 1e-4 * (1 + abs(want).max())
    else:
        assert_close(got64, want, name)


def test_mlp_block_on_the_gpu():
    torch.manual_seed(3)
    x = torch.randn(300, 96, device="cuda")
    w1, b1 = torch.randn(96, 160, device="cuda") / 10, torch.randn(160, device="cuda")
    w2, b2 = torch.randn(160, 96, device="cuda") / 10, torch.randn(96, device="cuda")
    compiled = K.mlp_block.compile(x, w1, b1, w2, b2, backend="cuda")
    assert compiled.num_launches == 2
    got = compiled(x, w1, b1, w2, b2).double()
    xd = x.double()
    want = xd + torch.nn.functional.gelu(xd @ w1.double() + b1.double()) @ w2.double() + b2.double()
    assert (got - want).abs().max().item() <= 1e-4 * (1 + want.abs().max().item())


@pytest.mark.parametrize("backend", ["cuda", "ptx"])
def test_fused_tile_loops_on_the_gpu(backend):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from device_kernels import two_fusable_passes
    x = torch.randn(100_003, device="cuda")
    compiled = two_fusable_passes.compile(x, backend=backend)
    assert compiled.num_launches == 1
    torch.testing.assert_close(compiled(x), x * 2.0 + 1.0)


@pytest.mark.parametrize("backend", ["cuda", "ptx"])
@pytest.mark.parametrize("case", K.VIEW_CASES, ids=lambda c: c[0].fn.__name__)
def test_view_kernels(backend, case):
    """Whole-tensor reshapes and slices against numpy in float64, launches as on the CPU."""
    kernel, shapes, ints, reference, launches = case
    torch.manual_seed(len(shapes))
    args = [torch.randn(s, device="cuda") * 2 for s in shapes]
    compiled = kernel.compile(*args, *ints, backend=backend)
    assert compiled.num_launches == launches
    got = compiled(*args, *ints)
    want = reference(*(a.double().cpu().numpy() for a in args), *ints)
    assert_close(got.double().cpu().numpy(), want, "float32", kernel.fn.__name__)


@pytest.mark.parametrize("backend", ["cuda", "ptx"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("shape", [(513, 7), (8192, 1000), (4097, 33), (100, 3000)])
def test_split_column_and_full_reductions(backend, dtype, shape):
    """Column sums/max and a full sum (passes/tile_split.py): two launches each, partials in
    float32, the elementwise result of the same group stored by the first launch."""
    torch.manual_seed(shape[0])
    x = (torch.randn(shape, device="cuda") * 2 - 0.5).to(dtype)
    name = "bfloat16" if dtype == torch.bfloat16 else "float32"
    xd = x.double()
    compiled = K.column_sums.compile(x, backend=backend)
    assert compiled.num_launches == (2 if shape[0] > 512 else 1)
    s, m, y = compiled(x)
    total = K.full_sum.compile(x, backend=backend)
    assert total.num_launches == (1 if shape == (513, 7) else 2)     # 4K elements: one
    for got, want in ((s, xd.sum(0)), (m, xd.amax(0, keepdim=True)), (y, xd * 2),
                      (total(x), xd.sum())):
        assert_close(got.double().cpu().numpy(), want.cpu().numpy(), name,
                     f"split reductions {backend} {shape}")


@pytest.mark.parametrize("backend", ["cuda", "ptx"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("shape", [(8, 512, 1024), (3, 700, 33)])
def test_split_sum_over_leading_dims(backend, dtype, shape):
    torch.manual_seed(shape[1])
    x = (torch.randn(shape, device="cuda") - 0.3).to(dtype)
    compiled = K.leading_sums.compile(x, backend=backend)
    assert compiled.num_launches == 2
    assert_close(compiled(x).double().cpu().numpy(), x.double().sum((0, 1)).cpu().numpy(),
                 "bfloat16" if dtype == torch.bfloat16 else "float32",
                 f"leading_sums {backend} {shape}")


@pytest.mark.parametrize("backend", ["cuda", "ptx"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("shape", [(8, 512, 1024), (3, 700, 33)])
def test_rmsnorm_backward_row_and_column_sums(backend, dtype, shape):
    """The weight's gradient (split sum over (0, 1)) and the input's (a row group), from a
    shared cast of the upstream gradient: three launches, right against float64."""
    torch.manual_seed(shape[2])
    x, g = ((torch.randn(shape, device="cuda") - 0.2).to(dtype) for _ in range(2))
    w = torch.randn(shape[2], device="cuda").to(dtype)
    rstd = torch.rsqrt(x.double().pow(2).mean(2, keepdim=True) + 1e-6).float()
    compiled = K.rmsnorm_backward.compile(x, g, w, rstd, backend=backend)
    assert compiled.num_launches == 3
    dw, dx = compiled(x, g, w, rstd)
    xd, gd, wd, rd = (t.double() for t in (x, g, w, rstd))
    row = (gd * wd * xd).sum(2, keepdim=True)
    name = "bfloat16" if dtype == torch.bfloat16 else "float32"
    for got, want in ((dw, (gd * xd * rd).sum((0, 1))),
                      (dx, gd * wd * rd - xd * row * rd ** 3 / shape[2])):
        assert_close(got.double().cpu().numpy(), want.cpu().numpy(), name,
                     f"rmsnorm_backward {backend} {shape}")
