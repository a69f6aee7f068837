"""Whole-tensor views (reshape, view, squeeze, unsqueeze, flatten, slices) on both CPU
backends against numpy in float64: a view of a param rides in its consumer's launch, a view
of a computed value waits for its own launch (and `fusec.explain` says why); bad views get
clear errors at their source line."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

import fusec
import fusec.language as fl
from conftest import assert_close, output_float64, random_array

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import tensor_kernels as K  # noqa: E402


def _inputs(shapes, seed=0):
    arrays = [random_array(s, "float32", seed=seed + i) for i, s in enumerate(shapes)]
    return [a for a, _ in arrays], [d for _, d in arrays]


@pytest.mark.parametrize("backend", ["cpu", "interpret"])
@pytest.mark.parametrize("case", K.VIEW_CASES, ids=lambda c: c[0].fn.__name__)
def test_views_against_numpy(backend, case):
    kernel, shapes, ints, reference, launches = case
    arrays, exact = _inputs(shapes)
    compiled = kernel.compile(*arrays, *ints, backend=backend)
    assert compiled.num_launches == launches
    assert_close(output_float64(compiled(*arrays, *ints)), reference(*exact, *ints), "float32",
                 kernel.fn.__name__)


@pytest.mark.parametrize("backend", ["cpu", "interpret"])
def test_symbolic_sizes_are_checked_on_every_call(backend):
    """softmax_of_reshaped views [M, N] as [2M, N/2]: one compile serves every even N, and
    a call with an odd N is refused (the element counts differ)."""
    for shape in ((7, 26), (3, 40), (1, 2)):
        (x,), (xd,) = _inputs([shape], seed=shape[1])
        got = K.softmax_of_reshaped.compile(x, backend=backend)(x)
        y = xd.reshape(shape[0] * 2, -1)
        e = np.exp(y - y.max(axis=1, keepdims=True))
        assert_close(output_float64(got), e / e.sum(axis=1, keepdims=True), "float32")
    compiled = K.softmax_of_reshaped.compile(np.ones((4, 26), np.float32), backend=backend)
    with pytest.raises(ValueError, match="must be equal"):
        compiled(np.ones((4, 27), np.float32))


def test_window_with_symbolic_and_clamped_bounds():
    x, xd = random_array((5, 9), "float32", seed=4)
    for k in (0, 3, 8, 20):
        assert_close(output_float64(K.window(x, k)), xd[:, k:8] + 0.5, "float32", f"k={k}")


def test_slices_clamp_like_python():
    @fusec.kernel
    def clamped(x):
        return x[-100:100, 5:2] + 1.0, x[::3, -1:] * 1.0

    x, xd = random_array((7, 13), "float32", seed=5)
    a, b = clamped(x)
    assert_close(output_float64(a), xd[-100:100, 5:2] + 1, "float32")
    assert_close(output_float64(b), xd[::3, -1:], "float32")


def test_a_reshape_of_a_computed_value_says_why_it_is_not_fused():
    x = np.ones((7, 13), np.float32)
    notes = K.reshape_of_normalized.compile(x).asm["tile"]
    assert "not fused" in notes and "reshape reads its operand from memory" in notes
    assert "is not computed at the view's indices" in notes
    assert "not fused" not in K.reshape_of_computed.compile(x).asm["tile"]


def test_unit_reshapes_fuse_as_expand_dims():
    """Inserting size-1 dims, or dropping keepdims ones, is no indexed view."""
    @fusec.kernel
    def unit(x):
        s = x.max(axis=1, keepdims=True).reshape(-1)
        return (x - s.reshape(x.shape[0], 1, 1).squeeze(2)).reshape(1, x.shape[0], -1)

    x, xd = random_array((6, 11), "float32", seed=6)
    compiled = unit.compile(x)
    assert "reshape(" not in compiled.asm["ir"] and compiled.num_launches == 1
    assert_close(output_float64(compiled(x)), (xd - xd.max(1, keepdims=True))[None],
                 "float32")


def _error(kernel, *args):
    with pytest.raises(fusec.CompilationError) as info:
        kernel(*args)
    return str(info.value)


def test_bad_views_are_compilation_errors_at_their_line():
    @fusec.kernel(static_shapes=True)
    def wrong_count(x):
        return x.reshape(5, 5)

    @fusec.kernel
    def two_free_sizes(x):
        return x.reshape(-1, -1)

    @fusec.kernel
    def squeeze_non_unit(x):
        return x.squeeze(0)

    @fusec.kernel
    def not_divisible(x):
        return x.reshape(-1, 5)

    @fusec.kernel
    def zero_step(x):
        return x[::0]

    @fusec.kernel
    def out_of_bounds(x):
        return x[:, 13]

    @fusec.kernel
    def tile_reshape(x):
        out = fusec.empty_like(x)
        for tm in fusec.tile(x.shape[0]):
            out[tm, :] = fl.reshape(x[tm, :], (-1,))
        return out

    x = np.ones((7, 13), np.float32)
    message = _error(wrong_count, x)
    assert ".reshape: cannot view a tensor of shape [7, 13] (91 elements) as [5, 5]" in message
    assert "return x.reshape(5, 5)" in message and "^" in message
    assert "only one size can be -1" in _error(two_free_sizes, x)
    assert "squeeze: dim 0 of a tensor of shape [x_s0, x_s1] has size x_s0, not 1" in \
        _error(squeeze_non_unit, x)
    assert "as [-1, 5]" in _error(not_divisible, x)
    assert "slice step must be positive" in _error(zero_step, x)
    assert "index 13 is out of bounds for dim 1 of size x_s1" in _error(out_of_bounds, x)
    assert "fl.reshape takes a whole tensor" in _error(tile_reshape, x)


def test_views_round_trip_through_the_text_form():
    for kernel, shapes, ints, _, _ in K.VIEW_CASES:
        arrays, _ = _inputs(shapes)
        asm = kernel.compile(*arrays, *ints, backend="interpret").asm
        for stage in ("ir", "fuse", "tile"):
            text = asm[stage]
            assert str(fusec.ir.parse(text)) == text, (kernel.fn.__name__, stage)


@pytest.mark.parametrize("case", K.VIEW_CASES, ids=lambda c: c[0].fn.__name__)
def test_the_interpreter_defines_the_untiled_views(case):
    """The reference semantics of reshape, slice, concat and take themselves: the traced IR,
    before the fuse and tile passes, interpreted on whole arrays."""
    from fusec.backends.common import bind_symbols, eval_size
    from fusec.backends.interpret.interpreter import run
    kernel, shapes, ints, reference, _ = case
    arrays, exact = _inputs(shapes)
    traced = fusec.ir.parse(kernel.compile(*arrays, *ints, backend="interpret").asm["ir"])
    ir_kernel = traced.kernel()
    params = list(arrays) + list(ints)
    symbols = bind_symbols(ir_kernel, params)
    outputs = [np.empty([eval_size(d, symbols) for d in op.results[0].type.shape], np.float32)
               for op in ir_kernel.regions[0].ops if op.name == "alloc"]
    assert any(op.name in ("reshape", "slice", "concat", "take", "take_along", "expand_dims")
               for op in ir_kernel.regions[0].ops)
    run(ir_kernel, params + outputs)
    assert_close(outputs[-1], reference(*exact, *ints), "float32", kernel.fn.__name__)


@pytest.mark.parametrize("backend", ["cpu", "interpret"])
def test_cat_of_slices_of_a_cast_param_reads_the_param(backend):
    """Rotary embeddings in bfloat16: the halves of x.to(float32) joined; a view of a cast of
    a param is the cast of the param's view, so it is one launch reading x where each half
    lies."""
    from conftest import as_input

    @fusec.kernel
    def rope(x, c, s):
        h = x.shape[1] // 2
        x32 = x.to(fl.float32)
        return x32 * c + fl.cat((x32[:, h:], x32[:, :h]), axis=1) * s

    xb, xd = random_array((9, 16), "bfloat16", seed=3)
    (c, s), (cd, sd) = _inputs([(9, 16), (9, 16)], seed=5)
    compiled = rope.compile(as_input(xb, "bfloat16"), c, s, backend=backend)
    assert compiled.num_launches == 1
    want = xd * cd + np.concatenate([xd[:, 8:], xd[:, :8]], 1) * sd
    assert_close(output_float64(compiled(as_input(xb, "bfloat16"), c, s)), want, "float32")


def test_bad_cats_are_compilation_errors_at_their_line():
    @fusec.kernel
    def sizes_differ(x, y):
        return fl.cat((x, y), axis=0)

    @fusec.kernel
    def dtypes_differ(x, y):
        return fl.cat((x, y.to(fl.float16)), axis=0)

    @fusec.kernel
    def bad_axis(x, y):
        return fl.cat((x, y), axis=2)

    @fusec.kernel
    def not_a_tuple(x, y):
        return fl.cat(x, axis=0)

    x, y = np.ones((7, 13), np.float32), np.ones((3, 5), np.float32)
    message = _error(sizes_differ, x, y)
    assert "fl.cat: tensor 1 has size" in message and "return fl.cat((x, y), axis=0)" in message
    assert "one dtype and rank" in _error(dtypes_differ, x, x)
    assert "axis must be an int in [-2, 2), got 2" in _error(bad_axis, x, x)
    assert "fl.cat takes a list or tuple of whole tensors" in _error(not_a_tuple, x, x)


def test_flip_errors_name_the_problem():
    @fusec.kernel
    def twice(x):
        return fl.flip(x, [0, -2])

    @fusec.kernel
    def out_of_range(x):
        return fl.flip(x, 2)

    @fusec.kernel
    def of_a_tile(x):
        for t in fusec.tile(x.shape[0]):
            x[t] = fl.flip(x[t], [0])
        return x
    x = np.ones((3, 4), np.float32)
    assert "fl.flip: dim listed twice in (0, -2)" in _error(twice, x)
    assert "fl.flip: dims must be ints in [-2, 2), got 2" in _error(out_of_range, x)
    assert "fl.flip takes a whole tensor" in _error(of_a_tile, x)


def test_take_errors_name_the_problem():
    @fusec.kernel
    def float_index(x):
        return fl.take(x, x, axis=0)

    @fusec.kernel
    def bad_axis(x, i):
        return fl.take(x, i, axis=-3)
    x = np.ones((3, 4), np.float32)
    assert "fl.take: the index must be an integer tensor, got tensor<f32>" in \
        _error(float_index, x)
    assert "fl.take: axis must be an int in [-2, 2), got -3" in \
        _error(bad_axis, x, np.zeros(2, np.int64))


def test_take_along_errors_name_the_problem():
    @fusec.kernel
    def wrong_rank(x, i):
        return fl.take_along(x, i, axis=0)

    @fusec.kernel
    def bad_axis(x, i):
        return fl.take_along(x, i, axis=2)
    x = np.ones((3, 4), np.float32)
    assert "fl.take_along: the index must be an integer tensor of x's rank (2), got " \
        "tensor<i64>" in _error(wrong_rank, x, np.zeros(3, np.int64))
    assert "fl.take_along: axis must be an int in [-2, 2), got 2" in \
        _error(bad_axis, x, np.zeros((3, 4), np.int64))


@fusec.kernel
def take_of_views(x, y, i):
    """Positions outside the axis of a view read 0, not what the tensor under the view
    holds there; int64 positions past 2**31 are outside, not wrapped."""
    a = fl.take(x[:, 2:5], (y * 1.0).to(fl.int32), axis=1)
    b = fl.take_along(x[:, 2:5], (y * 1.0).to(fl.int32)[None, :] + fl.zeros([4, 3],
                                                                             fl.int32), 1)
    c = fl.take(x.reshape(6, 4), (y + 1.0).to(fl.int32), axis=1)
    d = fl.take(x[0], i, axis=0)
    return a, b, c, d


@pytest.mark.parametrize("backend", ["cpu", "interpret"])
def test_positions_outside_a_view_read_zero(backend):
    x = np.arange(24, dtype=np.float32).reshape(4, 6)
    y = np.array([3, 0, 2], np.float32)
    i = np.array([2 ** 32 + 1, -2 ** 32 + 2, 1], np.int64)
    a, b, c, d = take_of_views.compile(x, y, i, backend=backend)(x, y, i)
    s = x[:, 2:5]
    assert output_float64(a).tolist() == [[0, r[0], r[2]] for r in s.tolist()]
    assert output_float64(b).tolist() == [[0, r[0], r[2]] for r in s.tolist()]
    r = x.reshape(6, 4)                      # positions 4, 1, 3
    assert output_float64(c).tolist() == [[0, row[1], row[3]] for row in r.tolist()]
    assert output_float64(d).tolist() == [0, 0, 1]
