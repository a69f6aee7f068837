"""Views moved to the narrow side of a dtype cast, so that the cast fuses with its neighbours.

A view inside a fused region has no rule (aten replays views at region boundaries), so a
view between a cast and the ops around it cuts the cast off into a launch of its own:
  - GroupNorm of a bf16 tensor casts it to float32 and then views it as [N, G, -1] for
    its statistics: a launch wrote a float32 copy of the input, which the statistics and the
    normalization read back;
  - its weight gradient is summed in float32, viewed as [C], then rounded to bf16: a launch
    for the rounding alone.
A view of the narrow tensor is free (aten replays it), and the cast then fuses into the
region reading it (a widening cast: view(x.float()) as view(x).float()) or into the region
computing it (a narrowing one: view(y).to(bf16) as view(y.to(bf16))).

Only where the cast's operand and result are row-major alike and the view's result is
row-major: a view then maps the same elements to the same places on either side of the cast,
and the rewritten result has the layout the graph traced.
"""
from __future__ import annotations

import torch
from torch.fx import Graph, Node

from .rules import COPIES, is_cast, is_view, packet
from .support import meta_value


def _tensor(node) -> torch.Tensor | None:
    value = meta_value(node) if isinstance(node, Node) else None
    return value if isinstance(value, torch.Tensor) else None


def _row_major(node) -> bool:
    value = _tensor(node)
    return value is not None and value.is_contiguous() and value.storage_offset() == 0


def _cast(node) -> bool:
    return is_cast(node) and _row_major(node) and _row_major(node.args[0])


def _view(node) -> bool:
    """A single-tensor view whose operand and result are row-major."""
    return (isinstance(node, Node) and node.op == "call_function" and is_view(node.target)
            and packet(node.target) not in COPIES and len(node.all_input_nodes) == 1
            and _row_major(node) and _row_major(node.args[0]))


def _widens(cast: Node) -> bool:
    return _tensor(cast).dtype.itemsize > _tensor(cast.args[0]).dtype.itemsize


def _narrows(cast: Node) -> bool:
    return _tensor(cast).dtype.itemsize < _tensor(cast.args[0]).dtype.itemsize


def _call(graph: Graph, like: Node, operand: Node, value: torch.Tensor) -> Node:
    """like's op applied to operand (its other arguments kept), traced as value."""
    node = graph.call_function(like.target, (operand, *like.args[1:]), dict(like.kwargs))
    node.meta["val"] = value
    return node


def _view_before_widening(graph: Graph, view: Node) -> None:
    """view(x.float()) -> view(x).float()"""
    cast = view.args[0]
    x = cast.args[0]
    with graph.inserting_after(view):
        narrow = _call(graph, view, x, view.target(_tensor(x), *view.args[1:], **view.kwargs))
        with graph.inserting_after(narrow):
            wide = _call(graph, cast, narrow, _tensor(view))
    view.replace_all_uses_with(wide)
    graph.erase_node(view)
    if not cast.users:
        graph.erase_node(cast)


def _view_after_narrowing(graph: Graph, cast: Node) -> None:
    """view(y).to(bf16) -> view(y.to(bf16))"""
    view = cast.args[0]
    y = view.args[0]
    with graph.inserting_before(cast):
        narrow = _call(graph, cast, y, _tensor(y).to(**cast.kwargs))
        viewed = _call(graph, view, narrow, _tensor(cast))
    cast.replace_all_uses_with(viewed)
    graph.erase_node(cast)
    if not view.users:
        graph.erase_node(view)


def move_views_past_casts(graph: Graph) -> int:
    """Rewrite the graph's view/cast pairs (module doc) until none is left; how many."""
    count = 0
    while True:           # a rewrite erases nodes: the next scan starts afresh
        for node in graph.nodes:
            if _view(node) and _cast(node.args[0]) and _widens(node.args[0]):
                _view_before_widening(graph, node)
                break
            if _cast(node) and _view(node.args[0]) and _narrows(node):
                _view_after_narrowing(graph, node)
                break
        else:
            return count
        count += 1
