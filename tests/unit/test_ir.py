"""The IR itself: the text form round-trips, and the verifier rejects malformed IR with a
message that names the problem."""
from __future__ import annotations

from pathlib import Path

import pytest
import sympy

import fusec.ir as ir
from fusec.ir import dtypes
from fusec.ir.types import TensorType, TileType

FILECHECK_DIR = Path(__file__).parent.parent / "filecheck"

KERNEL = '''\
kernel(div16 = ["x_s1"], name = "k", sizes = [["x_s0", 0, 0], ["x_s1", 0, 1]]) loc("k.py":1:1) {
^(%x: tensor<f32>[x_s0, x_s1], %n: i64, %eps: f32):
  %out = alloc(zero = false) : tensor<bf16>[x_s0, e"2*x_s1"] loc("k.py":2:5)
  tile_for(block = 16, dim = 0, extent = e"x_s0", parallel = true) {
  ^(%tm: tileidx):
    %0 = tile_index(%tm) : tile<i32>[16]
    %half = symval(expr = e"floor(x_s1/2)") : i32
    %c = const(value = -inf) : tile<f32>[16]
    %tiny = const(value = 1e-05) : f32
    %nz = const(value = -0.0) : f64
    %t = const(value = true) : bool
    %acc = tile_for(%tiny, block = 8, dim = 1, extent = e"ceiling(x_s1/2)", parallel = false) : f32 {
    ^(%tn: tileidx, %a: f32):
      %b = add(%a, %eps) : f32
      yield(%b)
    }
    %r = if(%t) : f32 {
      yield(%acc)
    } {
      yield(%tiny)
    }
    yield()
  }
  return(%out)
}
'''


def _fixtures() -> list[Path]:
    """The filecheck inputs that are valid IR (the CLI error tests are not)."""
    return [p for p in sorted(FILECHECK_DIR.glob("*.fir")) if not p.name.startswith("cli_")]


def test_round_trip_prints_identically():
    m = ir.parse(KERNEL)
    ir.verify(m)
    assert str(m) == KERNEL
    assert str(ir.parse(str(m))) == KERNEL


@pytest.mark.parametrize("path", _fixtures(), ids=lambda p: p.name)
def test_round_trip_of_filecheck_inputs(path: Path):
    m = ir.parse(path.read_text())
    ir.verify(m)
    text = str(m)
    assert str(ir.parse(text)) == text


def test_parsed_types_and_attrs():
    m = ir.parse(KERNEL)
    kernel = m.kernel("k")
    x, n, eps = kernel.regions[0].args
    assert x.type == TensorType(dtypes.float32, (ir.size_symbol("x_s0"), ir.size_symbol("x_s1")))
    assert n.type == ir.scalar(dtypes.int64)
    out = kernel.regions[0].ops[0]
    assert out.results[0].type.shape[1] == 2 * ir.size_symbol("x_s1")
    loop = kernel.regions[0].ops[1]
    assert loop.attrs["extent"] == ir.size_symbol("x_s0")
    consts = {op.results[0].name: op.attrs["value"] for op in m.walk() if op.name == "const"}
    assert consts["c"] == float("-inf") and consts["t"] is True
    assert str(consts["nz"]) == "-0.0"
    half = next(op for op in m.walk() if op.name == "symval")
    assert half.attrs["expr"] == sympy.floor(ir.size_symbol("x_s1") / 2)
    assert out.loc == ir.Loc("k.py", 2, 5)


def test_builder_module_prints_and_verifies():
    kernel_block = ir.Block([TensorType(dtypes.float32, (64,)), ir.scalar(dtypes.float32)],
                            ["x", "s"])
    kernel = ir.Op("kernel", attrs={"name": "built", "div16": []}, regions=[kernel_block])
    b = ir.Builder(kernel_block, ir.Loc("b.py", 3, 1))
    idx = b.value("arange", [], TileType(dtypes.int32, (64,)), start=0, end=64)
    v = b.value("load", [kernel_block.args[0], idx], TileType(dtypes.float32, (64,)),
                checked=[False], mask=False, other=False)
    s = b.value("expand_dims", [kernel_block.args[1]], TileType(dtypes.float32, (1,)), axis=0)
    s = b.value("broadcast", [s], TileType(dtypes.float32, (64,)))
    y = b.value("mul", [v, s], v.type)
    b.create("store", [kernel_block.args[0], idx, y], attrs={"checked": [False], "mask": False})
    b.create("return")
    m = ir.Module([kernel])
    ir.verify(m)
    text = str(m)
    assert 'loc("b.py":3:1)' in text
    assert str(ir.parse(text)) == text


def test_uses_and_replace_all_uses():
    m = ir.parse(KERNEL)
    tiny = next(op for op in m.walk() if op.name == "const" and op.result.name == "tiny").result
    users = ir.uses(m)[tiny]
    assert sorted(op.name for op in users) == ["tile_for", "yield"]
    eps = m.kernel().regions[0].args[2]
    ir.replace_all_uses(m, tiny, eps)
    assert tiny not in ir.uses(m)


# ---- verifier negatives: (IR body inside a kernel with params %a: f32, %i: i32, %x: tensor,
# expected message fragment) ------------------------------------------------------------

BAD_BODIES = {
    "type mismatch": ("%b = add(%a, %i) : f32", "operand types differ: f32 and i32"),
    "wrong result type": ("%b = neg(%a) : f64", "result type f64 differs from operand type f32"),
    "compare result": ("%b = lt(%a, %a) : f32", "result must be bool"),
    "float op on int": ("%b = exp(%i) : i32", "needs a float operand"),
    "true div on ints": ("%b = div(%i, %i) : i32", "true division needs float operands"),
    "bad broadcast": ("%t = const(value = 1.0) : tile<f32>[4]\n"
                      "%b = broadcast(%t) : tile<f32>[8]", "cannot broadcast (4,) to (8,)"),
    "broadcast rank": ("%b = broadcast(%a) : tile<f32>[8]", "cannot broadcast () to (8,)"),
    "bad expand_dims axis": ("%b = expand_dims(%a, axis = 2) : tile<f32>[1]", "bad axis 2"),
    "bad permute": ("%t = const(value = 1.0) : tile<f32>[4, 2]\n"
                    "%b = permute(%t, perm = [0, 0]) : tile<f32>[4, 2]", "bad perm"),
    "reduce sum of ints": ("%t = const(value = 1) : tile<i32>[4]\n"
                           "%b = reduce(%t, axis = 0, kind = \"sum\") : i32",
                           "sum of ints gives int64"),
    "unknown reduction": ("%t = const(value = 1.0) : tile<f32>[4]\n"
                          "%b = reduce(%t, axis = 0, kind = \"median\") : f32",
                          "unknown reduction 'median'"),
    "dot shapes": ("%p = const(value = 1.0) : tile<f32>[4, 8]\n"
                   "%b = dot(%p, %p) : tile<f32>[4, 8]", "dot needs [M, K] x [K, N]"),
    "where condition": ("%b = where(%a, %a, %a) : f32", "condition must be bool"),
    "arange length": ("%b = arange(start = 0, end = 8) : tile<i32>[4]",
                      "arange(0, 8) must give i32[8]"),
    "symval dtype": ("%b = symval(expr = e\"x_s0\") : f32", "symval gives an int scalar"),
    "load index shape": ("%k = arange(start = 0, end = 8) : tile<i32>[8]\n"
                         "%b = load(%x, %k, checked = [true], mask = false, other = false)"
                         " : tile<f32>[4]", "index tile<i32>[8] must be an int tile"),
    "checked length": ("%k = arange(start = 0, end = 8) : tile<i32>[8]\n"
                       "%b = load(%x, %k, checked = [], mask = false, other = false)"
                       " : tile<f32>[8]", "checked: one bool per dim"),
    "store dtype": ("%k = arange(start = 0, end = 8) : tile<i32>[8]\n"
                    "%v = const(value = 1) : tile<i32>[8]\n"
                    "store(%x, %k, %v, checked = [true], mask = false)",
                    "must have the tensor's dtype"),
    "terminator not last": ("yield()", "terminator must be the last op"),
    "kernel ends in yield": ("yield()", "kernel must end in return"),
    "if types": ("%c = const(value = true) : bool\n"
                 "%b = if(%c) : f32 {\n yield(%i)\n} {\n yield(%a)\n}", "yield types"),
    "if without yield": ("%c = const(value = true) : bool\n"
                         "if(%c) {\n} {\n yield()\n}", "region must end in yield"),
    "parallel loop carries": ("%b = tile_for(%a, block = 4, dim = 0, extent = 8, "
                              "parallel = true) : f32 {\n^(%t: tileidx, %v: f32):\n"
                              " yield(%v)\n}", "parallel loops carry no values"),
    "tile_index length": ("tile_for(block = 4, dim = 0, extent = 8, parallel = true) {\n"
                          "^(%t: tileidx):\n %q = tile_index(%t) : tile<i32>[8]\n yield()\n}",
                          "tile_index length differs from the loop's block"),
    "tile_for handle": ("tile_for(block = 4, dim = 0, extent = 8, parallel = true) {\n"
                        "^(%t: i32):\n yield()\n}", "first block arg is the handle"),
}


def _kernel_with(body: str, terminate: bool = True) -> str:
    lines = "\n".join("  " + line for line in body.splitlines())
    end = "\n  return()" if terminate else ""
    return ('kernel(name = "bad", div16 = []) {\n'
            '^(%a: f32, %i: i32, %x: tensor<f32>[x_s0]):\n' + lines + end + "\n}\n")


@pytest.mark.parametrize("case", sorted(BAD_BODIES))
def test_verifier_rejects(case: str):
    body, message = BAD_BODIES[case]
    m = ir.parse(_kernel_with(body, terminate=case != "kernel ends in yield"))
    with pytest.raises(ir.VerificationError) as info:
        ir.verify(m)
    assert message in str(info.value)


def test_verifier_rejects_missing_terminator():
    m = ir.parse(_kernel_with("%b = neg(%a) : f32", terminate=False))
    with pytest.raises(ir.VerificationError, match="kernel must end in return"):
        ir.verify(m)


def test_verifier_rejects_use_before_definition():
    m = ir.parse(_kernel_with("%b = neg(%a) : f32\n%c = neg(%b) : f32"))
    body = m.kernel().regions[0].ops
    body[0], body[1] = body[1], body[0]          # %c now comes before %b
    with pytest.raises(ir.VerificationError, match="not defined before its use"):
        ir.verify(m)


def test_verifier_rejects_value_from_a_sibling_region():
    m = ir.parse(_kernel_with("%c = const(value = true) : bool\n"
                              "%r = if(%c) : f32 {\n %in_then = neg(%a) : f32\n yield(%in_then)\n"
                              "} {\n yield(%a)\n}"))
    if_op = next(op for op in m.walk() if op.name == "if")
    then_value = if_op.regions[0].ops[0].result
    if_op.regions[1].ops[0].operands = [then_value]
    with pytest.raises(ir.VerificationError, match="not defined before its use"):
        ir.verify(m)


def test_verifier_rejects_non_kernel_at_top_level():
    m = ir.Module([ir.Op("const", [], [ir.scalar(dtypes.int32)], {"value": 1})])
    with pytest.raises(ir.VerificationError, match="only kernels"):
        ir.verify(m)


PARSE_ERRORS = {
    "undefined value": ("%b = neg(%nope) : f32", "line 3: use of undefined value %nope"),
    "redefined value": ("%b = neg(%a) : f32\n%b = neg(%a) : f32", "line 4: value %b defined twice"),
    "unknown op": ("%b = frobnicate(%a) : f32", "line 3: unknown op 'frobnicate'"),
    "unknown dtype": ("%b = neg(%a) : f33", "unknown dtype 'f33'"),
    "results vs types": ("%b, %c = neg(%a) : f32", "2 results but 1 types"),
    "syntax": ("%b = neg(%a : f32", "line 3, column 15: unexpected input"),
}


@pytest.mark.parametrize("case", sorted(PARSE_ERRORS))
def test_parse_errors_name_the_line(case: str):
    body, message = PARSE_ERRORS[case]
    with pytest.raises(ir.IRParseError) as info:
        ir.parse(_kernel_with(body))
    assert message in str(info.value)
