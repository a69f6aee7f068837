"""What a pass is: an object whose dataclass fields are its options, with a `name` and a
`run(module)` that rewrites the module in place."""
from __future__ import annotations

from typing import ClassVar, Protocol

from ..ir import Module


class Pass(Protocol):
    name: ClassVar[str]

    def run(self, module: Module) -> None: ...
