"""Per-element semantics of the IR's unary, binary, compare and cast ops as CUDA C
expressions (the interpreter's semantics, backends/interpret).

Every rule takes operand expressions in their compute type (types.py) and returns an
expression in the result's compute type. Tables are keyed by op name and, for math, by the C
type (float32 math for float/half floats, double math for float64); half floats are rounded
after every op. Integer ops wrap (computed in the dtype's unsigned twin), division by zero
gives 0.
"""
from __future__ import annotations

from ...ir import dtypes as D
from ...ir.dtypes import DType
from ...ir.ops import LIBM_UNARY
from .types import (MATH_TYPE, WIDE, compute, float_literal, int_limits, int_literal, is_signed,
                    zero)


def _unsupported(op: str, d: DType):
    raise NotImplementedError(f"cuda backend: op {op!r} is not defined on {d}")


# -- half float rounding ---------------------------------------------------------------------
_ROUND = {D.float16: "fc_round_f16", D.bfloat16: "fc_round_bf16"}


def round_half(d: DType, x: str) -> str:
    """Round a float expression computing a half-type op to that type (kept in float)."""
    fn = _ROUND.get(d)
    return f"{fn}({x})" if fn else x


# -- storage <-> compute ----------------------------------------------------------------------
_FROM_STORAGE = {D.bool_: "({} != 0)", D.float16: "fc_h2f({})", D.bfloat16: "fc_bf2f({})"}
_TO_STORAGE = {D.bool_: "(unsigned char)({} ? 1 : 0)", D.float16: "fc_f2h({})",
               D.bfloat16: "fc_f2bf({})"}


def from_storage(d: DType, x: str) -> str:
    return _FROM_STORAGE.get(d, "{}").format(x)


def to_storage(d: DType, x: str) -> str:
    return _TO_STORAGE.get(d, "{}").format(x)


# -- unary ----------------------------------------------------------------------------------
# float math: the accurate library functions (not the __expf intrinsics), by C type
_MATH = {
    "float": {
        "exp": "expf({x})", "exp2": "exp2f({x})", "log": "logf({x})", "log2": "log2f({x})",
        "sqrt": "sqrtf({x})", "rsqrt": "(1.0f / sqrtf({x}))", "sin": "sinf({x})",
        "cos": "cosf({x})", "tan": "tanf({x})", "atan": "atanf({x})", "tanh": "tanhf({x})",
        **{name: name + "f({x})" for name in LIBM_UNARY},
        "erf": "fc_erff({x})",
        "sigmoid": "(1.0f / (1.0f + expf(-({x}))))",
        "silu": "({x} / (1.0f + expf(-({x}))))",
        # 0.5 x (1 + erf(x / sqrt 2)), as torch computes it (the prelude's fc_erff: a
        # polynomial and one ex2, the PTX backend's); for x << 0 the cancellation costs
        # relative (not absolute) accuracy
        "gelu": "fc_gelu({x})",
        # 0.5 x (1 + tanh(u)) = x / (1 + exp(-2u)): no cancellation for x << 0
        "gelu_tanh": "({x} / (1.0f + expf(-1.5957691216057308f * ({x} + 0.044715f * {x} * "
                     "{x} * {x}))))",
        "floor": "floorf({x})", "ceil": "ceilf({x})",
    },
    "double": {
        "exp": "exp({x})", "exp2": "exp2({x})", "log": "log({x})", "log2": "log2({x})",
        "sqrt": "sqrt({x})", "rsqrt": "(1.0 / sqrt({x}))", "sin": "sin({x})",
        "cos": "cos({x})", "tan": "tan({x})", "atan": "atan({x})", "tanh": "tanh({x})",
        **{name: name + "({x})" for name in LIBM_UNARY},
        "erf": "erf({x})",
        "sigmoid": "(1.0 / (1.0 + exp(-({x}))))",
        "silu": "({x} * (1.0 / (1.0 + exp(-({x})))))",
        "gelu": "(0.5 * {x} * erfc(-({x}) / 1.4142135623730951))",
        "gelu_tanh": "(0.5 * {x} * (1.0 + tanh(0.7978845608028654 * ({x} + 0.044715 * {x} * "
                     "{x} * {x}))))",
        "floor": "floor({x})", "ceil": "ceil({x})",
    },
}

# fast math (kernel attr fast_math): the SFU approximations Triton's and CUDA's
# --use_fast_math use -- a few ulp (exp: relative error up to ~|x| * 2^-21), division by
# __fdividef (0 for divisors beyond 2^126). float/half math only; double stays accurate.
_FAST_MATH = {
    "exp": "__expf({x})", "log": "__logf({x})", "log2": "__log2f({x})",
    "sin": "__sinf({x})", "cos": "__cosf({x})", "rsqrt": "rsqrtf({x})",
    "sigmoid": "__fdividef(1.0f, 1.0f + __expf(-({x})))",
    "silu": "__fdividef({x}, 1.0f + __expf(-({x})))",
    "gelu_tanh": "__fdividef({x}, 1.0f + __expf(-1.5957691216057308f * ({x} + 0.044715f * "
                 "{x} * {x} * {x})))",
}
_FAST_BINARY = {"div": "__fdividef({x}, {y})"}


def _neg(d, x):
    if d.is_float:
        return f"(-{x})"
    if d.is_bool:
        _unsupported("neg", d)
    return f"(({compute(d)})(0u - ({WIDE[d]}){x}))"


def _abs(d, x):
    if d.is_float:
        return f"{'fabsf' if MATH_TYPE[d] == 'float' else 'fabs'}({x})"
    if not is_signed(d):
        return x
    return f"({x} < 0 ? ({compute(d)})(0u - ({WIDE[d]}){x}) : {x})"


def _relu(d, x):
    if not (d.is_float or is_signed(d)):          # bool, uint8: never negative
        return x
    return f"({x} < {zero(d)} ? {zero(d)} : {x})"           # NaN stays NaN (np.maximum)


def _not(d, x):
    if d.is_float:
        _unsupported("not", d)
    return f"(!{x})" if d.is_bool else f"(({compute(d)})~{x})"


_NUMERIC_UNARY = {"neg": _neg, "abs": _abs, "relu": _relu, "not": _not}


def unary(name: str, d: DType, x: str, fast: bool = False) -> str:
    rule = _NUMERIC_UNARY.get(name)
    if rule is not None:
        return rule(d, x)
    if not d.is_float:
        _unsupported(name, d)
    fmt = _FAST_MATH.get(name) if fast and MATH_TYPE[d] == "float" else None
    fmt = fmt or _MATH[MATH_TYPE[d]].get(name)
    if fmt is None:
        raise NotImplementedError(f"cuda backend: unknown unary op {name!r}")
    return round_half(d, fmt.format(x=x))


# -- binary -----------------------------------------------------------------------------------
def _wrap(op: str):
    """Wrapping + - * in the dtype's unsigned twin."""
    return lambda d, x, y: f"(({compute(d)})(({WIDE[d]}){x} {op} ({WIDE[d]}){y}))"


def _int_fn(signed_fn: str, unsigned_fn: str):
    return lambda d, x, y: (f"{signed_fn if is_signed(d) else unsigned_fn}<{compute(d)}>"
                            f"({x}, {y})")


INT_BINARY = {
    "add": _wrap("+"), "sub": _wrap("-"), "mul": _wrap("*"),
    "floordiv": _int_fn("fc_sfloordiv", "fc_ufloordiv"), "mod": _int_fn("fc_smod", "fc_umod"),
    "fmod": _int_fn("fc_sfmod", "fc_umod"),
    "maximum": lambda d, x, y: f"({x} > {y} ? {x} : {y})",
    "minimum": lambda d, x, y: f"({x} < {y} ? {x} : {y})",
    "pow": lambda d, x, y: f"fc_ipow<{compute(d)}, {WIDE[d]}>({x}, {y})",
    "and": lambda d, x, y: f"(({compute(d)})({x} & {y}))",
    "or": lambda d, x, y: f"(({compute(d)})({x} | {y}))",
    "xor": lambda d, x, y: f"(({compute(d)})({x} ^ {y}))",
}

# numpy on bool arrays: + is or, * is and, // and ** go through int8 and back to bool.
BOOL_BINARY = {
    "add": "({x} || {y})", "mul": "({x} && {y})", "maximum": "({x} || {y})",
    "minimum": "({x} && {y})", "floordiv": "({x} && {y})", "mod": "false", "fmod": "false",
    "pow": "({x} || !{y})", "and": "({x} && {y})", "or": "({x} || {y})", "xor": "({x} != {y})",
}

FLOAT_BINARY = {
    "add": "({x} + {y})", "sub": "({x} - {y})", "mul": "({x} * {y})", "div": "({x} / {y})",
    "floordiv": "fc_pyfloordiv({x}, {y})", "mod": "fc_pymod({x}, {y})",
    "fmod": "fc_fmod({x}, {y})",
    "maximum": "fc_fmax({x}, {y})", "minimum": "fc_fmin({x}, {y})",
}
# the C library's binary functions, by C type
_LIBRARY_BINARY = {"pow": {"float": "powf({x}, {y})", "double": "pow({x}, {y})"},
                   "atan2": {"float": "atan2f({x}, {y})", "double": "atan2({x}, {y})"},
                   "hypot": {"float": "hypotf({x}, {y})", "double": "hypot({x}, {y})"},
                   "copysign": {"float": "copysignf({x}, {y})",
                                "double": "copysign({x}, {y})"}}
_EXACT = ("maximum", "minimum")          # results already representable: no rounding


def binary(name: str, d: DType, x: str, y: str, fast: bool = False) -> str:
    if d.is_bool:
        fmt = BOOL_BINARY.get(name)
        if fmt is None:
            _unsupported(name, d)
        return fmt.format(x=x, y=y)
    if d.is_int:
        rule = INT_BINARY.get(name)
        if rule is None:
            _unsupported(name, d)
        return rule(d, x, y)
    library = _LIBRARY_BINARY.get(name)
    fmt = library[MATH_TYPE[d]] if library else FLOAT_BINARY.get(name)
    if fast and MATH_TYPE[d] == "float":
        fmt = _FAST_BINARY.get(name, fmt)
    if fmt is None:
        _unsupported(name, d)
    out = fmt.format(x=x, y=y)
    return out if name in _EXACT else round_half(d, out)


# -- compare ----------------------------------------------------------------------------------
_CMP = {"eq": "==", "ne": "!=", "lt": "<", "le": "<=", "gt": ">", "ge": ">="}


def compare(name: str, d: DType, x: str, y: str) -> str:
    """C comparisons are numpy's: ordered, except != which is true for NaN."""
    return f"({x} {_CMP[name]} {y})"


# -- cast -------------------------------------------------------------------------------------
def _float_to_int(dst: DType, x: str) -> str:
    lo, hi = int_limits(dst)
    ty = compute(dst)
    return (f"fc_f2i<{ty}>((double)({x}), {float_literal(float(lo), 'double')}, "
            f"{float_literal(float(hi), 'double')}, {int_literal(dst, lo)}, "
            f"{int_literal(dst, hi)})")


def cast(src: DType, dst: DType, x: str) -> str:
    """The IR's cast (backends.numeric.cast): float->int truncates and saturates, NaN -> 0;
    int->float goes through double like the interpreter; half floats round to nearest."""
    if src == dst:
        return x
    if dst.is_bool:
        return f"({x} != {zero(src)})"                # C's != : NaN is True, as numpy
    if dst.is_int:
        if src.is_float:
            return _float_to_int(dst, x)
        return f"(({compute(dst)}){x})"                # wraps; bool -> 0/1
    if src.is_bool or src.is_int:
        wide = f"((double){x})"
        if dst == D.float64:
            return wide
        if dst == D.float16:
            return f"fc_f64_to_f16({wide})"
        return round_half(dst, f"((float){wide})")
    if src == D.float64:
        if dst == D.float16:
            return f"fc_f64_to_f16({x})"
        return round_half(dst, f"((float){x})")       # bf16: through float, as numpy
    if dst == D.float64:
        return f"((double){x})"
    return round_half(dst, x)                         # among f16 / bf16 / f32
