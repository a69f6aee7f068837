"""The call cache on the GPU: repeated calls reuse a launch plan (only data pointers new)
and still compute the right thing; other geometries and streams are honoured."""
import importlib
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.gpu

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples"))


@pytest.fixture(params=["cuda", "ptx"])
def gpu_backend(request, monkeypatch):
    monkeypatch.setenv("FUSEC_BACKEND", request.param)
    return request.param


def _softmax_ref(x):
    x = x.double()
    return torch.softmax(x, dim=1)


def test_repeated_calls_read_new_data_and_write_new_outputs(gpu_backend):
    softmax = importlib.import_module("softmax").softmax
    for k in range(4):
        g = torch.Generator(device="cuda").manual_seed(k)
        x = torch.randn(67, 300, device="cuda", generator=g) * 3 - 1
        out = softmax(x)
        torch.testing.assert_close(out.double(), _softmax_ref(x), rtol=1e-5, atol=1e-6)
    assert len(softmax._calls) >= 1
    first, second = softmax(x), softmax(x)
    assert first.data_ptr() != second.data_ptr()        # each call its own output


def test_other_shapes_strides_and_scalars_miss_the_cache(gpu_backend):
    layernorm = importlib.import_module("layernorm").layernorm
    for m, n in [(5, 33), (5, 34), (130, 1000)]:
        x = torch.randn(m, n, device="cuda")
        w, b = torch.randn(n, device="cuda"), torch.randn(n, device="cuda")
        for eps in (1e-5, 0.5):
            got = layernorm(x, w, b, eps).double()
            want = torch.nn.functional.layer_norm(x.double(), (n,), w.double(), b.double(),
                                                  eps)
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    big = torch.randn(40, 64, device="cuda")[:, ::2]            # strided rows
    got = layernorm(big, torch.ones(32, device="cuda"), torch.zeros(32, device="cuda"), 1e-5)
    want = torch.nn.functional.layer_norm(big.double(), (32,), eps=1e-5)
    torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-5)


def test_cached_calls_launch_on_the_current_stream(gpu_backend):
    vector_add = importlib.import_module("vector_add").vector_add
    a = torch.randn(1 << 20, device="cuda")
    b = torch.randn(1 << 20, device="cuda")
    vector_add(a, b)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        out = vector_add(a, b)
        done = out + 0                      # ordered after the kernel on the side stream
    side.synchronize()
    np.testing.assert_array_equal(done.cpu().numpy(), (a + b).cpu().numpy())


def test_repeated_calls_take_the_native_path():
    from fusec import fastcall
    assert fastcall.status() == "native", fastcall.status()
    vector_add = importlib.import_module("vector_add").vector_add
    a, b = torch.randn(1000, device="cuda"), torch.randn(1000, device="cuda")
    vector_add(a, b)
    vector_add(a, b)
    assert type(vector_add._native).__name__ == "FastCall"


def test_interleaved_geometries_and_alignments_each_get_their_own_launch(gpu_backend):
    """The native path tried first checks shape, strides, dtype and alignment: calls that
    alternate between geometries never run with another's launch parameters."""
    vector_add = importlib.import_module("vector_add").vector_add
    base = torch.randn(4099, device="cuda") * 5 - 2
    other = torch.randn(4099, device="cuda")
    cases = [(base, other), (base[1:], other[1:]), (base[:1000], other[:1000]),
             (base[::3], other[::3]), (base.double(), other.double())]
    for _ in range(3):
        for x, y in cases:
            got = vector_add(x, y)
            torch.testing.assert_close(got.double(), x.double() + y.double())


def test_threads_calling_one_kernel_get_their_own_results(gpu_backend):
    import threading
    vector_add = importlib.import_module("vector_add").vector_add
    n = 1 << 16
    vector_add(torch.zeros(n, device="cuda"), torch.zeros(n, device="cuda"))
    failures = []

    def work(k):
        a = torch.full((n,), float(k), device="cuda")
        b = torch.arange(n, device="cuda", dtype=torch.float32)
        for _ in range(200):
            out = vector_add(a, b)
        if not torch.equal(out, a + b):
            failures.append(k)
    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures
