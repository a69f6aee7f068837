"""The pass manager and the default pipeline."""
from __future__ import annotations

from collections import Counter
from typing import Callable

from ..ir import Module, VerificationError, verify
from .base import Pass
from .registry import PASSES, UnknownPassError, make_pass

DEFAULT_PIPELINE = [
    "loop-fuse",     # adjacent loop nests over the same tiles, the second reading the first's
                     # writes of the same elements: one launch, the intermediate in registers
    "canonicalize",  # fold constants and identities so that equal things look equal
    "cse",           # merge repeated index math (tile_index, broadcasts) for the analysis
    "mask-elim",     # prove bounds checks and mask compares always true (sympy, div16)
    "canonicalize",  # fold the and/where/masks that just became constant
    "cse",           # merge what that folding made identical
    "dce",           # drop the compares, constants and index math left unused
]

# Names parse_pipeline expands to a whole pipeline.
PIPELINES = {"default": DEFAULT_PIPELINE}


class PassVerificationError(VerificationError):
    """The IR failed verification after a pass (stage "input": before the first one)."""

    def __init__(self, stage: str, error: VerificationError):
        where = "input IR is invalid" if stage == "input" else f"IR invalid after pass {stage!r}"
        ValueError.__init__(self, f"{where}: {error}")
        self.op, self.stage = error.op, stage


def parse_pipeline(text: str) -> list[str]:
    """"canonicalize,cse" -> ["canonicalize", "cse"]; "default" expands to DEFAULT_PIPELINE."""
    names: list[str] = []
    for name in (n.strip() for n in text.split(",")):
        if not name:
            continue
        if name in PIPELINES:
            names += PIPELINES[name]
        elif name in PASSES:
            names.append(name)
        else:
            raise UnknownPassError(name)
    return names


def stage_names(passes: list[Pass]) -> list[str]:
    """Unique names for the stages: a pass that runs again gets ".2", ".3", ..."""
    seen: Counter[str] = Counter()
    names = []
    for p in passes:
        seen[p.name] += 1
        names.append(p.name if seen[p.name] == 1 else f"{p.name}.{seen[p.name]}")
    return names


class PassManager:
    def __init__(self, passes: list[str | Pass], verify: bool = False,
                 on_stage: Callable[[str, Module], None] | None = None):
        self.passes: list[Pass] = [make_pass(p) if isinstance(p, str) else p for p in passes]
        self.verify = verify
        self.on_stage = on_stage

    def run(self, module: Module) -> None:
        if self.verify:
            self._verify("input", module)
        for stage, p in zip(stage_names(self.passes), self.passes):
            p.run(module)
            if self.verify:
                self._verify(stage, module)
            if self.on_stage is not None:
                self.on_stage(stage, module)

    @staticmethod
    def _verify(stage: str, module: Module) -> None:
        try:
            verify(module)
        except VerificationError as exc:
            raise PassVerificationError(stage, exc) from exc
