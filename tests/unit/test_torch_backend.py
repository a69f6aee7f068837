"""torch.compile(backend="fusec") on the CPU: the test models forward and backward against
eager (float32 and bfloat16, float64 references), fallback around unsupported ops, dynamic
batch sizes without recompiles, the registration, options and the partition dump."""
from __future__ import annotations

import copy
import os
import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")

import fusec  # noqa: E402
import fusec.dynamo  # noqa: E402
from fusec.dynamo import rules  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(__file__)))
from torch_models import MODELS, check_against_eager  # noqa: E402

pytestmark = pytest.mark.usefixtures("fresh_dynamo")


@pytest.mark.parametrize("name", sorted(MODELS))
def test_model_matches_eager_float32(name):
    check_against_eager(name, torch.float32)
    s = fusec.stats()
    assert s["fused_regions"] >= 1 and s["fallback_regions"] == 0, s


@pytest.mark.parametrize("name", ["mlp_gelu_layernorm", "transformer_block", "int_bool",
                                  "groupnorm_silu", "embedding_gather"])
def test_model_matches_eager_bfloat16(name):
    check_against_eager(name, torch.bfloat16)


def test_group_norm_is_lowered_forward_and_backward():
    """native_group_norm and its backward decompose into pieces fusec lowers: no aten
    group norm is left in either graph."""
    check_against_eager("groupnorm_silu")
    for g in fusec.dynamo.graphs():
        assert not any("group_norm" in op for op, _ in g.aten_ops), g.text()
        assert g.regions, g.text()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_group_norm_whose_batch_groups_and_channels_are_equal_sizes(dtype):
    """4 images, 4 groups of 4 channels: the regions' dims of size 4 keep distinct axes (the
    statistics times the weight viewed [1, G, C, 1] ran as aten ops before)."""
    check_against_eager("groupnorm_silu", dtype, batch=4)
    assert fusec.stats()["fallback_regions"] == 0, fusec.stats()


def test_group_norm_over_more_than_a_tile_of_pixels_is_fused():
    """Groups of 2 channels x 96 x 96 pixels: the statistics walk the pixels (longer than
    one tile) in chunks inside a fused region instead of falling back to aten."""
    gn = torch.nn.GroupNorm(2, 4)
    with torch.no_grad():
        gn.weight.uniform_(0.5, 1.5)
        gn.bias.uniform_(-0.5, 0.5)
    x = (torch.randn(2, 4, 96, 96) * 3 + 1).requires_grad_()
    fn = torch.compile(lambda t: torch.nn.functional.silu(gn(t)), backend="fusec")
    got = fn(x)
    want = torch.nn.functional.silu(gn(x))
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    got.sum().backward()
    grads = x.grad.clone(), gn.weight.grad.clone()
    x.grad = gn.weight.grad = None
    want.sum().backward()
    torch.testing.assert_close(grads[0], x.grad, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(grads[1], gn.weight.grad, rtol=1e-4, atol=1e-4)
    assert fusec.stats()["fallback_regions"] == 0, [g.text() for g in fusec.dynamo.graphs()]


def test_scatters_with_accumulation_run_as_fusec_kernels():
    """Embedding's and gather's backwards (index_put with accumulate, scatter_add after the
    core aten decompositions) run as fusec kernels of atomic adds, not aten's."""
    check_against_eager("embedding_gather")
    backward = fusec.dynamo.graphs()[1]
    calls = " ".join(backward.library_calls)
    # embedding's gradient adds into the zeros the graph made for it (no copy)
    assert "index_put = fusec_add_rows_into_its_base" in calls and \
        "scatter_add = fusec_scatter_add_2d" in calls, backward.text()
    assert not any(op.split(" = ")[1].startswith(("aten.index_put", "aten.scatter_add"))
                   for op, _ in backward.aten_ops), backward.text()


def test_deterministic_algorithms_keep_the_scatters_on_aten():
    torch.use_deterministic_algorithms(True)
    try:
        check_against_eager("embedding_gather")
    finally:
        torch.use_deterministic_algorithms(False)
    backward = fusec.dynamo.graphs()[1]
    assert not backward.library_calls, backward.text()
    reasons = dict(backward.aten_ops)
    assert any(op.startswith("index_put") and "deterministic" in why
               for op, why in reasons.items()), backward.text()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("dim", [0, 1, -1])
def test_library_scatter_add_matches_aten(dim, dtype):
    """scatter_add on 2-D tensors along either dim, an index smaller than its source,
    duplicate targets; index_put with accumulate, negative indices counting from the end."""
    from fusec.dynamo import library
    torch.manual_seed(dim + 5)
    base = torch.randn(13, 21, dtype=dtype)
    kept = base.clone()
    shape, high = ((9, 17), 13) if dim == 0 else ((11, 15), 21)
    index = torch.randint(0, high, shape)
    src = torch.randn(12, 20, dtype=dtype)
    kernel = library._kernel(library._scatter_add_2d, None, True, False)
    got = library._scatter_add(kernel, False, base, dim, index, src)
    want = torch.ops.aten.scatter_add(base.double(), dim, index, src.double())
    assert got.dtype == dtype and got.shape == want.shape
    torch.testing.assert_close(got.double(), want, rtol=1e-2 if dtype == torch.bfloat16
                               else 1e-6, atol=2e-2 if dtype == torch.bfloat16 else 1e-6)
    rows = torch.randint(-13, 13, (40,))
    values = torch.randn(40, 21, dtype=dtype)
    kernel = library._kernel(library._add_rows, None, True, False)
    got = library._index_put(kernel, False, base.t().contiguous().t(), [rows], values, True)
    want = torch.ops.aten.index_put(base.double(), [rows], values.double(), True)
    torch.testing.assert_close(got.double(), want, rtol=1e-2 if dtype == torch.bfloat16
                               else 1e-6, atol=3e-2 if dtype == torch.bfloat16 else 1e-6)
    assert torch.equal(base, kept)           # not a fresh tensor: the op left it as it was


def test_library_scatters_edge_cases_match_eager():
    """A base that is also the values (never added into in place), zero-size rows."""
    def scatter_into_itself(idx):
        z = torch.full((64, 32), 1.0)
        return z.scatter_add(0, idx, z)

    def index_put_itself(rows):
        z = torch.full((64, 32), 1.0)
        return torch.index_put(z, (rows,), z, True)

    def zero_width(rows):
        return torch.index_put(torch.zeros(5, 0), [rows], torch.zeros(rows.shape[0], 0), True)
    for fn, arg in ((scatter_into_itself, torch.randint(0, 64, (64, 32))),
                    (index_put_itself, torch.randint(0, 64, (64,))),
                    (zero_width, torch.tensor([1, 2]))):
        got = torch.compile(fn, backend=fusec.torch_backend(strict=True))(arg)
        torch.testing.assert_close(got, fn(arg))
        calls = fusec.dynamo.graphs()[-1].library_calls
        assert calls, fn.__name__
        assert fn is zero_width or not any("into_its_base" in c for c in calls), calls


def test_fused_regions_launch_fewer_kernels_than_eager():
    check_against_eager("mlp_gelu_layernorm")
    for g in fusec.dynamo.graphs():
        eager = sum(len(r.source.nodes) for r in g.regions) + g.aten_launching
        assert g.launches_per_call < eager, g.text()
    # the forward's layernorm + gelu between the two linears is one launch
    forward = fusec.dynamo.graphs()[0]
    assert forward.regions[0].launches_per_call == 1, forward.text()


def test_views_outside_regions_run_as_tensor_methods():
    """view/permute/expand/transpose between the regions run through the Tensor methods
    (a third of torch.ops' dispatch cost), forward and backward, and the results still match
    eager."""
    check_against_eager("transformer_block")
    for g in fusec.dynamo.graphs():
        for op in ("view", "permute", "expand", "transpose", "_unsafe_view"):
            assert f"torch.ops.aten.{op}.default(" not in g.code, g.code
    assert any("torch_Tensor_view(" in g.code for g in fusec.dynamo.graphs())


def test_regions_and_matmuls_are_plain_calls_in_the_graph():
    """The compiled graph calls each region as a plain function (not through nn.Module's
    call) and the matmuls aten runs through their torch functions; results still match."""
    check_against_eager("transformer_block")
    for g in fusec.dynamo.graphs():
        assert "self._fusec_region" not in g.code, g.code
        for r in g.regions:
            assert f"{r.source.name}(" in g.code, g.code
        for op in ("mm", "bmm", "addmm"):
            assert f"torch.ops.aten.{op}.default(" not in g.code, g.code
    assert any("torch_mm(" in g.code or "torch.mm(" in g.code for g in fusec.dynamo.graphs())


def test_unsupported_ops_stay_aten_and_the_rest_fuses():
    check_against_eager("unsupported_ops")
    forward = fusec.dynamo.graphs()[0]
    reasons = dict(forward.aten_ops)
    assert any("sort" in op and "no fusec lowering" in why for op, why in reasons.items())
    assert not any("cumsum" in op for op in reasons)      # a fusec scan
    assert len(forward.regions) == 2          # before the sort (the cumsum in it) and after


def test_matmul_option_fuses_the_epilogue_into_a_fusec_matmul():
    check_against_eager("mlp_gelu_layernorm", matmul="fusec")
    forward = fusec.dynamo.graphs()[0]
    assert not any("addmm" in op for op, _ in forward.aten_ops), forward.text()


def test_matmul_option_runs_attention_bmms_as_fusec_matmuls():
    """matmul="fusec": the attention's bmms (q @ k^T, p @ v, forward and backward) are
    fusec batched matmuls; no bmm is left to aten."""
    check_against_eager("transformer_block", matmul="fusec")
    graphs = fusec.dynamo.graphs()
    assert len(graphs) == 2, [g.label for g in graphs]
    for g in graphs:
        assert not any("bmm" in op for op, _ in g.aten_ops), g.text()
        assert sum(r.source.text.count("fl.dot(") for r in g.regions) >= 2, g.text()


def test_integer_matmuls_accumulate_in_int64():
    """int bmm / mm under matmul="fusec" wrap as torch's do (not through float32)."""
    a = torch.randint(-1000, 1000, (2, 5, 7), generator=torch.Generator().manual_seed(3))
    b = torch.randint(-1000, 1000, (2, 7, 3), generator=torch.Generator().manual_seed(4))
    options = fusec.torch_backend(strict=True, matmul="fusec")
    got = torch.compile(lambda a, b: torch.bmm(a, b), backend=options)(a * 40000, b * 40000)
    assert torch.equal(got, torch.bmm(a * 40000, b * 40000))
    got = torch.compile(lambda a, b: torch.mm(a, b) + 1, backend=options)(a[0].int() * 9,
                                                                          b[0].int() * 9)
    assert torch.equal(got, torch.mm(a[0].int() * 9, b[0].int() * 9) + 1)


def test_baddbmm_with_beta_zero_ignores_its_input():
    def f(c, a, b):
        return torch.baddbmm(c, a, b, beta=0.0, alpha=0.5)
    a, b = torch.randn(3, 5, 7), torch.randn(3, 7, 4)
    c = torch.full((3, 5, 4), float("nan"))
    got = torch.compile(f, backend=fusec.torch_backend(strict=True, matmul="fusec"))(c, a, b)
    torch.testing.assert_close(got, 0.5 * torch.bmm(a, b), rtol=1e-5, atol=1e-5)
    got = torch.compile(lambda c, a, b: torch.baddbmm(c, a, b, beta=2.0),
                        backend=fusec.torch_backend(strict=True, matmul="fusec"))(
        torch.ones(3, 5, 4), a, b)
    torch.testing.assert_close(got, torch.bmm(a, b) + 2.0, rtol=1e-5, atol=1e-5)


def test_matmul_auto_measures_each_matmul_and_keeps_the_faster_side():
    """matmul="auto" (max-autotune's default): every matmul is measured for its sizes
    (fusec's product against the vendor's plus one epilogue pass, on the CPU here: MKL)
    and goes where the measurement says; the results match eager either way."""
    from fusec.dynamo import matmul_choice
    matmul_choice._CHOICES.clear()
    assert fusec.dynamo.Options(mode="max-autotune").matmul == "auto"
    assert fusec.dynamo.Options().matmul == "aten"
    check_against_eager("mlp_gelu_layernorm", matmul="auto")
    choices = [c for g in fusec.dynamo.graphs() for _, c in g.matmul_choices]
    assert len(choices) >= 2
    for g in fusec.dynamo.graphs():
        left = {op.split(" = ")[0] for op, _ in g.aten_ops}
        for name, c in g.matmul_choices:
            assert 0 < c.vendor_s < 1 and 0 < c.pass_s < 1 and 0 < c.fusec_s < 10, c
            assert (name in left) == (c.fusec_s >= c.vendor_s + c.pass_s), (name, c)


def test_matmul_auto_fuses_a_matmul_measured_faster_into_its_region(monkeypatch):
    from fusec.dynamo import matmul_choice
    matmul_choice._CHOICES.clear()
    monkeypatch.setattr(matmul_choice, "measure", lambda *a: (1e-6, 1e-3, 1e-4, ""))
    check_against_eager("mlp_gelu_layernorm", matmul="auto")
    forward = fusec.dynamo.graphs()[0]
    assert not any("addmm" in op for op, _ in forward.aten_ops), forward.text()
    assert "to fusec (fusec 1.0 us vs vendor 1000.0 us + epilogue pass 100.0 us)" in \
        forward.text()


def test_batch_size_change_does_not_recompile():
    factory, make, _ = MODELS["mlp_gelu_layernorm"]
    model = factory()
    compiled = torch.compile(model, backend=fusec.torch_backend(strict=True))
    x = make(48, torch.float32)[0].requires_grad_()
    torch._dynamo.mark_dynamic(x, 0)
    compiled(x).sum().backward()
    before = fusec.stats()
    # the same specialization keys: multiples of 16 in one power-of-two bucket (the
    # backward's bias gradients reduce over the batch)
    for batch in (64, 48):
        x = make(batch, torch.float32)[0].requires_grad_()
        y = compiled(x)
        y.sum().backward()
        torch.testing.assert_close(y, model(x), rtol=1e-5, atol=1e-5)
    after = fusec.stats()
    assert after["graphs_compiled"] == before["graphs_compiled"], (before, after)
    assert after["kernel_specializations"] == before["kernel_specializations"], (before, after)
    x = make(7, torch.float32)[0].requires_grad_()   # a new key: fusec kernels only
    torch.testing.assert_close(compiled(x), model(x), rtol=1e-5, atol=1e-5)
    assert fusec.stats()["kernel_specializations"] > before["kernel_specializations"]
    assert fusec.stats()["graphs_compiled"] == before["graphs_compiled"]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.int64, torch.bool])
@pytest.mark.parametrize("fn", [lambda t: t.clone(), lambda t: t.repeat(()) if t.dim() == 0
                                else t.repeat(*([1] * t.dim()))])
def test_a_region_returning_its_input_unchanged_returns_a_new_tensor(fn, dtype):
    """clone(x) (and an identity repeat) is a fresh tensor in eager: the compiled region's
    result must not share memory with its input, whose later mutation would leak into it."""
    for shape in ((4, 5), ()):
        torch._dynamo.reset()
        x = (torch.randn(shape) * 3).to(dtype)
        y = torch.compile(fn, backend="fusec")(x)
        assert y.data_ptr() != x.data_ptr()
        assert torch.equal(y, fn(x))
        before = y.clone()
        x.zero_() if dtype is not torch.bool else x.logical_not_()
        assert torch.equal(y, before)


def test_regions_of_a_static_graph_are_specialized_to_its_shapes():
    """A graph traced for one shape (Dynamo guards every call to it) gets kernels
    specialized to the exact sizes; a graph with a dynamic dim keeps symbolic ones."""
    factory, make, _ = MODELS["mlp_gelu_layernorm"]
    model = factory()
    x = make(48, torch.float32)[0]
    torch.testing.assert_close(torch.compile(model, backend="fusec")(x), model(x),
                               rtol=1e-5, atol=1e-5)
    regions = [r for g in fusec.dynamo.graphs() for r in g.regions]
    assert regions and all(r.kernel.static_shapes for r in regions)
    torch._dynamo.reset()
    fusec.dynamo.reset()
    x = make(48, torch.float32)[0]
    torch._dynamo.mark_dynamic(x, 0)
    torch.testing.assert_close(torch.compile(model, backend="fusec")(x), model(x),
                               rtol=1e-5, atol=1e-5)
    regions = [r for g in fusec.dynamo.graphs() for r in g.regions]
    assert regions and not any(r.kernel.static_shapes for r in regions)


def test_a_region_fusec_cannot_compile_falls_back_to_aten(monkeypatch):
    monkeypatch.setitem(rules.RULES, torch.ops.aten.tanh, lambda e, x: f"fl.no_such_op({x})")
    model = MODELS["batchnorm_train"][0]()
    eager = copy.deepcopy(model)
    x = torch.randn(8, 16)
    with pytest.warns(UserWarning, match="runs as aten ops"):
        y = torch.compile(model, backend="fusec")(x)
    torch.testing.assert_close(y, eager(x), rtol=1e-5, atol=1e-5)
    assert fusec.stats()["fallback_regions"] >= 1
    torch._dynamo.reset()
    with pytest.raises(fusec.CompilationError, match="no_such_op"):
        torch.compile(model, backend=fusec.torch_backend(strict=True))(x)


def test_dump_prints_the_partition(monkeypatch, capsys):
    monkeypatch.setenv("FUSEC_DUMP", "graph")
    model = MODELS["unsupported_ops"][0]()
    with torch.no_grad():
        torch.compile(model, backend="fusec")(torch.randn(4, 13))
    err = capsys.readouterr().err
    assert "fusec graph" in err and "region fusec_" in err and "def fusec_" in err
    assert "no fusec lowering for sort" in err


@pytest.mark.parametrize("options, message", [
    ({"mode": "fastest"}, "mode must be one of"), ({"matmul": "cublas"}, "matmul must be"),
    ({"backend": "metal"}, "unknown backend"), ({"strict": 1}, "strict must be True")])
def test_bad_options_are_named(options, message):
    with pytest.raises((ValueError, TypeError), match=message):
        fusec.torch_backend(**options)


def test_the_backend_is_registered_by_name_without_importing_fusec():
    code = ("import torch\n"
            "assert 'fusec' in torch._dynamo.list_backends()\n"
            "f = torch.compile(lambda x: torch.relu(x * 2) + 1, backend='fusec')\n"
            "x = torch.randn(5, 3)\n"
            "assert torch.equal(f(x), torch.relu(x * 2) + 1)\n"
            "import fusec\n"
            "assert fusec.stats()['fused_regions'] == 1, fusec.stats()\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]


def test_backward_column_sums_join_the_row_pass_region():
    """The weight permutes for the backward's matmuls compute nothing in a region: they stay
    aten's, so the layernorm backward's row pass and the weight/bias gradients' column sums
    (over dim 0) are one region, where the fuse pass recomputes the row values the sums need
    instead of writing float32 buffers between two regions."""
    check_against_eager("mlp_gelu_layernorm", torch.bfloat16)
    backward = next(g for g in fusec.dynamo.graphs() if "backward" in g.label)
    def sums_over(region, dim):
        return [n for n in region.source.nodes if n.target is torch.ops.aten.sum.dim_IntList
                and list(n.args[1]) == [dim]]
    joint = [r for r in backward.regions if sums_over(r, 0) and sums_over(r, 1)]
    assert joint, backward.text()
    for name, why in backward.aten_ops:
        if "permute" in name:
            assert why == "a view: aten runs it (no copy)", (name, why)
