"""Host time per step of the test models at tiny sizes (the GPU idles: what is measured is
the Python and launch work of each mode), eager vs Inductor vs backend="fusec", CUDA.

    python3 benchmarks/torch_host_overhead.py [--json out.json] [--profile] [--only NAME]

--profile prints cProfile's top functions for the fusec steps.
"""
from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import torch_models as tm  # noqa: E402

import fusec  # noqa: E402
from host_timing import host_us  # noqa: E402
import fusec.dynamo  # noqa: E402


def models(device):
    return {"mlp 64x32 (h 64)": (tm.MLP(32, 64).to(device), (64, 32)),
            "block 2x16x32": (tm.Block(32, 4).to(device), (2, 16, 32))}


def step(fn, x, trains):
    if trains:
        fn(x).sum().backward()
    else:
        with torch.no_grad():
            fn(x)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--json")
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--only", default="")
    opts = ap.parse_args()
    rows = []
    for name, (module, shape) in models("cuda").items():
        if opts.only not in name:
            continue
        for trains in (False, True):
            x = torch.randn(*shape, device="cuda", requires_grad=trains)
            for mode in ("eager", "inductor", "fusec"):
                torch._dynamo.reset()
                fusec.dynamo.reset()
                fn = module if mode == "eager" else torch.compile(module, backend=mode)
                us = host_us(lambda: step(fn, x, trains), calls=300, warmup=10)
                row = {"model": name, "train": trains, "mode": mode, "host_us": us}
                if mode == "fusec":
                    row["launches"] = fusec.stats()["launches_per_call"]
                rows.append(row)
                print(json.dumps(row), flush=True)
                if mode == "fusec" and opts.profile:
                    prof = cProfile.Profile()
                    prof.enable()
                    for _ in range(100):
                        step(fn, x, trains)
                    prof.disable()
                    pstats.Stats(prof).sort_stats("tottime").print_stats(18)
    if opts.json:
        Path(opts.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
