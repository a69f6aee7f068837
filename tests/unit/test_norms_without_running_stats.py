"""Batch statistics without running statistics (aten._native_batch_norm_legit: InstanceNorm,
BatchNorm with track_running_stats=False) are decomposed and fused like BatchNorm's."""
from __future__ import annotations

import pytest
import torch

import fusec
import fusec.dynamo


@pytest.mark.parametrize("make", [lambda: torch.nn.InstanceNorm2d(6, affine=True),
                                  lambda: torch.nn.BatchNorm2d(6, track_running_stats=False)])
def test_forward_and_backward_match_eager(fresh_dynamo, make):
    torch.manual_seed(0)
    model = make().double()
    x = torch.randn(3, 6, 7, 5, dtype=torch.float64, requires_grad=True)
    xe = x.detach().clone().requires_grad_()
    got = torch.compile(model, backend=fusec.torch_backend(strict=True))(x)
    want = model(xe)
    torch.testing.assert_close(got, want)
    got.sum().backward()
    want.sum().backward()
    torch.testing.assert_close(x.grad, xe.grad)
    left = [op for g in fusec.dynamo.graphs() for op, _ in g.aten_ops]
    assert not any("batch_norm" in op for op in left), left
