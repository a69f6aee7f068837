"""fusec's IR: types, ops, builder, verifier, printer and parser of the text form."""
from . import dtypes, ops
from .builder import Builder
from .core import UNKNOWN_LOC, Block, Loc, Module, Op, Value, erase, replace_all_uses, uses
from .parser import IRParseError, parse
from .printer import print_module, print_op
from .symbolic import size_symbol
from .types import HANDLE, HandleType, TensorType, TileType, scalar
from .verifier import VerificationError, verify

__all__ = ["dtypes", "ops", "Builder", "Block", "Loc", "Module", "Op", "Value", "UNKNOWN_LOC",
           "erase", "replace_all_uses", "uses", "IRParseError", "parse", "print_module",
           "print_op", "size_symbol", "HANDLE", "HandleType", "TensorType", "TileType",
           "scalar", "VerificationError", "verify"]
