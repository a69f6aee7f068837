"""Host-side DSL names: `fusec.tile`, `fusec.empty` & co, `fusec.constexpr`, `@fusec.func`.

Like `fl.*`, these are markers that only mean something while a kernel is traced.
"""
from __future__ import annotations

import functools


def marker(prefix: str, name: str, signature: str, tag: str, where: str):
    """A stand-in function that the tracer recognizes by its `tag` attribute (set to
    `name`) and that raises when called outside a kernel."""
    def stand_in(*args, **kwargs):
        raise RuntimeError(f"{prefix}{name} can only be used inside {where}")
    stand_in.__name__ = stand_in.__qualname__ = name
    stand_in.__doc__ = f"{prefix}{name}{signature} (traced inside kernels only)"
    setattr(stand_in, tag, name)
    return stand_in


def _host_marker(name: str, signature: str):
    return marker("fusec.", name, signature, "_fusec_host", "a @fusec.kernel's host part")


empty = _host_marker("empty", "(shape, dtype=fl.float32)")
zeros = _host_marker("zeros", "(shape, dtype=fl.float32)")
empty_like = _host_marker("empty_like", "(x, dtype=None)")
zeros_like = _host_marker("zeros_like", "(x, dtype=None)")


def tile(sizes, block=None):
    """`for t in fusec.tile(M)` / `for tm, tn in fusec.tile([M, N])`: iterate over tiles.
    Outermost tile loops form the launch grid; nested ones are sequential."""
    raise RuntimeError("fusec.tile can only be used inside a @fusec.kernel")


tile._fusec_tile = True


class constexpr:
    """Annotate a kernel parameter `p: fusec.constexpr` to make it a compile-time constant."""

    def __init__(self, value=None):
        self.value = value

    def __repr__(self) -> str:
        return f"constexpr({self.value!r})"


class Func:
    """A helper decorated with `@fusec.func`: inlined where a kernel calls it."""

    def __init__(self, fn):
        self.fn = fn
        functools.update_wrapper(self, fn)

    def __call__(self, *args, **kwargs):
        raise RuntimeError(f"@fusec.func {self.fn.__name__} can only be called inside a kernel")


def func(fn):
    return Func(fn)
