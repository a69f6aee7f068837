"""Lowering rules: one aten op -> a fusec whole-tensor DSL expression.

A rule is a plain function `rule(e, *args, **kwargs) -> str | tuple[str, ...]` in the RULES
table, keyed by the op's overload packet (or an overload where overloads differ). It gets the
node's arguments with every fx Node replaced by a `Var` (its DSL name plus the facts of its
value), and returns the DSL expression of the result (a tuple for ops with several results).
`e.bind(expr)` binds a temporary to a DSL name when an expression is used twice. A rule raises
`Unsupported` with the reason for arguments it does not lower; the node then stays an aten
call. The support check runs the same rule on stand-in names, so "supported" and "lowered"
cannot disagree.

VIEWS are ops whose result may be a view of their input (strides matter to later aten ops):
when one is a result of a fused region it is replayed by aten on the kernel's output (exact
strides, no copy); inside a region it is lowered by its rule if it has one.
"""
from __future__ import annotations

import math
import operator
from dataclasses import dataclass

import torch
from torch.fx import Node

from ..ir.ops import LIBM_UNARY
from .pool_offsets import OFFSETS, OFFSETS_BACKWARD, tiling_window

aten = torch.ops.aten
prims = torch.ops.prims


class Unsupported(Exception):
    """This node is not lowered to fusec (the message says why); it runs as an aten op."""


DTYPES = {torch.bool: "bool", torch.int8: "int8", torch.int16: "int16", torch.int32: "int32",
          torch.int64: "int64", torch.uint8: "uint8", torch.float16: "float16",
          torch.bfloat16: "bfloat16", torch.float32: "float32", torch.float64: "float64"}


@dataclass(frozen=True)
class Var:
    """An fx value as the DSL sees it: a tensor (dtype, rank) or a runtime scalar."""
    name: str
    dtype: torch.dtype | None = None      # None: a scalar parameter (int/float/bool)
    rank: int = 0
    device_type: str = "cpu"

    def __str__(self):
        return self.name

    @property
    def is_tensor(self) -> bool:
        return self.dtype is not None


class Emitter:
    """What a rule writes with: temporaries and the rendering of constant arguments."""

    def __init__(self, prefix: str):
        self.prefix = prefix
        self.lines: list[str] = []

    def bind(self, expr: str) -> str:
        name = f"{self.prefix}_t{len(self.lines)}"
        self.lines.append(f"{name} = {expr}")
        return name


def widened(dtype: torch.dtype) -> bool:
    """16-bit floats: a region reads them as float32 and computes in float32."""
    return dtype in (torch.bfloat16, torch.float16)


def computed_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype a region computes a value in that aten holds in `dtype`."""
    return torch.float32 if widened(dtype) else dtype


def dtype_name(dtype: torch.dtype) -> str:
    if dtype not in DTYPES:
        raise Unsupported(f"dtype {dtype} has no fusec equivalent")
    return "fl." + DTYPES[dtype]


def lit(v) -> str:
    """A constant argument as DSL source."""
    if isinstance(v, Var):
        return v.name
    if v is None or isinstance(v, int):          # bools too
        return repr(v)
    if isinstance(v, float):
        if math.isnan(v):
            return 'float("nan")'
        if math.isinf(v):
            return 'float("inf")' if v > 0 else '(-float("inf"))'
        return repr(v)
    if isinstance(v, (list, tuple)):
        return "(" + "".join(lit(x) + ", " for x in v) + ")"
    raise Unsupported(f"argument {v!r} of type {type(v).__name__} is not lowered")


def tensor(x) -> Var:
    if not (isinstance(x, Var) and x.is_tensor):
        raise Unsupported(f"expected a tensor operand, got {x!r}")
    return x


def _is_float(x) -> bool:
    return x.dtype.is_floating_point if isinstance(x, Var) and x.is_tensor else isinstance(
        x, float)


def _as_float(x: Var) -> str:
    """A float operand for float-only math: ints and bools go to float32, as torch does."""
    return str(x) if x.dtype.is_floating_point else f"{x}.to(fl.float32)"


# -- elementwise -------------------------------------------------------------------------------

def _float_unary(fn: str):
    return lambda e, x: f"fl.{fn}({_as_float(tensor(x))})"


def _nan_ignoring(extreme: str):
    """fmax / fmin: the other operand where one is NaN (NaN where both are)."""
    def rule(e, a, b):
        x, y = lit(a), lit(b)
        return (f"fl.where({x} != {x}, {y}, fl.where({y} != {y}, {x}, "
                f"fl.{extreme}({x}, {y})))")
    return rule


def _binary(symbol: str):
    return lambda e, a, b: f"({lit(a)} {symbol} {lit(b)})"


def _with_alpha(symbol: str):
    def rule(e, a, b, alpha=1):
        b = lit(b) if alpha == 1 else f"({lit(b)} * {lit(alpha)})"
        return f"({lit(a)} {symbol} {b})"
    return rule


def _div(e, a, b, rounding_mode=None):
    if rounding_mode is None:
        return f"({lit(a)} / {lit(b)})"
    if rounding_mode == "floor":
        return f"({lit(a)} // {lit(b)})"
    if rounding_mode == "trunc" and (_is_float(a) or _is_float(b)):
        q = e.bind(f"({lit(a)} / {lit(b)})")
        return f"fl.where({q} < 0, fl.ceil({q}), fl.floor({q}))"
    if rounding_mode == "trunc":       # integers: floor, one up where it rounded down
        q = e.bind(f"({lit(a)} // {lit(b)})")
        inexact = f"(({lit(a)} % {lit(b)}) != 0)"
        signs_differ = f"(({lit(a)} < 0) != ({lit(b)} < 0))"
        return f"fl.where({inexact} & {signs_differ}, {q} + 1, {q})"
    raise Unsupported(f"div with rounding_mode={rounding_mode!r}")


def _integral(v) -> bool:
    """An int or bool operand (bools raised to powers compute as ints in aten)."""
    if isinstance(v, Var):
        return not v.dtype.is_floating_point
    return isinstance(v, int)


def _pow(e, x, exponent):
    """Tensor ** scalar (common powers as multiplies and roots), tensor ** tensor, and
    number ** tensor (aten.pow.Scalar). Integers to a negative power give what aten's give:
    1 for a base of 1, +-1 for -1 by the power's parity, else 0 (fl's `**` takes powers
    below 0 as 0)."""
    powers = {1: "{x}", 2: "({x} * {x})", 3: "({x} * {x} * {x})", 0.5: "fl.sqrt({x})",
              -0.5: "fl.rsqrt({x})", -1: "(1.0 / {x})"}
    if not isinstance(exponent, Var) and exponent in powers:
        if exponent in (0.5, -0.5, -1) or isinstance(exponent, float):
            x = _as_float(tensor(x))            # int ** 2.0 is a float, as in aten
        return powers[exponent].format(x=x)
    power = f"(({lit(x)}) ** {lit(exponent)})"       # (-1) ** n, not -(1 ** n)
    if not (_integral(x) and isinstance(exponent, Var) and _integral(exponent)):
        return power
    n = e.bind(lit(exponent))
    sign = f"(1 - 2 * ({n} & 1))"
    if isinstance(x, Var):
        base = e.bind(lit(x))
        negative = f"fl.where({base} == 1, 1, fl.where({base} == -1, {sign}, 0))"
    else:
        negative = {1: "1", -1: sign}.get(x, "0")
    return f"fl.where({n} < 0, {negative}, {power})"


def _clamp(e, x, min=None, max=None):
    out = lit(x)
    if min is not None:
        out = f"fl.maximum({out}, {lit(min)})"
    if max is not None:
        out = f"fl.minimum({out}, {lit(max)})"
    return out


def _logical(symbol: str):
    return lambda e, a, b: f"(({lit(a)} != 0) {symbol} ({lit(b)} != 0))"


def _where(e, cond, a, b):
    return f"fl.where({lit(cond)}, {lit(a)}, {lit(b)})"


def _gelu(e, x, approximate="none"):
    return f'fl.gelu({_as_float(tensor(x))}, approximate="{approximate}")'


def _leaky_relu(e, x, negative_slope=0.01):
    x = e.bind(lit(tensor(x)))
    return f"fl.where({x} > 0, {x}, {x} * {lit(negative_slope)})"       # NaN: NaN


def _elu(e, x, alpha=1.0, scale=1.0, input_scale=1.0):
    """torch's elu: x * scale above 0, expm1(x * input_scale) * alpha * scale at and below
    (expm1 accurate near 0)."""
    x = tensor(x)
    xf = e.bind(_as_float(x))
    dtype = x.dtype if x.dtype.is_floating_point else torch.float32
    scaled = Var(e.bind(f"({xf} * {lit(input_scale)})"), dtype, x.rank, x.device_type)
    coef = lit(alpha * scale) if not isinstance(alpha, Var) and not isinstance(scale, Var) \
        else f"{lit(alpha)} * {lit(scale)}"
    return f"fl.where({xf} > 0, {xf} * {lit(scale)}, fl.expm1({scaled}) * {coef})"


def _trunc(e, x):
    x = tensor(x)
    if not x.dtype.is_floating_point:
        return str(x)
    return f"fl.where({x} < 0, fl.ceil({x}), fl.floor({x}))"


def _round(e, x, decimals=0):
    """Half to even, from the exact fraction x - floor(x) (x + 0.5 would round); |x| past
    2**23 (2**52 in float64) is already whole; a zero keeps x's sign, as torch's round."""
    if decimals != 0:
        raise Unsupported("round with decimals")
    x = tensor(x)
    if not x.dtype.is_floating_point:
        return str(x)
    low = e.bind(f"fl.floor({x})")
    frac = e.bind(f"({x} - {low})")
    odd = f"(({low} - 2.0 * fl.floor({low} * 0.5)) == 1.0)"
    up = f"(({frac} > 0.5) | (({frac} == 0.5) & {odd}))"
    r = e.bind(f"fl.where({up}, {low} + 1.0, {low})")
    r = e.bind(f"fl.where({r} == 0, {x} * 0.0, {r})")
    whole = float(2 ** (52 if x.dtype == torch.float64 else 23))     # half floats: float32
    return f"fl.where(fl.abs({x}) >= {lit(whole)}, {x}, {r})"


def _isinf(e, x):
    x = tensor(x)
    if not x.dtype.is_floating_point:
        return f"({x} != {x})"                                  # all false
    return f"(fl.abs({x}) == {lit(math.inf)})"


def _log10(e, x):
    """log(x) / log(10) as one multiply: within ~1.5 ulp (two roundings)."""
    return f"(fl.log({_as_float(tensor(x))}) * {lit(1.0 / math.log(10.0))})"


def _threshold_backward(e, grad, x, threshold):
    return f"fl.where({lit(x)} <= {lit(threshold)}, 0, {lit(grad)})"


# -- casts and copies --------------------------------------------------------------------------

def _to_copy(e, x, dtype=None, layout=None, device=None, pin_memory=None, non_blocking=False,
             memory_format=None):
    if device is not None and torch.device(device).type != x.device_type:
        raise Unsupported(f"_to_copy to another device ({device})")
    if layout not in (None, torch.strided):
        raise Unsupported(f"_to_copy to layout {layout}")
    return str(x) if dtype is None else f"{x}.to({dtype_name(dtype)})"


def _convert(e, x, dtype):
    return f"{x}.to({dtype_name(dtype)})"


def _identity(e, x, *rest, **kwargs):
    if kwargs.get("memory_format") not in (None, torch.contiguous_format,
                                           torch.preserve_format):
        raise Unsupported(f"memory_format={kwargs['memory_format']}")
    return str(tensor(x))


# -- views -------------------------------------------------------------------------------------

def _dims(x: Var, dims) -> tuple:
    dims = [dims] if isinstance(dims, int) else list(dims)
    return tuple(d % max(x.rank, 1) for d in dims)


def _constant(size: str, value, dtype) -> str:
    """A tensor of `size` (DSL source of its sizes) holding one number."""
    if not isinstance(value, (int, float, bool)):
        raise Unsupported(f"a constructor's value {value!r} is not a number")
    dtype = dtype or (torch.float32 if isinstance(value, float) else
                      torch.bool if isinstance(value, bool) else torch.int64)
    return f"fl.full({size}, {lit(value)}, {dtype_name(dtype)})"


def _sizes(size) -> str:
    if not all(isinstance(n, int) for n in size):
        raise Unsupported("a constructor of symbolic sizes")
    return lit(tuple(size))


def _full(e, size, fill_value, dtype=None, layout=None, device=None, pin_memory=None):
    return _constant(_sizes(size), fill_value, dtype)


def _arange(e, *bounds, dtype=None, layout=None, device=None, pin_memory=None):
    """arange(end), arange(start, end), arange(start, end, step) of ints: fl.arange (an
    index range the kernel computes where it is read) scaled and shifted."""
    start, end, step = (0, bounds[0], 1) if len(bounds) == 1 else (*bounds, 1)[:3]
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (start, end, step)):
        raise Unsupported("arange of bounds that are not ints (floats, symbolic sizes)")
    n = -((start - end) // step) if step else 0
    if n <= 0:
        raise Unsupported("an empty arange")
    expr = f"fl.arange(0, {n})"
    if step != 1:
        expr = f"({expr} * {step})"
    if start:
        expr = f"({expr} + {start})"
    if dtype is not None and dtype != torch.int64:
        expr = f"{expr}.to({dtype_name(dtype)})"
    return expr


def _like(value):
    """full_like / zeros_like / ones_like: x's shape, x's dtype unless given."""
    def rule(e, x, *args, dtype=None, layout=None, device=None, pin_memory=None,
             memory_format=None):
        fill = args[0] if value is None else value
        return _constant(f"{tensor(x)}.shape", fill, dtype or x.dtype)
    return rule


def _cat(e, tensors, dim=0):
    """torch.cat of tensors of one rank and dtype (fl.cat: each read where its part lies)."""
    if not isinstance(tensors, (list, tuple)) or not tensors:
        raise Unsupported("cat of something other than a list of tensors")
    xs = [tensor(x) for x in tensors]
    if len({x.rank for x in xs}) != 1 or len({x.dtype for x in xs}) != 1:
        raise Unsupported("cat of tensors of different ranks or dtypes")
    return f"fl.cat({lit(tuple(xs))}, axis={_dims(xs[0], dim)[0]})"


def _constant_pad_nd(e, x, pad, value=0):
    """F.pad(mode="constant"): per padded dim (pad lists the last dim's (before, after)
    first), a crop for a negative amount (a slice) and fl.cat of constant blocks around x
    for a positive one."""
    x = tensor(x)
    if len(pad) % 2 or len(pad) // 2 > x.rank or not all(
            isinstance(p, int) and not isinstance(p, bool) for p in pad):
        raise Unsupported(f"constant_pad_nd with pad {pad!r} (ints, two per padded dim)")
    out = str(x)
    for k in range(len(pad) // 2):
        d, before, after = x.rank - 1 - k, pad[2 * k], pad[2 * k + 1]
        if before < 0 or after < 0:
            stop = f"{out}.shape[{d}] - {max(-after, 0)}"
            out = e.bind(f"{out}[{':, ' * d}{max(-before, 0)}:{stop}]")
        sizes = [f"{out}.shape[{i}]" for i in range(x.rank)]
        parts = []
        for amount in (before, after):
            if amount > 0:
                shape = ", ".join(sizes[:d] + [str(amount)] + sizes[d + 1:])
                parts.append(f"fl.full(({shape},), {lit(value)}, "
                             f"{dtype_name(computed_dtype(x.dtype))})")
        if parts:
            parts.insert(1 if before > 0 else 0, out)
            out = e.bind(f"fl.cat([{', '.join(parts)}], axis={d})")
    return out


def _index_select(e, x, dim, index):
    if tensor(index).rank != 1:            # a 0-d index keeps the dim: torch's (1,) shape
        raise Unsupported("index_select with an index that is not 1-d")
    return f"fl.take({tensor(x)}, {index}, axis={_dims(x, dim)[0]})"


def _index(e, x, indices):
    """x[idx] and x[:, idx] (aten.index.Tensor with one integer index tensor, the dims
    before it taken whole): fl.take along that dim, a negative position counted from the
    end as torch does. Boolean masks and several index tensors stay aten."""
    x = tensor(x)
    given = [(d, i) for d, i in enumerate(indices) if i is not None]
    if len(given) != 1 or not isinstance(given[0][1], Var) or given[0][1].dtype in (
            torch.bool, torch.uint8) or given[0][1].dtype.is_floating_point:
        raise Unsupported("indexing other than by one integer tensor")
    d, index = given[0]
    wrapped = e.bind(f"fl.where({index} < 0, {index} + {x}.shape[{d}], {index})")
    return f"fl.take({x}, {wrapped}, axis={d})"      # negative positions count from the end


def _permute(e, x, dims):
    return f"fl.permute({x}, {lit(_dims(tensor(x), dims))})"


def _transpose(e, x, a, b):
    perm = list(range(tensor(x).rank))
    a, b = _dims(x, (a, b))
    perm[a], perm[b] = perm[b], perm[a]
    return f"fl.permute({x}, {lit(perm)})"


def _t(e, x):
    return str(x) if tensor(x).rank < 2 else f"fl.permute({x}, (1, 0))"


def _unsqueeze(e, x, dim):
    return f"fl.expand_dims({x}, {dim % (tensor(x).rank + 1)})"


def _squeeze(e, x, dim):
    """Only squeezes naming dims all of size 1 reach here (support.check_squeeze)."""
    dims = [dim] if isinstance(dim, int) else list(dim)
    return f"{x}.squeeze({lit(tuple(d % tensor(x).rank for d in dims))})"


def _expand(e, x, sizes):
    x = tensor(x)
    lead = len(sizes) - x.rank
    shape = [f"{x}.shape[{i - lead}]" if not isinstance(s, Var) and s == -1 else lit(s)
             for i, s in enumerate(sizes)]
    return f"fl.broadcast_to({x}, (" + "".join(s + ", " for s in shape) + "))"


def _repeat(e, x, repeats):
    """x.repeat(r...): x with a size-1 dim before each of its dims (and the new leading
    ones), broadcast to the repeats, read back as the product shape -- one indexed view,
    each result element reading x at its index modulo x's sizes."""
    x = tensor(x)
    lead = len(repeats) - x.rank
    if lead < 0:
        raise Unsupported("repeat with fewer repeats than dims")
    if not repeats:                        # a 0-d tensor repeated by (): itself
        return str(x)
    if any(isinstance(r, Var) for r in repeats):
        raise Unsupported("repeat with symbolic repeat counts")
    spread, wide, out = [], [], []
    for i, r in enumerate(repeats):
        size = f"{x}.shape[{i - lead}]" if i >= lead else "1"
        spread += ["1", size] if i >= lead else ["1"]
        wide += [lit(r), size] if i >= lead else [lit(r)]
        out.append(f"{lit(r)} * {size}" if i >= lead else lit(r))
    expanded = e.bind(f"fl.broadcast_to({x}.reshape(({', '.join(spread)},)), "
                      f"({', '.join(wide)},))")
    return f"{expanded}.reshape(({', '.join(out)},))"


def _copy(e, x, src, non_blocking=False):
    """aten.copy (a functionalized in-place copy): src broadcast to x's shape in x's dtype
    (rounded as the copy rounds)."""
    x, src = tensor(x), tensor(src)
    return f"fl.broadcast_to({src}.to({dtype_name(x.dtype)}), {x}.shape)"


def _slice_scatter(e, x, src, dim=0, start=None, end=None, step=1):
    """x with src written over x[start:end:step] along dim: each position of dim inside
    the slice takes src's element (src gathered along dim, fl.take), the others x's."""
    x, src = tensor(x), tensor(src)
    if not all(v is None or (isinstance(v, int) and not isinstance(v, bool))
               for v in (start, end)) or not isinstance(step, int) or step <= 0:
        raise Unsupported("slice_scatter with bounds that are not ints")
    d = _dims(x, dim)[0]
    size = f"{x}.shape[{d}]"
    first = f"({size} + {start})" if start is not None and start < 0 else str(start or 0)
    stop = size if end is None else f"({size} + {end})" if end < 0 else str(end)
    p = e.bind(f"fl.arange(0, {size})")
    inside = e.bind(f"({p} >= {first}) & ({p} < {stop}) & (({p} - {first}) % {step} == 0)")
    place = ", ".join(size if i == d else "1" for i in range(x.rank))
    inside = e.bind(f"{inside}.reshape(({place},))")
    taken = f"fl.take({src}, ({p} - {first}) // {step}, axis={d})"
    return f"fl.where({inside}, {taken}, {x})"


# -- reductions --------------------------------------------------------------------------------

def _axes(x: Var, dims) -> str:
    """A reduction's dims as DSL source (None, [] and the whole rank mean every dim)."""
    if dims is None or (isinstance(dims, (list, tuple)) and len(dims) == 0):
        return "None"
    return lit(_dims(x, dims))


def _cast_first(x: Var, dtype) -> str:
    return str(x) if dtype is None else f"{x}.to({dtype_name(dtype)})"


def _accumulating(method: str):
    """sum / prod / mean (and their overloads over every dim), with `dtype=` cast first.
    (prod: bools and ints multiply in int64, floats in float64, rounded once.)"""
    def rule(e, x, dims=None, keepdim=False, dtype=None):
        return (f"{_cast_first(tensor(x), dtype)}.{method}(axis={_axes(x, dims)}, "
                f"keepdims={keepdim})")
    return rule


def _extreme(kind: str):
    def rule(e, x, dims=None, keepdim=False):
        return f"fl.{kind}({tensor(x)}, axis={_axes(x, dims)}, keepdims={keepdim})"
    return rule


def _any_all(kind: str):
    """any/all: the max/min of the truth values (a bool result, as torch gives)."""
    def rule(e, x, dims=None, keepdim=False):
        truth = f"({tensor(x)} != 0).to(fl.int32)"
        return f"(fl.{kind}({truth}, axis={_axes(x, dims)}, keepdims={keepdim}) != 0)"
    return rule


def _sign(e, x):
    x = tensor(x)
    return f"fl.where({x} > 0, 1, fl.where({x} < 0, -1, 0))"     # NaN: 0, as torch


def _arg_extreme(kind: str):
    def rule(e, x, dim=None, keepdim=False):
        if dim is None:
            raise Unsupported(f"{kind} over a flattened tensor (dim=None)")
        return (f"fl.{kind}({tensor(x)}, axis={_dims(x, dim)[0]}, keepdims={keepdim})"
                ".to(fl.int64)")
    return rule


def _extreme_with_index(kind: str):
    def rule(e, x, dim, keepdim=False):
        return (f"fl.{kind}({tensor(x)}, axis={_dims(x, dim)[0]}, keepdims={keepdim})",
                f"fl.arg{kind}({x}, axis={_dims(x, dim)[0]}, keepdims={keepdim}).to(fl.int64)")
    return rule


def _scan(kind: str):
    """cumsum / cumprod (`dtype=` cast first; ints and bools give int64, as in torch); a
    0-d tensor is its own running sum."""
    def rule(e, x, dim, dtype=None):
        source = _cast_first(tensor(x), dtype)
        if x.rank == 0:
            keep = dtype is not None or x.dtype.is_floating_point
            return source if keep else f"{source}.to(fl.int64)"
        return f"fl.cum{kind}({source}, axis={_dims(x, dim)[0]})"
    return rule


def _reduced_dims(x: Var, dims) -> list:
    """The dims a reduction over `dims` covers, ascending (None and [] mean every dim)."""
    return list(range(x.rank)) if _axes(x, dims) == "None" else sorted(_dims(x, dims))


def _count(x: Var, dims) -> str:
    """The number of elements the reduction over `dims` takes (DSL size arithmetic)."""
    return " * ".join(f"{x}.shape[{d}]" for d in _reduced_dims(x, dims)) or "1"


def _variance(e, x, dims, correction, keepdim) -> tuple[str, str]:
    """(variance, mean) over dims with Bessel-style `correction` (torch's var/var_mean)."""
    x = tensor(x)
    if not x.dtype.is_floating_point:
        raise Unsupported("var of a non-float tensor")
    correction = 1 if correction is None else correction
    axes = _axes(x, dims)
    # reduced, computed on, then given their size-1 dims back: a squeeze of a keepdim
    # result (BatchNorm's running statistics) then drops the expand_dims, no copy
    mean = e.bind(f"{x}.mean(axis={axes}, keepdims=False)")
    kept = _reduced_dims(x, dims)
    kept_mean = _with_dims(mean, kept)
    centered = e.bind(f"({x} - {kept_mean})")
    var = (f"(({centered} * {centered}).sum(axis={axes}, keepdims=False) / "
           f"({_count(x, dims)} - {lit(correction)}))")
    return (_with_dims(var, kept), kept_mean) if keepdim else (var, mean)


def _with_dims(value: str, dims: list) -> str:
    """value with size-1 dims inserted at `dims` (ascending: positions in the result)."""
    for d in dims:
        value = f"fl.expand_dims({value}, {d})"
    return value


def _var(e, x, dims=None, correction=None, keepdim=False):
    return _variance(e, x, dims, correction, keepdim)[0]


def _var_mean(e, x, dims=None, correction=None, keepdim=False):
    return _variance(e, x, dims, correction, keepdim)


# -- pooling -----------------------------------------------------------------------------------

def _pool_window(x: Var, kernel_size, stride, padding=0, dilation=1, ceil_mode=False,
                 what="max_pool2d"):
    """(kh, kw) of a 2-D pool over windows that tile the input, else Unsupported."""
    kernel = tiling_window(kernel_size, stride, padding, dilation, ceil_mode)
    if x.rank not in (3, 4) or kernel is None:
        raise Unsupported(f"{what} other than windows that tile the input (stride = "
                          "kernel, no padding, dilation or ceil_mode)")
    return kernel


def _windows(e, x: Var, kh: int, kw: int):
    """(output rows, output columns, [the strided slice of x at each window offset])."""
    lead = ":, " * (x.rank - 2)
    oh_n = e.bind(f"{x}.shape[{x.rank - 2}] // {kh}")
    ow_n = e.bind(f"{x}.shape[{x.rank - 1}] // {kw}")
    return oh_n, ow_n, [(di, dj, e.bind(f"{x}[{lead}{di}:{di} + {oh_n} * {kh}:{kh}, "
                                        f"{dj}:{dj} + {ow_n} * {kw}:{kw}]"))
                        for di in range(kh) for dj in range(kw)]


def _spread(e, grad: Var, h: str, w: str, kh: int, kw: int):
    """The backward of a tiling pool over an input of h x w (DSL sizes): (gathered(t): the
    element of t -- grad's shape -- at each input element's window; whether a window covers
    the element; the element's row and column). Rows and columns come from one range
    reshaped (two ranges of one size would share an axis of the fuse pass's iteration
    space)."""
    r = grad.rank
    oh_n, ow_n = f"{grad}.shape[{r - 2}]", f"{grad}.shape[{r - 1}]"
    q = e.bind(f"fl.arange(0, {h} * {w}).reshape(({h}, {w}))")
    hh, ww = e.bind(f"{q} // {w}"), e.bind(f"{q} % {w}")
    window = e.bind(f"({hh} // {kh}) * {ow_n} + {ww} // {kw}")
    flat_shape = ", ".join([f"{grad}.shape[{i}]" for i in range(r - 2)] + [f"{oh_n} * {ow_n}"])

    def gathered(t: Var) -> str:
        return e.bind(f"fl.take({t}.reshape(({flat_shape},)), {window}, axis={r - 2})")
    covered = e.bind(f"({hh} < {oh_n} * {kh}) & ({ww} < {ow_n} * {kw})")
    return gathered, covered, hh, ww


def _input_size(x: Var) -> tuple[str, str]:
    return f"{x}.shape[{x.rank - 2}]", f"{x}.shape[{x.rank - 1}]"


def _window_max(e, windows, position):
    """The max over `windows` (of _windows) and `position(di, dj)` (DSL source) of each
    maximum -- the first, or the last NaN, as aten's kernels (no launch)."""
    best = where = None
    for di, dj, window in windows:
        at = position(di, dj)
        if best is None:
            best, where = window, e.bind(f"fl.broadcast_to({at}, {window}.shape)")
            continue
        take = e.bind(f"({window} > {best}) | ({window} != {window})")
        best = e.bind(f"fl.where({take}, {window}, {best})")
        where = e.bind(f"fl.where({take}, {at}, {where})")
    return best, where


def _max_pool2d(e, x, kernel_size, stride=(), padding=0, dilation=1, ceil_mode=False):
    """The max of each window and the flat index (h * W + w) of its maximum."""
    x = tensor(x)
    kh, kw = _pool_window(x, kernel_size, stride, padding, dilation, ceil_mode)
    oh_n, ow_n, windows = _windows(e, x, kh, kw)
    w = _input_size(x)[1]
    q = e.bind(f"fl.arange(0, {oh_n} * {ow_n}).reshape(({oh_n}, {ow_n}))")    # see _spread
    oh, ow = e.bind(f"{q} // {ow_n}"), e.bind(f"{q} % {ow_n}")
    return _window_max(e, windows,
                       lambda di, dj: f"(({oh} * {kh} + {di}) * {w} + {ow} * {kw} + {dj})")


def _max_pool2d_offsets(e, x, kernel):
    """pool_offsets.max_pool2d_offsets: the max and its offset in the window (int8)."""
    x = tensor(x)
    kh, kw = _pool_window(x, kernel, kernel)
    oh_n, ow_n, windows = _windows(e, x, kh, kw)
    return _window_max(e, windows,
                       lambda di, dj: f"fl.full(({oh_n}, {ow_n}), {di * kw + dj}, fl.int8)")


def _max_pool2d_backward(e, grad, x, kernel_size, stride, padding, dilation, ceil_mode,
                         indices):
    """Each input element takes its window's gradient where the window's index names it
    (windows tile the input: one window an element, none past the last full one)."""
    grad, x, indices = tensor(grad), tensor(x), tensor(indices)
    kh, kw = _pool_window(x, kernel_size, stride, padding, dilation, ceil_mode)
    h, w = _input_size(x)
    gathered, covered, hh, ww = _spread(e, grad, h, w, kh, kw)
    return f"fl.where({covered} & ({gathered(indices)} == {hh} * {w} + {ww}), " \
           f"{gathered(grad)}, 0)"


def _max_pool2d_offsets_backward(e, grad, offsets, kernel, input_size):
    """pool_offsets.max_pool2d_offsets_backward: as _max_pool2d_backward, matching the
    element's offset in its window (input_size: static ints, pool_offsets checks)."""
    grad, offsets = tensor(grad), tensor(offsets)
    kh, kw = _pool_window(grad, kernel, kernel)
    if not all(type(n) is int for n in input_size):
        raise Unsupported("max_pool2d_offsets_backward of a symbolic input size")
    gathered, covered, hh, ww = _spread(e, grad, *map(str, input_size), kh, kw)
    at = f"({hh} % {kh}) * {kw} + {ww} % {kw}"
    return f"fl.where({covered} & ({gathered(offsets)} == {at}), {gathered(grad)}, 0)"


def _avg_pool2d(e, x, kernel_size, stride=(), padding=0, ceil_mode=False,
                count_include_pad=True, divisor_override=None):
    x = tensor(x)
    kh, kw = _pool_window(x, kernel_size, stride, padding, 1, ceil_mode, "avg_pool2d")
    _, _, windows = _windows(e, x, kh, kw)
    total = " + ".join(window for _, _, window in windows)
    return f"({total}) / {divisor_override or kh * kw}"


def _avg_pool2d_backward(e, grad, x, kernel_size, stride, padding, ceil_mode,
                         count_include_pad, divisor_override):
    grad, x = tensor(grad), tensor(x)
    kh, kw = _pool_window(x, kernel_size, stride, padding, 1, ceil_mode, "avg_pool2d")
    gathered, covered, _, _ = _spread(e, grad, *_input_size(x), kh, kw)
    return f"fl.where({covered}, {gathered(grad)} / {divisor_override or kh * kw}, 0)"


def _global_avg_pool(e, x, output_size):
    """adaptive_avg_pool2d to 1 x 1 (support.check_global_pool): the mean over H and W."""
    return f"{tensor(x)}.mean(axis=(-2, -1), keepdims=True)"


def _global_avg_pool_backward(e, grad, x):
    x = tensor(x)
    size = f"({x}.shape[{x.rank - 2}] * {x}.shape[{x.rank - 1}])"
    return f"fl.broadcast_to({tensor(grad)} / {size}, {x}.shape)"


# -- matmul (only with Options.matmul == "fusec") ---------------------------------------------

def matmul_accumulator(dtype: torch.dtype) -> str:
    """The fl dtype a matmul of `dtype` operands accumulates in: float32 for 16- and 32-bit
    floats, float64 for float64, int64 for ints (cast back, it wraps as torch's does)."""
    if dtype == torch.float64:
        return "float64"
    return "float32" if dtype.is_floating_point else "int64"


def _dot(a: Var, b: Var, rank: int = 2) -> str:
    if tensor(a).rank != rank or tensor(b).rank != rank:
        raise Unsupported(f"matmul of tensors that are not {rank}-D")
    if a.dtype == torch.bool:
        raise Unsupported("matmul of bool tensors")
    return f"fl.dot({a}, {b}, out_dtype=fl.{matmul_accumulator(a.dtype)})"


def _plus_scaled(product: str, bias, beta, alpha) -> str:
    product = product if alpha == 1 else f"({product} * {lit(alpha)})"
    if beta == 0:                       # torch ignores the input then (its NaNs too)
        return product
    bias = lit(bias) if beta == 1 else f"({lit(bias)} * {lit(beta)})"
    return f"({product} + {bias})"


MATMULS = {
    aten.mm: lambda e, a, b: _dot(a, b),
    aten.addmm: lambda e, bias, a, b, beta=1, alpha=1: _plus_scaled(_dot(a, b), bias, beta,
                                                                    alpha),
    aten.bmm: lambda e, a, b: _dot(a, b, 3),
    aten.baddbmm: lambda e, bias, a, b, beta=1, alpha=1: _plus_scaled(_dot(a, b, 3), bias,
                                                                      beta, alpha),
}

RULES = {
    **{getattr(aten, n): _float_unary(n) for n in (
        "exp", "exp2", "log", "log2", "sqrt", "rsqrt", "sin", "cos", "tan", "atan", "tanh",
        "erf", "sigmoid", "silu", *LIBM_UNARY)},
    aten.abs: lambda e, x: f"fl.abs({tensor(x)})",
    aten.relu: lambda e, x: f"fl.relu({tensor(x)})",
    aten.floor: lambda e, x: f"fl.floor({tensor(x)})",
    aten.ceil: lambda e, x: f"fl.ceil({tensor(x)})",
    aten.neg: lambda e, x: f"(-{tensor(x)})",
    aten.reciprocal: lambda e, x: f"(1.0 / {_as_float(tensor(x))})",
    aten.logical_not: lambda e, x: f"({tensor(x)} == 0)",
    aten.bitwise_not: lambda e, x: f"(~{tensor(x)})",
    aten.gelu: _gelu,
    aten.hardtanh: lambda e, x, min_val=-1.0, max_val=1.0: _clamp(e, x, min_val, max_val),
    aten.leaky_relu: _leaky_relu, aten.elu: _elu, aten.trunc: _trunc, aten.round: _round,
    aten.isnan: lambda e, x: f"({tensor(x)} != {tensor(x)})", aten.isinf: _isinf,
    aten.log10: _log10,
    aten.add: _with_alpha("+"), aten.sub: _with_alpha("-"),
    aten.rsub: lambda e, a, b, alpha=1: _with_alpha("-")(e, b, a, alpha),
    aten.mul: _binary("*"), aten.div: _div, aten.remainder: _binary("%"),
    aten.pow: _pow,
    aten.maximum: lambda e, a, b: f"fl.maximum({lit(a)}, {lit(b)})",
    aten.atan2: lambda e, a, b: f"fl.atan2({lit(a)}, {lit(b)})",
    aten.fmod: lambda e, a, b: f"fl.fmod({lit(a)}, {lit(b)})",
    aten.hypot: lambda e, a, b: f"fl.hypot({lit(a)}, {lit(b)})",
    aten.copysign: lambda e, a, b: f"fl.copysign({lit(a)}, {lit(b)})",
    aten.minimum: lambda e, a, b: f"fl.minimum({lit(a)}, {lit(b)})",
    aten.fmax: _nan_ignoring("maximum"), aten.fmin: _nan_ignoring("minimum"),
    aten.clamp: _clamp,
    aten.clamp_min: lambda e, x, m: _clamp(e, x, min=m),
    aten.clamp_max: lambda e, x, m: _clamp(e, x, max=m),
    aten.eq: _binary("=="), aten.ne: _binary("!="), aten.lt: _binary("<"),
    aten.le: _binary("<="), aten.gt: _binary(">"), aten.ge: _binary(">="),
    aten.logical_and: _logical("&"), aten.logical_or: _logical("|"),
    aten.logical_xor: _logical("^"),
    aten.bitwise_and: _binary("&"), aten.bitwise_or: _binary("|"),
    aten.bitwise_xor: _binary("^"),
    aten.where: _where,
    aten.threshold_backward: _threshold_backward,
    aten._to_copy: _to_copy, prims.convert_element_type: _convert,
    aten.clone: _identity, aten.alias: _identity, aten.detach: _identity,
    aten.lift_fresh_copy: _identity,
    aten.permute: _permute, aten.transpose: _transpose, aten.t: _t, aten.cat: _cat,
    aten.constant_pad_nd: _constant_pad_nd,
    aten.flip: lambda e, x, dims: f"fl.flip({tensor(x)}, {lit(_dims(x, dims))})",
    aten.copy: _copy, aten.slice_scatter: _slice_scatter,
    # the store itself is written by region.RegionSource (it needs the raw parameter)
    aten.copy_: lambda e, dst, src, non_blocking=False: tensor(dst).name,
    aten.index_select: _index_select,
    aten.embedding: lambda e, weight, indices, padding_idx=-1, scale_grad_by_freq=False,
    sparse=False: f"fl.take({tensor(weight)}, {tensor(indices)}, axis=0)",
    aten.index: _index,
    aten.gather: lambda e, x, dim, index, sparse_grad=False:
        f"fl.take_along({tensor(x)}, {tensor(index)}, axis={_dims(x, dim)[0]})",
    aten.full: _full, aten.arange: _arange,
    aten.scalar_tensor: lambda e, s, dtype=None, layout=None, device=None, pin_memory=None:
        _constant("()", s, dtype),
    aten.full_like: _like(None), aten.zeros_like: _like(0), aten.ones_like: _like(1),
    aten.unsqueeze: _unsqueeze, aten.squeeze: _squeeze, aten.expand: _expand,
    aten.repeat: _repeat,
    # view/reshape/slice/select stay aten (replayed at region results, or between
    # regions): lowered inside regions as fusec reshapes and slices, the transformer
    # block's training step ran 13x slower on the H200 (benchmarks/RESULTS.md)
    aten.sum: _accumulating("sum"), aten.prod: _accumulating("prod"),
    aten.mean: _accumulating("mean"),
    aten.amax: _extreme("max"), aten.amin: _extreme("min"),
    aten.argmax: _arg_extreme("argmax"), aten.argmin: _arg_extreme("argmin"),
    aten.max: _extreme_with_index("max"), aten.min: _extreme_with_index("min"),
    aten.var: _var, aten.var_mean: _var_mean,
    aten.cumsum: _scan("sum"), aten.cumprod: _scan("prod"),
    aten.max_pool2d_with_indices: _max_pool2d,
    aten.max_pool2d_with_indices_backward: _max_pool2d_backward,
    OFFSETS.overloadpacket: _max_pool2d_offsets,
    OFFSETS_BACKWARD.overloadpacket: _max_pool2d_offsets_backward,
    aten.avg_pool2d: _avg_pool2d, aten.avg_pool2d_backward: _avg_pool2d_backward,
    aten._adaptive_avg_pool2d: _global_avg_pool,
    aten._adaptive_avg_pool2d_backward: _global_avg_pool_backward,
    aten.any: _any_all("max"), aten.all: _any_all("min"), aten.sign: _sign,
}

# Overloads whose meaning differs from their packet's rule.
UNSUPPORTED_OVERLOADS = {
    aten.max.default: "max of a whole tensor without dim (aten.amax is lowered)",
    aten.min.default: "min of a whole tensor without dim (aten.amin is lowered)",
    aten.max.other: "elementwise max as aten.max.other (aten.maximum is lowered)",
    aten.min.other: "elementwise min as aten.min.other (aten.minimum is lowered)",
    aten.var.default: "var with `unbiased` (the decomposed var.correction is lowered)",
    aten.var.dim: "var with `unbiased` (the decomposed var.correction is lowered)",
    aten.var_mean.default: "var_mean with `unbiased` (var_mean.correction is lowered)",
    aten.var_mean.dim: "var_mean with `unbiased` (var_mean.correction is lowered)",
}

# Results that may alias their input: replayed by aten when a fused region returns them.
VIEWS = {aten.view, aten._unsafe_view, aten.reshape, aten.squeeze, aten.unsqueeze,
         aten.permute, aten.transpose, aten.t, aten.expand, aten.alias, aten.detach,
         aten.slice, aten.select, aten.as_strided, aten.split, aten.split_with_sizes,
         aten.unbind, aten.diagonal, aten.unfold, aten.clone, aten.lift_fresh_copy}


def packet(target):
    return getattr(target, "overloadpacket", target)


def rule_for(target, matmul: str):
    """The rule of an fx call target, or raise Unsupported."""
    if target in UNSUPPORTED_OVERLOADS:
        raise Unsupported(UNSUPPORTED_OVERLOADS[target])
    p = packet(target)
    if p in MATMULS:
        if matmul == "aten":
            raise Unsupported("matmuls go to the vendor library (torch_backend(matmul="
                              "'fusec' or 'auto') runs them as fusec kernels)")
        return MATMULS[p]       # "auto": the graph's support asked matmul_choice first
    if p not in RULES:
        raise Unsupported(f"no fusec lowering for {getattr(target, '__name__', target)}")
    return RULES[p]


# aten view overloads -> the Tensor methods doing the same: the same view, for a third of
# the dispatch cost of calling the overload (torch.ops' Python entry); these run on every
# call of a compiled graph, outside its regions
VIEW_METHODS = {aten.view.default: torch.Tensor.view,
                aten._unsafe_view.default: torch.Tensor.view,
                aten.permute.default: torch.Tensor.permute,
                aten.expand.default: torch.Tensor.expand,
                aten.transpose.int: torch.Tensor.transpose,
                aten.t.default: torch.Tensor.t,
                aten.unsqueeze.default: torch.Tensor.unsqueeze,
                aten.squeeze.dim: torch.Tensor.squeeze,
                aten.split_with_sizes.default: torch.Tensor.split_with_sizes,
                aten.select.int: torch.Tensor.select}


_VIEW_METHOD_SET = set(VIEW_METHODS.values())


# the same saving for the matmuls aten runs between regions (torch.mm 2.4 us a call on the
# CPU against the overload's 3.3)
MATMUL_FUNCTIONS = {aten.mm.default: torch.mm, aten.bmm.default: torch.bmm,
                    aten.addmm.default: torch.addmm}


def fast_view(node) -> None:
    """Run a view node of an FX graph through its Tensor method (no kwargs: the methods'
    keywords differ from the overloads')."""
    method = VIEW_METHODS.get(node.target)
    if method is not None and not node.kwargs and not (
            node.target is aten.expand.default and len(node.args) != 2):   # implicit=
        node.target = method


def fast_call(node) -> None:
    """fast_view, and a matmul through its torch function (positional arguments only)."""
    function = MATMUL_FUNCTIONS.get(node.target)
    if function is not None and not node.kwargs:
        node.target = function
    else:
        fast_view(node)


def is_view(target) -> bool:
    return packet(target) in VIEWS or target in _VIEW_METHOD_SET


COPIES = {aten.clone, aten.lift_fresh_copy}       # listed among VIEWS, but they copy


def launches_nothing(target) -> bool:
    """A getitem of a tuple result, or a view: no device kernel of its own."""
    return target is operator.getitem or (is_view(target) and packet(target) not in COPIES)


def is_row_major_copy(node) -> bool:
    """A clone whose traced result is row-major: a copy a region computes (its kernel writes
    row-major results, as eager's clone does here), not a view aten replays. A clone keeping
    another layout (preserve_format of a permuted tensor) stays aten's."""
    if node.op != "call_function" or packet(node.target) not in COPIES:
        return False
    if node.kwargs.get("memory_format") is torch.contiguous_format:
        return True
    value = node.meta.get("val")
    try:
        return isinstance(value, torch.Tensor) and bool(value.is_contiguous())
    except Exception:                 # a symbolic layout not decidable here
        return False


def replayed_by_aten(node) -> bool:
    """A region's node that aten replays on the kernel's results (a view), not computed."""
    return is_view(node.target) and not is_row_major_copy(node)


def is_cast(node) -> bool:
    """x.to(dtype): an _to_copy changing the dtype only."""
    return (isinstance(node, Node) and node.op == "call_function"
            and node.target is aten._to_copy.default and len(node.args) == 1
            and set(node.kwargs) == {"dtype"})


def computes(node) -> bool:
    """A node a region's kernel computes something for (not a getitem, not a view)."""
    return node.target is not operator.getitem and not replayed_by_aten(node)
