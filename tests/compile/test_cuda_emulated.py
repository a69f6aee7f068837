"""The CUDA backend's generated source, run on the CPU (cuda_emulator.py: one host thread
per CUDA thread, a barrier for __syncthreads) against the reference interpreter: the SIMT
mapping, barriers, buffers, half-float bit conversions, integer helpers and casts checked
without a GPU. Skipped without a host C++ compiler."""
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
from conftest import as_input, assert_close, output_float64, random_array

import cuda_emulator
from device_kernels import (cast, loops_and_ifs, scatter_add, shift_in_place, total,
                            upper_triangle)

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "unit"))
sys.path.insert(0, str(HERE.parents[1] / "examples"))
import test_ops as ops  # noqa: E402

sys.path.insert(0, str(HERE.parent))
import tensor_kernels as K  # noqa: E402

pytestmark = pytest.mark.skipif(cuda_emulator.compiler() is None,
                                reason="needs a host C++ compiler (g++)")

SIZES = (1, 7, 1000, 4097)
FLOATS = ("float16", "bfloat16", "float32", "float64")


def _tol(dtype: str) -> str:
    return dtype if dtype in FLOATS else "exact"


def _check(kernel, args, consts=(), out_dtype="float32", what="", warps=4):
    """Emulated CUDA vs the interpreter on the same specialization."""
    ck = kernel.compile(*args, *consts, backend="interpret")
    want = output_float64(ck(*args, *consts))
    got = output_float64(cuda_emulator.Emulated(ck, warps)(*args, *consts))
    with np.errstate(all="ignore"):
        assert_close(got, want, _tol(out_dtype), what)


@pytest.mark.parametrize("name", ["exp", "log", "tanh", "gelu", "sigmoid", "floor", "asinh",
                                  "erfc"])
@pytest.mark.parametrize("dtype", ["float32", "float64", "float16", "bfloat16", "int8"])
def test_float_unary(name, dtype):
    out = dtype if dtype in FLOATS else "float32"
    x, _ = random_array((1000,), dtype, seed=1, low=0.1 if name == "log" else -3.0)
    _check(ops.UNARY_KERNELS[name], [as_input(x, dtype)], [getattr(fl, out)], out,
           f"{name}({dtype})")


# (tests/compile/test_cuda_emulated_ir.py runs every op on every dtype at the IR level)
@pytest.mark.parametrize("op,dtype", [
    ("floordiv", "int8"), ("mod", "int32"), ("pow", "int64"), ("sub", "uint8"),
    ("add", "bool"), ("mod", "float16"), ("floordiv", "bfloat16"), ("div", "float32"),
    ("maximum", "float64"), ("div", "int32"), ("ne", "float32"), ("xor", "int8"),
    ("atan2", "float32"), ("atan2", "bfloat16"), ("atan2", "int16"), ("hypot", "float32"),
    ("copysign", "bfloat16"), ("copysign", "int16")])
def test_binary(op, dtype):
    is_float = dtype in FLOATS
    x, _ = random_array((1000,), dtype, seed=3)
    y, _ = random_array((1000,), dtype, seed=4)
    if dtype not in FLOATS and dtype != "bool":
        y[::7] = 0                            # division by zero gives 0
        if dtype != "uint8":
            y[3::7] = -1
            x[3::7] = np.iinfo(dtype).min    # INT_MIN // -1 wraps
    if op == "pow" and not is_float:
        y = np.abs(y % 4).astype(y.dtype)
    out = "bool" if op == "ne" else "float32" if op in FLOAT_RESULT_BINARY and not is_float \
        else dtype
    _check(ops.binary, [as_input(x, dtype), as_input(y, dtype)], [op, getattr(fl, out)], out,
           f"{op}({dtype})")


@pytest.mark.parametrize("src", ["int64", "float16", "bfloat16", "float64"])
def test_casts(src):
    import torch
    x, _ = random_array((100,), src, seed=3, low=-300.0, high=300.0)
    if src in FLOATS and src != "bfloat16":
        x[:4] = [np.nan, np.inf, -np.inf, 1e30 if src != "float16" else 65504]
    for dst in ("bool", "int8", "int32", "int64", "uint8", "float16", "bfloat16", "float32",
                "float64"):
        inp = as_input(x, src)
        if dst == "bfloat16" and isinstance(inp, np.ndarray):
            inp = torch.from_numpy(inp)
        _check(cast, [inp], [getattr(fl, dst)], dst, f"{src}->{dst}")


@pytest.mark.parametrize("kind,dtype", [
    (k, "float32") for k in ("sum", "max", "min", "mean", "argmax", "argmin")] + [
    ("sum", "bfloat16"), ("argmin", "float16"), ("sum", "bool"), ("max", "int8"),
    ("mean", "float64")])
def test_reductions(kind, dtype):
    rows, cols = ops.REDUCE_KERNELS[kind]
    if kind in ("argmax", "argmin"):
        out = "int32"
    elif kind == "sum" and dtype not in FLOATS:
        out = "int64"
    else:
        out = dtype
    for n in (7, 100):
        x, _ = random_array((5, n), dtype, seed=n)
        if dtype in ("float32", "float64") and kind != "mean":
            x[1, 3] = np.nan                  # NaN propagates / is the arg extreme
        _check(rows, [as_input(x, dtype)], [getattr(fl, out)], out, f"{kind} rows {dtype}")
        xt = np.ascontiguousarray(x.T)
        _check(cols, [as_input(xt, dtype)], [getattr(fl, out)], out, f"{kind} cols {dtype}")


@pytest.mark.parametrize("dtype,out", [("float32", "float32"), ("bfloat16", "float32"),
                                       ("int8", "int32")])
def test_dot(dtype, out):
    a, _ = random_array((65, 47), dtype, seed=1)
    b, _ = random_array((47, 100), dtype, seed=2)
    _check(ops.matmul, [as_input(a, dtype), as_input(b, dtype)], [getattr(fl, out)], out,
           f"dot {dtype}")


@pytest.mark.parametrize("n", SIZES)
def test_strided_input_and_sizes(n):
    base = np.random.default_rng(n).standard_normal((n, 3)).astype(np.float32)
    _check(ops.UNARY_KERNELS["exp"], [base[:, 1]], [fl.float32], "float32", f"exp strided {n}")


def test_in_place_shift_loads_before_storing():
    x = np.arange(300, dtype=np.float32)
    want = x.copy()
    want[:-1] = x[1:]
    ck = shift_in_place.compile(x.copy(), backend="interpret")
    got = cuda_emulator.Emulated(ck)(x.copy())
    np.testing.assert_array_equal(got, want)


def test_atomics():
    x, _ = random_array((1000,), "float32", seed=5)
    idx = np.random.default_rng(6).integers(0, 17, size=1000).astype(np.int32)
    _check(scatter_add, [x, idx, 17], what="scatter_add")
    _check(total, [x], what="total")


def test_loops_ifs_and_carried_scalars():
    x, _ = random_array((1000,), "float32", seed=7)
    _check(loops_and_ifs, [x, 5], what="loops")


@pytest.mark.parametrize("name", sorted(p.stem for p in (HERE.parents[1] / "examples").glob(
    "*.py") if not p.stem.startswith("_") and p.stem != "run_all"))
def test_examples(name, monkeypatch):
    """Every example's kernels, emulated, against the example's own float64 reference."""
    module = importlib.import_module(name)
    kernels = [v for v in vars(module).values() if isinstance(v, fusec.Kernel)]
    for kernel in kernels:
        original = kernel.compile

        def emulated(*args, _orig=original, **kwargs):
            kwargs["backend"] = "interpret"
            return cuda_emulator.Emulated(_orig(*args, **kwargs))
        monkeypatch.setattr(kernel, "compile", emulated)
    assert module.main(backend="interpret") is not None


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_group_statistics_over_a_long_axis_and_a_short_one(dtype):
    """The long axis walked in chunks, the short one reduced after the loop (passes/tile.py)."""
    x = as_input(random_array((2, 3, 4, 9001), dtype, seed=22)[0], dtype)
    ck = K.group_stats.compile(x, backend="interpret")
    want = [output_float64(o) for o in ck(x)]
    got = [output_float64(o) for o in cuda_emulator.Emulated(ck)(x)]
    for g, w, what in zip(got, want, ("mean", "variance")):
        assert_close(g, w, "float32", what)


@pytest.mark.parametrize("kernel, shapes", [
    (K.pixel_sums, [(2, 3, 96, 100), (2, 3, 96, 100)]),   # H looped, W whole, sums reordered
    (K.bias_grad, [(16, 3, 100, 90)]),                     # split: partials, then channels
    (K.column_grads, [(40000, 19), (40000, 19), (19,)]),    # split with its producers
])
def test_reductions_over_several_short_axes(kernel, shapes):
    """Reductions over several axes, too many elements together for one tile
    (passes/tile.py, passes/tile_split.py): the emulated CUDA C against the interpreter."""
    _outputs_match_the_interpreter(kernel, shapes, seed=30)


def _outputs_match_the_interpreter(kernel, shapes, seed):
    """Every output of the emulated CUDA C against the interpreter's, float32 inputs."""
    args = [random_array(s, "float32", seed=seed + i)[0] for i, s in enumerate(shapes)]
    ck = kernel.compile(*args, backend="interpret")
    want = [output_float64(o) for o in ck(*args)]
    got = [output_float64(o) for o in cuda_emulator.Emulated(ck)(*args)]
    for i, (g, w) in enumerate(zip(got, want)):
        assert_close(g, w, "float32", f"{kernel.fn.__name__} output {i}")


@pytest.mark.parametrize("kernel, shapes", [
    (K.batch_norm_with_running_mean, [(20001, 16), (16,)]),   # update hoisted into a split
    (K.row_sums_and_total_max, [(300, 100)]),                # a full reduction rides along
])
def test_split_launches_that_take_other_work_along(kernel, shapes):
    """The fuse pass's hoist and full reductions riding a row pass (split launches doing
    more than one reduction's share): the emulated CUDA C against the interpreter."""
    _outputs_match_the_interpreter(kernel, shapes, seed=40)


def test_16_bit_sums_over_several_axes_round_once():
    """CUDA C holds a bf16 tile's values in bf16: a sum over several axes rounded each axis's
    partial sums (1403.4 came out 1408, an ulp off). The partial sums stay in float32 and
    the result is within half an ulp of the float64 sum."""
    @fusec.kernel
    def sums(x):
        return x.sum(axis=(0, 2, 3))
    x, xd = random_array((16, 3, 101, 90), "bfloat16", seed=27)
    x = as_input(x, "bfloat16")
    got = output_float64(cuda_emulator.Emulated(sums.compile(x, backend="interpret"))(x))
    want = xd.sum(axis=(0, 2, 3))
    half_ulp = 2.0 ** (np.floor(np.log2(np.abs(want))) - 8)
    assert (np.abs(got - want) <= half_ulp * 1.001).all(), (got, want)


@pytest.mark.parametrize("case", range(len(K.VIEW_CASES)))
def test_view_kernels(case):
    """Whole-tensor reshapes and slices (the index math in CUDA C) against numpy."""
    kernel, shapes, ints, reference, _ = K.VIEW_CASES[case]
    arrays = [random_array(s, "float32", seed=i) for i, s in enumerate(shapes)]
    ck = kernel.compile(*(a for a, _ in arrays), *ints, backend="interpret")
    got = output_float64(cuda_emulator.Emulated(ck)(*(a for a, _ in arrays), *ints))
    assert_close(got, reference(*(d for _, d in arrays), *ints), "float32",
                 kernel.fn.__name__)


@pytest.mark.parametrize("warps", [1, 8])
def test_any_number_of_warps(warps):
    """Strided loops and per-thread reductions do not assume 128 threads."""
    rows, _ = ops.REDUCE_KERNELS["argmax"]
    x, _ = random_array((300, 70), "float32", seed=warps)
    _check(rows, [x], [fl.int32], "int32", f"argmax, {warps} warps", warps=warps)
    a, _ = random_array((33, 20), "float32", seed=1)
    b, _ = random_array((20, 65), "float32", seed=2)
    _check(ops.matmul, [a, b], [fl.float32], "float32", f"dot, {warps} warps", warps=warps)


@pytest.mark.parametrize("name", ["erf", "gelu"])
def test_erf_and_gelu_of_the_prelude_within_the_ulp_bounds(name, monkeypatch):
    """The prelude's fc_erff / fc_gelu (backends/erf_polys.py, the PTX backend's formulas)
    over the whole float32 range with the specials, within the bounds of the LLVM math
    (tests/unit/test_llvm_math.py; gelu is torch's formula: its tail relative to |x| / 2).
    On the host 2**q is exp2f and the saturated fma fminf/fmaxf."""
    import test_llvm_math as cpu_math
    x = cpu_math.inputs()
    ck = ops.UNARY_KERNELS[name].compile(x, fl.float32, backend="interpret")
    got = cuda_emulator.Emulated(ck, 4)(x, fl.float32)
    if name == "gelu":
        monkeypatch.setattr(cpu_math, "ABSOLUTE_TAIL", {"gelu"})
    cpu_math.assert_within_ulps(name, x, np.asarray(got), bound=4)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_a_mask_comparing_column_and_row_is_per_lane(dtype):
    """`col >= row` is not one value over a vector group (the row is any number, not a
    multiple of the width): every lane keeps its own compare."""
    x = as_input(random_array((40, 300), dtype, seed=5)[0], dtype)
    _check(upper_triangle, [x], out_dtype=dtype, what=f"triu {dtype}")
    ck = upper_triangle.compile(x, backend="interpret",
                                config=fusec.Config(blocks=[8, 256], warps=4))
    got = output_float64(cuda_emulator.Emulated(ck, 4)(x))
    want = np.triu(output_float64(x))
    assert (got == want).all()


@fusec.kernel
def transposed_scaled(a):
    return a.T * 2.0


@fusec.kernel
def keys_transposed(k):
    return fl.permute(k, (0, 2, 3, 1))       # attention's k^T made contiguous


@pytest.mark.parametrize("kernel,shape,blocks", [
    (transposed_scaled, (45, 70), [16, 32]),         # ragged tiles both ways
    (transposed_scaled, (45, 70), [8, 512]),
    (transposed_scaled, (130, 9), [64, 64]),         # one dim shorter than a tile edge
    (keys_transposed, (2, 37, 3, 20), [1, 1, 8, 64]),
])
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_a_tile_read_across_its_rows_is_staged_through_shared_memory(
        kernel, shape, blocks, dtype, monkeypatch):
    """transpose.py (switched on here): the load is filled into a padded buffer by
    threads walking the tensor's rows and read back transposed after the barrier."""
    from fusec.backends.cuda import transpose
    monkeypatch.setattr(transpose, "ENABLED", True)
    x, xd = random_array(shape, dtype, seed=9)
    ck = kernel.compile(as_input(x, dtype), backend="interpret",
                        config=fusec.Config(blocks=blocks, warps=4))
    emulated = cuda_emulator.Emulated(ck, 4)
    got = output_float64(emulated(as_input(x, dtype)))
    want = xd.T * 2 if kernel is transposed_scaled else np.transpose(xd, (0, 2, 3, 1))
    assert_close(got, want, dtype)
    assert "_staged_" in emulated.source


def test_a_tile_read_along_its_rows_is_not_staged(monkeypatch):
    from fusec.backends.cuda import transpose
    monkeypatch.setattr(transpose, "ENABLED", True)
    x, _ = random_array((45, 70), "float32", seed=10)
    ck = K.bias_gelu.compile(x, np.ones(70, np.float32), backend="interpret")
    source = cuda_emulator.Emulated(ck, 4).source
    assert "_staged_" not in source


@pytest.mark.parametrize("n,rows_per_program", [(512, 8), (512, 3), (4096, 8)])
def test_rows_wider_than_a_warp_meet_through_shared_memory(n, rows_per_program):
    """A row reduced by more than one warp combines its warps' partials in shared memory:
    every pass's partials after one barrier (rows of 512, unrolled passes), or pass by pass
    (rows of 4096, a loop over passes); argmax keeps the first NaN."""
    x, _ = random_array((37, n), "float32", seed=n + rows_per_program)
    x[5, 100] = np.nan
    config = fusec.Config(blocks=[rows_per_program])
    for kernel in (K.log_softmax, ops.REDUCE_KERNELS["argmax"][0]):
        ck = kernel.compile(x, *([fl.int32] if kernel is not K.log_softmax else []),
                            backend="interpret", config=config)
        consts = [fl.int32] if kernel is not K.log_softmax else []
        want = output_float64(ck(x, *consts))
        got = output_float64(cuda_emulator.Emulated(ck, 4)(x, *consts))
        with np.errstate(all="ignore"):
            assert_close(got, want, "float32", f"{kernel.fn.__name__} rows of {n}")


@fusec.kernel
def three_parts(a, b, c):
    return fl.cat((a, b * 2.0, c), axis=1)


@pytest.mark.parametrize("widths,vectorized", [((256, 384, 128), True), ((257, 380, 127), False)])
def test_a_concat_along_the_last_axis_moves_whole_vectors_where_parts_align(widths,
                                                                            vectorized):
    """Each part's lanes of a concat along the last axis are checked against the part's
    bounds: where those are multiples of the vector width (sizes divisible by 16) every
    lane group lies in one part and moves as one 16-byte access; elsewhere lane by lane.
    Both match the interpreter, part boundaries inside a program's tile included."""
    arrays = [random_array((5, w), "bfloat16", seed=i)[0] for i, w in enumerate(widths)]
    inputs = [as_input(a, "bfloat16") for a in arrays]
    ck = three_parts.compile(*inputs, backend="interpret",
                             config=fusec.Config(blocks=[2, 256]))
    want = output_float64(ck(*inputs))
    got = output_float64(cuda_emulator.Emulated(ck, 2)(*inputs))
    assert_close(got, want, "bfloat16", "three_parts")
    source = three_parts.compile(*inputs, backend="cuda", target="sm_90",
                                 config=fusec.Config(blocks=[2, 256])).asm["cuda"]
    assert bool(re.search(r"\(const uint\d?\*\)\(b1_ptr", source)) == vectorized, source
