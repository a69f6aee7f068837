"""reduce: sum / max / min / argmax / argmin of a tile along one axis. Each output element
is computed by one thread looping over the reduced axis (correct first; warp shuffles
later).

Semantics (the interpreter's): sums of ints give int64 (wrapping); float sums accumulate in
double and round once to the result type (as the interpreter's float64 sum); max/min
propagate NaN; argmax/argmin give the int32 index of the first extreme, a NaN counting as
the extreme.
"""
from __future__ import annotations

from dataclasses import dataclass

from ...ir import dtypes as D
from ...ir.core import Op
from ...ir.dtypes import DType
from . import arith
from .types import MATH_TYPE, compute, float_literal, int_limits, int_literal


@dataclass
class Spec:
    """A reduction as C text: accumulators (type, initial value), the update statement of
    one element and the final value. {a}, {i}: accumulator names; {x}: the element;
    {k}: its index on the reduced axis."""
    accs: list                   # [(C type, initial value)]
    step: str
    finish: str


def _extreme(d: DType, high: bool) -> str:
    """The identity of max (high=False) / min (high=True) for dtype d."""
    if d.is_float:
        return float_literal(float("inf") if high else float("-inf"), MATH_TYPE[d])
    if d.is_bool:
        return "true" if high else "false"
    lo, hi = int_limits(d)
    return int_literal(d, hi if high else lo)


def spec(kind: str, d: DType, out: DType) -> Spec:
    cty = compute(d)
    if kind == "sum" and d.is_float:
        return Spec([("double", "0.0")], "{a} += (double){x};",
                    arith.cast(D.float64, out, "{a}"))
    if kind == "sum":       # bool and ints: int64, wrapping in its unsigned twin
        return Spec([("unsigned long long", "0ULL")], "{a} += (unsigned long long){x};",
                    "(long long){a}")
    if kind in ("max", "min"):
        if d.is_float:
            fn = "fc_fmax" if kind == "max" else "fc_fmin"
            step = f"{{a}} = {fn}({{x}}, {{a}});"
        elif d.is_bool:
            step = "{a} = {a} || {x};" if kind == "max" else "{a} = {a} && {x};"
        else:
            step = f"if ({{x}} {'>' if kind == 'max' else '<'} {{a}}) {{a}} = {{x}};"
        return Spec([(cty, _extreme(d, kind == "min"))], step, "{a}")
    if kind in ("argmax", "argmin"):
        cmp = ">" if kind == "argmax" else "<"
        better = f"{{x}} {cmp} {{a}}"
        if d.is_float:           # strictly better, or the first NaN
            better = f"({better}) || ({{x}} != {{x}} && {{a}} == {{a}})"
        return Spec([(cty, _extreme(d, kind == "argmin")), ("int", "0")],
                    f"if ({better}) {{{{ {{a}} = {{x}}; {{i}} = {{k}}; }}}}", "{i}")
    raise NotImplementedError(f"cuda backend: reduce kind {kind!r}")


def reduce(E, op: Op):
    x = op.operands[0]
    kind, axis = op.attrs["kind"], op.attrs["axis"]
    res = op.results[0]
    s = spec(kind, x.type.dtype, res.type.dtype)
    n = x.type.shape[axis]
    out = E.new_buffer(res.type.dtype, res.type.shape, base=res.name or kind)

    def per_output(oidx):
        names = [E.declare(ty, init, "acc" if j == 0 else "arg", mutable=True)
                 for j, (ty, init) in enumerate(s.accs)]
        fill = {"a": names[0], "i": names[-1]}
        k = E.fresh("k")
        with E.block(f"for (int {k} = 0; {k} < {n}; ++{k})"):
            xe = E.elem(x, oidx[:axis] + (k,) + oidx[axis:])
            E.line(s.step.format(x=xe, k=k, **fill))
        E.line(f"{out.at(oidx)} = {s.finish.format(**fill)};")
    E.for_each(res.type.shape, per_output)
    E.env[res] = out if res.type.shape else E.scalar_from(out)
