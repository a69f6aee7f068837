"""load_package(folder): read and check the manifest, and make every kernel of the package
callable by name. A kernel's variant entries are checked, and artifacts read (their checksums
checked), when it is first used, so importing a package costs one JSON read."""
from __future__ import annotations

from pathlib import Path

from .kernel import PackagedKernel
from .manifest import check_variants, read_artifact, read_manifest


def load_package(folder) -> dict[str, PackagedKernel]:
    root = Path(folder)
    manifest = read_manifest(root)
    return {name: PackagedKernel(root, manifest["name"], name, spec)
            for name, spec in manifest["kernels"].items()}


def verify_package(folder) -> int:
    """Check every artifact's checksum now (instead of at first use); returns how many."""
    root = Path(folder)
    manifest = read_manifest(root)
    count = 0
    for name, spec in manifest["kernels"].items():
        check_variants(name, spec["variants"])
        for v in spec["variants"]:
            read_artifact(root, v["artifact"])
            count += 1
    return count
