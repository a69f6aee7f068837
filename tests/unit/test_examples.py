"""Every example runs and checks itself on both CPU backends; every IR stage of every
example round-trips through the text form and verifies."""
from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

import fusec
from fusec.passes.manager import DEFAULT_PIPELINE, PassManager

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
NAMES = sorted(p.stem for p in EXAMPLES.glob("*.py")
               if not p.stem.startswith("_") and p.stem != "run_all")
sys.path.insert(0, str(EXAMPLES))


@pytest.mark.parametrize("name", NAMES)
def test_example_runs(backend, name):
    module = importlib.import_module(name)
    err = module.main(backend=backend)
    assert err is not None


@pytest.mark.parametrize("name", NAMES)
def test_example_ir_round_trips_at_every_stage(name):
    module = importlib.import_module(name)
    kernels = [v for v in vars(module).values() if isinstance(v, fusec.Kernel)]
    assert kernels
    for kernel in kernels:
        compiled = list(kernel._compiled.values())
        if not compiled:
            module.main(backend="interpret")
            compiled = list(kernel._compiled.values())
        for ck in compiled:
            for stage, text in ck.asm.items():
                if stage == "ir" or stage.split(".")[0] in DEFAULT_PIPELINE:
                    m = fusec.ir.parse(text)
                    fusec.ir.verify(m)
                    assert str(m) == text, f"{name}: stage {stage} does not round-trip"
            # the frontend's IR verifies after every pass
            m = fusec.ir.parse(ck.asm["ir"])
            PassManager(DEFAULT_PIPELINE, verify=True).run(m)


def test_example_script_runs_standalone():
    result = subprocess.run([sys.executable, str(EXAMPLES / "softmax.py")],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "softmax:" in result.stdout and "ok" in result.stdout
