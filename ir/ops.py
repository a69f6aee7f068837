"""The op table: every op the IR knows, grouped by kind. Semantics are documented here and
defined executably by backends/interpret (the reference interpreter).

Structure
  kernel()          {name, sizes, div16, unit_strides, aligned, stride16} region(^params...) ending in `return`.
                    Params are tensors and scalars. Ops in the kernel's own block outside tile
                    loops are the host part (`alloc`) and pure scalar values that every
                    program recomputes; each top-level parallel `tile_for` nest is one launch
                    whose grid is the product of its parallel loops' tile counts.
                    sizes: [[symbol, param index, dim], ...] binds every size symbol to a
                      tensor param's size along dim (dim -1: the value of an int param).
                    div16: size symbols the specialization proved divisible by 16.
                    signed: int-param symbols that may be negative (every other size symbol
                      is known to be >= 0).
                    unit_strides: [[param index, dim], ...] dims whose stride is known to be
                      1. Allocated tensors are contiguous (row-major).
                    aligned: [param index, ...] tensor params whose data pointer is a
                      multiple of 16 bytes (allocated tensors always are).
                    stride16: [[param index, dim], ...] dims whose stride (in elements) is
                      known to be a multiple of 16.
  alloc()           {zero} -> tensor: an output tensor, shape from the result type.
  return(vals...)   terminator of `kernel`: the tensors the kernel returns.
  tile_for(inits...) {extent, block, parallel, dim} -> carried results; region
                    (^(%t: tileidx, carried...)) ending in `yield(carried...)`. Iterates
                    begin = 0, block, 2*block, ... < extent. parallel=true loops are grid
                    dimensions (only allowed as the outermost loops of a nest), the others
                    sequential. `dim` is the position of the tile dim in the source (Config
                    order).
  for(lo, hi, step, inits...) -> carried results; region (^(%i, carried...)): a sequential
                    scalar loop, i = lo, lo+step, ... < hi (step > 0).
  if(cond, ) -> results; two regions (then, else) each ending in `yield`.
  yield(vals...)    terminator of tile_for/for/if regions.

Tile values (held by one program)
  tile_index(%t)    -> tile<i32>[block]: begin + arange(block) of the tile loop handle.
  tile_begin(%t)    -> i32: the first index of the tile.
  const {value}     -> any tile type: a splat of a Python bool/int/float.
  arange {start, end} -> tile<i32>[end - start].
  symval {expr}     -> i32|i64 scalar: the runtime value of a symbolic size expression.
  unary ops         same type in and out; FLOAT_UNARY need a float dtype.
  binary ops        two operands of one type, result of that type (COMPARE: bool result).
  where(c, a, b)    c bool; a, b and the result share a type; shapes all equal.
  cast(x)           -> the result type's dtype (same shape). float->int truncates toward
                    zero and saturates; half floats round to nearest even.
  broadcast(x)      -> result shape: x has the same rank, every dim 1 or equal.
  expand_dims(x) {axis} -> a new dim of size 1 at `axis`.
  permute(x) {perm}  -> dims reordered: result.shape[i] = x.shape[perm[i]].
  reduce(x) {kind, axis} -> x's shape without `axis`. kind in REDUCE_KINDS. sum and prod
                    of bool/int give int64 (the result type says), of floats the float type
                    (half floats accumulate in float32 or wider); argmax/argmin give the int32 lane
                    index of the first extreme. Masked lanes were replaced with the
                    reduction's identity by the frontend (`where`), so reduce sees all lanes.
  scan(x) {kind, axis, reverse} -> x's shape: the inclusive running reduction along `axis`
                    (cumsum, cumprod, cummax, cummin), from its last element back when
                    reverse. kind in SCAN_KINDS; result dtypes as reduce's (sums and
                    products of ints give int64); float sums and products accumulate in
                    float64 (float32 under fast_math) and round each element once; max/min
                    propagate NaN. Masked lanes were replaced with the identity by the
                    frontend, as for reduce.
  dot(a, b)         a [M, K] x b [K, N] -> [M, N] in the result's dtype (accumulated in it).

Memory
  load(%tensor, idx0..idx{r-1}, [mask], [other]) {checked, mask, other} -> tile: element
                    [idx0[l], idx1[l], ...] for every lane l. Index tiles have the result's
                    shape (int32/int64). checked[d]: lanes with idx_d outside [0, size_d) read
                    `other` (0 when absent); lanes with mask false also read `other`.
  store(%tensor, idx..., value, [mask]) {checked, mask}: lanes out of bounds on a checked
                    dim, or with mask false, are not written.
  atomic_add(%tensor, idx..., value, [mask]) {checked, mask} -> the old values (0 where not
                    written).

Tensor-level ops (whole tensors, in the kernel's own block only; the fuse and tile passes
turn them into tile loops, see passes/fuse.py and passes/tile.py)
  The unary, binary, compare, where, cast, expand_dims, permute, reduce, scan and dot ops above also
  take and give `tensor` values: whole tensors with symbolic shapes, computed as numpy
  would compute them on the whole arrays. A tensor param or alloc used as an operand is
  read (its contents at that point of the program). broadcast also takes a scalar (rank-0
  tile) to a tensor; a broadcast between two symbolic sizes listed together in the
  kernel's `equal_sizes` is allowed (the call checks that they are equal).
  dot(a, b)         of tensors: [..., M, K] x [..., K, N] -> [..., M, N], numpy's matmul: the
                    dims before the last two are batch dims, each 1 or the result's (aligned
                    to the right). The tile pass gives a program one element of each batch
                    dim and a 2-D tile-level dot.
  reshape(x)        -> the result type's shape, same dtype and number of elements: the
                    elements of x in row-major order, laid out row-major in the new shape
                    (numpy's reshape of a contiguous copy). Symbolic element counts that sympy
                    cannot prove equal are listed in the kernel's `equal_sizes` (checked by
                    every call).
  slice(x) {starts, steps} -> result.shape[d] elements along every dim d, element i of the
                    result being element starts[d] + steps[d] * i of x (starts: ints or size
                    expressions, steps: nonzero ints, negative for fl.flip's reversed dims;
                    start + step * (size - 1) is inside x). Python/torch clamping of bounds
                    is done by the frontend.
  take(x, index) {axis} -> x.shape[:axis] + index.shape + x.shape[axis + 1:], element
                    [p..., j..., q...] being x[p..., index[j...], q...] (numpy's take; an
                    index outside [0, x.shape[axis]) reads 0). index: an integer tensor.
  take_along(x, index) {axis} -> index.shape (x's rank), element [p..., j, q...] being
                    x[p..., index[p..., j, q...], q...] (torch.gather; numpy's
                    take_along_axis where the shapes match); an element outside x reads 0.
  reshape, slice, concat, take and take_along are indexed views: the tile pass reads their operand from memory at
  indices computed from the consumer's own (passes/tile_views.py), so their operand -- or
  the operand of the chain of reshapes/slices they end -- is in memory when the group runs.
  write(%dst, %value): %dst (a tensor param or alloc) gets the tensor value %value (same
                    shape, the dst's dtype).
  fuse/tile attrs   {group}: the fusion group (launch) an op was put in by the fuse pass.
"""
from __future__ import annotations

from dataclasses import dataclass

FLOAT_UNARY = ("exp", "exp2", "log", "log2", "sqrt", "rsqrt", "sin", "cos", "tan", "atan",
               "tanh", "erf", "sigmoid", "gelu", "gelu_tanh", "silu", "floor", "ceil")
# float math the backends take from the C math library (CPU libm, CUDA's device functions)
LIBM_UNARY = ("asin", "acos", "sinh", "cosh", "asinh", "acosh", "atanh", "erfc", "log1p",
              "expm1")
FLOAT_UNARY += LIBM_UNARY
NUMERIC_UNARY = ("neg", "abs", "relu")
BITWISE_UNARY = ("not",)
UNARY = FLOAT_UNARY + NUMERIC_UNARY + BITWISE_UNARY
ARITH_BINARY = ("add", "sub", "mul", "div", "floordiv", "mod", "maximum", "minimum", "pow",
                "atan2", "fmod", "hypot", "copysign")
# binary ops computed in floats: int and bool operands become the default float first
FLOAT_RESULT_BINARY = ("div", "atan2", "hypot", "copysign")
BITWISE_BINARY = ("and", "or", "xor")
BINARY = ARITH_BINARY + BITWISE_BINARY
COMPARE = ("eq", "ne", "lt", "le", "gt", "ge")
REDUCE_KINDS = ("sum", "prod", "max", "min", "argmax", "argmin")
SCAN_KINDS = ("sum", "prod", "max", "min")
# Whole-tensor views that read their operand at computed indices (see the table above).
INDEXED_VIEWS = ("reshape", "slice", "concat", "take", "take_along")
TERMINATORS = ("return", "yield")
REGION_OPS = ("kernel", "tile_for", "for", "if")
MEMORY_WRITE = ("store", "atomic_add")
# Ops with no side effects: removable when unused, mergeable when identical.
PURE = (UNARY + BINARY + COMPARE
        + ("where", "cast", "broadcast", "expand_dims", "permute", "reduce", "scan", "dot",
           "tile_index", "tile_begin", "const", "arange", "symval", "iota") + INDEXED_VIEWS)


@dataclass(frozen=True)
class OpInfo:
    name: str
    kind: str                    # unary, binary, compare, where, shape, ..., structure, memory
    n_regions: int = 0
    terminator: bool = False


def _table() -> dict[str, OpInfo]:
    table: dict[str, OpInfo] = {}
    for names, kind in ((UNARY, "unary"), (BINARY, "binary"), (COMPARE, "compare")):
        for n in names:
            table[n] = OpInfo(n, kind)
    for n, kind in (("where", "where"), ("cast", "cast"), ("broadcast", "shape"),
                    ("expand_dims", "shape"), ("permute", "shape"), ("reduce", "reduce"),
                    ("scan", "scan"),
                    ("dot", "dot"), ("tile_index", "index"), ("tile_begin", "index"),
                    ("const", "const"), ("arange", "const"), ("symval", "const"),
                    ("iota", "const"),
                    ("load", "memory"), ("store", "memory"), ("atomic_add", "memory"),
                    ("alloc", "host"), ("write", "write"), ("reshape", "view"),
                    ("slice", "view"), ("concat", "view"), ("take", "view"),
                    ("take_along", "view")):
        table[n] = OpInfo(n, kind)
    table["kernel"] = OpInfo("kernel", "structure", 1)
    table["tile_for"] = OpInfo("tile_for", "structure", 1)
    table["for"] = OpInfo("for", "structure", 1)
    table["if"] = OpInfo("if", "structure", 2)
    table["return"] = OpInfo("return", "structure", terminator=True)
    table["yield"] = OpInfo("yield", "structure", terminator=True)
    return table


OPS: dict[str, OpInfo] = _table()


def memory_operands(op) -> tuple:
    """Split a load/store/atomic_add's operands into (tensor, indices, value, mask, other)."""
    tensor = op.operands[0]
    rank = tensor.type.rank
    idx = op.operands[1:1 + rank]
    rest = op.operands[1 + rank:]
    value = None
    if op.name != "load":
        value, rest = rest[0], rest[1:]
    mask = other = None
    if op.attrs.get("mask"):
        mask, rest = rest[0], rest[1:]
    if op.attrs.get("other"):
        other, rest = rest[0], rest[1:]
    return tensor, idx, value, mask, other
