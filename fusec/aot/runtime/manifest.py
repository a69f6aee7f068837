"""manifest.json of a package: reading it, checking it against the schema below, and reading
artifacts only after their sha256 matches.

The schema is data: a dict spec lists every key of an object (Optional marks the ones that
may be absent; other keys are refused), ListOf/MapOf/OneOf/Tagged compose, a type checks
the JSON value (bool is never taken for an int). A failure names the path of the value,
e.g. `kernels.softmax.variants[2].layout.slots: expected int, got str`.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path, PurePosixPath

from .errors import ChecksumError, ManifestError

FORMAT = "fusec-aot-package"
SCHEMA_VERSION = 1
MANIFEST = "manifest.json"


class Optional:
    def __init__(self, spec):
        self.spec = spec


class ListOf:
    def __init__(self, item):
        self.item = item


class MapOf:
    def __init__(self, value):
        self.value = value


class OneOf:
    """One of a fixed set of JSON values."""
    def __init__(self, *values):
        self.values = values


class Tagged:
    """An object whose "kind" picks its spec."""
    def __init__(self, by_kind: dict):
        self.by_kind = by_kind


class Nullable:
    def __init__(self, spec):
        self.spec = spec


CONFIG_SOURCES = ("given", "tuner", "cached", "measured", "model", "kernel_configs",
                  "default_policy")
SCALAR = (int, float, str, bool, type(None))
EXPR = ListOf((int, str))                       # postfix tokens (exprs.py)
DIM_RULE = {"size": Nullable(int), "multiple_of": int, "max": Nullable(int)}
PARAM_RULE = Tagged({
    "tensor": {"kind": str, "dtype": str, "dims": ListOf(DIM_RULE),
               "unit_stride": ListOf(bool), "stride16": ListOf(bool), "aligned16": bool},
    "int": {"kind": str, "min": int, "max": int, "multiple_of": int},
    "float": {"kind": str},
    "bool": {"kind": str},
    "constexpr": {"kind": str, "value": SCALAR},
})
GUARD = {"expr": EXPR, "text": str, "min": int, "max": int}
# shared_bytes: a GPU launch's dynamic shared memory per block; absent (manifests written
# before it) means none, so those still load under this schema version
LAUNCH = {"function": str, "grid": ListOf({"slot": int, "extent": EXPR, "block": int}),
          Optional("work"): int, Optional("scratch_slot"): int,
          Optional("scratch_bytes"): int, Optional("shared_bytes"): int}
VARIANT = {
    "id": str,
    "target": str,
    "signature": str,
    "rules": {"params": ListOf(PARAM_RULE), "equal_dims": ListOf(ListOf(ListOf(int))),
              "guards": ListOf(GUARD)},
    "symbols": ListOf(ListOf((str, int))),
    # where the config came from (fusec/aot/configs.py) and the sizes it was tuned for
    "config": {"blocks": ListOf(int), "warps": int, "stages": int,
               "source": OneOf(*CONFIG_SOURCES), Optional("tuned_for"): MapOf(int)},
    "layout": {"slots": int,
               "tensors": ListOf({"arg": int, "slot": int, "rank": int}),
               "scalars": ListOf({"arg": int, "slot": int,
                                  "kind": OneOf("int", "float", "bool")}),
               "sizes": ListOf({"slot": int, "expr": EXPR}),
               "launches": ListOf(LAUNCH)},
    "allocs": ListOf({"dtype": str, "shape": ListOf(EXPR), "zero": bool}),
    "returns": ListOf(ListOf((str, int))),
    "returns_tuple": bool,
    "written": ListOf(int),
    Optional("cpu"): {"system": str, "machine": str, "features": ListOf(str),
                      "arena_bytes": int},
    Optional("cuda"): {"threads": int},
    "artifact": {"path": str, "sha256": str, "bytes": int},
    # a GPU variant's PTX: the driver compiles it for a device no cubin runs on (cuda.py)
    Optional("ptx"): {"path": str, "sha256": str, "bytes": int},
}
SCHEMA = {
    "format": OneOf(FORMAT),
    "schema_version": OneOf(SCHEMA_VERSION),
    "name": str,
    "version": str,
    "fusec_version": str,
    "kernels": MapOf({"params": ListOf({"name": str, "constexpr": bool,
                                        "kind": OneOf("positional_only",
                                                                "positional_or_keyword",
                                                                "keyword_only"),
                                        Optional("default"): SCALAR}),
                      # checked when the kernel is first used (check_variants): importing a
                      # package then checks what every kernel needs, not every variant
                      "variants": list}),
}
VARIANTS = ListOf(VARIANT)


def check_variants(kernel: str, variants: list) -> None:
    check(variants, VARIANTS, (((None, "kernels"), kernel), "variants"))


def _label(t: type) -> str:
    return {dict: "object", list: "array", type(None): "null"}.get(t, t.__name__)


def _type_name(value) -> str:
    return _label(type(value))


def _is(value, types) -> bool:
    types = types if isinstance(types, tuple) else (types,)
    if isinstance(value, bool):
        return bool in types
    return isinstance(value, types)


def _path(where) -> str:
    """"kernels.softmax.variants[2]" from the (parent, key) chain check() carries."""
    parts = []
    while where is not None:
        where, key = where
        parts.append(f"[{key}]" if isinstance(key, int) else f".{key}")
    return "".join(reversed(parts)).lstrip(".") or "(top)"


def check(value, spec, where=None) -> None:
    """Raise ManifestError unless `value` follows `spec`. `where` is the value's position
    as a (parent, key) chain, turned into text only when a check fails (a manifest has
    thousands of values and loading it is on the first call's path)."""
    def fail(what):
        raise ManifestError(f"{MANIFEST}: {_path(where)}: {what}")
    if isinstance(spec, dict):
        if type(value) is not dict:
            fail(f"expected an object, got {_type_name(value)}")
        known = set()
        for key, sub in spec.items():
            optional = isinstance(key, Optional)
            name = key.spec if optional else key
            known.add(name)
            if name in value:
                check(value[name], sub, (where, name))
            elif not optional:
                fail(f"missing key {name!r}")
        if len(value) > len(known) or not value.keys() <= known:
            fail(f"unknown key(s) {', '.join(map(repr, sorted(set(value) - known)))}")
    elif isinstance(spec, ListOf):
        if type(value) is not list:
            fail(f"expected an array, got {_type_name(value)}")
        item = spec.item
        for i, x in enumerate(value):
            check(x, item, (where, i))
    elif isinstance(spec, MapOf):
        if type(value) is not dict:
            fail(f"expected an object, got {_type_name(value)}")
        for key, x in value.items():
            check(x, spec.value, (where, key))
    elif isinstance(spec, Tagged):
        kind = value.get("kind") if type(value) is dict else None
        if kind not in spec.by_kind:
            fail(f"expected an object with 'kind' one of {', '.join(spec.by_kind)}, got "
                 f"{kind!r}")
        check(value, spec.by_kind[kind], where)
    elif isinstance(spec, OneOf):
        if not any(type(value) is type(v) and value == v for v in spec.values):
            fail(f"expected {' or '.join(map(repr, spec.values))}, got {value!r}")
    elif isinstance(spec, Nullable):
        if value is not None:
            check(value, spec.spec, where)
    elif not _is(value, spec):
        want = " or ".join(_label(t) for t in (spec if isinstance(spec, tuple) else (spec,)))
        fail(f"expected {want}, got {_type_name(value)}")


def read_manifest(root: Path) -> dict:
    path = root / MANIFEST
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ManifestError(f"cannot read {path}: {exc.strerror}") from None
    try:
        manifest = json.loads(text)
    except ValueError as exc:
        raise ManifestError(f"{path} is not valid JSON: {exc}") from None
    if isinstance(manifest, dict) and manifest.get("schema_version") not in (None,
                                                                              SCHEMA_VERSION):
        raise ManifestError(f"{path}: schema_version {manifest.get('schema_version')!r} is "
                            f"not the one this loader reads ({SCHEMA_VERSION}): rebuild the "
                            "package with a matching fusec")
    check(manifest, SCHEMA)
    return manifest


def artifact_path(root: Path, relative: str) -> Path:
    """The artifact's file, refusing paths that leave the package folder."""
    pure = PurePosixPath(relative)
    if pure.is_absolute() or ".." in pure.parts or not pure.parts:
        raise ManifestError(f"{MANIFEST}: artifact path {relative!r} is not inside the "
                            "package")
    return root.joinpath(*pure.parts)


def read_artifact(root: Path, artifact: dict) -> bytes:
    """The artifact's bytes, after checking their size and sha256 against the manifest."""
    path = artifact_path(root, artifact["path"])
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ChecksumError(f"cannot read artifact {artifact['path']}: {exc.strerror}") \
            from None
    digest = hashlib.sha256(data).hexdigest()
    if len(data) != artifact["bytes"] or digest != artifact["sha256"]:
        raise ChecksumError(f"artifact {artifact['path']} does not match the manifest "
                            f"(sha256 {digest[:16]}..., {len(data)} bytes; expected "
                            f"{artifact['sha256'][:16]}..., {artifact['bytes']} bytes): the "
                            "package was modified or damaged; rebuild it")
    return data
