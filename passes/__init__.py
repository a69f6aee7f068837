"""IR -> IR transformations, one per file, and the pass manager that runs them in order."""
from .base import Pass
from .canonicalize import Canonicalize
from .cse import CommonSubexpressionElimination
from .dce import DeadCodeElimination
from .manager import (DEFAULT_PIPELINE, PIPELINES, PassManager, PassVerificationError,
                      parse_pipeline, stage_names)
from .mask_elim import MaskElimination
from .registry import PASSES, UnknownPassError, make_pass

__all__ = ["Pass", "Canonicalize", "CommonSubexpressionElimination", "DeadCodeElimination",
           "MaskElimination", "DEFAULT_PIPELINE", "PIPELINES", "PassManager",
           "PassVerificationError", "parse_pipeline", "stage_names", "PASSES",
           "UnknownPassError", "make_pass"]
