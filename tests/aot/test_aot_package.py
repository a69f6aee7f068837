"""AOT packages end to end on this machine (no GPU): the example package built for sm_80,
sm_90 and the CPU; its CPU variants run in a fresh process where fusec, lark, sympy,
llvmlite, torch and cuda-python cannot be imported; refusals (no fitting variant, changed
artifacts, bad manifests); the generated C compiled against cuda.h; `fusec build`."""
from __future__ import annotations

import base64
import csv
import hashlib
import importlib.util
import io
import itertools
import json
import os
import runpy
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from string import Template
from types import SimpleNamespace

import numpy as np
import pytest

import fusec
import fusec.aot
from fusec.aot import write_wheel
from fusec.aot.runtime import ManifestError, load_package
from fusec.aot.wheel import platform_tag
from fusec.cli import main as fusec_main

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
EXAMPLE_BUILD = runpy.run_path(str(EXAMPLES / "aot" / "build.py"))

TARGETS = "sm_80,sm_90,cpu"
MAX_ROW = 16                     # softmax/layernorm rows: buckets 1, 2, 4, 8, 16


@pytest.fixture(scope="module")
def package(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("aot") / "aotkernels"
    return EXAMPLE_BUILD["build"](out, TARGETS, MAX_ROW, log=None, wheel=True)


_counter = itertools.count()


def import_package(folder: Path):
    """Import a package folder under a fresh module name (its own copy of the loader)."""
    name = f"aotpkg{next(_counter)}"
    spec = importlib.util.spec_from_file_location(name, folder / "__init__.py",
                                                  submodule_search_locations=[str(folder)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def copy_of(package: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(package, tmp_path / "aotkernels"))


def manifest_of(folder: Path) -> dict:
    return json.loads((folder / "manifest.json").read_text())


def test_package_holds_every_target_checksummed(package):
    manifest = manifest_of(package)
    assert manifest["name"] == "aotkernels" and manifest["fusec_version"] == fusec.__version__
    assert set(manifest["kernels"]) == {"softmax", "layernorm", "bias_gelu", "vector_add"}
    for name, spec in manifest["kernels"].items():
        assert {v["target"] for v in spec["variants"]} == {"sm_80", "sm_90", "cpu"}, name
        for v in spec["variants"]:
            data = (package / v["artifact"]["path"]).read_bytes()
            assert data[:4] == b"\x7fELF"                       # cubins and .so alike
            assert hashlib.sha256(data).hexdigest() == v["artifact"]["sha256"]
    buckets = sorted((g["min"], g["max"]) for v in manifest["kernels"]["softmax"]["variants"]
                     if v["target"] == "cpu" for g in v["rules"]["guards"])
    assert buckets == [(0, 1), (2, 2), (3, 4), (5, 8), (9, 16)]
    runtime = ROOT / "fusec" / "aot" / "runtime"
    for source in runtime.glob("*.py"):                         # the loader is a plain copy
        assert (package / "_fusec_runtime" / source.name).read_bytes() == source.read_bytes()
    assert {p.name for p in (package / "c").iterdir()} == {"aotkernels.h", "aotkernels.c"}


BLOCKER = r"""
import runpy, sys
BLOCKED = ("fusec", "lark", "sympy", "llvmlite", "torch", "cuda")

class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{name} is blocked: packages run without the compiler")

sys.meta_path.insert(0, Blocker())
sys.argv = [sys.argv[1], sys.argv[2]]
runpy.run_path(sys.argv[0], run_name="__main__")
loaded = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
print("blocked modules imported:", loaded)
"""


def test_cpu_variants_run_without_the_compiler(package):
    done = subprocess.run([sys.executable, "-c", BLOCKER, str(EXAMPLES / "aot" / "use.py"),
                           str(package)], capture_output=True, text=True, cwd=package.parent,
                          timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count(": ok") == 6, done.stdout
    assert "blocked modules imported: []" in done.stdout


def wheel_of(package: Path) -> Path:
    return package.parent / f"aotkernels-0.1.0-py3-none-{platform_tag()}.whl"


def test_the_wheel_installs_and_runs_without_the_compiler(package, tmp_path):
    site = tmp_path / "site"
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index",
                           "--disable-pip-version-check", "--quiet", "--target", str(site),
                           str(wheel_of(package))], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (site / "aotkernels-0.1.0.dist-info" / "RECORD").is_file()
    done = subprocess.run([sys.executable, "-c", BLOCKER, str(EXAMPLES / "aot" / "use.py"),
                           str(site / "aotkernels")], capture_output=True, text=True,
                          cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count(": ok") == 6, done.stdout
    assert "blocked modules imported: []" in done.stdout


def test_the_wheel_records_every_file(package):
    """PEP 427 / PEP 376: RECORD lists every other file with its sha256 (urlsafe base64,
    no padding) and size; WHEEL's tag is the file name's; the .so makes it platform
    specific (not purelib); no bytecode."""
    with zipfile.ZipFile(wheel_of(package)) as archive:
        names = archive.namelist()
        record = list(csv.reader(io.StringIO(archive.read(
            "aotkernels-0.1.0.dist-info/RECORD").decode())))
        listed = {row[0]: row[1:] for row in record}
        assert sorted(listed) == sorted(names) and names[-1].endswith("RECORD")
        assert listed.pop("aotkernels-0.1.0.dist-info/RECORD") == ["", ""]
        for name, (digest, size) in listed.items():
            data = archive.read(name)
            want = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
            assert digest == "sha256=" + want.decode() and size == str(len(data)), name
        wheel = archive.read("aotkernels-0.1.0.dist-info/WHEEL").decode()
        metadata = archive.read("aotkernels-0.1.0.dist-info/METADATA").decode()
    assert f"Tag: py3-none-{platform_tag()}\n" in wheel and "Root-Is-Purelib: false" in wheel
    assert "Name: aotkernels\nVersion: 0.1.0\n" in metadata
    assert 'Requires-Dist: cuda-python; extra == "cuda"' in metadata
    assert "aotkernels/manifest.json" in names and "aotkernels/c/aotkernels.c" in names
    assert not [n for n in names if "__pycache__" in n]
    assert any(n.endswith(".so") for n in names) and any(n.endswith(".ptx") for n in names)


def test_a_gpu_only_package_makes_a_pure_wheel(package, tmp_path):
    folder = copy_of(package, tmp_path)
    manifest = manifest_of(folder)
    for spec in manifest["kernels"].values():
        spec["variants"] = [v for v in spec["variants"] if v["target"] != "cpu"]
    (folder / "manifest.json").write_text(json.dumps(manifest))
    path = write_wheel(folder, tmp_path / "dist", "0.1.0")
    assert path.name == "aotkernels-0.1.0-py3-none-any.whl"
    with zipfile.ZipFile(path) as archive:
        assert "Root-Is-Purelib: true" in archive.read(
            "aotkernels-0.1.0.dist-info/WHEEL").decode()
    with pytest.raises(ValueError, match="built as version '0.1.0', not '2.0'"):
        write_wheel(folder, tmp_path / "dist", "2.0")
    with pytest.raises(ValueError, match="'v1' is not a normalized PEP 440 version"):
        write_wheel(folder, tmp_path / "dist", "v1")


def test_every_bucket_and_torch_cpu_tensors(package):
    pkg = import_package(package)
    rng = np.random.default_rng(1)
    for n in (1, 2, 3, 5, 9, 16):
        x = rng.standard_normal((7, n)).astype(np.float32)
        e = np.exp(x - x.max(axis=1, keepdims=True))
        np.testing.assert_allclose(pkg.softmax(x), e / e.sum(axis=1, keepdims=True),
                                   rtol=1e-5, atol=1e-7, err_msg=f"N={n}")
    torch = pytest.importorskip("torch")
    a, b = torch.randn(1000), torch.randn(1000)
    out = pkg.vector_add(a, b)
    assert isinstance(out, torch.Tensor) and torch.equal(out, a + b)


def test_a_call_no_variant_fits_lists_what_was_built(package):
    pkg = import_package(package)
    with pytest.raises(pkg.NoMatchingVariantError) as info:
        pkg.softmax(np.zeros((3, 17), np.float32))
    text = str(info.value)
    assert "x = float32[3, 17]" in text
    assert "cpu: x: float32[?,N<=16] (5 buckets) -- x has size 17 in dim 1, built for at " \
           "most 16" in text
    assert "sm_80: x: float32[?,N<=16] (5 buckets) -- runs on a GPU" in text
    with pytest.raises(pkg.NoMatchingVariantError, match="sizes declared equal differ"):
        pkg.layernorm(np.zeros((3, 8), np.float32), np.zeros(8, np.float32),
                      np.zeros(9, np.float32))
    with pytest.raises(pkg.NoMatchingVariantError, match="y has dtype float64, built for float32"):
        pkg.vector_add(np.zeros(5, np.float32), np.zeros(5))
    with pytest.raises(TypeError, match=r"softmax\(\): missing a required argument: 'x'"):
        pkg.softmax()


def test_gpu_variants_are_chosen_by_the_device_arch(package):
    """What a CUDA call picks, without a GPU: the device's arch is all it depends on."""
    softmax = import_package(package).softmax
    assert {v.target for v in softmax._candidates("cuda:0", "sm_90")} == {"sm_90"}
    assert {v.target for v in softmax._candidates("cuda:0", "sm_86")} == {"sm_80"}
    assert softmax._candidates("cuda:0", "sm_75") == []
    runtime = softmax.__module__.rsplit(".", 1)[0]          # the package's own loader
    describe = importlib.import_module(f"{runtime}.args").describe
    args = [describe("x", np.zeros((3, 9), np.float32))]
    text = str(softmax._no_match(args, args, "cuda:0", "sm_86", []))
    assert "sm_90: x: float32[?,N<=16] (5 buckets) -- does not run on this sm_86 device" in text


def test_a_changed_artifact_is_refused(package, tmp_path):
    folder = copy_of(package, tmp_path)
    for v in manifest_of(folder)["kernels"]["vector_add"]["variants"]:
        path = folder / v["artifact"]["path"]
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(data))
    pkg = import_package(folder)
    with pytest.raises(pkg.ChecksumError, match=r"kernels/vector_add/.* does not match the "
                                            r"manifest .* rebuild it"):
        pkg.vector_add(np.zeros(32, np.float32), np.zeros(32, np.float32))
    with pytest.raises(pkg.ChecksumError):
        pkg.verify()
    x = np.ones((2, 4), np.float32)
    np.testing.assert_allclose(pkg.softmax(x), np.full((2, 4), 0.25))   # others still run


def _edit(manifest: dict, how: str) -> str:
    if how == "schema_version":
        manifest["schema_version"] = 2
        return "schema_version 2 is not the one this loader reads"
    variant = manifest["kernels"]["softmax"]["variants"][0]
    if how == "type":
        variant["layout"]["slots"] = "13"
        return r"kernels.softmax.variants\[0\].layout.slots: expected int, got str"
    if how == "path":
        variant["artifact"]["path"] = "../../etc/passwd"
        return "is not inside the package"
    variant["layout"]["sizes"][0]["expr"] = ["$nowhere"]
    return "unknown size symbol 'nowhere'"


@pytest.mark.parametrize("how", ["schema_version", "type", "path", "formula"])
def test_a_bad_manifest_is_refused(package, tmp_path, how):
    folder = copy_of(package, tmp_path)
    manifest = manifest_of(folder)
    message = _edit(manifest, how)
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ManifestError, match=message):
        kernels = load_package(folder)
        kernels["softmax"].variants      # a kernel's entries are checked on its first use
    if how != "schema_version":          # the other kernels still load and run
        kernels = load_package(folder)
        assert kernels["vector_add"].variants


def test_not_json_is_refused(tmp_path):
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(ManifestError, match="is not valid JSON"):
        load_package(tmp_path)


def _cuda_include() -> Path | None:
    for root in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"):
        if root and (Path(root) / "include" / "cuda.h").is_file():
            return Path(root) / "include"
    return None


def c_toolchain() -> tuple[str, Path]:
    """(the C compiler, cuda.h's folder), or the test is skipped."""
    cc, include = shutil.which(os.environ.get("CC", "cc")), _cuda_include()
    if cc is None or include is None:
        pytest.skip(f"needs a C compiler ({cc}) and cuda.h ({include})")
    return cc, include


def test_generated_c_compiles_against_cuda_h(package, tmp_path):
    cc, include = c_toolchain()
    c = package / "c"
    for source in (c / "aotkernels.c", EXAMPLES / "aot" / "use.c"):
        done = subprocess.run([cc, "-std=c11", "-Wall", "-Wextra", "-Werror", "-c",
                               str(source), f"-I{c}", f"-I{include}", "-o",
                               str(tmp_path / f"{source.stem}.o")],
                              capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
    symbols = subprocess.run(["nm", str(tmp_path / "aotkernels.o")], capture_output=True,
                             text=True).stdout
    exported = sorted(line.split()[-1] for line in symbols.splitlines() if " T " in line)
    assert exported == sorted(["aotkernels_last_error"] + [
        f"aotkernels_{k}{suffix}" for k in ("softmax", "layernorm", "bias_gelu", "vector_add")
        for suffix in ("", "_output_shape")])


@fusec.kernel
def shift(x, k, scale: fusec.constexpr = 2.0):
    out = fusec.empty_like(x)
    for t in fusec.tile(x.shape[0]):
        out[t] = x[t] * scale + k
    return out


def test_cli_build_with_ints_and_constexprs(tmp_path, capsys):
    out = tmp_path / "shiftpkg"
    argv = ["build", __file__, "--kernel", "shift", "--signature", "float32[?], int32<=100",
            "--constexpr", "scale=2.0", "--tune-size", "k=50", "--tune", "model", "--wheel",
            "--package-version", "1.2", "--target", "cpu", "--out", str(out), "--quiet"]
    assert fusec_main(argv) == 0
    printed = capsys.readouterr().out
    assert "shift: 1 cpu variant(s)" in printed and "configs: 1 model" in printed
    wheel = tmp_path / f"shiftpkg-1.2-py3-none-{platform_tag()}.whl"
    assert f"wrote wheel {wheel}" in printed and wheel.is_file()
    config = manifest_of(out)["kernels"]["shift"]["variants"][0]["config"]
    assert config["tuned_for"] == {"x_s0": 4096, "k": 50}
    pkg = import_package(out)
    x = np.arange(5, dtype=np.float32)
    np.testing.assert_array_equal(pkg.shift(x, 3), x * 2 + 3)
    for args, message in [((x, 3, 3.0), r"scale = 3.0 \(constexpr\), built for 2.0"),
                          ((x, -1), r"k = -1 is outside \[0, 100\]"),
                          ((x, 2.5), "k is float 2.5, built for an int")]:
        with pytest.raises(pkg.NoMatchingVariantError, match=message):
            pkg.shift(*args)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "keep.txt").write_text("")
    assert fusec_main(argv[:-3] + ["--out", str(tmp_path / "other")]) == 1
    assert "is not a fusec package: refusing to replace it" in capsys.readouterr().err


@pytest.mark.parametrize("signature, targets, message", [
    ("float32[?,?]", "cpu", "give it an upper bound"),
    ("float32[?,N<=8]", "sm_75x", "'sm_75x' is neither 'cpu' nor a CUDA arch"),
    ("float32[?,N<=8], int32", "cpu", "signature has 2 entries"),
])
def test_build_errors_name_the_cause(tmp_path, signature, targets, message):
    sys.path.insert(0, str(EXAMPLES))
    from softmax import softmax
    with pytest.raises(ValueError, match=message):
        fusec.aot.build(softmax, signature, targets, tmp_path / "pkg")
    assert not (tmp_path / "pkg").exists()


@pytest.mark.parametrize("target", ["cpu", "sm_90"])
def test_manifest_slots_are_the_backends_launch_arguments(target):
    """The loader packs a call's slots from the manifest alone; they must be the values the
    backend's own argument layout packs for the same call."""
    from fusec.aot.build import _entry
    from fusec.aot.configs import Choice
    from fusec.aot.introspect import backend_kernel
    from fusec.aot.runtime.args import describe
    from fusec.aot.runtime.rules import bind_symbols
    from fusec.aot.runtime.slots import SlotLayout
    from fusec.aot.signature import parse_signature
    from fusec.aot.specs import make_spec
    from fusec.compiler import build
    sys.path.insert(0, str(EXAMPLES))
    from layernorm import layernorm
    sigs = parse_signature("float32[?,N<=16], float32[N], float32[N], float",
                           ["x", "weight", "bias", "eps"])
    spec = make_spec(layernorm, sigs, {}, {("dim", "N"): 16})
    compiled = build(layernorm.fn, spec.params, "cpu" if target == "cpu" else "cuda", target,
                     None)
    entry = _entry("layernorm", target, spec, compiled, [],
                   Choice(None, "default_policy")).entry | {"id": "test"}
    rng = np.random.default_rng(0)
    args = [rng.standard_normal((5, 13)).astype(np.float32),
            rng.standard_normal(13).astype(np.float32),
            rng.standard_normal(13).astype(np.float32), 1e-5]
    out = np.empty((5, 13), np.float32)
    runtime = [describe(str(i), a) for i, a in enumerate(args)]
    slots = SlotLayout(entry, "test")
    env = bind_symbols(entry["symbols"], runtime)
    assert slots.output_shapes(env) == [(5, 13)]
    ours, programs = slots.pack(runtime + [describe("out", out)], env)
    backend = backend_kernel(compiled)
    if target == "cpu":
        theirs, grids = backend._layout.pack(args + [out])
        assert list(theirs) == ours and [int(np.prod(g)) for g in grids] == programs
    else:
        theirs, their_programs = backend.layout.pack(
            args + [out], lambda a, pos, v, unit: (a.ctypes.data, list(a.shape),
                                                   [s // a.itemsize for s in a.strides]))
        assert theirs == ours and their_programs == programs


C_CHOICE = r"""
#include "$pkg.c"
#include <stdlib.h>

/* the C dispatch's choice for softmax(x) on a device of compute capability major.minor,
   without a GPU: argv = rows cols stride0 stride1 address major minor; prints the variant
   id, cubin or ptx and the output shape, or "none", the error code's name and message */
int main(int argc, char **argv) {
    if (argc != 8) return 2;
    ${pkg}_tensor x = {(CUdeviceptr)strtoull(argv[5], NULL, 10), ${PKG}_FLOAT32, 2,
                    {atoll(argv[1]), atoll(argv[2])}, {atoll(argv[3]), atoll(argv[4])}};
    fc_value params[1] = {{.tensor = &x}};
    int64_t env[FC_MAX_SYMBOLS + 1];
    fc_tensor out[FC_MAX_OUTPUTS + 1];
    int32_t index;
    int use_ptx;
    CUresult r = fc_choose(&fc_kernel_softmax, params, atoi(argv[6]), atoi(argv[7]), env,
                           &index, &use_ptx);
    if (r != CUDA_SUCCESS) {
        printf("none %s\n%s\n", r == ${PKG}_NO_MATCHING_VARIANT ? "no_matching_variant"
               : r == ${PKG}_NO_VARIANT_FOR_DEVICE ? "no_variant_for_device" : "other",
               ${pkg}_last_error());
        return 0;
    }
    const fc_variant *v = &fc_kernel_softmax.variants[index];
    if (fc_fill_outputs(&fc_kernel_softmax, v, env, out) != CUDA_SUCCESS) return 3;
    printf("%s %s %lld %lld\n", v->id, use_ptx ? "ptx" : "cubin",
           (long long)out[0].sizes[0], (long long)out[0].sizes[1]);
    return 0;
}
"""


def c_choice_program(package: Path, tmp_path: Path) -> Path:
    """C_CHOICE built against the package's C source. Its driver calls are never reached,
    so it links without libcuda: the driver functions resolve to address 0."""
    cc, include = c_toolchain()
    source = tmp_path / f"choice_{package.name}.c"
    source.write_text(Template(C_CHOICE).substitute(pkg=package.name,
                                                    PKG=package.name.upper()))
    obj, exe = source.with_suffix(".o"), source.with_suffix("")
    built = subprocess.run([cc, "-std=c11", "-O1", "-c", "-o", str(obj), str(source),
                            f"-I{package / 'c'}", f"-I{include}"],
                           capture_output=True, text=True)
    assert built.returncode == 0, built.stderr
    undefined = subprocess.run(["nm", "-u", str(obj)], capture_output=True, text=True).stdout
    driver = [line.split()[-1] for line in undefined.splitlines()
              if line.split()[-1].startswith("cu")]
    built = subprocess.run([cc, "-o", str(exe), str(obj), "-lpthread"]
                           + [f"-Wl,--defsym,{name}=0" for name in driver],
                           capture_output=True, text=True)
    assert built.returncode == 0, built.stderr
    return exe


def python_choice(softmax, rows, cols, s0, s1, address, arch) -> list[str]:
    """What the package's Python loader does with the same call on an `arch` device, in
    the C program's output form."""
    args_module = importlib.import_module(f"{softmax.__module__.rsplit('.', 1)[0]}.args")
    x = args_module.TensorArg(None, True, "float32", (rows, cols), (s0, s1), address,
                              "cuda:0", True)
    candidates = softmax._candidates("cuda:0", arch)
    for v in candidates:
        if v.rules.mismatch([x], lambda v=v: {"x_s0": rows, "x_s1": cols}) is None:
            return [v.id, "ptx" if softmax._ptx_mode(arch) else "cubin", str(rows), str(cols)]
    code = "no_matching_variant" if candidates else "no_variant_for_device"
    text = str(softmax._no_match([x], [x], "cuda:0", arch, candidates))
    return ["none", code] + [line for line in text.splitlines() if line.startswith("    sm_")]


def run_c_choice(exe: Path, rows, cols, s0, s1, address, arch) -> list[str]:
    number = arch.removeprefix("sm_")
    run = subprocess.run([str(exe), str(rows), str(cols), str(s0), str(s1), str(address),
                          number[:-1], number[-1]], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    first, *rest = run.stdout.splitlines()
    return first.split() + [line for line in rest if line.startswith("    sm_")]


CALLS = [(7, 13, 13, 1, 4096), (3, 16, 16, 1, 4096), (5, 1, 1, 1, 4096), (2, 3, 1, 2, 4096),
         (7, 13, 13, 1, 4100), (7, 17, 17, 1, 4096)]


def test_c_dispatch_picks_what_the_python_loader_picks(package, tmp_path):
    """The C runtime's choice (fc_choose: rules, arch, PTX fallback, the error listing what
    was built) run on the CPU against the Python loader's for the same tensors (sizes in
    and out of buckets, strides, alignment) on older, equal and newer archs."""
    exe = c_choice_program(package, tmp_path)
    softmax = import_package(package).softmax
    kinds = set()
    for call in CALLS:
        for arch in ("sm_90", "sm_86", "sm_120", "sm_75"):
            want = python_choice(softmax, *call, arch)
            assert run_c_choice(exe, *call, arch) == want, (call, arch)
            kinds.add((arch, want[0].rsplit(".", 1)[-1], want[1]))
    assert {("sm_90", "sm_90", "cubin"), ("sm_86", "sm_80", "cubin"),
            ("sm_120", "sm_90", "ptx"), ("sm_75", "none", "no_variant_for_device"),
            ("sm_90", "none", "no_matching_variant")} <= kinds


def test_arch_specific_cubins_in_c_and_python(tmp_path):
    """sm_90a runs only on sm_90 (preferred there over sm_90) and has no PTX fallback."""
    sys.path.insert(0, str(EXAMPLES))
    from softmax import softmax as jit_softmax
    out = fusec.aot.build(jit_softmax, "float32[?,N<=2]", "sm_80,sm_90a,sm_90",
                          tmp_path / "archpkg", tune="none")
    exe = c_choice_program(out, tmp_path)
    softmax = import_package(out).softmax
    picks = {}
    for arch in ("sm_80", "sm_89", "sm_90", "sm_100", "sm_70"):
        for call in [(4, 2, 2, 1, 4096), (4, 3, 3, 1, 4096)]:
            want = python_choice(softmax, *call, arch)
            assert run_c_choice(exe, *call, arch) == want, (call, arch)
            picks[arch, call[1]] = want[0].rsplit(".", 1)[-1] + " " + want[1]
    assert picks["sm_90", 2] == "sm_90a cubin" and picks["sm_89", 2] == "sm_80 cubin"
    assert picks["sm_100", 2] == "sm_90 ptx" and picks["sm_70", 2] == "none no_variant_for_device"
    assert picks["sm_90", 3] == "none no_matching_variant"


def test_configs_given_or_from_a_tuner(tmp_path):
    asked = []

    def tuner(kernel, params, backend, target):
        asked.append((kernel.__name__, backend, target))
        return {"blocks": [64]}

    out = fusec.aot.build(shift, ["float32[?]", "int32"], "cpu", tmp_path / "tuned",
                          tune=tuner)
    assert asked == [("shift", "cpu", "cpu")]
    config = manifest_of(out)["kernels"]["shift"]["variants"][0]["config"]
    assert config["blocks"] == [64] and config["source"] == "tuner"
    out = fusec.aot.build(shift, ["float32[?]", "int32"], "cpu", tmp_path / "given",
                          config='{"blocks": [128], "warps": 2}', tune=tuner)
    config = manifest_of(out)["kernels"]["shift"]["variants"][0]["config"]
    assert config == {"blocks": [128], "warps": 2, "stages": 3, "source": "given"}
    assert len(asked) == 1
    x = np.arange(300, dtype=np.float32)
    np.testing.assert_array_equal(import_package(out).shift(x, 1), x * 2 + 1)


def test_gpu_variants_carry_their_ptx_for_newer_gpus(package, tmp_path):
    manifest = manifest_of(package)
    gpu = [v for k in manifest["kernels"].values() for v in k["variants"]
           if v["target"] != "cpu"]
    assert gpu and all("ptx" in v for v in gpu)
    for v in gpu[:4]:
        data = (package / v["ptx"]["path"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == v["ptx"]["sha256"]
        assert f".target {v['target']}".encode() in data
    softmax = import_package(package).softmax
    assert {v.target for v in softmax._candidates("cuda:0", "sm_100")} == {"sm_90"}
    assert {v.target for v in softmax._candidates("cuda:0", "sm_120")} == {"sm_90"}
    assert {v.target for v in softmax._candidates("cuda:0", "sm_89")} == {"sm_80"}   # cubin
    # a damaged PTX is refused like a damaged cubin
    folder = copy_of(package, tmp_path)
    v = next(v for v in manifest_of(folder)["kernels"]["softmax"]["variants"]
             if v["target"] != "cpu")
    (folder / v["ptx"]["path"]).write_bytes(b"// not the PTX that was built\n")
    runtime = import_package(folder).softmax.__module__.rsplit(".", 1)[0]
    manifest_module = importlib.import_module(f"{runtime}.manifest")
    with pytest.raises(manifest_module.ChecksumError, match="does not match the manifest"):
        manifest_module.read_artifact(folder, v["ptx"])


# -- dynamic shared memory: a bf16 matmul whose staged operands pass 48 KB -------------------
BIG_TILES = {"blocks": [128, 128, 32], "warps": 4, "stages": 4}
MATMUL_SIGNATURE = "bfloat16[?,?:16], bfloat16[?:16,?:16], bfloat16[?], float"
DEFAULT_SHARED = 48 << 10          # what a block gets without opting in


@pytest.fixture(scope="module")
def matmul_package(tmp_path_factory) -> Path:
    sys.path.insert(0, str(EXAMPLES))
    from matmul_epilogue import matmul_bias_relu
    return fusec.aot.build(matmul_bias_relu, MATMUL_SIGNATURE, "sm_90",
                           tmp_path_factory.mktemp("aotmm") / "mmkernels", config=BIG_TILES)


def matmul_launch(folder: Path) -> dict:
    variants = manifest_of(folder)["kernels"]["matmul_bias_relu"]["variants"]
    assert len(variants) == 1 and len(variants[0]["layout"]["launches"]) == 1
    return variants[0]["layout"]["launches"][0]


def test_dynamic_shared_memory_is_in_the_manifest_and_the_c_tables(matmul_package, package):
    nbytes = matmul_launch(matmul_package)["shared_bytes"]
    assert nbytes > DEFAULT_SHARED
    source = (matmul_package / "c" / "mmkernels.c").read_text()
    assert f".shared_bytes = {nbytes}}}" in source
    assert "cuFuncSetAttribute(*f, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES" in source
    # every GPU launch says how much it needs: none for the example package's kernels
    manifest = manifest_of(package)
    assert {launch["shared_bytes"] for k in manifest["kernels"].values()
            for v in k["variants"] if v["target"] != "cpu"
            for launch in v["layout"]["launches"]} == {0}


class FakeDriver(SimpleNamespace):
    """cuda.bindings.driver as the package's loader uses it, with one sm_90 device and no
    GPU: every call succeeds (a module and a context are 1, a function its name) and is
    recorded."""
    RESULTS = {"cuDeviceGetAttribute": lambda attr, dev: 9 if attr == "major" else 0,
               "cuModuleGetFunction": lambda module, name: name.decode()}

    def __init__(self):
        super().__init__(
            calls=[], CUresult=SimpleNamespace(CUDA_SUCCESS=0),
            CUdevice_attribute=SimpleNamespace(
                CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR="major",
                CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR="minor"),
            CUfunction_attribute=SimpleNamespace(
                CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES="max_dynamic_shared"))

    def __getattr__(self, name):
        def call(*args):
            self.calls.append((name, args))
            return 0, self.RESULTS.get(name, lambda *_: 1)(*args)
        return call

    def args_of(self, name: str) -> list[tuple]:
        return [args for called, args in self.calls if called == name]


@pytest.mark.parametrize("recorded", [True, False])
def test_the_python_loader_opts_in_and_launches_with_dynamic_shared_memory(
        matmul_package, monkeypatch, recorded):
    """Opted in once per function at load, asked for at every launch; a manifest written
    before launches recorded it (no "shared_bytes") still loads and asks for none."""
    runtime = import_package(matmul_package).matmul_bias_relu.__module__.rsplit(".", 1)[0]
    cuda = importlib.import_module(f"{runtime}.cuda")
    manifest_module = importlib.import_module(f"{runtime}.manifest")
    variant = manifest_of(matmul_package)["kernels"]["matmul_bias_relu"]["variants"][0]
    launch = variant["layout"]["launches"][0]
    if not recorded:
        del launch["shared_bytes"]
    nbytes = launch.get("shared_bytes", 0)
    manifest_module.check_variants("matmul_bias_relu", [variant])
    driver = FakeDriver()
    monkeypatch.setattr(cuda, "_driver", lambda: driver)
    torch_stub = SimpleNamespace(cuda=SimpleNamespace(
        current_stream=lambda device: SimpleNamespace(cuda_stream=0)))
    loaded = cuda.CudaVariant(matmul_package, variant, "matmul_bias_relu")
    for _ in range(2):
        loaded.launch([0] * variant["layout"]["slots"], [6], 0, torch_stub)
    opted_in = [(launch["function"], "max_dynamic_shared", nbytes)] if recorded else []
    assert driver.args_of("cuFuncSetAttribute") == opted_in
    assert [args[7] for args in driver.args_of("cuLaunchKernel")] == [nbytes, nbytes]


C_STUB_DRIVER = r"""
#include "$pkg.c"

/* A stand-in CUDA driver with one sm_90 device and no GPU, enough for the package's whole
   launch path: it records what functions are opted in to and what launches ask for. With
   an argument, opting in fails (as a size over the device's limit does). */
static int fail_opt_in, opt_ins, opt_in_value, opt_in_attribute, launches, unloads;
static unsigned launch_shared;

CUresult CUDAAPI cuCtxGetCurrent(CUcontext *ctx) { *ctx = (CUcontext)16; return CUDA_SUCCESS; }
CUresult CUDAAPI cuCtxGetDevice(CUdevice *dev) { *dev = 0; return CUDA_SUCCESS; }
CUresult CUDAAPI cuDeviceGetAttribute(int *value, CUdevice_attribute attr, CUdevice dev) {
    (void)dev;
    *value = attr == CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR ? 9 : 0;
    return CUDA_SUCCESS;
}
CUresult CUDAAPI cuModuleLoadData(CUmodule *module, const void *image) {
    (void)image;
    *module = (CUmodule)32;
    return CUDA_SUCCESS;
}
CUresult CUDAAPI cuModuleUnload(CUmodule module) {
    (void)module;
    unloads++;
    return CUDA_SUCCESS;
}
CUresult CUDAAPI cuModuleGetFunction(CUfunction *f, CUmodule module, const char *name) {
    (void)module; (void)name;
    *f = (CUfunction)48;
    return CUDA_SUCCESS;
}
CUresult CUDAAPI cuFuncSetAttribute(CUfunction f, CUfunction_attribute attr, int value) {
    (void)f;
    opt_ins++;
    opt_in_attribute = attr == CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES;
    opt_in_value = value;
    return fail_opt_in ? CUDA_ERROR_INVALID_VALUE : CUDA_SUCCESS;
}
CUresult CUDAAPI cuLaunchKernel(CUfunction f, unsigned gx, unsigned gy, unsigned gz,
                                unsigned bx, unsigned by, unsigned bz, unsigned shared,
                                CUstream stream, void **params, void **extra) {
    (void)f; (void)gx; (void)gy; (void)gz; (void)bx; (void)by; (void)bz; (void)stream;
    (void)params; (void)extra;
    launches++;
    launch_shared = shared;
    return CUDA_SUCCESS;
}
CUresult CUDAAPI cuMemAllocAsync(CUdeviceptr *ptr, size_t bytes, CUstream stream) {
    (void)bytes; (void)stream;
    *ptr = 0;
    return CUDA_SUCCESS;
}
CUresult CUDAAPI cuMemFreeAsync(CUdeviceptr ptr, CUstream stream) {
    (void)ptr; (void)stream;
    return CUDA_SUCCESS;
}
CUresult CUDAAPI cuGetErrorName(CUresult error, const char **text) {
    *text = error == CUDA_ERROR_INVALID_VALUE ? "CUDA_ERROR_INVALID_VALUE" : "?";
    return CUDA_SUCCESS;
}
CUresult CUDAAPI cuGetErrorString(CUresult error, const char **text) {
    (void)error;
    *text = "stub";
    return CUDA_SUCCESS;
}

int main(int argc, char **argv) {
    ${pkg}_tensor a = {4096, ${PKG}_BFLOAT16, 2, {300, 256}, {256, 1}};
    ${pkg}_tensor b = {8192, ${PKG}_BFLOAT16, 2, {256, 208}, {208, 1}};
    ${pkg}_tensor bias = {12288, ${PKG}_BFLOAT16, 1, {208}, {1}};
    ${pkg}_tensor out[1];
    (void)argv;
    fail_opt_in = argc > 1;
    out[0].data = 16384;
    for (int call = 0; call < 2; call++) {
        CUresult r = ${pkg}_matmul_bias_relu(NULL, &a, &b, &bias, 0.5, out);
        printf("call %d: %s\n", call, r == CUDA_SUCCESS ? "ok" : ${pkg}_last_error());
    }
    printf("opt-ins %d, %d bytes, attribute %d; launches %d, %u bytes; unloads %d\n",
           opt_ins, opt_in_value, opt_in_attribute, launches, launch_shared, unloads);
    return 0;
}
"""


def run_c_stub_driver(folder: Path, tmp_path: Path, *args: str) -> list[str]:
    """C_STUB_DRIVER compiled with the package's C source (as strictly as the example's
    C: -Wall -Wextra -Werror) and run; its output lines."""
    cc, include = c_toolchain()
    source = tmp_path / f"stub_{folder.name}.c"
    source.write_text(Template(C_STUB_DRIVER).substitute(pkg=folder.name,
                                                         PKG=folder.name.upper()))
    exe = source.with_suffix("")
    built = subprocess.run([cc, "-std=c11", "-Wall", "-Wextra", "-Werror", "-o", str(exe),
                            str(source), f"-I{folder / 'c'}", f"-I{include}", "-lpthread"],
                           capture_output=True, text=True)
    assert built.returncode == 0, built.stderr
    run = subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    return run.stdout.splitlines()


def test_the_c_dispatch_opts_in_and_launches_with_dynamic_shared_memory(matmul_package,
                                                                        tmp_path):
    nbytes = matmul_launch(matmul_package)["shared_bytes"]
    assert run_c_stub_driver(matmul_package, tmp_path) == [
        "call 0: ok", "call 1: ok",          # opted in at the first call's load only
        f"opt-ins 1, {nbytes} bytes, attribute 1; launches 2, {nbytes} bytes; unloads 0"]


def test_the_c_dispatch_reports_a_failed_opt_in(matmul_package, tmp_path):
    function = matmul_launch(matmul_package)["function"]
    nbytes = matmul_launch(matmul_package)["shared_bytes"]
    error = (f"kernel 'matmul_bias_relu': cuFuncSetAttribute({function}, max dynamic shared "
             f"= {nbytes}) failed: CUDA_ERROR_INVALID_VALUE: stub")
    assert run_c_stub_driver(matmul_package, tmp_path, "fail") == [
        f"call 0: {error}", f"call 1: {error}",      # the module is unloaded, tried again
        f"opt-ins 2, {nbytes} bytes, attribute 1; launches 0, 0 bytes; unloads 2"]
