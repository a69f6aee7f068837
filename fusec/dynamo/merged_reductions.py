"""Reductions over a view's merged dims as reductions over the dims it merged.

Decomposed norms reshape before they reduce: GroupNorm's backward sums `x.view(N, C, H*W)`
over its last dim. aten.view has no rule inside a fused region, so the view cut the region
there, and fusec wrote the [N, C, H, W] product the sum reads and read it back. A reduction
over dims that a view only merged is the same reduction over the original dims, which fuses
with the ops producing them: `x.view(N, C, H*W).sum(2)` is `x.sum((2, 3))`.

Only static shapes, only views that merge runs of adjacent dims (no splits), and only
reductions whose result keeps its shape are rewritten; the rest stay as they are.
"""
from __future__ import annotations

from torch.fx import Graph, Node

from .rules import aten

# reductions taking (x, dims, keepdim, ...): their result depends on the reduced elements only
REDUCTIONS = {aten.sum.dim_IntList, aten.mean.dim, aten.amax.default, aten.amin.default}
MERGING_VIEWS = {aten.view.default, aten._unsafe_view.default, aten.reshape.default}


def _static_shape(node) -> tuple | None:
    value = node.meta.get("val") if isinstance(node, Node) else None
    shape = getattr(value, "shape", None)
    if shape is None or not all(type(s) is int for s in shape):
        return None
    return tuple(shape)


def merged_groups(source: tuple, merged: tuple) -> list[list[int]] | None:
    """For each dim of `merged`, the run of `source` dims it merges, or None when `merged`
    is not `source` with runs of adjacent dims merged."""
    if 0 in source:
        return None
    groups, i = [], 0
    for size in merged:
        run, product = [], 1
        while i < len(source) and (not run or product < size):
            run.append(i)
            product *= source[i]
            i += 1
        if product != size:
            return None
        groups.append(run)
    if not groups:
        return None
    groups[-1].extend(range(i, len(source)))     # trailing dims, of size 1 (products matched)
    return groups


def _rewritten_dims(node: Node) -> list[int] | None:
    """The source dims `node` reduces when its operand is a merging view, else None."""
    view = node.args[0]
    if not (isinstance(view, Node) and view.op == "call_function" and view.target in MERGING_VIEWS):
        return None
    source, merged = _static_shape(view.args[0]), _static_shape(view)
    dims = node.args[1] if len(node.args) > 1 else None
    if source is None or merged is None or not dims or len(source) <= len(merged):
        return None
    groups = merged_groups(source, merged)
    if groups is None:
        return None
    new_dims = sorted(s for d in {d % len(merged) for d in dims} for s in groups[d])
    keepdim = node.args[2] if len(node.args) > 2 else node.kwargs.get("keepdim", False)
    kept = tuple(size for i, size in enumerate(source) if i not in new_dims)
    # keepdim, or a kept dim the view merged, would give the result another shape
    return new_dims if not keepdim and kept == _static_shape(node) else None


def unmerge_reductions(graph: Graph) -> int:
    """Rewrite reductions over a view's merged dims (module doc); returns how many."""
    count = 0
    for node in list(graph.nodes):
        if node.op != "call_function" or node.target not in REDUCTIONS:
            continue
        new_dims = _rewritten_dims(node)
        if new_dims is None:
            continue
        view = node.args[0]
        node.args = (view.args[0], new_dims, *node.args[2:])
        if not view.users:
            graph.erase_node(view)
        count += 1
    return count
