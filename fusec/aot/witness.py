"""Calls that stand for a package variant, for fusec's autotuner (configs.py):

  jit_key     the specialization key the JIT gives a call with exactly the variant's facts
              (jit.Kernel._describe): the part of a tuning-cache key that names the call,
              so a build finds what a JIT call measured and the JIT finds what a build
              measured
  arguments   arrays of the tuning sizes with the variant's facts, on the device a
              measurement runs on
  tuning_params   the variant's params with its dynamic sizes set to the tuning sizes

A variant is built for every size its signature allows, but a config is chosen for one
size: the tuning size of each dynamic size (a named dim, an int argument, an anonymous dim
as "x[1]"); a size in a power-of-two bucket is tuned at the bucket's own hint.
"""
from __future__ import annotations

from dataclasses import replace

from ..specialize import ConstParam, ScalarParam, TensorParam, TensorSpec, describe

DEFAULT_TUNING_SIZE = 4096       # a dynamic size tuned for when the build names none
_NOT_16 = 17                     # a size that is neither 1 nor a multiple of 16
_WIDE = 1 << 40                  # an int that needs int64 (a multiple of 16)


def size_name(key: tuple) -> str:
    """How a build names a dynamic size (specs.Variable.key): "N", "n" or "x[1]"."""
    return key[1] if len(key) == 2 else f"{key[1]}[{key[2]}]"


def _fact_size(fixed, div16: bool) -> int:
    return fixed if fixed is not None else 16 if div16 else _NOT_16


def _witness(p):
    """A value whose specialization facts are exactly those of param spec `p`."""
    if isinstance(p, ConstParam):
        return p.value
    if isinstance(p, TensorParam):
        shape = [_fact_size(n, d16) for n, d16 in zip(p.sizes, p.div16)]
        strides = [1 if unit else 16 if s16 else _NOT_16
                   for unit, s16 in zip(p.unit_stride, p.stride16 or (False,) * len(shape))]
        return TensorSpec(tuple(shape), p.dtype, tuple(strides), p.aligned16)
    if p.kind == "i":
        value = 1 if p.is_one else (16 if p.div16 else _NOT_16) + (_WIDE if p.wide else 0)
        return value if p.nonneg else -value
    return {"f": 1.0, "b": True}[p.kind]


def jit_key(kernel, params: list) -> tuple:
    """The JIT's argument key (static_shapes=False) of a call meeting `params` exactly."""
    return tuple(describe(p.name, _witness(p), p.name in kernel.constexprs, False)[0]
                 for p in params)


def tuning_sizes(spec, sizes: dict) -> dict:
    """Size symbol -> the size tuned for: a bucketed size at its bucket's hint, else the
    build's `sizes` entry for its name (or DEFAULT_TUNING_SIZE), kept within the
    signature's bounds and multiple."""
    hints = {}
    for p in spec.params:
        if isinstance(p, TensorParam):
            hints.update({f"{p.name}_s{d}": n for d, n in enumerate(p.hints)})
        elif isinstance(p, ScalarParam) and p.kind == "i":
            hints[p.name] = p.hint
    out = {}
    for symbol, var in spec.symbol_vars.items():
        if var.key in spec.buckets:
            out[symbol] = hints[symbol]
            continue
        value = sizes.get(size_name(var.key), DEFAULT_TUNING_SIZE)
        if var.high is not None:
            value = min(value, var.high)
        value -= value % var.multiple_of
        out[symbol] = max(value, var.low + (-var.low) % var.multiple_of, var.multiple_of)
    return out


def tuning_params(params: list, sizes: dict) -> list:
    """`params` with the hints (the sizes a trace evaluates extents at) set to `sizes`."""
    out = []
    for p in params:
        if isinstance(p, TensorParam):
            p = replace(p, hints=tuple(sizes.get(f"{p.name}_s{d}", n)
                                       for d, n in enumerate(p.hints)))
        elif isinstance(p, ScalarParam) and p.kind == "i" and p.name in sizes:
            p = replace(p, hint=sizes[p.name])
        out.append(p)
    return out


def arguments(params: list, device: str) -> list:
    """The runtime arguments of a measured call: contiguous fresh arrays of the params'
    hint shapes (which meet the variant's unit-stride, 16-multiple-stride and alignment
    facts), float data drawn from a normal distribution, int data ones (valid indices,
    safe divisors), scalars their hints; torch tensors on `device` ("cuda"), numpy on the
    CPU (torch for bfloat16, which numpy lacks)."""
    import numpy as np

    from .. import arrays
    from ..backends.numeric import STORAGE
    from ..ir import dtypes as D
    rng = np.random.default_rng(0)
    out = []
    for p in params:
        if isinstance(p, ConstParam):
            continue
        if isinstance(p, ScalarParam):
            out.append(p.hint if p.kind == "i" else {"f": 1.0, "b": True}[p.kind])
            continue
        shape = tuple(p.hints)
        if p.dtype.is_float:
            data = rng.standard_normal(shape)
        else:
            data = np.ones(shape)
        if device == "cpu" and p.dtype != D.bfloat16:
            out.append(data.astype(STORAGE[p.dtype]))
            continue
        import torch
        out.append(torch.from_numpy(data).to(device=device,
                                             dtype=arrays.torch_dtype(p.dtype)).contiguous())
    return out
