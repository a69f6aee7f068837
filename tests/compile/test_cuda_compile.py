"""CUDA C backend, no GPU needed: every example and the op kernels of tests/unit/test_ops.py
(a representative subset of dtypes) go through `kernel.compile(..., target=sm_XY)` to a
cubin for sm_80 and sm_90: an ELF image holding every launch's kernel symbol. Also the
NVRTC error path, what the emitted source promises (no headers, accurate math), and which
dots take the tensor-core path (tests/dot_kernels.py)."""
from __future__ import annotations

import importlib
import re
import sys
from pathlib import Path

import numpy as np
import pytest

import fusec
import fusec.language as fl
from fusec.ir.ops import FLOAT_RESULT_BINARY
from fusec.backends.cuda import NVRTCError, compile_cuda, emit_source, tensor_cores
from fusec.backends.cuda.nvrtc import compile_source

HERE = Path(__file__).resolve().parent
EXAMPLES = HERE.parents[1] / "examples"
sys.path.insert(0, str(HERE.parent / "unit"))
sys.path.insert(0, str(EXAMPLES))
import test_ops as ops  # noqa: E402
from device_kernels import cast  # noqa: E402
from dot_kernels import KERNELS as DOT_KERNELS  # noqa: E402
from conftest import skip_if_a_gpu_is_here  # noqa: E402

ARCHS = ("sm_80", "sm_90")
DTYPES = ("bool", "int8", "int64", "float16", "bfloat16", "float32", "float64")
FLOATS = ("float16", "bfloat16", "float32", "float64")
EXAMPLE_NAMES = sorted(p.stem for p in EXAMPLES.glob("*.py")
                       if not p.stem.startswith("_") and p.stem != "run_all")


def assert_cubin(ck, arch: str) -> None:
    assert ck.backend == "cuda" and ck.target == arch
    cubin = ck.asm["cubin"]
    assert isinstance(cubin, bytes) and cubin[:4] == b"\x7fELF"
    assert ck.num_launches >= 1
    for k in range(ck.num_launches):
        symbol = f"fusec_{ck.name}_{k}".encode()
        assert symbol in cubin, symbol
        threads = ck.config.warps * 32            # the autotuner picks the warps
        # (tensor-core launches also ask for 2 programs an SM: `, 2`)
        assert re.search(rf'__global__ void __launch_bounds__\({threads}(, 2)?\) '
                         rf'{symbol.decode()}\(', ck.asm["cuda"])
    assert f".target {arch}" in ck.asm["ptx"]


def spec(n, dtype):
    return fusec.TensorSpec(n if isinstance(n, (list, tuple)) else [n], getattr(fl, dtype))


@pytest.mark.parametrize("name", EXAMPLE_NAMES)
def test_examples_build_for_every_arch(name, monkeypatch):
    module = importlib.import_module(name)
    kernels = [v for v in vars(module).values() if isinstance(v, fusec.Kernel)]
    built = []
    for kernel in kernels:
        def compile_(*args, _orig=kernel.compile, **kwargs):
            kwargs.pop("backend", None)
            for arch in ARCHS:
                ck = _orig(*args, backend="cuda", target=arch, **kwargs)
                assert_cubin(ck, arch)
                built.append(ck)
            return _orig(*args, backend="interpret", **kwargs)     # main() checks itself
        monkeypatch.setattr(kernel, "compile", compile_)
    module.main(backend="interpret")
    assert len(built) >= 2 * len(kernels)


@pytest.mark.parametrize("arch", ARCHS)
def test_view_kernels_build(arch):
    """Whole-tensor reshapes and slices (tests/tensor_kernels.py VIEW_CASES): index math
    with floordiv/mod and symbolic starts, in every launch."""
    sys.path.insert(0, str(HERE.parent))
    import tensor_kernels as K
    for kernel, shapes, ints, _, launches in K.VIEW_CASES:
        ck = kernel.compile(*(spec(list(s), "float32") for s in shapes), *ints, target=arch)
        assert_cubin(ck, arch)
        assert ck.num_launches == launches, kernel.fn.__name__


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_unary_kernels_build(arch, dtype):
    out = dtype if dtype in FLOATS else "float32"
    names = sorted(ops.UNARY_REF) if dtype in FLOATS else ["exp", "sqrt"]
    names += [] if dtype == "bool" else sorted(ops.NUMERIC_REF)
    for name in names:
        o = out if name in ops.UNARY_REF else dtype
        assert_cubin(ops.UNARY_KERNELS[name].compile(spec(1000, dtype), getattr(fl, o),
                                                     target=arch), arch)


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_binary_kernels_build(arch, dtype):
    for op in ("add", "sub", "mul", "div", "floordiv", "mod", "maximum", "minimum", "pow",
               "atan2", "hypot", "copysign", "and", "or", "xor", "eq", "ne", "lt", "le",
               "gt", "ge"):
        if dtype == "bool" and op in ("sub", "div", "floordiv", "mod", "pow"):
            continue
        if dtype in FLOATS and op in ("and", "or", "xor"):
            continue
        if op in ("eq", "ne", "lt", "le", "gt", "ge"):
            out = "bool"
        elif op in FLOAT_RESULT_BINARY and dtype not in FLOATS:
            out = "float32"
        else:
            out = dtype
        ck = ops.binary.compile(spec(1000, dtype), spec(1000, dtype), op, getattr(fl, out),
                                target=arch)
        assert_cubin(ck, arch)


@pytest.mark.parametrize("arch", ARCHS)
def test_cast_kernels_build(arch):
    for src in DTYPES:
        for dst in DTYPES + ("int32", "uint8"):
            assert_cubin(cast.compile(spec(100, src), getattr(fl, dst), target=arch), arch)


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("kind", sorted(ops.REDUCE_KERNELS))
def test_reduction_kernels_build(arch, kind):
    rows, cols = ops.REDUCE_KERNELS[kind]
    for dtype in DTYPES:
        if kind == "mean" and dtype not in FLOATS:
            continue
        out = "int32" if kind.startswith("arg") else \
            "int64" if kind == "sum" and dtype not in FLOATS else dtype
        assert_cubin(rows.compile(spec([5, 100], dtype), getattr(fl, out), target=arch), arch)
        assert_cubin(cols.compile(spec([100, 5], dtype), getattr(fl, out), target=arch), arch)


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("dtype,out", [("float32", "float32"), ("float16", "float32"),
                                       ("bfloat16", "float32"), ("float64", "float64"),
                                       ("int8", "int32")])
def test_dot_kernels_build(arch, dtype, out):
    ck = ops.matmul.compile(spec([65, 47], dtype), spec([47, 100], dtype), getattr(fl, out),
                            target=arch)
    assert_cubin(ck, arch)


def test_source_needs_no_header_and_uses_accurate_math():
    ck = ops.UNARY_KERNELS["exp"].compile(spec(100, "float16"), fl.float16, target="sm_90")
    src = ck.asm["cuda"]
    assert "#include" not in src
    assert "expf(" in src and "__expf" not in src
    assert "fc_f2h(" in src and "cuda_fp16" not in src


def test_large_tiles_use_global_scratch_small_ones_shared_memory():
    x = spec([257, 1000], "float32")
    softmax = importlib.import_module("softmax").softmax
    big = softmax.compile(x, target="sm_90", config=fusec.Config(blocks=[16]))  # [16, 1024] f32
    assert "__shared__" not in big.asm["cuda"] and "fc_scratch0 +" in big.asm["cuda"]
    small = softmax.compile(x, target="sm_90", config=fusec.Config(blocks=[1], warps=2))
    assert "__shared__ __align__(16) unsigned char fc_arena[" in small.asm["cuda"]
    assert "__launch_bounds__(64)" in small.asm["cuda"]


def test_compile_without_a_gpu_then_calling_raises_a_clear_error():
    ck = ops.UNARY_KERNELS["exp"].compile(spec(10, "float32"), fl.float32, target="sm_80")
    skip_if_a_gpu_is_here()
    with pytest.raises(fusec.LaunchError, match="torch sees none"):
        ck(np.ones(10, np.float32), fl.float32)


def test_nvrtc_errors_show_the_log_and_the_source_line():
    src = 'extern "C" __global__ void k(float* x) {\n  x[0] = undefined_name;\n}\n'
    with pytest.raises(NVRTCError) as info:
        compile_source(src, "sm_90", "bad.cu")
    text = str(info.value)
    assert "undefined_name" in text and "bad.cu(2)" in text
    assert ">     2 |   x[0] = undefined_name;" in text


def test_an_empty_log_leaves_the_process_bytes_alone():
    """NVRTC writes into the buffers it is given: a one-byte log buffer made as b" " * 1
    is CPython's shared b" ", which its NUL turned into b"\0" for the whole process."""
    cubin, _, log = compile_source('extern "C" __global__ void k() {}\n', "sm_90", "ok.cu")
    assert log == "" and cubin[:4] == b"\x7fELF"
    assert bytes([32]) == b" " and b"".join([b"a", bytes([32]), b"b"]) == b"a b"


def test_bad_arch_and_unsupported_constructs_are_named():
    with pytest.raises(ValueError, match="not a CUDA arch"):
        compile_cuda(ops.binary.compile(spec(10, "float32"), spec(10, "float32"), "add",
                                        fl.float32, backend="interpret").module.kernel(),
                     arch="cpu")

    @fusec.kernel
    def hist(x, idx):
        out = fusec.zeros([8], fl.float16)
        for t in fusec.tile(x.shape[0]):
            j = idx[t]
            fl.atomic_add(out[j], x[t])
        return out
    with pytest.raises(NotImplementedError, match="atomic_add .* on float16"):
        hist.compile(spec(100, "float16"), spec(100, "int32"), target="sm_90")


def test_fast_math_swaps_float_math_for_the_hardware_approximations():
    softmax = importlib.import_module("softmax").softmax
    x = spec([64, 300], "bfloat16")
    accurate = softmax.compile(x, target="sm_90").asm["cuda"]
    fast = fusec.kernel(softmax.fn, fast_math=True).compile(x, target="sm_90").asm["cuda"]
    assert "expf(" in accurate and "__expf" not in accurate and "__fdividef" not in accurate
    assert "__expf(" in fast and "__fdividef(" in fast
    # and its sum accumulates in float32 (as Triton's), not in double
    kernel_of = lambda src: src[src.index('extern "C" __global__'):]   # past the prelude
    assert "double acc" in kernel_of(accurate) and "double" not in kernel_of(fast)
    with pytest.raises(TypeError, match="fast_math"):
        fusec.kernel(softmax.fn, fast_math="yes")


def test_fast_math_keeps_log1p_and_expm1_accurate():
    """They exist for their accuracy near 0, which log(1 + x) and exp(x) - 1 through the
    hardware approximations would lose: fast_math leaves them to CUDA's log1pf/expm1f."""
    @fusec.kernel(fast_math=True)
    def near_zero(x):
        out = fusec.empty(x.shape, x.dtype)
        for t in fusec.tile(x.shape[0]):
            out[t] = fl.log1p(x[t]) + fl.expm1(x[t]) + fl.exp(x[t])
        return out
    src = near_zero.compile(spec([1000], "float32"), target="sm_90").asm["cuda"]
    body = src[src.index('extern "C" __global__'):]
    assert "log1pf(" in body and "expm1f(" in body and "__expf(" in body, body
    assert "__logf(" not in body


def test_cubins_come_from_the_disk_cache_the_second_time():
    softmax = importlib.import_module("softmax").softmax
    x = spec([33, 200], "float32")
    first = fusec.kernel(softmax.fn).compile(x, target="sm_80", config=fusec.Config(
        blocks=[2], warps=2))
    again = fusec.kernel(softmax.fn).compile(x, target="sm_80", config=fusec.Config(
        blocks=[2], warps=2))
    assert again.from_cache and again.asm["cubin"] == first.asm["cubin"]
    assert again.asm["ptx"] == first.asm["ptx"]
    other_arch = fusec.kernel(softmax.fn).compile(x, target="sm_90", config=fusec.Config(
        blocks=[2], warps=2))
    assert not other_arch.from_cache and other_arch.asm["cubin"] != first.asm["cubin"]


# tensor-core dots (backends/cuda/mma.py): kernel of tests/dot_kernels.py, (M, K, N), dtype,
# blocks, warps, the operands cp.async stages (the others go through registers)
MMA_CASES = {
    "bias_relu-4096^3-aligned": ("bias_relu", (4096, 4096, 4096), "bfloat16", [128, 128, 32],
                                 8, "ab"),
    "bias_relu-ragged-f16": ("bias_relu", (100, 72, 200), "float16", [64, 64, 32], 4, ""),
    "plain-ragged-m-n": ("plain", (4097, 128, 33), "bfloat16", [128, 64, 32], 4, "a"),
    "transposed-b": ("nt", (256, 64, 128), "bfloat16", [64, 128, 32], 4, "a"),
    "loaded-acc-silu": ("add_silu", (128, 96, 64), "float16", [32, 64, 16], 2, "ab"),
    "softmax-spills": ("softmax", (64, 64, 64), "bfloat16", [64, 64, 32], 4, "ab"),
    "batched-whole-tensors": ("batched", (256, 64, 128), "bfloat16", [1, 64, 128, 32], 4,
                              "ab"),
}


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("case", sorted(MMA_CASES))
def test_tensor_core_dots_build(arch, case):
    name, mkn, dtype, blocks, warps, copied = MMA_CASES[case]
    kernel, shapes, extra, _, _ = DOT_KERNELS[name]
    ck = kernel.compile(*[spec(s, dtype) for s in shapes(*mkn)], *extra, target=arch,
                        config=fusec.Config(blocks=blocks, warps=warps))
    assert_cubin(ck, arch)
    half = {"bfloat16": "bf16", "float16": "f16"}[dtype]
    assert f"fc_mma_{half}(" in ck.asm["cuda"]
    assert f"mma.sync.aligned.m16n8k16.row.col.f32.{half}.{half}.f32" in ck.asm["ptx"]
    assert "ldmatrix.sync.aligned.m8n8.x" in ck.asm["ptx"]
    for operand in "ab":
        assert (f"fc_cp_async_16({operand}_tile" in ck.asm["cuda"]) == (operand in copied)


@pytest.mark.parametrize("arch", ARCHS)
def test_one_program_an_sm_stages_into_the_whole_shared_memory(arch):
    """8 warps of 64x64 accumulator tiles hold too many registers for two programs an SM:
    their stages may take the whole block limit (128x256x64: 4 stages, 205 KB, on sm_90;
    3 on sm_80's 163 KB) and the launch bounds ask for one program; 4 warps of 128x128x64
    keep half the limit each (3 stages on sm_90, 2 on sm_80) and ask for two."""
    kernel, shapes, extra, _, _ = DOT_KERNELS["bias_relu"]
    expect = {"sm_80": (3, 2), "sm_90": (4, 3)}[arch]
    for (blocks, warps), stages, bounds in zip((([128, 256, 64], 8), ([128, 128, 64], 4)),
                                               expect, ("(256)", "(128, 2)")):
        ck = kernel.compile(*[spec(s, "bfloat16") for s in shapes(2048, 2048, 2048)], *extra,
                            target=arch, config=fusec.Config(blocks=blocks, warps=warps,
                                                             stages=4))
        source = ck.asm["cuda"]
        assert f"{stages} stages" in source and f"__launch_bounds__{bounds}" in source, \
            (blocks, arch)
        limit = tensor_cores.shared_limit(arch)
        used = int(re.search(r"dynamic: (\d+) bytes", source).group(1))
        assert used <= limit and (warps == 4) == (2 * used <= limit), (blocks, arch, used)
        assert_cubin(ck, arch)


def test_dots_tensor_cores_cannot_take_keep_the_fma_loop(monkeypatch):
    """float32 / int8 operands, tiles that are not multiples of the mma shape or that the
    warps cannot split, archs before sm_80, and the switch off: dot.py's loop."""
    def source(dtype, blocks, warps=4, arch="sm_90", out="float32"):
        ck = ops.matmul.compile(spec([64, 64], dtype), spec([64, 64], dtype),
                                getattr(fl, out), backend="interpret",
                                config=fusec.Config(blocks=blocks, warps=warps))
        return emit_source(ck.module.kernel(), warps, arch)[0]
    assert "fc_mma_bf16(" in source("bfloat16", [64, 64, 32])
    for dtype, blocks, warps, arch, out in [
            ("float32", [64, 64, 32], 4, "sm_90", "float32"),
            ("int8", [64, 64, 32], 4, "sm_90", "int32"),
            ("bfloat16", [8, 64, 32], 4, "sm_90", "float32"),       # 8 rows < m16
            ("bfloat16", [64, 64, 8], 4, "sm_90", "float32"),       # K step < k16
            ("bfloat16", [16, 8, 16], 4, "sm_90", "float32"),       # 4 warps, one mma tile
            ("bfloat16", [64, 64, 32], 4, "sm_75", "float32"),
            ("float16", [64, 64, 32], 4, "sm_90", "float16")]:      # half accumulator
        assert "fc_mma" not in source(dtype, blocks, warps, arch, out), (dtype, blocks, arch)
    monkeypatch.setattr(tensor_cores, "ENABLED", False)
    assert "fc_mma" not in source("bfloat16", [64, 64, 32])


def test_a_half_float_matmul_gets_tensor_core_tiles_by_default():
    """The fixed policy knows dots: bf16 matmuls get 128x128x32 tiles (64 for small M, N;
    K steps of 64 where their stages fit the arch's shared memory: sm_90, sm_100; there,
    products of 256 programs or more of 256x128x64 take those at 8 warps) that the tensor
    cores take, on every arch from sm_80; float32 ones keep the FMA loop."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples"))
    from matmul_epilogue import matmul_bias_relu as mm
    S = fusec.TensorSpec
    for (m, k, n), dtype, blocks, mma in (((4096, 4096, 4096), "bfloat16", [128, 128, 32], True),
                                          ((2048, 2048, 2048), "bfloat16", [128, 128, 32], True),
                                          ((100, 70, 130), "float16", [64, 64, 32], True),
                                          ((4096, 4096, 4096), "float32", None, False)):
        for arch in ("sm_80", "sm_86", "sm_89", "sm_90", "sm_100", "sm_120"):
            ck = mm.compile(S((m, k), dtype), S((k, n), dtype), S((n,), dtype), 0.5,
                            target=arch, backend="cuda")
            assert ("mma.sync" in ck.asm["cuda"]) == mma, (dtype, ck.config, arch)
            if blocks:
                long_k = k >= 1024 and arch in ("sm_90", "sm_100")
                large = long_k and m * n >= 256 * 256 * 128
                want = [256, 128, 64] if large else \
                    blocks[:2] + [64 if long_k else blocks[2]]
                assert list(ck.config.blocks) == want, arch
                assert ck.config.warps == (8 if large else 4), arch


def test_a_whole_tensor_matmul_epilogue_is_one_tensor_core_launch():
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import tensor_kernels as K
    S = fusec.TensorSpec
    ck = K.half_matmul_epilogue.compile(S((4096, 1024), "bfloat16"), S((1024, 2048), "bfloat16"),
                                        S((2048,), "bfloat16"), target="sm_90", backend="cuda")
    assert ck.num_launches == 1
    # K = 1024 on sm_90, 256 programs of the large tiles
    assert list(ck.config.blocks) == [256, 128, 64] and ck.config.warps == 8
    assert "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32" in ck.asm["cuda"]
