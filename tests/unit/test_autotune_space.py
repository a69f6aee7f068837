"""The autotuner's view of a kernel (facts read from two traces) and its search space:
surviving configs fit the hardware, respect the extents and the tensor-core multiples."""
from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest

import fusec
import fusec.language as fl
from fusec.autotune import block_cost, space
from fusec.autotune.machine import cpu_machine, gpu_machine
from fusec.autotune.space import MAX_CANDIDATES, next_pow2
from fusec.compiler import TILE_ELEMENTS_CAP, _max_tile_elements, autotune_facts, trace
from fusec.specialize import describe

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples"))
from softmax import softmax  # noqa: E402


@fusec.kernel
def matmul(a, b):
    M, K = a.shape
    out = fusec.empty([M, b.shape[1]], fl.float32)
    for tm, tn in fusec.tile([M, b.shape[1]]):
        acc = fl.zeros([tm, tn], fl.float32)
        for tk in fusec.tile(K):
            acc += fl.dot(a[tm, tk], b[tk, tn])
        out[tm, tn] = acc
    return out


@fusec.kernel
def column_sum(x):
    M, N = x.shape
    out = fusec.empty([N], fl.float32)
    for tn in fusec.tile(N):
        acc = fl.zeros([tn], fl.float32)
        for tm in fusec.tile(M, block=16):
            acc += fl.sum(x[tm, tn], axis=0)
        out[tn] = acc
    return out


@fusec.kernel
def shape_depends_on_block(x):
    out = fusec.empty_like(x)
    for t in fusec.tile(x.shape[0]):
        if t.block > 2000:                  # the probe trace takes this branch
            out[t] = (x[t] + 0.0) * 2.0
        else:
            out[t] = x[t] * 2.0
    return out


def params(kernel, *args):
    return [describe(p.name, v, False, False)[1] for p, v in zip(kernel.params, args)]


def spec(*shape):
    return fusec.TensorSpec(shape, fl.float32)


CASES = {"softmax": (softmax, [spec(4096, 1000)]),
         "matmul": (matmul, [spec(300, 200), spec(200, 500)]),
         "column_sum": (column_sum, [spec(1000, 77)])}
GPU = gpu_machine(None, "sm_90")        # the labelled H100-class figures: no GPU needed
CPU = cpu_machine(serial_work=1 << 16)
CAPS = {id(CPU): TILE_ELEMENTS_CAP["cpu"], id(GPU): TILE_ELEMENTS_CAP["cuda"]}


@pytest.fixture(scope="module")
def facts():
    return {name: autotune_facts(k.fn, params(k, *args)) for name, (k, args) in CASES.items()}


def test_facts_read_the_tile_dims(facts):
    f = facts["matmul"]
    assert [(d.parallel, d.extent, d.fixed) for d in f.dims] == \
        [(True, 300, False), (True, 500, False), (False, 200, False)]
    assert f.fitted and f.has_dot and f.dot_dims == {0, 1, 2}
    assert facts["softmax"].full_extents == (1024,)            # the ':' over 1000 columns
    assert facts["softmax"].reduction_lengths == (1024,)
    col = facts["column_sum"]
    assert [(d.parallel, d.fixed, d.block) for d in col.dims] == [(True, False, 1024),
                                                                 (False, True, 16)]


@pytest.mark.parametrize("name,blocks", [("matmul", [16, 64, 32]), ("matmul", [1, 256, 8]),
                                         ("softmax", [3]), ("column_sum", [64, 16])])
def test_fitted_tile_sizes_match_a_real_trace(facts, name, blocks):
    kernel, args = CASES[name]
    module = trace(kernel.fn, params(kernel, *args), blocks)[0]
    assert facts[name].tile_elements(blocks) == _max_tile_elements(module)


def test_a_kernel_whose_structure_follows_its_blocks_is_not_modelled():
    f = autotune_facts(shape_depends_on_block.fn, params(shape_depends_on_block, spec(5000)))
    assert not f.fitted
    assert space.candidates(f, CPU, 16384) == []


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("machine", [CPU, GPU], ids=["cpu", "gpu"])
def test_survivors_fit_the_machine_and_the_extents(facts, name, machine):
    f = facts[name]
    cap = CAPS[id(machine)]
    found = space.candidates(f, machine, cap)
    if not found:                 # only when even blocks of 1 make tiles beyond the cap
        assert f.tile_elements(f.full_blocks([1] * len(f.dims))) > cap
        return
    assert len(found) <= MAX_CANDIDATES
    estimates = [c.estimate for c in found]
    assert estimates == sorted(estimates) and all(math.isfinite(e) for e in estimates)
    for c in found:
        blocks = c.config.blocks
        for d in f.dims:
            if d.fixed:
                assert blocks[d.dim] == d.block
            else:
                assert blocks[d.dim] <= max(next_pow2(d.extent), 16)
                assert blocks[d.dim] & (blocks[d.dim] - 1) == 0       # a power of two
        (work,) = f.work(blocks)
        assert work.tile_elements <= cap
        if machine.kind == "gpu":
            r = block_cost.block_resources(work, machine, c.config.warps, c.config.stages,
                                           f.has_dot)
            assert r.fits and r.resident >= 1
            assert r.registers * r.threads <= machine.regs_per_block
            assert r.tiles.shared <= machine.smem_per_block


def test_dot_dims_take_tensor_core_multiples_on_gpus(facts):
    found = space.candidates(facts["matmul"], GPU, TILE_ELEMENTS_CAP["cuda"])
    assert all(b % space.TENSOR_CORE_MULTIPLE == 0 for c in found for b in c.config.blocks)
    assert {c.config.stages for c in found} <= set(space.DOT_STAGES)
    on_cpu = space.candidates(facts["matmul"], CPU, TILE_ELEMENTS_CAP["cpu"], limit=10 ** 6)
    assert any(b < 16 for c in on_cpu for b in c.config.blocks)   # no such rule on CPUs


def test_grids_that_leave_sms_idle_are_dropped(facts):
    for c in space.candidates(facts["softmax"], GPU, TILE_ELEMENTS_CAP["cuda"]):
        (work,) = facts["softmax"].work(c.config.blocks)
        assert work.programs >= GPU.units
    unpruned = space.enumerate_space(facts["softmax"], GPU)
    assert any(facts["softmax"].work(c.blocks)[0].programs < GPU.units for c in unpruned)


def test_the_default_policy_is_recomputed_from_the_facts(facts):
    from fusec.compiler import default_config, trace_with_default_blocks
    for name, (kernel, args) in CASES.items():
        for backend in ("cpu", "cuda"):
            _, _, blocks, _ = trace_with_default_blocks(
                kernel.fn, params(kernel, *args), TILE_ELEMENTS_CAP[backend])
            assert list(default_config(facts[name], backend, fit_registers=False).blocks) \
                == blocks, (name, backend)


def test_the_cuda_default_takes_fewer_rows_where_register_tiles_pass_the_budget(facts):
    """softmax 4096 x 1000 (the CASES row): 4 rows of 1024 at 4 warps hold two tiles of 32
    a thread; the CUDA default halves the rows until a thread holds at most 32."""
    from fusec.compiler import default_config
    f = facts["softmax"]
    fixed = default_config(f, "cuda", fit_registers=False)
    fitted = default_config(f, "cuda")
    assert space.register_tile_elements(f, fixed) > space.REGISTER_TILE_BUDGET
    assert space.register_tile_elements(f, fitted) <= space.REGISTER_TILE_BUDGET
    assert fitted.blocks[0] < fixed.blocks[0] and fitted.warps == fixed.warps
    assert default_config(f, "cpu").blocks == default_config(f, "cpu", fit_registers=False).blocks
    columns = facts["column_sum"]                  # no register tiles: unchanged
    assert space.register_tile_elements(columns, default_config(columns, "cuda")) == 0
    assert default_config(columns, "cuda") == default_config(columns, "cuda",
                                                             fit_registers=False)


@fusec.kernel
def three_matmuls(a, b, c, d):
    """Three launches (the second and third matmuls are not fused): nine tile dims."""
    return ((a @ b) @ c) @ d


def test_a_kernel_of_many_launches_varies_each_launch_apart():
    """The product of every launch's choices would be ~10^8 rows; each launch's dims vary
    on their own instead, and the space stays within MAX_COMBINATIONS per launch."""
    f = autotune_facts(three_matmuls.fn, params(three_matmuls, spec(300, 200), spec(200, 500),
                                                spec(500, 300), spec(300, 400)))
    assert f.launches == 3
    choices = space.block_choices(f, CPU, CAPS[id(CPU)])
    assert math.prod(len(v) for v in choices.values()) > space.MAX_COMBINATIONS
    rows = space.enumerate_space(f, CPU, None)
    assert len(rows) <= f.launches * space.MAX_COMBINATIONS
    launch = {d.dim: d.launch for d in f.dims}
    base = f.full_blocks([d.block for d in f.dims])
    for c in rows:          # at most one launch's blocks differ from the base
        moved = {launch[d.dim] for d, b in zip(f.dims, f.full_blocks(c.blocks))
                 if b != base[d.dim] and not d.fixed}
        assert len(moved) <= 1, c
    assert space.candidates(f, CPU, CAPS[id(CPU)])


def test_launches_vary_apart_from_the_default_config_and_their_bests_join():
    """In a kernel of several launches whose joint space is too large, the other launches
    keep the default config's blocks while one launch's vary (the traced blocks can be past
    the tile cap: a region's column sums traced at 1024x1024 left only the default config);
    then one more candidate takes each launch's best at once."""
    import numpy as np
    from fusec.compiler import default_config
    f = autotune_facts(three_matmuls.fn, params(three_matmuls, spec(300, 200), spec(200, 500),
                                                spec(500, 300), spec(300, 400)))
    cap = CAPS[id(GPU)]
    default = default_config(f, "cuda")
    found = space.candidates(f, GPU, cap, base=default)
    assert len(found) > 1
    launch = {d.dim: d.launch for d in f.dims}
    base = f.full_blocks(default.blocks)
    moved = [{launch[d.dim] for d, b in zip(f.dims, f.full_blocks(c.config.blocks))
              if b != base[d.dim]} for c in found]
    assert any(len(m) > 1 for m in moved), found             # the joined row
    for c in found:
        row = np.array([f.full_blocks(c.config.blocks)], float)
        assert f.tile_elements(row)[0] <= cap, c
    traced_base = space._base_row(f, cap, None)               # no default given: shrunk
    assert f.tile_elements(traced_base[None, :])[0] <= cap


def test_fit_to_extents_moves_blocks_outward_within_a_launch():
    # [8, 512] over rows of 64: the last dim holds 64, the factor 8 goes to the rows
    assert space.fit_to_extents({0: 8, 1: 512}, [(0, 1000, 0), (1, 64, 0)]) == {0: 64, 1: 64}
    # a carry past an extent moves on outward; fixed dims (absent) are passed over
    got = space.fit_to_extents({0: 1, 2: 8, 3: 512},
                               [(0, 9, 0), (1, 5, 0), (2, 4, 0), (3, 16, 0)])
    assert got == {0: 16, 2: 4, 3: 16}       # 16: the next power of two of 9
    # launches apart; blocks within their extents unchanged
    assert space.fit_to_extents({0: 512, 1: 8}, [(0, 3000, 0), (1, 2, 1)]) == {0: 512, 1: 2}


@fusec.kernel
def scaled(x):
    return x * 2.0


@pytest.mark.parametrize("shape,blocks", [
    ((8, 512, 2048), [1, 8, 512]),       # dims before the last two: one a program
    ((64, 100), [32, 128]),              # short rows: the tile holds more of them
    ((8, 512, 16, 64), [1, 4, 16, 64]),  # attention-shaped: the factor moves outward
    ((16384, 8192), [8, 512]),
])
def test_the_fixed_policy_fills_its_tiles(shape, blocks):
    ck = scaled.compile(fusec.TensorSpec(shape, "bfloat16"), backend="interpret")
    assert list(ck.config.blocks) == blocks


@pytest.mark.parametrize("sizes", [(10, 13, 5000, 9000), (5000, 9000, 13, 10)])
def test_blocks_fitted_to_a_size_hold_for_its_power_of_two_bucket_only(sizes):
    """Whichever size comes first, a size in another bucket below the policy's block
    compiles its own blocks; sizes past it share one kernel."""
    k = fusec.kernel(scaled.fn, autotune="default")
    for n in sizes:
        x = np.ones(n, np.float32)
        np.testing.assert_array_equal(k(x), x * 2)
    blocks = sorted(tuple(c.config.blocks) for c in k._compiled.values())
    assert blocks == [(16,), (1024,)], blocks


def test_the_fp32_dot_policy_is_guarded_by_the_sizes_it_fitted():
    a, b = fusec.TensorSpec((300, 64), "float32"), fusec.TensorSpec((64, 5), "float32")
    fixed = fusec.kernel(matmul.fn, autotune="default")     # the model's picks key on
    ck = fixed.compile(a, b, target="sm_90", backend="cuda")  # every extent already
    assert list(ck.config.blocks) == [128, 8, 32]            # 512 columns fitted to 5
    assert {str(g) for g in ck.guards} == {"Min(512, b_s1)", "Min(4096, a_s0)"}
