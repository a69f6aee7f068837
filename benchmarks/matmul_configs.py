"""The tensor-core matmul over a set of configs (tiles, warps, pipeline stages), bf16
relu(a @ b + bias) * scale at 4096^3 and 8192^3, against cuBLAS (`a @ b` alone) and
torch.compile of the same expression, in one run on one GPU. Each config's result is
checked against torch in float32 first; device time from CUDA-graph replay (median).

    python3 benchmarks/matmul_configs.py [--sizes 4096,8192] [--json out.json]
        [--configs "128x128x32/4w/4s,..."] [--schedules within,across,spread]
        [--group-rows 8,0]

Schedules of the K loop (backends/cuda/mma.py's switches): "within" (the next tile's copies
before this tile's multiplies, its first fragments after the barrier), "across"
(LOAD_ACROSS_BARRIER), "spread" (SPREAD_COPIES: the copies after each K step's multiplies).
Group rows (backends/cuda/emit.py's GROUP_ROWS): programs walk the tile grid in groups of
this many rows (0: row-major).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

import fusec

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
from gpu import graph_ms  # noqa: E402
from matmul_epilogue import matmul_bias_relu  # noqa: E402

from fusec.backends.cuda import emit, mma  # noqa: E402

# blocks MxNxK / warps / stages; stages past the shared memory the arch allows are cut to
# what fits (the row's label says what ran)
CONFIGS = ("128x128x32/4w/2s", "128x128x32/4w/3s", "128x128x32/4w/4s", "128x128x32/8w/4s",
           "128x256x32/8w/3s", "256x128x32/8w/3s", "128x128x64/4w/3s", "64x128x32/4w/4s",
           "128x64x32/4w/4s")


def parse(text: str) -> fusec.Config:
    blocks, warps, stages = text.split("/")
    return fusec.Config(blocks=[int(b) for b in blocks.split("x")], warps=int(warps[:-1]),
                        stages=int(stages[:-1]))


def ran_stages(source: str) -> str:
    """The stages the emitted K loop uses (the tensor-core comment says)."""
    for line in source.splitlines():
        if "mma.sync m16n8k16" in line and "stages" in line:
            return line.rsplit(",", 1)[1].strip()
    return "no tensor cores"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="4096,8192")
    ap.add_argument("--configs", default=",".join(CONFIGS))
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--json")
    ap.add_argument("--schedules", default="",
                    help="each config under these K-loop schedules "
                         f"({', '.join(mma.SCHEDULES)})")
    ap.add_argument("--both-schedules", action="store_true", help="--schedules within,across")
    ap.add_argument("--group-rows", default="",
                    help="each config with programs grouped by these many rows (0: row-major)")
    args = ap.parse_args()
    rows = []
    print(f"# {torch.cuda.get_device_name()}: matmul + bias + relu * scale, bf16, TFLOP/s "
          "counts 2*M*N*K")
    for n in map(int, args.sizes.split(",")):
        a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
        b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
        bias = torch.randn(n, device="cuda", dtype=torch.bfloat16)
        want = torch.relu(a.float() @ b.float() + bias.float()) * 0.5
        eager = lambda: torch.relu(a @ b + bias) * 0.5                    # noqa: E731
        impls = {"cuBLAS a @ b alone": lambda: a @ b, "torch.compile": torch.compile(eager),
                 "fusec default config": lambda: matmul_bias_relu(a, b, bias, 0.5)}
        schedules = args.schedules.split(",") if args.schedules else \
            ["within", "across"] if args.both_schedules else [None]
        groups = [int(g) for g in args.group_rows.split(",")] if args.group_rows else [None]
        for text, schedule, group in [(t, x, g) for t in args.configs.split(",")
                                      for x in schedules for g in groups]:
            label = " ".join([text] + [schedule] * (schedule is not None)
                             + [f"g{group}"] * (group is not None))
            try:
                kernel = matmul_bias_relu
                if schedule is not None or group is not None:
                    # a fresh kernel: its in-memory cache keys no switch
                    for name, value in mma.SCHEDULES.get(schedule, {}).items():
                        setattr(mma, name, value)
                    if group is not None:
                        emit.GROUP_ROWS = group
                    kernel = fusec.kernel(matmul_bias_relu.fn)
                ck = kernel.compile(a, b, bias, 0.5, backend="cuda", config=parse(text))
                err = ((ck(a, b, bias, 0.5).float() - want).abs().max() /
                       want.abs().max()).item()
                if err > 1e-2:
                    raise AssertionError(f"max |err| / max |want| = {err:.2e}")
                impls[f"fusec {label} ({ran_stages(ck.asm['cuda'])})"] = \
                    (lambda _ck=ck: _ck(a, b, bias, 0.5))
            except Exception as exc:                 # reported in the table
                print(f"{n:<5} fusec {label:<28} failed: {type(exc).__name__}: {exc}"[:300])
        cublas = None
        for name, fn in impls.items():
            try:
                ms = graph_ms(fn, args.repeat)
            except Exception as exc:
                print(f"{n:<5} {name:<40} failed: {type(exc).__name__}: {exc}"[:300])
                continue
            tflops = 2 * n ** 3 / ms / 1e9
            cublas = cublas or tflops
            rows.append({"n": n, "impl": name, "ms": ms, "TFLOPs": tflops})
            print(f"{n:<5} {name:<40} {ms:>8.3f} ms {tflops:>7.1f} TFLOP/s "
                  f"{100 * tflops / cublas:>5.0f}% of cuBLAS", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"device": torch.cuda.get_device_name(),
                                               "results": rows}, indent=1))


if __name__ == "__main__":
    main()
