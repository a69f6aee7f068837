"""A compiled kernel's launch description in manifest form: the slot layout both
backends share (backends/llvm/runtime.py ArgLayout, backends/cuda/layout.py Layout), the
size formulas of size slots, grids and outputs as postfix tokens, and the size symbols'
bindings to the arguments."""
from __future__ import annotations

from .exprs import postfix, symbols_of


def _scalar_kind(dtype) -> str:
    return "float" if dtype.is_float else "bool" if dtype.is_bool else "int"


def launch_layout(layout, functions: list[str]) -> dict:
    """layout: the backend's ArgLayout/Layout; one entry per launch, in launch order."""
    if len(functions) != len(layout.launches):
        raise ValueError(f"{len(functions)} functions for {len(layout.launches)} launches")
    launches = []
    for name, launch, slots in zip(functions, layout.launches, layout.grid_slots):
        launches.append({"function": name, "grid": [
            {"slot": s, "extent": postfix(loop.attrs["extent"]),
             "block": int(loop.attrs["block"])} for s, loop in zip(slots, launch.loops)]})
    return {
        "slots": layout.n_slots,
        "tensors": [{"arg": t[0], "slot": t[1], "rank": t[2].type.rank}
                    for t in layout.tensors],
        "scalars": [{"arg": pos, "slot": slot, "kind": _scalar_kind(v.type.dtype)}
                    for pos, slot, v in layout.scalars],
        "sizes": [{"slot": s, "expr": postfix(e)} for e, s in layout.sym_slots.items()],
        "launches": launches,
    }


def outputs(layout) -> list[dict]:
    """The kernel's outputs (allocs, in the layout's order): dtype, shape, zero-filled."""
    return [{"dtype": op.results[0].type.dtype.name,
             "shape": [postfix(d) for d in op.results[0].type.shape],
             "zero": bool(op.attrs.get("zero", False))} for op in layout.allocs]


def symbols(kernel_op) -> list:
    return [[name, int(index), int(dim)] for name, index, dim in kernel_op.attrs.get("sizes",
                                                                                      [])]


def check_symbols(entry: dict) -> None:
    """Every size formula of a variant names only symbols bound from its arguments."""
    known = {s[0] for s in entry["symbols"]}
    formulas = [s["expr"] for s in entry["layout"]["sizes"]] + \
        [g["extent"] for launch in entry["layout"]["launches"] for g in launch["grid"]] + \
        [d for a in entry["allocs"] for d in a["shape"]] + \
        [g["expr"] for g in entry["rules"]["guards"]]
    unknown = set().union(*map(symbols_of, formulas)) - known if formulas else set()
    if unknown:
        raise ValueError(f"variant {entry['id']}: size formulas use symbols not bound from "
                         f"the arguments: {', '.join(sorted(unknown))}")
