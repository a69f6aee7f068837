"""The parts of an AOT build that need no compile: the signature language, specs and their
power-of-two buckets, the JIT key and tuning sizes a variant is tuned under, size formulas
in postfix form (evaluated by the package loader as the JIT evaluates them), the manifest
schema checker, and the loader's arch rules."""
from __future__ import annotations

import numpy as np
import pytest
import sympy

import fusec
import fusec.language as fl
from fusec.aot import SignatureError, parse_entry, parse_signature
from fusec.aot.exprs import postfix
from fusec.aot.runtime.cuda import preference, runs_on
from fusec.aot.runtime.errors import ManifestError
from fusec.aot.runtime.exprs import compile_expr
from fusec.aot.runtime.manifest import SCHEMA, check
from fusec.aot.specs import Variable, bucket_range, buckets_of, make_spec
from fusec.aot.witness import jit_key, tuning_sizes
from fusec.backends.common import size_function
from fusec.ir.symbolic import size_symbol
from fusec.specialize import ScalarParam, TensorParam


@fusec.kernel
def rows(x, w, n, scale: float, flag, BLOCK: fusec.constexpr, MODE: fusec.constexpr = "a"):
    out = fusec.empty_like(x)
    for tm in fusec.tile(x.shape[0]):
        out[tm, :] = x[tm, :] * w[:][None, :] * scale
    return out


@pytest.mark.parametrize("text, shown", [
    ("float32[?,?]", "float32[?,?]"),
    ("bf16[?, 4096]", "bfloat16[?,4096]"),
    ("f16[N:16<=1024, 3]:strided:unaligned", "float16[N:16<=1024,3]:strided:unaligned"),
    ("float32[]", "float32[]"),
    ("int32", "int32"), ("int64:signed", "int64:signed"), ("int:16<=64", "int32:16<=64"),
    ("float32", "float"), ("bool", "bool"),
])
def test_entries_parse_and_print_back(text, shown):
    assert str(parse_entry(text)) == shown


@pytest.mark.parametrize("text, message", [
    ("float33[?]", "unknown dtype 'float33'"),
    ("float32[?,-1]", "cannot read dim '-1'"),
    ("float32[?]:contiguous", "unknown tensor flag 'contiguous'"),
    ("int32:unsigned", "unknown int flag 'unsigned'"),
    ("float:signed", "only int scalars"),
    ("tensor", "cannot read 'tensor'"),
    (3, "expected a string"),
])
def test_bad_entries_are_refused_naming_the_entry(text, message):
    with pytest.raises(SignatureError, match="entry for 'x'") as info:
        parse_signature([text], ["x"])
    assert message in str(info.value)


def test_signature_checks_the_parameter_count_and_splits_strings():
    with pytest.raises(SignatureError, match=r"2 entries but the kernel takes 1 .*\(x\)"):
        parse_signature("float32[?], int32", ["x"])
    sigs = parse_signature("float32[?, N<=64], float32[N:16], int64", ["x", "w", "n"])
    # the facts of a named dim apply to all its uses
    assert str(sigs[0]) == "float32[?,N:16<=64]" and str(sigs[1]) == "float32[N:16<=64]"


def test_strides_assumed_are_those_of_a_contiguous_tensor():
    t = parse_entry("float32[?,?:16,5]")
    assert t.unit_stride() == (False, False, True)
    assert t.stride16() == (True, False, False)     # 16 | size(1) * 5
    assert parse_entry("float32[?,?:16]:strided").unit_stride() == (False, False)


def test_spec_gives_the_compiler_the_jit_params_and_the_loader_the_rules():
    sigs = parse_signature(["float32[?,N<=64]", "float32[N]", "int32:16", "float", "bool"],
                           ["x", "w", "n", "scale", "flag"])
    spec = make_spec(rows, sigs, {"BLOCK": 64}, {("dim", "N"): 16})
    x, w, n = spec.params[:3]
    assert x == TensorParam("x", fl.float32, (None, None), (False, False), (False, True),
                            (16, 16), True, (False, False))
    assert n == ScalarParam("n", "i", False, True, False, 16, True)
    assert spec.rules[2] == {"kind": "int", "min": 0, "max": 2 ** 31 - 1, "multiple_of": 16}
    assert spec.rules[5:] == [{"kind": "constexpr", "value": 64},
                              {"kind": "constexpr", "value": "a"}]     # MODE's default
    assert spec.equal_dims == [[[0, 1], [1, 0]]]
    assert spec.text.endswith("flag: bool, BLOCK=64, MODE='a'")
    with pytest.raises(SignatureError, match="constexpr parameter 'BLOCK' needs a value"):
        make_spec(rows, sigs, {})
    with pytest.raises(SignatureError, match="JSON scalars"):
        make_spec(rows, sigs, {"BLOCK": [1]})


def _unaligned(*shape):
    flat = np.zeros(int(np.prod(shape)) + 1, np.float32)[1:]      # 4 bytes past 16
    return flat.reshape(shape)


@pytest.mark.parametrize("signature, values", [
    (["float32[?,N:16<=64]", "float32[N]", "int32", "float", "bool"],
     lambda: [np.zeros((17, 32), np.float32), np.zeros(32, np.float32), 5, 1.5, True]),
    (["float32[3,?]:strided:unaligned", "float32[1]", "int64:signed", "float", "bool"],
     lambda: [_unaligned(3, 40)[:, ::3], np.zeros(1, np.float32), -(2 ** 40 + 17), 0.5,
              False]),
])
def test_a_variant_is_tuned_under_the_jit_key_of_a_call_meeting_it(signature, values):
    """The tuning cache is shared with the JIT: a variant's key is the JIT's key of a call
    with exactly its facts (sizes 1 / multiples of 16, strides, alignment, int ranges)."""
    sigs = parse_signature(signature, ["x", "w", "n", "scale", "flag"])
    spec = make_spec(rows, sigs, {"BLOCK": 64})
    call = values() + [64, "a"]
    assert jit_key(rows, spec.params) == rows._describe(call)[0]


def test_tuning_sizes_are_named_bounded_and_keep_the_bucket():
    sigs = parse_signature(["float32[?,N:16<=64]", "float32[N]", "int32:16<=100", "float",
                            "bool"], ["x", "w", "n", "scale", "flag"])
    spec = make_spec(rows, sigs, {"BLOCK": 64})
    assert tuning_sizes(spec, {}) == {"x_s0": 4096, "x_s1": 64, "w_s0": 64, "n": 96}
    assert tuning_sizes(spec, {"x[0]": 300, "N": 40, "n": 7}) == {
        "x_s0": 300, "x_s1": 32, "w_s0": 32, "n": 16}
    bucketed = make_spec(rows, sigs, {"BLOCK": 64}, {("dim", "N"): 16})
    assert tuning_sizes(bucketed, {"N": 64})["x_s1"] == 16     # tuned inside its bucket


def test_buckets_match_the_jit_guard_and_respect_the_facts():
    var = Variable(("dim", "N"), 1, 0, 100, "N")
    assert buckets_of(var) == [1, 2, 4, 8, 16, 32, 64, 128]
    assert [bucket_range(var, b) for b in (1, 2, 4, 128)] == [(0, 1), (2, 2), (3, 4),
                                                              (65, 100)]
    assert buckets_of(Variable(("dim", "N"), 16, 0, 64, "N")) == [1, 16, 32, 64]   # 0, then 16s
    with pytest.raises(SignatureError, match="give it an upper bound"):
        buckets_of(Variable(("dim", "x", 1), 1, 0, None, "dim 1 of 'x'"))


@pytest.mark.parametrize("make", [
    lambda m, n: m, lambda m, n: sympy.ceiling(m / 64), lambda m, n: m * n + 3,
    lambda m, n: sympy.Max(m, n, 5), lambda m, n: sympy.Min(m, 2 * n),
    lambda m, n: sympy.floor((m - 1) / 16) + 1, lambda m, n: sympy.Mod(m, 16),
    lambda m, n: 2 * m ** 2 - n,
])
def test_postfix_formulas_evaluate_as_the_jit_does(make):
    m, n = size_symbol("m"), size_symbol("n")
    expr = make(m, n)
    loaded = compile_expr(postfix(expr), {"m", "n"}, "test")
    for env in ({"m": 0, "n": 0}, {"m": 1, "n": 7}, {"m": 100, "n": 3}, {"m": 4097, "n": 64}):
        assert loaded(env) == size_function(expr)(env), (expr, env)


@pytest.mark.parametrize("tokens, message", [
    (["$m", "$q", "+"], "unknown size symbol 'q'"), (["$m", "+"], "bad token '\\+'"),
    (["$m", 2], "does not reduce"), (["$m", "exp"], "bad token 'exp'"),
])
def test_malformed_formulas_are_refused(tokens, message):
    with pytest.raises(ManifestError, match=message):
        compile_expr(tokens, {"m"}, "test")


def test_schema_check_names_the_path_of_the_bad_value():
    good = {"format": "fusec-aot-package", "schema_version": 1, "name": "p",
            "version": "1.0", "fusec_version": "0", "kernels": {}}
    check(good, SCHEMA)
    for bad, message in [({**good, "kernels": {"k": {"params": [{"name": 1}],
                                                     "variants": []}}},
                          r"kernels.k.params\[0\].name: expected str, got int"),
                         ({**good, "schema_version": True}, "expected 1, got True"),
                         ({**good, "extra": 1}, "unknown key"),
                         ({k: v for k, v in good.items() if k != "name"}, "missing key 'name'")]:
        with pytest.raises(ManifestError, match=message):
            check(bad, SCHEMA)


def test_cubin_arch_rules():
    assert runs_on("sm_80", "sm_86") and not runs_on("sm_86", "sm_80")
    assert not runs_on("sm_80", "sm_90") and runs_on("sm_90a", "sm_90")
    assert not runs_on("sm_90a", "sm_91")
    on_90 = sorted(["sm_90", "sm_90a", "sm_80"], key=lambda a: preference(a, "sm_90"))
    assert on_90[-1] == "sm_90a" and on_90[-2] == "sm_90"
    assert preference("sm_86", "sm_87") > preference("sm_80", "sm_87")
