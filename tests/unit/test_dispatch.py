"""Specialization keys, the in-memory cache, compile() without running, asm stages,
explain, FUSEC_DUMP / FUSEC_INTERPRET, torch and numpy arguments."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import fusec
import fusec.language as fl


@fusec.kernel
def scale(x, alpha: float):
    out = fusec.empty_like(x)
    for t in fusec.tile(x.shape[0]):
        out[t] = x[t] * alpha
    return out


def test_same_specialization_reuses_the_compiled_kernel(backend):
    k = fusec.kernel(scale.fn)
    k(np.ones(20, np.float32), 2.0)
    k(np.ones(30, np.float32), 3.0)          # 20 and 30: neither divisible by 16
    assert len(k._compiled) == 1
    k(np.ones(32, np.float32), 3.0)          # divisible by 16: a new specialization
    k(np.ones(1, np.float32), 3.0)           # size 1: another
    assert len(k._compiled) == 3
    k(np.ones(20, np.float64), 3.0)          # dtype
    assert len(k._compiled) == 4


def test_static_shapes_specialize_every_shape():
    k = fusec.kernel(scale.fn, static_shapes=True, backend="interpret")
    k(np.ones(20, np.float32), 2.0)
    k(np.ones(21, np.float32), 2.0)
    assert len(k._compiled) == 2
    assert "tensor<f32>[21]" in list(k._compiled.values())[1].asm["ir"]


def test_full_slices_recompile_per_power_of_two_bucket():
    @fusec.kernel(backend="interpret")
    def row_sum(x):
        out = fusec.empty([x.shape[0]], fl.float32)
        for tm in fusec.tile(x.shape[0]):
            out[tm] = fl.sum(x[tm, :], axis=1)
        return out

    for n in (5, 7, 8, 9):
        x = np.random.default_rng(n).standard_normal((3, n)).astype(np.float32)
        np.testing.assert_allclose(row_sum(x), x.sum(1), rtol=1e-5)
    assert len(row_sum._compiled) == 2          # buckets 8 and 16


def test_compile_from_tensor_specs_keeps_every_stage():
    ck = scale.compile(fusec.TensorSpec([1000], fl.float32), 1.0, target="cpu")
    assert isinstance(ck, fusec.CompiledKernel)
    for stage in ("ir", "canonicalize", "cse", "mask-elim", "dce", "llvm"):
        assert stage in ck.asm, stage
    assert ck.num_launches == 1
    assert ck.config.blocks == (1024,)
    for stage, text in ck.asm.items():
        if stage.split(".")[0] in ("ir", "canonicalize", "cse", "mask-elim", "dce"):
            assert str(fusec.ir.parse(text)) == text


def test_config_sets_blocks():
    ck = scale.compile(fusec.TensorSpec([100], fl.float32), 1.0, backend="interpret",
                       config=fusec.Config(blocks=[16]))
    assert "block = 16" in ck.asm["ir"]


def test_explain_and_dump(capsys, monkeypatch):
    fusec.explain(scale, fusec.TensorSpec([64], fl.float32), 2.0, backend="interpret")
    out = capsys.readouterr().out
    assert "===== ir =====" in out and "===== dce =====" in out and "mul(" in out
    monkeypatch.setenv("FUSEC_DUMP", "ir")
    k = fusec.kernel(scale.fn, backend="interpret")
    k(np.ones(3, np.float32), 1.0)
    assert "fusec stage: ir" in capsys.readouterr().err


def test_fusec_interpret_env(monkeypatch):
    monkeypatch.setenv("FUSEC_INTERPRET", "1")
    k = fusec.kernel(scale.fn)
    k(np.ones(3, np.float32), 1.0)
    assert list(k._compiled.values())[0].backend == "interpret"


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16, torch.int32])
def test_torch_cpu_tensors_in_and_out(backend, dtype):
    x = (torch.randn(50) * 10).to(dtype)
    out = scale(x, 2.0)
    assert isinstance(out, torch.Tensor) and out.dtype == dtype
    torch.testing.assert_close(out, (x.double() * 2.0).to(dtype), rtol=1e-2, atol=1e-2)


def test_gpu_targets_compile_without_a_gpu():
    ck = scale.compile(fusec.TensorSpec([64], fl.float32), 1.0, target="sm_90")
    assert (ck.backend, ck.target) == ("cuda", "sm_90")
    assert ck.asm["cubin"][:4] == b"\x7fELF" and "__global__" in ck.asm["cuda"]
    if not torch.cuda.is_available():
        with pytest.raises(fusec.LaunchError, match="torch sees none"):
            ck(torch.ones(64), 1.0)
    ck = scale.compile(fusec.TensorSpec([64], fl.float32), 1.0, backend="ptx", target="sm_90")
    assert (ck.backend, ck.target) == ("ptx", "sm_90")
    assert ck.asm["cubin"][:4] == b"\x7fELF" and ".entry fusec_scale_0(" in ck.asm["ptx"]


def test_unknown_backend_is_rejected():
    with pytest.raises(ValueError, match="unknown backend 'metal'"):
        scale.compile(fusec.TensorSpec([64], fl.float32), 1.0, backend="metal")
