"""Property test: random graphs of whole-tensor ops (elementwise, broadcasts, reductions over
either axis, with and without keepdims) compiled through the fuse and tile passes to native
CPU code give the answer of the reference interpreter run on the unfused tensor-level IR."""
from __future__ import annotations

import importlib.util
import itertools
import tempfile
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fusec
from fusec.backends.interpret import run as interpret
from conftest import assert_close

LEAVES = ["x", "y", "b[None, :]", "c[:, None]", "(y * 0.5)"]
UNARY = ["fl.exp(-fl.abs({}))", "fl.tanh({})", "fl.abs({})", "fl.sigmoid({})", "fl.relu({})",
         "-({})", "fl.sqrt(fl.abs({}) + 1.0)"]
BINARY = ["({} + {})", "({} - {})", "({} * {})", "fl.maximum({}, {})", "fl.where({} > 0, {}, x)"]
REDUCE = ["{}.sum(axis=1, keepdims=True)", "{}.max(axis=0, keepdims=True)",
          "{}.mean(axis=1, keepdims=True)", "{}.min(axis=1)[:, None]",
          "{}.sum(axis=0)[None, :]"]

expr = st.recursive(
    st.sampled_from(LEAVES),
    lambda inner: st.one_of(
        st.tuples(st.sampled_from(UNARY), inner).map(lambda t: t[0].format(t[1])),
        st.tuples(st.sampled_from(BINARY), inner, inner).map(lambda t: t[0].format(t[1], t[2])),
        st.tuples(st.sampled_from(REDUCE), inner).map(lambda t: t[0].format(t[1])),
    ),
    max_leaves=7,
)

TEMPLATE = '''
import fusec
import fusec.language as fl


@fusec.kernel
def generated(x, y, b, c):
    v = x * 0.0 + ({body})
    return v, v.sum(axis=1)
'''

_counter = itertools.count()
_dir = Path(tempfile.mkdtemp(prefix="fusec-fusion-prop-"))


def _kernel(body: str):
    path = _dir / f"gen_{next(_counter)}.py"
    path.write_text(TEMPLATE.format(body=body))
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.generated


def _unfused(compiled, args):
    """The tensor-level IR as traced, run by the interpreter on whole arrays."""
    kernel = fusec.ir.parse(compiled.asm["ir"]).kernel()
    allocs = [op.results[0].type for op in kernel.regions[0].ops if op.name == "alloc"]
    M, N = args[0].shape
    outs = [np.zeros((M, N) if t.rank == 2 else (M,), np.float32) for t in allocs]
    interpret(kernel, list(args) + outs)
    return outs


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=expr, M=st.integers(1, 19), N=st.integers(1, 40), seed=st.integers(0, 2 ** 16))
def test_fused_matches_the_unfused_interpreter(body, M, N, seed):
    rng = np.random.default_rng(seed)
    args = [rng.uniform(-2, 2, (M, N)).astype(np.float32),
            rng.uniform(-2, 2, (M, N)).astype(np.float32),
            rng.uniform(-2, 2, N).astype(np.float32),
            rng.uniform(-2, 2, M).astype(np.float32)]
    kernel = _kernel(body)
    v, s = kernel.compile(*args, backend="cpu")(*args)
    compiled = list(kernel._compiled.values())[-1]
    want_v, want_s = _unfused(compiled, args)
    assert_close(v, want_v, "float32", f"v = {body}")
    assert_close(s, want_s, "float32", f"row sums of {body}")
