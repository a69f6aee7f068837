"""Shared helpers of the LLVM CPU backend tests: random inputs per dtype, output arrays
poisoned like a kernel would find them, and a comparison against the reference
interpreter (backends.interpret.run) with tolerances by dtype."""
from __future__ import annotations

import copy

import numpy as np

from fusec.backends import interpret
from fusec.backends.common import bind_symbols, eval_size
from fusec.backends.numeric import STORAGE, f32_to_bf16_bits, to_compute
from fusec.ir import dtypes as D
from fusec.ir import parse, verify

DTYPES = {d.short: d for d in D.ALL_DTYPES}
FLOATS = ("f16", "bf16", "f32", "f64")
INTS = ("i8", "i16", "i32", "i64", "u8")
ALL = ("bool",) + INTS + FLOATS
TOL = {"f16": (1e-2, 1e-2), "bf16": (1e-2, 1e-2), "f32": (1e-5, 1e-6), "f64": (1e-12, 1e-13)}
SPECIALS = [0.0, -0.0, np.inf, -np.inf, np.nan, 0.5, -0.5, 2.5, -1.5, 1e-3, 1e4, -3e5]


def kernel_of(text: str):
    module = parse(text)
    verify(module)
    return module.kernel()


def random_array(short: str, shape, rng, specials: bool = True, scale: float = 3.0):
    """Random values of a dtype in its storage type: negative values included; floats with
    a sprinkle of inf/nan/signed zeros, ints over their whole range plus small values."""
    d = DTYPES[short]
    shape = tuple(shape)
    if d.is_bool:
        return rng.random(shape) < 0.5
    if d.is_int:
        info = np.iinfo(STORAGE[d])
        wide = rng.integers(info.min, info.max, size=shape, dtype=np.int64, endpoint=True)
        small = rng.integers(max(info.min, -6), 7, size=shape)
        return np.where(rng.random(shape) < 0.5, wide, small).astype(STORAGE[d])
    v = rng.standard_normal(shape) * scale
    if specials and v.size:
        pick = rng.random(shape) < 0.08
        v = np.where(pick, rng.choice(SPECIALS, size=shape), v)
    if d == D.bfloat16:
        return f32_to_bf16_bits(v.astype(np.float32)).reshape(shape)
    with np.errstate(over="ignore"):
        return v.astype(STORAGE[d])


def outputs_for(kernel, params) -> list[np.ndarray]:
    """One array per alloc: zeros where the alloc asks for them, else 0xFF poison (NaN for
    floats) so that lanes a kernel must not write stay recognizable."""
    symbols = bind_symbols(kernel, params)
    outs = []
    for op in kernel.walk():
        if op.name != "alloc":
            continue
        t = op.results[0].type
        shape = tuple(int(eval_size(s, symbols)) for s in t.shape)
        a = np.empty(shape, STORAGE[t.dtype])
        if op.attrs.get("zero"):
            a[...] = 0
        else:
            a.view(np.uint8)[...] = 0xFF
        outs.append(a)
    return outs


def assert_same(got: np.ndarray, ref: np.ndarray, short: str, what: str = "") -> None:
    d = DTYPES[short]
    if d.is_float:
        rtol, atol = TOL[short]
        g, r = to_compute(got, d).astype(np.float64), to_compute(ref, d).astype(np.float64)
        np.testing.assert_allclose(g, r, rtol=rtol, atol=atol, equal_nan=True, err_msg=what)
    else:
        np.testing.assert_array_equal(got.view(np.uint8), ref.view(np.uint8), err_msg=what)


def run_both(kernel, ck, params):
    """Outputs of the interpreter and of the compiled kernel on copies of params."""
    ref = outputs_for(kernel, params)
    got = [o.copy() for o in ref]
    p_ref, p_got = copy.deepcopy(list(params)), copy.deepcopy(list(params))
    interpret.run(kernel, p_ref + ref)
    ck.run(p_got + got)
    return ref, got, p_ref, p_got


def check(kernel, ck, params, names=None, tol_dtype=None) -> None:
    """Run interpreter and compiled kernel; compare every output (and every param, which a
    kernel may store into)."""
    ref, got, p_ref, p_got = run_both(kernel, ck, params)
    allocs = [op.results[0].type.dtype.short for op in kernel.walk() if op.name == "alloc"]
    for i, (r, g, short) in enumerate(zip(ref, got, allocs)):
        label = names[i] if names else f"output {i}"
        assert_same(g, r, tol_dtype or short, f"{label} ({short})")
    for i, (r, g) in enumerate(zip(p_ref, p_got)):
        if isinstance(r, np.ndarray):
            short = kernel.regions[0].args[i].type.dtype.short
            assert_same(g, r, short, f"param {i}")


def elementwise(in_types, body_lines, outs, block=64, name="k", scalars=()) -> str:
    """A 1-D kernel over n elements: loads %a0, %a1, ... (tile<T>[block]) of the tensor
    params, then body_lines, then stores every (value, dtype) of `outs` to an output.
    `scalars`: extra (name, dtype) scalar params after the tensors."""
    params = [f"%x{i}: tensor<{t}>[n]" for i, t in enumerate(in_types)]
    params += [f"%{n}: {t}" for n, t in scalars]
    unit = ", ".join(f"[{i}, 0]" for i in range(len(in_types)))
    lines = [f'kernel(div16 = [], name = "{name}", sizes = [["n", 0, 0]], '
             f'unit_strides = [{unit}]) {{',
             f"^({', '.join(params)}):"]
    lines += [f"  %o{i} = alloc(zero = false) : tensor<{t}>[n]" for i, (_, t) in enumerate(outs)]
    lines += [f'  tile_for(block = {block}, dim = 0, extent = e"n", parallel = true) {{',
              "  ^(%t: tileidx):",
              f"    %i = tile_index(%t) : tile<i32>[{block}]"]
    lines += [f"    %a{i} = load(%x{i}, %i, checked = [true], mask = false, other = false) : "
              f"tile<{t}>[{block}]" for i, t in enumerate(in_types)]
    lines += ["    " + ln for ln in body_lines]
    lines += [f"    store(%o{i}, %i, %{v}, checked = [true], mask = false)"
              for i, (v, _) in enumerate(outs)]
    lines += ["    yield()", "  }", f"  return({', '.join(f'%o{i}' for i in range(len(outs)))})",
              "}"]
    return "\n".join(lines)
