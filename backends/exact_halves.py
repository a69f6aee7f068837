"""Which 16-bit float types hold every value of a tile exactly: a dot whose operands both
qualify for one type H multiplies their H forms on tensor cores with exact products (only
the order of the float32 additions differs from the FMA loop). Shared by the CUDA C
(cuda/tensor_cores.py) and the PTX (llvm/mma.py) tensor-core lowerings."""
from __future__ import annotations

import numpy as np

from ..ir import dtypes as D
from ..ir.core import Value
from ..ir.ops import memory_operands
from .carried import VIEW_OPS
from .numeric import round_to

HALVES = (D.bfloat16, D.float16)            # in order of preference when both are exact
_EXACT_PRESERVING = frozenset(("neg", "abs", "relu", "maximum", "minimum"))


def exact_halves(v: Value) -> frozenset:
    """The 16-bit float types that represent every value of v exactly."""
    op = v.op
    if op is None:
        return frozenset()
    d = v.type.dtype
    name = op.name
    if name == "load":
        other = memory_operands(op)[4]
        found = frozenset(h for h in HALVES if h == d)
        return found & exact_halves(other) if other is not None else found
    if name == "cast":
        if d in HALVES:
            return frozenset((d,))
        src = op.operands[0].type.dtype
        return exact_halves(op.operands[0]) if d.is_float and src.is_float else frozenset()
    if name == "const":
        value = op.attrs["value"]
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return frozenset()
        x = np.float32(value)
        return frozenset(h for h in HALVES if float(round_to(x, h)) == float(value))
    if name == "where":
        return exact_halves(op.operands[1]) & exact_halves(op.operands[2])
    if name in VIEW_OPS or name in _EXACT_PRESERVING:
        found = frozenset(HALVES)
        for o in op.operands:
            found &= exact_halves(o)
        return found
    return frozenset()


def common_half(a: Value, b: Value):
    """The 16-bit float type exact for both dot operands (bfloat16 first), else None."""
    common = exact_halves(a) & exact_halves(b)
    return next((h for h in HALVES if h in common), None)
