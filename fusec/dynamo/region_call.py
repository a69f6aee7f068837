"""The straight-line Python a fused region runs per call, generated once per region.

    def run(a0, a1, a2):                      # the region's inputs, in order
        try:
            r = kernel(a0, a2)                # the fusec kernel: its results (bases)
        except Exception as exc:              # not compiled: the region runs as aten ops
            return fall_back(exc, (a0, a1, a2))
        b0, = r
        v0 = reinterpret(b0, (8, 16, 8), (128, 8, 1), 0)    # a view chain, collapsed
        v1 = f1(a1, [1, 0])                   # a view of an input: an aten view
        return (b0, v0, v1)

`finish(r, *inputs)` is the part after the kernel call (the first call, which compiles,
calls the kernel itself). Nothing but what the outputs need is computed: views whose layout
is known (aliases.py) are one reinterpret of their root and the views between disappear.
Every constant argument is a global of the generated code, so no value is re-parsed.
"""
from __future__ import annotations

import linecache

from torch.fx import Node

from ..errors import LaunchError
from .aliases import REINTERPRET, Roots


class _Writer:
    def __init__(self):
        self.scope: dict = {"reinterpret": REINTERPRET, "LaunchError": LaunchError}
        self.var: dict[Node, str] = {}

    def const(self, value) -> str:
        if type(value) in (int, bool) or value is None:
            return repr(value)
        return self._global(value)

    def _global(self, value) -> str:
        name = f"c{len(self.scope)}"
        self.scope[name] = value
        return name

    def expr(self, a) -> str:
        if isinstance(a, Node):
            return self.var[a]
        if isinstance(a, (list, tuple)) and any(isinstance(x, Node) for x in a):
            items = ", ".join(self.expr(x) for x in a)
            return f"[{items}]" if isinstance(a, list) else f"({items},)"
        return self.const(a)


def needed_nodes(outputs, replay: list[Node], roots: Roots) -> list[Node]:
    """The replayed nodes the outputs depend on, a collapsible view depending on its root
    alone; in graph order."""
    inside = set(replay)
    needed, todo = set(), [o for o in outputs if isinstance(o, Node)]
    while todo:
        n = todo.pop()
        if n in needed or n not in inside:
            continue
        needed.add(n)
        todo += [roots.root[n]] if roots.collapsible(n) else list(n.all_input_nodes)
    return [n for n in replay if n in needed]


def region_call(name: str, kernel, fall_back, placeholders: list[Node], params: list[Node],
                bases: list[Node], replay: list[Node], outputs, roots: Roots):
    """(run, finish): the generated functions of a region's call (see the module's text)."""
    w = _Writer()
    w.scope.update(kernel=kernel, fall_back=fall_back)
    for i, p in enumerate(placeholders):
        w.var[p] = f"a{i}"
    inputs = ", ".join(w.var[p] for p in placeholders)
    for i, b in enumerate(bases):
        w.var[b] = f"b{i}"
    body = [f"    {''.join(w.var[b] + ', ' for b in bases)}= r"] if bases else []
    for k, n in enumerate(needed_nodes(outputs, replay, roots)):
        w.var[n] = f"v{k}"
        if roots.collapsible(n):
            root, size, stride, offset = roots.reinterpret_args(n)
            call = f"reinterpret({w.var[root]}, {w.const(size)}, {w.const(stride)}, {offset})"
        else:
            args = [w.expr(a) for a in n.args]
            args += [f"{key}={w.expr(v)}" for key, v in n.kwargs.items()]
            call = f"{w._global(n.target)}({', '.join(args)})"
        body.append(f"    {w.var[n]} = {call}    # {n.name}")
    results = "".join(f"{w.expr(o)}, " for o in outputs)
    body.append(f"    return ({results})")
    params_text = ", ".join(w.var[p] for p in params)
    text = "\n".join([
        f"def finish(r, {inputs}):" if inputs else "def finish(r):", *body, "",
        f"def run({inputs}):",
        "    try:",
        f"        r = kernel({params_text})",
        "    except LaunchError:",
        "        raise",
        "    except Exception as exc:",
        f"        return fall_back(exc, ({inputs}{',' if inputs else ''}))",
        *body, ""])
    filename = f"<fusec-region-call {name}>"
    linecache.cache[filename] = (len(text), None, text.splitlines(True), filename)
    exec(compile(text, filename, "exec"), w.scope)
    return w.scope["run"], w.scope["finish"], text
