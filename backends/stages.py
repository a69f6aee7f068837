"""The ordered record of a compile's stages (IR after each pass, LLVM IR, assembly, ...).

Some stages cost real time to produce and are only read when someone looks (the assembly
text of the CPU backend: a second code generation). Those are stored as `Lazy` and made on
first access, so `.asm` still holds every stage without slowing every compile down.
"""
from __future__ import annotations


class Lazy:
    __slots__ = ("make",)

    def __init__(self, make):
        self.make = make


class Stages(dict):
    def __getitem__(self, key):
        value = super().__getitem__(key)
        if isinstance(value, Lazy):
            value = value.make()
            super().__setitem__(key, value)
        return value

    def get(self, key, default=None):
        return self[key] if key in self else default

    def values(self):
        return [self[k] for k in self]

    def items(self):
        return [(k, self[k]) for k in self]

    def __repr__(self):
        return f"Stages({list(self)})"
