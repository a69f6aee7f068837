"""Accuracy of the vectorizable float32 math (backends/llvm/math.py) over the whole input
range, in ulps of the float32 result, against float64 references."""
from __future__ import annotations

import math
import sys

import llvmlite.ir as ir
import numpy as np
import pytest
from test_llvm_helpers import elementwise, kernel_of, outputs_for

from fusec.backends.llvm import compile_cpu

_erf = np.vectorize(math.erf, otypes=[np.float64])
_erfc = np.vectorize(math.erfc, otypes=[np.float64])


def _gelu_tanh(x):
    return x / (1.0 + np.exp(-2.0 * math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


REFERENCE = {
    "exp": np.exp, "exp2": np.exp2, "log": np.log, "log2": np.log2, "tanh": np.tanh,
    "erf": _erf, "sigmoid": lambda x: 1.0 / (1.0 + np.exp(-x)),
    "silu": lambda x: x / (1.0 + np.exp(-x)), "gelu": lambda x: 0.5 * x * _erfc(-x / math.sqrt(2)),
    "gelu_tanh": _gelu_tanh, "sqrt": np.sqrt, "rsqrt": lambda x: 1 / np.sqrt(x),
}
# max error in float32 ulps over normal results (subnormal results: absolute 2 ulp of the
# smallest normal)
MAX_ULP = {"exp": 2, "exp2": 2, "log": 2, "log2": 3, "tanh": 3, "erf": 4, "sigmoid": 4,
           "silu": 4, "gelu": 8, "gelu_tanh": 8, "sqrt": 1, "rsqrt": 2}


# functions whose target may compute them as written, with the error of the negative
# tail relative to |x| / 2 (Target.gelu_tail_absolute: torch's gelu)
ABSOLUTE_TAIL: set[str] = set()


def inputs() -> np.ndarray:
    """float32 inputs over the whole range: normal samples, wide uniform ones, magnitudes
    from 1e-44 to 1e38 of both signs, and the special values and thresholds."""
    rng = np.random.default_rng(7)
    parts = [rng.standard_normal(60000) * 4, rng.uniform(-110, 110, 30000),
             np.exp(rng.uniform(-100, 88, 30000)), -np.exp(rng.uniform(-100, 4, 10000)),
             np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1e-40, -1e-40, 1e-45, 88.72,
                       88.73, -87.4, -103.9, -104.0, 3.4e38, -3.4e38, 1.0, 2.0, 0.5, 0.625,
                       -0.625, 1.0000001, 0.99999994])]
    return np.concatenate(parts).astype(np.float32)


@pytest.fixture(scope="module")
def results():
    return _results()


def _results(x=None):
    """(inputs, name -> float32 results) of every REFERENCE function on the CPU target;
    inputs() unless `x` is given."""
    names = list(REFERENCE)
    body = [f"%r{k} = {n}(%a0) : tile<f32>[256]" for k, n in enumerate(names)]
    k = kernel_of(elementwise(["f32"], body, [(f"r{j}", "f32") for j in range(len(names))],
                              block=256))
    ck = compile_cpu(k)
    x = inputs() if x is None else x
    outs = outputs_for(k, [x])
    ck.run([x] + outs)
    return x, dict(zip(names, outs))


@pytest.mark.parametrize("name", list(REFERENCE))
def test_float32_math_accuracy(results, name):
    x, outs = results
    assert_within_ulps(name, x, outs[name])


def assert_within_ulps(name: str, x: np.ndarray, got: np.ndarray, bound=None) -> None:
    """got = name(x) in float32 is within MAX_ULP[name] (or `bound`) of the float64
    reference, with NaNs and infinities where the reference has them (also used by
    tests/gpu). `name` in ABSOLUTE_TAIL: ulps of max(|result|, |x| / 2)."""
    got = got.astype(np.float64)
    with np.errstate(all="ignore"):
        want = REFERENCE[name](x.astype(np.float64))
        want32 = want.astype(np.float32)
    assert (np.isnan(got) == np.isnan(want32)).all(), "NaN positions differ"
    inf = np.isinf(want32)
    assert (got[inf] == want32[inf]).all(), "infinities differ"
    ok = ~np.isnan(want32) & ~inf
    scale = np.abs(want32[ok])
    if name in ABSOLUTE_TAIL:
        scale = np.maximum(scale, np.abs(x[ok]) / 2)
    ulp = np.maximum(np.spacing(scale).astype(np.float64), 2.0 ** -126)
    err = np.abs(got[ok] - want[ok]) / ulp
    worst = int(np.argmax(err))
    assert err[worst] <= (bound or MAX_ULP[name]), (
        f"{name}: {err[worst]:.2f} ulp at x={x[ok][worst]!r} (got {got[ok][worst]!r}, "
        f"want {want[ok][worst]!r})")


HARDWARE_EXP2_FAMILY = ("exp", "exp2", "tanh", "erf", "sigmoid", "silu", "gelu", "gelu_tanh")


def _exact_exp2_hook(monkeypatch, saturate: bool = True) -> list:
    """Target.exp2_hardware (what the PTX target gives ex2.approx) as an exact 2**q on the
    CPU target, and with `saturate` Target.fma_saturate (fma.rn.sat.f32) as an fma clamped
    by selects; returns the list of values exp2_hardware served."""
    from fusec.backends.llvm.cpu import CPUTarget
    used = []

    def exact_exp2(ctx, q):
        used.append(q)
        return ctx.intrinsic("exp2", [q])

    def fma_saturate(ctx, a, b, c):
        v = ctx.intrinsic("fma", [a, b, c])
        zero, one = ir.Constant(v.type, 0.0), ir.Constant(v.type, 1.0)
        v = ctx.b.select(ctx.b.fcmp_ordered(">", v, zero), v, zero)       # NaN -> 0
        return ctx.b.select(ctx.b.fcmp_ordered("<", v, one), v, one)
    monkeypatch.setattr(CPUTarget, "exp2_hardware", staticmethod(exact_exp2))
    monkeypatch.setattr(CPUTarget, "fma_saturate", staticmethod(fma_saturate) if saturate
                        else None)
    return used


@pytest.mark.parametrize("saturate", [True, False], ids=["fma-saturate", "selects"])
def test_exp_family_on_a_target_with_a_2_to_the_q_instruction(monkeypatch, saturate):
    """The exp family around Target.exp2_hardware (2**n from its bits, n clamped by a
    saturated fma or by selects, 2**f from the hardware; erf's 2**Q(|x|)) is right: with an
    exact 2**q in its place it keeps its bounds here, over the whole range with the
    specials; on the GPU, tests/gpu/test_ptx_math_gpu.py checks them with the hardware's
    2**q."""
    used = _exact_exp2_hook(monkeypatch, saturate)
    x, outs = _results()
    assert used
    for name in HARDWARE_EXP2_FAMILY:
        assert_within_ulps(name, x, outs[name])


def test_erf_through_2_to_the_q_is_tighter_than_its_bound(monkeypatch):
    """erf's 2**Q(|x|) (|x| >= 1) leaves room for the hardware's 2-ulp 2**q: within 2 ulp
    with an exact one, also just around the switch at |x| = 1 and the clamp at 4."""
    _exact_exp2_hook(monkeypatch)
    x, outs = _results()
    large = np.abs(x) >= 1
    assert_within_ulps("erf", x[large], outs["erf"][large], bound=2)
    switches = np.array([1.0, -1.0, 4.0, -4.0, 2.5], dtype=np.float32)
    edges = np.concatenate([switches, np.nextafter(switches, np.float32(np.inf)),
                            np.nextafter(switches, np.float32(-np.inf))])
    edges, outs = _results(edges)
    assert_within_ulps("erf", edges, outs["erf"], bound=3)


def test_gelu_as_torch_writes_it(monkeypatch):
    """Target.gelu_tail_absolute (the PTX target): 0.5 x (1 + erf(x / sqrt 2)), within a
    few ulps of max(|gelu(x)|, |x| / 2)."""
    from fusec.backends.llvm.cpu import CPUTarget
    monkeypatch.setattr(CPUTarget, "gelu_tail_absolute", True)
    monkeypatch.setattr(sys.modules[__name__], "ABSOLUTE_TAIL", {"gelu"})
    x, outs = _results()
    assert_within_ulps("gelu", x, outs["gelu"], bound=4)
    with pytest.raises(AssertionError):       # the tail is not accurate relative to gelu
        monkeypatch.setattr(sys.modules[__name__], "ABSOLUTE_TAIL", set())
        assert_within_ulps("gelu", x, outs["gelu"])


@pytest.mark.parametrize("saturate", [True, False], ids=["fma-saturate", "selects"])
def test_exp_and_exp2_by_a_2_to_the_q_instruction_at_the_clamps(monkeypatch, saturate):
    """Where n = rint(x log2 e) meets its clamp [-126, 127] the hardware's 2**f carries the
    rest: results close to overflow, just below the normal range, subnormal and zero; and
    exact powers of two stay exact."""
    _exact_exp2_hook(monkeypatch, saturate)
    x2 = np.array([127.4, 127.5, 127.6, 127.99, 128.0, 128.5, -125.5, -126.0, -126.4, -126.5,
                   -127.0, -140.3, -149.0, -149.4, -149.6, -150.0, -151.0], np.float32)
    xe = np.array([88.37, 88.38, 88.6, 88.72, 88.73, -86.9, -87.0, -87.3, -87.34, -95.1,
                   -103.28, -103.97, -104.0], np.float32)
    x = np.concatenate([x2, xe])
    x, outs = _results(x)
    assert_within_ulps("exp2", x[:len(x2)], outs["exp2"][:len(x2)])
    assert_within_ulps("exp", x[len(x2):], outs["exp"][len(x2):])
    whole = np.arange(-149, 128, dtype=np.float32)
    whole, outs = _results(whole)
    assert (outs["exp2"] == np.exp2(whole.astype(np.float64))).all()
