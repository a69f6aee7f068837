"""The tensor-core lowering (backends/cuda/mma.py, fragments.py) run on the CPU: the source
emitted for sm_80 with its cp.async / ldmatrix / mma.sync helpers emulated element by
element (tensor_core_emulation.py), against float64 references. Checks the staging (cp.async
and register paths), the fragment layouts, the warp tiling and the epilogues without a GPU;
the instructions themselves are checked on the device (tests/gpu/test_dot_mma_gpu.py)."""
from __future__ import annotations

import numpy as np
import pytest

import fusec
from conftest import as_input, assert_close, output_float64, random_array

import cuda_emulator
from dot_kernels import KERNELS

pytestmark = pytest.mark.skipif(cuda_emulator.compiler() is None,
                                reason="needs a host C++ compiler (g++)")


def run_emulated(name, mkn, dtype, blocks, warps, arch="sm_80", stages=2):
    """(emulated output as float64, float64 reference, emitted source)."""
    kernel, shapes, extra, reference, out_dtype = KERNELS[name]
    arrays = [random_array(s, dtype, seed=i + 1) for i, s in enumerate(shapes(*mkn))]
    args = [as_input(a, dtype) for a, _ in arrays] + extra
    ck = kernel.compile(*args, backend="interpret",
                        config=fusec.Config(blocks=blocks, warps=warps))
    emulated = cuda_emulator.Emulated(ck, warps, arch, stages)
    got = output_float64(emulated(*args))
    return got, reference(*[v for _, v in arrays]), emulated.source


def check(name, mkn, dtype, blocks, warps, copied: str, stages=2):
    """copied: the operands ("a", "b", "ab" or "") cp.async should stage."""
    got, want, source = run_emulated(name, mkn, dtype, blocks, warps, stages=stages)
    assert f"{stages} stages" in source
    assert f"fc_mma_{'bf16' if dtype == 'bfloat16' else 'f16'}(" in source
    for operand in "ab":
        assert (f"fc_cp_async_16({operand}_tile" in source) == (operand in copied), operand
    out_dtype = KERNELS[name][4] or dtype
    scale = max(1.0, np.sqrt(mkn[1]))          # sums of K products of 16-bit inputs
    assert_close(got / scale, want / scale, out_dtype, f"{name} {mkn} {dtype} {blocks}")
    return source


@pytest.mark.parametrize("mkn,dtype,blocks,warps,copied", [
    ((100, 72, 200), "bfloat16", [32, 32, 16], 4, ""),      # K, N not multiples of 16
    ((33, 48, 64), "float16", [32, 64, 16], 2, "ab"),       # aligned rows; 1 x 2 warps
    ((1, 16, 7), "bfloat16", [16, 8, 16], 1, "a"),          # one mma tile, ragged N
])
def test_bias_relu_epilogue_from_registers(mkn, dtype, blocks, warps, copied):
    check("bias_relu", mkn, dtype, blocks, warps, copied)


@pytest.mark.parametrize("stages", [3, 4])
@pytest.mark.parametrize("mkn,blocks,warps,copied", [
    ((37, 208, 48), [32, 32, 16], 2, "ab"),   # 13 K tiles, copy slots hoisted out of the loop
    ((20, 100, 24), [16, 16, 16], 1, ""),     # ragged K: the last tile half masked
    ((3, 32, 16), [16, 16, 16], 1, "ab"),     # fewer K tiles than stages
    ((37, 208, 48), [32, 32, 32], 2, "ab"),   # two K steps a tile: the next tile's first
    ((20, 100, 24), [16, 16, 32], 1, ""),     # fragments load across the barrier
    ((5, 32, 16), [16, 16, 64], 1, "ab"),     # one K tile, half of it masked
    ((37, 48, 48), [32, 32, 32], 2, "ab"),    # copied, ragged K: unchecked copies for the
    ((64, 80, 32), [32, 32, 32], 2, "ab"),    # interior tiles, checked ones for the last
])
@pytest.mark.parametrize("schedule", ["within", "across", "spread"])
def test_multistage_pipeline(mkn, blocks, warps, copied, stages, schedule, monkeypatch):
    """Each K-loop schedule (mma.py's switches): the copies before the multiplies, the next
    tile's first fragments across the barrier, the copies spread over the K steps."""
    from fusec.backends.cuda import mma
    for name, value in mma.SCHEDULES[schedule].items():
        monkeypatch.setattr(mma, name, value)
    source = check("bias_relu", mkn, "bfloat16", blocks, warps, copied, stages)
    spread = schedule == "spread" and blocks[2] > 16 and copied == "ab"
    assert ("(share 2 of" in source) == spread, schedule


def test_stages_past_48_kb_use_dynamic_shared_memory():
    # 128x128x32 in 3 stages: 55.5 KB of staged operands on sm_80 (opt-in up to 163 KB)
    got, want, source = run_emulated("bias_relu", (130, 100, 136), "bfloat16",
                                     [128, 128, 32], 4, stages=3)
    assert "3 stages" in source and "fc_shared + " in source     # carved from one array
    assert_close(got / 10, want / 10, "bfloat16", "bias_relu 128x128x32 3 stages")


def test_copy_slots_are_worked_out_before_the_k_loop():
    _, _, source = run_emulated("bias_relu", (64, 64, 64), "bfloat16", [32, 32, 16], 2,
                                stages=3)
    loop = source[source.index("for (int tile_begin"):]
    assert "copy_src" in source[:source.index("for (int tile_begin")]
    assert " * a0_stride0" not in loop.split("fc_mma_bf16")[0]     # rows: outside the loop


def test_interior_k_tiles_copy_without_checks(monkeypatch):
    """A K tile inside every bound copies its chunks unpredicated (one uniform branch a
    tile, its bounds worked out before the loop); the last, ragged one keeps the checks
    (the copies in one block: the schedule without spreading)."""
    from fusec.backends.cuda import mma
    monkeypatch.setattr(mma, "SPREAD_COPIES", False)
    got, want, source = run_emulated("bias_relu", (64, 80, 64), "bfloat16", [32, 32, 32],
                                     2, stages=3)
    assert_close(got / 9, want / 9, "bfloat16", "bias_relu, K = 2.5 tiles")
    before, loop = source.split("for (int tile_begin", 1)
    assert "k_end" in before and "copy_all_ok" in before
    inside, checked = loop.split("else", 1)
    assert "k_end" in inside and "copy_ok" not in inside.split("{", 2)[2]
    assert inside.count(", true);") == 4            # a and b: 32x16 and 16x32 at 64 threads
    assert ", true);" not in checked.split("fc_cp_async_commit")[0]


def test_plain_accumulator_store_and_odd_n_tiles():
    # 2 x 1 warps, each 3 n8 tiles wide (ldmatrix .x2), M ragged, N not a multiple of BN
    check("plain", (40, 48, 32), "bfloat16", [32, 24, 16], 2, "ab")


def test_transposed_operand_is_staged_through_registers():
    check("nt", (48, 32, 40), "bfloat16", [16, 32, 16], 2, "a")


def test_loaded_accumulator_and_an_epilogue_value_read_twice():
    got, want, source = run_emulated("add_silu", (32, 32, 48), "float16", [32, 16, 16], 2)
    # x is read twice by the one store only: computed once per element in the store's
    # loop on the fragment layout, not held in an array (backends/joint_stores.py)
    assert "float x_0[" not in source and "x_0 =" in source
    assert_close(got / 6, want / 6, "float16", "add_silu")


@pytest.mark.parametrize("arch", ["sm_80", ""])
def test_reductions_of_the_accumulator_read_it_from_a_buffer(arch):
    """(arch "": the FMA path, whose loop result is not one value over a Lane group.)"""
    got, want, source = run_emulated("softmax", (40, 32, 30), "bfloat16", [32, 32, 16], 4,
                                     arch)
    assert ("acc_tile" in source and "fc_mma_bf16(" in source) == bool(arch)
    assert_close(got, want, "float32", "softmax")


def test_the_large_tile_policy_config_on_sm_90():
    """The fixed policy's large tiles (fusec/compiler.py TENSOR_CORE_LARGE: 256x128x64, 8
    warps of 64x64, 3 stages in the whole sm_90 shared memory, copies spread), on a
    product with ragged M, N and K: edge programs and the last K tile keep their checks."""
    kernel, shapes, extra, reference, _ = KERNELS["bias_relu"]
    mkn = (300, 208, 144)                       # M, K ragged; rows 16-byte aligned
    arrays = [random_array(s, "bfloat16", seed=i + 3) for i, s in enumerate(shapes(*mkn))]
    args = [as_input(a, "bfloat16") for a, _ in arrays] + extra
    ck = kernel.compile(*args, backend="interpret",
                        config=fusec.Config(blocks=[256, 128, 64], warps=8))
    emulated = cuda_emulator.Emulated(ck, 8, "sm_90", 3)
    assert "3 stages" in emulated.source and "(share 4 of 4)" in emulated.source
    assert "__launch_bounds__(256)" in emulated.source
    got = output_float64(emulated(*args))
    want = reference(*[v for _, v in arrays])
    assert_close(got / 15, want / 15, "bfloat16", "bias_relu 256x128x64 / 8 warps, sm_90")


def test_programs_walk_the_grid_in_groups_of_rows():
    """A launch with a dot walks its tile grid GROUP_ROWS rows at a time (emit.py): 19 rows
    of tiles (two full groups and a short one) by 13 columns, every tile computed once."""
    from fusec.backends.cuda import emit
    got, want, source = run_emulated("bias_relu", (300, 32, 200), "bfloat16", [16, 16, 16], 1)
    assert emit.GROUP_ROWS == 8 and "groups of 8 rows" in source
    assert_close(got / 6, want / 6, "bfloat16", "bias_relu over 19 x 13 programs")


@pytest.mark.parametrize("name", ["batched", "batched_shared_b"])
@pytest.mark.parametrize("mkn,blocks,warps", [((37, 48, 40), [1, 32, 32, 16], 2),
                                              ((16, 32, 8), [1, 16, 8, 16], 1)])
def test_batched_whole_tensor_matmul_one_batch_element_a_program(name, mkn, blocks, warps):
    """a @ b of 3-D whole tensors: the tile pass gives each program one batch element
    (the config's first block, fixed at 1) and a 2-D dot the tensor cores take."""
    got, want, source = run_emulated(name, mkn, "bfloat16", blocks, warps)
    assert "fc_mma_bf16(" in source
    assert_close(got / np.sqrt(mkn[1]), want / np.sqrt(mkn[1]), "bfloat16", name)
