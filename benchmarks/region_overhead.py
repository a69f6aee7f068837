"""Host microseconds of the pieces of one fused region's call (CUDA, tiny inputs, the GPU
idle): the region module, its kernel call, the call key, the kernel's fast path, and the
aten ops of eager for the same region.

    python3 benchmarks/region_overhead.py
"""
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import torch_models as tm  # noqa: E402

import importlib  # noqa: E402

import fusec  # noqa: E402
from host_timing import host_us  # noqa: E402

stats = importlib.import_module("fusec.dynamo.stats")     # the module (fusec.dynamo.stats
                                                          # is the function)
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"   # cpu: a smoke run of the script


if __name__ == "__main__":
    mlp = tm.MLP(32, 64).to(DEVICE)
    x = torch.randn(64, 32, device=DEVICE)
    fn = torch.compile(mlp, backend="fusec")
    captured = {}
    region = None
    with torch.no_grad():
        fn(x)
        region = stats.graphs()[-1].regions[0]
        original = region.forward

        def spy(*args):
            captured["args"] = args
            return original(*args)
        region.forward = spy
        fn(x)
        region.forward = original
        args = captured["args"]
        params = [args[i] for i in region.param_positions]
        kernel = region.kernel
        key = kernel._call_key(params)
        fast = kernel._calls[key]
        cases = {
            "compiled MLP (3 launches)": lambda: fn(x),
            "eager MLP": lambda: mlp(x),
            "region module call": lambda: region(*args),
            "region.forward": lambda: region.forward(*args),
            "kernel(*params)": lambda: kernel(*params),
            "call key": lambda: kernel._call_key(params),
            "fast path": lambda: fast(tuple(params)),
            "eager region (aten ops)": lambda: region.original(*args),
        }
        print(f"region {region.source.name}: {len(params)} params, "
              f"{len(region.source.bases)} results, replayed views {len(region.replay)}")
        for name, f in cases.items():
            print(f"{name:<32} {host_us(f, calls=3000, warmup=50):8.2f} us", flush=True)
