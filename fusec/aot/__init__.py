"""Ahead-of-time kernel packages: compile kernels for several targets into a folder that is
an importable Python package running them without fusec (and a C header + source for C
callers of the GPU variants).

    import fusec.aot
    fusec.aot.build(softmax, signature=["float32[?,N<=4096]"], targets=["sm_80", "sm_90",
                    "cpu"], out="dist/mykernels")
    # elsewhere, without fusec:  from mykernels import softmax; y = softmax(x)

    signature.py  the signature language ("float32[?,N:16<=4096]", "int32", ...)
    specs.py      signature -> compiler params and loader rules; power-of-two buckets
    configs.py    the config of each variant: given, or by the tuning mode from fusec's
                  autotuner (cached, measured, the model's pick, the default policy)
    witness.py    calls standing for a variant (the JIT's key of it, measured arguments)
    build.py      compiling the variants of a kernel for each target
    introspect.py layout.py exprs.py native.py   reading compiles into manifest form,
                  CPU shared libraries
    writer.py cgen.py   writing the package folder, the C dispatch
    wheel.py      the package folder as a wheel
    runtime/      the loader copied into every package (standalone)
    templates/    the package's __init__.py and the C runtime
"""
from __future__ import annotations

from pathlib import Path

from .build import BuildError, KernelBuild, build_variants, parse_targets
from .configs import MODES as TUNE_MODES
from .configs import TuningError, check_tune
from .signature import SignatureError, parse_entry, parse_signature
from .wheel import check_version, write_wheel
from .writer import write_package

__all__ = ["BuildError", "KernelBuild", "SignatureError", "TUNE_MODES", "TuningError",
           "build", "build_package", "parse_entry", "parse_signature", "write_wheel"]

DEFAULT_VERSION = "0.1.0"


_KINDS = {"POSITIONAL_ONLY": "positional_only", "POSITIONAL_OR_KEYWORD":
          "positional_or_keyword", "KEYWORD_ONLY": "keyword_only"}


def _params(kernel) -> list[dict]:
    """The kernel's parameters for the manifest: name, constexpr, kind, and the default
    where JSON holds it exactly. A default JSON cannot hold must be passed, and so must the
    positional parameters before it (Python allows no default before a required one)."""
    out, required_after = [], False
    for p in reversed(kernel.params):
        entry = {"name": p.name, "constexpr": p.name in kernel.constexprs,
                 "kind": _KINDS[p.kind.name]}
        d = p.default
        storable = d is None or type(d) in (bool, int, str) or (
            type(d) is float and d == d and abs(d) != float("inf"))
        positional = p.kind is not p.KEYWORD_ONLY
        if d is not p.empty and storable and not (positional and required_after):
            entry["default"] = d
        elif positional:
            required_after = True
        out.append(entry)
    return out[::-1]


def build_package(kernels: list[KernelBuild], targets, out, tune="cache",
                  wheel=False, version: str = DEFAULT_VERSION, log=None) -> Path:
    """Build every kernel for every target into the package folder `out` (its name is the
    import name). `tune`: how each variant's config is chosen (configs.py: "cache",
    "measure", "model", "none" or a callable tuner); `wheel`: also write the package as a
    wheel, into `out`'s parent folder (True) or into the given folder. Returns the
    package folder."""
    from .. import __version__
    targets = parse_targets(targets)
    check_tune(tune)
    check_version(version)
    if not kernels:
        raise BuildError("give at least one kernel to build")
    built = {}
    for kb in kernels:
        if kb.name in built:
            raise BuildError(f"kernel name {kb.name!r} appears twice")
        built[kb.name] = (_params(kb.kernel), build_variants(kb, targets, tune, log))
    folder = write_package(out, built, __version__, version)
    if wheel:
        path = write_wheel(folder, folder.parent if wheel is True else wheel, version)
        if log:
            log(f"wrote {path}")
    return folder


def build(kernel, signature, targets, out, constexprs: dict | None = None, config=None,
          tune="cache", tune_sizes: dict | None = None, name: str | None = None,
          wheel=False, version: str = DEFAULT_VERSION, log=None) -> Path:
    """Build one kernel. `signature`: one signature (a list of entries, one per runtime
    parameter, or one comma-separated string), or a list of several signatures.
    `tune_sizes`: the sizes the variants are tuned for, by name ("N" a named dim, "n" an
    int argument, "x[1]" an anonymous dim)."""
    several = isinstance(signature, (list, tuple)) and signature and all(
        isinstance(s, (list, tuple)) for s in signature)
    signatures = list(signature) if several else [signature]
    kb = KernelBuild(kernel, signatures, constexprs or {}, config, name, tune_sizes or {})
    return build_package([kb], targets, out, tune, wheel, version, log)
