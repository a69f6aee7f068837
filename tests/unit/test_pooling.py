"""Pooling in torch.compile graphs: max and average pools whose windows tile the input
(stride = kernel, no padding, dilation or ceil_mode) are lowered, forward (a max pool's
values and the flat index of each window's first maximum, a NaN winning) and backward
(each element takes its window's gradient, where the index names it for a max pool),
fused with the ops around them; other pools stay aten; global average pooling is a
mean."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import fusec
import fusec.dynamo


def _compiled_matches_eager(fn, x, grad=True):
    xc = x.detach().clone().requires_grad_(grad)
    xe = x.detach().clone().requires_grad_(grad)
    got, want = torch.compile(fn, backend="fusec")(xc), fn(xe)
    torch.testing.assert_close(got, want, rtol=0, atol=0, equal_nan=True)
    if grad:
        g = torch.randn_like(want)
        got.backward(g)
        want.backward(g)
        torch.testing.assert_close(xc.grad, xe.grad, rtol=0, atol=0)


@pytest.mark.parametrize("shape, k", [((2, 3, 9, 11), 2), ((2, 3, 8, 10), 2), ((3, 12, 9), 3),
                                      ((1, 2, 5, 4), (2, 1)),
                                      ((8, 8, 9, 9), 2)])    # equal sizes: distinct axes
def test_tiling_max_pools_fuse_forward_and_backward(fresh_dynamo, shape, k):
    torch.manual_seed(sum(shape))
    x = torch.randn(*shape)

    def fn(t):
        return F.max_pool2d(torch.relu(t) * 0.5 + t, k) * 2
    _compiled_matches_eager(fn, x)
    forward, backward = fusec.dynamo.graphs()[:2]
    assert not forward.aten_ops and not backward.aten_ops, (forward.aten_ops, backward.aten_ops)
    # the forward: the pool (values and offsets) and the relu's mask over the whole input,
    # two launches (one over windows and pixels together would run the mask per window)
    assert fusec.stats()["launches_per_call"] == {forward.label: 2, backward.label: 1}


def test_indices_follow_aten_ties_and_nans(fresh_dynamo):
    """Equal values: the first of the window; a NaN: the last NaN of the window."""
    x = torch.zeros(1, 1, 4, 4)
    x[0, 0, 0, 3] = x[0, 0, 1, 2] = float("nan")
    x[0, 0, 2:, :2] = 5.0

    def fn(t):
        return F.max_pool2d(t, 2, return_indices=True)
    got = torch.compile(fn, backend="fusec")(x)
    want = fn(x)
    torch.testing.assert_close(got[0], want[0], rtol=0, atol=0, equal_nan=True)
    assert torch.equal(got[1], want[1])
    assert not fusec.dynamo.graphs()[0].aten_ops


@pytest.mark.parametrize("kwargs", [dict(kernel_size=3, stride=2), dict(kernel_size=2, padding=1),
                                    dict(kernel_size=2, ceil_mode=True),
                                    dict(kernel_size=2, dilation=2)])
def test_other_pools_stay_aten_and_match(fresh_dynamo, kwargs):
    torch.manual_seed(1)
    x = torch.randn(2, 3, 9, 9)
    _compiled_matches_eager(lambda t: F.max_pool2d(torch.relu(t) * 3, **kwargs), x)
    reasons = dict(fusec.dynamo.graphs()[0].aten_ops)
    assert any("max_pool2d" in op and "windows that tile the input" in why
               for op, why in reasons.items()), reasons


def test_bf16_pool_tail(fresh_dynamo):
    """Ops exact in bf16 before the pool: a region compares the float32 values it computes,
    which eager rounds first (a rounding can tie two elements of a window and move the
    gradient to the other one)."""
    torch.manual_seed(2)
    x = torch.randn(2, 4, 10, 12, dtype=torch.bfloat16)
    _compiled_matches_eager(lambda t: F.max_pool2d(torch.relu(t) * 2, 2), x)


@pytest.mark.parametrize("shape, k", [((2, 3, 9, 11), 2), ((8, 8, 6, 6), 3), ((3, 12, 9), (2, 3))])
def test_tiling_avg_pools_fuse_forward_and_backward(fresh_dynamo, shape, k):
    torch.manual_seed(sum(shape))
    x = torch.randn(*shape, dtype=torch.float64)

    def fn(t):
        return F.avg_pool2d(torch.relu(t) + t, k) * 2
    xc, xe = x.clone().requires_grad_(), x.clone().requires_grad_()
    got, want = torch.compile(fn, backend="fusec")(xc), fn(xe)
    torch.testing.assert_close(got, want)
    g = torch.randn_like(want)
    got.backward(g)
    want.backward(g)
    torch.testing.assert_close(xc.grad, xe.grad)
    forward, backward = fusec.dynamo.graphs()[:2]
    assert not forward.aten_ops and not backward.aten_ops, (forward.aten_ops, backward.aten_ops)
    # the pool and the relu's mask over the whole input: two launches, as for max pools
    assert fusec.stats()["launches_per_call"] == {forward.label: 2, backward.label: 1}


def test_global_average_pooling_is_a_mean(fresh_dynamo):
    """adaptive_avg_pool2d to 1 x 1 (ResNet's head) is a mean over H and W; to another size
    it stays aten."""
    torch.manual_seed(3)
    x = torch.randn(4, 6, 7, 5, dtype=torch.float64)
    for size, lowered in ((1, True), ((2, 1), False)):
        torch._dynamo.reset()
        fusec.dynamo.reset()

        def fn(t):
            return F.adaptive_avg_pool2d(t * 3, size).relu()
        xc, xe = x.clone().requires_grad_(), x.clone().requires_grad_()
        got, want = torch.compile(fn, backend="fusec")(xc), fn(xe)
        torch.testing.assert_close(got, want)
        got.sum().backward()
        want.sum().backward()
        torch.testing.assert_close(xc.grad, xe.grad)
        aten = [op for g in fusec.dynamo.graphs() for op, _ in g.aten_ops]
        assert lowered == (not any("adaptive" in op for op in aten)), aten



def _saved_for_backward(fn, x):
    """(dtype, shape) of each tensor the compiled forward saves for the backward."""
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(
            lambda t: saved.append((t.dtype, tuple(t.shape))) or t, lambda t: t):
        out = torch.compile(fn, backend="fusec")(x)
    out.sum().backward()
    return saved


@pytest.mark.parametrize("shape, k", [((2, 3, 9, 11), 2), ((3, 12, 9), (2, 3))])
def test_a_max_pool_saves_int8_window_offsets_not_indices_or_its_input(fresh_dynamo, shape, k):
    """The backward takes each window's offset (a byte) and the input's height and width:
    neither int64 indices nor the pool's input are saved; the relu's mask is."""
    x = torch.randn(*shape, requires_grad=True)
    pooled = F.max_pool2d(x.detach(), k).shape
    saved = _saved_for_backward(lambda t: F.max_pool2d(torch.relu(t) * 0.5, k) * 2, x)
    assert sorted(saved, key=str) == sorted([(torch.int8, tuple(pooled)),
                                             (torch.bool, shape)], key=str), saved


def test_a_max_pool_whose_indices_are_returned_keeps_them(fresh_dynamo):
    torch.manual_seed(5)
    x = torch.randn(2, 3, 8, 6)

    def fn(t):
        values, indices = F.max_pool2d(t * 3, 2, return_indices=True)
        return values * indices
    _compiled_matches_eager(fn, x)


def test_symbolic_heights_keep_aten_indices(fresh_dynamo):
    torch.manual_seed(6)
    fn = torch.compile(lambda t: F.max_pool2d(t.relu() - t, 2), backend="fusec", dynamic=True)
    for shape in ((2, 3, 8, 10), (3, 2, 12, 6)):
        x = torch.randn(*shape)
        xc, xe = x.clone().requires_grad_(), x.clone().requires_grad_()
        got, want = fn(xc), F.max_pool2d(xe.relu() - xe, 2)
        torch.testing.assert_close(got, want, rtol=0, atol=0)
        g = torch.randn_like(want)
        got.backward(g)
        want.backward(g)
        torch.testing.assert_close(xc.grad, xe.grad, rtol=0, atol=0)


@pytest.mark.parametrize("shape, k", [((2, 3, 9, 11), (2, 2)), ((3, 12, 9), (2, 3)),
                                      ((1, 2, 5, 4), (2, 1))])
def test_the_offset_ops_run_eagerly_as_aten_would(shape, k):
    """Where no region takes them the offset ops run through aten: values, the gradient
    (ties: the first; NaNs: the last NaN of the window, as aten) match aten's pool."""
    from fusec.dynamo.pool_offsets import OFFSETS, OFFSETS_BACKWARD
    torch.manual_seed(7)
    x = torch.randint(-2, 3, shape).float()          # many ties
    x.view(-1)[::7] = float("nan")
    values, offsets = OFFSETS(x, list(k))
    want, indices = torch.ops.aten.max_pool2d_with_indices(x, list(k))
    torch.testing.assert_close(values, want, rtol=0, atol=0, equal_nan=True)
    assert offsets.dtype == torch.int8 and int(offsets.min()) >= 0
    assert int(offsets.max()) < k[0] * k[1]
    g = torch.randn_like(want)
    got = OFFSETS_BACKWARD(g, offsets, list(k), list(shape[-2:]))
    torch.testing.assert_close(got, torch.ops.aten.max_pool2d_with_indices_backward(
        g, x, list(k), list(k), [0, 0], [1, 1], False, indices), rtol=0, atol=0)
