"""Writing a package folder:

    <name>/__init__.py         exposes each kernel by name (templates/package_init.py)
    <name>/_fusec_runtime/     the loader (a copy of fusec/aot/runtime), with bytecode
    <name>/manifest.json       kernels, parameters, variants, rules, layouts, checksums
    <name>/kernels/<kernel>/<variant id>.so | .cubin
    <name>/c/<name>.h, <name>.c   C dispatch over the GPU variants (when there are any)

The folder is written next to its destination and moved into place, so a failed build
leaves no half package; an existing folder is replaced only if it is a package.
"""
from __future__ import annotations

import compileall
import hashlib
import json
import keyword
import py_compile
import shutil
import tempfile
from pathlib import Path

from .cgen import generate_c
from .runtime.manifest import FORMAT, MANIFEST, SCHEMA, SCHEMA_VERSION, check

HERE = Path(__file__).resolve().parent
RUNTIME = HERE / "runtime"
PACKAGE_INIT = HERE / "templates" / "package_init.py"
RESERVED = {"verify", "ChecksumError", "LaunchError", "ManifestError",
            "NoMatchingVariantError", "PackageError"}
SUFFIX = {"cpu": ".so"}


def check_name(name: str, what: str) -> str:
    if not name.isidentifier() or keyword.iskeyword(name) or name.startswith("_") \
            or name in RESERVED:
        raise ValueError(f"{what} {name!r} must be a Python identifier not starting with "
                         f"'_' and not one of {', '.join(sorted(RESERVED))}")
    return name


def _replace(tmp: Path, out: Path) -> None:
    if out.exists():
        if not (out / MANIFEST).is_file():
            raise FileExistsError(f"{out} exists and is not a fusec package: refusing to "
                                  "replace it")
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
        out.rename(old / out.name)
        tmp.rename(out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        tmp.rename(out)


def write_package(out, kernels: dict, fusec_version: str, version: str) -> Path:
    """kernels: name -> (params entries, list of BuiltVariant); `version`: the package's."""
    out = Path(out).resolve()
    name = check_name(out.name, "the package folder name (the import name)")
    for kernel_name in kernels:
        check_name(kernel_name, "kernel name")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.new-", dir=out.parent))
    try:
        manifest = {"format": FORMAT, "schema_version": SCHEMA_VERSION, "name": name,
                    "version": version, "fusec_version": fusec_version, "kernels": {}}
        for kernel_name, (params, variants) in kernels.items():
            entries = []
            for v in variants:
                rel = f"kernels/{kernel_name}/{v.entry['id']}" \
                      f"{SUFFIX.get(v.entry['target'], '.cubin')}"
                path = tmp / rel
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(v.artifact)
                entry = v.entry | {"artifact": _file_entry(rel, v.artifact)}
                if v.ptx:
                    ptx_rel = f"kernels/{kernel_name}/{v.entry['id']}.ptx"
                    (tmp / ptx_rel).write_bytes(v.ptx)
                    entry["ptx"] = _file_entry(ptx_rel, v.ptx)
                entries.append(entry)
            manifest["kernels"][kernel_name] = {"params": params, "variants": entries}
        check(manifest, SCHEMA)                 # what the loader will accept
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
        shutil.copytree(RUNTIME, tmp / "_fusec_runtime",
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        shutil.copyfile(PACKAGE_INIT, tmp / "__init__.py")
        # bytecode for this Python, checked against the sources' hash wherever the package
        # is copied: the first import does not compile the loader (others compile as usual)
        checked = py_compile.PycInvalidationMode.CHECKED_HASH
        compileall.compile_dir(tmp, quiet=1, invalidation_mode=checked)
        c_files = generate_c(manifest, tmp)
        if c_files:
            (tmp / "c").mkdir()
            for filename, text in c_files.items():
                (tmp / "c" / filename).write_text(text, encoding="utf-8")
        _replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _file_entry(rel: str, data: bytes) -> dict:
    return {"path": rel, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
