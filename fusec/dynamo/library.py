"""aten ops that fusec runs as kernels of their own, outside the fused regions: scatters
with accumulation (index_put with accumulate: embedding's backward after the core aten
decompositions, indexing's; scatter_add: gather's backward). Their writes land where an
index tensor says, several contributions to one element, which the tensor-level IR (one
value per output element) does not express; a tile kernel adds them atomically. The graph
compiler (graph.py) points the node at the kernel's call in place of aten's.

Atomic float additions land in no fixed order, so results may differ in the last bits from
run to run: with `torch.use_deterministic_algorithms(True)` these ops stay aten's.
Half-precision gradients accumulate in float32 and are rounded once at the end.
"""
from __future__ import annotations

import functools
import math
from typing import Callable

import torch
from torch.fx.node import map_arg

from .. import jit, language as fl
from ..dsl import tile
from .rules import Unsupported, aten, packet
from .support import check_tensor, meta_value

FLOATS = (torch.float32, torch.float64, torch.bfloat16, torch.float16)
INDICES = (torch.int32, torch.int64)
CONSTRUCTORS = frozenset((aten.full, aten.zeros, aten.full_like, aten.zeros_like,
                          aten.new_zeros, aten.new_full))


def _add_rows(out, indices, values):
    """out[indices[n], :] += values[n, :], in place (a negative index counts from the end,
    as torch's; one out of range is skipped: eager raises)."""
    R, D = out.shape
    N = indices.shape[0]
    for tn, td in tile([N, D]):
        rows = indices[tn]
        rows = fl.where(rows < 0, rows + R, rows)
        keep = (rows >= 0) & (rows < R)
        fl.atomic_add(out[rows[:, None], td.index[None, :]], values[tn, td].to(out.dtype),
                      mask=keep[:, None])
    return out


def _scatter_add_2d(out, dim0: bool, index, src):
    """out[index[i, j], j] += src[i, j] (dim0), out[i, index[i, j]] += src[i, j] (else),
    over index's shape, in place (an index out of range is skipped: eager raises)."""
    I, J = index.shape
    R, C = out.shape
    for ti, tj in tile([I, J]):
        at = index[ti, tj]
        if dim0:
            fl.atomic_add(out[at, tj.index[None, :]], src[ti, tj].to(out.dtype),
                          mask=(at >= 0) & (at < R))
        else:
            fl.atomic_add(out[ti.index[:, None], at], src[ti, tj].to(out.dtype),
                          mask=(at >= 0) & (at < C))
    return out


def _accumulator(base: torch.Tensor, fresh: bool) -> torch.Tensor:
    """The tensor the atomic adds go into: base itself when the graph made it for this op
    alone (`fresh`) in an accumulation type, row-major, else a row-major copy of it in
    float32 (float64)."""
    acc = torch.float64 if base.dtype == torch.float64 else torch.float32
    if fresh and base.dtype == acc and base.is_contiguous():
        return base
    return base.to(acc, memory_format=torch.contiguous_format, copy=True)


def _check_index_put(node) -> None:
    base, indices, values = node.args[:3]
    accumulate = node.args[3] if len(node.args) > 3 else node.kwargs.get("accumulate", False)
    if not accumulate:
        raise Unsupported("index_put without accumulate (the last write would win)")
    if len(indices) != 1 or indices[0] is None:
        raise Unsupported("index_put with other than one index tensor, on the first dim")
    _check_tensors(node, base, indices[0], values)
    b, i, v = (meta_value(n) for n in (base, indices[0], values))
    if b.dim() < 1 or tuple(v.shape) != tuple(i.shape) + tuple(b.shape[1:]):
        raise Unsupported("index_put whose values are broadcast")


def _index_put(kernel, fresh, base, indices, values, accumulate=False):
    out = _accumulator(base, fresh)
    width = math.prod(out.shape[1:])
    if out.numel() and values.numel():          # (a view of -1 rows needs elements)
        rows = out.view(out.shape[0], width)
        kernel(rows, indices[0].reshape(-1), values.reshape(-1, width))
    return out.to(base.dtype)


def _check_scatter_add(node) -> None:
    base, dim, index, src = node.args[:4]
    _check_tensors(node, base, index, src)
    shapes = [meta_value(t).shape for t in (base, index, src)]
    if any(len(s) != 2 for s in shapes):
        raise Unsupported("scatter_add of tensors that are not 2-D")
    if any(i > s for i, s in zip(shapes[1], shapes[2])) or \
            shapes[1][1 - dim % 2] > shapes[0][1 - dim % 2]:
        raise Unsupported("scatter_add with an index larger than its source or base")


def _scatter_add(kernel, fresh, base, dim, index, src):
    out = _accumulator(base, fresh)
    kernel(out, dim % 2 == 0, index, src[:index.shape[0], :index.shape[1]])
    return out.to(base.dtype)


def _check_tensors(node, base, index, values) -> None:
    if torch.are_deterministic_algorithms_enabled():
        raise Unsupported("atomic adds land in no fixed order and "
                          "torch.use_deterministic_algorithms is on")
    v, i, o = (meta_value(n) for n in (base, index, values))
    for t, what in ((v, "base"), (i, "index"), (o, "values")):
        if not isinstance(t, torch.Tensor):
            raise Unsupported(f"{what} that is not a tensor")
        check_tensor(t, f"the {what} of {node.name}")
    if v.dtype not in FLOATS or o.dtype != v.dtype or i.dtype not in INDICES:
        raise Unsupported(f"values of {v.dtype} / {o.dtype}, index of {i.dtype}")
    if len({v.device, i.device, o.device}) > 1:
        raise Unsupported("tensors on different devices")


_OPS = {aten.index_put.default: (_add_rows, _check_index_put, _index_put),
        aten.scatter_add.default: (_scatter_add_2d, _check_scatter_add, _scatter_add)}


def _made_for(base, node) -> bool:
    """Whether base is a new tensor of the graph read by node alone: adding into it in
    place then changes nothing else (embedding's backward scatters into a `full` of zeros)."""
    read = []                               # the other arguments' nodes (base may be one)
    map_arg((node.args[1:], node.kwargs), read.append)
    return base.op == "call_function" and packet(base.target) in CONSTRUCTORS and \
        list(base.users) == [node] and base not in read


@functools.lru_cache(maxsize=None)
def _kernel(fn, backend, autotune, fast_math) -> jit.Kernel:
    """One Kernel per function and options: its compiled specializations serve every graph."""
    return jit.Kernel(fn, backend=backend, autotune=autotune, fast_math=fast_math)


def library_op(node, options) -> Callable | None:
    """The call replacing node's aten op (a fusec kernel), or None; raises Unsupported with
    the reason when the op is one of these but its arguments are not."""
    entry = _OPS.get(node.target)
    if entry is None:
        return None
    fn, check, call = entry
    check(node)
    kernel = _kernel(fn, options.backend, options.autotune, options.fast_math)
    fresh = _made_for(node.args[0], node)

    def run(*args, **kwargs):
        return call(kernel, fresh, *args, **kwargs)
    run.__name__ = f"fusec_{fn.__name__.lstrip('_')}" + ("_into_its_base" if fresh else "")
    return run
