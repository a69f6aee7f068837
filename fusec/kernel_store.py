"""The disk cache of whole compiled kernels: the first call of a kernel in a later process
loads what an earlier process built for the same specialization -- the IR after passes
(ir/serial.py), the launch facts and the cubin or object code -- and skips tracing, the
passes, code generation and the autotuner's choice. A cached softmax's first call goes
from ~16 ms (trace, passes, emit, then the cubin from disk) to about a millisecond.

Two entries per specialization, in the DiskCache of autotune/cache.py:
- "kernel-guards", keyed by the kernel's fingerprint (fingerprint.py: its code and the
  values it names), the call's specialization key (dtypes, ranks, divisibility,
  constexprs), backend, arch, how the config is chosen, the kernel's options and the
  machine the choice was made for: the size expressions whose power-of-two buckets select
  the compiled kernel (the in-memory table's guards, jit.py);
- "kernel", keyed by that key and the buckets: kernel.json (the module, the config, the
  backend's launch facts), stages.json (the IR after each pass, read when .asm is) and
  the backend's artifacts.
Nothing is kept for kernels whose fingerprint cannot be taken, for constexpr values that
are not plain data, with FUSEC_DUMP set (a dump shows the stages as they are made), for
the interpreter, or with FUSEC_KERNEL_CACHE=0. An entry that does not restore is removed
and rebuilt.
"""
from __future__ import annotations

import functools
import hashlib
import importlib
import json
import os
import sys

import numpy as np

from .autotune.cache import default_cache, read_memo, write_memo
from .autotune.config import Config
from .backends import switches
from .backends.stages import Lazy, Stages
from .compiler import DEVICE_BACKENDS, assemble, cuda_target
from .fingerprint import function_fingerprint
from .ir import serial
from .ir.dtypes import DType
from .ir.serial import SerialError

FORMAT = 1
# the backend's compiled-kernel class, which records and restores itself
_NATIVE = {"cpu": (".backends.llvm", "CompiledCPUKernel"),
           "cuda": (".backends.cuda", "CompiledCUDAKernel"),
           "ptx": (".backends.ptx", "CompiledPTXKernel")}


def enabled() -> bool:
    return os.environ.get("FUSEC_KERNEL_CACHE", "1") != "0" and \
        not os.environ.get("FUSEC_DUMP")


def _plain(part) -> bool:
    if isinstance(part, (str, int, float, bool, type(None), DType)):
        return True
    return isinstance(part, tuple) and all(_plain(p) for p in part)


@functools.lru_cache(maxsize=None)
def environment(backend: str, target: str) -> str:
    """What else the compiled code and the config's choice depend on: Python and numpy,
    the machine the autotuner's model describes, the toolchain that made the code (LLVM
    and llvmlite, NVRTC, nvJitLink: as the cubin and object-code entries' keys), the host
    CPU the object code is for. (The code generators' switches are read per key:
    backends/switches.py.)"""
    from . import tuning
    import llvmlite
    import llvmlite.binding as llvm          # imported with fusec (the CPU backend)
    parts = [sys.version, np.__version__, repr(tuning.machine(backend, target))]
    if backend in ("cpu", "ptx"):
        parts += [llvmlite.__version__, list(llvm.llvm_version_info)]
    if backend == "cpu":
        parts += [llvm.get_host_cpu_name(), llvm.get_host_cpu_features().flatten()]
    else:
        parts.append(_gpu_toolchain(backend))
    return repr(parts)


def _gpu_toolchain(backend: str) -> list:
    """NVRTC's version (and nvJitLink's for ptx). Loading the libraries to ask takes
    70-110 ms, most of a warm process's first call, so the answer is kept in the cache
    folder under a stamp of the Python environment (the folders on sys.path and their
    modification times: installing or upgrading a package changes its folder's)."""
    stamp = hashlib.sha256(repr((sys.version, backend, [
        (p, os.stat(p).st_mtime_ns) for p in sys.path if p and os.path.isdir(p)])).encode())
    memo = default_cache().memos / f"toolchain-{stamp.hexdigest()}.json"
    try:
        return json.loads(read_memo(memo) or "")
    except ValueError:
        pass
    from .backends.cuda import nvrtc
    versions = [list(nvrtc.version())]
    if backend == "ptx":
        from .backends.ptx import link
        versions.append(list(link.version()))
    write_memo(memo, json.dumps(versions))
    return versions


def _native_class(backend: str):
    module, name = _NATIVE[backend]
    return getattr(importlib.import_module(module, __package__), name)


class KernelStore:
    """The disk entries of one fusec.Kernel's compiled specializations."""

    def __init__(self, kernel):
        self.kernel = kernel

    def key(self, base_key) -> str | None:
        """The disk key of a specialization (jit.py's base key: argument facts, backend,
        target, config or how it is chosen), or None when it is not kept on disk."""
        arg_keys, backend, target, config = base_key
        if backend not in _NATIVE or not enabled() or not _plain(arg_keys):
            return None
        cache = default_cache()
        # taken anew each time (20-60 us): a global changed since the last compile is
        # what the next trace reads
        fingerprint = function_fingerprint(self.kernel.fn)
        if cache is None or fingerprint is None:
            return None
        if backend in DEVICE_BACKENDS:
            try:
                target = cuda_target(target, backend)
            except ValueError:
                return None                      # build() says why
        k = self.kernel
        # argument facts by repr: JSON would write fl.float32 and "float32" alike
        return cache.key("kernel-guards", FORMAT, fingerprint, k.fn.__qualname__,
                         repr(arg_keys), backend, target, str(config), sorted(k.constexprs),
                         k.static_shapes, k.fast_math, [str(c) for c in k.configs],
                         repr(k.autotune), environment(backend, target),
                         repr(switches.changed()))

    def guards(self, key: str) -> list | None:
        """The size expressions whose buckets select among the specialization's kernels,
        if an earlier process kept them."""
        files = default_cache().get(key, required=("guards.json",))
        if files is None:
            return None
        try:
            return [serial.expr_from_tree(t) for t in json.loads(files["guards.json"])]
        except (SerialError, ValueError, TypeError, KeyError):
            default_cache().discard(key)
            return None

    @staticmethod
    def _entry(key: str, buckets: tuple) -> str:
        return default_cache().key("kernel", key, list(buckets))

    def load(self, key: str, buckets: tuple):
        """The CompiledKernel kept for the specialization and buckets, or None."""
        cache = default_cache()
        entry = self._entry(key, buckets)
        files = cache.get(entry, required=("kernel.json", "stages.json"))
        if files is None:
            return None
        try:
            return _restore(files)
        except Exception:         # noqa: BLE001 -- any entry that does not restore is rebuilt
            cache.discard(entry)
            return None

    def save(self, key: str, guards: list, buckets: tuple, compiled) -> None:
        """Keep a CompiledKernel built for the specialization and buckets (quietly
        nothing when its module holds what serial.py does not)."""
        try:
            files = _record(compiled)
            guard_trees = [serial.expr_tree(g) for g in guards]
        except SerialError:
            return
        cache = default_cache()
        info = {"kernel": compiled.name, "backend": compiled.backend, "target": compiled.target}
        cache.put(self._entry(key, buckets), files, {"kind": "kernel", **info})
        cache.put(key, {"guards.json": json.dumps(guard_trees).encode()},
                  {"kind": "kernel-guards", **info})


def _record(compiled) -> dict[str, bytes]:
    facts, files = compiled.native.record()
    native_stages = set(compiled.native.asm)
    stages = {name: text for name, text in dict.items(compiled.asm)
              if name not in native_stages and isinstance(text, str)}
    data = {"format": FORMAT, "name": compiled.name, "backend": compiled.backend,
            "target": compiled.target, "config": compiled.config.to_json(),
            "guards": [serial.expr_tree(g) for g in compiled.guards],
            "returns_tuple": compiled._returns_tuple, "stages": list(stages),
            "module": serial.dump(compiled.module), "native": facts}
    files["kernel.json"] = json.dumps(data).encode()
    files["stages.json"] = json.dumps(stages).encode()
    return files


def _restore(files: dict[str, bytes]):
    data = json.loads(files["kernel.json"])
    if data["format"] != FORMAT:
        raise SerialError(f"kernel entry format {data['format']!r}")
    module = serial.load(data["module"])
    backend = data["backend"]
    native = _native_class(backend).restore(module.kernel(), data["native"], files)
    decoded: dict = {}

    def stage(name: str) -> str:
        if not decoded:
            decoded.update(json.loads(files["stages.json"]))
        return decoded[name]
    asm = Stages({name: Lazy(functools.partial(stage, name)) for name in data["stages"]})
    asm.update(native.asm)
    compiled = assemble(data["name"], module, asm, backend, data["target"],
                        Config.from_json(data["config"]),
                        [serial.expr_from_tree(t) for t in data["guards"]], native,
                        data["returns_tuple"])
    compiled.from_cache = True
    compiled.restored = True         # the whole kernel came from disk: nothing was traced
    return compiled
