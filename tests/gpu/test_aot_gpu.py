"""AOT packages on a GPU: the example package's GPU variants (cubins for this device's arch,
loaded with the driver API by the package's own loader) against the JIT on the same
tensors; the first launch from a package in a fresh process (goal: <= 20 ms), written to
$OUT/aot_first_launch.json when OUT is set; the C use (examples/aot/use.c) when a C
compiler, cuda.h and libcuda are there; a bf16 matmul past 48 KB of shared memory from
Python and from C."""
from __future__ import annotations

import ctypes
import importlib
import json
import os
import runpy
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
sys.path.insert(0, str(EXAMPLES))                # the examples' JIT kernels
EXAMPLE_BUILD = runpy.run_path(str(EXAMPLES / "aot" / "build.py"))
EXAMPLE_USE = runpy.run_path(str(EXAMPLES / "aot" / "use.py"))

pytestmark = pytest.mark.gpu
MAX_ROW = 256
TOLERANCE = {torch.float32: 1e-5, torch.float16: 2e-3}


def device_arch() -> str:
    major, minor = torch.cuda.get_device_capability()
    return f"sm_{major}{minor}"


@pytest.fixture(scope="module")
def package(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("aotgpu") / "aotkernels"
    return EXAMPLE_BUILD["build"](out, device_arch(), MAX_ROW, log=None)


def test_gpu_variants_match_the_jit(package):
    sys.path.insert(0, str(package.parent))
    pkg = importlib.import_module(package.name)
    rng = np.random.default_rng(3)
    for row in (5, 61, 200):
        for name, args in EXAMPLE_USE["calls"](rng, row):
            dev = [torch.from_numpy(a).cuda() if isinstance(a, np.ndarray) else a
                   for a in args]
            got = getattr(pkg, name)(*dev)
            jit = getattr(importlib.import_module(name), name)(*dev)
            assert got.device == dev[0].device and got.dtype == jit.dtype
            torch.cuda.synchronize()
            err = ((got.double() - jit.double()).abs() / (1 + jit.double().abs())).max()
            assert err <= TOLERANCE[jit.dtype], f"{name} row={row}: {err:.2e}"
            EXAMPLE_USE["check"](f"{name} row={row}", got.cpu().numpy(),
                              EXAMPLE_USE["reference"](name, *args), str(args[0].dtype))


FIRST_LAUNCH = r"""
import json, sys, time
import torch
x = torch.randn(4096, 200, device="cuda")
torch.cuda.synchronize()
sys.path.insert(0, sys.argv[1])
t0 = time.perf_counter()
import aotkernels
t1 = time.perf_counter()
y = aotkernels.softmax(x)
torch.cuda.synchronize()
t2 = time.perf_counter()
y = aotkernels.softmax(x)
torch.cuda.synchronize()
t3 = time.perf_counter()
ref = torch.softmax(x, dim=1)
print(json.dumps({"import_ms": 1e3 * (t1 - t0), "first_call_ms": 1e3 * (t2 - t1),
                  "first_launch_ms": 1e3 * (t2 - t0), "second_call_ms": 1e3 * (t3 - t2),
                  "max_abs_error": float((y - ref).abs().max())}))
"""


def test_first_launch_from_a_package(package, record_property):
    done = subprocess.run([sys.executable, "-c", FIRST_LAUNCH, str(package.parent)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    files = [p for p in package.rglob("*") if p.is_file()]
    figures["package_bytes"] = sum(p.stat().st_size for p in files)
    figures["cubin_bytes"] = sum(p.stat().st_size for p in package.rglob("*.cubin"))
    figures["device"] = torch.cuda.get_device_name()
    print("AOT first launch:", json.dumps(figures))
    for key, value in figures.items():
        record_property(key, value)
    if os.environ.get("OUT"):
        Path(os.environ["OUT"], "aot_first_launch.json").write_text(json.dumps(figures))
    assert figures["max_abs_error"] < 1e-5
    assert figures["first_launch_ms"] < 1000, figures       # the goal (20 ms) is reported


def _cuda_include() -> Path | None:
    for root in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"):
        if root and (Path(root) / "include" / "cuda.h").is_file():
            return Path(root) / "include"
    return None


def _link_with_libcuda(command: list[str]) -> None:
    """Run the compile command linked against libcuda (by either name), or skip."""
    for libcuda in ("-lcuda", "-l:libcuda.so.1"):
        built = subprocess.run(command + [libcuda, "-lm", "-lpthread"], capture_output=True,
                               text=True)
        if built.returncode == 0:
            return
    pytest.skip(f"cannot link against libcuda: {built.stderr[-500:]}")


def _c_toolchain() -> tuple[str, Path]:
    cc, include = shutil.which(os.environ.get("CC", "cc")), _cuda_include()
    if cc is None or include is None:
        pytest.skip(f"needs a C compiler ({cc}) and cuda.h ({include})")
    return cc, include


def _run_use_c(package: Path, tmp_path: Path) -> str:
    """examples/aot/use.c built against the package's C source and run; its stdout."""
    cc, include = _c_toolchain()
    c = package / "c"
    exe = tmp_path / "aot_use"
    _link_with_libcuda([cc, "-std=c11", "-O2", "-o", str(exe), str(EXAMPLES / "aot" / "use.c"),
                        str(c / "aotkernels.c"), f"-I{c}", f"-I{include}"])
    done = subprocess.run([str(exe)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "softmax from C: [257, 61], max rel error" in done.stdout and ": ok" in done.stdout
    assert "no variant of package 'aotkernels' fits these arguments" in done.stdout
    return done.stdout


def test_c_use(package, tmp_path):
    _run_use_c(package, tmp_path)


def _older_arch() -> str:
    major, _ = torch.cuda.get_device_capability()
    if major < 9:
        pytest.skip("needs a device newer than sm_8x")
    return "sm_80"


def test_a_package_without_this_arch_runs_the_ptx_of_an_older_one(tmp_path):
    """The next-arch fallback: built for an older major only, the driver compiles its PTX."""
    older = _older_arch()
    out = EXAMPLE_BUILD["build"](tmp_path / "oldkernels", older, 8, log=None)
    sys.path.insert(0, str(out.parent))
    pkg = importlib.import_module(out.name)
    x = torch.randn(5, 7, device="cuda")
    assert {v.target for v in pkg.softmax._candidates("cuda:0", device_arch())} == {older}
    got = pkg.softmax(x)
    want = torch.softmax(x.double(), dim=1)
    assert ((got.double() - want).abs() / (1 + want.abs())).max() <= 1e-5


def test_the_c_dispatch_runs_the_ptx_of_an_older_arch(tmp_path):
    """The same fallback from C: only sm_80 cubins (which a newer major cannot load) and
    their PTX are embedded, and use.c's softmax runs and checks out."""
    out = EXAMPLE_BUILD["build"](tmp_path / "old" / "aotkernels", _older_arch(), 64, log=None)
    _run_use_c(out, tmp_path)


def test_a_measured_build_is_reused_by_the_jit(tmp_path, monkeypatch):
    """tune="measure" on this GPU: the variant's config is measured (or found cached) and
    stored where a JIT call of the same specialization and sizes finds it."""
    monkeypatch.setenv("FUSEC_CACHE_DIR", str(tmp_path / "cache"))
    import fusec
    import fusec.aot
    from bias_gelu import bias_gelu
    out = fusec.aot.build(bias_gelu, "float32[?,N], float32[N]", device_arch(),
                          tmp_path / "tunedpkg", tune="measure",
                          tune_sizes={"x[0]": 4096, "N": 1024})
    manifest = json.loads((out / "manifest.json").read_text())
    config = manifest["kernels"]["bias_gelu"]["variants"][0]["config"]
    assert config["source"] == "measured", config
    sys.path.insert(0, str(out.parent))
    pkg = importlib.import_module(out.name)
    x, b = torch.randn(4095, 1023, device="cuda"), torch.randn(1023, device="cuda")
    jit = fusec.kernel(bias_gelu.fn, autotune="measure")
    want = jit(x, b)
    assert jit.last_tuning.method == "cached"
    assert list(jit.last_tuning.config.blocks) == config["blocks"]
    got = pkg.bias_gelu(x, b)
    assert ((got.double() - want.double()).abs() / (1 + want.double().abs())).max() <= 1e-5


# -- a matmul past the 48 KB of shared memory a block gets without opting in -----------------
BIG_TILES = {"blocks": [128, 128, 32], "warps": 4, "stages": 4}     # 4 staged bf16 tiles
MATMUL_SIGNATURE = "bfloat16[M,K:16], bfloat16[K,N], bfloat16[N], float"
MATMUL_SIZES = (300, 256, 200)                                       # M, K, N
SCALE = 0.5


@pytest.fixture(scope="module")
def matmul_package(tmp_path_factory) -> Path:
    if torch.cuda.get_device_capability()[0] < 8:
        pytest.skip("bf16 tensor cores need sm_80 or newer")
    import fusec.aot
    from matmul_epilogue import matmul_bias_relu
    out = fusec.aot.build(matmul_bias_relu, MATMUL_SIGNATURE, device_arch(),
                          tmp_path_factory.mktemp("aotmm") / "mmkernels", config=BIG_TILES)
    manifest = json.loads((out / "manifest.json").read_text())
    launch, = manifest["kernels"]["matmul_bias_relu"]["variants"][0]["layout"]["launches"]
    assert launch["shared_bytes"] > 48 << 10, launch        # what these tests are about
    return out


def matmul_inputs() -> tuple:
    m, k, n = MATMUL_SIZES
    g = torch.Generator(device="cuda").manual_seed(7)
    return tuple(torch.randn(*shape, device="cuda", generator=g).bfloat16()
                 for shape in ((m, k), (k, n), (n,)))


def check_matmul(got, a, b, bias) -> None:
    want = torch.relu(a.float() @ b.float() + bias.float()) * SCALE
    assert got.shape == want.shape and got.dtype == torch.bfloat16
    err = ((got.float() - want).abs() / (1 + want.abs())).max().item()
    assert err <= 1e-2, f"max rel error {err:.2e}"


def test_a_matmul_past_48_kb_of_shared_memory_runs_from_the_package(matmul_package):
    sys.path.insert(0, str(matmul_package.parent))
    pkg = importlib.import_module(matmul_package.name)
    a, b, bias = matmul_inputs()
    for _ in range(2):                     # loaded (and opted in) once, launched twice
        got = pkg.matmul_bias_relu(a, b, bias, SCALE)
        torch.cuda.synchronize()
        check_matmul(got, a, b, bias)


def _c_tensor_type():
    from fusec.aot.cgen import MAX_RANK
    return type("CTensor", (ctypes.Structure,), {"_fields_": [
        ("data", ctypes.c_uint64), ("dtype", ctypes.c_int), ("rank", ctypes.c_int32),
        ("sizes", ctypes.c_int64 * MAX_RANK), ("strides", ctypes.c_int64 * MAX_RANK)]})


def test_a_matmul_past_48_kb_of_shared_memory_runs_from_c(matmul_package, tmp_path):
    """The package's C source as a shared library called through ctypes on torch's
    context and stream: the C dispatch opts the function in and launches it."""
    from fusec.aot.cgen import DTYPE_CODE
    cc, include = _c_toolchain()
    c, lib_path = matmul_package / "c", tmp_path / "libmmkernels.so"
    _link_with_libcuda([cc, "-std=c11", "-O2", "-shared", "-fPIC", "-o", str(lib_path),
                        str(c / "mmkernels.c"), f"-I{c}", f"-I{include}"])
    lib = ctypes.CDLL(str(lib_path))
    tensor = _c_tensor_type()
    lib.mmkernels_matmul_bias_relu.argtypes = [ctypes.c_void_p] + [ctypes.POINTER(tensor)] * 3 \
        + [ctypes.c_double, ctypes.POINTER(tensor)]
    lib.mmkernels_last_error.restype = ctypes.c_char_p

    def describe(t):
        return tensor(t.data_ptr(), DTYPE_CODE["bfloat16"], t.dim(), tuple(t.shape),
                      tuple(t.stride()))

    a, b, bias = matmul_inputs()
    out = torch.empty(a.shape[0], b.shape[1], device="cuda", dtype=torch.bfloat16)
    outputs = (tensor * 1)(describe(out))
    stream = torch.cuda.current_stream().cuda_stream         # torch's context is current
    for _ in range(2):
        r = lib.mmkernels_matmul_bias_relu(stream, describe(a), describe(b), describe(bias),
                                           SCALE, outputs)
        assert r == 0, lib.mmkernels_last_error().decode()
        torch.cuda.synchronize()
        check_matmul(out, a, b, bias)
