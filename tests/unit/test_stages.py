"""The stage record keeps every stage but makes costly ones only when read; the object
file's undefined symbols are found without generating assembly."""
from __future__ import annotations

import llvmlite.binding as llvm

from fusec.backends.llvm.jit import elf_undefined_symbols, host_target_machine
from fusec.backends.stages import Lazy, Stages


def test_lazy_stage_is_made_once_on_first_read():
    calls = []
    stages = Stages({"ir": "text", "asm": Lazy(lambda: calls.append(1) or "made")})
    assert list(stages) == ["ir", "asm"] and "asm" in stages and not calls
    assert stages["asm"] == "made" and stages.get("asm") == "made"
    assert dict(stages.items())["asm"] == "made" and calls == [1]
    merged = Stages({"first": 1})
    merged.update(Stages({"later": Lazy(lambda: "late")}))
    assert merged["later"] == "late"


def test_elf_undefined_symbols_lists_what_the_code_calls():
    tm = host_target_machine()
    mod = llvm.parse_assembly("""
        declare float @sinf(float)
        define float @f(float %x) {
          %y = call float @sinf(float %x)
          ret float %y
        }""")
    mod.triple = tm.triple
    undefined = elf_undefined_symbols(tm.emit_object(mod))
    assert "sinf" in undefined and "f" not in undefined
