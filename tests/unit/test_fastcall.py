"""The native call path (fusec/fastcall.c), built with the host C compiler, exercised without
a GPU: a FastCall with no device launch still checks its arguments, allocates outputs,
writes pointer slots and builds results, on CPU tensors. The launches themselves run in
tests/gpu (every cached GPU call goes through this path)."""
from __future__ import annotations

import math
import os
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from fusec import fastcall  # noqa: E402
from fusec.errors import LaunchError  # noqa: E402

T = fastcall.ARG_TENSOR


def module():
    if fastcall.status() != "native":
        pytest.skip(fastcall.status())
    return fastcall._module()


def tensor_guard(t, slot):
    return (T, t.dtype, None, 0.0, tuple(t.shape), tuple(t.stride()), t.get_device(),
            t.data_ptr() & 15, slot)


def make_call(args, outputs, results, kind, vals):
    """A FastCall over CPU tensors: `args` are the example arguments (a tensor's pointer goes
    to the slot of its position), outputs (shape, dtype, zero), no launches."""
    guards = []
    for i, a in enumerate(args):
        if isinstance(a, torch.Tensor):
            guards.append(tensor_guard(a, i))
        else:
            guards.append(fastcall._guard(a, -1, (torch.Tensor, torch.nn.Parameter)))
    outs = [((shape, tuple(torch.empty(shape).stride())), {"dtype": dt, "device": "cpu"},
             zero, len(args) + j) for j, (shape, dt, zero) in enumerate(outputs)]
    return fastcall._module().FastCall(
        guards, outs, [], results, kind, vals.ctypes.data, vals.size, 0, 0, vals, None, 0,
        torch.empty_strided, {}, (torch.Tensor, torch.nn.Parameter), LaunchError, "k",
        os.environ.get("FUSEC_BACKEND"), os.environ.get("FUSEC_INTERPRET"))


def test_a_matching_call_allocates_outputs_writes_pointers_and_returns_results():
    module()
    vals = np.zeros(8, dtype=np.int64)
    a, b = torch.randn(5, 3), torch.randn(3)
    call = make_call((a, b, 2.5, 7), [((5, 3), torch.float32, 1), ((2,), torch.int64, 0)],
                     [-1, 0, -2], 0, vals)
    x, y = torch.randn(5, 3), torch.randn(3)
    out, same, other = call((x, y, 2.5, 7))
    assert same is x
    assert out.shape == (5, 3) and out.dtype == torch.float32 and bool((out == 0).all())
    assert other.shape == (2,) and other.dtype == torch.int64
    assert vals[0] == x.data_ptr() and vals[1] == y.data_ptr()
    assert vals[4] == out.data_ptr() and vals[5] == other.data_ptr()


@pytest.mark.parametrize("change", [
    lambda a, b, s, n: (a.double(), b, s, n),                 # dtype
    lambda a, b, s, n: (a[:4], b, s, n),                      # shape
    lambda a, b, s, n: (a.t().contiguous().t(), b, s, n),     # strides
    lambda a, b, s, n: (a, torch.randn(4)[1:], s, n),         # 16-byte alignment
    lambda a, b, s, n: (a.numpy(), b, s, n),                  # not a torch tensor
    lambda a, b, s, n: (a, b, -s, n),                         # float value
    lambda a, b, s, n: (a, b, s, n + 1),                      # int value
    lambda a, b, s, n: (a, b, s, True if n == 1 else float(n)),   # int's type
    lambda a, b, s, n: (a, b, s),                             # argument count
])
def test_arguments_that_do_not_match_return_not_implemented(change):
    module()
    vals = np.zeros(8, dtype=np.int64)
    a, b = torch.randn(5, 3), torch.randn(3)
    call = make_call((a, b, 2.5, 1), [((5, 3), torch.float32, 0)], [-1], 1, vals)
    assert call((a, b, 2.5, 1)).shape == (5, 3)
    assert call(change(a, b, 2.5, 1)) is NotImplemented


def test_negative_zero_and_nan_are_their_own_values():
    module()
    vals = np.zeros(4, dtype=np.int64)
    a = torch.randn(3)
    call = make_call((a, -0.0), [], [0], 1, vals)
    assert call((a, -0.0)) is a
    assert call((a, 0.0)) is NotImplemented
    call = make_call((a, math.nan), [], [], 2, vals)
    assert call((a, math.nan)) is None


def test_the_backend_variable_is_part_of_the_match(monkeypatch):
    module()
    monkeypatch.delenv("FUSEC_BACKEND", raising=False)
    vals = np.zeros(4, dtype=np.int64)
    a = torch.randn(3)
    call = make_call((a,), [], [0], 1, vals)
    assert call((a,)) is a
    monkeypatch.setenv("FUSEC_BACKEND", "ptx")
    assert call((a,)) is NotImplemented


def test_bad_construction_raises_instead_of_crashing():
    mod = module()
    with pytest.raises(TypeError):
        mod.FastCall([("not", "a", "guard")], [], [], [], 0, 0, 0, 0, 0, None, None, 0,
                     torch.empty_strided, {}, (torch.Tensor,), LaunchError, "k", None, None)
    with pytest.raises(TypeError):
        mod.FastCall()
    vals = np.zeros(2, dtype=np.int64)
    for results, kind, out_slot in (([3], 0, 1), ([-2], 0, 1), ([], 1, 1), ([-1], 0, 2)):
        with pytest.raises(ValueError, match="out of range"):
            mod.FastCall([], [(((1,), (1,)), {}, 0, out_slot)], [], results, kind,
                         vals.ctypes.data, vals.size, 0, 0, vals, None, 0,
                         torch.empty_strided, {}, (torch.Tensor,), LaunchError, "k", None,
                         None)


def test_native_calls_can_be_switched_off():
    code = ("import fusec.fastcall as f; print(f.status())")
    env = dict(os.environ, FUSEC_NATIVE_CALLS="0")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, check=True).stdout
    assert out.strip() == "FUSEC_NATIVE_CALLS=0"


def test_a_missing_compiler_is_reported_not_raised(tmp_path):
    code = ("import fusec.fastcall as f; print(f.status())")
    env = dict(os.environ, CC="no-such-compiler-here", FUSEC_CACHE_DIR=str(tmp_path))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, check=True).stdout
    assert "no C compiler" in out and "no-such-compiler-here" in out


def test_the_fast_allocator_serves_only_when_the_kernels_device_is_current():
    """A GPU FastCall makes its outputs with the positional allocator of Inductor's code
    (on torch's current device) only while torch's current device is the kernel's (a CUDA
    guard may leave it elsewhere than the driver's context); else with empty_strided and
    the device named."""
    module()
    made = []

    def fast(size, stride, dtype):
        made.append(size)
        return torch.empty_strided(size, stride, dtype=dtype)
    a = torch.randn(5, 3)
    for current, fast_used in ((0, True), (1, False)):
        made.clear()
        vals = np.zeros(4, dtype=np.int64)
        outs = [(((5, 3), (3, 1)), {"dtype": torch.float32, "device": "cpu"}, 0, 1, None,
                 ((5, 3), (3, 1), torch.float32))]
        call = fastcall._module().FastCall(
            [tensor_guard(a, 0)], outs, [], [-1], 1, vals.ctypes.data, vals.size, 0, 0, vals,
            None, 0, torch.empty_strided, {}, (torch.Tensor, torch.nn.Parameter), LaunchError,
            "k", os.environ.get("FUSEC_BACKEND"), os.environ.get("FUSEC_INTERPRET"), False,
            fast, lambda c=current: c)
        out = call((a,))
        assert out.shape == (5, 3) and vals[1] == out.data_ptr()
        assert bool(made) == fast_used, (current, made)
    with pytest.raises(ValueError, match="current-device"):
        fastcall._module().FastCall(
            [tensor_guard(a, 0)], outs, [], [-1], 1, vals.ctypes.data, vals.size, 0, 0, vals,
            None, 0, torch.empty_strided, {}, (torch.Tensor, torch.nn.Parameter), LaunchError,
            "k", None, None, False, fast)


def test_a_tensor_of_known_layout_is_checked_for_its_type_and_alignment_only():
    """ARG_KNOWN_TENSOR (a fused region's input whose layout the graph guarantees): the
    pointer is written and the alignment and type still decide, the shape is not read."""
    module()
    vals = np.zeros(4, dtype=np.int64)
    a = torch.randn(8, 4)
    known = (fastcall.ARG_KNOWN_TENSOR,) + tensor_guard(a, 0)[1:]
    call = fastcall._module().FastCall(
        [known], [], [], [0], 1, vals.ctypes.data, vals.size, 0, 0, vals, None, 0,
        torch.empty_strided, {}, (torch.Tensor, torch.nn.Parameter), LaunchError, "k",
        os.environ.get("FUSEC_BACKEND"), os.environ.get("FUSEC_INTERPRET"))
    other = torch.randn(32)                     # the caller's promise is not re-checked
    assert call((other,)) is other and vals[0] == other.data_ptr()
    assert call((torch.randn(33)[1:],)) is NotImplemented      # 16-byte alignment
    assert call((a.numpy(),)) is NotImplemented                 # not a torch tensor
