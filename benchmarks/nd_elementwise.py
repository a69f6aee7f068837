"""Elementwise kernels over 3-D and 4-D tensors (bf16) on the GPU: fusec's default call (the
policy's config), the same kernel under a few fixed configs, torch eager and torch.compile,
against the device-to-device copy bandwidth. GB/s counts bytes read and written; device
time from CUDA-graph replays (benchmarks/gpu.py's graph_ms).

The transformer block's silu(a) * b runs on [8, 512, 2048] activations; attention's
tensors are [batch, heads, tokens, head dim]. Transposed copies (k^T made contiguous, a 2-D
transpose) are timed with the shared-memory staging of backends/cuda/transpose.py off and
on.

    python3 benchmarks/nd_elementwise.py [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fusec  # noqa: E402
import fusec.language as fl  # noqa: E402
from gpu import graph_ms  # noqa: E402


@fusec.kernel
def silu_mul(a, b):
    return (fl.silu(a.to(fl.float32)) * b).to(a.dtype)


SHAPES = [(8, 512, 2048), (8, 512, 100), (8, 16, 512, 64), (4, 32, 1024, 16)]
# fixed configs besides the default call's: the previous fixed policy's 3-D cut and
# flatter tiles
CONFIGS = {3: [[8, 8, 64], [1, 8, 512], [1, 1, 1024], [1, 16, 256]],
           4: [[1, 1, 8, 64], [1, 1, 8, 512], [1, 2, 64, 16], [1, 1, 1, 1024]]}


def copy_bandwidth(repeat: int) -> float:
    """GB/s of a device-to-device copy of 1 GiB (bytes read and written)."""
    src = torch.empty(1 << 30, dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)
    return 2 * src.numel() / graph_ms(lambda: dst.copy_(src), repeat) / 1e6


def transposed_copies(repeat: int, copy_gbps: float) -> list:
    """k^T made contiguous ([8, 512, 16, 64] -> [8, 16, 64, 512], bf16) and a 2-D
    transpose: fusec with backends/cuda/transpose.py off and on, torch eager, torch.compile."""
    from fusec.backends.cuda import transpose
    rows = []
    for shape, perm in (((8, 512, 16, 64), (0, 2, 3, 1)), ((8192, 8192), (1, 0))):
        x = torch.randn(shape, device="cuda", dtype=torch.bfloat16)
        want = x.permute(perm).contiguous()
        nbytes = 2 * x.numel() * x.element_size()
        compiled = torch.compile(lambda t: t.permute(perm).contiguous())
        impls = {"torch eager": lambda: x.permute(perm).contiguous(),
                 "torch.compile": lambda: compiled(x)}
        for staged in (False, True):
            transpose.ENABLED = staged

            def copy(a):
                return fl.permute(a, perm)
            kernel = fusec.kernel(copy)
            blocks = [1] * (len(shape) - 2) + [64, 64]
            for name, ck in ((f"fusec default staged={staged}", kernel.compile(x)),
                             (f"fusec {blocks} staged={staged}", kernel.compile(
                                 x, config=fusec.Config(blocks=blocks, warps=4)))):
                impls[name] = (lambda ck=ck: ck(x))
        transpose.ENABLED = False
        for impl, fn in impls.items():
            exact = bool(torch.equal(fn(), want))
            ms = graph_ms(fn, repeat)
            gbps = nbytes / ms / 1e6
            rows.append({"shape": list(shape), "perm": list(perm), "impl": impl, "ms": ms,
                         "GBps": gbps, "pct_copy": 100 * gbps / copy_gbps, "exact": exact})
            print(f"{str(list(shape)):<18} perm {perm} {impl:<32} {ms:8.4f} ms {gbps:7.0f} "
                  f"GB/s {100 * gbps / copy_gbps:5.0f}% exact {exact}", flush=True)
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--json")
    ap.add_argument("--repeat", type=int, default=50)
    args = ap.parse_args()
    dev = "cuda"
    name = torch.cuda.get_device_name(0)
    copy_gbps = copy_bandwidth(args.repeat)
    print(f"# {name}; device-to-device copy {copy_gbps:.0f} GB/s")
    compiled = torch.compile(lambda a, b: F.silu(a.float()).to(a.dtype) * b)
    rows = []
    for shape in SHAPES:
        a = torch.randn(shape, device=dev, dtype=torch.bfloat16)
        b = torch.randn(shape, device=dev, dtype=torch.bfloat16)
        want = (F.silu(a.double()) * b.double())
        nbytes = 3 * a.numel() * a.element_size()
        impls = {"fusec default": lambda: silu_mul(a, b),
                 "torch eager": lambda: F.silu(a.float()).to(a.dtype) * b,
                 "torch.compile": lambda: compiled(a, b)}
        for blocks in CONFIGS[len(shape)]:
            ck = silu_mul.compile(a, b, config=fusec.Config(blocks=blocks))
            impls[f"fusec {blocks}"] = (lambda ck=ck: ck(a, b))
        default_config = silu_mul.compile(a, b).config
        for impl, fn in impls.items():
            out = fn()
            err = (out.double() - want).abs().max().item()
            ms = graph_ms(fn, args.repeat)
            gbps = nbytes / ms / 1e6
            row = {"shape": list(shape), "impl": impl, "ms": ms, "GBps": gbps,
                   "pct_copy": 100 * gbps / copy_gbps, "max_err": err}
            rows.append(row)
            print(f"{str(list(shape)):<18} {impl:<26} {ms:8.4f} ms {gbps:7.0f} GB/s "
                  f"{row['pct_copy']:5.0f}% err {err:.2g}", flush=True)
        print(f"# default call's config: {default_config}")
    rows += transposed_copies(args.repeat, copy_gbps)
    if args.json:
        Path(args.json).write_text(json.dumps({"device": name, "copy_GBps": copy_gbps,
                                               "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
