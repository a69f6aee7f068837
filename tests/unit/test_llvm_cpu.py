"""The compiled CPU backend (backends/llvm) against the reference interpreter, on IR written
by hand: every op on every dtype it accepts, casts, reductions, dot, memory ops with masks,
strides, atomics, control flow, grids and scalar params. Outputs start poisoned (0xFF)."""
from __future__ import annotations

import platform
import re
import zlib

import numpy as np
import pytest
from test_llvm_helpers import (ALL, DTYPES, check, elementwise, kernel_of, outputs_for,
                               random_array)

from fusec.backends.llvm import compile_cpu
from fusec.backends.numeric import to_compute, to_storage
from fusec.ir.ops import COMPARE, FLOAT_UNARY

SIZES = (1, 7, 100, 1000)          # extents; the block (64) divides none of them


def _rng(*key):
    return np.random.default_rng(zlib.crc32(repr(key).encode()))


# -- elementwise ---------------------------------------------------------------------------
def _unary_ops(short):
    d = DTYPES[short]
    if d.is_float:
        return list(FLOAT_UNARY) + ["neg", "abs", "relu"]
    if d.is_bool:
        return ["abs", "relu", "not"]
    return ["neg", "abs", "relu", "not"]


@pytest.mark.parametrize("short", ALL)
def test_unary(short):
    ops = _unary_ops(short)
    body = [f"%r{k} = {op}(%a0) : tile<{short}>[64]" for k, op in enumerate(ops)]
    k = kernel_of(elementwise([short], body, [(f"r{j}", short) for j in range(len(ops))]))
    ck = compile_cpu(k)
    for n in SIZES:
        check(k, ck, [random_array(short, (n,), _rng("u", short, n))], names=ops)


def _binary_ops(short):
    d = DTYPES[short]
    if d.is_float:
        return ["add", "sub", "mul", "div", "floordiv", "mod", "maximum", "minimum", "pow"]
    ops = ["add", "mul", "floordiv", "mod", "maximum", "minimum", "pow", "and", "or", "xor"]
    return ops if d.is_bool else ops + ["sub"]


@pytest.mark.parametrize("short", ALL)
def test_binary(short):
    ops = _binary_ops(short)
    body = [f"%r{k} = {op}(%a0, %a1) : tile<{short}>[64]" for k, op in enumerate(ops)]
    k = kernel_of(elementwise([short, short], body, [(f"r{j}", short) for j in range(len(ops))]))
    ck = compile_cpu(k)
    for n in SIZES:
        rng = _rng("b", short, n)
        x, y = random_array(short, (n,), rng), random_array(short, (n,), rng)
        if DTYPES[short].is_int:          # zeros, -1 and small exponents for // % **
            y = np.where(rng.random(n) < 0.3, rng.integers(-2, 9, n), y).astype(y.dtype)
            x[:2] = np.iinfo(x.dtype).min
            y[:2] = ([-1, 0] if DTYPES[short].kind == "i" else [0, 1])[:n]
        check(k, ck, [x, y], names=ops)


@pytest.mark.parametrize("short", ALL)
def test_compare_and_where(short):
    body = [f"%r{k} = {op}(%a0, %a1) : tile<bool>[64]" for k, op in enumerate(COMPARE)]
    body.append(f"%w = where(%r2, %a0, %a1) : tile<{short}>[64]")
    outs = [(f"r{k}", "bool") for k in range(len(COMPARE))] + [("w", short)]
    k = kernel_of(elementwise([short, short], body, outs))
    ck = compile_cpu(k)
    for n in SIZES:
        rng = _rng("c", short, n)
        x, y = random_array(short, (n,), rng), random_array(short, (n,), rng)
        y = np.where(rng.random(n) < 0.3, x, y)            # equal lanes
        check(k, ck, [x, y], names=list(COMPARE) + ["where"])


@pytest.mark.parametrize("src", ALL)
def test_casts(src):
    body = [f"%r{k} = cast(%a0) : tile<{dst}>[64]" for k, dst in enumerate(ALL)]
    k = kernel_of(elementwise([src], body, [(f"r{k}", dst) for k, dst in enumerate(ALL)]))
    ck = compile_cpu(k)
    for n in SIZES:
        rng = _rng("cast", src, n)
        x = random_array(src, (n,), rng)
        if DTYPES[src].is_float:     # out-of-range values saturate; fractions truncate
            big = rng.choice([1e10, -1e10, 3e38, 70000.0, -129.7, 255.9, 256.5, 2.0**31,
                              -2.0**63, 1e20, 33000.0], n)
            x = np.where(rng.random(n) < 0.3, random_array(src, (n,), rng, scale=1e3),
                         x).astype(x.dtype)
            if src != "bf16" and src != "f16":
                x = np.where(rng.random(n) < 0.2, big, x).astype(x.dtype)
        check(k, ck, [x], names=[f"{src}->{dst}" for dst in ALL])


def test_scalar_params():
    text = elementwise(
        ["f32"], ["%al = expand_dims(%alpha, axis = 0) : tile<f32>[1]",
                  "%ab = broadcast(%al) : tile<f32>[64]",
                  "%bf = cast(%beta) : f32",
                  "%bl = expand_dims(%bf, axis = 0) : tile<f32>[1]",
                  "%bb = broadcast(%bl) : tile<f32>[64]",
                  "%m = mul(%a0, %ab) : tile<f32>[64]",
                  "%r = add(%m, %bb) : tile<f32>[64]",
                  "%hl = expand_dims(%h, axis = 0) : tile<f16>[1]",
                  "%hb = broadcast(%hl) : tile<f16>[64]",
                  "%xh = cast(%a0) : tile<f16>[64]",
                  "%rh = mul(%xh, %hb) : tile<f16>[64]",
                  "%s8 = cast(%beta) : i8",
                  "%fl = where(%flag, %alpha, %bf) : f32",
                  "%fl1 = expand_dims(%fl, axis = 0) : tile<f32>[1]",
                  "%fb = broadcast(%fl1) : tile<f32>[64]",
                  "%s81 = expand_dims(%s8, axis = 0) : tile<i8>[1]",
                  "%s8b = broadcast(%s81) : tile<i8>[64]"],
        [("r", "f32"), ("rh", "f16"), ("fb", "f32"), ("s8b", "i8")],
        scalars=[("alpha", "f32"), ("beta", "i64"), ("h", "f16"), ("flag", "bool")])
    k = kernel_of(text)
    ck = compile_cpu(k)
    x = random_array("f32", (100,), _rng("sp"))
    for alpha, beta, h, flag in [(1.5, 3, 0.1, True), (-2.25e-3, -(2**40) + 7, 3.3, False),
                                 (1e30, 300, -65519.0, True)]:
        check(k, ck, [x, alpha, beta, h, flag])


# -- reductions ------------------------------------------------------------------------------
def _extremes(short):
    d = DTYPES[short]
    if d.is_float:
        return "-inf", "inf"
    if d.is_bool:
        return "false", "true"
    info = np.iinfo(np.dtype({"i8": "i1", "i16": "i2", "i32": "i4", "i64": "i8",
                              "u8": "u1"}[short]))
    return str(info.min), str(info.max)


def _reduce_kernel(short, kb, axis):
    """x[m, k] (axis 1: row tiles [4, kb]) or x[k, m] (axis 0: column tiles [kb, 4]); lanes
    past k are replaced by each reduction's identity, as the frontend does."""
    lo, hi = _extremes(short)
    sum_t = short if DTYPES[short].is_float else "i64"
    shape = "[4, KB]" if axis == 1 else "[KB, 4]"
    shape = shape.replace("KB", str(kb))
    red = "[4]"
    idx_m, idx_k = ("%ib", "%jb") if axis == 1 else ("%jb", "%ib")
    dims = "[m, k]" if axis == 1 else "[k, m]"
    sizes = '[["m", 0, 0], ["k", 0, 1]]' if axis == 1 else '[["k", 0, 0], ["m", 0, 1]]'
    e_m, e_k = (1, 0) if axis == 1 else (0, 1)
    kinds = [("sum", sum_t, "zero"), ("max", short, "lo"), ("min", short, "hi"),
             ("argmax", "i32", "lo"), ("argmin", "i32", "hi")]
    lines = [f'kernel(div16 = [], name = "red", sizes = {sizes}, unit_strides = []) {{',
             f"^(%x: tensor<{short}>{dims}):"]
    lines += [f"  %o{j} = alloc(zero = false) : tensor<{t}>[m]" for j, (_, t, _) in
              enumerate(kinds)]
    lines += ['  tile_for(block = 4, dim = 0, extent = e"m", parallel = true) {',
              "  ^(%t: tileidx):",
              "    %i = tile_index(%t) : tile<i32>[4]",
              f"    %i2 = expand_dims(%i, axis = {e_m}) : tile<i32>{shape.replace(str(kb), '1') if axis == 1 else '[1, 4]'}",
              f"    %ib = broadcast(%i2) : tile<i32>{shape}",
              f"    %j = arange(end = {kb}, start = 0) : tile<i32>[{kb}]",
              f"    %j2 = expand_dims(%j, axis = {e_k}) : tile<i32>{'[1, %d]' % kb if axis == 1 else '[%d, 1]' % kb}",
              f"    %jb = broadcast(%j2) : tile<i32>{shape}",
              f"    %v = load(%x, {idx_m if axis == 1 else idx_k}, {idx_k if axis == 1 else idx_m}, "
              f"checked = [true, true], mask = false, other = false) : tile<{short}>{shape}",
              '    %kk = symval(expr = e"k") : i32',
              "    %k1 = expand_dims(%kk, axis = 0) : tile<i32>[1]",
              "    %k2 = expand_dims(%k1, axis = 0) : tile<i32>[1, 1]",
              f"    %kb = broadcast(%k2) : tile<i32>{shape}",
              f"    %in = lt(%jb, %kb) : tile<bool>{shape}",
              f"    %zero = const(value = {'false' if short == 'bool' else 0}) : tile<{short}>{shape}",
              f"    %lo = const(value = {lo}) : tile<{short}>{shape}",
              f"    %hi = const(value = {hi}) : tile<{short}>{shape}",
              f"    %vzero = where(%in, %v, %zero) : tile<{short}>{shape}",
              f"    %vlo = where(%in, %v, %lo) : tile<{short}>{shape}",
              f"    %vhi = where(%in, %v, %hi) : tile<{short}>{shape}"]
    for j, (kind, t, src) in enumerate(kinds):
        lines.append(f'    %r{j} = reduce(%v{src}, axis = {axis}, kind = "{kind}") : '
                     f"tile<{t}>{red}")
        lines.append(f"    store(%o{j}, %i, %r{j}, checked = [true], mask = false)")
    lines += ["    yield()", "  }", "  return(%o0, %o1, %o2, %o3, %o4)", "}"]
    return kernel_of("\n".join(lines)), [k for k, _, _ in kinds]


@pytest.mark.parametrize("short", ALL)
@pytest.mark.parametrize("axis,kb", [(1, 8), (1, 40), (0, 40)])
def test_reductions(short, axis, kb):
    k, kinds = _reduce_kernel(short, kb, axis)
    ck = compile_cpu(k)
    for m, kk in [(1, 1), (7, kb // 2 + 1), (10, kb)]:
        rng = _rng("r", short, axis, kb, m, kk)
        shape = (m, kk) if axis == 1 else (kk, m)
        x = random_array(short, shape, rng, specials=False)
        if DTYPES[short].is_float and m > 1:        # NaN and inf in some rows
            x = _with_specials(short, x, rng)
        if DTYPES[short].is_int:                    # ties: argmax must pick the first
            x = (x % 3).astype(x.dtype)
        check(k, ck, [x], names=kinds)


def _with_specials(short, x, rng):
    d = DTYPES[short]
    vals = to_compute(x, d).astype(np.float64)
    flat = vals.reshape(-1)
    flat[rng.integers(0, flat.size, 2)] = np.nan
    flat[rng.integers(0, flat.size, 2)] = np.inf
    flat[rng.integers(0, flat.size, 1)] = -np.inf
    return to_storage(vals.astype(np.float32), d) if d.is_half else vals.astype(x.dtype)


def test_reduce_to_scalar():
    """Programs of one row each: a 1-D tile reduced to a scalar, stored at a scalar index."""
    text = '''kernel(div16 = [], name = "rs", sizes = [["m", 0, 0], ["k", 0, 1]], unit_strides = []) {
^(%x: tensor<f32>[m, k]):
  %o = alloc(zero = false) : tensor<f32>[m]
  %a = alloc(zero = false) : tensor<i32>[m]
  tile_for(block = 1, dim = 0, extent = e"m", parallel = true) {
  ^(%t: tileidx):
    %r = tile_begin(%t) : i32
    %r1 = expand_dims(%r, axis = 0) : tile<i32>[1]
    %rb = broadcast(%r1) : tile<i32>[64]
    %j = arange(end = 64, start = 0) : tile<i32>[64]
    %v = load(%x, %rb, %j, checked = [false, true], mask = false, other = false) : tile<f32>[64]
    %s = reduce(%v, axis = 0, kind = "sum") : f32
    %am = reduce(%v, axis = 0, kind = "argmin") : i32
    store(%o, %r, %s, checked = [false], mask = false)
    store(%a, %r, %am, checked = [false], mask = false)
    yield()
  }
  return(%o, %a)
}'''
    k = kernel_of(text)
    ck = compile_cpu(k)
    for m, kk in [(1, 1), (5, 64), (9, 50)]:
        check(k, ck, [random_array("f32", (m, kk), _rng("rs", m, kk), specials=False)])


# -- dot, sequential tile loops, 2-D grid ----------------------------------------------------
def _matmul(ta, tc, bm=16, bn=32, bk=8):
    return kernel_of(f'''kernel(div16 = [], name = "mm", sizes = [["m", 0, 0], ["k", 0, 1], ["n", 1, 1]], unit_strides = []) {{
^(%a: tensor<{ta}>[m, k], %b: tensor<{ta}>[k, n]):
  %c = alloc(zero = false) : tensor<{tc}>[m, n]
  tile_for(block = {bm}, dim = 0, extent = e"m", parallel = true) {{
  ^(%tm: tileidx):
    %im = tile_index(%tm) : tile<i32>[{bm}]
    %im2 = expand_dims(%im, axis = 1) : tile<i32>[{bm}, 1]
    tile_for(block = {bn}, dim = 1, extent = e"n", parallel = true) {{
    ^(%tn: tileidx):
      %jn = tile_index(%tn) : tile<i32>[{bn}]
      %jn2 = expand_dims(%jn, axis = 0) : tile<i32>[1, {bn}]
      %acc0 = const(value = 0) : tile<{tc}>[{bm}, {bn}]
      %acc = tile_for(%acc0, block = {bk}, dim = 2, extent = e"k", parallel = false) : tile<{tc}>[{bm}, {bn}] {{
      ^(%tk: tileidx, %c_in: tile<{tc}>[{bm}, {bn}]):
        %kk = tile_index(%tk) : tile<i32>[{bk}]
        %ka = expand_dims(%kk, axis = 0) : tile<i32>[1, {bk}]
        %kab = broadcast(%ka) : tile<i32>[{bm}, {bk}]
        %imb = broadcast(%im2) : tile<i32>[{bm}, {bk}]
        %ta = load(%a, %imb, %kab, checked = [true, true], mask = false, other = false) : tile<{ta}>[{bm}, {bk}]
        %kb = expand_dims(%kk, axis = 1) : tile<i32>[{bk}, 1]
        %kbb = broadcast(%kb) : tile<i32>[{bk}, {bn}]
        %jnb = broadcast(%jn2) : tile<i32>[{bk}, {bn}]
        %tb = load(%b, %kbb, %jnb, checked = [true, true], mask = false, other = false) : tile<{ta}>[{bk}, {bn}]
        %p = dot(%ta, %tb) : tile<{tc}>[{bm}, {bn}]
        %c_out = add(%c_in, %p) : tile<{tc}>[{bm}, {bn}]
        yield(%c_out)
      }}
      %imc = broadcast(%im2) : tile<i32>[{bm}, {bn}]
      %jnc = broadcast(%jn2) : tile<i32>[{bm}, {bn}]
      store(%c, %imc, %jnc, %acc, checked = [true, true], mask = false)
      yield()
    }}
    yield()
  }}
  return(%c)
}}''')


@pytest.mark.parametrize("ta,tc", [("f32", "f32"), ("f16", "f16"), ("f16", "f32"),
                                   ("bf16", "f32"), ("f64", "f64"), ("i32", "i32"),
                                   ("i8", "i32")])
def test_dot(ta, tc):
    k = _matmul(ta, tc)
    ck = compile_cpu(k)
    for m, kk, n in [(1, 1, 1), (17, 20, 33), (40, 9, 70)]:
        rng = _rng("dot", ta, m, kk, n)
        a = random_array(ta, (m, kk), rng, specials=False, scale=1.0)
        b = random_array(ta, (kk, n), rng, specials=False, scale=1.0)
        if ta == "i32":
            a, b = (a % 1000).astype(a.dtype), (b % 1000).astype(b.dtype)
        check(k, ck, [a, b])


# -- memory ------------------------------------------------------------------------------------
def test_gather_masks_other_and_masked_stores():
    body = ["%c3 = const(value = 3) : tile<i32>[64]",
            "%c5 = const(value = 5) : tile<i32>[64]",
            "%c2 = const(value = 2) : tile<i32>[64]",
            "%z = const(value = 0) : tile<i32>[64]",
            "%g0 = mul(%i, %c3) : tile<i32>[64]",
            "%g = sub(%g0, %c5) : tile<i32>[64]",            # out of bounds on both sides
            "%par = mod(%i, %c2) : tile<i32>[64]",
            "%even = eq(%par, %z) : tile<bool>[64]",
            "%oth = const(value = 7.5) : tile<f32>[64]",
            "%v = load(%x0, %g, %even, %oth, checked = [true], mask = true, other = true) : "
            "tile<f32>[64]",
            "%w = load(%x0, %g, checked = [true], mask = false, other = false) : tile<f32>[64]",
            "%fz = const(value = 0.0) : tile<f32>[64]",
            "%pos = gt(%v, %fz) : tile<bool>[64]",
            "store(%o2, %i, %v, %pos, checked = [true], mask = true)",
            "%i2 = mul(%i, %c2) : tile<i32>[64]",
            "store(%o3, %i2, %w, checked = [true], mask = false)"]
    text = elementwise(["f32"], body, [("v", "f32"), ("w", "f32")])
    text = text.replace("%o1 = alloc", "%o2 = alloc(zero = false) : tensor<f32>[n]\n"
                        "  %o3 = alloc(zero = false) : tensor<f32>[n]\n  %o1 = alloc")
    text = text.replace("return(%o0, %o1)", "return(%o0, %o1, %o2, %o3)")
    k = kernel_of(text)
    ck = compile_cpu(k)
    for n in SIZES:
        check(k, ck, [random_array("f32", (n,), _rng("g", n))])


def test_unchecked_loads_and_int64_indices():
    text = '''kernel(div16 = [], name = "u", sizes = [["n", 0, 0]], unit_strides = []) {
^(%x: tensor<i16>[n]):
  %o = alloc(zero = false) : tensor<i16>[n]
  tile_for(block = 1, dim = 0, extent = e"n", parallel = true) {
  ^(%t: tileidx):
    %i = tile_index(%t) : tile<i32>[1]
    %l = cast(%i) : tile<i64>[1]
    %v = load(%x, %l, checked = [false], mask = false, other = false) : tile<i16>[1]
    %w = add(%v, %v) : tile<i16>[1]
    store(%o, %l, %w, checked = [false], mask = false)
    yield()
  }
  return(%o)
}'''
    k = kernel_of(text)
    ck = compile_cpu(k)
    for n in (1, 13):
        check(k, ck, [random_array("i16", (n,), _rng("uc", n))])


_STRIDED = '''kernel(div16 = [], name = "st", sizes = [["m", 0, 0], ["n", 0, 1], ["q", 1, 0]], unit_strides = UNIT) {
^(%x: tensor<f32>[m, n], %y: tensor<f32>[q]):
  %o = alloc(zero = false) : tensor<f32>[m, n]
  tile_for(block = 8, dim = 0, extent = e"m", parallel = true) {
  ^(%tm: tileidx):
    %i = tile_index(%tm) : tile<i32>[8]
    %yr = load(%y, %i, checked = [true], mask = false, other = false) : tile<f32>[8]
    %yr2 = expand_dims(%yr, axis = 1) : tile<f32>[8, 1]
    %i2 = expand_dims(%i, axis = 1) : tile<i32>[8, 1]
    tile_for(block = 16, dim = 1, extent = e"n", parallel = true) {
    ^(%tn: tileidx):
      %j = tile_index(%tn) : tile<i32>[16]
      %j2 = expand_dims(%j, axis = 0) : tile<i32>[1, 16]
      %ib = broadcast(%i2) : tile<i32>[8, 16]
      %jb = broadcast(%j2) : tile<i32>[8, 16]
      %v = load(%x, %ib, %jb, checked = [true, true], mask = false, other = false) : tile<f32>[8, 16]
      %yb = broadcast(%yr2) : tile<f32>[8, 16]
      %two = const(value = 2.0) : tile<f32>[8, 16]
      %v2 = mul(%v, %two) : tile<f32>[8, 16]
      %r = add(%v2, %yb) : tile<f32>[8, 16]
      store(%o, %ib, %jb, %r, checked = [true, true], mask = false)
      yield()
    }
    yield()
  }
  return(%o)
}'''


def test_strided_negative_and_broadcast_inputs():
    k = kernel_of(_STRIDED.replace("UNIT", "[]"))
    ck = compile_cpu(k)
    rng = _rng("st")
    base = random_array("f32", (40, 60), rng)
    y = random_array("f32", (80,), rng)
    views = [base, base[::2, 1::3], base[::-1, ::-1], base.T, base[3:20, ::-2],
             np.broadcast_to(base[0], (33, 60)), base[:0, :5]]
    for x in views:
        for yy in (y[: x.shape[0] + 3], y[::-2], np.broadcast_to(y[:1], (50,))):
            check(k, ck, [x, yy])


def test_unit_stride_specialization():
    k = kernel_of(_STRIDED.replace("UNIT", "[[0, 1], [1, 0]]"))
    ck = compile_cpu(k)
    x = random_array("f32", (19, 35), _rng("us"))
    y = random_array("f32", (19,), _rng("us2"))
    check(k, ck, [x, y])
    with pytest.raises(ValueError, match="unit stride"):
        ck.run([x[:, ::2], y, np.empty((19, 18), np.float32)])


@pytest.mark.parametrize("short", ["i32", "i64", "u8", "f32", "f64", "f16", "bf16", "bool"])
def test_atomic_add(short):
    """A histogram over 8 bins from many programs (on several threads), plus old values from
    two atomic adds to the same element in a row."""
    text = f'''kernel(div16 = [], name = "h", sizes = [["n", 0, 0]], unit_strides = []) {{
^(%x: tensor<{short}>[n]):
  %h = alloc(zero = true) : tensor<{short}>[8]
  %acc = alloc(zero = true) : tensor<{short}>[n]
  %old = alloc(zero = false) : tensor<{short}>[n]
  tile_for(block = 64, dim = 0, extent = e"n", parallel = true) {{
  ^(%t: tileidx):
    %i = tile_index(%t) : tile<i32>[64]
    %c8 = const(value = 8) : tile<i32>[64]
    %bin = mod(%i, %c8) : tile<i32>[64]
    %nn = symval(expr = e"n") : i32
    %n1 = expand_dims(%nn, axis = 0) : tile<i32>[1]
    %nb = broadcast(%n1) : tile<i32>[64]
    %in = lt(%i, %nb) : tile<bool>[64]
    %v = load(%x, %i, checked = [true], mask = false, other = false) : tile<{short}>[64]
    %o1 = atomic_add(%h, %bin, %v, %in, checked = [false], mask = true) : tile<{short}>[64]
    %o2 = atomic_add(%acc, %i, %v, checked = [true], mask = false) : tile<{short}>[64]
    %o3 = atomic_add(%acc, %i, %v, checked = [true], mask = false) : tile<{short}>[64]
    store(%old, %i, %o3, checked = [true], mask = false)
    yield()
  }}
  return(%h, %acc, %old)
}}'''
    k = kernel_of(text)
    ck = compile_cpu(k)
    for n in (1, 100, 1 << 17):
        x = random_array(short, (n,), _rng("atom", short, n), specials=False, scale=1.0)
        d = DTYPES[short]
        if d.is_float:          # quarters: the sums are exact whatever the order of adds
            x = to_storage(np.round(to_compute(x, d).astype(np.float64) * 4) / 4, d)
        if d.is_half and n > 1000:
            continue            # sums too large to stay exact in 8/11 bits
        check(k, ck, [x])


# -- control flow --------------------------------------------------------------------------
_CONTROL = '''kernel(div16 = [], name = "cf", sizes = [["n", 0, 0]], unit_strides = []) {
^(%x: tensor<f32>[n], %iters: i64, %flag: i32):
  %o1 = alloc(zero = false) : tensor<f32>[n]
  %o2 = alloc(zero = false) : tensor<i64>[n]
  %o3 = alloc(zero = false) : tensor<f32>[n]
  %o4 = alloc(zero = false) : tensor<f32>[n]
  %o5 = alloc(zero = false) : tensor<i32>[n]
  %zero64 = const(value = 0) : i64
  %one64 = const(value = 1) : i64
  tile_for(block = 32, dim = 0, extent = e"n", parallel = true) {
  ^(%t: tileidx):
    %i = tile_index(%t) : tile<i32>[32]
    %a = load(%x, %i, checked = [true], mask = false, other = false) : tile<f32>[32]
    %c0 = const(value = 0.0) : tile<f32>[32]
    %r, %cnt = for(%zero64, %iters, %one64, %c0, %zero64) : tile<f32>[32], i64 {
    ^(%k: i64, %acc: tile<f32>[32], %c: i64):
      %kf = cast(%k) : f32
      %kf1 = expand_dims(%kf, axis = 0) : tile<f32>[1]
      %kfb = broadcast(%kf1) : tile<f32>[32]
      %half = const(value = 0.5) : tile<f32>[32]
      %t1 = mul(%acc, %half) : tile<f32>[32]
      %t2 = mul(%a, %kfb) : tile<f32>[32]
      %acc2 = add(%t1, %t2) : tile<f32>[32]
      %c2 = add(%c, %k) : i64
      yield(%acc2, %c2)
    }
    store(%o1, %i, %r, checked = [true], mask = false)
    %p = tile_begin(%t) : i32
    store(%o2, %p, %cnt, checked = [true], mask = false)
    %z32 = const(value = 0) : i32
    %pos = gt(%flag, %z32) : bool
    %y, %ys = if(%pos) : tile<f32>[32], i32 {
      %two = const(value = 2.0) : tile<f32>[32]
      %m2 = mul(%a, %two) : tile<f32>[32]
      yield(%m2, %flag)
    } {
      %one = const(value = 1.0) : tile<f32>[32]
      %p1 = add(%a, %one) : tile<f32>[32]
      yield(%p1, %z32)
    }
    store(%o3, %i, %y, checked = [true], mask = false)
    %f0 = const(value = 1.0) : tile<f32>[32]
    %fa, %fb = tile_for(%f0, %a, block = 1, dim = 1, extent = 5, parallel = false) : tile<f32>[32], tile<f32>[32] {
    ^(%tk: tileidx, %u: tile<f32>[32], %w: tile<f32>[32]):
      %s = add(%u, %w) : tile<f32>[32]
      yield(%w, %s)
    }
    %fsum = add(%fa, %fb) : tile<f32>[32]
    store(%o4, %i, %fsum, checked = [true], mask = false)
    %hi = symval(expr = e"n") : i32
    %m1 = const(value = -3) : i32
    %down = for(%hi, %z32, %m1, %z32) : i32 {
    ^(%q: i32, %d: i32):
      %d2 = add(%d, %q) : i32
      yield(%d2)
    }
    %d1 = expand_dims(%down, axis = 0) : tile<i32>[1]
    %db = broadcast(%d1) : tile<i32>[32]
    %dys = expand_dims(%ys, axis = 0) : tile<i32>[1]
    %dysb = broadcast(%dys) : tile<i32>[32]
    %dd = add(%db, %dysb) : tile<i32>[32]
    store(%o5, %i, %dd, checked = [true], mask = false)
    yield()
  }
  return(%o1, %o2, %o3, %o4, %o5)
}'''


def test_for_if_and_sequential_tile_for():
    k = kernel_of(_CONTROL)
    ck = compile_cpu(k)
    for n in SIZES:
        x = random_array("f32", (n,), _rng("cf", n), specials=False)
        for iters, flag in [(0, 1), (3, -4), (7, 0)]:
            check(k, ck, [x, iters, flag])


def test_sequential_row_loop_with_reduce_per_chunk():
    """Row sums over column chunks: a sequential tile_for carrying a tile accumulator."""
    text = '''kernel(div16 = [], name = "rows", sizes = [["m", 0, 0], ["k", 0, 1]], unit_strides = [[0, 1]]) {
^(%x: tensor<f32>[m, k]):
  %o = alloc(zero = false) : tensor<f32>[m]
  tile_for(block = 4, dim = 0, extent = e"m", parallel = true) {
  ^(%tm: tileidx):
    %i = tile_index(%tm) : tile<i32>[4]
    %i2 = expand_dims(%i, axis = 1) : tile<i32>[4, 1]
    %ib = broadcast(%i2) : tile<i32>[4, 16]
    %z = const(value = 0.0) : tile<f32>[4]
    %acc = tile_for(%z, block = 16, dim = 1, extent = e"k", parallel = false) : tile<f32>[4] {
    ^(%tk: tileidx, %a: tile<f32>[4]):
      %j = tile_index(%tk) : tile<i32>[16]
      %j2 = expand_dims(%j, axis = 0) : tile<i32>[1, 16]
      %jb = broadcast(%j2) : tile<i32>[4, 16]
      %v = load(%x, %ib, %jb, checked = [true, true], mask = false, other = false) : tile<f32>[4, 16]
      %s = reduce(%v, axis = 1, kind = "sum") : tile<f32>[4]
      %a2 = add(%a, %s) : tile<f32>[4]
      yield(%a2)
    }
    store(%o, %i, %acc, checked = [true], mask = false)
    yield()
  }
  return(%o)
}'''
    k = kernel_of(text)
    ck = compile_cpu(k)
    for m, kk in [(1, 1), (9, 40), (30, 100)]:
        check(k, ck, [random_array("f32", (m, kk), _rng("rows", m, kk), specials=False)])


def test_permute_and_broadcast_views():
    """out[i, j] = where(xT[j, i] > 0, xT[j, i], y[j]) with a permuted tile."""
    text = '''kernel(div16 = [], name = "perm", sizes = [["n", 0, 0], ["m", 0, 1]], unit_strides = []) {
^(%xt: tensor<f64>[n, m], %y: tensor<f64>[n]):
  %o = alloc(zero = false) : tensor<f64>[m, n]
  tile_for(block = 8, dim = 0, extent = e"m", parallel = true) {
  ^(%tm: tileidx):
    %i = tile_index(%tm) : tile<i32>[8]
    %j = arange(end = 16, start = 0) : tile<i32>[16]
    %jt = expand_dims(%j, axis = 1) : tile<i32>[16, 1]
    %jtb = broadcast(%jt) : tile<i32>[16, 8]
    %it = expand_dims(%i, axis = 0) : tile<i32>[1, 8]
    %itb = broadcast(%it) : tile<i32>[16, 8]
    %vt = load(%xt, %jtb, %itb, checked = [true, true], mask = false, other = false) : tile<f64>[16, 8]
    %v = permute(%vt, perm = [1, 0]) : tile<f64>[8, 16]
    %yj = load(%y, %j, checked = [true], mask = false, other = false) : tile<f64>[16]
    %y2 = expand_dims(%yj, axis = 0) : tile<f64>[1, 16]
    %yb = broadcast(%y2) : tile<f64>[8, 16]
    %z = const(value = 0.0) : tile<f64>[8, 16]
    %pos = gt(%v, %z) : tile<bool>[8, 16]
    %r = where(%pos, %v, %yb) : tile<f64>[8, 16]
    %e = exp(%r) : tile<f64>[8, 16]
    %i2 = expand_dims(%i, axis = 1) : tile<i32>[8, 1]
    %ib = broadcast(%i2) : tile<i32>[8, 16]
    %jb = broadcast(%y2) : tile<f64>[8, 16]
    %j2 = expand_dims(%j, axis = 0) : tile<i32>[1, 16]
    %jjb = broadcast(%j2) : tile<i32>[8, 16]
    store(%o, %ib, %jjb, %e, checked = [true, true], mask = false)
    yield()
  }
  return(%o)
}'''
    k = kernel_of(text)
    ck = compile_cpu(k)
    for n, m in [(16, 8), (11, 21), (3, 1)]:
        rng = _rng("perm", n, m)
        check(k, ck, [random_array("f64", (n, m), rng, specials=False),
                      random_array("f64", (n,), rng, specials=False)])


def test_in_place_update_of_a_param():
    """x[i + 1] = x[i] * 2 inside one program: the whole tile is loaded before the store."""
    text = '''kernel(div16 = [], name = "inplace", sizes = [["n", 0, 0]], unit_strides = []) {
^(%x: tensor<i32>[n]):
  tile_for(block = 128, dim = 0, extent = e"n", parallel = true) {
  ^(%t: tileidx):
    %i = tile_index(%t) : tile<i32>[128]
    %one = const(value = 1) : tile<i32>[128]
    %j = add(%i, %one) : tile<i32>[128]
    %v = load(%x, %i, checked = [true], mask = false, other = false) : tile<i32>[128]
    %two = const(value = 2) : tile<i32>[128]
    %w = mul(%v, %two) : tile<i32>[128]
    store(%x, %j, %w, checked = [true], mask = false)
    yield()
  }
  return()
}'''
    k = kernel_of(text)
    ck = compile_cpu(k)
    check(k, ck, [np.arange(100, dtype=np.int32)])


# -- kernels as the frontend writes them -----------------------------------------------------
_SOFTMAX = '''kernel(div16 = [], name = "softmax", sizes = [["x_s0", 0, 0], ["x_s1", 0, 1]], unit_strides = [[0, 1]]) {
^(%x: tensor<f32>[x_s0, x_s1]):
  %out = alloc(zero = false) : tensor<f32>[x_s0, x_s1]
  tile_for(block = 4, dim = 0, extent = e"x_s0", parallel = true) {
  ^(%tm: tileidx):
    %i = tile_index(%tm) : tile<i32>[4]
    %i2 = expand_dims(%i, axis = 1) : tile<i32>[4, 1]
    %i3 = broadcast(%i2) : tile<i32>[4, 128]
    %j = arange(end = 128, start = 0) : tile<i32>[128]
    %j2 = expand_dims(%j, axis = 0) : tile<i32>[1, 128]
    %j3 = broadcast(%j2) : tile<i32>[4, 128]
    %row = load(%x, %i3, %j3, checked = [true, true], mask = false, other = false) : tile<f32>[4, 128]
    %n = symval(expr = e"x_s1") : i32
    %n2 = expand_dims(%n, axis = 0) : tile<i32>[1]
    %n3 = expand_dims(%n2, axis = 0) : tile<i32>[1, 1]
    %nb = broadcast(%n3) : tile<i32>[4, 128]
    %mask = lt(%j3, %nb) : tile<bool>[4, 128]
    %ninf = const(value = -inf) : tile<f32>[4, 128]
    %masked = where(%mask, %row, %ninf) : tile<f32>[4, 128]
    %m = reduce(%masked, axis = 1, kind = "max") : tile<f32>[4]
    %m2 = expand_dims(%m, axis = 1) : tile<f32>[4, 1]
    %mb = broadcast(%m2) : tile<f32>[4, 128]
    %d = sub(%row, %mb) : tile<f32>[4, 128]
    %e = exp(%d) : tile<f32>[4, 128]
    %zero = const(value = 0.0) : tile<f32>[4, 128]
    %em = where(%mask, %e, %zero) : tile<f32>[4, 128]
    %s = reduce(%em, axis = 1, kind = "sum") : tile<f32>[4]
    %s2 = expand_dims(%s, axis = 1) : tile<f32>[4, 1]
    %sb = broadcast(%s2) : tile<f32>[4, 128]
    %val = div(%e, %sb) : tile<f32>[4, 128]
    store(%out, %i3, %j3, %val, checked = [true, true], mask = false)
    yield()
  }
  return(%out)
}'''


@pytest.mark.parametrize("width,block", [(128, 4), (1024, 8)])
def test_softmax(width, block):
    """The second case's tiles (32 KiB) live in the scratch arena, and its programs run on
    the thread pool."""
    k = kernel_of(_SOFTMAX.replace("128", str(width)).replace("[4", f"[{block}")
                  .replace("block = 4", f"block = {block}"))
    ck = compile_cpu(k)
    for m, n in [(1, 1), (7, 100), (13, width), (300, width - 5)]:
        x = random_array("f32", (m, n), _rng("sm", m, n), specials=False)
        check(k, ck, [x])
        got = outputs_for(k, [x])
        ck.run([x] + got)
        want = np.exp(x - x.max(1, keepdims=True))
        np.testing.assert_allclose(got[0], want / want.sum(1, keepdims=True), rtol=1e-5)


def test_a_load_with_several_consumers_is_read_again_on_the_cpu():
    """The CPU plan reads a tile again in each consumer of its block (it is still in the
    cache) instead of copying it into a buffer first, masked lanes (a guarded row read by
    a row reduction) included; the GPU plan keeps the buffer."""
    from fusec.backends.llvm.plan import Plan
    row_load = ("%row = load(%x, %i3, %j3, checked = [true, true], mask = false, "
                "other = false)")
    assert row_load in _SOFTMAX
    k = kernel_of(_SOFTMAX.replace(row_load, row_load.replace("[true, true]",
                                                              "[false, false]")))
    (row,) = [op.results[0] for op in k.walk() if op.name == "load"]
    assert row in Plan(k).materialized and row not in Plan(k, reload=True).materialized
    guarded = kernel_of(_SOFTMAX)
    (grow,) = [op.results[0] for op in guarded.walk() if op.name == "load"]
    assert grow not in Plan(guarded, reload=True).materialized
    x = random_array("f32", (8, 128), _rng("reload"), specials=False)
    check(k, compile_cpu(k), [x])
    for m, n in [(8, 128), (5, 100)]:                 # masked lanes: 100 of 128
        x = random_array("f32", (m, n), _rng("reload", m, n), specials=False)
        check(guarded, compile_cpu(guarded), [x])


def test_bias_gelu_large_runs_on_threads():
    text = elementwise(["f32", "f32"], ["%s = add(%a0, %a1) : tile<f32>[256]",
                                        "%r = gelu(%s) : tile<f32>[256]"], [("r", "f32")],
                       block=256)
    k = kernel_of(text)
    ck = compile_cpu(k)
    rng = _rng("bg")
    n = (1 << 18) + 3
    check(k, ck, [random_array("f32", (n,), rng), random_array("f32", (n,), rng)])


# -- code quality, errors ----------------------------------------------------------------------
@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="x86 SIMD check")
def test_contiguous_elementwise_is_vectorized():
    text = elementwise(["f32", "f32"], ["%s = mul(%a0, %a1) : tile<f32>[256]",
                                        "%r = exp(%s) : tile<f32>[256]"], [("r", "f32")],
                       block=256)
    ck = compile_cpu(kernel_of(text))
    assert set(ck.asm) >= {"llvm", "llvm-opt", "asm"}
    body = ck.asm["asm"].split("fusec_k_0:")[1].split(".Lfunc_end")[0]
    assert re.search(r"vmulps\s[^\n]*%[yz]mm", body), "no SIMD multiply"
    assert re.search(r"vfmadd\w+\s[^\n]*%[yz]mm", body), "exp polynomial not vectorized"
    assert "call" not in body, "a call in the loop blocks vectorization"
    assert re.search(r"<(8|16) x float>", ck.asm["llvm-opt"])


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="x86 SIMD check")
@pytest.mark.parametrize("kind", ["max", "sum"])
def test_row_reductions_read_rows_with_contiguous_vector_loads(kind):
    """The lanes of an innermost-axis reduction are what becomes SIMD: the loop over
    chunks stays scalar (vectorized across chunks, a max read every element with a
    strided gather)."""
    fusec = pytest.importorskip("fusec")
    import fusec.language as fl  # noqa: F401

    def rows(x):
        return x.max(axis=1) if kind == "max" else x.sum(axis=1)
    ck = fusec.kernel(rows, static_shapes=True).compile(
        np.zeros((64, 1024), np.float32), backend="cpu")
    assert "gather" not in ck.asm["llvm-opt"]
    x = np.random.default_rng(3).standard_normal((64, 1024)).astype(np.float32)
    x[7, 100] = np.nan
    want = x.max(axis=1) if kind == "max" else x.astype(np.float64).sum(axis=1)
    np.testing.assert_allclose(ck(x), want.astype(np.float32), rtol=1e-6)


def test_top_level_writes_run_as_one_program():
    text = '''kernel(div16 = [], name = "serial", sizes = [["n", 0, 0]], unit_strides = []) {
^(%x: tensor<f32>[n]):
  %z = const(value = 0) : i32
  %v = load(%x, %z, checked = [true], mask = false, other = false) : f32
  %two = const(value = 2.0) : f32
  %w = mul(%v, %two) : f32
  store(%x, %z, %w, checked = [true], mask = false)
  tile_for(block = 4, dim = 0, extent = e"n", parallel = true) {
  ^(%t: tileidx):
    %i = tile_index(%t) : tile<i32>[4]
    %a = load(%x, %i, checked = [true], mask = false, other = false) : tile<f32>[4]
    %b = add(%a, %a) : tile<f32>[4]
    store(%x, %i, %b, checked = [true], mask = false)
    yield()
  }
  %one = const(value = 1) : i32
  %u = load(%x, %one, checked = [true], mask = false, other = false) : f32
  %old = atomic_add(%x, %z, %u, checked = [true], mask = false) : f32
  return()
}'''
    k = kernel_of(text)
    ck = compile_cpu(k)
    assert ck.num_launches == 3
    for n in (1, 2, 10):
        check(k, ck, [random_array("f32", (n,), _rng("serial", n), specials=False)])


def test_unsupported_construct_names_the_op():
    text = '''kernel(div16 = [], name = "bad", sizes = [["n", 0, 0]], unit_strides = []) {
^(%x: tensor<f32>[n]):
  tile_for(block = 4, dim = 0, extent = e"n", parallel = true) {
  ^(%t: tileidx):
    %i = tile_index(%t) : tile<i32>[4]
    %v = const(value = 1.0) : tile<f32>[4]
    %old = atomic_add(%x, %i, %v, checked = [true], mask = false) : tile<f32>[4]
    tile_for(block = 4, dim = 1, extent = e"n", parallel = true) {
    ^(%t2: tileidx):
      yield()
    }
    yield()
  }
  return()
}'''
    with pytest.raises(NotImplementedError, match="atomic_add"):
        compile_cpu(kernel_of(text))
    bool_neg = elementwise(["bool"], ["%r = neg(%a0) : tile<bool>[64]"], [("r", "bool")])
    with pytest.raises(NotImplementedError, match="'neg' is not defined on bool"):
        compile_cpu(kernel_of(bool_neg))


def test_argument_errors():
    k = kernel_of(elementwise(["f32"], ["%r = neg(%a0) : tile<f32>[64]"], [("r", "f32")]))
    ck = compile_cpu(k)
    x = np.zeros(10, np.float32)
    with pytest.raises(TypeError, match="argument 0"):
        ck.run([x.astype(np.float64), np.zeros(10, np.float32)])
    with pytest.raises(TypeError, match="takes 2 arguments"):
        ck.run([x])
    with pytest.raises(ValueError, match="rank"):
        ck.run([x.reshape(2, 5), np.zeros(10, np.float32)])


def test_empty_and_no_nest():
    k = kernel_of(elementwise(["f32"], ["%r = neg(%a0) : tile<f32>[64]"], [("r", "f32")]))
    ck = compile_cpu(k)
    ck.run([np.zeros(0, np.float32), np.zeros(0, np.float32)])
    no_nest = kernel_of('''kernel(div16 = [], name = "none", sizes = [], unit_strides = []) {
^(%x: tensor<f32>[4]):
  %o = alloc(zero = false) : tensor<f32>[4]
  return(%o)
}''')
    compile_cpu(no_nest).run([np.zeros(4, np.float32), np.zeros(4, np.float32)])


def test_packed_arguments_are_reused_per_geometry_and_checked_anew():
    """ArgLayout.pack keeps one packed template per argument geometry and scalar values:
    calls alternating between geometries and scalars each get their own sizes, grid and
    scalar slots; an argument no geometry allows is still refused."""
    k = kernel_of(elementwise(["f32"], ["%s1 = expand_dims(%s, axis = 0) : tile<f32>[1]",
                                         "%st = broadcast(%s1) : tile<f32>[64]",
                                         "%r = mul(%a0, %st) : tile<f32>[64]"],
                              [("r", "f32")], scalars=[("s", "f32")]))
    ck = compile_cpu(k)
    rng = np.random.default_rng(3)
    for n, scale in [(100, 2.0), (37, 2.0), (100, -0.0), (100, 0.5), (37, 2.0)]:
        x = rng.standard_normal(n).astype(np.float32)
        out = np.full(n, np.nan, np.float32)
        ck.run([x, scale, out])
        np.testing.assert_array_equal(out, x * np.float32(scale))
        assert np.signbit(out).tolist() == np.signbit(x * np.float32(scale)).tolist()
    strided = np.zeros(200, np.float32)[::2]
    with pytest.raises(ValueError, match="contiguous"):
        ck.run([np.ones(100, np.float32), 1.0, strided])
