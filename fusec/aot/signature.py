"""The signature language of AOT builds: what a package variant assumes about each runtime
argument, written as text.

    tensor   DTYPE "[" dim, ... "]" flag*       "float32[?,?]", "bf16[?,4096]", "f16[]"
    dim      7          a static size
             ?          a dynamic size
             N          a dynamic size with a name: every dim named N has the same size
             + ":16"    divisible by 16                      "?:16", "N:16"
             + "<=4096" at most 4096; needed on a size the kernel uses as a whole-extent
                        `:` tile (a variant is built per power-of-two bucket up to it)
    flags    by default a tensor is assumed laid out as a contiguous one would be: last dim
             of unit stride, the other strides multiples of 16 where the sizes after them
             make that so, data pointer 16-byte aligned (the loader checks each of these)
             ":strided"   assume nothing about strides
             ":unaligned" do not assume an aligned data pointer
    scalar   "int32" (0 <= v < 2**31) | "int64" | "float32" "float64" "float" (a Python
             float) | "bool"; ints take ":signed" (may be negative), ":16" (divisible by
             16) and "<=N"

Parsing checks everything and raises SignatureError naming the entry.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, replace

from ..ir import dtypes as D

INT32_MAX = 2 ** 31 - 1
INT64_MIN, INT64_MAX = -2 ** 63, 2 ** 63 - 1


class SignatureError(ValueError):
    """A signature entry that does not parse or does not fit the kernel."""


@dataclass(frozen=True)
class Dim:
    size: int | None = None          # static size, else dynamic
    name: str | None = None          # named dynamic dim
    multiple_of: int = 1
    max: int | None = None

    def __str__(self):
        if self.size is not None:
            return str(self.size)
        text = self.name or "?"
        if self.multiple_of != 1:
            text += f":{self.multiple_of}"
        return text + (f"<={self.max}" if self.max is not None else "")


@dataclass(frozen=True)
class TensorSig:
    dtype: D.DType
    dims: tuple
    strided: bool = False
    aligned16: bool = True

    def __str__(self):
        flags = (":strided" if self.strided else "") + ("" if self.aligned16 else ":unaligned")
        return f"{self.dtype.name}[{','.join(map(str, self.dims))}]{flags}"

    def unit_stride(self) -> tuple:
        """Per dim: the stride is assumed to be 1."""
        last = len(self.dims) - 1
        return tuple(d == last and not self.strided for d in range(len(self.dims)))

    def stride16(self) -> tuple:
        """Per dim: the stride is assumed to be a multiple of 16 elements, as it is in a
        contiguous layout when the sizes after the dim hold a factor 16."""
        facts, factor = [], 1
        for dim in reversed(self.dims):
            facts.append(not self.strided and factor % 16 == 0 and dim.size != 1)
            factor *= dim.size if dim.size is not None else dim.multiple_of
        return tuple(reversed(facts))


@dataclass(frozen=True)
class IntSig:
    wide: bool = False               # int64 (else int32)
    signed: bool = False
    multiple_of: int = 1
    max: int | None = None

    def __str__(self):
        text = "int64" if self.wide else "int32"
        text += ":signed" if self.signed else ""
        text += f":{self.multiple_of}" if self.multiple_of != 1 else ""
        return text + (f"<={self.max}" if self.max is not None else "")

    @property
    def bounds(self) -> tuple[int, int]:
        low = (INT64_MIN if self.wide else -INT32_MAX - 1) if self.signed else 0
        high = INT64_MAX if self.wide else INT32_MAX
        return low, high if self.max is None else min(high, self.max)


@dataclass(frozen=True)
class FloatSig:
    def __str__(self):
        return "float"


@dataclass(frozen=True)
class BoolSig:
    def __str__(self):
        return "bool"


_TENSOR = re.compile(r"^(\w+)\[([^\]]*)\]((?::\w+)*)$")
_DIM = re.compile(r"^(?:(\d+)|(\?|[A-Za-z_]\w*)(?::(16))?(?:<=(\d+))?)$")
_SCALAR = re.compile(r"^(\w+)((?::\w+)*)(?:<=(\d+))?$")
_TENSOR_FLAGS = {"strided": ("strided", True), "unaligned": ("aligned16", False)}
_INT_FLAGS = {"signed": ("signed", True), "16": ("multiple_of", 16)}
_SCALARS = {"int32": IntSig(), "int": IntSig(), "int64": IntSig(wide=True),
            "float32": FloatSig(), "float64": FloatSig(), "float": FloatSig(),
            "bool": BoolSig()}


def parse_entry(text: str, where: str = "signature"):
    """One entry ("float32[?,N:16]", "int64:signed", ...) -> TensorSig | IntSig | ..."""
    if not isinstance(text, str):
        raise SignatureError(f"{where}: expected a string like 'float32[?,?]' or 'int32', "
                             f"got {type(text).__name__}")
    s = re.sub(r"\s+", "", text)
    m = _TENSOR.match(s)
    if m:
        return _parse_tensor(m, text, where)
    m = _SCALAR.match(s)
    if not m or m.group(1) not in _SCALARS:
        raise SignatureError(f"{where}: cannot read {text!r}: expected a tensor like "
                             f"'float32[?,?]' or a scalar ({', '.join(_SCALARS)})")
    sig = _SCALARS[m.group(1)]
    flags = [f for f in m.group(2).split(":") if f]
    if not isinstance(sig, IntSig):
        if flags or m.group(3):
            raise SignatureError(f"{where}: {text!r}: only int scalars take ':signed', "
                                 "':16' or '<=N'")
        return sig
    for flag in flags:
        if flag not in _INT_FLAGS:
            raise SignatureError(f"{where}: {text!r}: unknown int flag {flag!r}; expected "
                                 f"one of {', '.join(_INT_FLAGS)}")
        field, value = _INT_FLAGS[flag]
        sig = replace(sig, **{field: value})
    if m.group(3):
        sig = replace(sig, max=int(m.group(3)))
    return sig


def _parse_tensor(m, text: str, where: str) -> TensorSig:
    try:
        dtype = D.dtype_from_name(m.group(1))
    except ValueError as exc:
        raise SignatureError(f"{where}: {text!r}: {exc}") from None
    dims = []
    body = m.group(2)
    for part in (body.split(",") if body else []):
        dm = _DIM.match(part)
        if not dm:
            raise SignatureError(f"{where}: {text!r}: cannot read dim {part!r}: expected a "
                                 "size (7), '?', a name (N), optionally with ':16' and "
                                 "'<=BOUND'")
        if dm.group(1) is not None:
            dims.append(Dim(size=int(dm.group(1))))
        else:
            name = None if dm.group(2) == "?" else dm.group(2)
            dims.append(Dim(name=name, multiple_of=16 if dm.group(3) else 1,
                            max=int(dm.group(4)) if dm.group(4) else None))
    sig = TensorSig(dtype, tuple(dims))
    for flag in (f for f in m.group(3).split(":") if f):
        if flag not in _TENSOR_FLAGS:
            raise SignatureError(f"{where}: {text!r}: unknown tensor flag {flag!r}; expected "
                                 f"one of {', '.join(_TENSOR_FLAGS)}")
        field, value = _TENSOR_FLAGS[flag]
        sig = replace(sig, **{field: value})
    return sig


def parse_signature(entries, names: list[str]) -> list:
    """One entry per runtime parameter (in order) -> their sigs, with named dims made
    consistent: every dim named N carries the facts (':16', '<=') given on any of them.
    `entries` is a list of strings or one string of comma-separated entries."""
    if isinstance(entries, str):
        entries = split_entries(entries)
    entries = list(entries)
    if len(entries) != len(names):
        raise SignatureError(f"signature has {len(entries)} entries but the kernel takes "
                             f"{len(names)} runtime argument(s) ({', '.join(names) or 'none'})")
    sigs = [parse_entry(e, f"signature entry for {n!r}") for e, n in zip(entries, names)]
    facts: dict[str, Dim] = {}
    for sig in sigs:
        for dim in getattr(sig, "dims", ()):
            if dim.name is not None:
                seen = facts.get(dim.name, Dim(name=dim.name))
                bounds = [b for b in (seen.max, dim.max) if b is not None]
                facts[dim.name] = Dim(name=dim.name,
                                      multiple_of=max(seen.multiple_of, dim.multiple_of),
                                      max=min(bounds) if bounds else None)
    return [replace(sig, dims=tuple(facts.get(d.name, d) for d in sig.dims))
            if isinstance(sig, TensorSig) else sig for sig in sigs]


def split_entries(text: str) -> list[str]:
    """"float32[?,?], int32" -> ["float32[?,?]", "int32"] (commas inside brackets stay)."""
    parts, depth, current = [], 0, ""
    for ch in text:
        depth += {"[": 1, "]": -1}.get(ch, 0)
        if ch == "," and depth == 0:
            parts.append(current.strip())
            current = ""
        else:
            current += ch
    if current.strip():
        parts.append(current.strip())
    return parts
