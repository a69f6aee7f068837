"""User-facing errors. A CompilationError shows the kernel's source line with a caret."""
from __future__ import annotations

import linecache


class CompilationError(Exception):
    """An error in a kernel's source, reported at its file, line and column."""

    def __init__(self, message: str, file: str | None = None, line: int | None = None,
                 col: int | None = None, kernel: str | None = None):
        self.message = message
        self.file, self.line, self.col, self.kernel = file, line, col, kernel
        super().__init__(self._format())

    def _format(self) -> str:
        if self.file is None or self.line is None:
            return self.message
        head = f"{self.file}:{self.line}:{self.col}"
        if self.kernel:
            head += f" (in kernel {self.kernel!r})"
        source = linecache.getline(self.file, self.line).rstrip("\n")
        if not source:
            return f"{head}: {self.message}"
        caret = " " * max(0, (self.col or 1) - 1) + "^"
        return f"{head}: {self.message}\n    {source}\n    {caret}"


class LaunchError(RuntimeError):
    """A kernel failed to launch or run on its device."""


def shape_text(shape) -> str:
    """A shape as error messages write it: [M, 4096]."""
    return "[" + ", ".join(str(d) for d in shape) + "]"
