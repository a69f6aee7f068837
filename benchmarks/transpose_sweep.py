"""Transposed copies on the GPU (bf16): every config of the autotuner's pruned space plus a
few square tiles, each with the shared-memory staging of backends/cuda/transpose.py off and
on, measured (CUDA-graph replays) next to the cost model's estimate. The model prices
memory in sectors and does not see a load whose contiguous axis is not the tile's last
axis; this sweep is the data for teaching it (and for the transpose switch). Prints one
line per (shape, config, staging) and the rank correlation of model and measurement.

    python3 benchmarks/transpose_sweep.py [--json out.json] [--repeat 30]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fusec  # noqa: E402
import fusec.language as fl  # noqa: E402
from fusec import tuning  # noqa: E402
from fusec.autotune.cost import spearman  # noqa: E402
from gpu import graph_ms  # noqa: E402

CASES = [((8192, 8192), (1, 0)), ((8, 512, 16, 64), (0, 2, 3, 1)),
         ((4, 32, 1024, 16), (0, 1, 3, 2))]
SQUARE = [(32, 32), (64, 64), (128, 128), (32, 64), (64, 32)]


def sweep(shape, perm, repeat: int) -> list:
    from fusec.backends.cuda import transpose
    x = torch.randn(shape, device="cuda", dtype=torch.bfloat16)
    want = x.permute(perm).contiguous()
    nbytes = 2 * x.numel() * x.element_size()

    def copy(a):
        return fl.permute(a, perm)
    kernel = fusec.kernel(copy)
    major, minor = torch.cuda.get_device_capability()
    target = f"sm_{major}{minor}"
    facts = tuning.facts_for(kernel, x)
    found = tuning.ranked(facts, "cuda", target)
    extra = [fusec.Config(blocks=[1] * (len(shape) - 2) + list(b), warps=w)
             for b in SQUARE for w in (2, 4, 8)]
    estimates = {str(c.config): c.estimate for c in found}
    estimates.update({str(c.config): c.estimate for c in tuning.tuner.space.rank(
        facts, tuning.machine("cuda", target), extra)})
    configs = [c.config for c in found] + [c for c in extra if str(c) not in
                                             {str(f.config) for f in found}]
    default = kernel.compile(x).config
    rows = []
    for staged in (False, True):
        transpose.ENABLED = staged
        for config in configs:
            ck = fusec.kernel(copy).compile(x, config=config)
            out = ck(x)
            exact = bool(torch.equal(out, want))
            ms = graph_ms(lambda ck=ck: ck(x), repeat)
            row = {"shape": list(shape), "perm": list(perm), "config": str(config),
                   "staged": staged, "ms": ms, "GBps": nbytes / ms / 1e6,
                   "model_us": 1e6 * estimates[str(config)], "exact": exact,
                   "default": str(config) == str(default)}
            rows.append(row)
            print(f"{str(list(shape)):<18} {str(perm):<14} staged={staged!s:<5} "
                  f"{str(config):<40} {ms:8.4f} ms {row['GBps']:6.0f} GB/s model "
                  f"{row['model_us']:8.1f} us{' default' if row['default'] else ''}"
                  f"{'' if exact else ' WRONG'}", flush=True)
    transpose.ENABLED = False
    for staged in (False, True):
        mine = [r for r in rows if r["staged"] == staged]
        rho = spearman([r["model_us"] for r in mine], [r["ms"] for r in mine])
        best = min(mine, key=lambda r: r["ms"])
        print(f"# {list(shape)} {perm} staged={staged}: best {best['config']} "
              f"{best['ms']:.4f} ms; model rank correlation {rho}")
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--json")
    ap.add_argument("--repeat", type=int, default=30)
    args = ap.parse_args()
    rows = []
    print(f"# {torch.cuda.get_device_name(0)}")
    for shape, perm in CASES:
        rows += sweep(shape, perm, args.repeat)
    if args.json:
        Path(args.json).write_text(json.dumps({"device": torch.cuda.get_device_name(0),
                                               "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
