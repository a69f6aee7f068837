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
