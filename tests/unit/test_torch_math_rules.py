"""aten ops lowered as compositions (fusec/dynamo/rules.py): constructors as fl.full; log1p
and expm1 through the rounding-cancelling identities, checked against float64 numpy to a few
ulp on values where the naive log(1 + x) and exp(x) - 1 lose every digit, and at the special
values (signed zeros, infinities, NaN, the poles), forward and backward."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import fusec  # noqa: E402
import fusec.dynamo  # noqa: E402

pytestmark = pytest.mark.usefixtures("fresh_dynamo")

SPECIAL = [0.0, -0.0, 1e-30, -1e-30, 1e-10, 1e-7, -1e-7, 1e-5, 3e-3, -0.3, 0.5, 1.0, -1.0,
           -0.999, 5.0, 20.0, 88.0, 89.0, 100.0, -100.0, float("inf"), -float("inf"),
           float("nan"), -2.0, 1e10, 3e38]
MAX_ULP = {"log1p": 4, "expm1": 4}


def ulps(got: np.ndarray, want: np.ndarray) -> np.ndarray:
    """Distance in float32 ulps at the reference (0 where both are the same non-finite)."""
    same = (got == want) | (np.isnan(got) & np.isnan(want))
    spacing = np.spacing(np.abs(want).astype(np.float32)).astype(np.float64)
    with np.errstate(invalid="ignore"):
        return np.where(same, 0.0, np.abs(got - want) / spacing)


@pytest.mark.parametrize("name", ["log1p", "expm1"])
def test_accurate_near_zero_and_right_at_special_values(name):
    rng = np.random.default_rng(4)
    tiny = rng.uniform(-1e-3, 1e-3, 300) * 10.0 ** rng.integers(-6, 0, 300)
    wide = rng.uniform(-0.99, 30.0, 300)
    x = torch.tensor(SPECIAL + list(tiny) + list(wide), dtype=torch.float32)
    fn = getattr(torch, name)
    got = torch.compile(lambda t: fn(t) * 1.0, backend="fusec")(x).double().numpy()
    with np.errstate(all="ignore"):
        want = getattr(np, name)(x.double().numpy()).astype(np.float32).astype(np.float64)
    err = ulps(got, want)
    assert err.max() <= MAX_ULP[name], (x.numpy()[err.argmax()], got[err.argmax()],
                                        want[err.argmax()])
    np.testing.assert_array_equal(np.signbit(got[:2]), np.signbit(want[:2]))   # +-0
    (graph,) = fusec.dynamo.graphs()
    assert graph.regions and not any(name in op for op, _ in graph.aten_ops), graph.text()


def assert_trains_like_eager(f, x):
    """f(x) and its gradient through backend="fusec" as in eager, no region falling back."""
    want = f(x)
    (gx,) = torch.autograd.grad(want, x)
    got = torch.compile(f, backend="fusec")(x)
    (cx,) = torch.autograd.grad(got, x)
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(cx, gx)
    assert fusec.stats()["fallback_regions"] == 0


def test_log1p_and_expm1_train_like_eager():
    x = (torch.rand(6, 9) * 3 - 0.9).requires_grad_()
    assert_trains_like_eager(lambda x: (torch.log1p(x) * torch.expm1(x * 0.3)).sum(), x)


def test_bfloat16_inputs_compute_in_float32():
    x = torch.tensor([1e-4, -1e-3, 0.02, 2.0, -0.5], dtype=torch.bfloat16)
    got = torch.compile(lambda t: (torch.log1p(t), torch.expm1(t)), backend="fusec")(x)
    for g, fn in zip(got, (torch.log1p, torch.expm1)):
        assert g.dtype == torch.bfloat16
        torch.testing.assert_close(g, fn(x.float()).to(torch.bfloat16), atol=0, rtol=0)


def test_constructors_fuse_into_the_region():
    """full, scalar_tensor, zeros_like/ones_like/full_like become fl.full in the region:
    no aten op is left."""
    def f(x):
        z = torch.zeros_like(x) + 3
        o = torch.full((4, 5), 2.5)
        w = torch.where(x > 0, x, torch.scalar_tensor(0.5))
        return (z * x + o, w, torch.ones_like(x, dtype=torch.bfloat16) * 2,
                torch.full_like(x, -1.25) - x)

    x = torch.randn(4, 5)
    got = torch.compile(f, backend="fusec")(x)
    for g, w in zip(got, f(x), strict=True):
        assert g.dtype == w.dtype
        torch.testing.assert_close(g, w)
    (graph,) = fusec.dynamo.graphs()
    assert len(graph.regions) == 1 and graph.aten_ops == [], graph.text()


def _activations(t):
    import torch.nn.functional as F
    return (F.hardtanh(t), F.relu6(t), F.leaky_relu(t, 0.2), F.elu(t), F.elu(t, alpha=0.5),
            F.selu(t), F.celu(t, 0.7), torch.trunc(t), torch.isnan(t), torch.isinf(t),
            torch.log10(t.abs()))


def test_activations_and_predicates_fuse_and_match_eager():
    """hardtanh (relu6), leaky_relu, elu (selu, celu), trunc, isnan, isinf and log10 are
    lowered: one region, no aten op left, eager's values at the special values (log10
    within two roundings)."""
    x = torch.tensor(SPECIAL + [2.5, -2.5, 1.5, -1.5, -20.0, 6.5], dtype=torch.float32)
    got = torch.compile(_activations, backend="fusec")(x)
    for g, w in zip(got, _activations(x), strict=True):
        assert g.dtype == w.dtype
        torch.testing.assert_close(g, w, equal_nan=True, atol=0, rtol=2.5e-7)
    (graph,) = fusec.dynamo.graphs()
    assert len(graph.regions) == 1 and graph.aten_ops == [], graph.text()


def test_activations_train_like_eager():
    import torch.nn.functional as F
    x = (torch.randn(7, 11) * 3).requires_grad_()
    assert_trains_like_eager(
        lambda x: (F.hardtanh(x) + F.leaky_relu(x, 0.1) * F.elu(x * 0.5)).sum(), x)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16, torch.float64])
def test_round_half_to_even_as_eager(dtype):
    """torch.round: ties to even, exact below the largest float under 0.5 (where x + 0.5
    would round up), whole values past 2**23 (2**52 in float64), signed zeros."""
    rng = np.random.default_rng(2)
    vals = [0.5 * k for k in range(-12, 13)] + [0.49999997, -0.49999997, 8388607.5,
                                               8388608.5, 4503599627370495.5, -0.3, 0.3,
                                               1e30, -1e30] + SPECIAL
    x = torch.tensor(vals + list(rng.standard_normal(500) * 100), dtype=dtype)
    got = torch.compile(lambda t: torch.round(t), backend="fusec")(x)
    want = torch.round(x)
    assert got.dtype == want.dtype
    torch.testing.assert_close(got, want, equal_nan=True, atol=0, rtol=0)
    finite = ~want.isnan()
    assert (torch.signbit(got[finite]) == torch.signbit(want[finite])).all()
    (graph,) = fusec.dynamo.graphs()
    assert graph.aten_ops == [], graph.text()


def _powers(b, e, f):
    return (b ** e, 3 ** e, (-1) ** e, 1 ** e, 0 ** e, (-2) ** e.clamp(min=0), 2.5 ** f,
            (-2.0) ** f, b.int() ** e, b ** e.int(), b.double() ** e, torch.pow(-1.5, f),
            (b > 0) ** e, (b * 40000).int() ** 2.0)


def test_powers_of_integers_and_of_numbers_as_eager():
    """Integers to negative powers (1, +-1 by parity for a base of -1, else 0, as aten's;
    bools too), aten.pow.Scalar (a number to a tensor's powers; a negative base in
    parentheses), mixed int widths and float bases, an int to a float power (a float, not
    an int32 square that overflows): all in fusec regions, aten's values and dtypes."""
    b = torch.tensor([3, 1, -1, -1, 0, 2, -2, 5, -3, 7, 1, -1])
    e = torch.tensor([-1, -5, -3, -2, -1, 0, 3, 2, 3, 0, 4, 7])
    f = torch.tensor([0.5, -1.0, 2.0, 3.0, -0.5, 0.0, 1.5, -2.0, 10.0, 31.0, -3.0, 0.25])
    got = torch.compile(_powers, backend="fusec")(b, e, f)
    for g, w in zip(got, _powers(b, e, f), strict=True):
        assert g.dtype == w.dtype
        torch.testing.assert_close(g, w, equal_nan=True, atol=0, rtol=3e-7)
    (graph,) = fusec.dynamo.graphs()
    assert graph.regions and graph.aten_ops == [], graph.text()
    assert fusec.stats()["fallback_regions"] == 0


def _products(t):
    return t.prod(1), t.prod(), t.prod(0, keepdim=True) * 2, torch.prod(t, 1,
                                                                        dtype=torch.float64)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.int32, torch.bool])
def test_prod_fuses_and_multiplies_as_float64_then_rounds(dtype):
    """aten.prod (every dim, one dim, keepdim, dtype=): in fusec regions, eager's dtypes;
    floats multiply in float64 and round once (bfloat16 eager multiplies in bfloat16: the
    reference is the float64 product), ints and bools in int64."""
    g = torch.Generator().manual_seed(3)
    if dtype.is_floating_point:
        sign = torch.where(torch.rand(6, 50, generator=g) < 0.5, -1.0, 1.0)
        x = ((torch.rand(6, 50, generator=g) * 0.06 + 0.97) * sign).to(dtype)
    else:
        x = torch.randint(-2, 3, (6, 50), generator=g).to(dtype)
    got = torch.compile(_products, backend="fusec")(x)
    exact = _products(x.double() if dtype.is_floating_point else x)
    for g_, e_, w in zip(got, exact, _products(x), strict=True):
        assert g_.dtype == w.dtype
        want = e_.to(w.dtype) if dtype.is_floating_point else w
        rtol = {torch.float64: 1e-14, torch.float32: 2.5e-7}.get(w.dtype, 0)
        torch.testing.assert_close(g_, want, atol=0, rtol=rtol)
    (graph,) = fusec.dynamo.graphs()
    assert graph.regions and graph.aten_ops == [], graph.text()


PADS = [(1, 2), (0, 3, 2, 0), (-1, 2), (2, -3, 1, 1), (1, 1, 1, 1, 1, 1), (-2, -1)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.int32])
@pytest.mark.parametrize("pad", PADS)
def test_constant_pad_fuses_as_eager(pad, dtype):
    """F.pad(mode="constant") (aten.constant_pad_nd): constant blocks around x (fl.cat),
    negative amounts crop; the same values and dtype as eager, no aten op left."""
    x = torch.randn(3, 5, 7, generator=torch.Generator().manual_seed(1))
    x = (x * 10).to(dtype) if dtype == torch.int32 else x.to(dtype)
    f = lambda t: torch.nn.functional.pad(t, pad, value=-2) * 2      # noqa: E731
    got, want = torch.compile(f, backend="fusec")(x), f(x)
    assert got.dtype == want.dtype and torch.equal(got, want)
    (graph,) = fusec.dynamo.graphs()
    assert graph.regions and graph.aten_ops == [], graph.text()


def test_constant_pad_trains_like_eager():
    x = torch.randn(4, 6, 9).requires_grad_()
    assert_trains_like_eager(
        lambda t: (torch.nn.functional.pad(t.sin(), (2, -1, 1, 3), value=0.5) ** 2).sum(), x)


def test_flip_fuses_and_trains_like_eager():
    """aten.flip: fl.flip (reversed dims read through), forward and backward."""
    x = torch.randn(4, 6, 9)
    f = lambda t: torch.flip(t, (0, -1)) * 2 + torch.flip(t.exp(), [1])   # noqa: E731
    torch.testing.assert_close(torch.compile(f, backend="fusec")(x), f(x))
    (graph,) = fusec.dynamo.graphs()
    assert graph.regions and graph.aten_ops == [], graph.text()
    assert_trains_like_eager(lambda t: (f(t) * torch.arange(9.0)).sum(), x.requires_grad_())


class _Embedded(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = torch.nn.Embedding(50, 16)
        self.pos = torch.nn.Parameter(torch.randn(7, 16))
        self.norm = torch.nn.LayerNorm(16)

    def forward(self, tokens):
        return self.norm(self.emb(tokens) + self.pos).relu()


def test_embedding_fuses_with_what_follows_and_trains_like_eager():
    """aten.embedding as fl.take: the lookup, the positional add and the layer norm are
    one launch; the weights' gradients (embedding_dense_backward stays aten) as eager's."""
    torch.manual_seed(0)
    model = _Embedded()
    tokens = torch.randint(0, 50, (4, 7))
    compiled = torch.compile(model, backend="fusec")
    got = compiled(tokens)
    want = model(tokens)
    torch.testing.assert_close(got, want)
    (got * torch.arange(16.0)).sum().backward()
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    (want * torch.arange(16.0)).sum().backward()
    for g, p in zip(grads, model.parameters(), strict=True):
        torch.testing.assert_close(g, p.grad)
    forward = fusec.dynamo.graphs()[0]
    assert forward.aten_ops == [] and fusec.stats()["launches_per_call"][forward.label] == 1


def _selections(x, i, j):
    return (torch.index_select(x, 1, i) * 2, x[j] + 1, x[:, i].sum(1), x[:, :, j % 3],
            x[j - 5], x[:, -i - 1])


def test_index_select_and_tensor_indexing_as_eager():
    """index_select and x[idx] / x[:, idx] with one integer index tensor (any rank, negative
    positions counted from the end) go to fl.take; bfloat16 values and int64 / int32
    indices. index_select with a 0-d index keeps its dim (aten's)."""
    g = torch.Generator().manual_seed(5)
    x = torch.randn(5, 9, 3, generator=g).to(torch.bfloat16)
    i = torch.tensor([3, 0, 8, 8, 1], dtype=torch.int32)
    j = torch.randint(0, 5, (2, 3), generator=g)
    got = torch.compile(_selections, backend="fusec")(x, i, j)
    for a, b in zip(got, _selections(x, i, j), strict=True):
        assert a.dtype == b.dtype and a.shape == b.shape
        torch.testing.assert_close(a, b)
    (graph,) = fusec.dynamo.graphs()
    assert graph.regions and graph.aten_ops == [], graph.text()
    f = lambda t: torch.index_select(t, 0, torch.tensor(2)) * 2            # noqa: E731
    assert torch.compile(f, backend="fusec")(x).shape == f(x).shape == (1, 9, 3)


def test_gather_fuses_and_trains_like_eager():
    """aten.gather as fl.take_along (an index smaller than x on the other dims), forward and
    backward (the backward's scatter stays aten)."""
    g = torch.Generator().manual_seed(6)
    x = torch.randn(6, 10, 3, generator=g)
    index = torch.randint(0, 10, (5, 4, 2), generator=g)
    f = lambda t: torch.gather(t * 2, 1, index).exp()                  # noqa: E731
    torch.testing.assert_close(torch.compile(f, backend="fusec")(x), f(x))
    (graph,) = fusec.dynamo.graphs()
    assert graph.regions and graph.aten_ops == [], graph.text()
    assert_trains_like_eager(lambda t: f(t).sum(), x.requires_grad_())


def _trig(t):
    return torch.tan(t) * 0.5 + torch.atan(t * 3) + torch.atan2(t, t.flip(0) - 0.5)


def test_tan_and_atan_fuse_and_train_like_eager():
    """aten.tan, aten.atan and aten.atan2: the C library's (CPU), CUDA's (GPU) functions;
    atan2 of ints gives float32, as eager."""
    x = torch.tensor(SPECIAL[:16] + [1.5, -1.5, 0.7, 3.0], dtype=torch.float32)
    f = _trig
    torch.testing.assert_close(torch.compile(f, backend="fusec")(x), f(x), equal_nan=True,
                               rtol=4e-7, atol=1e-7)
    (graph,) = fusec.dynamo.graphs()
    assert graph.regions and graph.aten_ops == [], graph.text()
    assert_trains_like_eager(lambda t: f(t).sum(), (torch.rand(30) * 2 - 1).requires_grad_())
    i = torch.arange(-6, 6).reshape(3, 4)
    got = torch.compile(lambda a: torch.atan2(a, a.t().reshape(3, 4)), backend="fusec")(i)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, torch.atan2(i, i.t().reshape(3, 4)))


def _c_math(x):
    return (torch.asin(x), torch.acos(x), torch.sinh(x), torch.cosh(x), torch.asinh(x),
            torch.acosh(x), torch.atanh(x), torch.special.erfc(x), torch.log1p(x),
            torch.expm1(x))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_c_math_functions_fuse_and_match_eager(dtype):
    """asin, acos, sinh, cosh, asinh, acosh, atanh, erfc, log1p, expm1 (the C math
    library's, backends' LIBM_UNARY): one region, the float64 values rounded, within a few ulp, at the special
    values and on their domains' edges, NaN outside them (eager's float32 sinh(89) is inf:
    the true 2.2e38 is not), forward and backward."""
    x = torch.tensor(SPECIAL + [0.9999, -0.9999, 1.0001, 0.25, -0.75, 2.0, 10.0, -10.0, 700.0,
                      -3e-8, 5e-5, -90.0],
                     dtype=dtype)
    got = torch.compile(_c_math, backend="fusec")(x)
    for k, (g, w) in enumerate(zip(got, _c_math(x.double()), strict=True)):
        w = w.to(dtype)
        assert g.dtype == w.dtype
        tol = {torch.float32: 4e-7, torch.float64: 1e-14, torch.bfloat16: 8e-3}[dtype]
        torch.testing.assert_close(g, w, equal_nan=True, atol=1e-30, rtol=tol, msg=str(k))
    (graph,) = fusec.dynamo.graphs()
    assert len(graph.regions) == 1 and graph.aten_ops == [], graph.text()
    xs = (torch.rand(9, 5) * 1.8 - 0.9).requires_grad_()
    assert_trains_like_eager(lambda x: sum(v.sum() for v in _c_math(x)[:5]) +
                             torch.acosh(x + 2).sum() + torch.atanh(x).sum() +
                             torch.special.erfc(x).sum(), xs)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.int32])
def test_fmax_and_fmin_ignore_nan_as_eager(dtype):
    nan = float("nan")
    a = torch.tensor([1.0, nan, -2.0, nan, 0.0, -0.0, 5.0, -7.0]).to(dtype)
    b = torch.tensor([nan, 3.0, nan, nan, -0.0, 0.0, 6.0, -8.0]).to(dtype)

    def f(a, b):
        return torch.fmax(a, b), torch.fmin(a, b), torch.fmax(a, b * 2) + torch.fmin(b, a)
    got = torch.compile(f, backend="fusec")(a, b)
    for g, w in zip(got, f(a, b), strict=True):
        torch.testing.assert_close(g, w, equal_nan=True, atol=0, rtol=0)
    (graph,) = fusec.dynamo.graphs()
    assert len(graph.regions) == 1 and graph.aten_ops == [], graph.text()


def _masks_and_positions(x):
    pos = torch.arange(0, x.shape[1] * 2, 2, dtype=torch.float32)
    return (torch.tril(x), torch.triu(x, 1), x * pos,
            torch.arange(x.shape[0] - 1, -1, -1)[:, None] + x.sum(1, keepdim=True).long())


@pytest.mark.parametrize("shape", [(6, 10), (33, 17)])
def test_tril_triu_and_arange_fuse_as_eager(shape):
    """tril / triu (aten.arange compared with aten.arange after decomposition), arange with a
    step, a float dtype, a negative step: one region, eager's values, forward and backward."""
    x = torch.randn(*shape)
    got = torch.compile(_masks_and_positions, backend=fusec.torch_backend(strict=True))(x)
    for g, w in zip(got, _masks_and_positions(x), strict=True):
        assert g.dtype == w.dtype
        torch.testing.assert_close(g, w, atol=0, rtol=0)
    (graph,) = fusec.dynamo.graphs()
    assert not any("arange" in op for op, _ in graph.aten_ops), graph.text()
    xs = torch.randn(*shape).requires_grad_()
    assert_trains_like_eager(lambda x: (torch.tril(x) * torch.arange(shape[1])).sum(), xs)


def _remainders(x, i):
    return (torch.fmod(x, 0.7), torch.fmod(x, -x.flip(0) * 0.3), torch.fmod(i, 3),
            torch.fmod(i, -4), torch.roll(x, 2, 1), torch.roll(x, -1, 0))


def test_fmod_and_roll_fuse_as_eager():
    """C's remainder (the dividend's sign; exact), on floats and ints; roll (arange, fmod and
    indexing after decomposition): one region, eager's values exactly."""
    x = torch.randn(9, 13) * 5
    i = torch.arange(-50, 67).reshape(9, 13)
    got = torch.compile(_remainders, backend=fusec.torch_backend(strict=True))(x, i)
    for g, w in zip(got, _remainders(x, i), strict=True):
        assert g.dtype == w.dtype
        torch.testing.assert_close(g, w, atol=0, rtol=0)
    (graph,) = fusec.dynamo.graphs()
    assert not any(name in op for op, _ in graph.aten_ops for name in ("fmod", "roll",
                                                                      "arange")), graph.text()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_hypot_and_copysign_fuse_as_eager(dtype):
    """hypot (the C library's: no overflow of the squares) and copysign (the sign bit, -0.0
    included): one region, eager's values; ints give float32, forward and backward."""
    a = torch.tensor([3.0, -4.0, 1e30, 0.0, -0.0, float("inf"), float("nan"), 2.5, -7.0])
    b = torch.tensor([4.0, 3.0, 1e30, -0.0, 0.0, 1.0, 1.0, -0.0, -1e-30])
    a, b = a.to(dtype), b.to(dtype)

    def f(a, b):
        return torch.hypot(a, b), torch.copysign(a, b), torch.copysign(a, -1.0)
    got = torch.compile(f, backend=fusec.torch_backend(strict=True))(a, b)
    for g, w in zip(got, f(a, b), strict=True):
        assert g.dtype == w.dtype
        torch.testing.assert_close(g, w, equal_nan=True, atol=0,
                                   rtol=8e-3 if dtype == torch.bfloat16 else 2.5e-7)
        assert torch.equal(torch.signbit(g), torch.signbit(w)) or dtype == torch.bfloat16
    i = torch.arange(-5, 7)
    got = torch.compile(lambda i: torch.copysign(i, i - 3), backend="fusec")(i)
    torch.testing.assert_close(got, torch.copysign(i, i - 3))
    xs = torch.randn(5, 6, dtype=torch.float64).requires_grad_()
    assert_trains_like_eager(lambda x: (torch.hypot(x, x * 0.5 + 1) *
                                        torch.copysign(x, x.flip(0))).sum(), xs)


@pytest.mark.parametrize("repeats", [(2, 3), (3, 1, 2), (1, 1)])
def test_repeat_fuses_as_one_indexed_view_and_trains_like_eager(repeats):
    """x.repeat(...) (new leading dims too) is read in the region where it is used, each
    result element at its index modulo x's sizes; no aten repeat is left."""
    x = torch.randn(5, 7).requires_grad_()
    w = torch.randn(*[r * s for r, s in zip(repeats, (1,) * (len(repeats) - 2) + (5, 7))])
    assert_trains_like_eager(lambda x: (torch.sin(x.repeat(*repeats)) * w).sum(), x)
    (forward, _) = fusec.dynamo.graphs()
    assert not any("repeat" in op for op, _ in forward.aten_ops), forward.text()
    assert any("repeat" in n.name for r in forward.regions for n in r.source.nodes)


def test_repeat_of_a_zero_dim_tensor_by_nothing_is_itself():
    x = torch.tensor(1.5)
    got = torch.compile(lambda t: torch.sin(t.repeat(())), backend="fusec")(x)
    torch.testing.assert_close(got, torch.sin(x))
