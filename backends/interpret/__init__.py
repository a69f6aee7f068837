"""The numpy reference interpreter of the IR (the semantics every backend must match)."""
from .interpreter import Interpreter, run

__all__ = ["Interpreter", "run"]
