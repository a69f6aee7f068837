"""Counters of the torch.compile backend, for `fusec.stats()`: graphs compiled (each Dynamo
recompile shows here), fused regions, fusec kernel specializations built, fallbacks."""
from __future__ import annotations

_graphs: list = []        # GraphReport of every graph compiled in this process


def record_graph(report) -> None:
    _graphs.append(report)


def graphs() -> list:
    """The GraphReport of every graph compiled so far (text(): the partition)."""
    return list(_graphs)


def stats() -> dict:
    regions = [r for g in _graphs for r in g.regions]
    return {
        "graphs_compiled": len(_graphs),
        "fused_regions": len(regions),
        "kernel_specializations": sum(r.kernel.specializations for r in regions),
        "aten_ops": sum(len(g.aten_ops) for g in _graphs),
        "fallback_regions": sum(r.fallback_reason is not None for r in regions),
        "launches_per_call": {g.label: g.launches_per_call for g in _graphs},
    }


def reset() -> None:
    _graphs.clear()
