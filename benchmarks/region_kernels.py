"""The fused regions of a torch.compile(backend="fusec") step, each kernel timed alone on
the GPU: device time (gpu.py's graph_ms: one call captured in a CUDA graph, the median of 20
replays, so no host launch cost counts), bytes of its
inputs and outputs per second, its config; optionally measured tuning's pick and a list of
configs to try on every region whose tile rank matches.

    python3 benchmarks/region_kernels.py [--only block] [--measure] [--fast-math]
        [--configs "1,8,512/4;1,2,512/4;1,1,1024/4"]
"""
from __future__ import annotations

import argparse
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
            "mlp 8192x1024 train": (tm.MLP(1024, 4096), (8192, 1024), bf)}


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


def device_us(fn) -> float:
    return graph_ms(fn, 20) * 1e3


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
            t = device_us(lambda: region.kernel(*args))
            total += t
            line = [f"{case} {name}: {ck.config} x{ck.num_launches} {t:.1f} us "
                    f"{moved / t / 1e3:.0f} GB/s"]
            variants = []
            if opts.measure:
                variants.append(("measured", {"autotune": "measure"}))
            if opts.fast_math:
                variants.append(("fast_math", {"fast_math": True}))
            for label, kwargs in variants:
                other = jit.Kernel(region.source.function(), backend="cuda", **kwargs)
                other(*args)
                line.append(f"{label} {other.compile(*args).config} "
                            f"{device_us(lambda: other(*args)):.1f}")
            for blocks, warps in configs:
                if len(blocks) != len(ck.config.blocks):
                    continue
                try:
                    tried = region.kernel.compile(*args, config=fusec.Config(blocks=blocks,
                                                                             warps=warps))
                    line.append(f"{blocks}w{warps} {device_us(lambda: tried(*args)):.1f}")
                except Exception as exc:           # a config the kernel cannot take
                    line.append(f"{blocks}w{warps} {type(exc).__name__}")
            print(" | ".join(line), flush=True)
        print(f"{case}: {total:.0f} us over its regions", flush=True)


if __name__ == "__main__":
    main()
