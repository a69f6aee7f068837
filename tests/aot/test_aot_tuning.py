"""Tuning at build time: each mode's config and the source the manifest records for it;
"cache" builds what the JIT runs for the same call; the tuning cache shared both ways
with the JIT (a JIT measurement reused by a build, a build's measurement reused by the
JIT); measuring refused without a device of the target's arch; bad tune arguments."""
from __future__ import annotations

import json

import numpy as np
import pytest

import fusec
from fusec import Config, TensorSpec, tuning
from fusec.aot import BuildError, TuningError


def axpy(x, y, a):
    out = fusec.empty_like(x)
    for t in fusec.tile(x.shape[0]):
        out[t] = x[t] * a + y[t]
    return out


default_axpy = fusec.kernel(axpy)        # the policy: the model on CPUs, fixed on GPUs
SIGNATURE = "float32[M], float32[M], float"


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    """A fresh tuning cache per test: what a test finds cached, it stored itself."""
    monkeypatch.setenv("FUSEC_CACHE_DIR", str(tmp_path / "cache"))


def configs_of(out) -> dict:
    manifest = json.loads((out / "manifest.json").read_text())
    return {v["target"]: v["config"] for v in manifest["kernels"]["axpy"]["variants"]}


def test_each_mode_records_its_source_and_cache_builds_what_the_jit_runs(tmp_path):
    size = 3000                          # neither 1 nor a multiple of 16, as M's facts say
    built = {mode: configs_of(fusec.aot.build(default_axpy, SIGNATURE, "cpu,sm_90",
                                              tmp_path / f"built_{mode}", tune=mode,
                                              tune_sizes={"M": size}))
             for mode in ("none", "model", "cache")}
    tuned_for = {"x_s0": size, "y_s0": size}
    assert {t: c["source"] for t, c in built["none"].items()} == {
        "cpu": "default_policy", "sm_90": "default_policy"}
    assert all(c["source"] == "model" and c["tuned_for"] == tuned_for
               for c in built["model"].values())
    # with nothing cached: the JIT's policy for the backend when it does not measure (the
    # model's pick or the fixed policy), the config of the JIT's compile at the tuning size
    for target, backend in (("cpu", "cpu"), ("sm_90", "cuda")):
        policy = tuning.mode(default_axpy.autotune, backend, 0, lambda: False)
        assert built["cache"][target] == built["model" if policy == "model" else "none"][
            target], (target, policy)
        jit = default_axpy.compile(TensorSpec((size,)), TensorSpec((size,)), 1.0,
                                   target=target)
        config = built["cache"][target]
        assert Config(config["blocks"], config["warps"], config["stages"]) == jit.config


def test_the_tuning_cache_is_shared_with_the_jit(tmp_path):
    """configs= offering a choice makes a JIT call measure (and cache) on the CPU."""
    choosy = fusec.kernel(configs=[Config([64]), Config([512])])(axpy)
    x = np.linspace(-1, 1, 5000, dtype=np.float32)
    choosy(x, x, 2.0)
    assert choosy.last_tuning.method == "measured"
    config = configs_of(fusec.aot.build(choosy, SIGNATURE, "cpu", tmp_path / "reuse",
                                        tune_sizes={"M": 5000}))["cpu"]
    assert config["source"] == "cached"
    assert config["blocks"] == list(choosy.last_tuning.config.blocks)
    out = fusec.aot.build(choosy, SIGNATURE, "cpu", tmp_path / "measured", tune="measure",
                          tune_sizes={"M": 700})
    config = configs_of(out)["cpu"]
    assert config["source"] == "measured" and config["tuned_for"]["x_s0"] == 700
    y = np.ones(700, np.float32)
    np.testing.assert_allclose(choosy(y, y, 3.0), np.full(700, 4.0))
    assert choosy.last_tuning.method == "cached"
    assert list(choosy.last_tuning.config.blocks) == config["blocks"]


def test_measuring_needs_a_device_of_the_target_arch(tmp_path):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        major, minor = torch.cuda.get_device_capability()
        target = "sm_80" if (major, minor) != (8, 0) else "sm_90"
        message = f"the GPU here is sm_{major}{minor}"
    else:
        target, message = "sm_90", "needs a GPU of that arch here and none is visible"
    with pytest.raises(TuningError, match=message):
        fusec.aot.build(default_axpy, SIGNATURE, target, tmp_path / "pkg", tune="measure")
    assert not (tmp_path / "pkg").exists()


@pytest.mark.parametrize("options, error, message", [
    ({"tune": "fast"}, ValueError, "tune: expected one of 'cache', 'measure', 'model', "
                                   "'none' or a callable tuner, got 'fast'"),
    ({"tune_sizes": {"K": 10}}, BuildError, r"tune_sizes names K, not a dynamic size of "
                                            r"its signatures \(those are: M\)"),
    ({"tune_sizes": {"M": 0}}, BuildError, r"tune_sizes\['M'\] must be a positive int"),
    ({"version": "1.0-beta"}, ValueError, "is not a normalized PEP 440 version"),
])
def test_bad_tuning_arguments_are_refused_by_name(tmp_path, options, error, message):
    with pytest.raises(error, match=message):
        fusec.aot.build(default_axpy, SIGNATURE, "cpu", tmp_path / "pkg", **options)
    assert not (tmp_path / "pkg").exists()
