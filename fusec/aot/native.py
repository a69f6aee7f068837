"""The CPU variant's artifact: the optimized LLVM IR of a CPU compile, emitted again as
position-independent object code for this host's CPU and linked into a shared library
with the host C compiler (`$CC`, else `cc`), so a package loads it with ctypes.

The JIT's own object code is made for MCJIT (static relocation model); a shared library
needs PIC, hence this second emission of the same IR with the same CPU and features.
"""
from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from .runtime.cpu import CPU_FLAGS


class NativeBuildError(RuntimeError):
    """The host C compiler is missing or failed to link a CPU variant."""


def c_compiler() -> str:
    cc = os.environ.get("CC", "cc")
    path = shutil.which(cc)
    if path is None:
        raise NativeBuildError(f"the 'cpu' target links a shared library with the host C "
                               f"compiler, but {cc!r} is not on PATH (set CC)")
    return path


def _pic_target_machine():
    import llvmlite.binding as llvm
    from ..backends.llvm.jit import host_target_machine
    host_target_machine()            # initializes LLVM's native target once
    return llvm.Target.from_default_triple().create_target_machine(
        cpu=llvm.get_host_cpu_name(), features=llvm.get_host_cpu_features().flatten(),
        opt=3, reloc="pic", codemodel="default")


def shared_library(optimized_ir: str, name: str) -> bytes:
    """The bytes of a shared library holding the functions of `optimized_ir`."""
    import llvmlite.binding as llvm      # on first use: `fusec` commands stay quick
    tm = _pic_target_machine()
    module = llvm.parse_assembly(optimized_ir)
    module.triple = tm.triple
    module.data_layout = str(tm.target_data)
    obj = tm.emit_object(module)
    with tempfile.TemporaryDirectory(prefix="fusec-aot-") as tmp:
        obj_path, so_path = Path(tmp) / f"{name}.o", Path(tmp) / f"{name}.so"
        obj_path.write_bytes(obj)
        cmd = [c_compiler(), "-shared", "-s", "-o", str(so_path), str(obj_path), "-lm"]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            raise NativeBuildError(f"linking the CPU variant {name} failed "
                                   f"({' '.join(cmd)}):\n{done.stderr.strip()}")
        return so_path.read_bytes()


def host_info() -> dict:
    """What a CPU variant built here needs from the machine that loads it."""
    from ..backends.llvm.jit import host_features
    return {"system": sys.platform, "machine": platform.machine(),
            "features": sorted(f for f in host_features() if f in CPU_FLAGS)}
