"""The fused regions of a torch.compile(backend="fusec") step, each kernel timed alone on
the GPU: device time (10 calls back to back captured in a CUDA graph, per call, so no host
launch cost counts), bytes of its inputs and outputs per second, its config; optionally
measured tuning's pick and a list of configs to try on every region whose tile rank
matches. A region's variants are built first and timed in turns (5 rounds, the order
rotated, the median per variant): one replay at a time, the same config measured up to 40%
apart between two variants timed one after the other.

    python3 benchmarks/region_kernels.py [--only block] [--measure] [--fast-math]
        [--configs "1,8,512/4;1,2,512/4;1,1,1024/4"]
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch

from gpu import graph_ms  # noqa: E402  (benchmarks/, the script's folder)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import torch_models as tm  # noqa: E402

import fusec  # noqa: E402
import fusec.dynamo  # noqa: E402
from fusec import jit  # noqa: E402
from fusec.dynamo import region as region_mod  # noqa: E402


def cases():
    bf = torch.bfloat16
    return {"block 8x512x1024 train": (tm.Block(1024, 16), (8, 512, 1024), bf),
            "mlp 8192x1024 train": (tm.MLP(1024, 4096), (8192, 1024), bf),
            "groupnorm 64x16x128x128 train": (tm.GroupNormSiLU(), (64, 16, 128, 128), bf),
            "cumsum 8192x1024 train": (tm.Unsupported(), (8192, 1024), bf)}


def capture(module, shape, dtype):
    """{region name: (region, its kernel's arguments)} from one training step."""
    seen = {}
    forward = region_mod.FusedRegion.forward

    def recording(self, *args):
        seen.setdefault(self.source.name, (self, [args[i] for i in self.param_positions]))
        return forward(self, *args)
    region_mod.FusedRegion.forward = recording
    try:
        x = torch.randn(shape, device="cuda", dtype=dtype, requires_grad=True)
        torch.compile(module.to("cuda", dtype), backend="fusec")(x).float().sum().backward()
        torch.cuda.synchronize()
    finally:
        region_mod.FusedRegion.forward = forward
    return {name: (r, [a.detach() if isinstance(a, torch.Tensor) else a for a in args])
            for name, (r, args) in seen.items()}


CALLS_PER_REPLAY = 10
ROUNDS = 5


def device_us(fn) -> float:
    """Per call: CALLS_PER_REPLAY calls in one CUDA graph, the median of 5 replays."""
    def calls():
        for _ in range(CALLS_PER_REPLAY):
            fn()
    return graph_ms(calls, 5) * 1e3 / CALLS_PER_REPLAY


def in_turns(variants: dict) -> dict:
    """{label: median us} of device_us over ROUNDS rounds, the order rotated each round."""
    times = {label: [] for label in variants}
    order = list(variants)
    for r in range(ROUNDS):
        for label in order[r % len(order):] + order[:r % len(order)]:
            times[label].append(device_us(variants[label]))
    return {label: statistics.median(t) for label, t in times.items()}


def nbytes(values) -> int:
    return sum(t.numel() * t.element_size() for t in values if isinstance(t, torch.Tensor))


def parse_configs(text: str) -> list:
    """'1,8,512/4;1,2,512/4' -> [([1, 8, 512], 4), ([1, 2, 512], 4)]"""
    out = []
    for part in filter(None, text.split(";")):
        blocks, warps = part.split("/")
        out.append(([int(b) for b in blocks.split(",")], int(warps)))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", default="")
    ap.add_argument("--measure", action="store_true", help="also autotune='measure'")
    ap.add_argument("--fast-math", action="store_true", help="also fast_math=True")
    ap.add_argument("--configs", default="", help="blocks/warps to try, ';'-separated")
    opts = ap.parse_args()
    configs = parse_configs(opts.configs)
    for case, (module, shape, dtype) in cases().items():
        if opts.only not in case:
            continue
        total = 0.0
        for name, (region, args) in capture(module, shape, dtype).items():
            out = region.kernel(*args)
            moved = nbytes(args) + nbytes(out if isinstance(out, tuple) else (out,))
            ck = region.kernel.compile(*args)
            variants = {"default": lambda: region.kernel(*args)}
            labels = {"default": str(ck.config)}
            others = []
            if opts.measure:
                others.append(("measured", {"autotune": "measure"}))
            if opts.fast_math:
                others.append(("fast_math", {"fast_math": True}))
            for label, kwargs in others:
                other = jit.Kernel(region.source.function(), backend="cuda",
                                   static_shapes=region.kernel.static_shapes, **kwargs)
                other(*args)
                variants[label] = (lambda k: lambda: k(*args))(other)
                labels[label] = f"{label} {other.compile(*args).config}"
            failed = []
            for blocks, warps in configs:
                if len(blocks) != len(ck.config.blocks):
                    continue
                label = f"{blocks}w{warps}"
                try:
                    tried = region.kernel.compile(*args, config=fusec.Config(blocks=blocks,
                                                                             warps=warps))
                    variants[label] = (lambda k: lambda: k(*args))(tried)
                    labels[label] = label
                except Exception as exc:           # a config the kernel cannot take
                    failed.append(f"{label} {type(exc).__name__}")
            us = in_turns(variants)
            total += us["default"]
            line = [f"{case} {name}: {ck.config} x{ck.num_launches} {us['default']:.1f} us "
                    f"{moved / us['default'] / 1e3:.0f} GB/s"]
            line += [f"{labels[k]} {t:.1f}" for k, t in us.items() if k != "default"]
            print(" | ".join(line + failed), flush=True)
        print(f"{case}: {total:.0f} us over its regions", flush=True)


if __name__ == "__main__":
    main()
