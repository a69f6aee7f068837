"""Property test: random elementwise/reduction kernels give the same answer on the compiled
CPU backend as on the reference interpreter."""
from __future__ import annotations

import importlib.util
import itertools
import tempfile
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import assert_close

UNARY = ["fl.exp({})", "fl.tanh({})", "fl.abs({})", "fl.sigmoid({})", "fl.relu({})",
         "fl.gelu({})", "-({})", "fl.sqrt(fl.abs({}) + 1.0)", "fl.erf({})", "fl.silu({})"]
BINARY = ["({} + {})", "({} - {})", "({} * {})", "fl.maximum({}, {})", "fl.minimum({}, {})",
          "fl.where({} > 0.5, {}, 2.0)"]
REDUCE = [None, "fl.sum({}, axis=1, keepdims=True)", "fl.max({}, axis=1, keepdims=True)",
          "fl.mean({}, axis=1, keepdims=True)", "fl.min({}, axis=1, keepdims=True)"]

expr = st.recursive(
    st.sampled_from(["a", "b", "0.5", "bias"]),
    lambda inner: st.one_of(
        st.tuples(st.sampled_from(UNARY), inner).map(lambda t: t[0].format(t[1])),
        st.tuples(st.sampled_from(BINARY), inner, inner).map(lambda t: t[0].format(t[1], t[2])),
    ),
    max_leaves=6,
)

TEMPLATE = '''
import fusec
import fusec.language as fl


@fusec.kernel
def generated(x, y, z):
    out = fusec.empty_like(x)
    M, N = x.shape
    for tm in fusec.tile(M):
        a = x[tm, :]
        b = y[tm, :]
        bias = z[:][None, :]
        v = a * 0.0 + ({body})
        r = {reduced}
        out[tm, :] = v * 0.25 + r
    return out
'''

_counter = itertools.count()
_dir = Path(tempfile.mkdtemp(prefix="fusec_prop_"))


def _load(body: str, reduced: str):
    path = _dir / f"gen_{next(_counter)}.py"
    path.write_text(TEMPLATE.format(body=body, reduced=reduced))
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.generated


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=expr, reduce=st.sampled_from(REDUCE), m=st.integers(1, 9), n=st.integers(1, 70),
       seed=st.integers(0, 2 ** 16))
def test_cpu_matches_interpreter(body, reduce, m, n, seed):
    reduced = reduce.format("v") if reduce else "v"
    kernel = _load(body, reduced)
    rng = np.random.default_rng(seed)
    x, y = (rng.uniform(-2, 2, (m, n)).astype(np.float32) for _ in range(2))
    z = rng.uniform(-2, 2, n).astype(np.float32)
    want = kernel.compile(x, y, z, backend="interpret")(x, y, z)
    got = kernel.compile(x, y, z, backend="cpu")(x, y, z)
    with np.errstate(all="ignore"):
        assert_close(got, want.astype(np.float64), "float32", f"{body} | {reduced}")
