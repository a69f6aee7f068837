"""The autotuner in a kernel's calls: the policy, configs= restricting it, the model's pick,
measured tuning on the CPU, the tuning cache across processes, and the user's arguments
untouched by tuning."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import fusec
import fusec.language as fl
from fusec.autotune import tuner
from fusec.autotune.config import Config
from fusec.compiler import TILE_ELEMENTS_CAP, trace_with_default_blocks
from fusec.specialize import describe


def gelu_rows(x):
    out = fusec.empty_like(x)
    for t in fusec.tile(x.shape[0]):
        out[t] = fl.gelu(x[t])
    return out


def gelu_2d(x):
    out = fusec.empty_like(x)
    for tm, tn in fusec.tile(x.shape):
        out[tm, tn] = fl.gelu(x[tm, tn])
    return out


def scale_in_place(x, y):
    for t in fusec.tile(x.shape[0]):
        x[t] = x[t] * 2.0 + y[t]
    return x


def rows(x):
    return np.random.default_rng(7).standard_normal(x).astype(np.float32)


def test_interpret_keeps_the_default_policy():
    k = fusec.kernel(gelu_rows, backend="interpret")
    k(rows(3000))
    specs = [describe("x", rows(3000), False, False)[1]]
    _, _, blocks, _ = trace_with_default_blocks(gelu_rows, specs, TILE_ELEMENTS_CAP["cpu"])
    (compiled,) = k._compiled.values()
    assert list(compiled.config.blocks) == blocks and k.last_tuning is None


def test_autotune_default_keeps_the_default_policy_on_cpu():
    k = fusec.kernel(gelu_rows, autotune="default")
    k(rows(3000))
    (compiled,) = k._compiled.values()
    assert compiled.config.blocks == (1024,) and k.last_tuning is None


def test_autotune_false_takes_the_models_pick_without_measuring():
    k = fusec.kernel(gelu_rows, autotune=False)
    x = rows(100_000)
    np.testing.assert_allclose(k(x), fusec.kernel(gelu_rows, backend="interpret")(x),
                               rtol=1e-5, atol=1e-6)
    t = k.last_tuning
    assert t.method == "model" and all(r.measured is None for r in t.rows)
    estimates = [r.estimate for r in t.rows]
    assert estimates == sorted(estimates)
    default = Config([1024])                       # the fixed policy's 1-D block
    assert default in [r.config for r in t.rows]
    assert t.config == tuner.model_pick([tuner.Candidate(r.config, r.estimate)
                                         for r in t.rows], default).config
    (compiled,) = k._compiled.values()
    assert compiled.config == t.config


def test_the_model_keeps_the_default_unless_clearly_better():
    a, b = Config([8]), Config([1024])
    assert tuner.model_pick([tuner.Candidate(a, 0.95), tuner.Candidate(b, 1.0)], b).config == b
    assert tuner.model_pick([tuner.Candidate(a, 0.5), tuner.Candidate(b, 1.0)], b).config == a


def test_configs_restrict_the_space():
    offered = [Config([64]), Config([256]), Config([2048])]
    k = fusec.kernel(gelu_rows, configs=offered, autotune=False)
    k(rows(50_000))
    assert k.last_tuning.method == "model"
    assert {r.config for r in k.last_tuning.rows} == set(offered)
    assert k.last_tuning.config in offered
    (compiled,) = k._compiled.values()
    assert compiled.config in offered


def test_one_config_is_used_as_given():
    k = fusec.kernel(gelu_rows, configs=[Config([128])])
    k(rows(5000))
    (compiled,) = k._compiled.values()
    assert compiled.config == Config([128]) and k.last_tuning is None


def test_a_kernel_the_model_cannot_describe_keeps_the_default_policy():
    def doubled(x):
        out = fusec.empty_like(x)
        for t in fusec.tile(x.shape[0]):
            if t.block > 2000:                  # the autotuner's probe trace goes here
                out[t] = (x[t] + 0.0) * 2.0
            else:
                out[t] = x[t] * 2.0
        return out

    k = fusec.kernel(doubled)
    x = rows(5000)
    np.testing.assert_array_equal(k(x), x * 2)
    (compiled,) = k._compiled.values()
    assert compiled.config.blocks == (1024,) and k.last_tuning is None


def test_bad_autotune_and_configs_are_named():
    with pytest.raises(ValueError, match="autotune"):
        fusec.kernel(gelu_rows, autotune="fast")
    with pytest.raises(TypeError, match="configs"):
        fusec.kernel(gelu_rows, configs=Config([4]))
    with pytest.raises(ValueError, match="warps"):
        Config([4], warps=0)
    short = fusec.kernel(gelu_2d, configs=[Config([8, 64]), Config([8])], autotune=False)
    with pytest.raises(ValueError, match=r"configs\[1\].*lists 1 block sizes"):
        short(rows(64 * 64).reshape(64, 64))


def test_measured_set_takes_the_best_the_default_and_a_spread():
    ranked = [tuner.Candidate(Config([1 << i]), float(i)) for i in range(20)]
    default = Config([1 << 15])
    chosen = [c.config.blocks[0].bit_length() - 1 for c in tuner.measured_set(ranked, default)]
    assert (tuner.MEASURED_TOP, tuner.MEASURED_SPREAD) == (6, 4)
    assert chosen == [0, 1, 2, 3, 4, 5, 15, 6, 9, 13, 16]   # the budget serves them in order
    assert tuner.measured_set(ranked[:3], None) == ranked[:3]    # user configs: all of them


def test_the_fastest_measured_row_wins():
    rows_ = [tuner.Row(Config([1]), 1e-3, 5e-3), tuner.Row(Config([2]), 2e-3, 1e-3),
             tuner.Row(Config([4]), 3e-3, math.inf, "failed"), tuner.Row(Config([8]), 4e-3),
             tuner.Row(Config([16]), 5e-3, 1e-3)]
    assert tuner.pick_fastest(rows_, Config([64])) == Config([2])    # ties: model order
    assert tuner.pick_fastest(rows_[2:4], Config([64])) == Config([64])  # none measured


def test_measured_cpu_tuning_picks_the_clearly_fastest(capsys, monkeypatch):
    # tiles with a last axis of 1 or 4 are scalar code, rows of 256 run in vectors: about
    # 7x apart on the dev machine. Small enough for every launch to run on the calling
    # thread: split over the cores, a launch waits for a busy core (another test process)
    monkeypatch.setenv("FUSEC_PRINT_AUTOTUNING", "1")
    offered = [Config([64, 1]), Config([4, 256]), Config([16, 4])]
    k = fusec.kernel(gelu_2d, configs=offered)
    x = rows(64 * 256).reshape(64, 256)
    got = k(x)
    t = k.last_tuning
    assert t.method == "measured" and t.config == Config([4, 256])
    assert all(r.measured is not None and math.isfinite(r.measured) for r in t.rows)
    np.testing.assert_allclose(got, fusec.kernel(gelu_2d, backend="interpret")(x),
                               rtol=1e-5, atol=1e-6)
    err = capsys.readouterr().err
    assert "fusec autotune: gelu_2d" in err and "measured us" in err and "Spearman" in err


def test_tuning_leaves_written_arguments_alone():
    k = fusec.kernel(scale_in_place, configs=[Config([64]), Config([1024])])
    x, y = rows(10_000), rows(10_000) + 1
    want = x * 2 + y
    out = k(x, y)
    assert k.last_tuning.method == "measured"
    assert out is x
    np.testing.assert_array_equal(x, want)        # written once, by the user's call


SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np
    import fusec, fusec.language as fl

    @fusec.kernel(configs=[fusec.Config([64]), fusec.Config([512])])
    def double(x):
        out = fusec.empty_like(x)
        for t in fusec.tile(x.shape[0]):
            out[t] = x[t] * 2.0
        return out

    x = np.arange(int(sys.argv[1]), dtype=np.float32)
    assert (double(x) == x * 2).all()
    print(json.dumps([double.last_tuning.method, list(double.last_tuning.config.blocks)]))
""")


def test_a_second_process_reuses_the_tuning(tmp_path):
    env = dict(os.environ, FUSEC_CACHE_DIR=str(tmp_path / "cache"))
    script = tmp_path / "tune.py"
    script.write_text(SCRIPT)

    def run(n):
        done = subprocess.run([sys.executable, str(script), str(n)], env=env,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout.strip().splitlines()[-1])

    method, blocks = run(5001)
    assert method == "measured"
    assert run(6001) == ["cached", blocks]          # the same power-of-two bucket
    assert run(20001)[0] == "measured"              # another bucket: tuned again


def test_near_ties_go_to_the_config_with_the_longest_contiguous_run():
    narrow, wide, fixed, tiny = (Config(blocks=b) for b in ([1024, 16], [64, 256], [8, 512],
                                                           [4, 4]))
    candidates = [tuner.Candidate(narrow, 1.0), tuner.Candidate(wide, 1.02),
                  tuner.Candidate(tiny, 1.2), tuner.Candidate(fixed, 2.0)]
    runs = {narrow: 64.0, wide: 1024.0, fixed: 2048.0, tiny: 4096.0}.get
    assert tuner.model_pick(candidates, fixed, 0.7, runs).config == wide   # tiny: no tie
    assert tuner.model_pick(candidates, fixed, 0.7).config == narrow       # no tie-break
    assert tuner.model_pick(candidates, fixed, 0.4, runs).config == fixed  # within margin
    # a near tie that would not beat the default by the margin is not taken
    close = [tuner.Candidate(narrow, 0.89), tuner.Candidate(wide, 0.91),
             tuner.Candidate(fixed, 1.0)]
    assert tuner.model_pick(close, fixed, 0.9, runs).config == narrow


def test_shortest_run_reads_the_tile_rows_a_program_moves():
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples"))
    from bias_gelu import bias_gelu
    from fusec.tuning import facts_for
    x, b = np.zeros((4096, 256), np.float32), np.zeros(256, np.float32)
    facts = facts_for(fusec.kernel(bias_gelu.fn, backend="cpu"), x, b)
    assert tuner.shortest_run(facts, Config(blocks=[1024, 16])) == 16 * 4
    assert tuner.shortest_run(facts, Config(blocks=[64, 256])) == 256 * 4
