"""One call of the tensor-core matmul (examples/matmul_epilogue.py) for a profiler to look
at: `ncu --clock-control none -k regex:fusec_matmul python3 benchmarks/profile_matmul.py
128x128x32/4w/4s 4096 [within|across|spread]` (the K-loop schedule, matmul_configs.py's)."""
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
from matmul_configs import parse  # noqa: E402
from matmul_epilogue import matmul_bias_relu  # noqa: E402

if len(sys.argv) not in (3, 4):
    sys.exit(f"usage: {sys.argv[0]} BLOCKS/WARPSw/STAGESs N [SCHEDULE]  (e.g. 128x128x32/4w/4s "
             "4096 spread)")
config, n = parse(sys.argv[1]), int(sys.argv[2])
if len(sys.argv) == 4:
    from fusec.backends.cuda import mma
    for name, value in mma.SCHEDULES[sys.argv[3]].items():
        setattr(mma, name, value)
a, b = (torch.randn(n, n, device="cuda", dtype=torch.bfloat16) for _ in range(2))
bias = torch.randn(n, device="cuda", dtype=torch.bfloat16)
ck = matmul_bias_relu.compile(a, b, bias, 0.5, backend="cuda", config=config)
ck(a, b, bias, 0.5)
torch.cuda.synchronize()
