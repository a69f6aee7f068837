"""Where the host time of one compiled inference call goes, node by node (CUDA, bf16): the
whole `torch.compile(backend="fusec")` call, the compiled graph module alone (what is left
is Dynamo's and AOT autograd's wrappers), and each node of the graph module timed on its
own with inputs of the graph's shapes, at tiny sizes (a region's call split further into its kernel call,
its call key, its fast path and its launch plan). Inductor's whole call is timed too.

    python3 benchmarks/host_anatomy.py [--only NAME] [--calls N]
"""
from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

import torch
from torch.fx.node import map_arg

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import torch_models as tm  # noqa: E402

import importlib  # noqa: E402

import fusec.dynamo  # noqa: E402,F401
from fusec.dynamo.rules import launches_nothing  # noqa: E402
from host_timing import host_us  # noqa: E402

stats = importlib.import_module("fusec.dynamo.stats")


def cases():
    """Tiny sizes: the GPU keeps up with the host, so the loops time the host alone."""
    return {"block 2x16x32": (tm.Block(32, 4), (2, 16, 32)),
            "mlp 64x32": (tm.MLP(32, 64), (64, 32))}


def example(value):
    """A tensor shaped like a graph input's fake value (or the value itself)."""
    if not isinstance(value, torch.Tensor):
        return value
    t = torch.empty_strided(value.shape, value.stride(), dtype=value.dtype,
                            device=value.device)
    return t.normal_() if t.dtype.is_floating_point else t.zero_()


def region_parts(region, args, calls):
    params = [args[i] for i in region.param_positions]
    kernel = region.kernel
    kernel(*params)
    key = kernel._call_key(params)
    fast = kernel._calls[key]
    compiled = kernel.compile(*params)
    parts = {"kernel(*params)": host_us(lambda: kernel(*params), calls),
             "call key": host_us(lambda: kernel._call_key(params), calls),
             "fast path": host_us(lambda: fast(tuple(params)), calls)}
    return parts, len(params), compiled.num_launches


def anatomy(name, gm, inputs, calls):
    env = {}
    rows = []
    totals = defaultdict(float)
    placeholders = iter(inputs)
    for node in gm.graph.nodes:
        if node.op == "placeholder":
            env[node] = next(placeholders)
            continue
        if node.op == "output":
            break
        args = map_arg(node.args, env.__getitem__)
        kwargs = map_arg(node.kwargs, env.__getitem__)
        region = getattr(node.target, "region", None)     # FusedRegion.caller()
        if region is not None:
            target = region
            kind = "region"
        else:
            target = node.target
            kind = "getitem" if node.target.__name__ == "getitem" else (
                "view" if launches_nothing(node.target) else "aten launch")
        env[node] = target(*args, **kwargs)
        us = host_us(lambda: target(*args, **kwargs), calls)
        totals[kind] += us
        extra = ""
        if kind == "region":
            parts, nparams, launches = region_parts(target, args, calls)
            extra = f" ({nparams} params, {launches} launches; " + ", ".join(
                f"{k} {v:.1f}" for k, v in parts.items()) + ")"
            for k, v in parts.items():
                totals["region: " + k] += v
        rows.append((us, f"{node.name} [{kind}] {getattr(target, '__name__', target)}"
                         f"{extra}"))
    print(f"-- {name}: nodes timed one at a time (us)")
    for us, text in rows:
        print(f"{us:8.2f}  {text}")
    print("   totals: " + ", ".join(f"{k} {v:.1f} us" for k, v in totals.items()), flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", default="")
    ap.add_argument("--calls", type=int, default=500)
    opts = ap.parse_args()
    bf = torch.bfloat16
    for name, (module, shape) in cases().items():
        if opts.only not in name:
            continue
        module = module.to("cuda", bf)
        x = torch.randn(shape, device="cuda", dtype=bf)
        with torch.no_grad():
            stats.reset()
            fn = torch.compile(module, backend="fusec")
            fn(x)
            report = stats.graphs()[-1]
            gm = report.module
            inputs = [example(n.meta.get("val")) for n in gm.graph.nodes
                      if n.op == "placeholder"]
            whole = host_us(lambda: fn(x), opts.calls)
            graph = host_us(lambda: gm(*inputs), opts.calls)
            eager = host_us(lambda: module(x), opts.calls)
            torch._dynamo.reset()
            ind = torch.compile(module)
            ind(x)
            inductor = host_us(lambda: ind(x), opts.calls)
            print(f"== {name}: eager {eager:.1f} us, Inductor {inductor:.1f} us, fusec "
                  f"{whole:.1f} us, of which the graph module {graph:.1f} us (wrappers "
                  f"{whole - graph:.1f} us)", flush=True)
            anatomy(name, gm, inputs, opts.calls)
            torch._dynamo.reset()


if __name__ == "__main__":
    main()
