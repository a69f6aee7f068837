"""The launch slots of a call: one array of 8-byte values shared by every launch of a
variant, laid out by the compiler (manifest "layout"; the JIT backends' ArgLayout/Layout):

    per tensor (runtime params, then outputs): data pointer, sizes[rank], strides[rank]
    per scalar: the int, the bool as 0/1, or the bits of the float as a double
    per size formula (tile-loop extents and the like): its value
    per launch and grid dim: the number of tiles, ceil(extent / block)
    per launch (GPU): the pointer to its global scratch, filled by cuda.py
"""
from __future__ import annotations

import struct

from .errors import ManifestError
from .exprs import compile_expr

_DOUBLE = struct.Struct("<d")
_INT64 = struct.Struct("<q")


def _scalar_bits(kind: str, value) -> int:
    if kind == "float":
        return _INT64.unpack(_DOUBLE.pack(float(value)))[0]
    if kind == "bool":
        return int(bool(value))
    x = int(value) & 0xFFFFFFFFFFFFFFFF
    return x - (1 << 64) if x >> 63 else x


class SlotLayout:
    def __init__(self, variant: dict, where: str):
        layout = variant["layout"]
        names = {s[0] for s in variant["symbols"]}

        def expr(tokens, what):
            return compile_expr(tokens, names, f"{where}: {what}")
        self.n_slots = layout["slots"]
        self.tensors = [(t["arg"], t["slot"], t["rank"]) for t in layout["tensors"]]
        self.scalars = [(s["arg"], s["slot"], s["kind"]) for s in layout["scalars"]]
        self.sizes = [(s["slot"], expr(s["expr"], f"size slot {s['slot']}"))
                      for s in layout["sizes"]]
        self.grids = [[(g["slot"], expr(g["extent"], f"grid of {launch['function']}"),
                        g["block"]) for g in launch["grid"]] for launch in layout["launches"]]
        self.allocs = [(a["dtype"], [expr(e, f"shape of output {k}") for e in a["shape"]],
                        a["zero"]) for k, a in enumerate(variant["allocs"])]
        slot_ids = [s for _, s, r in self.tensors for s in range(s, s + 1 + 2 * r)] + \
            [s for _, s, _ in self.scalars] + [s for s, _ in self.sizes] + \
            [g[0] for grid in self.grids for g in grid]
        if any(not 0 <= s < self.n_slots for s in slot_ids):
            raise ManifestError(f"{where}: a slot index is outside the {self.n_slots} slots")

    def output_shapes(self, env: dict) -> list[tuple]:
        shapes = []
        for k, (_, dims, _) in enumerate(self.allocs):
            shape = tuple(f(env) for f in dims)
            if any(n < 0 for n in shape):
                raise ValueError(f"output {k} would have the negative shape {list(shape)}")
            shapes.append(shape)
        return shapes

    def pack(self, items: list, env: dict) -> tuple[list[int], list[int]]:
        """(slot values, programs per launch); items: the described runtime arguments
        followed by the described outputs."""
        vals = [0] * max(1, self.n_slots)
        for arg, slot, rank in self.tensors:
            t = items[arg]
            vals[slot] = t.address
            vals[slot + 1:slot + 1 + rank] = t.shape
            vals[slot + 1 + rank:slot + 1 + 2 * rank] = t.strides
        for arg, slot, kind in self.scalars:
            vals[slot] = _scalar_bits(kind, items[arg].value)
        for slot, fn in self.sizes:
            vals[slot] = fn(env)
        programs = []
        for grid in self.grids:
            total = 1
            for slot, fn, block in grid:
                tiles = max(0, -(-fn(env) // block))
                vals[slot] = tiles
                total *= tiles
            programs.append(total)
        return vals, programs
