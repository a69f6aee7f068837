"""Float math (the IR's FLOAT_UNARY ops) as scalar LLVM IR, keyed by op name and type.

float32 functions are written out in LLVM IR (range reduction + polynomial, selects instead
of branches) so that the loop vectorizer can turn them into SIMD code: a call to libm per
element would block it. float64 functions call the C math library (they follow the
interpreter's formulas exactly, which the tests compare against at rtol 1e-12). Half floats
use the float32 versions and are rounded by the caller.

Accuracy (float32, against the float64 reference): exp/exp2/log/log2/tanh/sigmoid/silu
within ~2 ulp, erf/gelu/gelu_tanh within ~4 ulp over the whole range (relative, also on the
small tails of gelu for negative inputs). sin/cos call libm (sinf/cosf): not vectorized.

Polynomial coefficients were fitted by least squares (mpmath, 50 digits) on Chebyshev nodes
and rounded to float32; tests/unit/test_llvm_math.py checks the error bounds.
"""
from __future__ import annotations

import math

import llvmlite.ir as ir

from ...ir.ops import LIBM_UNARY
from .. import erf_polys
from .context import Ctx
from .types import F32, F64, I32

LOG2E = 1.4426950408889634
LOG2E_HI = 1.4426950216293335             # float32(log2 e)
LOG2E_LO = 1.925963033500011e-08          # log2 e - LOG2E_HI
_ROUNDER = 12582912.0                     # 1.5 * 2**23: x + it rounds x to an integer
LN2_HI = 0.693147182464599609375          # float32(ln 2)
LN2_LO = -1.904654323148236e-09           # ln 2 - LN2_HI
INV_SQRT2 = 0.7071067811865476
SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)

# exp(r) for |r| <= ln2/2: Taylor to degree 7 (truncation error < 0.05 ulp).
_EXP_POLY = [1.0, 1.0, 1 / 2, 1 / 6, 1 / 24, 1 / 120, 1 / 720, 1 / 5040]
# log: fdlibm/FreeBSD e_logf.c, |(log(1+s)-log(1-s))/s - Lg(s)| < 2**-34.24.
_LG1, _LG2, _LG3, _LG4 = 0.66666662693, 0.40000972152, 0.28498786688, 0.24279078841
# tanh(x) = x + x^3 P(x^2) for |x| < 0.625.
_TANH_POLY = [-0.3333333432674408, 0.1333330273628235, -0.05395911633968353,
              0.02176789753139019, -0.008340987376868725, 0.002289738040417433]
_TANH_SMALL = 0.625
# erf(x) = x P(x^2) for |x| < 1 (backends/erf_polys.py)
_ERF_POLY = erf_polys.ERF_SMALL
# erfc(z) = exp(-z^2 + G(z - 2.5)) for 1 <= z <= 4: erf = 1 - erfc within 0.1 ulp there
# (numpy least squares on Chebyshev nodes, weighted by erfc; float32 coefficients).
_ERFC_MID_POLY = [-1.5568177700042725, -0.3526928424835205, 0.05612044408917427,
                  -0.010706097818911076, 0.00246910541318357, -0.00015067031199578196,
                  0.00018655171152204275]
_ERF_ONE = 4.0                            # erfc(4) < half an ulp of 1: erf = 1 from here
# erfc(z) = t exp(-z^2 + G(t)), t = 1 / (1 + z/2), for 0.5 <= z <= 10.5 (the form of
# Numerical Recipes' erfcc, refitted).
_ERFC_POLY = [-1.2655363082885742, 1.000714898109436, 0.3658381998538971,
              0.15038445591926575, -0.3951967656612396, 0.7882419228553772,
              -1.9172217845916748, 2.222254514694214, -1.2062488794326782,
              0.25680410861968994]


class _F32:
    """Terse float32 arithmetic on a builder (the math below reads like the formulas)."""

    def __init__(self, ctx: Ctx):
        self.ctx, self.b = ctx, ctx.b

    def k(self, v: float) -> ir.Constant:
        return ir.Constant(F32, v)

    def add(self, a, b): return self.b.fadd(a, b)
    def sub(self, a, b): return self.b.fsub(a, b)
    def mul(self, a, b): return self.b.fmul(a, b)
    def div(self, a, b): return self.b.fdiv(a, b)
    def lt(self, a, b): return self.b.fcmp_ordered("<", a, b)
    def gt(self, a, b): return self.b.fcmp_ordered(">", a, b)
    def eq(self, a, b): return self.b.fcmp_ordered("==", a, b)
    def isnan(self, a): return self.b.fcmp_unordered("uno", a, a)
    def sel(self, c, a, b): return self.b.select(c, a, b)
    def fma(self, a, b, c): return self.ctx.intrinsic("fma", [a, b, c])
    def abs(self, a): return self.ctx.intrinsic("fabs", [a])
    def rint(self, a): return self.ctx.intrinsic("rint", [a])
    def copysign(self, a, s): return self.ctx.intrinsic("copysign", [a, s])

    def clamp(self, x, lo: float, hi: float):
        """Clamp with NaN mapped to `lo` (so no NaN reaches float->int conversions)."""
        x = self.sel(self.gt(x, self.k(lo)), x, self.k(lo))
        return self.sel(self.lt(x, self.k(hi)), x, self.k(hi))

    @property
    def hardware_exp2(self):
        """Target.exp2_hardware: 2**q as one instruction (None: polynomials)."""
        return self.ctx.target.exp2_hardware

    def exp_reduced(self, r):
        """exp(r) for |r| <= ln(2)/2 by a Taylor polynomial."""
        return self.poly(r, _EXP_POLY)

    def exp2_reduced(self, r):
        """2**r for |r| <= 1/2 by a Taylor polynomial."""
        return self.poly(self.mul(r, self.k(math.log(2.0))), _EXP_POLY)

    def unit_clamp(self, x, scale: float, offset: float):
        """x * scale + offset clamped to [0, 1] (NaN to 0): Target.fma_saturate where the
        target has one (the FMA pipe instead of two selects), else fma and selects."""
        fma_sat = self.ctx.target.fma_saturate
        if fma_sat is not None:
            return fma_sat(self.ctx, x, self.k(scale), self.k(offset))
        v = self.fma(x, self.k(scale), self.k(offset))
        v = self.sel(self.gt(v, self.k(0.0)), v, self.k(0.0))
        return self.sel(self.lt(v, self.k(1.0)), v, self.k(1.0))

    def exp2_split(self, x, scale: float, frac):
        """2**(n + frac(n)) by the target's 2**q, n = rint(x * scale) clamped to [-126, 127]
        so that 2**n is a normal float formed from its bits; the hardware carries the rest
        of the range in 2**frac(n) (overflow to inf, subnormal and zero results by the one
        rounding of the product). NaN and infinities come through."""
        b = self.b
        # t = 1.5 * 2**23 + n: adding _ROUNDER rounds to an integer, its low bits hold n.
        # The clamp is taken on u in [0, 1] mapping [-126, 127] (n one off near a
        # half-integer leaves |frac| a hair over 1/2)
        u = self.unit_clamp(x, scale / 253.0, 126.0 / 253.0)
        t = self.fma(u, self.k(253.0), self.k(_ROUNDER - 126.0))
        n = self.sub(t, self.k(_ROUNDER))                      # exact
        # t's low mantissa bits hold n + 2**22: shifted up, they are n's exponent field
        bits = b.add(b.shl(b.bitcast(t, I32), ir.Constant(I32, 23)),
                     ir.Constant(I32, 127 << 23))
        return self.mul(self.hardware_exp2(self.ctx, frac(n)), b.bitcast(bits, F32))

    def poly(self, x, coefs):
        """Horner evaluation of sum(coefs[i] * x**i) with fused multiply-adds."""
        p = self.k(coefs[-1])
        for c in reversed(coefs[:-1]):
            p = self.fma(p, x, self.k(c))
        return p

    def ldexp2(self, p, n):
        """p * 2**n for int32 n in [-160, 130]: two steps keep each factor normal, so the
        result rounds once (also into the subnormal range)."""
        b = self.b
        n1 = b.ashr(n, ir.Constant(I32, 1))
        n2 = b.sub(n, n1)
        return self.mul(self.mul(p, self.pow2(n1)), self.pow2(n2))

    def pow2(self, n):
        """2**n for int32 n in [-126, 127]."""
        b = self.b
        return b.bitcast(b.shl(b.add(n, ir.Constant(I32, 127)), ir.Constant(I32, 23)), F32)

    def nan_passthrough(self, x, result):
        return self.sel(self.isnan(x), x, result)


def _exp_core(f: _F32, a, b=None, normal: bool = False):
    """exp(a + b), b a small correction (|b| < 4) carrying the low part of the argument.
    Not NaN-aware on targets without Target.exp2_hardware: callers select the NaN input
    through. normal: the caller knows a + b in [-80, 80] (no clamp, one scaling by 2**n)."""
    if f.hardware_exp2 is not None:
        return _exp_by_hardware(f, a, b)
    if not normal:
        a = f.clamp(a, -110.0, 90.0)        # exp overflows above 88.8, is 0 below -103.9
    s = a if b is None else f.add(a, b)
    n = f.rint(f.mul(s, f.k(LOG2E)))
    r = f.fma(n, f.k(-LN2_HI), a)            # exact-ish: n * LN2_HI is close to a
    if b is not None:
        r = f.add(r, b)
    r = f.fma(n, f.k(-LN2_LO), r)
    if normal:
        return f.mul(f.exp_reduced(r), f.pow2(f.b.fptosi(n, I32)))
    return f.ldexp2(f.exp_reduced(r), f.b.fptosi(n, I32))


def _exp_by_hardware(f: _F32, a, b=None):
    """exp(a + b) = 2**n * 2**f, f = (a + b) log2 e - n formed with log2 e in two parts
    (one rounding of a small difference: ~0.3 ulp). NaN and infinities come through."""
    def frac(n):
        q = f.fma(a, f.k(LOG2E_HI), f.b.fneg(n))       # exact product, small difference
        q = f.fma(a, f.k(LOG2E_LO), q)
        return q if b is None else f.fma(b, f.k(LOG2E), q)
    return f.exp2_split(a if b is None else f.add(a, b), LOG2E_HI, frac)


def exp_f32(ctx, x):
    f = _F32(ctx)
    if f.hardware_exp2 is not None:
        return _exp_by_hardware(f, x)
    return f.nan_passthrough(x, _exp_core(f, x))


def exp2_f32(ctx, x):
    f = _F32(ctx)
    if f.hardware_exp2 is not None:
        return f.exp2_split(x, 1.0, lambda n: f.sub(x, n))          # exact
    xc = f.clamp(x, -160.0, 130.0)
    n = f.rint(xc)
    r = f.sub(xc, n)                        # exact
    return f.nan_passthrough(x, f.ldexp2(f.exp2_reduced(r), f.b.fptosi(n, I32)))


def _log_parts(f: _F32, x):
    """x = 2**e * (1 + g), g in [sqrt(1/2) - 1, sqrt(2) - 1): returns (e as float, log1p(g)).
    Only meaningful for finite x > 0."""
    b = f.b
    tiny = f.lt(x, f.k(1.1754943508222875e-38))
    xs = f.sel(tiny, f.mul(x, f.k(8388608.0)), x)          # subnormals: scale by 2**23
    bits = b.bitcast(xs, I32)
    e = b.sub(b.lshr(bits, ir.Constant(I32, 23)), ir.Constant(I32, 127))
    e = b.sub(e, b.select(tiny, ir.Constant(I32, 23), ir.Constant(I32, 0)))
    m = b.bitcast(b.or_(b.and_(bits, ir.Constant(I32, 0x007FFFFF)),
                        ir.Constant(I32, 0x3F800000)), F32)
    big = f.gt(m, f.k(1.4142135623730951))
    m = f.sel(big, f.mul(m, f.k(0.5)), m)
    e = b.add(e, b.zext(big, I32))
    g = f.sub(m, f.k(1.0))
    s = f.div(g, f.add(g, f.k(2.0)))
    z = f.mul(s, s)
    w = f.mul(z, z)
    r = f.add(f.mul(z, f.fma(w, f.k(_LG3), f.k(_LG1))), f.mul(w, f.fma(w, f.k(_LG4), f.k(_LG2))))
    hfsq = f.mul(f.mul(f.k(0.5), g), g)
    log1p = f.sub(g, f.sub(hfsq, f.mul(s, f.add(hfsq, r))))
    return b.sitofp(e, F32), log1p


def _log_specials(f: _F32, x, result):
    result = f.sel(f.eq(x, f.k(math.inf)), f.k(math.inf), result)
    result = f.sel(f.eq(x, f.k(0.0)), f.k(-math.inf), result)
    result = f.sel(f.lt(x, f.k(0.0)), f.k(math.nan), result)
    return f.nan_passthrough(x, result)


def log_f32(ctx, x):
    f = _F32(ctx)
    e, log1p = _log_parts(f, x)
    result = f.fma(e, f.k(LN2_HI), f.fma(e, f.k(LN2_LO), log1p))
    return _log_specials(f, x, result)


def log2_f32(ctx, x):
    f = _F32(ctx)
    e, log1p = _log_parts(f, x)
    return _log_specials(f, x, f.fma(log1p, f.k(LOG2E), e))


def log1p_f32(ctx, x):
    """log(1 + x) by Goldberg's identity over log_f32 (vectorizable, as log_f32): with
    u = 1 + x rounded, log(u) * x / (u - 1) cancels u's rounding error; x where u rounds
    to 1 (and where u is infinite: x itself)."""
    f = _F32(ctx)
    u = f.add(x, f.k(1.0))
    d = f.sub(u, f.k(1.0))
    exact = f.mul(log_f32(ctx, u), f.div(x, d))
    keep_x = f.b.or_(f.eq(d, f.k(0.0)), f.eq(u, f.k(math.inf)))
    return f.sel(keep_x, x, exact)


def expm1_f32(ctx, x):
    """exp(x) - 1 by Kahan's identity over exp_f32/log_f32: with u = exp(x) rounded,
    (u - 1) * x / log(u); x where u rounds to 1, -1 where u - 1 does, u where u is
    infinite."""
    f = _F32(ctx)
    u = exp_f32(ctx, x)
    d = f.sub(u, f.k(1.0))
    result = f.mul(d, f.div(x, log_f32(ctx, u)))
    result = f.sel(f.eq(u, f.k(math.inf)), u, result)
    result = f.sel(f.eq(d, f.k(-1.0)), d, result)
    return f.sel(f.eq(u, f.k(1.0)), x, result)


def tanh_f32(ctx, x):
    f = _F32(ctx)
    a = f.abs(x)
    s = f.mul(x, x)
    small = f.fma(f.mul(x, s), f.poly(s, _TANH_POLY), x)
    e = _exp_core(f, f.add(a, a))
    large = f.copysign(f.sub(f.k(1.0), f.div(f.k(2.0), f.add(e, f.k(1.0)))), x)
    return f.nan_passthrough(x, f.sel(f.lt(a, f.k(_TANH_SMALL)), small, large))


def _sigmoid_parts(f: _F32, x, b=None):
    """(numerator, denominator) of sigmoid(x + b) without overflow: with e = exp(-|x|),
    1 / (1 + e) for x >= 0 and e / (1 + e) below, which keeps tiny results accurate."""
    neg = f.lt(x, f.k(0.0))
    e = _exp_core(f, f.b.fneg(f.abs(x)), None if b is None else f.sel(neg, b, f.b.fneg(b)))
    return f.sel(neg, e, f.k(1.0)), f.add(f.k(1.0), e)


def sigmoid_f32(ctx, x):
    f = _F32(ctx)
    num, den = _sigmoid_parts(f, x)
    return f.nan_passthrough(x, f.div(num, den))


def silu_f32(ctx, x):
    f = _F32(ctx)
    num, den = _sigmoid_parts(f, x)
    return f.nan_passthrough(x, f.div(f.mul(x, num), den))


def _erfc_large(f: _F32, z, sq_hi, sq_lo):
    """erfc(z) for z >= 1 (clamped to <= ~20 by the caller), with z*z = sq_hi + sq_lo given
    exactly: the exponent is formed without rounding error, which keeps erfc's relative
    accuracy on its far tail."""
    t = f.div(f.k(1.0), f.fma(z, f.k(0.5), f.k(1.0)))
    g = f.poly(t, _ERFC_POLY)
    return f.mul(t, _exp_core(f, f.b.fneg(sq_hi), f.sub(g, sq_lo)))


def _erf(f: _F32, x):
    """erf(x) without division: x P(x^2) below 1, else +-(1 - erfc(|x|)), erfc as 2**Q(u)
    where the target has Target.exp2_hardware, else with the exponent of erfc formed
    exactly. A NaN takes the first branch, which keeps it."""
    if f.hardware_exp2 is not None:    # log2 erfc in [-28, -2.6]: one 2**q, no reduction
        u = f.unit_clamp(f.abs(x), erf_polys.U_SCALE, erf_polys.U_OFFSET)   # [1, 4] -> [0, 1]
        erfc = f.hardware_exp2(f.ctx, f.poly(u, erf_polys.LOG2_ERFC))
    else:
        a = f.sel(f.lt(f.abs(x), f.k(_ERF_ONE)), f.abs(x), f.k(_ERF_ONE))
        hi = f.mul(a, a)
        lo = f.fma(a, a, f.b.fneg(hi))
        g = f.poly(f.sub(a, f.k(2.5)), _ERFC_MID_POLY)
        erfc = _exp_core(f, f.b.fneg(hi), f.sub(g, lo), normal=True)     # a^2 <= 16
    large = f.copysign(f.sub(f.k(1.0), erfc), x)
    small = f.mul(x, f.poly(f.mul(x, x), _ERF_POLY))
    return f.sel(f.b.fcmp_ordered(">=", f.abs(x), f.k(1.0)), large, small)


def erf_f32(ctx, x):
    return _erf(_F32(ctx), x)


def gelu_f32(ctx, x):
    """0.5 x (1 + erf(x / sqrt 2)); below x = -sqrt(2)/2 as 0.5 x erfc(|x| / sqrt 2), which
    avoids the cancellation in 1 + erf and keeps the tiny negative tail accurate. Targets
    with `gelu_tail_absolute` take torch's formula as it stands: half the work, and its
    negative tail is accurate relative to |x| only (as torch's and the CUDA C backend's)."""
    f = _F32(ctx)
    if ctx.target.gelu_tail_absolute:
        half = f.mul(f.k(0.5), x)       # half (1 + erf) in one rounding; NaN comes through
        return f.fma(half, _erf(f, f.mul(x, f.k(INV_SQRT2))), half)
    xc = f.clamp(x, -20.0, 20.0)
    z = f.mul(xc, f.k(INV_SQRT2))
    small = f.fma(z, f.poly(f.mul(z, z), _ERF_POLY), f.k(1.0))
    hi = f.mul(xc, xc)
    lo = f.fma(xc, xc, f.b.fneg(hi))
    erfc = _erfc_large(f, f.abs(z), f.mul(hi, f.k(0.5)), f.mul(lo, f.k(0.5)))
    large = f.sel(f.gt(x, f.k(0.0)), f.sub(f.k(2.0), erfc), erfc)
    use_small = f.b.and_(f.lt(z, f.k(1.0)), f.gt(z, f.k(-0.5)))
    one_plus_erf = f.sel(use_small, small, large)
    return f.nan_passthrough(x, f.mul(f.mul(f.k(0.5), x), one_plus_erf))


def gelu_tanh_f32(ctx, x):
    """0.5 x (1 + tanh(u)) = x sigmoid(2u), u = sqrt(2/pi) (x + 0.044715 x^3); 2u is formed
    in double and split into a float32 hi + lo pair for an accurate exp."""
    f = _F32(ctx)
    b = f.b
    d = b.fpext(x, F64)
    cube = b.fmul(b.fmul(d, d), d)
    w = b.fmul(ir.Constant(F64, 2.0 * SQRT_2_OVER_PI),
               b.fadd(d, b.fmul(ir.Constant(F64, 0.044715), cube)))
    w = b.select(b.fcmp_ordered(">", w, ir.Constant(F64, -200.0)), w, ir.Constant(F64, -200.0))
    w = b.select(b.fcmp_ordered("<", w, ir.Constant(F64, 200.0)), w, ir.Constant(F64, 200.0))
    hi = b.fptrunc(w, F32)
    lo = b.fptrunc(b.fsub(w, b.fpext(hi, F64)), F32)
    num, den = _sigmoid_parts(f, hi, lo)
    return f.nan_passthrough(x, f.div(f.mul(x, num), den))


def _intrinsic(name):
    return lambda ctx, x: ctx.intrinsic(name, [x])


def _libm(name):
    return lambda ctx, x: ctx.call_libm(name, [x])


def _rsqrt(ctx, x):
    return ctx.b.fdiv(ir.Constant(x.type, 1.0), ctx.intrinsic("sqrt", [x]))


# -- float64: the interpreter's formulas over libm -------------------------------------------
def _sigmoid_f64(ctx, x):
    """1 / (1 + exp(-x)): keeps the tail (sigmoid(-40) = 4.2e-18) that 0.5 * (1 + tanh)
    cancels to 0; exp overflowing to inf gives the right 0."""
    b = ctx.b
    e = ctx.call_libm("exp", [b.fneg(x)])
    return b.fdiv(ir.Constant(F64, 1.0), b.fadd(ir.Constant(F64, 1.0), e))


def _gelu_f64(ctx, x):
    """0.5 * x * erfc(-x / sqrt 2): erfc keeps the negative tail that 1 + erf cancels."""
    b = ctx.b
    e = ctx.call_libm("erfc", [b.fdiv(b.fneg(x), ir.Constant(F64, math.sqrt(2)))])
    return b.fmul(b.fmul(ir.Constant(F64, 0.5), x), e)


def _gelu_tanh_f64(ctx, x):
    b = ctx.b
    cube = b.fmul(b.fmul(x, x), x)
    u = b.fmul(ir.Constant(F64, SQRT_2_OVER_PI),
               b.fadd(x, b.fmul(ir.Constant(F64, 0.044715), cube)))
    t = ctx.call_libm("tanh", [u])
    return b.fmul(b.fmul(ir.Constant(F64, 0.5), x), b.fadd(ir.Constant(F64, 1.0), t))


def _silu_f64(ctx, x):
    return ctx.b.fmul(x, _sigmoid_f64(ctx, x))


_COMMON = {"sqrt": _intrinsic("sqrt"), "rsqrt": _rsqrt, "floor": _intrinsic("floor"),
           "ceil": _intrinsic("ceil"), "sin": _libm("sin"), "cos": _libm("cos"),
           "tan": _libm("tan"), "atan": _libm("atan"),
           **{name: _libm(name) for name in LIBM_UNARY}}

MATH = {
    "float": _COMMON | {
        "exp": exp_f32, "exp2": exp2_f32, "log": log_f32, "log2": log2_f32,
        "log1p": log1p_f32, "expm1": expm1_f32, "tanh": tanh_f32, "erf": erf_f32, "sigmoid": sigmoid_f32, "silu": silu_f32,
        "gelu": gelu_f32, "gelu_tanh": gelu_tanh_f32},
    "double": _COMMON | {
        "exp": _libm("exp"), "exp2": _libm("exp2"), "log": _libm("log"),
        "log2": _libm("log2"), "tanh": _libm("tanh"), "erf": _libm("erf"),
        "sigmoid": _sigmoid_f64, "silu": _silu_f64, "gelu": _gelu_f64,
        "gelu_tanh": _gelu_tanh_f64},
}


def float_unary(ctx: Ctx, name: str, x: ir.Value) -> ir.Value:
    """FLOAT_UNARY op `name` on a float or double value."""
    try:
        fn = MATH[str(x.type)][name]
    except KeyError:
        raise NotImplementedError(f"llvm backend: float op {name!r} on {x.type}") from None
    return fn(ctx, x)
