"""Tensor-core dots of the CUDA backend (backends/cuda/mma.py: mma.sync m16n8k16, ldmatrix,
cp.async, the accumulator in registers) on the GPU: the kernels of tests/dot_kernels.py on
random bf16 / fp16 inputs with negative values, sizes that are not multiples of 16, several
block and warp configs, poisoned outputs, strided operands, against float64 references.
Every test first checks that the compiled source took the tensor-core path."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import fusec
from conftest import assert_close, random_array
from dot_kernels import KERNELS
from test_cuda_gpu import poisoned_outputs, to_cuda, to_host  # noqa: F401 (autouse fixture)

pytestmark = pytest.mark.gpu

SIZES = [(100, 72, 200), (1, 16, 7), (4097, 130, 33), (512, 256, 384)]     # (M, K, N)
CONFIGS = [([128, 128, 32], 8), ([128, 128, 32], 4), ([64, 64, 32], 4), ([32, 32, 16], 2),
           ([64, 128, 32], 4), ([128, 128, 64], 4)]
HALF = {"bfloat16": "bf16", "float16": "f16"}


def run(name, mkn, dtype, blocks, warps, inputs=None, stages=3, backend="cuda"):
    """(output as float64, float64 reference) of kernel `name` compiled for this GPU with
    the given config and backend; inputs: CUDA tensors to use instead of fresh random ones."""
    kernel, shapes, extra, reference, out_dtype = KERNELS[name]
    if inputs is None:
        arrays = [random_array(s, dtype, seed=i + 1) for i, s in enumerate(shapes(*mkn))]
        inputs = [to_cuda(a, dtype) for a, _ in arrays]
    values = [to_host(t) for t in inputs]
    if backend == "ptx":            # backends/llvm/mma.py: switched on whatever the default
        from fusec.backends.llvm import mma
        saved, mma.ENABLED = mma.ENABLED, True
        try:
            ck = fusec.kernel(kernel.fn).compile(   # (its in-memory cache keys no switch)
                *inputs, *extra, backend=backend,
                config=fusec.Config(blocks=blocks, warps=warps, stages=stages))
        finally:
            mma.ENABLED = saved
    else:
        ck = kernel.compile(*inputs, *extra, backend=backend,
                            config=fusec.Config(blocks=blocks, warps=warps, stages=stages))
    if backend == "cuda":
        assert f"fc_mma_{HALF[dtype]}(" in ck.asm["cuda"], "the tensor-core path was not taken"
    else:
        assert f"mma.sync.aligned.m16n8k16.row.col.f32.{HALF[dtype]}" in ck.asm["ptx"], \
            "the tensor-core path was not taken"
    out = ck(*inputs, *extra)
    torch.cuda.synchronize()
    return to_host(out), reference(*values), out_dtype or dtype


def check(name, mkn, dtype, blocks, warps, inputs=None, stages=3, backend="cuda"):
    got, want, out_dtype = run(name, mkn, dtype, blocks, warps, inputs, stages, backend)
    scale = max(1.0, np.sqrt(mkn[1]))          # sums of K products of values up to 3
    assert_close(got / scale, want / scale, out_dtype,
                 f"{name} {mkn} {dtype} blocks={blocks} warps={warps}")


@pytest.mark.parametrize("blocks,warps", CONFIGS)
@pytest.mark.parametrize("mkn", SIZES)
@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_matmul_bias_relu(dtype, mkn, blocks, warps):
    check("bias_relu", mkn, dtype, blocks, warps)


@pytest.mark.parametrize("stages", [2, 4])
@pytest.mark.parametrize("blocks,warps", [([64, 64, 32], 4), ([128, 128, 64], 4),
                                          ([32, 32, 16], 2)])
@pytest.mark.parametrize("mkn", [(4097, 130, 33), (300, 1024, 208)])    # ragged; copied
def test_pipeline_stages(mkn, blocks, warps, stages):
    check("bias_relu", mkn, "bfloat16", blocks, warps, stages=stages)


@pytest.mark.parametrize("mkn", SIZES)
@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_float32_accumulator_stored_as_is(dtype, mkn):
    check("plain", mkn, dtype, [128, 64, 32], 4)


@pytest.mark.parametrize("name", ["nt", "add_silu"])
@pytest.mark.parametrize("mkn", [(100, 72, 200), (256, 128, 192)])
def test_transposed_operand_loaded_accumulator_and_silu(name, mkn):
    check(name, mkn, "bfloat16", [64, 64, 32], 4)
    check(name, mkn, "float16", [32, 64, 16], 2)


@pytest.mark.parametrize("mkn,blocks", [((300, 96, 120), [64, 128, 32]),
                                        ((64, 40, 7), [32, 8, 16])])
def test_row_softmax_of_the_product(mkn, blocks):
    """One program per whole row block (the N block covers N): reductions read the
    accumulator from a buffer."""
    check("softmax", mkn, "bfloat16", blocks, 4 if blocks[1] >= 32 else 1)


def test_strided_and_offset_operands():
    """a: a column slice (rows 16-byte aligned or not), b: a transposed view (unit stride
    on the K axis): register staging."""
    m, k, n = 200, 96, 136
    base_a = torch.randn(m, k + 5, device="cuda").to(torch.bfloat16)
    b = torch.randn(n, k, device="cuda").to(torch.bfloat16).t()
    bias = torch.randn(n, device="cuda").to(torch.bfloat16)
    for a in (base_a[:, :k], base_a[:, 3:k + 3]):
        check("bias_relu", (m, k, n), "bfloat16", [64, 64, 32], 4, [a, b, bias])


@pytest.mark.parametrize("name", ["batched", "batched_shared_b"])
@pytest.mark.parametrize("mkn,blocks,warps", [((300, 72, 130), [1, 64, 64, 32], 4),
                                              ((1024, 512, 256), [1, 128, 128, 64], 4)])
def test_batched_whole_tensor_matmul(name, mkn, blocks, warps):
    """a @ b of 3-D whole tensors (b batched or shared): one batch element a program."""
    check(name, mkn, "bfloat16", blocks, warps)


def test_batched_matmul_default_policy_against_torch():
    """The default config of a batched matmul (no config given) on odd sizes."""
    kernel, _, _, _, _ = KERNELS["batched"]
    a = torch.randn(5, 77, 200, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(5, 200, 90, device="cuda", dtype=torch.bfloat16)
    bias = torch.randn(90, device="cuda", dtype=torch.bfloat16)
    got = kernel(a, b, bias).double()
    want = torch.relu(a.double() @ b.double() + bias.double()) * 0.5
    torch.testing.assert_close(got / 15, want / 15, rtol=2e-2, atol=2e-2)


def test_large_k_against_cublas():
    """K = 2048: the float32 accumulation stays about as close to float64 as cuBLAS' float32
    matmul of the same bf16 values."""
    m, k, n = 512, 2048, 512
    a = torch.randn(m, k, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(k, n, device="cuda", dtype=torch.bfloat16)
    got, want, _ = run("plain", (m, k, n), "bfloat16", [128, 128, 32], 8, [a, b])
    cublas = (a.float() @ b.float()).double().cpu().numpy()
    ours, theirs = np.abs(got - want).max(), np.abs(cublas - want).max()
    assert ours <= max(2 * theirs, 1e-3), (ours, theirs)


@pytest.mark.parametrize("schedule", ["within", "across", "spread"])
@pytest.mark.parametrize("blocks,warps,stages", [([128, 128, 64], 4, 3),
                                                 ([128, 256, 64], 8, 4)])
@pytest.mark.parametrize("mkn", [(300, 1040, 520), (4097, 130, 33)])   # copied; registers
def test_k_loop_schedules(mkn, blocks, warps, stages, schedule, monkeypatch):
    """mma.py's K-loop schedules (benchmarks/matmul_configs.py --schedules) and 8 warps
    staging 4 tiles in the whole shared memory: unchecked interior copies, a ragged last K
    tile (1040 = 16.25 tiles of 64), programs over the M and N edges."""
    from fusec.backends.cuda import mma
    for name, value in mma.SCHEDULES[schedule].items():
        monkeypatch.setattr(mma, name, value)
    kernel, shapes, extra, reference, _ = KERNELS["bias_relu"]
    fresh = fusec.kernel(kernel.fn)          # its in-memory cache keys no switch
    arrays = [random_array(s, "bfloat16", seed=i + 7) for i, s in enumerate(shapes(*mkn))]
    inputs = [to_cuda(a, "bfloat16") for a, _ in arrays]
    ck = fresh.compile(*inputs, *extra, backend="cuda",
                       config=fusec.Config(blocks=blocks, warps=warps, stages=stages))
    assert f"{stages} stages" in ck.asm["cuda"]
    out = ck(*inputs, *extra)
    torch.cuda.synchronize()
    scale = np.sqrt(mkn[1])
    assert_close(to_host(out) / scale, reference(*[v for _, v in arrays]) / scale, "bfloat16",
                 f"{schedule} {mkn} {blocks}")


# -- the PTX backend (backends/llvm/mma.py) --------------------------------------------------
PTX_CONFIGS = [("bias_relu", [64, 64, 32], 4), ("bias_relu", [32, 32, 16], 2),
               ("bias_relu", [128, 128, 32], 8), ("plain", [128, 64, 32], 4),
               ("nt", [64, 64, 32], 4), ("add_silu", [32, 64, 16], 2)]


@pytest.mark.parametrize("name,blocks,warps", PTX_CONFIGS)
@pytest.mark.parametrize("mkn", [(100, 72, 200), (1, 16, 7), (300, 96, 120)])
@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_ptx_dots_on_tensor_cores(dtype, mkn, name, blocks, warps):
    check(name, mkn, dtype, blocks, warps, backend="ptx")


@pytest.mark.parametrize("mkn,blocks", [((300, 96, 120), [64, 128, 32]),
                                        ((64, 40, 7), [32, 8, 16])])
def test_ptx_row_softmax_of_the_product(mkn, blocks):
    check("softmax", mkn, "bfloat16", blocks, 4 if blocks[1] >= 32 else 1, backend="ptx")


@pytest.mark.parametrize("name", ["batched", "batched_shared_b"])
def test_ptx_batched_dots_on_tensor_cores(name):
    check(name, (300, 72, 130), "bfloat16", [1, 64, 64, 32], 4, backend="ptx")


def test_ptx_strided_operands_on_tensor_cores():
    m, k, n = 200, 96, 136
    base_a = torch.randn(m, k + 5, device="cuda").to(torch.bfloat16)
    b = torch.randn(n, k, device="cuda").to(torch.bfloat16).t()
    bias = torch.randn(n, device="cuda").to(torch.bfloat16)
    check("bias_relu", (m, k, n), "bfloat16", [64, 64, 32], 4, [base_a[:, 3:k + 3], b, bias],
          backend="ptx")
