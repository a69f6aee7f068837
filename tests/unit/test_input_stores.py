"""Mutated inputs under torch.compile(backend="fusec"): AOT autograd keeps their write-back
in the graph (copy_ into the input), and a fused region stores the new value into the
input's memory itself -- BatchNorm's running statistics, a buffer updated in place -- with
no copy after the graph; a copy_ whose input an op outside the region may read later stays
aten's, at the graph's end."""
from __future__ import annotations

import os
import sys

import pytest

torch = pytest.importorskip("torch")

import fusec  # noqa: E402
import fusec.dynamo  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(__file__)))
from torch_models import check_against_eager  # noqa: E402

pytestmark = pytest.mark.usefixtures("fresh_dynamo")


def _copies_left_to_aten():
    return [op for g in fusec.dynamo.graphs() for op, _ in g.aten_ops if "copy_" in op]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_batch_norm_regions_store_the_running_statistics(dtype):
    """check_against_eager compares the buffers too (running mean and var, batches seen)."""
    check_against_eager("batchnorm_train", dtype)
    forward = fusec.dynamo.graphs()[0]
    assert not _copies_left_to_aten(), forward.text()
    stores = [line for r in forward.regions for line in r.source.text.splitlines()
              if "aten.copy_.default" in line]
    assert len(stores) == 3 and all("[:] = " in line for line in stores), forward.text()
    assert fusec.stats()["fallback_regions"] == 0


def test_a_buffer_updated_in_place_is_stored_by_the_region():
    check_against_eager("inplace")
    graph = fusec.dynamo.graphs()[0]
    assert not _copies_left_to_aten() and graph.launches_per_call == 1, graph.text()


def test_a_store_into_an_input_aten_reads_later_stays_aten():
    """sort (aten) reads the buffer's old value; the region updating the buffer does not
    depend on the sort, so it could run first: its copy_ stays aten's."""
    def fn(x, buf):
        old = torch.sort(buf).values
        buf.mul_(2).add_(1)
        return x * 3, old

    x, buf = torch.randn(5, 7), torch.randn(7)
    want_buf = buf.clone()
    want = fn(x, want_buf)
    got = torch.compile(fn, backend="fusec")(x, buf)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=0, atol=0)
    torch.testing.assert_close(buf, want_buf, rtol=0, atol=0)
    reasons = dict(op_why for g in fusec.dynamo.graphs() for op_why in g.aten_ops)
    assert any("copy_" in op and "read outside the region" in why
               for op, why in reasons.items()), reasons


def test_a_store_after_an_aten_read_the_region_depends_on_is_the_regions():
    """The region reads the sort's result, so it runs after the sort: its store is safe."""
    def fn(x, buf):
        old = torch.sort(buf).values
        buf.copy_(old * 2 + x.sum(0))
        return buf * 1

    x, buf = torch.randn(5, 7), torch.randn(7)
    want_buf = buf.clone()
    want = fn(x, want_buf)
    got = torch.compile(fn, backend="fusec")(x, buf)
    torch.testing.assert_close(got, want)               # sums in another order
    torch.testing.assert_close(buf, want_buf)
    assert not _copies_left_to_aten(), [g.text() for g in fusec.dynamo.graphs()]


def test_a_broadcast_copy_into_an_input_stays_aten():
    def fn(buf, row):
        buf.copy_(row * 2)
        return buf + 1

    buf, row = torch.randn(4, 6), torch.randn(6)
    want_buf = buf.clone()
    want = fn(want_buf, row)
    got = torch.compile(fn, backend="fusec")(buf, row)
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    torch.testing.assert_close(buf, want_buf, rtol=0, atol=0)
