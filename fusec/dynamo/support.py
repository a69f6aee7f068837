"""Which nodes of an aten graph fusec lowers: the partitioner's operator support.

A node is supported when its rule (rules.py) renders it for its actual arguments and every
tensor it touches has a fusec dtype on one CPU or CUDA device. Views without a rule (view,
reshape, squeeze, ...) are supported only as results of a region (replayed by aten there);
`interior_views` finds those a region uses inside, which the graph compiler then excludes.
"""
from __future__ import annotations

import operator

import torch
from torch.fx import Node
from torch.fx.passes.operator_support import OperatorSupportBase

from .rules import (DTYPES, MATMULS, Emitter, RULES, Unsupported, Var, aten,
                    is_view, packet, replayed_by_aten, rule_for)

SCALARS = (int, float, bool, torch.SymInt, torch.SymFloat, torch.SymBool)


def meta_value(node: Node):
    return node.meta.get("val", node.meta.get("example_value"))


def check_tensor(v: torch.Tensor, what: str) -> None:
    if v.dtype not in DTYPES:
        raise Unsupported(f"{what} has dtype {v.dtype}")
    if v.device.type not in ("cpu", "cuda") or v.layout != torch.strided:
        raise Unsupported(f"{what} is a {v.layout} tensor on {v.device}")


def as_var(node: Node, name: str) -> Var:
    """An fx value as a rule argument (raises Unsupported for values fusec cannot take)."""
    v = meta_value(node)
    if isinstance(v, torch.Tensor):
        check_tensor(v, node.name)
        return Var(name, v.dtype, v.dim(), v.device.type)
    if isinstance(v, SCALARS):
        return Var(name)
    raise Unsupported(f"{node.name} is a {type(v).__name__}, not a tensor or scalar")


def rule_args(node: Node, names) -> tuple[tuple, dict]:
    """node's args and kwargs with every Node replaced by its Var (`names(n)`: its name)."""
    def convert(a):
        if isinstance(a, Node):
            return as_var(a, names(a))
        if isinstance(a, (list, tuple)):
            return type(a)(convert(x) for x in a)
        return a
    return convert(tuple(node.args)), {k: convert(v) for k, v in node.kwargs.items()}


def result_tensors(node: Node) -> list:
    v = meta_value(node)
    return list(v) if isinstance(v, (list, tuple)) else [v]


def has_rule(node: Node) -> bool:
    return packet(node.target) in RULES


def check_squeeze(node: Node) -> None:
    """A squeeze is lowered (fl.squeeze: free after a keepdim reduction) where the dims it
    names have static size 1; aten's squeeze skips dims of other sizes, which would need
    the sizes at lowering time (a view for aten otherwise)."""
    source = meta_value(node.args[0]) if isinstance(node.args[0], Node) else None
    if not isinstance(source, torch.Tensor):
        raise Unsupported("squeeze of a non-tensor")
    dims = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
    dims = [dims] if isinstance(dims, int) else dims
    if not dims or any(type(source.shape[d]) is not int or source.shape[d] != 1
                       for d in dims):
        raise Unsupported("a squeeze not naming dims all of static size 1 (aten runs it)")


def check_global_pool(node: Node) -> None:
    """adaptive_avg_pool2d is lowered to a mean where its output is 1 x 1 (global average
    pooling); its backward where the gradient is."""
    backward = packet(node.target) is aten._adaptive_avg_pool2d_backward
    out = meta_value(node.args[0] if backward else node)
    if not isinstance(out, torch.Tensor) or tuple(out.shape[-2:]) != (1, 1):
        raise Unsupported("adaptive_avg_pool2d to an output other than 1 x 1 (aten runs it)")


def is_store(node: Node) -> bool:
    """copy_ into a graph input: AOT autograd's write-back of a mutated input (a buffer,
    an argument changed in place) that a region's kernel stores itself."""
    return node.op == "call_function" and node.target is aten.copy_.default


def check_store(node: Node) -> None:
    """A region takes copy_ where it writes a whole graph input with a value of its shape,
    and nothing reads what copy_ returns (graph.py checks the order of the other reads)."""
    dst, src = node.args[:2]
    if not (isinstance(dst, Node) and dst.op == "placeholder" and isinstance(src, Node)):
        raise Unsupported("copy_ other than of a computed value into a graph input")
    if node.users or set(node.kwargs) - {"non_blocking"}:
        raise Unsupported("copy_ whose result is used")
    into, value = meta_value(dst), meta_value(src)
    if not isinstance(value, torch.Tensor) or tuple(into.shape) != tuple(value.shape):
        raise Unsupported("copy_ broadcasting its source")


# checks of a node's arguments beyond its rule's (sizes the rule cannot see)
NODE_CHECKS = {aten.squeeze: check_squeeze, aten.copy_: check_store,
               aten._adaptive_avg_pool2d: check_global_pool,
               aten._adaptive_avg_pool2d_backward: check_global_pool}


class FusecSupport(OperatorSupportBase):
    """The partitioner asks this which nodes may join a fused region; `reasons` keeps why
    the others may not (FUSEC_DUMP=graph prints them)."""

    def __init__(self, options):
        self.options = options
        self.matmul = options.matmul
        self.excluded: dict[Node, str] = {}
        self.reasons: dict[Node, str] = {}
        self.matmul_choices: dict[Node, object] = {}     # matmul="auto": matmul_choice.Choice

    def is_node_supported(self, submodules, node: Node) -> bool:
        try:
            self.check(node)
        except Unsupported as exc:
            self.reasons[node] = str(exc)
            return False
        self.reasons.pop(node, None)
        return True

    def check(self, node: Node) -> None:
        if node.op != "call_function":
            raise Unsupported(f"{node.op} node")
        if node in self.excluded:
            raise Unsupported(self.excluded[node])
        if node.target is operator.getitem:
            source = node.args[0]
            if not isinstance(source, Node) or not isinstance(node.args[1], int):
                raise Unsupported("getitem of a non-node")
            self.check(source)
            return
        for t in result_tensors(node):
            if not isinstance(t, torch.Tensor):
                raise Unsupported(f"a result of type {type(t).__name__}")
            check_tensor(t, f"a result of {node.name}")
        if is_view(node.target) and not has_rule(node):
            return                       # replayed by aten at a region's results
        rule = rule_for(node.target, self.matmul)
        if packet(node.target) in NODE_CHECKS:
            NODE_CHECKS[packet(node.target)](node)
        args, kwargs = rule_args(node, lambda n: n.name)
        devices = {a.device_type for a in (*args, *kwargs.values())
                   if isinstance(a, Var) and a.is_tensor}
        if len(devices) > 1:
            raise Unsupported("tensors on different devices")
        try:
            out = rule(Emitter("check"), *args, **kwargs)
        except TypeError as exc:         # arguments the rule does not take
            raise Unsupported(f"arguments not lowered: {exc}") from None
        if isinstance(out, tuple) != isinstance(meta_value(node), (list, tuple)):
            raise Unsupported("results differ in number from the lowering")
        if self.matmul == "auto" and packet(node.target) in MATMULS:
            from .matmul_choice import choose       # measures: imported when a graph asks
            choice = self.matmul_choices[node] = choose(node, self.options)
            if not choice.fusec:
                raise Unsupported(choice.text())


def split_region(nodes: list[Node], is_result) -> tuple[list[Node], set, set]:
    """(bases, replayed, rendered) of a region's nodes (in graph order; `is_result(n)`: n is
    used after the region). A result that is a view (not a row-major copy) is replayed by aten on its base (walking
    up through views); the bases are what the kernel returns, and `rendered` is what the
    kernel computes: the bases and everything of the region they depend on."""
    inside = set(nodes)
    bases, replayed = [], set()
    for n in nodes:
        if not is_result(n):
            continue
        m = n
        while m in inside and replayed_by_aten(m):
            replayed.add(m)
            m = m.args[0]
        if m in inside and m not in bases:
            bases.append(m)
    rendered, todo = set(), bases + [n for n in nodes if is_store(n)]
    while todo:
        n = todo.pop()
        if n not in rendered:
            rendered.add(n)
            todo += [a for a in n.all_input_nodes if a in inside]
    return bases, replayed, rendered


def interior_views(nodes: list[Node]) -> list[Node]:
    """Views without a rule that a region would have to compute inside (not renderable)."""
    inside = set(nodes)
    _, _, rendered = split_region(nodes, lambda n: any(u not in inside for u in n.users))
    return [n for n in nodes if n in rendered and is_view(n.target) and not has_rule(n)]
