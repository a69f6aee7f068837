"""Compile latency: an elementwise kernel (examples/bias_gelu.py, bf16 1000x4097) and a
reduction (examples/softmax.py) compiled in a fresh process with an empty cache (cold), then
in a second process that finds the first one's artifacts on disk (warm), per backend. A
vector_add is built first in each process: its row carries the one-time costs (fusec's lazy
imports, the driver and NVRTC/nvJitLink start, hashing fusec's sources for cache keys).

Each process prints: `import fusec` (ms), the kernel's build (trace + passes + code
generation + NVRTC/nvJitLink or LLVM; `kernel.compile`; in the warm process normally the
whole kernel restored from disk, fusec/kernel_store.py: "from disk"), its first call and
the mean of the following calls (in-process dispatch). Without a GPU the GPU backends
compile for sm_90 (`target="sm_90"`) and nothing runs.

    python3 benchmarks/compile_time.py [--backends cuda,ptx,cpu] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import cProfile, io, json, pstats, sys, time
t0 = time.perf_counter()
import torch
t1 = time.perf_counter()
import fusec
t2 = time.perf_counter()
sys.path.insert(0, {examples!r})
from bias_gelu import bias_gelu
from softmax import softmax
from vector_add import vector_add
backend, gpu = {backend!r}, torch.cuda.is_available()
device = "cuda" if gpu and backend != "cpu" else "cpu"
x = torch.randn(1000, 4097, dtype=torch.bfloat16, device=device)
bias = torch.randn(4097, dtype=torch.bfloat16, device=device)
out = {{"import_torch_ms": (t1 - t0) * 1e3, "import_fusec_ms": (t2 - t1) * 1e3}}
kernels = (("vector_add", vector_add, (bias, bias)), ("bias_gelu", bias_gelu, (x, bias)),
           ("softmax", softmax, (x,)))
profile = {profile!r}


def profiled(name):             # the build (and first call), by cumulative time
    if profile:
        prof.disable()
        text = io.StringIO()
        pstats.Stats(prof, stream=text).sort_stats("cumulative").print_stats(18)
        out["profile_" + name] = text.getvalue()


for name, kern, args in kernels:
    if profile:
        prof = cProfile.Profile()
        prof.enable()
    t = time.perf_counter()
    if device == "cpu" and backend != "cpu":
        specs = [fusec.TensorSpec(tuple(a.shape), fusec.language.bfloat16) for a in args]
        ck = kern.compile(*specs, backend=backend, target="sm_90")
        out[name] = {{"build_ms": (time.perf_counter() - t) * 1e3,
                     "restored": getattr(ck, "restored", False)}}
        profiled(name)
        continue
    ck = kern.compile(*args, backend=backend)
    built = time.perf_counter()
    ck(*args)
    if gpu:
        torch.cuda.synchronize()
    first = time.perf_counter()
    profiled(name)
    calls = 200
    for _ in range(calls):
        ck(*args)
    if gpu:
        torch.cuda.synchronize()
    out[name] = {{"build_ms": (built - t) * 1e3, "first_call_ms": (first - built) * 1e3,
                 "call_us": (time.perf_counter() - first) / calls * 1e6,
                 "restored": getattr(ck, "restored", False)}}
print(json.dumps(out))
"""


def run_child(backend: str, cache: str, profile: bool = False) -> dict:
    env = dict(os.environ, FUSEC_CACHE_DIR=cache)
    code = CHILD.format(examples=str(ROOT / "examples"), backend=backend, profile=profile)
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"{backend}: {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--backends", default="cuda,ptx,cpu")
    ap.add_argument("--json")
    ap.add_argument("--profile", action="store_true",
                    help="print cProfile of each warm build + first call")
    args = ap.parse_args()
    rows = []
    print(f"{'backend':<8} {'process':<6} {'kernel':<10} {'import fusec ms':>15} "
          f"{'build ms':>9} {'first call ms':>13} {'call us':>8}  from disk")
    for backend in args.backends.split(","):
        with tempfile.TemporaryDirectory() as cache:
            for process in ("cold", "warm"):
                got = run_child(backend, cache, args.profile and process == "warm")
                for kernel in ("vector_add", "bias_gelu", "softmax"):
                    r = got[kernel]
                    rows.append({"backend": backend, "process": process, "kernel": kernel,
                                 "import_fusec_ms": got["import_fusec_ms"], **r})
                    print(f"{backend:<8} {process:<6} {kernel:<10} "
                          f"{got['import_fusec_ms']:>15.1f} {r['build_ms']:>9.1f} "
                          f"{r.get('first_call_ms', float('nan')):>13.2f} "
                          f"{r.get('call_us', float('nan')):>8.1f}  "
                          f"{'whole kernel' if r.get('restored') else ''}", flush=True)
                    if f"profile_{kernel}" in got:
                        print(got[f"profile_{kernel}"], flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
