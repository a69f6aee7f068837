"""`fusec.language` (imported as `fl`): dtypes and the tile-level functions of kernels.

The functions here are markers: calling one outside a kernel raises. Inside a kernel the
tracer looks up their meaning by name in `builtins.BUILTINS`.
"""
from __future__ import annotations

from .dsl import marker
from .ir.ops import LIBM_UNARY
from .ir.dtypes import (bfloat16, bool_, float16, float32, float64, int8, int16, int32, int64,
                        uint8)

bool = bool_  # noqa: A001  (fl.bool is the DSL's name for the dtype)


def _marker(name: str, signature: str):
    return marker("fl.", name, signature, "_fusec_builtin", "a @fusec.kernel or @fusec.func")


_SIGNATURES = {
    "zeros": "(shape, dtype=fl.float32)", "full": "(shape, value, dtype=None)",
    "arange": "(start, end=None)", "where": "(cond, a, b)", "maximum": "(a, b)",
    "atan2": "(y, x)", "fmod": "(x, y)", "hypot": "(x, y)", "copysign": "(x, y)",
    "minimum": "(a, b)", "dot": "(a, b, out_dtype=fl.float32)", "trans": "(x)",
    "load": "(x[index], mask=None, other=None)", "store": "(x[index], value, mask=None)",
    "atomic_add": "(x[index], value, mask=None)", "cast": "(x, dtype)",
    "gelu": '(x, approximate="none")', "cdiv": "(a, b)", "permute": "(x, dims)",
    "expand_dims": "(x, axis)", "broadcast_to": "(x, shape)", "reshape": "(x, shape)",
    "cat": "(tensors, axis=0)", "flip": "(x, dims)", "take": "(x, index, axis=0)",
    "take_along": "(x, index, axis)",
    "cumsum": "(x, axis=0, reverse=False)", "cumprod": "(x, axis=0, reverse=False)",
    "cummax": "(x, axis=0, reverse=False)", "cummin": "(x, axis=0, reverse=False)",
}
_UNARY = ("exp", "exp2", "log", "log2", "sqrt", "rsqrt", "abs", "sin", "cos", "tan", "atan",
          "tanh", "erf", "sigmoid", "relu", "silu", "floor", "ceil", *LIBM_UNARY)
_REDUCTIONS = ("sum", "prod", "max", "min", "mean", "argmax", "argmin")

for _name in _UNARY:
    _SIGNATURES[_name] = "(x)"
for _name in _REDUCTIONS:
    _SIGNATURES[_name] = "(x, axis=None, keepdims=False)"

for _name, _sig in _SIGNATURES.items():
    globals()[_name] = _marker(_name, _sig)

__all__ = ["bool", "bool_", "int8", "int16", "int32", "int64", "uint8", "float16", "bfloat16",
           "float32", "float64", *_SIGNATURES]
