"""Every pass by the name pipelines and `fusec opt -p` use."""
from __future__ import annotations

from .base import Pass
from .canonicalize import Canonicalize
from .cse import CommonSubexpressionElimination
from .dce import DeadCodeElimination
from .fuse import Fuse
from .loop_fuse import LoopFusion
from .mask_elim import MaskElimination
from .scan_flips import ScanFlips
from .tile import Tile

PASSES: dict[str, type] = {
    "canonicalize": Canonicalize,
    "cse": CommonSubexpressionElimination,
    "dce": DeadCodeElimination,
    "mask-elim": MaskElimination,
    "fuse": Fuse,
    "tile": Tile,
    "loop-fuse": LoopFusion,
    "scan-flips": ScanFlips,
}


class UnknownPassError(ValueError):
    def __init__(self, name: str):
        super().__init__(f"unknown pass {name!r}; known passes: {', '.join(sorted(PASSES))}")
        self.pass_name = name


def make_pass(name: str) -> Pass:
    """A pass with its default options."""
    try:
        return PASSES[name]()
    except KeyError:
        raise UnknownPassError(name) from None
