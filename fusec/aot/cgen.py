"""The C header + source of a package: the GPU variants' tables (rules, formulas, layouts,
embedded cubins and PTX) generated from the manifest, around the fixed C runtime
(templates/runtime.c) that interprets them as the Python loader does.

A kernel whose parameters take different kinds in different signatures (a tensor in one,
an int in another), or with a tensor of rank above MAX_RANK, gets no C function; the header
says so where it would be.
"""
from __future__ import annotations

import keyword
from pathlib import Path
from string import Template

from ..ir.dtypes import ALL_DTYPES
from .runtime.manifest import artifact_path

TEMPLATES = Path(__file__).resolve().parent / "templates"
MAX_RANK = 8
DTYPE_CODE = {d.name: i for i, d in enumerate(ALL_DTYPES)}
_OPS = {"+": "FC_ADD", "*": "FC_MUL", "//": "FC_FLOORDIV", "%": "FC_MOD", "**": "FC_POW",
        "max": "FC_MAX", "min": "FC_MIN", "neg": "FC_NEG"}
_RESERVED = {"auto", "break", "case", "char", "const", "continue", "default", "do",
             "double", "else", "enum", "extern", "float", "for", "goto", "if", "inline",
             "int", "long", "register", "restrict", "return", "short", "signed", "sizeof",
             "static", "struct", "switch", "typedef", "union", "unsigned", "void",
             "volatile", "while", "bool", "class", "new", "delete", "template", "this",
             "stream", "outputs", "params", "index", "shape"}
# param kind -> (C type, the fc_value field the wrapper fills)
_C_PARAM = {"FC_TENSOR_PARAM": ("const {pkg}_tensor *", "tensor"),
            "FC_INT_PARAM": ("int64_t ", "i"), "FC_FLOAT_PARAM": ("double ", "f"),
            "FC_BOOL_PARAM": ("int ", "i"), "FC_CONST_INT": ("int64_t ", "i"),
            "FC_CONST_BOOL": ("int ", "i"), "FC_CONST_FLOAT": ("double ", "f"),
            "FC_CONST_STR": ("const char *", "s"), "FC_CONST_NONE": ("const char *", "s")}
_RUNTIME_KIND = {"int": "FC_INT_PARAM", "float": "FC_FLOAT_PARAM", "bool": "FC_BOOL_PARAM"}


def c_string(text: str) -> str:
    """A C string literal (non-ASCII bytes, quotes, backslashes and '?' escaped)."""
    out = []
    for byte in text.encode("utf-8"):
        ch = chr(byte)
        out.append(ch if 32 <= byte < 127 and ch not in '"\\?' else f"\\{byte:03o}")
    return '"' + "".join(out) + '"'


def c_int(v: int) -> str:
    return "(-9223372036854775807LL - 1)" if v == -2 ** 63 else f"{v}LL"


_CONSTEXPR = {bool: ("FC_CONST_BOOL", lambda v: f".ivalue = {int(v)}"),
              int: ("FC_CONST_INT", lambda v: f".ivalue = {c_int(v)}"),
              float: ("FC_CONST_FLOAT", lambda v: f".fvalue = {v!r}"),
              str: ("FC_CONST_STR", lambda v: f".svalue = {c_string(v)}"),
              type(None): ("FC_CONST_NONE", lambda v: ".svalue = NULL")}


def c_name(name: str) -> str:
    return name + "_" if name in _RESERVED or keyword.iskeyword(name) else name


def _struct(**fields) -> str:
    return "{" + ", ".join(f".{k} = {v}" for k, v in fields.items()) + "}"


class _Tables:
    """Static C definitions under fresh names, in definition order."""

    def __init__(self):
        self.lines: list[str] = []
        self.count = 0

    def array(self, ctype: str, items: list[str]) -> str:
        if not items:
            return "NULL"
        self.count += 1
        name = f"fc_t{self.count}"
        self.lines.append(f"static const {ctype} {name}[] = {{\n    "
                          + ",\n    ".join(items) + "\n};")
        return name

    def expr(self, tokens: list, symbols: list[str]) -> str:
        items = [f"{{FC_CONST, {c_int(t)}}}" if isinstance(t, int) else
                 f"{{FC_SYM, {symbols.index(t[1:])}}}" if t.startswith("$") else
                 f"{{{_OPS[t]}, 0}}" for t in tokens]
        return f"{{{self.array('fc_token', items)}, {len(tokens)}}}"

    def image(self, data: bytes) -> str:
        self.count += 1
        name = f"fc_image{self.count}"
        # decimal bytes: cubins are mostly small values, so about 3 characters a byte
        rows = [",".join(map(str, data[i:i + 32])) for i in range(0, len(data), 32)]
        self.lines.append(f"static const _Alignas(16) unsigned char {name}[{len(data)}] = "
                          "{\n" + ",\n".join(rows) + "\n};")
        return name

    def text(self, text: str) -> str:
        """A NUL-terminated text (PTX) as one string literal, a line of it per line."""
        self.count += 1
        name = f"fc_text{self.count}"
        lines = text.splitlines(keepends=True) or [""]
        self.lines.append(f"static const char {name}[] =\n"
                          + "\n".join(c_string(line) for line in lines) + ";")
        return name


def _param_kinds(spec: dict, variants: list) -> list[str] | str:
    """The kind of each param (FC_*), or why the kernel gets no C function."""
    kinds = []
    for p, param in enumerate(spec["params"]):
        seen = set()
        for v in variants:
            r = v["rules"]["params"][p]
            if r["kind"] == "tensor" and len(r["dims"]) > MAX_RANK:
                return f"{param['name']} has rank {len(r['dims'])} > {MAX_RANK}"
            seen.add("FC_TENSOR_PARAM" if r["kind"] == "tensor" else
                     _CONSTEXPR[type(r["value"])][0] if r["kind"] == "constexpr" else
                     _RUNTIME_KIND[r["kind"]])
        if len(seen) != 1:
            return f"{param['name']} takes different kinds in different signatures"
        kinds.append(seen.pop())
    return kinds


def _bits(flags: list) -> str:
    return f"{sum(1 << d for d, f in enumerate(flags) if f)}u"


def _rule(tables: _Tables, r: dict, kind: str) -> str:
    if r["kind"] == "tensor":
        dims = tables.array("fc_dim_rule", [
            f"{{{c_int(-1 if d['size'] is None else d['size'])}, {d['multiple_of']}, "
            f"{c_int(-1 if d['max'] is None else d['max'])}}}" for d in r["dims"]])
        return _struct(kind=kind, dtype=DTYPE_CODE[r["dtype"]], rank=len(r["dims"]),
                       aligned16=int(r["aligned16"]), dims=dims,
                       unit_stride=_bits(r["unit_stride"]), stride16=_bits(r["stride16"]))
    if r["kind"] == "int":
        return _struct(kind=kind, min=c_int(r["min"]), max=c_int(r["max"]),
                       multiple_of=c_int(r["multiple_of"]))
    if r["kind"] == "constexpr":
        return "{" + f".kind = {kind}, " + _CONSTEXPR[type(r["value"])][1](r["value"]) + "}"
    return _struct(kind=kind)


def _variant(tables: _Tables, v: dict, rank: int, kinds: list, root: Path) -> str:
    symbols = [s[0] for s in v["symbols"]]
    rules, layout = v["rules"], v["layout"]
    arch = v["target"].removeprefix("sm_")
    number = int(arch.rstrip("a"))
    data = artifact_path(root, v["artifact"]["path"]).read_bytes()
    ptx = artifact_path(root, v["ptx"]["path"]).read_text() if "ptx" in v else None
    launches = [_struct(
        function=c_string(launch["function"]),
        grid=tables.array("fc_grid_dim", [
            f"{{{g['slot']}, {tables.expr(g['extent'], symbols)}, {c_int(g['block'])}}}"
            for g in launch["grid"]]),
        ndims=len(launch["grid"]), scratch_slot=launch["scratch_slot"],
        scratch_bytes=c_int(launch["scratch_bytes"]),
        shared_bytes=launch.get("shared_bytes", 0)) for launch in layout["launches"]]
    return _struct(
        id=c_string(v["id"]), signature=c_string(v["signature"]),
        arch_major=number // 10, arch_minor=number % 10, arch_specific=int(arch.endswith("a")),
        rank=rank,
        rules=tables.array("fc_param_rule", [_rule(tables, r, kind) for r, kind
                                             in zip(rules["params"], kinds)]),
        equal=tables.array("fc_equal_rule", [
            f"{{{tables.array('fc_dim_ref', [f'{{{p}, {d}}}' for p, d in group])}, "
            f"{len(group)}}}" for group in rules["equal_dims"]]),
        nequal=len(rules["equal_dims"]),
        guards=tables.array("fc_guard", [
            f"{{{tables.expr(g['expr'], symbols)}, {c_string(g['text'])}, {c_int(g['min'])},"
            f" {c_int(g['max'])}}}" for g in rules["guards"]]),
        nguards=len(rules["guards"]),
        symbols=tables.array("fc_symbol", [f"{{{arg}, {dim}}}" for _, arg, dim
                                           in v["symbols"]]),
        nsymbols=len(symbols),
        tensors=tables.array("fc_tensor_slot", [f"{{{t['arg']}, {t['slot']}, {t['rank']}}}"
                                                for t in layout["tensors"]]),
        ntensors=len(layout["tensors"]),
        scalars=tables.array("fc_scalar_slot", [
            f"{{{s['arg']}, {s['slot']}, {_RUNTIME_KIND[s['kind']]}}}"
            for s in layout["scalars"]]),
        nscalars=len(layout["scalars"]),
        sizes=tables.array("fc_size_slot", [f"{{{s['slot']}, {tables.expr(s['expr'], symbols)}}}"
                                            for s in layout["sizes"]]),
        nsizes=len(layout["sizes"]),
        launches=tables.array("fc_launch", launches), nlaunches=len(launches),
        allocs=tables.array("fc_alloc", [
            f"{{{DTYPE_CODE[a['dtype']]}, {len(a['shape'])}, "
            f"{tables.array('fc_expr', [tables.expr(e, symbols) for e in a['shape']])}}}"
            for a in v["allocs"]]),
        nallocs=len(v["allocs"]), nslots=layout["slots"], threads=v["cuda"]["threads"],
        image=tables.image(data), image_size=len(data),
        ptx=tables.text(ptx) if ptx is not None else "NULL",
        ptx_size=len(ptx.encode()) + 1 if ptx is not None else 0)


def _kernel(tables: _Tables, pkg: str, name: str, spec: dict, variants: list, kinds: list,
            root: Path) -> tuple[str, str]:
    """(prototypes for the header, definitions for the source) of one kernel."""
    params = spec["params"]
    names = [c_name(p["name"]) for p in params]
    args = "".join(f", {_C_PARAM[k][0].format(pkg=pkg)}{n}" for k, n in zip(kinds, names))
    fills = "".join(f"    params[{i}].{_C_PARAM[k][1]} = {n};\n"
                    for i, (k, n) in enumerate(zip(kinds, names)))
    runtime = [i for i, p in enumerate(params) if not p["constexpr"]]
    ranks: dict[str, int] = {}
    table = [_variant(tables, v, ranks.setdefault(v["signature"], len(ranks)), kinds, root)
             for v in variants]
    built = "; ".join(dict.fromkeys(f"{v['target']}: {v['signature']}" for v in variants))
    call = f"CUresult {pkg}_{name}(CUstream stream{args}, {pkg}_tensor *outputs)"
    shape = f"int {pkg}_{name}_output_shape(int index, int64_t *shape{args})"
    proto = (f"/* {name}({', '.join(p['name'] for p in params)})\n"
             f" * built: {built.replace('*/', '* /')} */\n{call};\n{shape};\n")
    k = f"fc_kernel_{name}"
    n = max(1, len(params))
    body = (f"    fc_value params[{n}];\n    memset(params, 0, sizeof params);\n{fills}")
    definition = (
        f"static const char *const {k}_params[{n}] = "
        f"{{{', '.join(c_string(p['name']) for p in params) or 'NULL'}}};\n"
        f"static const int32_t {k}_runtime[{max(1, len(runtime))}] = "
        f"{{{', '.join(map(str, runtime)) or '0'}}};\n"
        f"static const fc_variant {k}_variants[] = {{\n    " + ",\n    ".join(table) + "\n};\n"
        f"static fc_loaded {k}_loaded[{len(variants)}];\n"
        f"static const fc_kernel {k} = {{{c_string(name)}, {len(params)}, {len(runtime)}, "
        f"{k}_params, {k}_runtime, {k}_variants, {len(variants)}, {k}_loaded}};\n\n"
        f"{call} {{\n{body}    return fc_call(&{k}, params, outputs, stream);\n}}\n\n"
        f"{shape} {{\n{body}    return fc_output_shape(&{k}, params, index, shape);\n}}\n")
    return proto, definition


def generate_c(manifest: dict, root: Path) -> dict[str, str]:
    """{"<pkg>.h": ..., "<pkg>.c": ...}, or {} when the package has no GPU variants."""
    from .. import __version__
    pkg = manifest["name"]
    gpu = {name: [v for v in spec["variants"] if v["target"] != "cpu"]
           for name, spec in manifest["kernels"].items()}
    if not any(gpu.values()):
        return {}
    tables = _Tables()
    protos, defs = [], []
    limits = {"SLOTS": 1, "SYMBOLS": 1, "LAUNCHES": 1, "OUTPUTS": 1, "EQUAL": 1}
    for name, variants in gpu.items():
        if not variants:
            continue
        kinds = _param_kinds(manifest["kernels"][name], variants)
        if isinstance(kinds, str):
            protos.append(f"/* {name}: not available from C: {kinds} */\n")
            continue
        for v in variants:
            for key, count in (("SLOTS", v["layout"]["slots"]), ("SYMBOLS", len(v["symbols"])),
                               ("LAUNCHES", len(v["layout"]["launches"])),
                               ("OUTPUTS", len(v["allocs"])),
                               ("EQUAL", max(map(len, v["rules"]["equal_dims"]), default=1))):
                limits[key] = max(limits[key], count)
        proto, definition = _kernel(tables, pkg, name, manifest["kernels"][name], variants,
                                    kinds, root)
        protos.append(proto)
        defs.append(definition)
    header = Template((TEMPLATES / "header.h").read_text()).substitute(
        pkg=pkg, PKG=pkg.upper(), version=__version__, max_rank=MAX_RANK,
        dtypes=",\n".join(f"    {pkg.upper()}_{d.name.upper()} = {DTYPE_CODE[d.name]}"
                          for d in ALL_DTYPES),
        kernels="\n".join(protos))
    source = "\n".join(
        [f"/* {pkg}.c: generated by fusec build {__version__} from manifest.json: the GPU "
         f"variants of package '{pkg}' for C callers (see {pkg}.h). Do not edit. */",
         f'#include "{pkg}.h"', "", f"typedef {pkg}_tensor fc_tensor;"]
        + [f"#define FC_MAX_{key} {value}" for key, value in limits.items()]
        + [f"#define FC_ERROR_FN {pkg}_last_error", f"#define FC_PACKAGE {c_string(pkg)}",
           f"#define FC_NO_MATCHING_VARIANT {pkg.upper()}_NO_MATCHING_VARIANT",
           f"#define FC_NO_VARIANT_FOR_DEVICE {pkg.upper()}_NO_VARIANT_FOR_DEVICE",
           f"#define FC_NDTYPES {len(ALL_DTYPES)}",
           "static const char *const fc_dtype_names[FC_NDTYPES] = {"
           + ", ".join(c_string(d.name) for d in ALL_DTYPES) + "};",
           "", (TEMPLATES / "runtime.c").read_text(),
           "/* ---- the package's variants ---- */", "", "\n".join(tables.lines), "",
           "\n".join(defs)])
    return {f"{pkg}.h": header, f"{pkg}.c": source}
