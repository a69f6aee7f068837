"""fusec as a torch.compile backend: `torch.compile(model, backend="fusec")`.

Layers of this package: entry.py (Dynamo -> AOT autograd -> one compile per aten graph),
graph.py (partition a graph into fused regions), support.py (which nodes fusec takes),
rules.py (the table: aten op -> fusec DSL expression), region.py (a region's kernel source
and the module that runs it), stats.py (counters), options.py.
"""
from .entry import backend, decompositions, torch_backend
from .options import Options
from .stats import graphs, reset, stats

__all__ = ["backend", "torch_backend", "Options", "stats", "graphs", "reset", "decompositions"]
