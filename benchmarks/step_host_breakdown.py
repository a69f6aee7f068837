"""Where the host time of a compiled step goes (CUDA, bf16): a model compiled with
backend="fusec" at its real size and at a tiny size, timed per step back to back, with the
time spent inside fusec's regions, its launch plans and the driver's cuLaunchKernel summed
by wrapping them (the wrappers' own cost, about 1 us a call, counts too).

    python3 benchmarks/step_host_breakdown.py [--only NAME] [--backends fusec,inductor]
"""
from __future__ import annotations

import argparse
import itertools
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import torch_models as tm  # noqa: E402

import fusec.dynamo  # noqa: E402,F401
from fusec.dynamo import region as region_mod  # noqa: E402
from fusec.backends.cuda import runtime as runtime_mod  # noqa: E402

SPENT: dict[str, float] = defaultdict(float)
CALLS: dict[str, int] = defaultdict(int)


def timed(label, fn):
    def wrapper(*args, **kwargs):
        t = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            SPENT[label] += time.perf_counter() - t
            CALLS[label] += 1
    return wrapper


def instrument():
    make_caller = region_mod.FusedRegion.caller
    region_mod.FusedRegion.caller = lambda self: timed("region call", make_caller(self))
    runtime_mod.LaunchPlan.launch = timed("plan launch", runtime_mod.LaunchPlan.launch)
    drv = runtime_mod._driver()
    drv.cuLaunchKernel = timed("cuLaunchKernel", drv.cuLaunchKernel)


def cases():
    return {"block 8x512x1024": (tm.Block(1024, 16), (8, 512, 1024)),
            "block 2x16x32": (tm.Block(32, 4), (2, 16, 32)),
            "mlp 8192x1024": (tm.MLP(1024, 4096), (8192, 1024))}


def step(fn, x, trains):
    if trains:
        fn(x).float().sum().backward()
    else:
        with torch.no_grad():
            fn(x)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", default="")
    ap.add_argument("--backends", default="fusec", help="e.g. fusec,inductor (the same "
                    "timing for Inductor: host and wall per step, no parts)")
    opts = ap.parse_args()
    instrument()
    bf = torch.bfloat16
    for name, (module, shape) in cases().items():
        if opts.only not in name:
            continue
        module = module.to("cuda", bf)
        for trains, backend in itertools.product((False, True), opts.backends.split(",")):
            torch._dynamo.reset()
            x = torch.randn(shape, device="cuda", dtype=bf, requires_grad=trains)
            fn = torch.compile(module, backend=backend)
            for _ in range(5):
                step(fn, x, trains)
            torch.cuda.synchronize()
            SPENT.clear()
            CALLS.clear()
            n = 50
            t = time.perf_counter()
            for _ in range(n):
                step(fn, x, trains)
            host = time.perf_counter() - t
            torch.cuda.synchronize()
            wall = time.perf_counter() - t
            parts = ", ".join(f"{k} {SPENT[k] / n * 1e6:.0f} us ({CALLS[k] // n}/step)"
                              for k in SPENT)
            print(f"{name} {'train' if trains else 'fwd'} {backend}: host {host / n * 1e6:.0f} us/step, "
                  f"wall {wall / n * 1e6:.0f} us/step; {parts}", flush=True)


if __name__ == "__main__":
    main()
