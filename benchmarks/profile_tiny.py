"""torch.profiler table of one inference step of the tiny test block compiled by fusec
(CUDA): which device kernels take the time when the inputs are tiny.

    python3 benchmarks/profile_tiny.py
"""
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import torch_models as tm  # noqa: E402

import fusec  # noqa: E402

if __name__ == "__main__":
    block = tm.Block(32, 4).to("cuda")
    x = torch.randn(2, 16, 32, device="cuda")
    fn = torch.compile(block, backend=fusec.torch_backend(dump=True))
    with torch.no_grad():
        for _ in range(3):
            fn(x)
        from torch.profiler import ProfilerActivity, profile
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            fn(x)
            torch.cuda.synchronize()
        print(prof.key_averages().table(sort_by="self_cuda_time_total", row_limit=30,
                                        max_name_column_width=50))
