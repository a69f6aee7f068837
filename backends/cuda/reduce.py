"""reduce: sum / max / min / argmax / argmin of a tile along one axis, cooperatively: a
group of G threads (a power of two) per output element, each lane accumulating a strided
share of the reduced axis -- in Lane groups of up to 8 consecutive elements when it is the
last axis, so the loads under it are vector loads -- then the lanes' partials combined with
warp shuffles (xor butterfly) and, for groups wider than a warp, through shared memory.
G spreads the block's threads over the outputs: one warp per row for a few rows, the whole
block for one row, one thread per output when there are more outputs than threads.

Semantics (the interpreter's): sums of ints give int64 (wrapping); float sums accumulate in
double and round once to the result type (as the interpreter's float64 sum; in float32
under fast_math); max/min
propagate NaN; argmax/argmin give the int32 index of the first extreme, a NaN counting as
the extreme.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

from ...ir import dtypes as D
from ...ir.core import Op
from ...ir.dtypes import DType
from ...ir.symbolic import next_pow2
from . import arith
from .types import MATH_TYPE, compute, float_literal, int_limits, int_literal
from ..residency import UNROLL_MAX
from .values import Lane, numel


@dataclass
class Spec:
    """A reduction as C text: accumulators (type, initial value), the update statement of
    one element and the final value. {a}, {i}: accumulator names; {x}: the element;
    {k}: its index on the reduced axis."""
    accs: list                   # [(C type, initial value)]
    step: str
    finish: str
    combine: str                 # merges partial {b}/{j} into {a}/{i} (same order of terms)
    # a float sum of a Lane group first adds its (at most 8) elements in float: (C type,
    # initial value, step into {p}, merge of {p} into {a}); 8x fewer double conversions
    group_partial: tuple | None = None


def _extreme(d: DType, high: bool) -> str:
    """The identity of max (high=False) / min (high=True) for dtype d."""
    if d.is_float:
        return float_literal(float("inf") if high else float("-inf"), MATH_TYPE[d])
    if d.is_bool:
        return "true" if high else "false"
    lo, hi = int_limits(d)
    return int_literal(d, hi if high else lo)


def spec(kind: str, d: DType, out: DType, fast: bool = False) -> Spec:
    """fast (the kernel's fast_math): float32/half sums accumulate in float32, as Triton's
    do (the double accumulator's conversions and 2-register shuffles cost a softmax
    backward about a tenth of its instructions)."""
    cty = compute(d)
    if kind == "sum" and d.is_float and fast and cty == "float":
        return Spec([("float", "0.0f")], "{a} += {x};", arith.cast(D.float32, out, "{a}"),
                    "{a} += {b};")
    if kind == "sum" and d.is_float:
        partial = None if cty == "double" else ("float", "0.0f", "{p} += {x};",
                                                "{a} += (double){p};")
        return Spec([("double", "0.0")], "{a} += (double){x};",
                    arith.cast(D.float64, out, "{a}"), "{a} += {b};", partial)
    if kind == "prod" and d.is_float:     # in double, rounded once (as the sum)
        return Spec([("double", "1.0")], "{a} *= (double){x};",
                    arith.cast(D.float64, out, "{a}"), "{a} *= {b};")
    if kind in ("sum", "prod"):   # bool and ints: int64, wrapping in its unsigned twin
        update, ident = ("+=", "0ULL") if kind == "sum" else ("*=", "1ULL")
        return Spec([("unsigned long long", ident)],
                    f"{{a}} {update} (unsigned long long){{x}};", "(long long){a}",
                    f"{{a}} {update} {{b}};")
    if kind in ("max", "min"):
        if d.is_float:
            fn = "fc_fmax" if kind == "max" else "fc_fmin"
            step = f"{{a}} = {fn}({{x}}, {{a}});"
        elif d.is_bool:
            step = "{a} = {a} || {x};" if kind == "max" else "{a} = {a} && {x};"
        else:
            step = f"if ({{x}} {'>' if kind == 'max' else '<'} {{a}}) {{a}} = {{x}};"
        return Spec([(cty, _extreme(d, kind == "min"))], step, "{a}",
                    step.replace("{x}", "{b}"))
    if kind in ("argmax", "argmin"):
        cmp = ">" if kind == "argmax" else "<"
        better = f"{{x}} {cmp} {{a}}"
        # a partial wins when better, or as good and earlier (the first extreme wins)
        wins = f"({{b}} {cmp} {{a}}) || ({{b}} == {{a}} && {{j}} < {{i}})"
        if d.is_float:           # strictly better, or the first NaN
            better = f"({better}) || ({{x}} != {{x}} && {{a}} == {{a}})"
            wins = (f"({{b}} != {{b}}) ? ({{a}} == {{a}} || {{j}} < {{i}}) : "
                    f"({{a}} == {{a}} && ({wins}))")
        return Spec([(cty, _extreme(d, kind == "argmin")), ("int", "0")],
                    f"if ({better}) {{{{ {{a}} = {{x}}; {{i}} = {{k}}; }}}}", "{i}",
                    f"if ({wins}) {{{{ {{a}} = {{b}}; {{i}} = {{j}}; }}}}")
    raise NotImplementedError(f"cuda backend: reduce kind {kind!r}")


# shuffles move 32/64-bit values: narrower accumulators travel as int
SHUFFLE_AS = {"bool": "int", "signed char": "int", "unsigned char": "unsigned int",
               "short": "int"}


def _prev_pow2(n: int) -> int:
    return 1 << (max(n, 1).bit_length() - 1)


def reduce(E, op: Op):
    x = op.operands[0]
    kind, axis = op.attrs["kind"], op.attrs["axis"]
    res = op.results[0]
    s = spec(kind, x.type.dtype, res.type.dtype, E.fast_math)
    n = x.type.shape[axis]
    outs = numel(res.type.shape)
    nt = E.nthreads
    out = E.new_buffer(res.type.dtype, res.type.shape, base=res.name or kind)
    if axis == x.type.rank - 1:
        # the strided loops' own grouping of this shape (residency.py relies on it)
        width = E.lane_width(tuple(x.type.shape))
        g = min(nt, _prev_pow2(n // width))
    else:
        width = 1
        g = min(max(1, nt // next_pow2(outs)), next_pow2(n))
    per_block = nt // g
    n_groups = n // width
    passes, rounds = -(-outs // per_block), -(-n_groups // g)
    unrolled = passes * rounds <= UNROLL_MAX
    warps = nt // 32
    # groups wider than a warp meet through shared memory: unrolled, every pass leaves its
    # warps' partials in a slice of its own and one barrier serves them all (a softmax over
    # rows of 512 had two barriers per row and reduction)
    slices = passes if unrolled else 1
    parts = [E.new_buffer(None, (slices * warps,), ty, base="part")
             for ty, _ in s.accs] if g > 32 else []
    if E.need_sync:
        E.sync()
    E.in_loop += 1

    def output(ob: str):
        """(output index, lane in its group, liveness) of this thread in the pass at ob."""
        o = E.declare("int", ob if g == nt else f"{ob} + (int)threadIdx.x / {g}", "o",
                      force=True)
        lane = E.declare("int", "0" if g == 1 else f"(int)threadIdx.x % {g}", "l", force=True)
        live = None if outs % per_block == 0 else E.declare("bool", f"{o} < {outs}", "live",
                                                              force=True)
        return o, lane, live

    def one_pass(ob: str, q: int | None, batched: bool = False):
        o, lane, live = output(ob)
        accs = [E.declare(ty, init, "acc" if j == 0 else "arg", mutable=True)
                for j, (ty, init) in enumerate(s.accs)]
        fill = {"a": accs[0], "i": accs[-1]}
        oidx = E.unflatten(o, res.type.shape)

        def accumulate(kg: str, i: int | None):
            k0 = E.declare("int", f"{kg} * {width}", "k", force=True)
            group = [oidx[:axis] + ((Lane(k0, j, width) if width > 1 else k0),) + oidx[axis:]
                     for j in range(width)]
            if q is not None:      # the slot the strided loops give this thread's group
                E.slot = (q * per_block * n_groups + i * g) // nt
                E.slot_group = group
            if s.group_partial and width > 1:
                ty, init, step, merge = s.group_partial
                p = E.declare(ty, init, "part", mutable=True)
                for idx in group:
                    E.line(step.format(p=p, x=E.elem(x, idx)))
                E.line(merge.format(p=p, **fill))
            else:
                for idx in group:
                    k = idx[axis]
                    E.line(s.step.format(x=E.elem(x, idx), k=str(k), **fill))
            E.slot = E.slot_group = None

        with E.block(f"if ({live})") if live else contextlib.nullcontext():
            if q is not None:
                for i in range(rounds):
                    with E.block(f"/* round {i} */"):
                        kg = E.declare("int", f"{lane} + {i * g}", "kg", force=True)
                        with E.block(f"if ({kg} < {n_groups})") if (i + 1) * g > n_groups \
                                else contextlib.nullcontext():
                            accumulate(kg, i)
            else:
                kg = E.fresh("kg")
                with E.block(f"for (int {kg} = {lane}; {kg} < {n_groups}; {kg} += {g})"):
                    accumulate(kg, None)
        _combine_warp(E, s, accs, fill, min(g, 32))
        if batched:
            _leave_partials(E, accs, parts, lane, (q or 0) * warps)
            return
        done = f"{lane} == 0" + (f" && {live}" if live else "")
        if parts:
            _leave_partials(E, accs, parts, lane, 0)
            E.sync()
            _combine_partials(E, s, parts, g, done, 0, oidx, out)
            E.sync()       # the partials are read before the next pass overwrites them
            return
        with E.block(f"if ({done})"):
            E.line(f"{out.at(oidx)} = {s.finish.format(**fill)};")

    if unrolled and parts:
        for q in range(passes):
            with E.block(f"/* pass {q} */"):
                one_pass(str(q * per_block), q, batched=True)
        E.sync()
        for q in range(passes):
            with E.block(f"/* pass {q}: its warps' partials */"):
                o, lane, live = output(str(q * per_block))
                done = f"{lane} == 0" + (f" && {live}" if live else "")
                _combine_partials(E, s, parts, g, done, q * warps,
                                  E.unflatten(o, res.type.shape), out)
    elif unrolled:
        for q in range(passes):
            with E.block(f"/* pass {q} */"):
                one_pass(str(q * per_block), q)
    else:
        ob = E.fresh("ob")
        with E.block(f"for (int {ob} = 0; {ob} < {outs}; {ob} += {per_block})"):
            one_pass(ob, None)
    E.in_loop -= 1
    E.sync()
    E.env[res] = out if res.type.shape else E.scalar_from(out)


def _combine_warp(E, s: Spec, accs: list, fill: dict, width: int) -> None:
    """Butterfly over `width` lanes (a power of two <= 32): every lane ends with the
    combination of all of them."""
    off = width // 2
    while off >= 1:
        others = []
        for (ty, _), a in zip(s.accs, accs):
            via = SHUFFLE_AS.get(ty, ty)
            others.append(E.declare(ty, f"({ty})__shfl_xor_sync(0xffffffffu, ({via}){a}, "
                                        f"{off})", "other", force=True))
        E.line(s.combine.format(b=others[0], j=others[-1], **fill))
        off //= 2


def _leave_partials(E, accs: list, parts: list, lane: str, base: int) -> None:
    """Groups wider than a warp: each warp's partial (after _combine_warp) into shared
    memory at base + its warp."""
    with E.block(f"if ({lane} % 32 == 0)"):
        for part, a in zip(parts, accs):
            E.line(f"{part.name}[{base} + threadIdx.x / 32] = {a};")


def _combine_partials(E, s: Spec, parts: list, g: int, done: str, base: int, oidx,
                      out) -> None:
    """After a barrier: the group's first thread combines its warps' partials (its own
    first, in warp order) and writes the result."""
    with E.block(f"if ({done})"):
        accs = [E.declare(ty, f"{part.name}[{base} + threadIdx.x / 32]", "acc", mutable=True)
                for (ty, _), part in zip(s.accs, parts)]
        fill = {"a": accs[0], "i": accs[-1]}
        w = E.fresh("w")
        with E.block(f"for (int {w} = 1; {w} < {g // 32}; ++{w})"):
            others = [E.declare(ty, f"{part.name}[{base} + threadIdx.x / 32 + {w}]", "other",
                                force=True) for (ty, _), part in zip(s.accs, parts)]
            E.line(s.combine.format(b=others[0], j=others[-1], **fill))
        E.line(f"{out.at(oidx)} = {s.finish.format(**fill)};")

