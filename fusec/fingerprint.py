"""What a kernel's trace depends on, as a digest a later process can compute without
tracing: the key of the disk cache of whole compiled kernels (kernel_store.py).

A kernel's trace reads its function's source and the values its names resolve to (closure
cells, then globals, then builtins; codegen.Tracer.lookup), helpers called through
`@fusec.func` recursively. The digest covers:
- the text of each function's file as the tracer reads it (inspect, through linecache: a
  file edited after its import gives the new text, not the bytecode's) and its code object:
  bytecode, constants, names, file, first line and the position table (locations end up in
  the IR and in error messages);
- the values of the globals, closure cells and defaults it names: plain data by value,
  functions and helpers by their own digest, modules by name (and, for modules outside
  fusec / the standard library / numpy / torch / sympy, the attributes the code names);
- anything else (an array, an arbitrary object) makes the kernel opaque: `None`, and the
  kernel is traced in every process as before.
fusec's own functions and markers go by name: the compiler's fingerprint covers them.
"""
from __future__ import annotations

import builtins
import hashlib
import linecache
import os
import sys
import types

from .ir.dtypes import DType

_PLAIN = (int, float, bool, str, bytes, complex, type(None), type(Ellipsis))
_NAMED_MODULES = ("numpy", "torch", "sympy")     # and fusec itself (_own)
_OWN_PACKAGES = ("fusec",)           # its ir, passes, backends, autotune: fusec.<name>


class _Opaque(Exception):
    pass


_DIGESTS: dict[str, tuple] = {}      # file -> (size, mtime_ns, digest of its text)


def _source_digest(filename: str) -> str:
    """A digest of the text the tracer reads for code of `filename` (inspect reads it
    through linecache, which it first checks against the file on disk). A file's digest
    is kept while its size and modification time stay."""
    try:
        st = os.stat(filename)
    except OSError:                  # code without a file: linecache's lines (generated)
        lines = linecache.getlines(filename)
        if not lines:
            raise _Opaque(filename) from None
        return hashlib.sha256("".join(lines).encode()).hexdigest()
    known = _DIGESTS.get(filename)
    if known is not None and known[:2] == (st.st_size, st.st_mtime_ns):
        return known[2]
    linecache.checkcache(filename)
    digest = hashlib.sha256("".join(linecache.getlines(filename)).encode()).hexdigest()
    _DIGESTS[filename] = (st.st_size, st.st_mtime_ns, digest)
    return digest


def _own(module_name: str | None) -> bool:
    return bool(module_name) and module_name.split(".")[0] in _OWN_PACKAGES


def _named_module_name(name: str | None) -> bool:
    """Modules whose contents the key covers by name (fusec's own through the compiler's
    fingerprint, the rest through their versions being part of the environment)."""
    top = (name or "").split(".")[0]
    return top in _NAMED_MODULES or _own(name) or top in sys.stdlib_module_names \
        or top == "builtins"


class _Digest:
    def __init__(self):
        self.parts: list = []
        self.seen: set = set()

    def add(self, *items) -> None:
        self.parts.append(repr(items))

    def code(self, co: types.CodeType) -> set[str]:
        """Adds a code object (and those nested in it); returns the names the trace may
        look up outside the function: globals and attributes, and its locals other than
        the parameters (the tracer falls back to the globals for a local it has not
        assigned, as one assigned only in a branch a constexpr skips)."""
        self.add("code", co.co_qualname, co.co_filename, co.co_firstlineno, co.co_code,
                 co.co_names, co.co_varnames, co.co_freevars, co.co_cellvars,
                 co.co_linetable, co.co_argcount, co.co_kwonlyargcount)
        parameters = co.co_argcount + co.co_kwonlyargcount
        names = set(co.co_names) | set(co.co_varnames[parameters:]) | set(co.co_cellvars)
        for const in co.co_consts:
            if isinstance(const, types.CodeType):
                names |= self.code(const)
            else:
                self.value(const, ())
        return names

    def function(self, fn: types.FunctionType) -> None:
        if id(fn) in self.seen:               # recursion through globals
            self.add("again", fn.__qualname__)
            return
        self.seen.add(id(fn))
        self.add("source", _source_digest(fn.__code__.co_filename))
        names = self.code(fn.__code__)
        self.value(fn.__defaults__, names)
        self.value(fn.__kwdefaults__, names)
        for name, cell in zip(fn.__code__.co_freevars, fn.__closure__ or ()):
            try:
                contents = cell.cell_contents
            except ValueError:                 # not yet assigned
                self.add("cell", name, "empty")
                continue
            self.add("cell", name)
            self.value(contents, names)
        scope = fn.__globals__
        for name in sorted(names):
            if name in scope:
                self.add("global", name)
                self.value(scope[name], names)
            elif hasattr(builtins, name):
                self.add("builtin", name)

    def value(self, v, names) -> None:
        if isinstance(v, _PLAIN):
            self.add(type(v).__name__, v)
        elif isinstance(v, DType):
            self.add("dtype", v.name)
        elif isinstance(v, (tuple, list)):
            self.add(type(v).__name__, len(v))
            for x in v:
                self.value(x, names)
        elif isinstance(v, (set, frozenset)):
            self.add(type(v).__name__, sorted(repr(x) for x in v if isinstance(x, _PLAIN)))
            if not all(isinstance(x, _PLAIN) for x in v):
                raise _Opaque(v)
        elif isinstance(v, dict):
            self.add("dict", len(v))
            for k in sorted(v, key=repr):
                self.value(k, names)
                self.value(v[k], names)
        elif isinstance(v, types.ModuleType):
            self.module(v, names)
        elif isinstance(getattr(v, "fn", None), types.FunctionType) and \
                _own(type(v).__module__):
            self.add("wraps", type(v).__qualname__)     # @fusec.func helpers, kernels
            self.function(v.fn)
        elif isinstance(v, types.FunctionType):
            if _own(v.__module__):
                self.add("fusec", v.__module__, v.__qualname__)   # markers, fusec.tile
            else:
                self.function(v)
        elif isinstance(v, types.BuiltinFunctionType) or (
                isinstance(v, type) and _named_module_name(v.__module__)):
            self.add("named", getattr(v, "__module__", None), v.__qualname__)
        else:
            raise _Opaque(v)

    def module(self, module: types.ModuleType, names) -> None:
        self.add("module", module.__name__)
        if _named_module_name(module.__name__):
            return
        for name in sorted(names):          # the attributes the code may read off it
            if hasattr(module, name):
                self.add("attribute", name)
                self.value(getattr(module, name), names)


def function_fingerprint(fn) -> str | None:
    """A digest of what tracing `fn` reads, or None when something it names is not
    plain data, a function, a helper or a module (then only tracing can tell)."""
    digest = _Digest()
    try:
        digest.function(fn)
    except (_Opaque, RecursionError):
        return None
    return hashlib.sha256("\n".join(digest.parts).encode()).hexdigest()
