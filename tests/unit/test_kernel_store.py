"""The disk cache of whole compiled kernels (fusec/kernel_store.py): a later process (or a
new Kernel of the same function) restores a kernel without tracing it, and gets the same
module, code and results; what the key covers (the function's code and the values it
names, switches, buckets); entries that do not restore are rebuilt; the JSON form of
modules (ir/serial.py) and function fingerprints (fusec/fingerprint.py)."""
from __future__ import annotations

import hashlib
import importlib
import json
import linecache
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import sympy

import fusec
import fusec.language as fl
from fusec import compiler
from fusec.autotune.cache import DiskCache
from fusec.fingerprint import function_fingerprint
from fusec.ir import serial
from fusec.ir.printer import print_module
from fusec.ir.symbolic import size_symbol

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
sys.path.insert(0, str(EXAMPLES))
sys.path.insert(0, str(ROOT / "tests"))


@pytest.fixture
def store(tmp_path, monkeypatch):
    """A fresh cache folder with the kernel store on; the traces made, counted."""
    monkeypatch.setenv("FUSEC_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("FUSEC_KERNEL_CACHE", "1")
    monkeypatch.delenv("FUSEC_DUMP", raising=False)
    traces = []
    real = compiler.trace

    def counting(fn, *args, **kwargs):
        traces.append(fn.__name__)
        return real(fn, *args, **kwargs)
    monkeypatch.setattr(compiler, "trace", counting)
    return traces


def fresh(kernel: fusec.Kernel) -> fusec.Kernel:
    """A new Kernel of the same function: nothing in memory, as in a new process."""
    return fusec.Kernel(kernel.fn, configs=kernel.configs or None, backend=kernel.backend,
                        static_shapes=kernel.static_shapes, autotune=kernel.autotune,
                        fast_math=kernel.fast_math)


def kinds(root: Path) -> list[str]:
    return sorted(json.loads(m.read_text())["info"].get("kind", "?")
                  for m in root.glob("??/*/meta.json"))


EXAMPLE_NAMES = ("softmax", "layernorm", "rmsnorm", "bias_gelu", "matmul_epilogue",
                 "column_sum", "whole_tensor", "vector_add")


def example_kernels():
    out = []
    for name in EXAMPLE_NAMES:
        module = importlib.import_module(name)
        out += [v for v in vars(module).values() if isinstance(v, fusec.Kernel)]
    return out


# -- the JSON form of modules -------------------------------------------------------------
def _modules_of_examples(monkeypatch, backend, target):
    """Post-pass modules of the examples' kernels, as their own main() compiles them."""
    built = []
    for kernel in example_kernels():
        def compile_(*args, _real=kernel.compile, **kwargs):
            kwargs.pop("backend", None)
            built.append(_real(*args, backend=backend, target=target, **kwargs))
            return _real(*args, backend="interpret", **kwargs)
        monkeypatch.setattr(kernel, "compile", compile_)
    for name in EXAMPLE_NAMES:
        importlib.import_module(name).main(backend="interpret")
    return built


def _same_attr_kinds(a, b):
    for x, y in zip(a.walk(), b.walk()):
        assert x.name == y.name and x.loc == y.loc
        assert [r.name for r in x.results] == [r.name for r in y.results]
        for k, v in x.attrs.items():
            w = y.attrs[k]
            assert type(v) is type(w) or isinstance(v, sympy.Basic), (x.name, k, v, w)
            assert v == w, (x.name, k)


def test_every_example_module_round_trips(monkeypatch):
    monkeypatch.setenv("FUSEC_KERNEL_CACHE", "0")
    built = _modules_of_examples(monkeypatch, "cuda", "sm_90")
    assert len(built) >= 8
    for ck in built:
        data = json.loads(json.dumps(serial.dump(ck.module)))
        again = serial.load(data)
        assert print_module(again) == print_module(ck.module)
        _same_attr_kinds(ck.module, again)
        assert serial.dump(again) == data


def test_serial_keeps_tuples_expressions_and_refuses_what_it_cannot_hold():
    from vector_add import vector_add
    module = vector_add.compile(np.ones(5, np.float32), np.ones(5, np.float32),
                                backend="interpret").module
    kernel = module.kernel()
    n = size_symbol("n")
    kernel.attrs["pairs"] = [(0, 1), ("a", [2.5, None, True])]
    kernel.attrs["extent"] = (n + 1, -0.0)
    again = serial.load(json.loads(json.dumps(serial.dump(module)))).kernel()
    assert again.attrs["pairs"] == [(0, 1), ("a", [2.5, None, True])]
    assert type(again.attrs["pairs"][0]) is tuple and type(again.attrs["pairs"][1][1]) is list
    assert again.attrs["extent"] == (n + 1, -0.0) and str(again.attrs["extent"][1]) == "-0.0"
    kernel.attrs["bad"] = {1, 2}
    with pytest.raises(serial.SerialError, match="attribute value"):
        serial.dump(module)
    tree = serial.expr_tree(sympy.floor((n + 3) / 4) * 2 + sympy.Max(n, 5))
    assert serial.expr_from_tree(json.loads(json.dumps(tree))) == \
        sympy.floor((n + 3) / 4) * 2 + sympy.Max(n, 5)
    m = size_symbol("m")
    for e in (sympy.Min(n, 1024), sympy.Max(sympy.Min(n, 64), m + 1), sympy.Min(n, m, 8)):
        back = serial.expr_from_tree(json.loads(json.dumps(serial.expr_tree(e))))
        assert back == e and hash(back) == hash(e) and str(back) == str(e)   # as stored
        assert back.subs({n: 100, m: 7}) == e.subs({n: 100, m: 7})
    with pytest.raises(serial.SerialError, match="not a size symbol"):
        serial.expr_tree(sympy.Symbol("n"))          # no size assumptions
    with pytest.raises(serial.SerialError, match="node"):
        serial.expr_tree(sympy.sin(n))
    with pytest.raises(serial.SerialError, match="not a serialized module"):
        serial.load({"format": serial.FORMAT, "types": [], "exprs": [], "locs": [],
                     "ops": [["kernel", [5], [], {}, [], 0, []]]})
    with pytest.raises(serial.SerialError, match="format"):
        serial.load({"format": -1})


# -- fingerprints -------------------------------------------------------------------------
def _function(source: str, name: str = "k", **scope):
    """A function defined by `source`, its text in linecache (as the torch backend's regions
    are) under a name given by the text."""
    source = textwrap.dedent(source)
    filename = f"<kernel {hashlib.sha256(source.encode()).hexdigest()[:12]}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    namespace = {"fusec": fusec, "fl": fl, **scope}
    exec(compile(source, filename, "exec"), namespace)
    return namespace[name]


KERNEL = """
def k(x):
    out = fusec.empty_like(x)
    for t in fusec.tile(x.shape[0]):
        out[t] = x[t] * SCALE + helper(x[t])
    return out
"""


def test_fingerprint_covers_code_globals_helpers_and_closures():
    helper = fusec.func(_function("def h(v):\n    return v * 2\n", "h"))
    helper3 = fusec.func(_function("def h(v):\n    return v * 3\n", "h"))
    base = _function(KERNEL, SCALE=2.0, helper=helper)
    assert function_fingerprint(base) == function_fingerprint(
        _function(KERNEL, SCALE=2.0, helper=helper))
    assert function_fingerprint(base) != function_fingerprint(
        _function(KERNEL, SCALE=3.0, helper=helper))           # a global's value
    assert function_fingerprint(base) != function_fingerprint(
        _function(KERNEL, SCALE=2.0, helper=helper3))          # a helper's code
    assert function_fingerprint(base) != function_fingerprint(
        _function(KERNEL.replace("* SCALE", "* SCALE * 1"), SCALE=2.0, helper=helper))

    def make(scale):
        def k(x):
            return x * scale
        return k
    assert function_fingerprint(make(2)) == function_fingerprint(make(2))
    assert function_fingerprint(make(2)) != function_fingerprint(make(3))
    assert function_fingerprint(make(2)) != function_fingerprint(make(2.0))


def test_fingerprint_follows_the_file_the_tracer_reads(tmp_path, monkeypatch):
    """A file edited after its import: the tracer reads the new text (inspect, linecache),
    so the key changes although the bytecode has not."""
    (tmp_path / "edited_kernel.py").write_text(MODULE.format(factor=2.0))
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module("edited_kernel")
    before = function_fingerprint(module.scale.fn)
    assert function_fingerprint(module.scale.fn) == before
    (tmp_path / "edited_kernel.py").write_text(MODULE.format(factor=2.0) + "# edited\n")
    assert function_fingerprint(module.scale.fn) != before
    source = "def k(x):\n    return x\n"
    assert function_fingerprint(_function(source)) is not None
    namespace = {}
    exec(compile(source, "<no source>", "exec"), namespace)
    assert function_fingerprint(namespace["k"]) is None        # the tracer cannot read it


def test_fingerprint_is_none_for_what_only_tracing_can_tell():
    assert function_fingerprint(_function(KERNEL, SCALE=np.ones(3), helper=None)) is None

    class Opaque:
        pass
    assert function_fingerprint(_function(KERNEL, SCALE=Opaque(), helper=None)) is None
    recursive = _function("def k(x):\n    return k(x)\n")
    assert function_fingerprint(recursive) is not None


# -- the store ------------------------------------------------------------------------------
def test_a_new_kernel_of_the_same_function_restores_without_tracing(store, tmp_path):
    from softmax import softmax, reference
    x = np.random.default_rng(1).standard_normal((37, 300)).astype(np.float32)
    first = fresh(softmax).compile(x, backend="cpu")
    traced = len(store)
    assert traced and not getattr(first, "restored", False)
    assert kinds(tmp_path) == ["kernel", "kernel-guards", "llvm-cpu-object"]
    again = fresh(softmax)
    second = again.compile(x, backend="cpu")
    assert len(store) == traced and second.restored and second.from_cache
    assert print_module(second.module) == print_module(first.module)
    assert list(second.asm) == list(first.asm)
    for stage in first.asm:
        assert second.asm[stage] == first.asm[stage], stage
    assert second.config == first.config and second.guards == first.guards
    np.testing.assert_allclose(again(x), reference(x), rtol=1e-5, atol=1e-6)
    assert again.specializations == 1
    with pytest.raises(ValueError, match="does not match the specialization"):
        second(x.astype(np.float64))


@pytest.mark.parametrize("backend", ["cuda", "ptx"])
def test_gpu_builds_restore_their_cubins_without_a_gpu(store, backend):
    from layernorm import layernorm
    specs = (fusec.TensorSpec((100, 1000), fl.bfloat16), fusec.TensorSpec((1000,), fl.bfloat16),
             fusec.TensorSpec((1000,), fl.bfloat16), 1e-5)
    first = fresh(layernorm).compile(*specs, backend=backend, target="sm_90")
    traced = len(store)
    second = fresh(layernorm).compile(*specs, backend=backend, target="sm_90")
    assert len(store) == traced and second.restored
    assert list(second.asm) == list(first.asm)
    for stage in first.asm:
        assert second.asm[stage] == first.asm[stage], stage
    assert second.native.functions == first.native.functions
    assert second.native.layout.params == first.native.layout.params
    assert second.num_launches == first.num_launches
    other = fresh(layernorm).compile(*specs, backend=backend, target="sm_80")
    assert not getattr(other, "restored", False) and len(store) > traced  # arch in the key


def test_whole_extent_buckets_select_their_own_entries(store):
    from softmax import softmax
    small = np.ones((4, 100), np.float32)
    large = np.ones((4, 1000), np.float32)
    fresh(softmax).compile(small, backend="cpu")
    traced = len(store)
    b = fresh(softmax).compile(large, backend="cpu")
    assert len(store) > traced and b.guards            # another bucket: traced anew
    traced = len(store)
    k = fresh(softmax)
    assert k.compile(large, backend="cpu").restored and k.compile(small, backend="cpu").restored
    assert len(store) == traced and k.specializations == 2
    np.testing.assert_allclose(k(large), np.full((4, 1000), 1e-3, np.float32), rtol=1e-6)


def test_switches_and_options_are_part_of_the_key(store, monkeypatch):
    from matmul_epilogue import matmul_bias_relu as kernel
    from fusec.backends.cuda import tensor_cores
    specs = (fusec.TensorSpec((256, 128), fl.bfloat16), fusec.TensorSpec((128, 256), fl.bfloat16),
             fusec.TensorSpec((256,), fl.bfloat16), 0.5)
    fresh(kernel).compile(*specs, backend="cuda", target="sm_90")
    monkeypatch.setattr(tensor_cores, "ENABLED", False)
    fma = fresh(kernel).compile(*specs, backend="cuda", target="sm_90")
    assert not getattr(fma, "restored", False) and "mma.sync" not in fma.asm["ptx"]
    monkeypatch.setattr(tensor_cores, "ENABLED", True)
    assert fresh(kernel).compile(*specs, backend="cuda", target="sm_90").restored
    fast = fusec.Kernel(kernel.fn, fast_math=True).compile(*specs, backend="cuda",
                                                           target="sm_90")
    assert not getattr(fast, "restored", False)


def test_dump_and_the_switch_off_keep_nothing(store, tmp_path, monkeypatch, capsys):
    from vector_add import vector_add
    x = np.ones(10, np.float32)
    monkeypatch.setenv("FUSEC_KERNEL_CACHE", "0")
    fresh(vector_add).compile(x, x, backend="cpu")
    traced = len(store)
    monkeypatch.setenv("FUSEC_KERNEL_CACHE", "1")
    monkeypatch.setenv("FUSEC_DUMP", "ir")
    fresh(vector_add).compile(x, x, backend="cpu")
    assert "kernel" not in kinds(tmp_path) and len(store) == 2 * traced
    assert "fusec stage: ir" in capsys.readouterr().err


def test_an_entry_that_does_not_restore_is_rebuilt(store, tmp_path):
    from vector_add import vector_add
    x = np.arange(10, dtype=np.float32)
    fresh(vector_add).compile(x, x, backend="cpu")
    (entry,) = [m.parent for m in tmp_path.glob("??/*/meta.json")
                if json.loads(m.read_text())["info"]["kind"] == "kernel"]
    data = json.loads((entry / "kernel.json").read_text())
    data["module"]["types"] = []                      # a form this reader cannot use
    broken = json.dumps(data).encode()
    (entry / "kernel.json").write_bytes(broken)
    meta = json.loads((entry / "meta.json").read_text())
    meta["files"]["kernel.json"] = hashlib.sha256(broken).hexdigest()   # checksums fine
    (entry / "meta.json").write_text(json.dumps(meta))
    traced = len(store)
    k = fresh(vector_add)
    rebuilt = k.compile(x, x, backend="cpu")
    assert not getattr(rebuilt, "restored", False) and len(store) == 2 * traced
    np.testing.assert_array_equal(k(x, x), 2 * x)
    assert fresh(vector_add).compile(x, x, backend="cpu").restored


CHILD = r"""
import json, sys
import numpy as np
sys.path.insert(0, {where!r})
from mykernel import scale
x = np.arange(12, dtype=np.float32).reshape(3, 4) - 5
ck = scale.compile(x, backend="cpu")
print(json.dumps({{"restored": getattr(ck, "restored", False),
                  "out": ck(x).tolist()}}))
"""

MODULE = """
import fusec

FACTOR = {factor}


@fusec.kernel
def scale(x):
    out = fusec.empty_like(x)
    for t in fusec.tile(x.shape[0]):
        out[t, :] = x[t, :] * FACTOR
    return out
"""


def test_a_second_process_restores_and_a_changed_global_rebuilds(tmp_path):
    source = tmp_path / "src"
    source.mkdir()
    # (no bytecode: the edited module keeps its size and may keep its mtime second)
    env = dict(os.environ, FUSEC_CACHE_DIR=str(tmp_path / "cache"), FUSEC_KERNEL_CACHE="1",
               PYTHONDONTWRITEBYTECODE="1")
    env.pop("FUSEC_DUMP", None)

    def child(factor):
        (source / "mykernel.py").write_text(MODULE.format(factor=factor))
        done = subprocess.run([sys.executable, "-c", CHILD.format(where=str(source))],
                              env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout.strip().splitlines()[-1])
    x = np.arange(12, dtype=np.float32).reshape(3, 4) - 5
    first, second = child(2.0), child(2.0)
    assert not first["restored"] and second["restored"]
    assert first["out"] == second["out"] == (x * 2).tolist()
    changed = child(3.0)
    assert not changed["restored"] and changed["out"] == (x * 3).tolist()
    assert DiskCache(tmp_path / "cache").info()["entries"] >= 4


def test_a_global_changed_after_the_first_compile_keys_the_next_one(store, tmp_path,
                                                                     monkeypatch):
    (tmp_path / "scaled_kernel.py").write_text(MODULE.format(factor=2.0))
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module("scaled_kernel")
    small, large = np.ones((2, 8), np.float32), np.ones((2, 300), np.float32)
    module.scale(small)
    module.FACTOR = 3.0                # what the next trace reads: kept under 3.0's key
    np.testing.assert_array_equal(module.scale(large), 3 * large)
    module.FACTOR = 2.0
    traced = len(store)
    np.testing.assert_array_equal(fresh(module.scale)(large), 2 * large)
    assert len(store) > traced          # not the entry traced with 3.0


SHADOWED = """
import fusec

SCALE = 2.0


@fusec.kernel
def shadowed(x, ALT: fusec.constexpr):
    if ALT:
        SCALE = 3.0          # a local: the trace reads the global when ALT is False
    return x * SCALE
"""


def test_the_key_covers_what_review_found_it_missed(store, tmp_path, monkeypatch):
    """A local that the trace reads from the globals (assigned only in a branch a constexpr
    skips); a user module named like one of fusec's packages; a tuple constexpr holding a
    dtype against one holding its name; NVRTC's version."""
    (tmp_path / "shadow_kernel.py").write_text(SHADOWED)
    (tmp_path / "passes.py").write_text("SCALE = 2.0\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "passes", raising=False)
    module = importlib.import_module("shadow_kernel")
    x = np.ones(4, np.float32)
    assert fresh(module.shadowed)(x, False)[0] == 2
    module.SCALE = 5.0
    assert fresh(module.shadowed)(x, False)[0] == 5

    import passes
    assert passes.__file__.startswith(str(tmp_path))
    scale = _function("def k(x):\n    return x * passes.SCALE\n", passes=passes)
    before = function_fingerprint(scale)
    passes.SCALE = 5.0
    assert function_fingerprint(scale) != before

    typed = _function('def k(x, T: fusec.constexpr):\n'
                      '    return x * (2.0 if T[0] == "float32" else 3.0)\n')
    assert fusec.kernel(typed)(x, (fl.float32,))[0] == 3
    assert fusec.kernel(typed)(x, ("float32",))[0] == 2

    from fusec import kernel_store
    from fusec.backends.cuda import nvrtc
    from softmax import softmax
    spec = fusec.TensorSpec((64, 128), fl.float32)
    fresh(softmax).compile(spec, backend="cuda", target="sm_90")
    assert fresh(softmax).compile(spec, backend="cuda", target="sm_90").restored
    # another toolkit, installed into a folder on sys.path (its mtime changes: the stamp
    # under which the versions are kept in the cache folder)
    monkeypatch.setattr(nvrtc, "version", lambda: (99, 9))
    kernel_store.environment.cache_clear()
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    (site / "nvidia_nvrtc_99.py").write_text("")
    try:
        rebuilt = fresh(softmax).compile(spec, backend="cuda", target="sm_90")
        assert not getattr(rebuilt, "restored", False)
    finally:
        kernel_store.environment.cache_clear()
