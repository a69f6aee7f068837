"""Where the host time of a cached fusec call goes (CUDA): each piece of the per-call path
timed alone on a tiny input, mean over many calls, the GPU idle.

    python3 benchmarks/launch_breakdown.py [--json out.json]
"""
from __future__ import annotations

import argparse
import ctypes
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
from vector_add import vector_add  # noqa: E402
from host_timing import host_us  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--json")
    opts = ap.parse_args()
    from cuda.bindings import driver as drv

    a = torch.randn(1024, device="cuda")
    b = torch.randn(1024, device="cuda")
    vector_add(a, b)
    key = vector_add._call_key((a, b))
    fast = vector_add._calls[key]
    compiled = next(iter(vector_add._compiled.values()))
    python_fast = compiled.fast_path([a, b])        # without args: never the native path
    rt = compiled.native.runtime()
    out = torch.empty_like(a)
    plan = rt.plan([a, b, out])
    k, fn, blocks, _, _ = plan.launches[0]
    stream_of = plan.stream_of
    raw_stream = stream_of(0)
    cu_stream = drv.CUstream(raw_stream)

    libcuda = ctypes.CDLL("libcuda.so.1")
    c_launch = libcuda.cuLaunchKernel
    c_launch.restype = ctypes.c_int
    c_launch.argtypes = [ctypes.c_void_p] + [ctypes.c_uint] * 7 + [ctypes.c_void_p] * 3
    fn_ptr = int(fn)
    params = plan.params

    cases = {
        "whole call: vector_add(a, b)": lambda: vector_add(a, b),
        "call key": lambda: vector_add._call_key((a, b)),
        f"fast path (no key): {type(fast).__name__}": lambda: fast((a, b)),
        "Python fast path (no key)": lambda: python_fast((a, b)),
        "plan.launch (pointers + driver)": lambda: plan.launch([a, b, out]),
        "torch.empty(1024)": lambda: torch.empty(1024, device="cuda"),
        "torch.empty_like(a)": lambda: torch.empty_like(a),
        "a.data_ptr()": lambda: a.data_ptr(),
        "raw stream handle": lambda: stream_of(0),
        "drv.CUstream(handle)": lambda: drv.CUstream(raw_stream),
        "drv.cuCtxGetCurrent()": lambda: drv.cuCtxGetCurrent(),
        "cuda-python cuLaunchKernel": lambda: drv.cuLaunchKernel(
            fn, blocks, 1, 1, rt.nthreads, 1, 1, 0, cu_stream, params, 0),
        "ctypes cuLaunchKernel": lambda: c_launch(
            fn_ptr, blocks, 1, 1, rt.nthreads, 1, 1, 0, raw_stream, params, None),
        "torch.add(a, b)": lambda: torch.add(a, b),
        "a.add_(b)": lambda: a.add_(b),
    }
    rows = []
    for name, f in cases.items():
        us = host_us(f, calls=5000, warmup=50)
        rows.append({"piece": name, "us": us})
        print(f"{name:<36} {us:7.2f} us", flush=True)
    if opts.json:
        Path(opts.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
