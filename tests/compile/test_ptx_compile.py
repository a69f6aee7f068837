"""PTX backend, no GPU needed: the builds of tests/compile/test_cuda_compile.py (every
example, the op kernels of tests/unit/test_ops.py for sm_80 and sm_90) through
`backend="ptx"`: LLVM NVPTX -> PTX -> a cubin linked by nvJitLink holding every launch's
kernel symbol. Also what the PTX promises (entries, the arch, exact float ops, global
memory, the device math library) and the errors of the PTX path."""
from __future__ import annotations

import importlib
import re
import subprocess
import sys
from pathlib import Path

import llvmlite.ir as ir
import numpy as np
import pytest

import fusec
import fusec.language as fl
from fusec.backends.llvm import nvptx, simt
from fusec.backends.llvm.plan import Plan
from fusec.backends.ptx import NVJitLinkError, compile_ptx
from fusec.backends.ptx.link import LinkInput, link

sys.path.insert(0, str(Path(__file__).resolve().parent))
import test_cuda_compile as cuda_builds  # noqa: E402
from device_kernels import total, two_passes  # noqa: E402
from conftest import skip_if_a_gpu_is_here  # noqa: E402

ops = cuda_builds.ops
spec = cuda_builds.spec


def assert_cubin(ck, arch: str) -> None:
    assert ck.backend == "ptx" and ck.target == arch
    cubin = ck.asm["cubin"]
    assert isinstance(cubin, bytes) and cubin[:4] == b"\x7fELF"
    assert ck.num_launches >= 1
    ptx = ck.asm["ptx"]
    assert f".target {arch}" in ptx
    for k in range(ck.num_launches):
        symbol = f"fusec_{ck.name}_{k}"
        assert symbol.encode() in cubin, symbol
        assert f".visible .entry {symbol}(" in ptx
        assert f"define ptx_kernel void @\"{symbol}\"(" in ck.asm["llvm"]


@pytest.fixture(autouse=True)
def through_ptx(monkeypatch):
    """GPU builds of the CUDA compile tests go through the PTX backend (where a kernel
    resolves its backend: the tests patch `compile` on kernel instances themselves)."""
    resolve = fusec.Kernel._resolve_backend

    def to_ptx(self, *args, **kwargs):
        backend, target = resolve(self, *args, **kwargs)
        return ("ptx" if backend == "cuda" else backend), target
    monkeypatch.setattr(fusec.Kernel, "_resolve_backend", to_ptx)
    monkeypatch.setattr(cuda_builds, "assert_cubin", assert_cubin)


test_examples_build_for_every_arch = cuda_builds.test_examples_build_for_every_arch
test_unary_kernels_build = cuda_builds.test_unary_kernels_build
test_view_kernels_build = cuda_builds.test_view_kernels_build
test_binary_kernels_build = cuda_builds.test_binary_kernels_build
test_cast_kernels_build = cuda_builds.test_cast_kernels_build
test_reduction_kernels_build = cuda_builds.test_reduction_kernels_build
test_dot_kernels_build = cuda_builds.test_dot_kernels_build


@fusec.kernel
def scaled_exp(x, alpha: float):
    out = fusec.empty_like(x)
    for t in fusec.tile(x.shape[0]):
        out[t] = fl.exp(x[t] * alpha)
    return out


# one thread block per program: the entry takes the CUDA layout's 8-byte slots (x: ptr,
# size, stride; alpha; out: ptr, size, stride; the tile loop's extent; its grid; the scratch
# pointer), asks for 1024 resident threads an SM (registers capped to fit), reads its
# program id from the block index, stops past the grid, gives thread tid.x the tile's
# element tid.x (64 threads, 64 elements), works on global memory with exact float ops,
# calls the device math library for float64 exp, and ends the tile loop nest with a barrier
SCALED_EXP_F64_CHECKS = r"""
CHECK:      .version {{[0-9]+\.[0-9]+}}
CHECK-NEXT: .target sm_90
CHECK-NEXT: .address_size 64
CHECK:      .extern .func {{.*}} __fusec_exp
CHECK:      .visible .entry fusec_scaled_exp_0(
CHECK-COUNT-9: .param .u64 fusec_scaled_exp_0_param_{{[0-8]}},
CHECK-NEXT: .param .u64 fusec_scaled_exp_0_param_9
CHECK-NEXT: )
CHECK-NEXT: .maxntid 64
CHECK-NEXT: .minnctapersm 16
CHECK:      %ctaid.x
CHECK-NOT:  %ntid.x
CHECK:      ld.param.{{[bu]}}64 [[GRID:%rd[0-9]+]], [fusec_scaled_exp_0_param_8]
CHECK:      setp.{{[lg]e}}.u64 {{%p[0-9]+}}, {{.*}}[[GRID]]
CHECK:      %tid.x
CHECK:      ld.global.{{[bf]}}64
CHECK:      mul.rn.f64
CHECK:      call.uni (retval0), __fusec_exp,
CHECK:      st.global.{{[bf]}}64
CHECK:      bar.sync 0;
CHECK:      ret;
"""


def test_ptx_text_filecheck(tmp_path):
    ck = scaled_exp.compile(spec(1000, "float64"), 0.5, backend="ptx", target="sm_90",
                            config=fusec.Config(blocks=[64], warps=2))
    checks = tmp_path / "scaled_exp.check"
    checks.write_text(SCALED_EXP_F64_CHECKS)
    proc = subprocess.run([sys.executable, "-m", "filecheck", str(checks)],
                          input=ck.asm["ptx"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert b"__fusec_exp" in ck.asm["cubin"]          # the library is linked in


# (op, dtype) -> the device library functions its code calls (float32 exp/tanh/gelu/rsqrt
# are inline polynomials and exact instructions; float64 follows the interpreter's formulas)
MATH_CALLS = {("exp", "float64"): {"__fusec_exp"}, ("tanh", "float64"): {"__fusec_tanh"},
              ("gelu", "float64"): {"__fusec_erfc"}, ("sin", "float64"): {"__fusec_sin"},
              ("sin", "float32"): {"__fusec_sinf"}, ("sin", "float16"): {"__fusec_sinf"}}


def test_float_ops_round_once_and_math_calls_the_device_library():
    """No approximate or flush-to-zero instruction but the exp family's ex2 on its reduced
    range, every float add/sub/mul rounds on its own (`.rn`: ptxas never contracts those
    into an fma), and only what the CPU takes from libm (and fmod, pow) calls the device
    math library."""
    for name in ("exp", "tanh", "gelu", "sin", "rsqrt"):
        for dtype in ("float16", "float32", "float64"):
            ck = ops.UNARY_KERNELS[name].compile(spec(100, dtype), getattr(fl, dtype),
                                                 backend="ptx", target="sm_80")
            ptx = ck.asm["ptx"]
            rest = ptx.replace("ex2.approx.ftz.f32", "")
            assert ".approx" not in rest and ".ftz" not in rest, (name, dtype)
            hardware_exp2 = name in ("exp", "tanh", "gelu") and dtype != "float64"
            assert ("ex2.approx.ftz.f32" in ptx) == hardware_exp2, (name, dtype)
            assert not re.search(r"\b(add|sub|mul)\.f(32|64)\b", ptx), (name, dtype)
            calls = set(re.findall(r"call\.uni \(retval0\), (\w+),", ptx))
            assert calls == MATH_CALLS.get((name, dtype), set()), (name, dtype)
    for op, want in (("mod", "__fusec_fmodf"), ("floordiv", "__fusec_fmodf"),
                     ("pow", "__fusec_powf")):
        ck = ops.binary.compile(spec(100, "float32"), spec(100, "float32"), op, fl.float32,
                                backend="ptx", target="sm_90")
        assert f"call.uni (retval0), {want}," in ck.asm["ptx"], op


def test_tile_buffers_live_in_shared_memory_up_to_48k_then_in_global_scratch():
    softmax = importlib.import_module("softmax").softmax
    small = softmax.compile(spec([257, 64], "float32"), backend="ptx", target="sm_90")
    ck = compile_ptx(small.module.kernel(), "sm_90")
    assert ck.scratch_bytes == [0] and ".shared" in ck.asm["ptx"]
    assert "__local_depot" not in ck.asm["ptx"]           # no thread-private buffers
    big = softmax.compile(spec([257, 4000], "float64"), backend="ptx", target="sm_90",
                          config=fusec.Config(blocks=[4]))
    ck = compile_ptx(big.module.kernel(), "sm_90")         # [4, 4096] f64 rows: 128 KiB
    assert ck.scratch_bytes[0] >= 4 * 4096 * 8
    shared = sum(int(n) for n in re.findall(r"\.shared \.align \d+ \.b8 \S+\[(\d+)\]",
                                              ck.asm["ptx"]))
    assert shared <= 48 << 10


def test_reduction_lanes_fill_the_block_read_whole_warps_and_stay_within_the_row():
    assert simt.reduction_lanes(1, 4096, 128) == 128      # one row: the whole block
    assert simt.reduction_lanes(8, 512, 128) == 32        # 16 would fill it; a warp reads
    assert simt.reduction_lanes(1000, 64, 128) == 32      # more rows than threads: passes
    assert simt.reduction_lanes(4, 10, 128) == 8          # never more lanes than elements
    assert simt.reduction_lanes(3, 1, 256) == 1


def _memory_accesses(ptx: str) -> set[str]:
    return set(re.findall(r"\b(?:ld|st)\.(?:global|shared)[.\w]*", ptx))


def test_a_thread_moves_16_bytes_at_a_time_where_the_specialization_allows():
    """bf16 rows of 4096 (one per program, 128 threads): the row reduction and the
    normalizing nest take 8 consecutive elements a lane, loaded and stored as one 16-byte
    access each; the row stays in registers between them (no tile buffer but the warps'
    partial sums). bias+gelu's bias tile (f32 in shared memory) moves 16 bytes at a time."""
    rmsnorm = importlib.import_module("rmsnorm").rmsnorm
    ck = rmsnorm.compile(spec([64, 4096], "bfloat16"), spec(4096, "bfloat16"), 1e-6,
                         backend="ptx", target="sm_90")
    found = _memory_accesses(ck.asm["ptx"])
    assert {a for a in found if ".global" in a} == {"ld.global.v4.b32", "st.global.v4.b32"}
    assert not {a for a in found if ".v" in a and ".shared" in a}
    # a thread's 32 outputs round to bf16 once each, by the hardware's conversion
    assert ck.asm["ptx"].count("cvt.rn.bf16.f32") == 32
    bias_gelu = importlib.import_module("bias_gelu").bias_gelu
    ck = bias_gelu.compile(spec([64, 512], "bfloat16"), spec(512, "bfloat16"),
                           backend="ptx", target="sm_90",
                           config=fusec.Config(blocks=[8, 512], warps=4))
    found = _memory_accesses(ck.asm["ptx"])
    assert {"ld.shared.v4.b32", "st.shared.v4.b32", "ld.global.v4.b32"} <= found


def test_register_tiles_follow_the_threads_own_elements():
    """Which materialized tiles stay in registers: a softmax row and its exp (read by
    last-axis reductions and the elementwise output only) with one row per program; none
    when the shape leaves threads idle on a round (rows of 50: tiles of [1, 64] for 128
    threads) or needs too many rounds (64 of them for rows of 40000)."""
    softmax = importlib.import_module("softmax").softmax
    kept = {}
    for cols in (4000, 50, 40000):
        ck = softmax.compile(spec([64, cols], "float32"), backend="ptx", target="sm_90",
                             config=fusec.Config(blocks=[1], warps=4))
        kept[cols] = simt.register_tiles(Plan(ck.module.kernel()), 128)
    assert sorted(v.name for v in kept[4000]) == ["e", "row"]
    assert all(tuple(v.type.shape) == (1, 4096) for v in kept[4000])
    assert kept[50] == set() and kept[40000] == set()
    assert simt.register_rounds((1, 4096), 128) == 4
    assert simt.register_rounds((8, 512), 128) == 4
    assert simt.register_rounds((1, 1000), 128) is None        # 1000 = 7.8 rounds of 128
    assert simt.register_rounds((1, 65536), 128) is None       # 64 rounds: too many to unroll


def test_no_vector_access_without_the_proof():
    """Each of: a data pointer not 16-byte aligned, a strided last dim, a row length the
    vector does not divide, keeps x's loads one element at a time."""
    bias_gelu = importlib.import_module("bias_gelu").bias_gelu
    S = fusec.TensorSpec
    bias = S((512,), fl.bfloat16)
    cases = {"aligned": S((64, 512), fl.bfloat16),
             "unaligned": S((64, 512), fl.bfloat16, aligned16=False),
             "strided": S((64, 512), fl.bfloat16, strides=(1024, 2)),
             "short rows": S((64, 509), fl.bfloat16)}
    loads = {}
    for name, x in cases.items():
        b = bias if name != "short rows" else S((509,), fl.bfloat16)
        ck = bias_gelu.compile(x, b, backend="ptx", target="sm_90",
                               config=fusec.Config(blocks=[8, 512], warps=4))
        loads[name] = {a for a in _memory_accesses(ck.asm["ptx"]) if a.startswith("ld.global")}
    assert "ld.global.v4.b32" in loads["aligned"]
    for name in ("unaligned", "strided", "short rows"):
        assert "ld.global.b16" in loads[name] and "ld.global.v4.b32" not in loads[name], name


def test_vector_width_divides_the_row_and_keeps_every_thread_busy():
    assert simt.vector_width(4096, 4096, 128) == 8
    assert simt.vector_width(512, 8 * 512, 128) == 8
    assert simt.vector_width(512, 512, 128) == 4           # 8 would idle half the threads
    assert simt.vector_width(6, 6 * 128, 128) == 2
    assert simt.vector_width(509, 509 * 128, 128) == 1


def test_row_reductions_follow_the_register_mapping_only_where_it_is_a_power_of_two():
    register_shapes = {(1, 4096), (8, 48), (8, 512)}
    assert simt.row_lanes((1, 4096), 1, 128, register_shapes) == (128, 8)
    assert simt.row_lanes((8, 512), 8, 128, register_shapes) == (64, 8)
    # rows of 48 groups: the general lanes (a power of two), not 48 of them
    lanes, width = simt.row_lanes((8, 48), 8, 128, register_shapes)
    assert width is None and lanes & (lanes - 1) == 0
    assert simt.row_lanes((1, 4096), 1, 128, set()) == (128, None)


def test_row_reductions_read_each_thread_its_own_register_slots():
    """For every shape with a register mapping: the element a row reduction gives thread
    tid at slot (pass * steps + step, lane) is the one the distributed nest put there
    (chunk round * T + tid, elements chunk * width + lane)."""
    checked = 0
    for nthreads in (32, 64, 128, 256, 1024):
        for rows in (1, 2, 4, 8, 32):
            for cols in (8, 48, 64, 256, 384, 1024, 4096):
                shape = (rows, cols)
                if simt.register_rounds(shape, nthreads) is None:
                    continue
                lanes, width = simt.row_lanes(shape, rows, nthreads, {shape})
                if width is None:
                    continue
                assert width == simt.vector_width(cols, rows * cols, nthreads)
                groups, steps = nthreads // lanes, cols // (lanes * width)
                for tid in range(nthreads):
                    group, lane = divmod(tid, lanes)
                    for p in range(rows // groups):
                        for j in range(steps):
                            for w in range(width):
                                chunk = (p * steps + j) * nthreads + tid
                                nest = divmod(chunk * width + w, cols)
                                reduction = (p * groups + group, (j * lanes + lane) * width + w)
                                assert nest == reduction, (shape, nthreads, tid, p, j, w)
                checked += 1
    assert checked > 20


@fusec.kernel
def masked_by_a_register_tile(x):
    o1 = fusec.empty_like(x)
    o2 = fusec.zeros(x.shape, fl.float32)
    for t in fusec.tile(x.shape[0]):
        e = fl.exp(x[t])
        o1[t] = e * fl.max(e)       # a reduction reads e too: it stays a register tile
        fl.store(o2[t], x[t], mask=e > 1.5)
    return o1, o2


def test_a_store_masked_by_a_register_tile_reads_it_in_the_mapping():
    """e lives in registers; the masked store's mask reads e's slot when its lane is
    emitted, not when the (vector) store is."""
    ck = masked_by_a_register_tile.compile(spec(4096, "float32"), backend="ptx",
                                           target="sm_90",
                                           config=fusec.Config(blocks=[1024], warps=4))
    kept = simt.register_tiles(Plan(ck.module.kernel()), 128)
    assert [v.name for v in kept] == ["e"]
    assert "st.global.v4.b32" in ck.asm["ptx"]


def test_bf16_rounds_by_the_conversion_instruction_from_sm_80_only():
    rmsnorm = importlib.import_module("rmsnorm").rmsnorm
    for arch, hardware in (("sm_75", False), ("sm_80", True), ("sm_90a", True)):
        ck = rmsnorm.compile(spec([64, 256], "bfloat16"), spec(256, "bfloat16"), 1e-6,
                             backend="ptx", target=arch)
        assert ("cvt.rn.bf16.f32" in ck.asm["ptx"]) == hardware, arch
        assert_cubin(ck, arch)


@pytest.mark.parametrize("arch", ["sm_75", "sm_80", "sm_90"])
def test_half_dots_run_on_tensor_cores_from_sm_80(arch, monkeypatch):
    """backends/llvm/mma.py: a bf16 / fp16 matmul's dot is mma.sync m16n8k16 of its operand
    type from sm_80 on (the operands staged in shared memory, a warp's fragments read from
    there); float32 operands (tf32 would round them) and older archs keep the FMA loop,
    and so does a dot whose tile is not a multiple of the mma shape."""
    from fusec.backends.llvm import mma
    monkeypatch.setattr(mma, "ENABLED", True)      # whatever the default
    matmul = fusec.kernel(importlib.import_module("matmul_epilogue").matmul_bias_relu.fn)

    def build(dtype, blocks=(64, 64, 32)):
        ck = matmul.compile(spec([200, 96], dtype), spec([96, 120], dtype), spec(120, dtype), 0.5,
                            backend="ptx", target=arch,
                            config=fusec.Config(blocks=list(blocks), warps=4))
        assert_cubin(ck, arch)
        return ck.asm["ptx"]
    tensor_cores = arch != "sm_75"
    for dtype, ptx_type in (("bfloat16", "bf16"), ("float16", "f16")):
        ptx = build(dtype)
        want = f"mma.sync.aligned.m16n8k16.row.col.f32.{ptx_type}.{ptx_type}.f32"
        assert (want in ptx) == tensor_cores, (dtype, arch)
        if tensor_cores:
            assert ".shared" in ptx and "bar.sync" in ptx
    assert "mma.sync" not in build("float32")
    assert "mma.sync" not in build("bfloat16", blocks=(64, 60, 32))
    if tensor_cores:                  # the fixed policy's blocks for them (no config)
        ck = matmul.compile(spec([4096, 4096], "bfloat16"), spec([4096, 4096], "bfloat16"),
                            spec(4096, "bfloat16"), 0.5, backend="ptx", target=arch)
        assert list(ck.config.blocks) == [64, 64, 32] and "mma.sync" in ck.asm["ptx"]
        # acc += dot: the mma adds into the accumulator's slot (64 x 64 floats), no product
        # buffer beside it
        shared = re.findall(r"\.shared \.align \d+ \.b8 \S+\[(\d+)\]", ck.asm["ptx"])
        assert shared.count(str(64 * 64 * 4)) == 1, shared
    monkeypatch.setattr(mma, "ENABLED", False)
    matmul = fusec.kernel(matmul.fn)            # its in-memory cache keys no switch
    assert "mma.sync" not in build("bfloat16")
    ck = matmul.compile(spec([4096, 4096], "bfloat16"), spec([4096, 4096], "bfloat16"),
                        spec(4096, "bfloat16"), 0.5, backend="ptx", target=arch)
    assert list(ck.config.blocks) != [64, 64, 32]      # the FMA loop's own policy


def test_a_block_sum_shuffles_across_warps_and_adds_atomically_once():
    """total: a 256-element sum (float64 accumulator) over 4 warps, then one atomic add:
    five butterfly steps of two 32-bit halves, the warps' partials through shared memory,
    the atomic in a branch of thread 0."""
    ck = total.compile(spec(1000, "float32"), backend="ptx", target="sm_90")
    ptx = ck.asm["ptx"]
    assert ptx.count("shfl.sync.bfly.b32") == 10
    assert ptx.count("atom.global") == 1 and ".shared" in ptx and "bar.sync" in ptx
    assert "__local_depot" not in ptx


def test_several_launches_and_an_exact_arch():
    ck = two_passes.compile(spec(1000, "float32"), backend="ptx", target="sm_90a")
    assert ck.num_launches == 2 and ".target sm_90a" in ck.asm["ptx"]
    assert_cubin(ck, "sm_90a")


def test_calling_without_a_gpu_raises_a_clear_error():
    ck = scaled_exp.compile(spec(10, "float32"), 0.5, backend="ptx", target="sm_80")
    skip_if_a_gpu_is_here()
    with pytest.raises(fusec.LaunchError, match="torch sees none"):
        ck(np.ones(10, np.float32), 0.5)


def test_link_errors_carry_the_linker_log():
    bad = b".version 7.8\n.target sm_90\n.address_size 64\n.visible .entry k() { bogus; }\n"
    with pytest.raises(NVJitLinkError, match=r"(?s)add ptx 'bad.ptx' for sm_90 .*bogus"):
        link([LinkInput("ptx", bad, "bad.ptx")], "sm_90")
    ptx = scaled_exp.compile(spec(10, "float32"), 0.5, backend="ptx",
                             target="sm_90").asm["ptx"].encode()
    with pytest.raises(NVJitLinkError, match="SM version"):       # sm_90 PTX, sm_80 cubin
        link([LinkInput("ptx", ptx, "k.ptx")], "sm_80")


def test_bad_arguments_and_unlowerable_code_are_named():
    kernel = scaled_exp.compile(spec(10, "float32"), 0.5, backend="interpret").module.kernel()
    with pytest.raises(ValueError, match="ptx backend: target 'cpu' is not a CUDA arch"):
        compile_ptx(kernel, arch="cpu")
    with pytest.raises(ValueError, match="warps must be an int in 1..32, got 0"):
        compile_ptx(kernel, arch="sm_90", warps=0)
    with pytest.raises(ValueError, match="backend 'ptx' compiles for a GPU arch"):
        scaled_exp.compile(spec(10, "float32"), 0.5, backend="ptx", target="x86")
    # a math intrinsic NVPTX cannot select would abort the process inside LLVM
    module = ir.Module("pow")
    module.triple = nvptx.TRIPLE
    f32 = ir.FloatType()
    fn = ir.Function(module, ir.FunctionType(f32, [f32, f32]), name="k")
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    pow_ = ir.Function(module, ir.FunctionType(f32, [f32, f32]), name="llvm.pow.f32")
    b.ret(b.call(pow_, list(fn.args)))
    with pytest.raises(NotImplementedError, match="calls llvm.pow.f32, which NVPTX cannot"):
        nvptx.compile_module(str(module), "sm_90")


def test_ptx_cubins_come_from_the_disk_cache_the_second_time(monkeypatch):
    """LLVM's and nvJitLink's output is kept on disk by LLVM IR, arch and toolchain: a
    second build of the same kernel skips both and gives the same PTX and cubin; another
    arch or another LLVM IR (warps) builds anew."""
    softmax = importlib.import_module("softmax").softmax
    x = spec([33, 200], "float32")
    config = fusec.Config(blocks=[2], warps=2)

    def build(target="sm_80", cfg=config):
        return fusec.kernel(softmax.fn).compile(x, backend="ptx", target=target, config=cfg)
    first = build()
    built = []
    monkeypatch.setattr(compile_ptx.__globals__["nvptx"], "compile_module",
                        lambda *a, _f=nvptx.compile_module: built.append(a) or _f(*a))
    again = build()
    assert again.from_cache and not built
    assert again.asm["cubin"] == first.asm["cubin"] and again.asm["ptx"] == first.asm["ptx"]
    assert again.asm["llvm-opt"] == first.asm["llvm-opt"]
    other_arch = build(target="sm_90")
    assert not other_arch.from_cache and len(built) == 1
    other_warps = build(cfg=fusec.Config(blocks=[2], warps=4))
    assert not other_warps.from_cache and len(built) == 2


def test_registers_capped_by_the_threads_an_sm_should_hold():
    """Elementwise code (no register tiles) is asked to fit a whole SM of threads (ptxas
    then keeps it to 32 registers); kernels holding a row in registers half of it."""
    bias_gelu = importlib.import_module("bias_gelu").bias_gelu
    softmax = importlib.import_module("softmax").softmax
    elementwise = bias_gelu.compile(spec([64, 1024], "bfloat16"), spec([1024], "bfloat16"),
                                    backend="ptx", target="sm_90")
    rows = softmax.compile(spec([64, 4096], "bfloat16"), backend="ptx", target="sm_90")
    for ck, resident in ((elementwise, nvptx.RESIDENT_THREADS_NO_TILES),
                         (rows, nvptx.RESIDENT_THREADS)):
        threads = ck.config.warps * 32
        assert re.search(rf"\.maxntid {threads}\s+\.minnctapersm {resident // threads}\b",
                         ck.asm["ptx"]), ck.asm["ptx"][:2000]
    assert nvptx.RESIDENT_THREADS_NO_TILES > nvptx.RESIDENT_THREADS


@pytest.mark.parametrize("arch,warps,blocks", [("sm_86", 4, 12), ("sm_75", 4, 8),
                                               ("sm_90", 1, 32), ("sm_80", 2, 32)])
def test_the_register_cap_asks_for_no_more_blocks_than_the_arch_holds(arch, warps, blocks):
    """`.minnctapersm` within the arch's resident threads and blocks (ptxas ignores one
    beyond them, and the cap with it): 1536 threads on sm_86, 1024 on sm_75, 32 blocks."""
    bias_gelu = importlib.import_module("bias_gelu").bias_gelu
    ck = bias_gelu.compile(spec([64, 1024], "bfloat16"), spec([1024], "bfloat16"),
                           backend="ptx", target=arch,
                           config=fusec.Config(blocks=[8, 512], warps=warps))
    assert re.search(rf"\.minnctapersm {blocks}\b", ck.asm["ptx"])
