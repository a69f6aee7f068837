"""`@fusec.kernel`: specialization, the in-memory cache of compiled kernels, dispatch."""
from __future__ import annotations

import inspect
import os
import sys

from . import arrays
from .backends.common import size_function
from .compiler import BACKENDS, CompiledKernel, Config, build
from .dsl import constexpr
from .specialize import TensorSpec, describe


def _is_constexpr(annotation) -> bool:
    return annotation is constexpr or isinstance(annotation, constexpr) or (
        isinstance(annotation, str) and annotation.split(".")[-1] == "constexpr")


def _next_pow2(n: int) -> int:
    return 1 if n <= 1 else 1 << (int(n) - 1).bit_length()


def _check_backend(name: str, where: str) -> str:
    if name not in BACKENDS:
        raise ValueError(f"{where}: unknown backend {name!r}; expected one of {', '.join(BACKENDS)}")
    return name


class Kernel:
    def __init__(self, fn, configs=None, backend=None, static_shapes=False, autotune=True):
        self.fn = fn
        self.__name__ = fn.__name__
        self.__doc__ = fn.__doc__
        self.signature = inspect.signature(fn)
        self.params = list(self.signature.parameters.values())
        for p in self.params:
            if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                raise TypeError(f"kernel {fn.__name__}: *args/**kwargs parameters are not "
                                "supported")
        self.constexprs = {p.name for p in self.params if _is_constexpr(p.annotation)}
        self.configs = [c if isinstance(c, Config) else Config(**c) for c in (configs or [])]
        self.backend = _check_backend(backend, "fusec.kernel") if backend else None
        self.static_shapes = static_shapes
        self.autotune = autotune
        self._guards: dict = {}       # base key -> size expressions whose pow2 bucket matters
        self._compiled: dict = {}     # full key -> CompiledKernel

    def __repr__(self):
        return f"<fusec.Kernel {self.fn.__name__}>"

    # -- arguments -------------------------------------------------------------------------
    def _bind(self, args, kwargs):
        try:
            bound = self.signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise TypeError(f"{self.fn.__name__}(): {exc}") from None
        bound.apply_defaults()
        return [bound.arguments[p.name] for p in self.params]

    def _describe(self, values):
        keys, specs = [], []
        for p, v in zip(self.params, values):
            key, spec = describe(p.name, v, p.name in self.constexprs, self.static_shapes)
            keys.append(key)
            specs.append(spec)
        return tuple(keys), specs

    def _resolve_backend(self, values, backend=None, target=None):
        if os.environ.get("FUSEC_INTERPRET") == "1":
            return "interpret", "cpu"
        backend = backend or self.backend or os.environ.get("FUSEC_BACKEND") or None
        if backend:
            _check_backend(backend, "backend")
        devices = {arrays.device_of(v) for v in values if arrays.is_array(v)}
        if len(devices) > 1:
            raise ValueError(f"{self.fn.__name__}(): tensor arguments are on different devices "
                             f"({', '.join(sorted(devices))})")
        on_gpu = devices == {"cuda"}
        if target is None:
            if on_gpu:       # the device's own arch (part of the key: one build per arch)
                target = arrays.cuda_arch(next(v for v in values if arrays.is_array(v)))
            elif backend in ("cuda", "ptx"):
                target = "cuda"          # the current device's arch, read by build()
            else:
                target = "cpu"
        if backend is None:
            backend = "cuda" if target != "cpu" else "cpu"
        if on_gpu and backend in ("cpu", "interpret"):
            raise ValueError(f"{self.fn.__name__}(): backend {backend!r} runs on the CPU but "
                             "the tensors are on a CUDA device")
        return backend, target

    # -- compile and call ------------------------------------------------------------------
    def _config(self, config):
        if config is not None:
            return config if isinstance(config, Config) else Config(**config)
        return self.configs[0] if self.configs else None

    def _key(self, values, backend, target, config):
        """(full key or None when not compiled yet, base key, param specs)."""
        arg_keys, specs = self._describe(values)
        base_key = (arg_keys, backend, target, config)
        guards = self._guards.get(base_key)
        full_key = None if guards is None else (base_key, self._buckets(guards, specs))
        return full_key, base_key, specs

    def _lookup(self, values, backend, target, config):
        full_key, base_key, specs = self._key(values, backend, target, config)
        compiled = self._compiled.get(full_key) if full_key is not None else None
        if compiled is not None:
            return compiled
        compiled = build(self.fn, specs, backend, target, config)
        compiled.runtime_positions = [i for i, p in enumerate(self.params)
                                      if p.name not in self.constexprs]
        guards = self._guards.setdefault(base_key, [(g, size_function(g)) for g in
                                                    compiled.guards])
        full_key = (base_key, self._buckets(guards, specs))
        self._compiled[full_key] = compiled
        compiled.validate = lambda args: self._validate(full_key, args)
        return compiled

    def _validate(self, full_key, args):
        """Raise ValueError naming the first argument outside the specialization of the
        compiled kernel stored under full_key."""
        values = self._bind(args, {})
        _, backend, target, config = full_key[0]
        key, _, _ = self._key(values, backend, target, config)
        if key == full_key:
            return
        got = key[0][0] if key else self._describe(values)[0]
        for p, want_part, got_part in zip(self.params, full_key[0][0], got):
            if want_part != got_part:
                raise ValueError(f"{self.fn.__name__}(): argument {p.name!r} does not match "
                                 f"the specialization this CompiledKernel was built for "
                                 f"({want_part} vs {got_part}); call the kernel itself, which "
                                 "compiles a matching one")
        raise ValueError(f"{self.fn.__name__}(): a size used as a whole-extent ':' tile falls "
                         "in another power-of-two bucket than this CompiledKernel was built for;"
                         " call the kernel itself, which compiles a matching one")

    def _buckets(self, guards, specs):
        if not guards:
            return ()
        symbols = {}
        for spec in specs:
            if hasattr(spec, "hints"):
                for d, n in enumerate(spec.hints):
                    symbols[f"{spec.name}_s{d}"] = n
            elif hasattr(spec, "hint") and spec.kind == "i":
                symbols[spec.name] = spec.hint
        return tuple(_next_pow2(fn(symbols)) for _, fn in guards)

    def compile(self, *args, target=None, backend=None, config=None, **kwargs) -> CompiledKernel:
        """Compile for arguments (arrays or fusec.TensorSpec) without running."""
        values = self._bind(args, kwargs)
        if target is not None and backend is None:
            backend = "cpu" if target == "cpu" else "cuda"
        backend, target = self._resolve_backend(
            [v for v in values if not isinstance(v, TensorSpec)], backend, target)
        return self._lookup(values, backend, target, self._config(config))

    def __call__(self, *args, **kwargs):
        values = self._bind(args, kwargs)
        backend, target = self._resolve_backend(values)
        compiled = self._lookup(values, backend, target, self._config(None))
        return compiled.run([v for p, v in zip(self.params, values)
                             if p.name not in self.constexprs])


def kernel(fn=None, *, configs=None, backend=None, static_shapes=False, autotune=True):
    """`@fusec.kernel` or `@fusec.kernel(configs=..., backend=..., static_shapes=...)`."""
    def wrap(f):
        return Kernel(f, configs=configs, backend=backend, static_shapes=static_shapes,
                      autotune=autotune)
    return wrap(fn) if fn is not None else wrap


def explain(kernel_obj: Kernel, *args, file=None, **kwargs) -> CompiledKernel:
    """Print the IR after each pass and the generated code for these arguments."""
    file = file or sys.stdout
    compiled = kernel_obj.compile(*args, **kwargs)
    for stage, text in compiled.asm.items():
        print(f"===== {stage} =====", file=file)
        print(text if isinstance(text, str) else f"<{len(text)} bytes of binary>", file=file)
    return compiled
