"""A launch configuration: what the autotuner chooses and `fusec.Config` spells."""
from __future__ import annotations

from dataclasses import dataclass


def _positive_int(value, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"fusec.Config: {what} must be a positive int, got {value!r}")
    return value


@dataclass(frozen=True)
class Config:
    """Block sizes (in the order the fusec.tile dims appear in the source; entries of dims
    fixed with `block=` are ignored), warps per program (GPU), pipeline stages (GPU dot)."""
    blocks: tuple = ()
    warps: int = 4
    stages: int = 3

    def __init__(self, blocks=(), warps: int = 4, stages: int = 3):
        if isinstance(blocks, (str, bytes)) or not hasattr(blocks, "__iter__"):
            raise ValueError(f"fusec.Config: blocks must be a list of ints, got {blocks!r}")
        blocks = tuple(blocks)
        for i, b in enumerate(blocks):
            _positive_int(b, f"blocks[{i}]")
        object.__setattr__(self, "blocks", blocks)
        object.__setattr__(self, "warps", _positive_int(warps, "warps"))
        object.__setattr__(self, "stages", _positive_int(stages, "stages"))

    def to_json(self) -> dict:
        return {"blocks": list(self.blocks), "warps": self.warps, "stages": self.stages}

    @classmethod
    def from_json(cls, data: dict) -> "Config":
        return cls(blocks=data["blocks"], warps=data["warps"], stages=data["stages"])

    def __str__(self) -> str:
        return f"blocks={list(self.blocks)} warps={self.warps} stages={self.stages}"
