"""Per-element semantics of the IR's unary, binary, compare and cast ops (ir/ops.py), and
the conversions between storage and compute types.

Each rule takes (ctx, dtype, *values) with values in the compute type (types.py) and
returns the result in the compute type. Rules never trap: integer division by zero gives 0
and INT_MIN // -1 wraps, without ever executing a trapping `sdiv` (SIGFPE would kill the
Python process). Half floats are computed in float32 and rounded after every op (round()).
"""
from __future__ import annotations

import llvmlite.ir as ir
import numpy as np

from ...ir import dtypes as D
from ...ir.dtypes import DType
from ...ir.ops import FLOAT_UNARY
from . import math as fmath
from .context import Ctx
from ..numeric import bf16_bits_to_f32, f32_to_bf16_bits
from .types import F16, F32, F64, I1, I8, I16, I32, compute, is_signed


def _zero(ty):
    return ir.Constant(ty, 0.0 if isinstance(ty, (ir.FloatType, ir.DoubleType)) else 0)


def _unsupported(op: str, d: DType):
    raise NotImplementedError(f"llvm backend: op {op!r} is not defined on {d}")


# -- half float rounding -------------------------------------------------------------------
def round_bf16_bits(ctx: Ctx, x):
    """float -> bfloat16 bits in the low half of an i32 (round to nearest even; NaN ->
    0x7FC0), as backends.numeric.f32_to_bf16_bits; a target's conversion instruction where
    it has one (Target.bf16_bits: on the GPU a NaN becomes 0x7FFF, as with CUDA C)."""
    b = ctx.b
    if ctx.target.bf16_bits is not None:
        return ctx.target.bf16_bits(ctx, x)
    bits = b.bitcast(x, I32)
    lsb = b.and_(b.lshr(bits, ir.Constant(I32, 16)), ir.Constant(I32, 1))
    r = b.lshr(b.add(bits, b.add(lsb, ir.Constant(I32, 0x7FFF))), ir.Constant(I32, 16))
    return b.select(b.fcmp_unordered("uno", x, x), ir.Constant(I32, 0x7FC0), r)


def round_half(ctx: Ctx, d: DType, x):
    """Round a float holding a half-type value's computation to that type (kept in f32)."""
    b = ctx.b
    if d == D.float16:
        return b.fpext(b.fptrunc(x, F16), F32)
    if d == D.bfloat16:
        bits = round_bf16_bits(ctx, x)
        rounded = b.bitcast(b.shl(bits, ir.Constant(I32, 16)), F32)
        ctx.bf16_bits_of[rounded] = bits        # to_storage need not round it again
        return rounded
    return x


def _rounded(fn):
    """Wrap a float rule so that half types are rounded after it."""
    def rule(ctx, d, *xs):
        return round_half(ctx, d, fn(ctx, d, *xs))
    return rule


# -- storage <-> compute ---------------------------------------------------------------------
def from_storage(ctx: Ctx, d: DType, v):
    b = ctx.b
    if d == D.bool_:
        return b.icmp_unsigned("!=", v, ir.Constant(I8, 0))
    if d == D.float16:
        return b.fpext(v, F32)
    if d == D.bfloat16:
        return b.bitcast(b.shl(b.zext(v, I32), ir.Constant(I32, 16)), F32)
    return v


def to_storage(ctx: Ctx, d: DType, v):
    b = ctx.b
    if d == D.bool_:
        return b.zext(v, I8)
    if d == D.float16:
        return b.fptrunc(v, F16)
    if d == D.bfloat16:           # also canonicalizes NaN like the interpreter's stores
        bits = ctx.bf16_bits_of.get(v)
        return b.trunc(bits if bits is not None else round_bf16_bits(ctx, v), I16)
    return v


def to_buffer(ctx: Ctx, d: DType, v):
    """Compute value -> buffer element (bool as i8)."""
    return ctx.b.zext(v, I8) if d == D.bool_ else v


def from_buffer(ctx: Ctx, d: DType, v):
    return ctx.b.trunc(v, I1) if d == D.bool_ else v


# -- unary -------------------------------------------------------------------------------------
def _neg(ctx, d, x):
    if d.is_float:
        return ctx.b.fneg(x)
    if d.is_bool:
        _unsupported("neg", d)
    return ctx.b.sub(_zero(x.type), x)


def _abs(ctx, d, x):
    if d.is_float:
        return ctx.intrinsic("fabs", [x])
    if not is_signed(d):
        return x
    neg = ctx.b.icmp_signed("<", x, _zero(x.type))
    return ctx.b.select(neg, ctx.b.sub(_zero(x.type), x), x)


def _relu(ctx, d, x):
    if d.is_bool or d.kind == "u":
        return x
    b = ctx.b
    neg = (b.fcmp_ordered("<", x, _zero(x.type)) if d.is_float
           else b.icmp_signed("<", x, _zero(x.type)))
    return b.select(neg, _zero(x.type), x)          # NaN stays NaN, like np.maximum


def _not(ctx, d, x):
    if d.is_float:
        _unsupported("not", d)
    return ctx.b.xor(x, ir.Constant(x.type, -1 if not d.is_bool else 1))


UNARY = {"neg": _neg, "abs": _abs, "relu": _relu, "not": _not}
UNARY.update({name: _rounded(lambda ctx, d, x, _n=name: fmath.float_unary(ctx, _n, x))
              for name in FLOAT_UNARY})


def unary(ctx: Ctx, name: str, d: DType, x):
    if name not in UNARY:
        raise NotImplementedError(f"llvm backend: unknown unary op {name!r}")
    if name not in ("neg", "abs", "relu", "not") and not d.is_float:
        _unsupported(name, d)
    return UNARY[name](ctx, d, x)


# -- binary: integers --------------------------------------------------------------------------
def _safe_divisor(ctx, d, y):
    """(divisor with 0 and -1 replaced by 1, y == 0, y == -1): sdiv/udiv never traps."""
    b = ctx.b
    zero = b.icmp_unsigned("==", y, _zero(y.type))
    if not is_signed(d):
        return b.select(zero, ir.Constant(y.type, 1), y), zero, None
    minus1 = b.icmp_signed("==", y, ir.Constant(y.type, -1))
    return b.select(b.or_(zero, minus1), ir.Constant(y.type, 1), y), zero, minus1


def _int_floordiv(ctx, d, x, y):
    b = ctx.b
    safe, zero, minus1 = _safe_divisor(ctx, d, y)
    if not is_signed(d):
        return b.select(zero, _zero(x.type), b.udiv(x, safe))
    q = b.sdiv(x, safe)
    r = b.srem(x, safe)
    # Python floors: step down when the remainder is nonzero and its sign differs from y's.
    adjust = b.and_(b.icmp_signed("!=", r, _zero(r.type)),
                    b.icmp_signed("<", b.xor(r, y), _zero(r.type)))
    q = b.sub(q, b.zext(adjust, x.type))
    q = b.select(minus1, b.sub(_zero(x.type), x), q)        # x // -1 == -x (wrapping)
    return b.select(zero, _zero(x.type), q)


def _int_mod(ctx, d, x, y):
    b = ctx.b
    safe, zero, minus1 = _safe_divisor(ctx, d, y)
    if not is_signed(d):
        return b.select(zero, _zero(x.type), b.urem(x, safe))
    r = b.srem(x, safe)
    adjust = b.and_(b.icmp_signed("!=", r, _zero(r.type)),
                    b.icmp_signed("<", b.xor(r, y), _zero(r.type)))
    r = b.add(r, b.select(adjust, y, _zero(r.type)))
    return b.select(b.or_(zero, minus1), _zero(x.type), r)


def _int_fmod(ctx, d, x, y):
    """C's remainder (the dividend's sign); 0 for a zero divisor (and for -1: no trap)."""
    b = ctx.b
    safe, zero, minus1 = _safe_divisor(ctx, d, y)
    if not is_signed(d):
        return b.select(zero, _zero(x.type), b.urem(x, safe))
    return b.select(b.or_(zero, minus1), _zero(x.type), b.srem(x, safe))


def _int_pow(ctx, d, x, y):
    """x ** max(y, 0) with wrapping multiplication (np.power on ints), by squaring in a
    small helper function."""
    ty = x.type
    name = f"fusec.ipow.i{ty.width}"
    fn = ctx.module.globals.get(name)
    if fn is None:
        fn = ir.Function(ctx.module, ir.FunctionType(ty, [ty, ty]), name=name)
        fn.linkage = "internal"
        entry, loop, done = (fn.append_basic_block(n) for n in ("entry", "loop", "done"))
        b = ir.IRBuilder(entry)
        base0, exp0 = fn.args
        if is_signed(d):
            exp0 = b.select(b.icmp_signed("<", exp0, _zero(ty)), _zero(ty), exp0)
        b.cbranch(b.icmp_unsigned("==", exp0, _zero(ty)), done, loop)
        b.position_at_end(loop)
        acc, base, e = b.phi(ty), b.phi(ty), b.phi(ty)
        odd = b.trunc(e, I1)
        acc2 = b.select(odd, b.mul(acc, base), acc)
        base2 = b.mul(base, base)
        e2 = b.lshr(e, ir.Constant(ty, 1))
        for phi, init, nxt in ((acc, ir.Constant(ty, 1), acc2), (base, base0, base2),
                               (e, exp0, e2)):
            phi.add_incoming(init, entry)
            phi.add_incoming(nxt, loop)
        b.cbranch(b.icmp_unsigned("==", e2, _zero(ty)), done, loop)
        b.position_at_end(done)
        res = b.phi(ty)
        res.add_incoming(ir.Constant(ty, 1), entry)
        res.add_incoming(acc2, loop)
        b.ret(res)
    return ctx.b.call(fn, [x, y])


def _imax(ctx, d, x, y):
    c = ctx.b.icmp_signed(">", x, y) if is_signed(d) else ctx.b.icmp_unsigned(">", x, y)
    return ctx.b.select(c, x, y)


def _imin(ctx, d, x, y):
    c = ctx.b.icmp_signed("<", x, y) if is_signed(d) else ctx.b.icmp_unsigned("<", x, y)
    return ctx.b.select(c, x, y)


INT_BINARY = {
    "add": lambda c, d, x, y: c.b.add(x, y), "sub": lambda c, d, x, y: c.b.sub(x, y),
    "mul": lambda c, d, x, y: c.b.mul(x, y), "floordiv": _int_floordiv, "mod": _int_mod,
    "fmod": _int_fmod,
    "maximum": _imax, "minimum": _imin, "pow": _int_pow,
    "and": lambda c, d, x, y: c.b.and_(x, y), "or": lambda c, d, x, y: c.b.or_(x, y),
    "xor": lambda c, d, x, y: c.b.xor(x, y),
}

# numpy on bool arrays: + is or, * is and, // and ** go through int8 and back to bool.
BOOL_BINARY = {
    "add": lambda c, d, x, y: c.b.or_(x, y), "mul": lambda c, d, x, y: c.b.and_(x, y),
    "maximum": lambda c, d, x, y: c.b.or_(x, y), "minimum": lambda c, d, x, y: c.b.and_(x, y),
    "floordiv": lambda c, d, x, y: c.b.and_(x, y), "mod": lambda c, d, x, y: ir.Constant(I1, 0),
    "fmod": lambda c, d, x, y: ir.Constant(I1, 0),
    "pow": lambda c, d, x, y: c.b.or_(x, c.b.xor(y, ir.Constant(I1, 1))),
    "and": lambda c, d, x, y: c.b.and_(x, y), "or": lambda c, d, x, y: c.b.or_(x, y),
    "xor": lambda c, d, x, y: c.b.xor(x, y),
}


# -- binary: floats ----------------------------------------------------------------------------
def _fmod(ctx, d, x, y):
    """np.mod: the result takes the divisor's sign; x % 0 is NaN (fmod's)."""
    b = ctx.b
    r = ctx.frem(x, y)
    zero = _zero(x.type)
    fix = b.and_(b.fcmp_ordered("!=", r, zero),
                 b.xor(b.fcmp_ordered("<", y, zero), b.fcmp_ordered("<", r, zero)))
    r = b.select(fix, b.fadd(r, y), r)
    signed_zero = ctx.intrinsic("copysign", [zero, y])
    return b.select(b.fcmp_ordered("==", r, zero), signed_zero, r)


def _ffloordiv(ctx, d, x, y):
    """np.floor_divide / Python's float //: from the remainder, so that
    (x // y) * y + x % y == x holds (7.0 // 0.1 is 69, not floor(7.0 / 0.1) = 70)."""
    b = ctx.b
    zero = _zero(x.type)
    r = ctx.frem(x, y)
    q = b.fdiv(b.fsub(x, r), y)
    fix = b.and_(b.fcmp_ordered("!=", r, zero),
                 b.xor(b.fcmp_ordered("<", y, zero), b.fcmp_ordered("<", r, zero)))
    q = b.select(fix, b.fsub(q, ir.Constant(x.type, 1.0)), q)
    f = ctx.intrinsic("floor", [q])
    f = b.select(b.fcmp_ordered(">", b.fsub(q, f), ir.Constant(x.type, 0.5)),
                 b.fadd(f, ir.Constant(x.type, 1.0)), f)
    f = b.select(b.fcmp_ordered("==", q, zero), ctx.intrinsic("copysign", [zero, b.fdiv(x, y)]),
                 f)
    return b.select(b.fcmp_ordered("==", y, zero), b.fdiv(x, y), f)


def _fmax(ctx, d, x, y):
    """np.maximum: NaN in either operand gives NaN."""
    b = ctx.b
    take_x = b.or_(b.fcmp_unordered("uno", x, x), b.fcmp_ordered(">", x, y))
    return b.select(take_x, x, y)


def _fmin(ctx, d, x, y):
    b = ctx.b
    take_x = b.or_(b.fcmp_unordered("uno", x, x), b.fcmp_ordered("<", x, y))
    return b.select(take_x, x, y)


FLOAT_BINARY = {
    "add": _rounded(lambda c, d, x, y: c.b.fadd(x, y)),
    "sub": _rounded(lambda c, d, x, y: c.b.fsub(x, y)),
    "mul": _rounded(lambda c, d, x, y: c.b.fmul(x, y)),
    "div": _rounded(lambda c, d, x, y: c.b.fdiv(x, y)),
    "floordiv": _rounded(_ffloordiv),
    "mod": _rounded(_fmod),
    "fmod": _rounded(lambda c, d, x, y: c.frem(x, y)),     # exact (C's fmod)
    "pow": _rounded(lambda c, d, x, y: c.intrinsic("pow", [x, y])),
    "atan2": _rounded(lambda c, d, x, y: c.call_libm("atan2", [x, y])),
    "hypot": _rounded(lambda c, d, x, y: c.call_libm("hypot", [x, y])),
    "copysign": _rounded(lambda c, d, x, y: c.intrinsic("copysign", [x, y])),
    "maximum": _fmax, "minimum": _fmin,
}


def binary(ctx: Ctx, name: str, d: DType, x, y):
    table = FLOAT_BINARY if d.is_float else BOOL_BINARY if d.is_bool else INT_BINARY
    rule = table.get(name)
    if rule is None:
        _unsupported(name, d)
    return rule(ctx, d, x, y)


# -- compare -----------------------------------------------------------------------------------
_CMP = {"eq": "==", "ne": "!=", "lt": "<", "le": "<=", "gt": ">", "ge": ">="}


def compare(ctx: Ctx, name: str, d: DType, x, y):
    op = _CMP[name]
    if d.is_float:        # ordered, except != which is true for NaN (as in numpy)
        return (ctx.b.fcmp_unordered(op, x, y) if name == "ne"
                else ctx.b.fcmp_ordered(op, x, y))
    if is_signed(d):
        return ctx.b.icmp_signed(op, x, y)
    return ctx.b.icmp_unsigned(op, x, y)


# -- cast --------------------------------------------------------------------------------------
def _f64_to_f16(ctx, x):
    """double -> half rounded once: round to float with round-to-odd (truncate, then set the
    last bit when inexact), after which float -> half round-to-nearest-even is exact
    double rounding (float has >= 2 more bits than half)."""
    b = ctx.b
    f = b.fptrunc(x, F32)
    back = b.fpext(f, F64)
    inexact = b.fcmp_ordered("!=", back, x)
    too_far = b.fcmp_ordered(">", ctx.intrinsic("fabs", [back]), ctx.intrinsic("fabs", [x]))
    bits = b.bitcast(f, I32)
    bits = b.sub(bits, b.zext(b.and_(inexact, too_far), I32))       # toward zero
    bits = b.or_(bits, b.zext(inexact, I32))                         # sticky odd bit
    return b.fpext(b.fptrunc(b.bitcast(bits, F32), F16), F32)


def cast(ctx: Ctx, src: DType, dst: DType, x):
    """The IR's cast (backends.numeric.cast): float->int truncates and saturates, NaN -> 0;
    int->float goes through float64 like the interpreter; half floats round to nearest."""
    b = ctx.b
    if src == dst:
        return x
    cty = compute(dst)
    if dst.is_bool:
        if src.is_float:
            return b.fcmp_unordered("!=", x, _zero(x.type))        # NaN is True
        return b.icmp_unsigned("!=", x, _zero(x.type))
    if dst.is_int:
        if src.is_float:
            sat = "fptosi.sat" if is_signed(dst) else "fptoui.sat"
            return ctx.intrinsic(sat, [x], cty, overload=[cty, x.type])
        if cty.width < x.type.width:
            return b.trunc(x, cty)
        if cty.width == x.type.width:
            return x
        return b.sext(x, cty) if is_signed(src) else b.zext(x, cty)
    # dst is a float
    if src.is_bool or src.is_int:
        conv = b.sitofp if is_signed(src) else b.uitofp
        if dst == D.float64:
            return conv(x, F64)
        if x.type.width > 24 or dst == D.float16:    # int -> double -> dst, as numpy does
            wide = conv(x, F64)
            return _f64_to_f16(ctx, wide) if dst == D.float16 else \
                round_half(ctx, dst, b.fptrunc(wide, F32))
        return round_half(ctx, dst, conv(x, F32))
    if src == D.float64:
        if dst == D.float16:
            return _f64_to_f16(ctx, x)
        return round_half(ctx, dst, b.fptrunc(x, F32))          # bf16: via float32
    if dst == D.float64:
        return b.fpext(x, F64)
    return round_half(ctx, dst, x)                              # among f16 / bf16 / f32


# -- constants ---------------------------------------------------------------------------------
def constant(d: DType, value) -> ir.Constant:
    """A Python bool/int/float as a compute-type constant (half floats rounded)."""
    ty = compute(d)
    if d.is_bool:
        return ir.Constant(ty, int(bool(value)))
    if d.is_int:
        bits = ty.width
        v = int(value)
        v &= (1 << bits) - 1
        return ir.Constant(ty, v - (1 << bits) if v >> (bits - 1) else v)
    v = float(value)
    with np.errstate(all="ignore"):
        if d == D.float16:
            v = float(np.float16(v))
        elif d == D.bfloat16:
            v = float(bf16_bits_to_f32(f32_to_bf16_bits(np.float32(v))).reshape(-1)[0])
        elif d == D.float32:
            v = float(np.float32(v))
    return ir.Constant(ty, v)


def zero(d: DType) -> ir.Constant:
    return _zero(compute(d))

