"""Slice assignments in torch.compile graphs (functionalized into aten.copy and
aten.slice_scatter) are computed in the fused region around them."""
from __future__ import annotations

import torch

import fusec
import fusec.dynamo


def test_slice_assignments_fuse_as_copies_and_slice_scatters(fresh_dynamo):
    """z[:, 1:7:2] = y and w[-3:] = 5 (functionalized: copy + slice_scatter) are computed in
    the region around them; aten keeps only the slice views (no copy: a region reads
    them)."""
    torch.manual_seed(4)
    x, y = torch.randn(9, 10), torch.randn(9, 3)

    def fn(a, b):
        z = a * 2
        z[:, 1:7:2] = b.sin()
        w = a.clone()
        w[-3:] = 5.0
        return z + 1, w
    got, want = torch.compile(fn, backend="fusec")(x, y), fn(x, y)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=0, atol=0)
    left = [op for op, _ in fusec.dynamo.graphs()[0].aten_ops]
    assert all("aten.slice.Tensor" in op for op in left), left


def test_slice_scatter_along_an_outer_dim_with_a_step(fresh_dynamo):
    torch.manual_seed(5)
    x, y = torch.randn(3, 11, 4), torch.randn(3, 5, 4)

    def fn(a, b):
        return torch.slice_scatter(a.relu(), b * 3, dim=1, start=-9, end=None, step=2)
    got, want = torch.compile(fn, backend="fusec")(x, y), fn(x, y)
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    assert not fusec.dynamo.graphs()[0].aten_ops
