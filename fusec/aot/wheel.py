"""A package folder as a wheel (PEP 427), written with zipfile: `pip install` it anywhere
the package can run.

    <name>-<version>-py3-none-any.whl            GPU variants only
    <name>-<version>-py3-none-<platform>.whl     with CPU variants (linux_x86_64, ...)

The tags: the loader is pure Python 3 (py3) and no module is a CPython extension (the CPU
variants are shared libraries loaded with ctypes, not through the Python C API: abi
none), but such a library runs only on this kind of machine, so a wheel holding one is
tagged with this machine's platform and installs into platlib (Root-Is-Purelib: false).
The archive holds the package folder under its import name (without __pycache__: the
installer compiles the loader for its own Python) and <name>-<version>.dist-info/ with
METADATA, WHEEL and RECORD (every file's sha256, urlsafe base64 without padding, and
size; PEP 376). Entries are sorted and dated 1980-01-01, so the same package gives the
same wheel bytes.
"""
from __future__ import annotations

import base64
import csv
import hashlib
import io
import os
import re
import sysconfig
import tempfile
import zipfile
from pathlib import Path

from .runtime.manifest import read_manifest

# PEP 440 public versions in normalized form ("1.0", "2.1rc1", "0.3.post2", "1.0.dev4"),
# so the file name spells the version as installers do
VERSION = re.compile(r"^([1-9][0-9]*!)?(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*"
                     r"((a|b|rc)(0|[1-9][0-9]*))?(\.post(0|[1-9][0-9]*))?"
                     r"(\.dev(0|[1-9][0-9]*))?$")
REQUIRES_PYTHON = ">=3.10"            # the loader's own floor (fusec's requires-python)
_EPOCH = (1980, 1, 1, 0, 0, 0)        # the earliest time a zip entry holds
_SKIPPED_DIRS = {"__pycache__"}


def check_version(version: str) -> str:
    if not isinstance(version, str) or not VERSION.match(version):
        raise ValueError(f"version: {version!r} is not a normalized PEP 440 version (like "
                         "'1.0', '0.2.1', '1.0rc1', '1.0.post1')")
    return version


def platform_tag() -> str:
    """This machine's wheel platform tag: linux_x86_64, macosx_14_0_arm64, win_amd64."""
    return re.sub(r"[-.]", "_", sysconfig.get_platform())


def distribution(name: str) -> str:
    """The name as wheel file names spell it: runs of -_. as one _, lower case."""
    return re.sub(r"[-_.]+", "_", name).lower()


def tag(platform_specific: bool) -> str:
    return f"py3-none-{platform_tag() if platform_specific else 'any'}"


def _digest(data: bytes) -> str:
    raw = hashlib.sha256(data).digest()
    return "sha256=" + base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _metadata(manifest: dict, version: str) -> str:
    targets = sorted({v["target"] for spec in manifest["kernels"].values()
                      for v in spec["variants"]})
    lines = ["Metadata-Version: 2.1", f"Name: {manifest['name']}", f"Version: {version}",
             f"Summary: kernels {', '.join(sorted(manifest['kernels']))} compiled ahead of "
             f"time by fusec {manifest['fusec_version']} for {', '.join(targets)}",
             f"Requires-Python: {REQUIRES_PYTHON}", "Requires-Dist: numpy"]
    if any(t != "cpu" for t in targets):      # GPU variants launch through these
        lines += ["Provides-Extra: cuda", 'Requires-Dist: torch; extra == "cuda"',
                  'Requires-Dist: cuda-python; extra == "cuda"']
    return "\n".join(lines) + "\n"


def _files(package: Path) -> list[tuple[str, Path]]:
    found = []
    for path in sorted(package.rglob("*")):
        rel = path.relative_to(package)
        if path.is_file() and not _SKIPPED_DIRS.intersection(rel.parts):
            found.append((f"{package.name}/{rel.as_posix()}", path))
    return found


def _add(archive: zipfile.ZipFile, name: str, data: bytes, mode: int = 0o644) -> None:
    info = zipfile.ZipInfo(name, _EPOCH)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = (0o100000 | mode) << 16          # a regular file and its mode
    archive.writestr(info, data)


def write_wheel(package, dest, version: str) -> Path:
    """Write the wheel of the package folder `package` into folder `dest`; returns its
    path. The wheel is written next to its destination and moved into place."""
    package = Path(package).resolve()
    manifest = read_manifest(package)
    version = check_version(version)
    if manifest["version"] != version:
        raise ValueError(f"version: the package in {package} was built as version "
                         f"{manifest['version']!r}, not {version!r}")
    platform_specific = any(v["target"] == "cpu" for spec in manifest["kernels"].values()
                            for v in spec["variants"])
    dest = Path(dest).resolve()
    dest.mkdir(parents=True, exist_ok=True)
    stem = f"{distribution(manifest['name'])}-{version}"
    path = dest / f"{stem}-{tag(platform_specific)}.whl"
    info_dir = f"{stem}.dist-info"
    wheel = ("Wheel-Version: 1.0\n"
             f"Generator: fusec ({manifest['fusec_version']})\n"
             f"Root-Is-Purelib: {'false' if platform_specific else 'true'}\n"
             f"Tag: {tag(platform_specific)}\n")
    record = io.StringIO()
    rows = csv.writer(record, lineterminator="\n")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=dest)
    os.close(fd)
    try:
        with zipfile.ZipFile(tmp, "w") as archive:
            entries = [(name, file.read_bytes(), 0o755 if file.suffix == ".so" else 0o644)
                       for name, file in _files(package)]
            entries += [(f"{info_dir}/METADATA", _metadata(manifest, version).encode(),
                         0o644), (f"{info_dir}/WHEEL", wheel.encode(), 0o644)]
            for name, data, mode in entries:
                _add(archive, name, data, mode)
                rows.writerow([name, _digest(data), len(data)])
            rows.writerow([f"{info_dir}/RECORD", "", ""])
            _add(archive, f"{info_dir}/RECORD", record.getvalue().encode())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    return path
