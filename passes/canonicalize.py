"""canonicalize: constant folding and algebraic identities, as a pattern table driven to a
fixed point. Folded ops leave their constant operands behind for `dce`."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import sympy

from ..ir import Module, Op, TileType
from ..ir.ops import BINARY, COMPARE, MEMORY_WRITE, UNARY, memory_operands
from . import const_eval
from .const_eval import const_value
from .rewrite import CHANGED, PatternTable, Rewriter, apply_to_fixed_point


def _dtype(op: Op):
    return op.operands[0].type.dtype


# ---- constant folding ------------------------------------------------------------------

def fold_unary(op: Op, rw: Rewriter):
    x = const_value(op.operands[0])
    if x is None:
        return None
    result = const_eval.unary(op.name, x, _dtype(op))
    return None if result is None else rw.const(op.result.type, result)


def fold_binary(op: Op, rw: Rewriter):
    a, b = (const_value(v) for v in op.operands)
    if a is None or b is None:
        return None
    result = const_eval.binary(op.name, a, b, _dtype(op))
    return None if result is None else rw.const(op.result.type, result)


def fold_compare(op: Op, rw: Rewriter):
    a, b = (const_value(v) for v in op.operands)
    if a is None or b is None:
        return None
    return rw.const(op.result.type, const_eval.compare(op.name, a, b))


def fold_cast(op: Op, rw: Rewriter):
    x = const_value(op.operands[0])
    if x is None:
        return None
    result = const_eval.convert(x, op.result.type.dtype)
    return None if result is None else rw.const(op.result.type, result)


def fold_reshaped_const(op: Op, rw: Rewriter):
    """broadcast/expand_dims/permute of a splat is a splat of the new shape."""
    x = const_value(op.operands[0])
    if x is None or not isinstance(op.result.type, TileType):   # a tensor is not a splat
        return None
    return rw.const(op.result.type, x)


def fold_symval(op: Op, rw: Rewriter):
    expr = op.attrs.get("expr")
    if not isinstance(expr, (int, sympy.Integer)) or isinstance(expr, bool):
        return None
    lo, hi = const_eval.int_bounds(op.result.type.dtype)
    return rw.const(op.result.type, int(expr)) if lo <= int(expr) <= hi else None


# ---- algebraic identities --------------------------------------------------------------

def _is_neutral(name: str, c, dtype) -> bool:
    """Whether `x <name> c == x` for every x of dtype, bit for bit."""
    if dtype.is_float:
        negative_zero = c == 0 and math.copysign(1.0, c) < 0
        positive_zero = c == 0 and not negative_zero
        # x + 0.0 turns -0.0 into +0.0, but x + -0.0 and x - 0.0 are exact.
        return {"add": negative_zero, "sub": positive_zero,
                "mul": c == 1, "div": c == 1}.get(name, False)
    if dtype.is_bool:
        return {"and": c is True, "or": c is False, "xor": c is False}.get(name, False)
    return {"add": c == 0, "sub": c == 0, "or": c == 0, "xor": c == 0, "mul": c == 1,
            "floordiv": c == 1, "and": c == const_eval.all_ones(dtype)}.get(name, False)


def _absorbing(name: str, dtype):
    """c with `x <name> c == c` for every x (floats have none: NaN * 0 is NaN)."""
    if dtype.is_float:
        return None
    return {"mul": None if dtype.is_bool else 0, "and": False if dtype.is_bool else 0,
            "or": const_eval.all_ones(dtype)}.get(name)


COMMUTATIVE = ("add", "mul", "and", "or", "xor", "maximum", "minimum")


def binary_identity(op: Op, rw: Rewriter):
    dtype = _dtype(op)
    sides = [(0, 1), (1, 0)] if op.name in COMMUTATIVE else [(0, 1)]
    for x_at, c_at in sides:
        c = const_value(op.operands[c_at])
        if c is None:
            continue
        if _is_neutral(op.name, c, dtype):
            return op.operands[x_at]
        absorbing = _absorbing(op.name, dtype)
        if absorbing is not None and c == absorbing:
            return rw.const(op.result.type, absorbing)
    return None


def not_not(op: Op, rw: Rewriter):
    inner = op.operands[0].op
    return inner.operands[0] if inner is not None and inner.name == "not" else None


def where_known(op: Op, rw: Rewriter):
    cond, a, b = op.operands
    if a is b:
        return a
    c = const_value(cond)
    return None if c is None else (a if c else b)


def same_type_noop(op: Op, rw: Rewriter):
    """cast or broadcast to the operand's own type."""
    return op.operands[0] if op.operands[0].type == op.result.type else None


def identity_permute(op: Op, rw: Rewriter):
    perm = op.attrs.get("perm")
    return op.operands[0] if list(perm) == list(range(len(perm))) else None


def drop_dead_guards(op: Op, rw: Rewriter):
    """A mask that is always true guards nothing; a load's `other` is only read by lanes
    that are masked off or out of bounds on a checked dim."""
    tensor, idx, value, mask, other = memory_operands(op)
    changed = False
    if mask is not None and const_value(mask) is True:
        mask, changed = None, True
    if other is not None and mask is None and not any(op.attrs["checked"]):
        other, changed = None, True
    if not changed:
        return None
    op.attrs["mask"] = mask is not None
    if op.name == "load":
        op.attrs["other"] = other is not None
    op.operands = [v for v in (tensor, *idx, value, mask, other) if v is not None]
    return CHANGED


PATTERNS: PatternTable = [
    (("cast", "broadcast"), same_type_noop),     # before folding: reuse, don't re-create
    (UNARY, fold_unary),
    (BINARY, fold_binary),
    (COMPARE, fold_compare),
    ("cast", fold_cast),
    (("broadcast", "expand_dims", "permute"), fold_reshaped_const),
    ("symval", fold_symval),
    (BINARY, binary_identity),
    ("not", not_not),
    ("where", where_known),
    ("permute", identity_permute),
    (("load",) + MEMORY_WRITE, drop_dead_guards),
]


@dataclass
class Canonicalize:
    name: ClassVar[str] = "canonicalize"
    max_sweeps: int = 100

    def run(self, module: Module) -> None:
        apply_to_fixed_point(module, PATTERNS, self.max_sweeps)
