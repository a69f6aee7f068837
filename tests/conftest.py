"""Shared test fixtures: the CPU backends every kernel test runs on, and the float64
reference checker with tolerances by dtype."""
from __future__ import annotations

import math
import os
import tempfile

import numpy as np
import pytest

# Tests never touch the user's cache folder: one fresh folder per test session.
os.environ["FUSEC_CACHE_DIR"] = tempfile.mkdtemp(prefix="fusec-test-cache-")

CPU_BACKENDS = ["interpret", "cpu"]

# max |got - want| / (atol_scale + |want|) allowed, by the result's dtype
RTOL = {"float16": 2e-3, "bfloat16": 1.6e-2, "float32": 1e-5, "float64": 1e-12}


def pytest_collection_modifyitems(config, items):
    try:
        import torch
        has_cuda = torch.cuda.is_available()
    except Exception:
        has_cuda = False
    if has_cuda:
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


def skip_if_a_gpu_is_here():
    """For tests of what calling a GPU kernel does on a machine without a GPU."""
    try:
        import torch
    except ImportError:
        return
    if torch.cuda.is_available():
        pytest.skip("a GPU is here")


@pytest.fixture
def fresh_dynamo():
    """torch.compile tests: Dynamo's caches and fusec's backend counters empty before and
    after (each test counts its own graphs and regions)."""
    import torch

    import fusec.dynamo
    torch._dynamo.reset()
    fusec.dynamo.reset()
    yield
    torch._dynamo.reset()


@pytest.fixture(params=CPU_BACKENDS)
def backend(request, monkeypatch):
    monkeypatch.setenv("FUSEC_BACKEND", request.param)
    return request.param


def assert_close(got, want, dtype_name: str, what: str = ""):
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}"
    if dtype_name not in RTOL:
        np.testing.assert_array_equal(got, want, err_msg=what)
        return
    nan_got, nan_want = np.isnan(got), np.isnan(want)
    assert (nan_got == nan_want).all(), f"{what}: NaN positions differ"
    ok = ~nan_want
    inf = np.isinf(want) & ok
    assert (got[inf] == want[inf]).all(), f"{what}: infinities differ"
    ok &= ~inf
    if not ok.any():
        return
    err = np.abs(got[ok] - want[ok]) / (1.0 + np.abs(want[ok]))
    worst = int(np.argmax(err))
    assert err[worst] <= RTOL[dtype_name], (
        f"{what}: max rel error {err[worst]:.3g} > {RTOL[dtype_name]:.1g} "
        f"(got {got[ok][worst]!r}, want {want[ok][worst]!r})")


def bf16_round(x: np.ndarray) -> np.ndarray:
    from fusec.backends.numeric import bf16_bits_to_f32, f32_to_bf16_bits
    return bf16_bits_to_f32(f32_to_bf16_bits(np.asarray(x, np.float32)))


def random_array(shape, dtype_name: str, seed: int = 0, low=-3.0, high=3.0):
    """Inputs with negative values; for bfloat16 a uint16 bit-pattern array (numpy has no
    bfloat16) is returned together with its float64 values."""
    rng = np.random.default_rng(seed)
    if dtype_name == "bool":
        a = rng.random(shape) < 0.5
        return a, a.astype(np.float64)
    if dtype_name in ("int8", "int16", "int32", "int64"):
        a = rng.integers(-50, 50, size=shape).astype(dtype_name)
        return a, a.astype(np.float64)
    if dtype_name == "uint8":
        a = rng.integers(0, 100, size=shape).astype(np.uint8)
        return a, a.astype(np.float64)
    values = rng.uniform(low, high, size=shape)
    if dtype_name == "bfloat16":
        from fusec.backends.numeric import f32_to_bf16_bits
        bits = f32_to_bf16_bits(values.astype(np.float32))
        return bits, bf16_round(values).astype(np.float64)
    a = values.astype(dtype_name)
    return a, a.astype(np.float64)


def to_float64(array, dtype_name: str) -> np.ndarray:
    if dtype_name == "bfloat16":
        from fusec.backends.numeric import bf16_bits_to_f32
        return bf16_bits_to_f32(array).astype(np.float64)
    return np.asarray(array).astype(np.float64)


def round_to_dtype(values: np.ndarray, dtype_name: str) -> np.ndarray:
    """A float64 reference rounded to the dtype the kernel computes in."""
    if dtype_name == "bfloat16":
        return bf16_round(values).astype(np.float64)
    if dtype_name in ("float16", "float32"):
        return values.astype(dtype_name).astype(np.float64)
    return values


erf64 = np.vectorize(math.erf, otypes=[np.float64])


def as_input(array, dtype_name: str):
    """numpy has no bfloat16: such inputs go in as torch tensors."""
    if dtype_name != "bfloat16":
        return array
    import torch
    return torch.from_numpy(np.ascontiguousarray(array).view(np.int16)).view(torch.bfloat16)


def output_float64(out) -> np.ndarray:
    try:
        import torch
        if isinstance(out, torch.Tensor):
            return out.detach().to(torch.float64).numpy()
    except ImportError:
        pass
    return np.asarray(out).astype(np.float64)
