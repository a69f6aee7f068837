"""Max pooling saves a byte a window for its backward instead of an int64 flat index and the
pooled input.

aten's max_pool2d_with_indices returns int64 flat indices (h * W + w), and its backward takes
them and the pool's input; AOT autograd's partitioner then saves both for the backward, and
the forward writes them: for a 2x2 pool of bf16 values that is 2 bytes an input element of
indices and 2 of input, read again by the backward only for its shape. Where the windows
tile the input (the pools fusec lowers) and the indices feed nothing but the pool's
backward, the joint graph's pair is rewritten, before partitioning, to two fusec ops: the
forward returns the window offset of each maximum (di * kw + dj, int8) and the backward
takes the offsets and the input's (static) height and width. What is saved is then a
quarter byte an input element. (Inductor saves int8 offsets too, through prims of its own.)

Both ops run eagerly through aten where a region does not take them (rules.py lowers them).
"""
from __future__ import annotations

import operator
from typing import Sequence

import torch
from torch.fx import GraphModule, Node

aten = torch.ops.aten


def tiling_window(kernel_size, stride=(), padding=0, dilation=1, ceil_mode=False):
    """(kh, kw) of a 2-D pool whose windows tile the input (stride = kernel, no padding,
    dilation or ceil_mode: the common 2x2 pool), else None."""
    kernel = _pair(kernel_size)
    stride = _pair(stride) if stride not in (None, [], ()) else kernel
    if stride != kernel or _pair(padding) != [0, 0] or _pair(dilation) != [1, 1] or \
            ceil_mode or not all(isinstance(k, int) and k > 0 for k in kernel):
        return None
    return kernel


def _pair(v) -> list:
    """A pool's per-dim argument as [height, width] (an int, or a list of one or two)."""
    if not isinstance(v, (list, tuple)):
        return [v, v]
    return list(v) * 2 if len(v) == 1 else list(v)


def _window_origins(like: torch.Tensor, kh: int, kw: int):
    """(row, column) of each window's top-left input element, shaped to broadcast over
    the pooled tensor `like`."""
    rows = torch.arange(like.shape[-2], device=like.device).view(-1, 1) * kh
    cols = torch.arange(like.shape[-1], device=like.device) * kw
    return rows, cols


@torch.library.custom_op("fusec::max_pool2d_offsets", mutates_args=())
def max_pool2d_offsets(x: torch.Tensor, kernel: Sequence[int]) -> tuple[torch.Tensor,
                                                                         torch.Tensor]:
    """The max of each window and where in the window it is (di * kw + dj, int8): the
    first maximum, or a NaN, as aten's max_pool2d_with_indices picks."""
    kh, kw = kernel
    values, indices = aten.max_pool2d_with_indices(x, [kh, kw])
    rows, cols = _window_origins(values, kh, kw)
    width = x.shape[-1]
    offsets = (indices // width - rows) * kw + indices % width - cols
    return values, offsets.to(torch.int8)


@max_pool2d_offsets.register_fake
def _(x, kernel):
    kh, kw = kernel
    shape = (*x.shape[:-2], x.shape[-2] // kh, x.shape[-1] // kw)
    return x.new_empty(shape), x.new_empty(shape, dtype=torch.int8)


@torch.library.custom_op("fusec::max_pool2d_offsets_backward", mutates_args=())
def max_pool2d_offsets_backward(grad: torch.Tensor, offsets: torch.Tensor,
                                kernel: Sequence[int], input_size: Sequence[int]
                                ) -> torch.Tensor:
    """The gradient of max_pool2d_offsets' values: each window's gradient lands on its
    maximum, zeros elsewhere (and past the last full window)."""
    kh, kw = kernel
    height, width = input_size
    rows, cols = _window_origins(offsets, kh, kw)
    offsets = offsets.long()
    indices = (rows + offsets // kw) * width + cols + offsets % kw
    shape_only = grad.new_empty((*grad.shape[:-2], height, width))
    return aten.max_pool2d_with_indices_backward(grad, shape_only, [kh, kw], [kh, kw], [0, 0],
                                                 [1, 1], False, indices)


@max_pool2d_offsets_backward.register_fake
def _(grad, offsets, kernel, input_size):
    return grad.new_empty((*grad.shape[:-2], *input_size))


OFFSETS = torch.ops.fusec.max_pool2d_offsets.default
OFFSETS_BACKWARD = torch.ops.fusec.max_pool2d_offsets_backward.default


def _rewritable(pool: Node):
    """([kh, kw], [H, W], {index: getitem node} of its results, the backward nodes) of a
    max_pool2d_with_indices node the rewrite applies to, else None."""
    x = pool.args[0]
    value = x.meta.get("val") if isinstance(x, Node) else None
    window = tiling_window(*pool.args[1:], **pool.kwargs)
    if window is None or not isinstance(value, torch.Tensor) or value.dim() not in (3, 4) \
            or window[0] * window[1] > 127:
        return None
    size = list(value.shape[-2:])
    if not all(type(n) is int for n in size):
        return None                    # a symbolic height or width: aten's indices stay
    picks = {u.args[1]: u for u in pool.users if u.target is operator.getitem}
    if len(picks) != len(pool.users) or 1 not in picks:
        return None
    backward = list(picks[1].users)
    if not backward or any(
            u.target is not aten.max_pool2d_with_indices_backward.default
            or len(u.args) != 8 or u.args[1] is not x or u.args[7] is not picks[1] or u.kwargs
            or tiling_window(*u.args[2:7]) != window for u in backward):
        return None
    return window, size, picks, backward


def _node(graph, target, args, like: Node, value) -> Node:
    node = graph.call_function(target, args)
    node.meta = {**like.meta, "val": value}
    return node


def save_pool_offsets(joint: GraphModule) -> int:
    """Rewrite the joint graph's max pools (see the module's text); returns how many."""
    graph, count = joint.graph, 0
    for pool in list(graph.nodes):
        if pool.op != "call_function" or pool.target is not aten.max_pool2d_with_indices.default:
            continue
        found = _rewritable(pool)
        if found is None:
            continue
        window, size, picks, backward = found
        x = pool.args[0]
        mode = torch._guards.detect_fake_mode([x.meta["val"]])
        if mode is None:               # values not traced as fake tensors: nothing to size by
            continue
        with mode:
            values, offsets = OFFSETS(x.meta["val"], window)
        with graph.inserting_after(pool):
            fused = _node(graph, OFFSETS, (x, window), pool, (values, offsets))
        with graph.inserting_after(fused):
            offsets_node = _node(graph, operator.getitem, (fused, 1), picks[1], offsets)
        with graph.inserting_after(fused):
            values_node = _node(graph, operator.getitem, (fused, 0), pool, values)
        if 0 in picks:
            picks[0].replace_all_uses_with(values_node)
        for b in backward:
            with graph.inserting_before(b), mode:
                value = OFFSETS_BACKWARD(b.args[0].meta["val"], offsets, window, size)
                b.replace_all_uses_with(_node(graph, OFFSETS_BACKWARD,
                                              (b.args[0], offsets_node, window, size), b, value))
            graph.erase_node(b)
        for n in (*picks.values(), pool):
            graph.erase_node(n)
        count += 1
    if count:
        graph.lint()
        joint.recompile()
    return count
