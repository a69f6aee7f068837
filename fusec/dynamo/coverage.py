"""Which core aten ops the torch.compile backend lowers, computed from its tables:

    python3 -m fusec.dynamo.coverage

prints the core ATen IR ops (torch.Tag.core) of the installed torch in five groups: lowered
into fused regions (rules.py; matmuls with `matmul="fusec"`), decomposed first into ops that
are (entry.py's table), run as fusec kernels of their own (library.py, for some arguments),
no kernel (views aten replays without a copy, size queries, uninitialized allocations), and
left to aten (a kernel of torch's own each).
"""
from __future__ import annotations

import torch

from .entry import decompositions
from .library import _OPS as LIBRARY
from .rules import MATMULS, RULES, is_view, packet

GROUPS = ("lowered", "decomposed", "library", "no kernel", "aten")
NO_KERNEL = {"empty", "empty_strided", "sym_size", "sym_stride", "sym_numel",
             "sym_storage_offset", "sym_is_contiguous"}


def core_aten_ops() -> list:
    """The packets of aten with an overload tagged core, by name."""
    ops = []
    for name in dir(torch.ops.aten):
        try:
            p = getattr(torch.ops.aten, name)
        except (AttributeError, RuntimeError):
            continue
        overloads = getattr(p, "overloads", None)
        if overloads is not None and any(
                torch.Tag.core in getattr(getattr(p, o), "tags", ()) for o in overloads()):
            ops.append(p)
    return sorted(ops, key=lambda p: p.__name__)


def _group(p, decomposed: set, library: set) -> str:
    if p in RULES or p in MATMULS:
        return "lowered"
    if p.__name__ in NO_KERNEL or is_view(p):
        return "no kernel"
    if p in decomposed:
        return "decomposed"
    if p in library:
        return "library"
    return "aten"


def coverage() -> dict[str, list[str]]:
    """{group: names of the core aten ops in it} (GROUPS)."""
    decomposed = {packet(op) for op in decompositions()}
    library = {packet(op) for op in LIBRARY}
    out = {g: [] for g in GROUPS}
    for p in core_aten_ops():
        out[_group(p, decomposed, library)].append(p.__name__)
    return out


def main() -> None:
    groups = coverage()
    total = sum(map(len, groups.values()))
    print(f"core aten ops of torch {torch.__version__}: {total}")
    for g in GROUPS:
        print(f"{g} ({len(groups[g])}): {', '.join(groups[g]) or '-'}")


if __name__ == "__main__":
    main()
