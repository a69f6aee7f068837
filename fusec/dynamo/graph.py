"""Compile one aten graph (a forward, backward or inference graph from AOT autograd):
partition it into fused regions, replace each by a FusedRegion, leave the rest to aten.

Partitioning uses torch.fx's capability-based partitioner with FusecSupport: maximal groups
of supported nodes that do not create cycles through unsupported ones. A region must not
compute a view fusec has no rule for (a reshape between two of its ops); such views are
excluded and the graph partitioned again, which splits the region around them.
"""
from __future__ import annotations

import operator
import os
import sys
from dataclasses import dataclass, field

import torch
from torch.fx import GraphModule, Node
from torch.fx.passes.infra.partitioner import CapabilityBasedPartitioner
from torch.fx.passes.utils.fuser_utils import fuse_by_partitions, validate_partition

from .aliases import Roots, collapse_views, fold_permute_chains
from .cast_views import move_views_past_casts
from .merged_reductions import unmerge_reductions
from .library import library_op
from .region import FusedRegion
from .rules import (Unsupported, aten, computes, fast_call, is_cast, is_view, launches_nothing,
                    packet)
from .support import FusecSupport, interior_views, is_store

MAX_REPARTITIONS = 64


@dataclass
class GraphReport:
    """What became of one graph: its regions and the aten ops left (FUSEC_DUMP=graph)."""
    label: str
    regions: list = field(default_factory=list)           # FusedRegion
    aten_ops: list = field(default_factory=list)          # ("name = op", why not fused)
    aten_launching: int = 0          # aten nodes that run a device kernel (not views)
    code: str = ""                   # the Python code of the compiled graph
    module: object = None            # the compiled GraphModule (benchmarks time its nodes)
    view_calls: tuple = (0, 0)       # view calls before and after chains were collapsed
    matmul_choices: list = field(default_factory=list)    # matmul="auto": Choice per matmul
    library_calls: list = field(default_factory=list)     # "name = kernel" (library.py)

    @property
    def launches_per_call(self) -> int | None:
        """Device kernels one call of the graph launches (known after a first call)."""
        counts = [r.launches_per_call if r.fallback_reason is None else
                  sum(not launches_nothing(n.target) for n in r.source.nodes)
                  for r in self.regions]
        if any(c is None for c in counts):
            return None
        return sum(counts) + self.aten_launching + len(self.library_calls)

    def text(self) -> str:
        lines = [f"fusec graph {self.label}: {len(self.regions)} fused region(s), "
                 f"{len(self.aten_ops)} aten op(s)"]
        for r in self.regions:
            ops = ", ".join(n.name for n in r.source.nodes)
            lines.append(f"  region {r.source.name}: {len(r.source.nodes)} ops [{ops}]")
            lines += ["    " + line for line in r.source.text.splitlines()]
        for call in self.library_calls:
            lines.append(f"  kernel {call}: a fusec kernel of its own (atomic adds)")
        for node, why in self.aten_ops:
            lines.append(f"  aten {node}: {why}")
        for name, choice in self.matmul_choices:
            if choice.fusec:
                lines.append(f"  {name}: {choice.text()}")
        before, after = self.view_calls
        if before != after:
            lines.append(f"  views outside regions: {after} calls where the graph had {before}"
                         " (chains of views of known layout are one reinterpret of their "
                         "root)")
        return "\n".join(lines)


def _partitions(gm: GraphModule, support: FusecSupport):
    for _ in range(MAX_REPARTITIONS):
        partitioner = CapabilityBasedPartitioner(
            gm, support, allows_single_node_partition=True,
            non_compute_ops=[], allowed_single_node_partition_ops=None)
        partitions = partitioner.propose_partitions()
        bad = [n for p in partitions for n in interior_views(_ordered(gm, p.nodes))]
        for n in bad:
            support.excluded[n] = "a view fusec has no rule for, used inside a fused region"
        if bad:
            continue
        parts = [c for p in partitions for c in _independent_parts(_ordered(gm, p.nodes))]
        # views joined to a partition without computing anything in it (a weight's permute
        # for an aten matmul) can put it on both sides of that matmul and keep it from
        # merging with the work beside it: they stay aten's, and the partitioner goes again
        idle = [n for c in parts if not _computes(c) for n in c]
        for n in idle:
            support.excluded[n] = "a view: aten runs it (no copy)"
        if not idle:
            for c in [c for c in parts if not _reads_a_tensor(c)]:
                for n in c:       # a constructor alone: its kernel would not know the device
                    support.reasons[n] = "a constructor with no tensor input: aten runs it"
            return _stores_after_reads(
                _casts_joined([c for c in parts if _reads_a_tensor(c)]), support)
    raise RuntimeError("fusec: partitioning did not settle")    # pragma: no cover


def _casts_joined(parts: list[list]) -> list[list]:
    """A part that only casts (and views) values of one other part joins that part: the
    partitioner leaves a bf16 rounding of a norm's saved statistics in a partition of its
    own, a launch for a few bytes, where the region computing them can store them rounded."""
    owner = {n: i for i, part in enumerate(parts) for n in part}
    for i, part in enumerate(parts):
        if any(computes(n) and not is_cast(n) for n in part):
            continue
        inside = set(part)
        sources = {owner.get(a) for n in part for a in n.all_input_nodes if a not in inside}
        if len(sources) != 1 or None in sources:
            continue
        j = sources.pop()
        if not validate_partition(parts[j] + part):     # joined, they would form a cycle
            continue
        parts[j] = parts[j] + part
        parts[i] = []
        owner.update({n: j for n in part})
    return [p for p in parts if p]


def _stores_after_reads(parts: list[list], support: FusecSupport) -> list[list]:
    """A region storing into a graph input (copy_) runs where the partition puts it, which
    may be before an op outside it that reads the input's old value: its copy_ stays
    aten's (at the graph's end) unless every reader outside the region is one the region
    depends on."""
    kept = []
    for part in parts:
        stores = [n for n in part if is_store(n)]
        if stores:
            inside = set(part)
            before = _ancestors(a for n in part for a in n.all_input_nodes if a not in inside)
            for store in stores:
                if any(u is not store and u not in inside and u not in before
                       for u in store.args[0].users):
                    part.remove(store)
                    support.reasons[store] = ("copy_ into an input read outside the region "
                                              "after it would run: aten writes it at the "
                                              "graph's end")
        if _computes(part):
            kept.append(part)
    return kept


def _ancestors(nodes) -> set:
    """The nodes and every node they read, transitively."""
    seen, todo = set(), list(nodes)
    while todo:
        n = todo.pop()
        if n not in seen:
            seen.add(n)
            todo += n.all_input_nodes
    return seen


def _independent_parts(nodes: list) -> list[list]:
    """A partition split into the parts that share neither a node nor an input: the
    partitioner joins unrelated work (a head split's copy and the softmax beside it), and
    one kernel for both only gives their groups one config to share where each part has
    its own (splitting an acyclic partition keeps every part acyclic)."""
    parent = {n: n for n in nodes}

    def find(n):
        while parent[n] is not n:
            parent[n] = parent[parent[n]]
            n = parent[n]
        return n

    reader: dict = {}                    # an input (inside or not) -> a node reading it
    for n in nodes:
        for a in n.all_input_nodes:
            first = a if a in parent else reader.setdefault(a, n)
            parent[find(n)] = find(first)
    parts: dict = {}
    for n in nodes:
        parts.setdefault(find(n), []).append(n)
    return list(parts.values())


def _reads_a_tensor(nodes: list) -> bool:
    """A part with a tensor input from outside it (its kernel runs on that tensor's device)."""
    inside = set(nodes)
    return any(isinstance(a.meta.get("val"), torch.Tensor)
               for n in nodes for a in n.all_input_nodes if a not in inside)


def _ordered(gm: GraphModule, nodes) -> list:
    return [n for n in gm.graph.nodes if n in nodes]


def _computes(nodes) -> bool:
    """A region worth a kernel: it computes something other than views (a row-major copy
    counts: fusec's copy kernel reads a permuted or expanded view where aten's generic copy
    kernel is several times slower on the transformer block's head split)."""
    return any(computes(n) for n in nodes)


def _target_name(target) -> str:
    return str(target) if hasattr(target, "overloadpacket") else getattr(
        target, "__name__", str(target))


def _left_to_aten(target) -> str:
    if packet(target) is aten.clone:
        return "a copy (clone) keeping a layout other than row-major: aten runs it"
    return "a view: aten runs it (no copy)" if is_view(target) else "a result of a region"


def _layout_roots(gm: GraphModule) -> Roots:
    """Which nodes of the graph have their traced layout at run time (aliases.py), telling
    each region which of its inputs do and learning which of its outputs do."""
    roots = Roots()
    trusted_outputs: dict = {}          # region call node -> flags of its outputs
    for node in gm.graph.nodes:
        if node.op == "call_module" and isinstance(getattr(gm, node.target), FusedRegion):
            region = getattr(gm, node.target)
            trusted_outputs[node] = region.trust_inputs(
                [isinstance(a, Node) and a in roots.root for a in node.args])
        elif node.target is operator.getitem and node.args[0] in trusted_outputs:
            if trusted_outputs[node.args[0]][node.args[1]]:
                roots.trust(node)
        else:
            roots.visit(node)
    return roots


def compile_graph(gm: GraphModule, options, label: str) -> tuple[GraphModule, GraphReport]:
    support = FusecSupport(options)
    unmerge_reductions(gm.graph)
    move_views_past_casts(gm.graph)
    partitions = _partitions(gm, support)
    why_not = {n.name: why for n, why in support.reasons.items()}   # fusing renews nodes
    report = GraphReport(label)
    report.matmul_choices = [(n.name, c) for n, c in support.matmul_choices.items()]
    regions = set()                  # the regions' nodes (call_module until the end)
    if partitions:
        prefix = f"_fusec_region_{label}_"
        gm = fuse_by_partitions(gm, [dict.fromkeys(p) for p in partitions], prefix=prefix,
                                always_return_tuple=True)
        for node in gm.graph.nodes:
            if node.op == "call_module" and node.target.startswith(prefix):
                region = FusedRegion(getattr(gm, node.target), options, label)
                setattr(gm, node.target, region)
                report.regions.append(region)
                regions.add(node)
    library = set()                  # nodes now calling a kernel of library.py
    for node in gm.graph.nodes:
        if node.op == "call_function":
            try:
                call = library_op(node, options)
            except Unsupported as exc:
                why_not[node.name] = str(exc)
                continue
            if call is not None:
                report.library_calls.append(f"{node.name} = {call.__name__}")
                node.target = call
                library.add(node)
    for node in gm.graph.nodes:
        if node.op == "call_function" and node not in library and not (
                node.target is operator.getitem and node.args[0] in regions):
            why = why_not.get(node.name) or _left_to_aten(node.target)
            report.aten_ops.append((f"{node.name} = {_target_name(node.target)}", why))
            report.aten_launching += not launches_nothing(node.target)
    fold_permute_chains(gm.graph)
    report.view_calls = collapse_views(gm.graph, _layout_roots(gm))
    if options.dump or "graph" in os.environ.get("FUSEC_DUMP", "").split(","):
        print(report.text(), file=sys.stderr)
    for node in gm.graph.nodes:
        if node in regions:        # a plain call: nn.Module's call costs ~4 us on every step
            node.op, node.target = "call_function", getattr(gm, node.target).caller()
        elif node.op == "call_function":
            fast_call(node)
    gm.recompile()
    report.code = gm.code
    report.module = gm
    return gm, report
