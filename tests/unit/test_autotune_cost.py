"""The analytic cost model's monotonic properties and the rank correlation it reports."""
from __future__ import annotations

import math

import pytest

from fusec.autotune import block_cost, cost
from fusec.autotune.facts import LaunchWork
from fusec.autotune.machine import cpu_machine, gpu_machine
from fusec.autotune.hardware import CPUInfo

GPU = gpu_machine(None, "sm_90")
CPU = cpu_machine(CPUInfo("test-cpu", 8, 512, 48 << 10, 2 << 20, 32 << 20),
                  serial_work=1 << 16)


def launch(programs, bytes_per_program, work_per_program=0.0, rows=1, vector=1024,
           buffer=4096.0):
    """A streaming launch: each program reads its bytes in `rows` runs."""
    return LaunchWork(programs=programs, work=work_per_program, bytes=bytes_per_program,
                      buffer_bytes=buffer, tile_elements=1024, iterations=0, loop_bytes=0.0,
                      work_parts=((work_per_program, 1024, vector),),
                      accesses=((bytes_per_program, bytes_per_program / rows),))


@pytest.mark.parametrize("machine", [CPU, GPU], ids=["cpu", "sm_90"])
def test_more_bytes_take_more_time(machine):
    times = [cost.estimate([launch(4096, b)], machine) for b in (1e4, 2e4, 4e4, 8e4)]
    assert times == sorted(times) and times[0] < times[-1]


@pytest.mark.parametrize("machine", [CPU, GPU], ids=["cpu", "sm_90"])
def test_more_work_takes_more_time(machine):
    times = [cost.estimate([launch(4096, 1e3, w)], machine) for w in (1e5, 1e6, 1e7)]
    assert times == sorted(times) and times[0] < times[-1]


@pytest.mark.parametrize("machine", [CPU, GPU], ids=["cpu", "sm_90"])
def test_a_grid_smaller_than_the_machine_is_slower(machine):
    total = 64e6                           # the same bytes and work over fewer programs
    small = machine.units // 2
    full = machine.units * 8
    assert cost.estimate([launch(small, total / small, total / small)], machine) > \
        cost.estimate([launch(full, total / full, total / full)], machine)


def test_wave_quantization_on_gpus():
    one_wave = cost.estimate([launch(GPU.units, 1e6)], GPU, warps=32)   # one program per SM
    spill_over = cost.estimate([launch(GPU.units + 1, 1e6)], GPU, warps=32)
    assert spill_over > 1.8 * one_wave


def test_short_rows_and_idle_vector_lanes_cost_on_cpus():
    long_rows = cost.estimate([launch(1024, 1e5, 1e6, rows=8)], CPU)
    assert cost.estimate([launch(1024, 1e5, 1e6, rows=512)], CPU) > long_rows
    assert cost.estimate([launch(1024, 1e5, 1e6, vector=2)], CPU) > 4 * long_rows


def test_small_work_runs_on_one_core():
    # below the runtime's threshold every program runs on the calling thread
    small = launch(4, 100.0)
    assert cost.cpu_launch_seconds(small, CPU) == pytest.approx(
        4 * float(cost.cpu_launch_seconds(launch(1, 100.0), CPU)))


def test_programs_that_do_not_fit_an_sm_are_infeasible():
    many_threads = launch(10, 1.0)
    assert math.isinf(cost.estimate([many_threads], GPU, warps=64))     # 2048 threads
    assert math.isfinite(cost.estimate([many_threads], GPU, warps=32))


def row_program(programs, elements, materialized=2, eligible=1):
    """A softmax-like program: `elements` of a bf16 row in, out, two float tiles of it
    materialized, two row reductions."""
    return LaunchWork(programs=programs, work=20.0 * elements, bytes=4.0 * elements,
                      buffer_bytes=0.0, tile_elements=elements, iterations=0, loop_bytes=0.0,
                      work_parts=((20.0 * elements, elements, elements),),
                      accesses=((4.0 * elements, 2.0 * elements),),
                      materialized=((materialized, elements, 4, 1, eligible),),
                      reductions=((2, 1, 1, elements, 1),))


def test_rows_kept_in_registers_beat_rows_spilled_to_buffers():
    row = row_program(32768, 4096)
    in_registers = block_cost.block_resources(row, GPU, 4)          # 32 elements a thread
    spilled = block_cost.block_resources(row, GPU, 2)               # 64: shared memory
    assert in_registers.tiles.shared < 1024 < spilled.tiles.shared
    assert cost.estimate([row], GPU, 4) < cost.estimate([row], GPU, 2)
    wide = row_program(32768, 8192)                           # 2 x 32 KB: global scratch
    assert block_cost.block_resources(wide, GPU, 4).tiles.scratch_traffic > 0
    assert cost.estimate([wide], GPU, 8) < cost.estimate([wide], GPU, 4) / 2
    ineligible = row_program(32768, 4096, eligible=0)         # read through a broadcast
    assert block_cost.block_resources(ineligible, GPU, 4).tiles.shared > 16000


def test_reductions_over_more_warps_take_more_steps():
    row = row_program(1000, 4096)
    steps = [block_cost.reduction_steps(row, 32.0 * w) for w in (1, 4, 16)]
    barriers, shuffles, serial = zip(*steps)
    assert barriers[0] < barriers[1] == barriers[2]           # past a warp: through smem
    assert serial[0] == 0 < serial[1] < serial[2]


def test_data_every_program_reads_costs_less_than_streamed_data():
    streamed = launch(4096, 8192.0)
    shared_row = LaunchWork(**{**streamed.__dict__, "tensor_bytes": (8192.0,)})
    dram, l2 = block_cost.dram_and_l2_bytes(shared_row, GPU.line_bytes)
    assert l2 > 100 * dram
    assert cost.estimate([shared_row], GPU) < cost.estimate([streamed], GPU)


def test_more_stages_need_more_shared_memory():
    looped = LaunchWork(programs=1000, work=1e6, bytes=1e5, buffer_bytes=0.0,
                        tile_elements=4096, iterations=16, loop_bytes=8e3)
    four, two = (block_cost.block_resources(looped, GPU, 4, stages, True) for stages in (4, 2))
    assert four.tiles.shared > two.tiles.shared
    assert four.resident < two.resident


def test_spearman():
    assert cost.spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert cost.spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert cost.spearman([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(0.8)
    assert cost.spearman([1, 1, 2], [5, 6, 7]) == pytest.approx(math.sqrt(3) / 2)
    assert cost.spearman([1, 2], [1, 2]) is None and cost.spearman([1, 1, 1], [1, 2, 3]) is None
