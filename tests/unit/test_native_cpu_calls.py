"""The native call path of CPU kernels (fastcall.c with native_pool.c): a repeated call of a
kernel on torch CPU tensors is one C call that checks the arguments, allocates the outputs
and runs the compiled functions without the GIL, their programs spread over the OpenMP
team torch uses (or fusec's own workers). Checked against the Python call path and the
numpy reference: serial and parallel launches, several launches, zeroed outputs, scratch
arenas, threads calling at once, a forked child, argument changes."""
from __future__ import annotations

import multiprocessing
import os
import threading
import types

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import fusec  # noqa: E402
import fusec.language as fl  # noqa: E402
from fusec import fastcall  # noqa: E402
from fusec.backends.llvm.runtime import NATIVE_PARALLEL_WORK  # noqa: E402

pytestmark = pytest.mark.skipif(fastcall.status() != "native", reason=fastcall.status())


def row_softmax(x):
    out = fusec.empty_like(x)
    M, N = x.shape
    for tm in fusec.tile(M):
        row = x[tm, :]
        e = fl.exp(row - fl.max(row, axis=1, keepdims=True))
        out[tm, :] = e / fl.sum(e, axis=1, keepdims=True)
    return out


def scaled_add(x, y, alpha):
    out = fusec.empty_like(x)
    M, N = x.shape
    for tm, tn in fusec.tile((M, N)):
        out[tm, tn] = x[tm, tn] + alpha * y[tm, tn]
    return out


def column_sums(x):
    """A zeroed output added into by every row tile (atomics), then a second launch."""
    M, N = x.shape
    sums = fusec.zeros((N,), fl.float32)
    for tm, tn in fusec.tile((M, N)):
        fl.atomic_add(sums[tn], fl.sum(x[tm, tn], axis=0))
    return sums


def softmax_reference(x):
    """In float64, by numpy alone (also in a forked child, where torch's parallel
    operators may hang): x a numpy array or a torch CPU tensor."""
    x = np.asarray(x, dtype=np.float64)
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def native_of(kernel, *args):
    """The kernel's native call after one call with these arguments (the call that makes
    it), failing when the call did not take the native path."""
    kernel(*args)
    native = kernel._native
    assert native is not None and type(native) is not types.FunctionType, \
        "the second call should go through fastcall.c"
    return native


@pytest.mark.parametrize("rows", [1, 7, 100, 1000, 4097])
def test_softmax_rows_match_the_reference_on_every_call(rows):
    kernel = fusec.kernel(row_softmax)
    x = torch.randn(rows, 300) * 4
    native_of(kernel, x)
    for _ in range(3):
        x = torch.randn(rows, 300) * 4 - 1       # fresh data, fresh pointers
        out = kernel(x)
        np.testing.assert_allclose(out.numpy(), softmax_reference(x), rtol=2e-6, atol=1e-7)


def test_native_and_python_paths_give_identical_bits():
    kernel = fusec.kernel(row_softmax)
    x = torch.randn(513, 1000)
    native_of(kernel, x)
    fast = kernel(x)
    slow = kernel.compile(x)(x)                  # CompiledKernel.run: the Python launches
    assert torch.equal(fast, slow)


def test_a_large_launch_is_spread_over_the_cores():
    kernel = fusec.kernel(scaled_add)
    x, y = torch.randn(2048, 1031), torch.randn(2048, 1031)
    native_of(kernel, x, y, 0.5)
    compiled = kernel.compile(x, y, 0.5)
    cpu_kernel = compiled._run.__self__
    _, _, launches = cpu_kernel.native_plan(
        [x.numpy(), y.numpy(), 0.5, np.empty((2048, 1031), np.float32)],
        NATIVE_PARALLEL_WORK)
    if os.cpu_count() and os.cpu_count() > 1:
        assert launches[0][2] > 1
    x, y = torch.randn(2048, 1031), torch.randn(2048, 1031)
    np.testing.assert_array_equal(kernel(x, y, 0.5).numpy(), (x + 0.5 * y).numpy())


def test_a_zeroed_output_starts_from_zero_on_every_call():
    kernel = fusec.kernel(column_sums)
    x = torch.randn(3000, 70)
    native_of(kernel, x)
    for _ in range(3):
        x = torch.randn(3000, 70)
        np.testing.assert_allclose(kernel(x).numpy(), x.double().sum(0).numpy(),
                                   rtol=1e-4, atol=1e-3)


def test_a_changed_argument_leaves_the_native_call_for_the_full_dispatch():
    kernel = fusec.kernel(scaled_add)
    x, y = torch.randn(64, 33), torch.randn(64, 33)
    native = native_of(kernel, x, y, 2.0)
    assert native((x, y, 3.0)) is NotImplemented
    np.testing.assert_array_equal(kernel(x, y, 3.0).numpy(), (x + 3.0 * y).numpy())
    bigger = torch.randn(65, 33), torch.randn(65, 33)
    np.testing.assert_array_equal(kernel(*bigger, 2.0).numpy(),
                                  (bigger[0] + 2.0 * bigger[1]).numpy())


def test_threads_calling_at_once_each_get_their_own_results():
    kernel = fusec.kernel(row_softmax)
    x = torch.randn(300, 257)
    native_of(kernel, x)
    inputs = [torch.randn(300, 257) for _ in range(8)]
    results: dict[int, torch.Tensor] = {}
    errors = []

    def work(i):
        try:
            for _ in range(20):
                results[i] = kernel(inputs[i])
        except Exception as exc:           # reported below: a thread's exception is lost
            errors.append(exc)
    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for i, x in enumerate(inputs):
        np.testing.assert_allclose(results[i].numpy(), softmax_reference(x), rtol=2e-6,
                                   atol=1e-7)


def _child_softmax(queue):
    # numpy only besides the kernel: torch's own parallel operators may hang in a child of a
    # process that used its OpenMP threads (GNU OpenMP is not fork-safe)
    kernel = fusec.kernel(row_softmax)
    x = np.random.default_rng(1).standard_normal((2000, 400)).astype(np.float32)
    kernel(torch.from_numpy(x))
    out = kernel(torch.from_numpy(x)).numpy()
    queue.put(float(np.abs(out - softmax_reference(x)).max()))


def test_a_forked_child_runs_parallel_launches():
    kernel = fusec.kernel(row_softmax)
    x = torch.randn(2000, 400)
    native_of(kernel, x)
    kernel(x)                                  # the parent has used its threads
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_child_softmax, args=(queue,))
    child.start()
    child.join(60)
    if child.is_alive():
        child.kill()
        pytest.fail("the forked child hung in a parallel launch")
    assert child.exitcode == 0
    assert queue.get(timeout=5) < 1e-6


def test_who_runs_the_cpu_launches_is_reported():
    threads = fastcall.cpu_threads()
    assert threads == "fusec" or threads.startswith("openmp /")


def test_a_compiled_kernel_calls_natively_after_its_first_call_and_still_validates():
    kernel = fusec.kernel(scaled_add)
    x, y = torch.randn(100, 37), torch.randn(100, 37)
    compiled = kernel.compile(x, y, 1.5)
    np.testing.assert_array_equal(compiled(x, y, 1.5).numpy(), (x + 1.5 * y).numpy())
    assert compiled._native_call and type(compiled._native_call) is not types.FunctionType
    x, y = torch.randn(100, 37), torch.randn(100, 37)
    np.testing.assert_array_equal(compiled(x, y, 1.5).numpy(), (x + 1.5 * y).numpy())
    np.testing.assert_array_equal(compiled(x, y, 2.5).numpy(), (x + 2.5 * y).numpy())
    with pytest.raises(ValueError, match="dtype|float64"):    # not its specialization
        compiled(x.double(), y.double(), 1.5)


def test_numpy_calls_run_their_parallel_launches_on_the_native_threads():
    from fusec.backends.llvm import runtime
    kernel = fusec.kernel(scaled_add)
    rng = np.random.default_rng(3)
    x, y = (rng.standard_normal((2048, 1031)).astype(np.float32) for _ in range(2))
    for _ in range(3):
        np.testing.assert_array_equal(kernel(x, y, 0.5), x + np.float32(0.5) * y)
    assert runtime._native_runner is not None      # set when the CPU kernel was built


def test_torch_set_num_threads_one_runs_launches_on_the_calling_thread():
    kernel = fusec.kernel(row_softmax)
    x = torch.randn(4000, 300)
    native_of(kernel, x)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        x = torch.randn(4000, 300)
        out = kernel(x)                    # the programs in one range: still every row
    finally:
        torch.set_num_threads(before)
    np.testing.assert_allclose(out.numpy(), softmax_reference(x), rtol=2e-6, atol=1e-7)


def scale_rows_in_place(x, s):
    M, N = x.shape
    for tm, tn in fusec.tile((M, N)):
        x[tm, tn] = x[tm, tn] * s
    return x


def test_numpy_arrays_take_the_native_path_too():
    kernel = fusec.kernel(row_softmax)
    rng = np.random.default_rng(7)
    x = rng.standard_normal((300, 130)).astype(np.float32)
    native_of(kernel, x)
    for _ in range(3):
        x = rng.standard_normal((300, 130)).astype(np.float32) * 3
        out = kernel(x)
        assert type(out) is np.ndarray and out.dtype == np.float32
        np.testing.assert_allclose(out, softmax_reference(x), rtol=2e-6, atol=1e-7)
    strided = rng.standard_normal((300, 260)).astype(np.float32)[:, ::2]   # another geometry
    np.testing.assert_allclose(kernel(strided), softmax_reference(strided), rtol=2e-6,
                               atol=1e-7)


def test_numpy_zeroed_outputs_and_written_arguments():
    sums = fusec.kernel(column_sums)
    rng = np.random.default_rng(8)
    x = rng.standard_normal((3000, 70)).astype(np.float32)
    native_of(sums, x)
    for _ in range(2):
        x = rng.standard_normal((3000, 70)).astype(np.float32)
        np.testing.assert_allclose(sums(x), x.astype(np.float64).sum(0), rtol=1e-4, atol=1e-3)
    scale = fusec.kernel(scale_rows_in_place)
    y = rng.standard_normal((64, 40)).astype(np.float32)
    native_of(scale, y.copy(), 2.0)
    z = y.copy()
    assert scale(z, 2.0) is z
    np.testing.assert_array_equal(z, y * np.float32(2.0))
    frozen = y.copy()
    frozen.flags.writeable = False                 # written by the kernel: refused, not run
    with pytest.raises(ValueError, match="read-only"):
        scale(frozen, 2.0)
    np.testing.assert_array_equal(frozen, y)
