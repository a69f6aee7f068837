"""Options of the torch.compile backend (`fusec.torch_backend(...)`)."""
from __future__ import annotations

from dataclasses import dataclass

from ..jit import _check_backend
from ..tuning import check_autotune

MODES = {"default": "default policy: the cost model's tile sizes, compiled once",
         "max-autotune": "kernels are tuned by measurement (autotune='measure')"}
MATMULS = ("aten", "fusec", "auto")


@dataclass(frozen=True)
class Options:
    """mode: "default" | "max-autotune". matmul: "aten" runs mm/addmm/bmm/baddbmm with the
    vendor library (cuBLAS, MKL) and fuses what surrounds them into fusec kernels (fusec's
    own matmul is slower than cuBLAS on large products, see benchmarks/RESULTS.md); "fusec"
    lowers them to fusec matmul kernels with their prologues and epilogues; "auto" measures
    both for each matmul's sizes when the graph compiles and takes fusec's kernel where it
    beats the vendor's product plus the separate pass its epilogue then costs
    (matmul_choice.py). Default: "auto" with mode="max-autotune" (as Inductor's max-autotune
    benchmarks its templates against cuBLAS), else "aten". backend: the fusec backend
    ("cuda", "ptx", "cpu", "interpret"; default by device). strict: raise when fusec cannot
    compile a region instead of running it as aten ops. dump: print the partition of every
    graph (as FUSEC_DUMP=graph does)."""
    mode: str = "default"
    matmul: str | None = None
    backend: str | None = None
    fast_math: bool = False
    strict: bool = False
    dump: bool = False

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"fusec.torch_backend: mode must be one of {', '.join(MODES)}, "
                             f"got {self.mode!r}")
        if self.matmul is None:
            object.__setattr__(self, "matmul", "auto" if self.mode == "max-autotune" else "aten")
        if self.matmul not in MATMULS:
            raise ValueError(f"fusec.torch_backend: matmul must be one of "
                             f"{', '.join(MATMULS)}, got {self.matmul!r}")
        if self.backend is not None:
            _check_backend(self.backend, "fusec.torch_backend")
        for name in ("fast_math", "strict", "dump"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"fusec.torch_backend: {name} must be True or False")

    @property
    def autotune(self):
        return check_autotune("measure" if self.mode == "max-autotune" else True)
