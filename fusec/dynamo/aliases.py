"""Chains of views with static layouts as one `reinterpret` of the tensor they alias.

An aten view costs a few microseconds of host time (a chain mm -> view -> split -> getitem
-> view -> permute -> expand costs six of them before the copy it feeds); the layout each
view gives is already known from tracing (the node's meta value: sizes, strides, storage
offset), so a view whose layout is static becomes one call of torch's `_reinterpret_tensor`
(what Inductor's generated code uses) on the root of its chain, and the views in between
disappear.

That is exact only when the root's layout at run time is its traced one. Roots are trusted
only where nothing outside the graph decides their layout: results of ops that always make a
new row-major tensor (mm, bmm, addmm, baddbmm, a clone to contiguous format), a fused
region's kernel results (fusec allocates them row-major), and views of trusted tensors. The
graph's inputs are not trusted (their strides are the caller's), so views of them stay aten
views; sizes that are symbols (dynamic shapes) keep their views too.
"""
from __future__ import annotations

import operator

import torch
from torch.fx import Graph, Node

from .rules import aten, is_view, packet

_reinterpret = getattr(getattr(torch._C, "_dynamo", None), "guards", None)
REINTERPRET = getattr(_reinterpret, "_reinterpret_tensor", None)
if REINTERPRET is None:                               # pragma: no cover (older torch)
    def REINTERPRET(t, size, stride, offset):          # noqa: N802
        return t.as_strided(size, stride, t.storage_offset() + offset)

# ops whose result is always a new row-major tensor, whatever their inputs' layouts
ROW_MAJOR_RESULTS = {aten.mm, aten.bmm, aten.addmm, aten.baddbmm}
# views returning several tensors: their getitems are the views
MULTI_VIEWS = {aten.split, aten.split_with_sizes, aten.unbind}
NOT_VIEWS = {aten.clone, aten.lift_fresh_copy}         # copies, listed among VIEWS


def static_layout(node: Node):
    """(sizes, strides, storage offset) of a node's traced tensor, or None when it is not a
    tensor or any of them is a symbol."""
    value = node.meta.get("val")
    if not isinstance(value, torch.Tensor):
        return None
    layout = (tuple(value.shape), tuple(value.stride()), value.storage_offset())
    if all(type(s) is int for s in (*layout[0], *layout[1], layout[2])):
        return layout
    return None


def row_major(node: Node) -> bool:
    """The node's traced layout is the one a fresh row-major allocation has."""
    layout = static_layout(node)
    return layout is not None and layout[2] == 0 and node.meta["val"].is_contiguous()


def is_plain_view(node: Node) -> bool:
    return (node.op == "call_function" and is_view(node.target)
            and packet(node.target) not in NOT_VIEWS and packet(node.target) not in MULTI_VIEWS)


def makes_row_major(node: Node) -> bool:
    """A call whose result is a new row-major tensor whatever its inputs' layouts."""
    if node.op != "call_function":
        return False
    p = packet(node.target)
    if p is aten.clone:
        return node.kwargs.get("memory_format") is torch.contiguous_format
    return p in ROW_MAJOR_RESULTS


class Roots:
    """For each node whose run-time layout is its traced one: the root of its view chain
    (the node itself when it is not a view)."""

    def __init__(self):
        self.root: dict[Node, Node] = {}

    def trust(self, node: Node) -> None:
        if static_layout(node) is not None:
            self.root[node] = node

    def visit(self, node: Node) -> None:
        """Record `node` (its inputs visited already) when its layout is known."""
        if makes_row_major(node) and row_major(node):
            self.root[node] = node
            return
        source = self.view_source(node)
        if source is None or source not in self.root:
            return
        if node.op == "call_function" and packet(node.target) in MULTI_VIEWS:
            self.root[node] = self.root[source]        # a list: its getitems are the views
        elif static_layout(node) is not None:
            self.root[node] = self.root[source]

    @staticmethod
    def view_source(node: Node):
        """The tensor a view node aliases (None for other nodes)."""
        if node.op != "call_function" or not node.args or not isinstance(node.args[0], Node):
            return None
        if node.target is operator.getitem:
            src = node.args[0]
            multi = src.op == "call_function" and packet(src.target) in MULTI_VIEWS
            return src if multi else None
        if is_plain_view(node) or packet(node.target) in MULTI_VIEWS:
            return node.args[0]
        return None

    def collapsible(self, node: Node) -> bool:
        """A view (not a list of them) whose layout is known, aliasing a known root."""
        return (node in self.root and self.root[node] is not node
                and not (node.op == "call_function" and packet(node.target) in MULTI_VIEWS))

    def reinterpret_args(self, node: Node) -> tuple:
        root = self.root[node]
        size, stride, offset = static_layout(node)
        return root, size, stride, offset - static_layout(root)[2]


def _permute_of_permute(node: Node):
    """(the first permute's input, the composed dims) when `node` permutes a permute."""
    if node.op != "call_function" or packet(node.target) is not aten.permute:
        return None
    inner = node.args[0]
    if not (isinstance(inner, Node) and inner.op == "call_function"
            and packet(inner.target) is aten.permute):
        return None
    outer_dims, inner_dims = node.args[1], inner.args[1]
    rank = len(inner_dims)
    # permute(permute(x, p), q): result dim j is x's dim p[q[j]]
    composed = [inner_dims[q % rank] % rank for q in outer_dims]
    return inner.args[0], composed


def fold_permute_chains(graph: Graph) -> int:
    """permute(permute(x, p), q) -> permute(x, p o q), or x itself when that is the
    identity (a weight's W^T^T in a backward graph: two aten calls of host time for
    nothing). Exact whatever x's layout: permutes only reorder sizes and strides. A graph
    output keeps its view (the caller may tell an alias of an input from the input).
    Returns the number of permute calls removed."""
    removed = 0
    for node in list(graph.nodes):
        found = _permute_of_permute(node)
        if found is None:
            continue
        source, composed = found
        if composed == list(range(len(composed))) and \
                all(u.op != "output" for u in node.users):
            node.replace_all_uses_with(source)
            graph.erase_node(node)
            removed += 1
        else:
            node.args = (source, composed)
    for node in reversed(list(graph.nodes)):
        if not node.users and node.op == "call_function" and \
                packet(node.target) is aten.permute:
            graph.erase_node(node)
            removed += 1
    return removed


def _alias_calls(graph: Graph) -> int:
    return sum(1 for n in graph.nodes if n.op == "call_function" and (
        n.target is REINTERPRET or Roots.view_source(n) is not None))


def collapse_views(graph: Graph, roots: Roots) -> tuple[int, int]:
    """Replace every collapsible view of `graph` (roots visited over it) by one reinterpret
    of its root; drop the views nothing uses any more. Returns the number of view calls
    (views and reinterprets) before and after."""
    before = _alias_calls(graph)
    for node in list(graph.nodes):
        if not roots.collapsible(node):
            continue
        with graph.inserting_before(node):
            new = graph.call_function(REINTERPRET, roots.reinterpret_args(node))
        new.meta = dict(node.meta)
        node.replace_all_uses_with(new)
        roots.root[new] = roots.root[node]
    for node in reversed(list(graph.nodes)):
        if not node.users and node.op == "call_function" and (
                node.target is REINTERPRET or Roots.view_source(node) is not None):
            graph.erase_node(node)
    return before, _alias_calls(graph)
