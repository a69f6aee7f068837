"""torch.compile(backend="fusec") on CUDA: the test models forward and backward against
eager in float32 and bfloat16 (float64 references), fusec kernels on the CUDA C backend
(and the PTX backend for one model), fusec's own matmul for the MLP."""
from __future__ import annotations

import os
import sys

import pytest

torch = pytest.importorskip("torch")

import fusec  # noqa: E402
import fusec.dynamo  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(__file__)))
from torch_models import MODELS, check_against_eager  # noqa: E402

pytestmark = [pytest.mark.gpu, pytest.mark.usefixtures("fresh_dynamo")]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_model_matches_eager_on_cuda(name, dtype):
    check_against_eager(name, dtype, device="cuda", batch=37)
    s = fusec.stats()
    assert s["fused_regions"] >= 1 and s["fallback_regions"] == 0, s


@pytest.mark.parametrize("name", ["mlp_gelu_layernorm", "int_bool"])
def test_model_matches_eager_through_the_ptx_backend(name):
    check_against_eager(name, torch.float32, device="cuda", batch=20, backend="ptx")


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_fusec_matmul_with_fused_epilogues_on_cuda(dtype):
    check_against_eager("mlp_gelu_layernorm", dtype, device="cuda", batch=100,
                        matmul="fusec")


@pytest.mark.parametrize("backend", ["cuda", "ptx"])
def test_log1p_and_expm1_on_the_gpu_to_a_few_ulp(backend):
    import numpy as np
    rng = np.random.default_rng(5)
    values = np.concatenate([rng.uniform(-1e-3, 1e-3, 4000) * 10.0 ** rng.integers(-6, 0, 4000),
                             rng.uniform(-0.99, 80.0, 4000), [0.0, -0.0, np.inf, -np.inf]])
    # the reference takes the float32 inputs the GPU sees (expm1(66.5) moves 64 ulp when
    # its input rounds to float32)
    values = values.astype(np.float32).astype(np.float64)
    x = torch.tensor(values, dtype=torch.float32, device="cuda")
    f = torch.compile(lambda t: (torch.log1p(t), torch.expm1(t)),
                      backend=fusec.torch_backend(backend=backend))
    for got, name in zip(f(x), ("log1p", "expm1")):
        with np.errstate(all="ignore"):
            want = getattr(np, name)(values).astype(np.float32).astype(np.float64)
        g = got.double().cpu().numpy()
        same = (g == want) | (np.isnan(g) & np.isnan(want))
        spacing = np.spacing(np.abs(want).astype(np.float32)).astype(np.float64)
        with np.errstate(invalid="ignore"):
            err = np.where(same, 0.0, np.abs(g - want) / spacing)
        assert err.max() <= 4, (name, values[err.argmax()], g[err.argmax()], want[err.argmax()])
