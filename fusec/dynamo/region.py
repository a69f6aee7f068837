"""A fused region of an aten graph -> one fusec kernel, and the module that runs it.

The region's nodes are written out as the source of a whole-tensor fusec kernel (one
statement per node, each result cast to the dtype aten gives it, so torch's type promotion
holds whatever the DSL would infer); fusec's fuse and tile passes then make as few launches
of it as its dependences allow. As Inductor does, values aten holds in bfloat16 or float16
are computed in float32 inside a region -- its 16-bit inputs are widened where they are
read and its results rounded once where they are stored -- rather than rounded after every
op; an explicit conversion in the graph (`.to(torch.bfloat16)`) still rounds. The source is
registered with linecache under a `<fusec-region ...>` name, so compile errors point at the
line of the node.

Results that are views of the kernel's values (or of the region's inputs) are replayed
after the launch (region_call.py): their strides are exactly eager's. When fusec cannot compile the
region (an error from the frontend or a backend), the region warns once and runs its nodes
as aten ops from then on; `strict` raises instead.
"""
from __future__ import annotations

import itertools
import linecache
import operator
import warnings

import torch
from torch.fx import GraphModule, Node

import fusec

from .. import jit, language as fl
from ..errors import LaunchError
from .aliases import Roots, row_major
from .region_call import region_call
from .rules import Emitter, computed_dtype, dtype_name, fast_view, rule_for, widened
from .support import is_store, meta_value, result_tensors, rule_args, split_region

_counter = itertools.count()


class RegionSource:
    """The kernel source of a region and how its arguments and results map to fx nodes."""

    def __init__(self, gm: GraphModule, name: str, matmul: str):
        nodes = [n for n in gm.graph.nodes if n.op == "call_function"]
        output = next(n for n in gm.graph.nodes if n.op == "output")
        self.bases, self.replayed, rendered = split_region(
            nodes, lambda n: output in n.users)
        self.name = name
        self.var: dict[Node, str] = {}
        self.params: list[Node] = []
        self.widen: list[str] = []           # 16-bit float inputs read as float32
        self.nodes = [n for n in nodes if n in rendered]    # in graph order
        self.body: list[str] = []
        for i, n in enumerate(self.nodes):
            self.body += self._statements(n, f"v{i}", matmul)
        self.results = [f"{self.var[b]}.to({dtype_name(meta_value(b).dtype)})"
                        if widened(meta_value(b).dtype) else self.var[b] for b in self.bases]
        self.text = self._render()

    def _render(self) -> str:
        header = f"def {self.name}({', '.join(f'a{i}' for i in range(len(self.params)))}):"
        results = "".join(f"{r}, " for r in self.results)
        return "\n".join([header, *self.widen, *self.body, f"    return ({results})", ""])

    def copy_results(self, indices) -> None:
        """Results the kernel returned as one of its parameters (clone(x), x.repeat(()):
        fusec returns an argument it was handed as is) become a fresh tensor, as eager's."""
        for k in indices:
            copy = f"c{k}"
            self.body += [f"    {copy} = fusec.empty_like({self.results[k]})",
                          f"    {copy}[:] = {self.results[k]}    # a new tensor, as eager's"]
            self.results[k] = copy
        self.text = self._render()

    def _name(self, node: Node) -> str:
        if node not in self.var:             # a region input: a kernel parameter
            param = f"a{len(self.params)}"
            self.var[node] = param
            self.params.append(node)
            value = meta_value(node)
            if isinstance(value, torch.Tensor) and widened(value.dtype):
                self.var[node] = f"{param}_f32"
                self.widen.append(f"    {param}_f32 = {param}.to(fl.float32)")
        return self.var[node]

    def _statements(self, node: Node, name: str, matmul: str) -> list[str]:
        if node.target is operator.getitem:
            self.var[node] = f"{self.var[node.args[0]]}_{node.args[1]}"
            return []
        if is_store(node):       # into the input's own memory, in its dtype
            dst, src = node.args[:2]
            self._name(dst)
            param = f"a{self.params.index(dst)}"
            self.var[node] = param
            dtype = dtype_name(meta_value(dst).dtype)
            return [f"    {param}[:] = ({self.var[src]}).to({dtype})    # {node.format_node()}"]
        args, kwargs = rule_args(node, self._name)
        emit = Emitter(name)
        out = rule_for(node.target, matmul)(emit, *args, **kwargs)
        lines = list(emit.lines)
        if isinstance(out, tuple):
            for k, (expr, t) in enumerate(zip(out, result_tensors(node))):
                lines.append(f"{name}_{k} = ({expr}).to({dtype_name(computed_dtype(t.dtype))})")
        else:
            computed = computed_dtype(meta_value(node).dtype)
            lines.append(f"{name} = ({out}).to({dtype_name(computed)})")
        self.var[node] = name
        return [f"    {line}    # {node.format_node()}"[:400] if i == len(lines) - 1
                else f"    {line}" for i, line in enumerate(lines)]

    def function(self):
        filename = f"<fusec-region {self.name}>"
        linecache.cache[filename] = (len(self.text), None, self.text.splitlines(True), filename)
        scope = {"fl": fl, "fusec": fusec}
        exec(compile(self.text, filename, "exec"), scope)
        return scope[self.name]


def traced_for_one_shape(gm: GraphModule) -> bool:
    """No symbolic size or stride among the region's inputs: Dynamo's guards hold every call
    to the traced shapes, so the kernel is specialized to them exactly (no bounds checks
    where tiles divide the sizes) and never compiles again for this graph."""
    for n in gm.graph.nodes:
        if n.op != "placeholder":
            continue
        v = meta_value(n)
        if isinstance(v, torch.Tensor):
            if not all(type(s) is int for s in (*v.shape, *v.stride())):
                return False
        elif v is not None and type(v) not in (int, float, bool):
            return False                    # a SymInt or SymFloat input
    return True


class FusedRegion(torch.nn.Module):
    """Runs a region: its fusec kernel, then the views of the results aten replays. The
    first call compiles (or falls back to aten); later calls run the generated code of
    region_call.py, set up by `trust_inputs` (compile_graph calls it with which inputs have
    their traced layout at run time; until then none is trusted)."""

    def __init__(self, gm: GraphModule, options, label: str):
        super().__init__()
        self.original = gm
        self.options = options
        name = f"fusec_{label}_{next(_counter)}"
        self.source = RegionSource(gm, name, options.matmul)
        self.kernel = self._kernel()
        self.placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
        position = {n: i for i, n in enumerate(self.placeholders)}
        self.param_positions = [position[p] for p in self.source.params]
        self.output_args = next(n for n in gm.graph.nodes if n.op == "output").args[0]
        self.replay = [n for n in gm.graph.nodes if n in self.source.replayed]
        for n in self.replay:
            fast_view(n)
        self.fallback_reason: str | None = None
        self.launches_per_call: int | None = None
        self.call_text = ""              # the generated code of later calls
        self.trust_inputs([False] * len(self.placeholders))

    def _kernel(self) -> jit.Kernel:
        options = self.options
        return jit.Kernel(self.source.function(), backend=options.backend,
                          autotune=options.autotune, fast_math=options.fast_math,
                          static_shapes=traced_for_one_shape(self.original))

    def trust_inputs(self, trusted: list[bool]) -> list[bool]:
        """Generate the call code knowing which inputs have their traced layout at run
        time; returns the same for each output."""
        self.trusted = list(trusted)
        self.kernel.known_layouts = frozenset(
            k for k, i in enumerate(self.param_positions) if self.trusted[i])
        roots = Roots()
        for p, sure in zip(self.placeholders, trusted):
            if sure:
                roots.trust(p)
        for b in self.source.bases:      # fusec allocates its results row-major
            if row_major(b):
                roots.root[b] = b
        for n in self.replay:
            roots.visit(n)
        self._run, self._finish, self.call_text = region_call(
            self.source.name, self.kernel, self._fall_back, self.placeholders,
            self.source.params, self.source.bases, self.replay, self.output_args, roots)
        if self.launches_per_call is not None and self.fallback_reason is None:
            self.forward = self._run
        return [isinstance(o, Node) and o in roots.root for o in self.output_args]

    def caller(self):
        """A plain function running the region, named after its kernel: what the compiled
        graph calls (forward changes after the first call, so it is looked up each time)."""
        def call(*args):
            return self.forward(*args)
        call.__name__ = call.__qualname__ = self.source.name
        call.region = self                  # for tools reading the compiled graph
        return call

    def forward(self, *args):
        if self.fallback_reason is not None:
            return self.original(*args)
        params = [args[i] for i in self.param_positions]
        try:
            values = self.kernel(*params)
            compiled = self.kernel.compile(*params)
            aliased = [k for k, (kind, _) in enumerate(compiled._returns) if kind == "param"]
            if aliased:                  # an identity of an input: copied, as eager does
                self.source.copy_results(aliased)
                self.kernel = self._kernel()
                self.trust_inputs(self.trusted)
                values = self.kernel(*params)
                compiled = self.kernel.compile(*params)
        except LaunchError:
            raise
        except Exception as exc:         # fusec cannot compile this region: aten runs it
            return self._fall_back(exc, args)
        self.launches_per_call = compiled.num_launches
        self.forward = self._run         # later calls: the generated code
        return self._finish(values, *args)

    def _fall_back(self, exc: Exception, args):
        if self.options.strict:
            raise exc
        self.fallback_reason = f"{type(exc).__name__}: {exc}"
        self.__dict__.pop("forward", None)
        warnings.warn(f"fusec: region {self.source.name} runs as aten ops "
                      f"({self.fallback_reason.splitlines()[0]})", stacklevel=3)
        return self.original(*args)
