"""Views around reductions in torch.compile graphs: a reduction over a view's merged dims
becomes one over the dims it merged (fusec/dynamo/merged_reductions.py) and a squeeze of a
keepdim reduction's size-1 dims is lowered, so both fuse with the ops around them."""
from __future__ import annotations

import pytest
import torch

import fusec.dynamo
from fusec.dynamo.merged_reductions import merged_groups


@pytest.mark.parametrize("source, merged, groups", [
    ((4, 16, 128, 128), (4, 16, 16384), [[0], [1], [2, 3]]),
    ((4, 16, 128, 128), (64, 16384), [[0, 1], [2, 3]]),
    ((4, 16, 1), (4, 16), [[0], [1, 2]]),
    ((4, 1, 16), (4, 16), [[0], [1, 2]]),
    ((2, 3, 4), (24,), [[0, 1, 2]]),
])
def test_merged_groups(source, merged, groups):
    assert merged_groups(source, merged) == groups


@pytest.mark.parametrize("source, merged", [
    ((64,), (8, 8)),              # a split
    ((4, 6), (8, 3)),             # neither a merge nor a split of runs
    ((4, 0, 3), (0, 3)),          # empty: any grouping would do
])
def test_views_that_do_not_merge_runs_have_no_groups(source, merged):
    assert merged_groups(source, merged) is None


def test_a_sum_over_merged_dims_fuses_with_the_ops_before_the_view():
    """x * y viewed as [N, C, H*W] and summed (and maxed) over H*W: one region computes the
    product and both reductions; nothing is left to aten (the views are gone)."""
    x, y = torch.randn(3, 5, 6, 7), torch.randn(3, 5, 6, 7)

    def fn(a, b):
        p = a * b
        return p.view(3, 5, 42).sum(2), p.view(3, 5, 42).amax(-1)
    got = torch.compile(fn, backend="fusec")(x, y)
    for g, w in zip(got, fn(x, y)):
        torch.testing.assert_close(g, w)
    report = fusec.dynamo.graphs()[-1]
    assert len(report.regions) == 1 and not report.aten_ops, report.text()


@pytest.mark.parametrize("reduction", [
    lambda e: e.view(4, 60).sum(1, keepdim=True),     # keepdim: another shape
    lambda e: e.view(2, 2, 6, 10).sum(3),              # a split, not a merge
    lambda e: e.reshape(24, 10).mean(1),               # the kept dim merges two
])
def test_views_not_rewritten_keep_their_view(reduction):
    x = torch.randn(4, 6, 10)

    def fn(a):
        return reduction(a.exp())
    torch.testing.assert_close(torch.compile(fn, backend="fusec")(x), fn(x))
    report = fusec.dynamo.graphs()[-1]
    assert any(" = aten.view" in op or " = aten.reshape" in op or "_unsafe_view" in op
               for op, _ in report.aten_ops), report.text()


def test_a_squeeze_after_a_keepdim_reduction_stays_in_the_region():
    """BatchNorm's running statistics squeeze var_mean's keepdim results: lowered as a
    squeeze (free after the reduction), the updates join the statistics' region."""
    x, running = torch.randn(64, 16), torch.randn(16)

    def fn(a, r):
        var, mean = torch.var_mean(a, [0], correction=0, keepdim=True)
        return mean.squeeze(0) * 0.1 + r * 0.9, var.squeeze([0]) * 2.0
    for g, w in zip(torch.compile(fn, backend="fusec")(x, running), fn(x, running)):
        torch.testing.assert_close(g, w)
    report = fusec.dynamo.graphs()[-1]
    assert len(report.regions) == 1 and not report.aten_ops, report.text()


def test_a_squeeze_of_a_dim_not_of_size_1_is_left_to_aten():
    """aten's squeeze skips dims of other sizes (a no-op there); fusec leaves it to aten."""
    x = torch.randn(4, 6)

    def fn(a):
        return (a.exp().squeeze(1) + 1).sum(0)
    torch.testing.assert_close(torch.compile(fn, backend="fusec")(x), fn(x))
    report = fusec.dynamo.graphs()[-1]
    assert any("squeeze" in op for op, _ in report.aten_ops), report.text()
