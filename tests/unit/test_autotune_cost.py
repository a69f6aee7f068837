"""The analytic cost model's monotonic properties and the rank correlation it reports."""
from __future__ import annotations

import math

import pytest

from fusec.autotune import cost
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
    huge = LaunchWork(programs=10, work=1.0, bytes=1.0, buffer_bytes=GPU.smem_per_block + 1,
                      tile_elements=64, iterations=0, loop_bytes=0.0)
    assert cost.occupancy(huge, GPU, 4, 3, False) == 0
    assert math.isinf(cost.estimate([huge], GPU))
    many_registers = LaunchWork(programs=10, work=1.0, bytes=1.0, buffer_bytes=0.0,
                                tile_elements=32 * 300, iterations=0, loop_bytes=0.0)
    assert math.isinf(cost.estimate([many_registers], GPU, warps=1))
    assert math.isfinite(cost.estimate([many_registers], GPU, warps=8))


def test_more_stages_need_more_shared_memory():
    looped = LaunchWork(programs=1000, work=1e6, bytes=1e5, buffer_bytes=40e3,
                        tile_elements=4096, iterations=16, loop_bytes=32e3)
    assert cost.shared_bytes(looped, 4, True) > cost.shared_bytes(looped, 2, True)
    assert cost.occupancy(looped, GPU, 4, 4, True) < cost.occupancy(looped, GPU, 4, 2, True)


def test_spearman():
    assert cost.spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert cost.spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert cost.spearman([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(0.8)
    assert cost.spearman([1, 1, 2], [5, 6, 7]) == pytest.approx(math.sqrt(3) / 2)
    assert cost.spearman([1, 2], [1, 2]) is None and cost.spearman([1, 1, 1], [1, 2, 3]) is None
