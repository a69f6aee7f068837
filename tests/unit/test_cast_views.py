"""Views moved to the narrow side of dtype casts (fusec/dynamo/cast_views.py): the cast
fuses into the region beside it instead of running as a launch of its own."""
from __future__ import annotations

import torch

import fusec
import fusec.dynamo


def _regions_and_launches(fn, *args):
    got = torch.compile(fn, backend=fusec.torch_backend(strict=True))(*args)
    want = fn(*args)
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    graph = fusec.dynamo.graphs()[0]
    return graph, fusec.stats()["launches_per_call"][graph.label]


def test_a_widened_tensor_viewed_is_cast_in_the_region_reading_it(fresh_dynamo):
    """x.float() viewed in groups (GroupNorm's view) and summed: one launch reading bf16 x
    (no float32 copy written)."""
    x = torch.randn(6, 8, 5, dtype=torch.bfloat16)
    graph, launches = _regions_and_launches(
        lambda t: t.float().view(6, 2, 4, 5).sum((2, 3)) * 2, x)
    assert launches == 1, graph.text()
    assert len(graph.regions) == 1


def test_a_viewed_result_rounded_is_rounded_in_the_region_computing_it(fresh_dynamo):
    y = torch.randn(4, 6, 7)
    graph, launches = _regions_and_launches(
        lambda t: (t * 3).sum(0).view(42).to(torch.bfloat16), y)
    assert launches == 1, graph.text()


def test_a_cast_of_a_transposed_tensor_keeps_its_view(fresh_dynamo):
    """The cast's operand is not row-major: the view stays where it is, still right."""
    x = torch.randn(5, 9, dtype=torch.bfloat16)
    _regions_and_launches(lambda t: t.t().float().reshape(45) * 2 + 1, x)


def test_group_norm_of_bf16_writes_no_float32_copy(fresh_dynamo):
    """GroupNorm's statistics read the bf16 input through a view: the forward is two
    launches (statistics, normalization), not three with a float32 copy of the input."""
    torch.manual_seed(0)
    gn = torch.nn.GroupNorm(4, 16).to(torch.bfloat16)
    x = torch.randn(3, 16, 9, 11, dtype=torch.bfloat16)
    got = torch.compile(gn, backend=fusec.torch_backend(strict=True))(x)
    torch.testing.assert_close(got, gn(x), rtol=2e-2, atol=2e-2)
    forward = fusec.dynamo.graphs()[0]
    assert fusec.stats()["launches_per_call"][forward.label] == 2, forward.text()


def test_chains_of_views_and_views_with_other_readers(fresh_dynamo):
    """x.float() viewed twice, and a view read both rounded and as it is: every view moves
    to the narrow side, the values stay eager's."""
    x = torch.randn(4, 6, 10, dtype=torch.bfloat16)

    def fn(t):
        wide = t.float().view(4, 60).view(4, 3, 20)
        y = (wide * 3).sum(2)
        v = y.view(12)
        return v.to(torch.bfloat16), v * 2, wide.amax(1)
    got = torch.compile(fn, backend=fusec.torch_backend(strict=True))(x)
    for g, w in zip(got, fn(x)):
        assert g.dtype == w.dtype
        torch.testing.assert_close(g, w, rtol=0, atol=0)
