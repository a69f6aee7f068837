"""The GPU backends (CUDA C, and PTX through LLVM NVPTX; every test runs on both) on a
GPU: every example and the op kernels of tests/unit/test_ops.py (every op on every dtype,
sizes 1, 7, 100, 1000, 4097) on torch CUDA tensors against float64 references, with outputs
poisoned (NaN / garbage) before the kernel writes them; strided inputs, in-place kernels,
atomics, loops, several launches, streams, warps, errors."""
from __future__ import annotations

import importlib
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import fusec
import fusec.language as fl
from conftest import assert_close, random_array, round_to_dtype
from device_kernels import loops_and_ifs, scatter_add, total, two_passes, upper_triangle

HERE = Path(__file__).resolve().parent
EXAMPLES = HERE.parents[1] / "examples"
sys.path.insert(0, str(HERE.parent / "unit"))
sys.path.insert(0, str(EXAMPLES))
import test_ops as ops  # noqa: E402

pytestmark = pytest.mark.gpu

SIZES = (1, 7, 100, 1000, 4097)
GPU_BACKENDS = ("cuda", "ptx")
EXAMPLE_NAMES = sorted(p.stem for p in EXAMPLES.glob("*.py")
                       if not p.stem.startswith("_") and p.stem != "run_all")


def to_cuda(a, dtype_name: str | None = None):
    """numpy array (bfloat16 as its uint16 bits when dtype_name says so) or torch CPU
    tensor -> torch CUDA tensor; anything else unchanged."""
    if isinstance(a, np.ndarray):
        t = torch.from_numpy(np.ascontiguousarray(a))
        if dtype_name == "bfloat16":
            t = t.view(torch.int16).view(torch.bfloat16)
        return t.cuda()
    if isinstance(a, torch.Tensor):
        return a.cuda()
    return a


def to_host(out) -> np.ndarray:
    if isinstance(out, torch.Tensor):
        return out.detach().to(torch.float64).cpu().numpy()
    return np.asarray(out).astype(np.float64)


@pytest.fixture(autouse=True)
def poisoned_outputs(monkeypatch):
    """Outputs fusec allocates start as NaN (floats) or garbage (ints, bools): a lane the
    kernel does not write cannot pass for a right answer."""
    original = fusec.arrays.allocate

    def allocate(like, shape, dtype, zero):
        out = original(like, shape, dtype, zero)
        if not zero and isinstance(out, torch.Tensor):
            out.fill_(float("nan") if dtype.is_float else True if dtype.is_bool else 77)
        return out
    monkeypatch.setattr(fusec.arrays, "allocate", allocate)


@pytest.fixture(autouse=True, params=GPU_BACKENDS)
def gpu_backend(request, monkeypatch):
    """Every test runs on each GPU backend: kernels called on CUDA tensors (or compiled for
    them without a backend) use the one FUSEC_BACKEND names."""
    monkeypatch.setenv("FUSEC_BACKEND", request.param)
    return request.param


@pytest.fixture
def backend(gpu_backend, monkeypatch):
    """test_ops' tests, run on CUDA tensors (their inputs moved, their outputs read back)."""
    monkeypatch.setattr(ops, "SIZES", SIZES)
    monkeypatch.setattr(ops, "as_input", to_cuda)
    monkeypatch.setattr(ops, "output_float64", to_host)
    return gpu_backend


test_float_unary = ops.test_float_unary
test_numeric_unary = ops.test_numeric_unary
test_binary = ops.test_binary
test_casts = ops.test_casts
test_reductions = ops.test_reductions
test_prod_of_rows_longer_than_a_tile = ops.test_prod_of_rows_longer_than_a_tile
test_dot = ops.test_dot


@pytest.mark.parametrize("name", EXAMPLE_NAMES)
def test_examples(name, gpu_backend, monkeypatch):
    """Each example's main() on a GPU backend (it moves its inputs to the GPU), checked by
    its own reference."""
    module = importlib.import_module(name)
    arch = fusec.arrays.cuda_arch()
    for kernel in [v for v in vars(module).values() if isinstance(v, fusec.Kernel)]:
        def compile_(*args, _orig=kernel.compile, **kwargs):
            assert all(a.is_cuda for a in args if isinstance(a, torch.Tensor))
            ck = _orig(*args, **kwargs)
            assert ck.backend == gpu_backend and ck.target == arch
            return ck
        monkeypatch.setattr(kernel, "compile", compile_)
    assert module.main(backend=gpu_backend) is not None


@pytest.mark.parametrize("n", SIZES)
def test_strided_inputs(n):
    base = torch.randn(n, 3, device="cuda")
    x = base[:, 1]                                    # stride 3
    got = ops.UNARY_KERNELS["exp"](x, fl.float32)
    assert got.is_cuda
    assert_close(to_host(got), np.exp(to_host(x)).astype(np.float32), "float32", f"exp {n}")
    m = torch.randn(max(1, n // 10), 37, device="cuda").t()     # transposed: [37, n/10]
    rows, _ = ops.REDUCE_KERNELS["sum"]
    assert_close(to_host(rows(m, fl.float32)) / 6, to_host(m).sum(axis=1) / 6, "float32")


@fusec.kernel
def axpy_into(x, y, out, alpha: float):
    for t in fusec.tile(x.shape[0]):
        out[t] = alpha * x[t] + y[t]
    return out


@pytest.mark.parametrize("n", SIZES)
def test_in_place_into_a_poisoned_param(n):
    x, xv = random_array((n,), "float32", seed=n)
    y, yv = random_array((n,), "float32", seed=n + 1)
    out = torch.full((n,), float("nan"), device="cuda")
    res = axpy_into(to_cuda(x), to_cuda(y), out, 0.5)
    assert res is out
    assert_close(to_host(out), round_to_dtype(0.5 * xv + yv, "float32"), "float32")


@pytest.mark.parametrize("dtype", ["float32", "float64", "int32", "int64"])
def test_atomics(dtype):
    n = 4097
    x, xv = random_array((n,), dtype, seed=5)
    idx = np.random.default_rng(6).integers(0, 17, size=n).astype(np.int32)
    got = to_host(scatter_add(to_cuda(x), to_cuda(idx), 17))
    want = np.zeros(17)
    np.add.at(want, idx, xv)
    assert_close(got / 30, want / 30, dtype if dtype.startswith("float") else "exact")
    if dtype == "float32":
        assert_close(to_host(total(to_cuda(x))) / 60, np.array([xv.sum()]) / 60, "float32")


def test_loops_ifs_and_carried_values():
    x, _ = random_array((4097,), "float32", seed=7)
    xc = to_cuda(x)
    ck = loops_and_ifs.compile(xc, 5)
    # fl.sum(v) sums a tile: the result depends on the block size, so the reference uses the
    # config the GPU call got
    want = loops_and_ifs.compile(x, 5, backend="interpret", config=ck.config)(x, 5)
    assert_close(to_host(loops_and_ifs(xc, 5)), want.astype(np.float64), "float32")


def test_several_launches_in_order_on_a_side_stream():
    x = torch.randn(100_003, device="cuda")
    ck = two_passes.compile(x)
    assert ck.num_launches == 2
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        out = two_passes(x)
    stream.synchronize()
    torch.testing.assert_close(out, x.flip(0) * 2.0 + 1.0)


def test_config_blocks_and_warps(gpu_backend):
    a, av = random_array((65, 47), "float32", seed=1)
    b, bv = random_array((47, 100), "float32", seed=2)
    for warps in (1, 2, 8):
        ck = ops.matmul.compile(to_cuda(a), to_cuda(b), fl.float32,
                                config=fusec.Config(blocks=[16, 32, 8], warps=warps))
        assert ck.backend == gpu_backend
        if gpu_backend == "cuda":
            assert f"__launch_bounds__({32 * warps})" in ck.asm["cuda"]
        else:
            assert f".maxntid {32 * warps}" in ck.asm["ptx"]
        got = to_host(ck(to_cuda(a), to_cuda(b), fl.float32))
        assert_close(got / 7, (av @ bv) / 7, "float32")


def test_wrong_arch_and_wrong_arrays_raise_clear_errors(gpu_backend):
    here = fusec.arrays.cuda_arch()
    other = "sm_80" if here != "sm_80" else "sm_90"
    x = torch.ones(10, device="cuda")
    ck = ops.UNARY_KERNELS["exp"].compile(x, fl.float32, target=other, backend=gpu_backend)
    with pytest.raises(fusec.LaunchError, match=f"compiled for {other}"):
        ck(x, fl.float32)
    ck = ops.UNARY_KERNELS["exp"].compile(x, fl.float32)
    assert (ck.backend, ck.target) == (gpu_backend, here)
    with pytest.raises(TypeError, match="torch CUDA tensor"):
        ck(torch.ones(10), fl.float32)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_a_mask_comparing_column_and_row_is_per_lane(dtype):
    """np.triu through 16-byte vector groups: `col >= row` differs between the lanes of a
    group, so no lane may take lane 0's compare (VectorFacts.divisor of a row index
    expanded along the columns)."""
    x, xv = random_array((40, 300), dtype, seed=5)
    xd = to_cuda(x, dtype)
    got = to_host(upper_triangle.compile(xd, config=fusec.Config(blocks=[8, 256],
                                                                  warps=4))(xd))
    assert (got == np.triu(xv.astype(np.float64))).all()


def test_a_kernel_restored_from_disk_runs_as_the_one_built(gpu_backend, monkeypatch,
                                                          tmp_path):
    """The disk cache of whole kernels (fusec/kernel_store.py): a new Kernel of the same
    function loads the first one's module, launch facts and cubin without tracing, and
    its launches (fresh and through the repeated-call path) give the same results."""
    from layernorm import layernorm, reference
    monkeypatch.setenv("FUSEC_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("FUSEC_KERNEL_CACHE", "1")
    x, xv = random_array((300, 1000), "bfloat16", seed=9)
    w, wv = random_array((1000,), "bfloat16", seed=10)
    b, bv = random_array((1000,), "bfloat16", seed=11)
    args = [to_cuda(x, "bfloat16"), to_cuda(w, "bfloat16"), to_cuda(b, "bfloat16"), 1e-5]
    built = fusec.Kernel(layernorm.fn)
    first = to_host(built(*args))
    restored = fusec.Kernel(layernorm.fn)
    ck = restored.compile(*args)
    assert ck.restored and ck.backend == gpu_backend
    for _ in range(3):           # the first call plans the launch, later ones reuse it
        again = to_host(restored(*args))
        assert (again == first).all()
    assert_close(again, reference(xv, wv, bv), "bfloat16")


@pytest.mark.parametrize("shape,perm,blocks", [((333, 517), (1, 0), [32, 64]),
                                               ((8, 200, 16, 64), (0, 2, 3, 1),
                                                [1, 1, 64, 64])])
def test_transposed_copies_staged_through_shared_memory(shape, perm, blocks, monkeypatch):
    """backends/cuda/transpose.py switched on: permuted copies (k^T made contiguous) read
    along the tensor's rows into shared memory; the result is the permutation, exactly."""
    from fusec.backends.cuda import transpose
    monkeypatch.setattr(transpose, "ENABLED", True)

    def copy(a):
        return fl.permute(a, perm)
    kernel = fusec.kernel(copy, backend="cuda")
    x = torch.randn(shape, device="cuda").to(torch.bfloat16)
    ck = kernel.compile(x, config=fusec.Config(blocks=blocks, warps=4))
    assert "_staged_" in ck.asm["cuda"]
    out = ck(x)
    torch.cuda.synchronize()
    assert torch.equal(out, x.permute(perm).contiguous())
