"""One call of each anchor workload (benchmarks/gpu.py's sizes) on the given backends, for a
profiler to look at: `ncu --clock-control none -k regex:fusec_ python3
benchmarks/profile_anchors.py ptx cuda` (kernels are named fusec_<kernel>_<launch>; both
backends use the fixed policy, so no tuning launches come between)."""
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gpu import anchor_calls  # noqa: E402

backends = sys.argv[1:] or ["ptx", "cuda"]
torch.manual_seed(0)
x = torch.randn(32768, 4096, device="cuda", dtype=torch.bfloat16)
w, b = (torch.randn(4096, device="cuda", dtype=torch.bfloat16) for _ in range(2))
xg = torch.randn(16384, 8192, device="cuda", dtype=torch.bfloat16)
bg = torch.randn(8192, device="cuda", dtype=torch.bfloat16)
for backend in backends:
    for name, (kern, args) in anchor_calls(x, w, b, xg, bg).items():
        ck = kern.compile(*args, backend=backend)
        print(backend, name, ck.config, flush=True)
        ck(*args)
torch.cuda.synchronize()
