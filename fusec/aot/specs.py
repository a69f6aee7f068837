"""From a parsed signature to what the compiler builds and what the loader checks.

A Spec is one specialization of a kernel: the parameter specs fusec.compiler.build traces
with (TensorParam / ScalarParam / ConstParam, exactly what the JIT derives from a call),
and the rules a call must meet to run the code built from them (manifest form, checked by
runtime/rules.py). Dynamic sizes are "variables" (a named dim shared by all its uses, or
one anonymous dim, or an int scalar); a size the kernel uses as a whole-extent `:` tile is
specialized per power-of-two bucket, so a Spec carries the bucket of each such variable
and the hint (a size inside the bucket) the tracer sizes that tile with.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

from ..specialize import ConstParam, ScalarParam, TensorParam
from ..ir.symbolic import next_pow2
from .signature import BoolSig, FloatSig, IntSig, SignatureError, TensorSig


@dataclass(frozen=True)
class Variable:
    key: tuple                # ("dim", "N") named dim, ("dim", "x", 1) anonymous dim,
                              # ("int", "n") int scalar
    multiple_of: int
    low: int
    high: int | None          # the declared bound, if any
    shown: str                # how errors name it


@dataclass
class Spec:
    params: list              # for fusec.compiler.build
    rules: list               # per kernel parameter, manifest form
    equal_dims: list          # groups of [param index, dim] declared equal
    text: str                 # the signature as written back (errors list it)
    symbol_vars: dict         # size symbol name -> Variable
    buckets: dict = field(default_factory=dict)     # Variable key -> bucket (pow2)
    specificity: int = 0      # facts assumed: more specialized variants are tried first


def bucket_range(var: Variable, bucket: int) -> tuple[int, int]:
    """The values whose next power of two is `bucket` (the JIT's guard), within bounds."""
    low = var.low if bucket == 1 else bucket // 2 + 1
    return low, bucket if var.high is None else min(bucket, var.high)


def bucket_hint(var: Variable, bucket: int) -> int | None:
    """The largest allowed value in the bucket, or None when the bucket holds none."""
    low, high = bucket_range(var, bucket)
    v = high - high % var.multiple_of
    return v if v >= low else None


def buckets_of(var: Variable) -> list[int]:
    if var.high is None:
        raise SignatureError(f"{var.shown} is used as a whole-extent ':' tile, so its "
                             "power-of-two bucket is compiled in: give it an upper bound "
                             f"(e.g. '?<=4096' or 'N<=4096') or a static size")
    out, b = [], 1
    while b <= next_pow2(var.high):
        if bucket_hint(var, b) is not None:
            out.append(b)
        b *= 2
    return out


def _json_scalar(name: str, value):
    ok = value is None or isinstance(value, (bool, int, str)) or (
        isinstance(value, float) and math.isfinite(value))
    if not ok:
        raise SignatureError(f"constexpr {name!r} = {value!r}: a package stores constexpr "
                             "values as JSON scalars (int, finite float, bool, str, None)")
    json.dumps(value)
    return value


def _dim_key(param: str, d: int, dim) -> tuple:
    return ("dim", dim.name) if dim.name else ("dim", param, d)


def _variables(names: list[str], sigs: list) -> tuple[dict, dict]:
    """(size symbol name -> Variable, Variable key -> the dims it covers)."""
    symbol_vars, uses = {}, {}
    for name, sig in zip(names, sigs):
        if isinstance(sig, TensorSig):
            for d, dim in enumerate(sig.dims):
                if dim.size is not None:
                    continue
                key = _dim_key(name, d, dim)
                shown = f"dim {d} of {name!r}" + (f" ({dim.name})" if dim.name else "")
                symbol_vars[f"{name}_s{d}"] = Variable(key, dim.multiple_of, 0, dim.max,
                                                       shown)
                uses.setdefault(key, []).append((name, d))
        elif isinstance(sig, IntSig):
            low, high = sig.bounds
            symbol_vars[name] = Variable(("int", name), sig.multiple_of, low, sig.max,
                                         f"int argument {name!r}")
    return symbol_vars, uses


def _tensor(name: str, sig: TensorSig, hint) -> tuple:
    unit = tuple(u or dim.size == 1 for u, dim in zip(sig.unit_stride(), sig.dims))
    s16 = sig.stride16()
    static = tuple(dim.size for dim in sig.dims)
    hints = tuple(dim.size if dim.size is not None else hint(_dim_key(name, d, dim))
                  for d, dim in enumerate(sig.dims))
    div16 = tuple(dim.size is None and dim.multiple_of == 16 for dim in sig.dims)
    param = TensorParam(name, sig.dtype, static, div16, unit, hints, sig.aligned16, s16)
    rule = {"kind": "tensor", "dtype": sig.dtype.name,
            "dims": [{"size": dim.size, "multiple_of": dim.multiple_of, "max": dim.max}
                     for dim in sig.dims],
            "unit_stride": list(unit), "stride16": list(s16), "aligned16": sig.aligned16}
    facts = sum(n is not None for n in static) + sum(unit) + sum(s16) + sig.aligned16 + \
        sum(div16)
    return param, rule, facts


def _int(name: str, sig: IntSig, hint) -> tuple:
    low, high = sig.bounds
    param = ScalarParam(name, "i", False, sig.multiple_of == 16, sig.wide,
                        hint(("int", name)), not sig.signed)
    rule = {"kind": "int", "min": low, "max": high, "multiple_of": sig.multiple_of}
    return param, rule, (sig.multiple_of != 1) + (not sig.signed) + (not sig.wide)


# signature kind -> (param spec, loader rule, facts assumed)
_PARAM_OF = {TensorSig: _tensor, IntSig: _int,
             FloatSig: lambda name, sig, hint: (ScalarParam(name, "f", hint=1.0),
                                                {"kind": "float"}, 0),
             BoolSig: lambda name, sig, hint: (ScalarParam(name, "b", hint=True),
                                               {"kind": "bool"}, 0)}


def make_spec(kernel, sigs: list, constexprs: dict, buckets: dict | None = None) -> Spec:
    """The Spec of a kernel for parsed sigs (one per runtime param) and constexpr values
    (a constexpr not given takes its default); `buckets` (Variable key -> bucket) sets the
    hints of bucketed variables."""
    buckets = dict(buckets or {})
    runtime = [p.name for p in kernel.params if p.name not in kernel.constexprs]
    symbol_vars, uses = _variables(runtime, sigs)
    by_key = {v.key: v for v in symbol_vars.values()}

    def hint(key: tuple) -> int:
        var = by_key[key]
        bucket = buckets.get(key) or next_pow2(var.high if var.high is not None else 16)
        found = bucket_hint(var, bucket)
        return found if found is not None else var.multiple_of

    sig_of = dict(zip(runtime, sigs))
    params, rules, specificity = [], [], 0
    for p in kernel.params:
        if p.name in kernel.constexprs:
            if p.name not in constexprs and p.default is p.empty:
                raise SignatureError(f"constexpr parameter {p.name!r} needs a value "
                                     f"(constexprs={{{p.name!r}: ...}})")
            value = _json_scalar(p.name, constexprs.get(p.name, p.default))
            params.append(ConstParam(p.name, value))
            rules.append({"kind": "constexpr", "value": value})
            continue
        sig = sig_of[p.name]
        param, rule, facts = _PARAM_OF[type(sig)](p.name, sig, hint)
        params.append(param)
        rules.append(rule)
        specificity += facts
    index = {p.name: i for i, p in enumerate(kernel.params)}
    equal = [[[index[n], d] for n, d in dims] for dims in uses.values() if len(dims) > 1]
    text = ", ".join(f"{n}: {sig_of[n]}" for n in runtime)
    text += "".join(f", {p.name}={r['value']!r}" for p, r in zip(kernel.params, rules)
                    if r["kind"] == "constexpr")
    return Spec(params, rules, equal, text, symbol_vars, buckets, specificity)
