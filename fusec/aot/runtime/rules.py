"""Whether a call fits a variant: the facts the variant's code was compiled to assume
(fusec's specialization key: dtypes, ranks, static sizes, divisibility by 16, unit and
16-multiple strides, 16-byte aligned data pointers, int ranges, constexpr values), the
sizes declared equal, and the guards (the power-of-two bucket of each size the kernel uses
as a whole-extent `:` tile). `mismatch` returns the first unmet one as text (for the error
that lists what was built), or None.
"""
from __future__ import annotations

from .args import ScalarArg, TensorArg
from .exprs import compile_expr


def _tensor(rule: dict, a, name: str) -> str | None:
    if not isinstance(a, TensorArg):
        return f"{name} is {a.describe()}, built for a tensor"
    if a.dtype != rule["dtype"]:
        return f"{name} has dtype {a.dtype}, built for {rule['dtype']}"
    if len(a.shape) != len(rule["dims"]):
        return f"{name} has rank {len(a.shape)}, built for rank {len(rule['dims'])}"
    empty = 0 in a.shape
    for d, (n, st, dim) in enumerate(zip(a.shape, a.strides, rule["dims"])):
        if dim["size"] is not None and n != dim["size"]:
            return f"{name} has size {n} in dim {d}, built for {dim['size']}"
        if n % dim["multiple_of"]:
            return f"{name} has size {n} in dim {d}, built for multiples of " \
                   f"{dim['multiple_of']}"
        if dim["max"] is not None and n > dim["max"]:
            return f"{name} has size {n} in dim {d}, built for at most {dim['max']}"
        if rule["unit_stride"][d] and st != 1 and n > 1 and not empty:
            return f"{name} has stride {st} in dim {d}, built for unit stride"
        if rule["stride16"][d] and st % 16 and n > 1 and not empty:
            return f"{name} has stride {st} in dim {d}, built for multiples of 16"
    if rule["aligned16"] and a.address % 16:
        return f"{name}'s data pointer is not 16-byte aligned (built for aligned data)"
    return None


def _int(rule: dict, a, name: str) -> str | None:
    if not isinstance(a, ScalarArg) or a.kind != "int":
        return f"{name} is {a.describe()}, built for an int"
    v = a.value
    if not rule["min"] <= v <= rule["max"]:
        return f"{name} = {v} is outside [{rule['min']}, {rule['max']}]"
    if v % rule["multiple_of"]:
        return f"{name} = {v} is not a multiple of {rule['multiple_of']}"
    return None


def _kind(kind: str):
    def check(rule: dict, a, name: str) -> str | None:
        if not isinstance(a, ScalarArg) or a.kind != kind:
            return f"{name} is {a.describe()}, built for a {kind}"
        return None
    return check


def _constexpr(rule: dict, a, name: str) -> str | None:
    want = rule["value"]
    got = a.value
    if type(got) is not type(want) or got != want:
        return f"{name} = {got!r} (constexpr), built for {want!r}"
    return None


CHECKS = {"tensor": _tensor, "int": _int, "float": _kind("float"), "bool": _kind("bool"),
          "constexpr": _constexpr}


def bind_symbols(symbols: list, runtime_args: list) -> dict:
    """Size symbol -> value: a tensor's size in a dim, or an int scalar (dim < 0)."""
    env = {}
    for name, index, dim in symbols:
        a = runtime_args[index]
        env[name] = a.shape[dim] if dim >= 0 else int(a.value)
    return env


class Rules:
    def __init__(self, variant: dict, param_names: list[str], where: str):
        rules = variant["rules"]
        self.params = [(CHECKS[r["kind"]], r, n) for r, n in zip(rules["params"], param_names)]
        self.equal = rules["equal_dims"]
        self.param_names = param_names
        names = {s[0] for s in variant["symbols"]}
        self.guards = [(compile_expr(g["expr"], names, f"{where}: guard {g['text']}"),
                        g["text"], g["min"], g["max"]) for g in rules["guards"]]

    def mismatch(self, args: list, env_of) -> tuple[str, bool] | None:
        """None when the call fits, else (the reason, whether only a guard failed).
        args: one described argument per parameter; env_of() binds the size symbols
        (called only when the params fit)."""
        for a, (check, rule, name) in zip(args, self.params):
            reason = check(rule, a, name)
            if reason:
                return reason, False
        for group in self.equal:
            sizes = {args[p].shape[d] for p, d in group}
            if len(sizes) > 1:
                dims = ", ".join(f"{self.param_names[p]} dim {d}" for p, d in group)
                return f"sizes declared equal differ ({dims}: {sorted(sizes)})", False
        if self.guards:
            env = env_of()
            for fn, text, low, high in self.guards:
                v = fn(env)
                if not low <= v <= high:
                    return f"{text} = {v} is outside the built buckets", True
        return None
