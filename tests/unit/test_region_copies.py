"""Clones to a row-major layout are copies a fused region computes (a fusec copy kernel reads
the permuted or expanded view), not views aten replays; a clone keeping another layout stays
aten's. torch.cat is lowered too (each operand read where its part lies). Values, shapes and strides are checked against eager, and a copy never shares memory
with what it copies."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

import fusec  # noqa: E402
import fusec.dynamo  # noqa: E402

pytestmark = pytest.mark.usefixtures("fresh_dynamo")


def run_both(fn, *args):
    got = torch.compile(fn, backend="fusec")(*args)
    want = fn(*args)
    got = got if isinstance(got, tuple) else (got,)
    want = want if isinstance(want, tuple) else (want,)
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w)
        assert g.shape == w.shape and g.stride() == w.stride(), (g.stride(), w.stride())
    return got


def region_ops(graph) -> list:
    return [[n.name for n in r.source.nodes] for r in graph.regions]


def test_head_split_clone_is_a_fused_copy():
    x = torch.randn(3, 10, 4 * 6)

    def heads(x):         # the attention block's head split, as bmm's operand
        return x.view(3, 10, 4, 6).transpose(1, 2).contiguous()

    (y,) = run_both(heads, x)
    (graph,) = fusec.dynamo.graphs()
    assert any("clone" in name for ops in region_ops(graph) for name in ops), graph.text()
    assert graph.aten_launching == 0, graph.text()
    assert y.data_ptr() != x.data_ptr()


def test_transposed_and_expanded_copies_in_one_region():
    x = torch.randn(2, 7, 5)
    b = torch.randn(1, 5)

    def f(x, b):
        return x.transpose(1, 2).contiguous(), b.expand(9, 5).contiguous() * 1.0

    run_both(f, x, b)


def test_clone_keeping_a_permuted_layout_stays_aten():
    x = torch.randn(4, 6, 5)

    def f(x):
        return x.permute(2, 0, 1).clone()       # preserve_format: eager keeps the strides

    (y,) = run_both(f, x)
    assert y.stride() == x.permute(2, 0, 1).stride()
    (graph,) = fusec.dynamo.graphs()
    assert not graph.regions, graph.text()
    assert graph.aten_launching == 1, graph.text()


def test_a_value_and_its_clone_are_separate_tensors():
    x = torch.randn(5, 8)

    def f(x):
        y = torch.relu(x) * 2
        return y, y.clone()

    y, z = run_both(f, x)
    assert y.data_ptr() != z.data_ptr()
    z.add_(1)                                   # writing the copy leaves the value alone
    torch.testing.assert_close(y, torch.relu(x) * 2)


def test_clone_copies_train_with_matching_gradients():
    w = torch.randn(4 * 3, 4 * 3, requires_grad=True)
    x = torch.randn(2, 5, 4 * 3, requires_grad=True)

    def f(x, w):
        h = (x @ w).view(2, 5, 4, 3).transpose(1, 2).contiguous()
        return (h * h).sum()

    want = f(x, w)
    gx, gw = torch.autograd.grad(want, (x, w))
    got = torch.compile(f, backend="fusec")(x, w)
    cx, cw = torch.autograd.grad(got, (x, w))
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(cx, gx)
    torch.testing.assert_close(cw, gw)


def test_rotary_embedding_is_one_launch_with_cat_in_the_region():
    """rotate_half (torch.cat of the negated upper half and the lower half) fuses with the
    rotary embedding's products: the halves are read where they lie, the negation computed
    at the concat's indices."""
    x = torch.randn(2, 3, 5, 8)
    cos, sin = torch.randn(5, 8), torch.randn(5, 8)

    def rope(x, cos, sin):
        h = x.shape[-1] // 2
        return x * cos + torch.cat((-x[..., h:], x[..., :h]), dim=-1) * sin

    run_both(rope, x, cos, sin)
    (graph,) = fusec.dynamo.graphs()
    assert [r.launches_per_call for r in graph.regions] == [1], graph.text()
    assert not any("cat" in op for op, _ in graph.aten_ops), graph.text()


def test_cat_of_computed_values_in_bfloat16_trains():
    a = torch.randn(4, 6, dtype=torch.bfloat16, requires_grad=True)
    b = torch.randn(4, 3, dtype=torch.bfloat16, requires_grad=True)

    def f(a, b):
        return torch.cat([torch.relu(a) * 2, b.sigmoid(), a[:, :2]], dim=1).float().sum(1)

    want = f(a, b)
    ga, gb = torch.autograd.grad(want.sum(), (a, b))
    got = torch.compile(f, backend="fusec")(a, b)
    ca, cb = torch.autograd.grad(got.sum(), (a, b))
    for g, w in ((got, want), (ca, ga), (cb, gb)):     # float32 inside, rounded at stores
        torch.testing.assert_close(g, w, rtol=2e-2, atol=2e-2)
    assert fusec.stats()["fallback_regions"] == 0
