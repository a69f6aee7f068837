"""Device time of the GPU examples over a grid of configs (blocks x warps), bf16, the
shapes of benchmarks/gpu.py: the data the GPU default policy and the cost model are
calibrated against.

    python3 benchmarks/gpu_sweep.py [--json out.json] [--fast-math]
"""
from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

import torch

import fusec

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
from gpu import anchor_calls, graph_ms  # noqa: E402

ROW_BLOCKS = ([1], [2], [4])
TILE_BLOCKS = ([8, 512], [4, 1024], [16, 256], [2, 2048], [1, 4096], [8, 1024])
WARPS = (2, 4, 8, 16)
# the PTX backend runs a program per thread: tiles of a few elements, threads per block
PTX_ROW_BLOCKS = ([1],)
PTX_TILE_BLOCKS = ([1, 1], [1, 2], [1, 8], [1, 32], [1, 256], [2, 128])
PTX_WARPS = (1, 4, 8)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--json")
    ap.add_argument("--fast-math", action="store_true")
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--backend", default="cuda", choices=("cuda", "ptx"))
    args = ap.parse_args()
    torch.manual_seed(0)
    x = torch.randn(32768, 4096, device="cuda", dtype=torch.bfloat16)
    w = torch.randn(4096, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(4096, device="cuda", dtype=torch.bfloat16)
    xg = torch.randn(16384, 8192, device="cuda", dtype=torch.bfloat16)
    bg = torch.randn(8192, device="cuda", dtype=torch.bfloat16)
    ptx = args.backend == "ptx"
    rows_b, tiles_b = (PTX_ROW_BLOCKS, PTX_TILE_BLOCKS) if ptx else (ROW_BLOCKS, TILE_BLOCKS)
    cases = {name: (kern, call_args, tiles_b if name == "bias_gelu" else rows_b,
                    xg if name == "bias_gelu" else x)
             for name, (kern, call_args) in anchor_calls(x, w, b, xg, bg).items()}
    rows = []
    for name, (kern, call_args, blocks, big) in cases.items():
        kern = fusec.kernel(kern.fn, fast_math=args.fast_math)
        nbytes = 2 * big.numel() * big.element_size()
        for blk, warps in itertools.product(blocks, PTX_WARPS if ptx else WARPS):
            config = fusec.Config(blocks=blk, warps=warps)
            try:
                ck = kern.compile(*call_args, config=config, backend=args.backend)
                ms = graph_ms(lambda: ck(*call_args), args.repeat)
            except Exception as exc:         # a config that does not build or launch
                print(f"{name:<10} {str(blk):<12} {warps:>2}  failed: {exc}"[:160])
                continue
            rows.append({"kernel": name, "backend": args.backend, "blocks": blk,
                         "warps": warps, "ms": ms,
                         "GBps": nbytes / ms / 1e6})
            print(f"{name:<10} {str(blk):<12} {warps:>2} {ms:8.3f} ms "
                  f"{nbytes / ms / 1e6:7.0f} GB/s",
                  flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
