"""Module-level switches of the code generators (tensor_cores.ENABLED, mma's K-loop
schedule, ...), as seen by the disk cache of whole kernels: a kernel compiled with a switch
flipped must not be reused without it. Each switch registers its default when its module
is imported; `changed()` lists those set otherwise now. A switch of a module not imported
yet is at its default.
"""
from __future__ import annotations

import sys

_DEFAULTS: dict[tuple[str, str], object] = {}


def register(module: str, *names: str) -> None:
    """Record the current values of `names` in `module` (called at its import) as the
    defaults."""
    owner = sys.modules[module]
    for name in names:
        _DEFAULTS[(module, name)] = getattr(owner, name)


def changed() -> list[tuple[str, str, object]]:
    """(module, name, value) of every registered switch not at its default."""
    out = []
    for (module, name), default in _DEFAULTS.items():
        value = getattr(sys.modules[module], name)
        if value != default:
            out.append((module, name, value))
    return sorted(out, key=repr)
