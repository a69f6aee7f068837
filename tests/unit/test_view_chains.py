"""Chains of views of known layout run as one reinterpret of their root (fusec/dynamo/
aliases.py), outside regions and in a region's replay; views of the graph's inputs, of
results whose run-time layout is not their traced one, and of symbolic sizes stay views.
Values and strides are checked against eager."""
from __future__ import annotations

import os
import sys

import pytest

torch = pytest.importorskip("torch")

import fusec  # noqa: E402
import fusec.dynamo  # noqa: E402
from fusec.dynamo.aliases import REINTERPRET, Roots, collapse_views  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(__file__)))
from torch_models import check_against_eager  # noqa: E402

pytestmark = pytest.mark.usefixtures("fresh_dynamo")

REINTERPRET_CALL = "torch__C__dynamo_guards__reinterpret_tensor("


def compiled_outputs(fn, *args):
    got = torch.compile(fn, backend="fusec")(*args)
    want = fn(*args)
    return got, want


def assert_same_tensors(got, want):
    got = got if isinstance(got, tuple) else (got,)
    want = want if isinstance(want, tuple) else (want,)
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w)
        assert g.shape == w.shape and g.stride() == w.stride(), (g.stride(), w.stride())


def test_the_blocks_view_chains_become_reinterprets_and_match_eager():
    check_against_eager("transformer_block")       # forward and backward, float64 refs
    graphs = fusec.dynamo.graphs()
    assert any(REINTERPRET_CALL in g.code for g in graphs)
    forward = graphs[0]
    before, after = forward.view_calls
    assert after < before, forward.view_calls
    assert "views outside regions" in forward.text()


def test_a_split_permute_chain_of_a_matmul_is_one_reinterpret_per_use():
    def f(x, w):
        qkv = (x @ w).view(2, 12, 3, 4, 8)
        q, k, v = qkv.unbind(2)
        return (q.permute(0, 2, 1, 3).contiguous() * 2, k.transpose(1, 2)[:, 1:],
                v.reshape(24, 32)[3:9])
    x, w = torch.randn(24, 16), torch.randn(16, 96)
    got, want = compiled_outputs(f, x.view(2, 12, 16), w)
    assert_same_tensors(got, want)
    graph = fusec.dynamo.graphs()[-1]
    assert REINTERPRET_CALL in graph.code
    # the one view left is of the input; nothing of the unbind's chains is a view call
    assert "unbind" not in graph.code and graph.code.count("torch_Tensor_view(") == 1, \
        graph.code


def test_views_of_graph_inputs_stay_views():
    """The caller decides an input's strides: a view of one is an aten view."""
    def f(x):
        return torch.sin(x).sum(0), x.t()[1:].unsqueeze(0)
    x = torch.randn(8, 6)[:, ::2]                   # strided input
    got, want = compiled_outputs(f, x)
    assert_same_tensors(got, want)
    assert REINTERPRET_CALL not in fusec.dynamo.graphs()[-1].code


def test_a_kernel_result_whose_traced_layout_is_not_row_major_is_replayed_by_aten():
    """sin(x.t()) is column-major in eager; fusec's kernel writes it row-major, so its view
    is not reinterpreted from the traced strides."""
    def f(x):
        y = torch.sin(x.t())
        return y.view(-1, 2) if y.is_contiguous() else y.transpose(0, 1)
    x = torch.randn(6, 10)
    got = torch.compile(f, backend="fusec")(x)
    torch.testing.assert_close(got, f(x))
    for region in fusec.dynamo.graphs()[-1].regions:
        assert "reinterpret(" not in region.call_text, region.call_text


def test_region_replay_reinterprets_views_of_its_results():
    def f(x, b):
        y = torch.relu(x + b)
        return y.view(4, 3, 5).permute(2, 0, 1), y.view(-1)[7:20]
    x, b = torch.randn(12, 5), torch.randn(5)
    got, want = compiled_outputs(f, x, b)
    assert_same_tensors(got, want)
    region = fusec.dynamo.graphs()[-1].regions[0]
    run = region.call_text.split("def run")[1]
    calls = [line for line in run.splitlines() if line.startswith("    v")]
    assert len(calls) == 2 and all("= reinterpret(b0," in c for c in calls), run


def test_dynamic_sizes_keep_their_views():
    def f(x, w):
        return (x @ w).view(x.shape[0], 2, 8).transpose(1, 2) * 3
    w = torch.randn(16, 16)
    fn = torch.compile(f, backend="fusec", dynamic=True)
    for n in (5, 9):
        x = torch.randn(n, 16)
        torch.testing.assert_close(fn(x, w), f(x, w))
    assert all(REINTERPRET_CALL not in g.code for g in fusec.dynamo.graphs())


def test_collapse_leaves_a_graph_without_views_untouched():
    def f(x):
        return torch.exp(x) + 1
    gm = torch.fx.symbolic_trace(f)
    code = gm.code
    assert collapse_views(gm.graph, Roots()) == (0, 0)
    gm.recompile()
    assert gm.code == code
    assert REINTERPRET is not None


def test_permutes_of_permutes_fold_into_one_or_none():
    """W^T^T (a backward's weight) is the weight itself; two permutes compose into one;
    an identity chain that is a graph output stays a view (an alias, not the input)."""
    def f(x, w, y):
        a = torch.mm(torch.sin(x), w.t().t())
        b = y.permute(2, 0, 1).permute(0, 2, 1) * 2
        return a, b, w.t().t()
    x, w, y = torch.randn(5, 7), torch.randn(7, 3), torch.randn(4, 6, 8)
    got, want = compiled_outputs(f, x, w, y)
    torch.testing.assert_close(got, want)            # b's strides are fusec's row-major
    assert_same_tensors((got[0], got[2]), (want[0], want[2]))
    assert got[2] is not w and got[2].data_ptr() == w.data_ptr()
    code = fusec.dynamo.graphs()[-1].code
    # the mm reads w itself, the region reads y's chain; the output's alias is one permute
    assert code.count("permute(") == 1 and "permute(arg1_1, [0, 1])" in code, code


def test_fold_permute_chains_composes_the_dims():
    from fusec.dynamo.aliases import fold_permute_chains

    def f(x):
        return x.permute(1, 2, 0).permute(2, 0, 1).permute(0, 2, 1) + 1
    gm = torch.fx.symbolic_trace(f)
    for n in gm.graph.nodes:                  # as aten ops, the form the backend sees
        if n.op == "call_method" and n.target == "permute":
            n.op, n.target = "call_function", torch.ops.aten.permute.default
            n.args = (n.args[0], list(n.args[1:]))
    assert fold_permute_chains(gm.graph) == 2
    gm.recompile()
    x = torch.randn(2, 3, 4)
    torch.testing.assert_close(gm(x), f(x))
    assert gm.code.count("permute.default(") == 1, gm.code


def test_region_inputs_of_known_layout_skip_the_layout_checks_and_stay_right():
    """A region reading a matmul's result (row-major, made in the graph) and a graph input
    (the caller's strides): only the first is of known layout for its kernel's native
    call; new inputs on every call give eager's values."""
    def f(x, w, b):
        return torch.relu(x @ w + b) * 2
    w = torch.randn(16, 8)
    fn = torch.compile(f, backend="fusec")
    for _ in range(3):
        x, b = torch.randn(5, 16), torch.randn(8)
        torch.testing.assert_close(fn(x, w, b), f(x, w, b))
    (region,) = fusec.dynamo.graphs()[-1].regions
    mm_result = next(k for k, i in enumerate(region.param_positions)
                     if region.placeholders[i].name.startswith("mm"))
    assert region.kernel.known_layouts == {mm_result}, (region.kernel.known_layouts,
                                                       region.placeholders)
