"""`@fusec.kernel`: specialization, the in-memory cache of compiled kernels, dispatch."""
from __future__ import annotations

import inspect
import types
import os
import sys

import numpy as np

from . import arrays, tuning
from .ir.symbolic import next_pow2
from .backends.common import size_function
from .compiler import BACKENDS, CompiledKernel, Config, autotune_facts, build, size_hints
from .dsl import constexpr
from .kernel_store import KernelStore
from .specialize import TensorSpec, describe


CALL_CACHE_ENTRIES = 256        # distinct argument geometries remembered per kernel


_TENSOR_TYPES: tuple = ()


def _torch_tensor_types() -> tuple:
    """The tensor classes whose calls are keyed by _call_key: torch.Tensor and
    nn.Parameter (a model's weights reach a compiled region as Parameters)."""
    global _TENSOR_TYPES
    if not _TENSOR_TYPES:
        torch = arrays._torch()
        if torch is None:
            return ()
        _TENSOR_TYPES = (torch.Tensor, torch.nn.Parameter)
    return _TENSOR_TYPES


def _is_constexpr(annotation) -> bool:
    return annotation is constexpr or isinstance(annotation, constexpr) or (
        isinstance(annotation, str) and annotation.split(".")[-1] == "constexpr")


def _check_backend(name: str, where: str) -> str:
    if name not in BACKENDS:
        raise ValueError(f"{where}: unknown backend {name!r}; expected one of {', '.join(BACKENDS)}")
    return name


class Kernel:
    """A kernel function with its compiled specializations. How a call's config is chosen
    (autotune=True: the cost model's pick on the CPU, the fixed policy on GPUs, ...) is
    described in
    fusec/tuning.py; `configs` restricts the choice to those configs; an explicit `config=`
    to compile() wins over all."""

    def __init__(self, fn, configs=None, backend=None, static_shapes=False, autotune=True,
                 fast_math=False):
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
        if configs is not None and (isinstance(configs, (str, dict, Config)) or
                                    not hasattr(configs, "__iter__")):
            raise TypeError(f"fusec.kernel: configs must be a list of fusec.Config, got "
                            f"{configs!r}")
        self.configs = [c if isinstance(c, Config) else Config(**c) for c in (configs or [])]
        self.backend = _check_backend(backend, "fusec.kernel") if backend else None
        self.static_shapes = static_shapes
        if not isinstance(fast_math, bool):
            raise TypeError(f"fusec.kernel: fast_math must be True or False, got {fast_math!r}")
        self.fast_math = fast_math
        self.autotune = tuning.check_autotune(autotune)
        self.runtime_positions = [i for i, p in enumerate(self.params)
                                  if p.name not in self.constexprs]
        self._guards: dict = {}       # base key -> size expressions whose pow2 bucket matters
        self._compiled: dict = {}     # full key -> CompiledKernel (what calls look up)
        self._candidates: dict = {}   # the same for configs the autotuner built
        self._facts: dict = {}        # base key -> (whole-extent guards, {buckets: facts})
        self.last_tuning = None       # the autotuner's last choice (autotune.tuner.Tuning)
        # raw call arguments (_call_key) -> CompiledKernel.fast_path: a repeated call skips
        # binding, specialization keys, validation and launch-parameter packing
        self._calls: dict = {}
        # the native call path (fusec/fastcall.py) last used: tried before the key is built
        self._native = None
        # places of arguments whose dtype, shape, strides and device every call keeps (a
        # fused region's inputs of known layout, fusec/dynamo): its native call path checks
        # only their type and alignment
        self.known_layouts: frozenset = frozenset()
        self._constexpr_flags = [p.name in self.constexprs for p in self.params]
        self._store = KernelStore(self)     # compiled kernels kept on disk across processes

    def __repr__(self):
        return f"<fusec.Kernel {self.fn.__name__}>"

    @property
    def specializations(self) -> int:
        """How many compiled kernels this kernel's calls have used (one per specialization
        key: dtypes, ranks, divisibility, buckets of whole-extent sizes, config)."""
        return len({id(c) for c in self._compiled.values()})

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
    @staticmethod
    def _config(config):
        if config is None or isinstance(config, Config):
            return config
        if isinstance(config, dict):
            return Config(**config)
        raise TypeError(f"config must be a fusec.Config, got {type(config).__name__}")

    def _key(self, values, backend, target, config):
        """(full key or None when not compiled yet, base key, param specs)."""
        arg_keys, specs = self._describe(values)
        base_key = (arg_keys, backend, target, config)
        guards = self._guards.get(base_key)
        full_key = None if guards is None else (base_key, self._buckets(guards, specs))
        return full_key, base_key, specs

    def _lookup(self, values, backend, target, config, can_run=False, table=None):
        """The compiled kernel for a call: `config` explicit, or None to choose one (by the
        policy; `can_run`: the values are a call's that may be launched to measure).
        `table`: the cache to use (self._compiled unless said)."""
        table = self._compiled if table is None else table
        how = None
        if config is None:
            how = tuning.mode(self.autotune, backend, len(self.configs),
                              lambda: can_run and tuning.runnable(values, backend))
            config = ("autotune", how)          # one entry per way of choosing
        full_key, base_key, specs = self._key(values, backend, target, config)
        compiled = table.get(full_key) if full_key is not None else None
        if compiled is not None:
            return compiled
        disk_key = self._store.key(base_key) if table is self._compiled else None
        restored = self._restore(disk_key, base_key, specs) if disk_key is not None else None
        extents = ()
        if restored is not None:
            compiled, kept_guards = restored
        elif how is None:
            compiled = build(self.fn, specs, backend, target, config,
                             fast_math=self.fast_math)
            compiled.runtime_positions = self.runtime_positions
        elif how == "default" and not self.configs:
            compiled = build(self.fn, specs, backend, target, None,
                             fast_math=self.fast_math)   # the fixed policy
            compiled.runtime_positions = self.runtime_positions
        elif how == "default":
            compiled = self._lookup(values, backend, target, self.configs[0],
                                    table=self._candidates)
        else:
            compiled, extents = self._tuned(values, specs, base_key, backend, target, how)
        if restored is None:
            kept_guards = [(g, size_function(g)) for g in (*compiled.guards, *extents)]
        guards = self._guards.setdefault(base_key, kept_guards)
        full_key = (base_key, self._buckets(guards, specs))
        table[full_key] = compiled
        if compiled.validate is None:      # the entry of its own config checks calls
            compiled.validate = lambda args: self._validate(full_key, args)
        if disk_key is not None and restored is None:
            self._store.save(disk_key, [g for g, _ in guards], full_key[1], compiled)
        return compiled

    def _restore(self, disk_key, base_key, specs):
        """(the compiled kernel an earlier process kept on disk for this call, the guards
        whose buckets selected it), or None."""
        guards = self._guards.get(base_key)
        if guards is None:
            exprs = self._store.guards(disk_key)
            if exprs is None:
                return None
            guards = [(g, size_function(g)) for g in exprs]
        buckets = self._buckets(guards, specs)
        compiled = self._store.load(disk_key, buckets)
        if compiled is None:
            return None
        if isinstance(base_key[3], tuple) and base_key[3][1] != "default":
            self.last_tuning = tuning.restored(compiled.config)     # chosen before
        compiled.runtime_positions = self.runtime_positions
        return compiled, guards

    def _tuned(self, values, specs, base_key, backend, target, how):
        """(compiled kernel of the autotuner's choice, tile extents it depends on)."""
        facts = self._facts_for(base_key, specs)
        if not facts.fitted and not self.configs:     # no model of it: the fixed policy
            compiled = build(self.fn, specs, backend, target, None,
                             fast_math=self.fast_math)
            compiled.runtime_positions = self.runtime_positions
            return compiled, ()
        runtime_args = None
        if how == "measure":
            runtime_args = [values[i] for i in self.runtime_positions]

        def build_for(config):
            return self._lookup(values, backend, target, config, table=self._candidates)

        choice = tuning.choose(self.fn.__name__, facts, backend, target, how, self.configs,
                               (backend, target, base_key[0]), build_for, runtime_args)
        self.last_tuning = choice
        compiled = build_for(choice.config)
        return compiled, tuple(d.extent_expr for d in facts.tunable)

    def _facts_for(self, base_key, specs):
        """The autotuner's facts (two traces), reused for calls whose whole-extent slices
        fall in the same power-of-two buckets."""
        hints = size_hints(specs)
        guards, table = self._facts.get(base_key, ((), {}))
        buckets = tuple(next_pow2(fn(hints)) for fn in guards)
        facts = table.get(buckets)
        if facts is not None:
            return facts.at(hints)
        facts = autotune_facts(self.fn, specs)
        if base_key not in self._facts:
            self._facts[base_key] = ([size_function(g) for g in facts.guards], table)
        table[facts.full_extents] = facts
        return facts

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
        symbols = size_hints(specs)
        return tuple(next_pow2(fn(symbols)) for _, fn in guards)

    def compile(self, *args, target=None, backend=None, config=None, **kwargs) -> CompiledKernel:
        """Compile for arguments (arrays or fusec.TensorSpec) without running."""
        values = self._bind(args, kwargs)
        if target is not None and backend is None:
            backend = "cpu" if target == "cpu" else "cuda"
        backend, target = self._resolve_backend(
            [v for v in values if not isinstance(v, TensorSpec)], backend, target)
        return self._lookup(values, backend, target, self._config(config), can_run=True)

    def __call__(self, *args, **kwargs):
        native = self._native
        if native is not None and not kwargs:      # checks the arguments itself
            result = native(args)
            if result is not NotImplemented:
                return result
        key = self._call_key(args) if not kwargs and len(args) == len(self.params) else None
        if key is not None:
            fast = self._calls.get(key)
            if fast is not None:
                result = fast(args)
                if result is not NotImplemented:
                    if type(fast) is not types.FunctionType:
                        self._native = fast
                    return result
        values = self._bind(args, kwargs)
        backend, target = self._resolve_backend(values)
        compiled = self._lookup(values, backend, target, None, can_run=True)
        runtime_args = [values[i] for i in self.runtime_positions]
        result = compiled.run(runtime_args)
        if key is not None:
            fast = compiled.fast_path(runtime_args, args, self.known_layouts)
            if fast is not None:
                if len(self._calls) >= CALL_CACHE_ENTRIES:
                    self._calls.clear()
                self._calls[key] = fast
                if type(fast) is not types.FunctionType:
                    self._native = fast
        return result

    def _call_key(self, args):
        """Everything about positional call arguments that the compile and the launch
        parameters depend on -- tensors' dtype, shape, strides, device, 16-byte alignment
        (and numpy's writability); scalars' values; the backend variables -- or None when an
        argument is of a kind not keyed here (the full dispatch then runs every time)."""
        parts = [os.environ.get("FUSEC_BACKEND"), os.environ.get("FUSEC_INTERPRET")]
        tensor_types = _torch_tensor_types()
        for a, constant in zip(args, self._constexpr_flags):
            t = type(a)
            if t in tensor_types:
                parts.append((a.dtype, a.shape, a.stride(), a.device, a.data_ptr() & 15))
            elif t is np.ndarray:
                parts.append((a.dtype.str, a.shape, a.strides, a.ctypes.data & 15,
                              a.flags.writeable))
            elif t is float:
                parts.append(a.hex())               # -0.0 and 0.0 are different values
            elif t is int or t is bool:
                parts.append((t, a))
            elif constant:
                try:
                    hash(a)
                except TypeError:
                    return None
                parts.append((t, a))
            else:
                return None
        return tuple(parts)


def kernel(fn=None, *, configs=None, backend=None, static_shapes=False, autotune=True,
           fast_math=False):
    """`@fusec.kernel` or `@fusec.kernel(configs=..., backend=..., static_shapes=...,
    autotune=..., fast_math=...)`. autotune: True (the policy of fusec/tuning.py: the cost
    model's pick on the CPU, the fixed block policy on GPUs, measured when `configs` offers a
    choice), False (the model's pick),
    "measure" (measured wherever the call runs here), "default" (the fixed block policy).
    fast_math: on GPUs, float32/half exp, log, sin, cos, rsqrt, sigmoid, silu and division by
    the hardware approximations (a few ulp; what Triton and --use_fast_math use) instead of
    the correctly rounded / library functions, and float32/half sums accumulated in float32
    instead of double (cuda backend)."""
    def wrap(f):
        return Kernel(f, configs=configs, backend=backend, static_shapes=static_shapes,
                      autotune=autotune, fast_math=fast_math)
    return wrap(fn) if fn is not None else wrap


def explain(kernel_obj: Kernel, *args, file=None, **kwargs) -> CompiledKernel:
    """Print the IR after each pass and the generated code for these arguments."""
    file = file or sys.stdout
    compiled = kernel_obj.compile(*args, **kwargs)
    for stage, text in compiled.asm.items():
        print(f"===== {stage} =====", file=file)
        print(text if isinstance(text, str) else f"<{len(text)} bytes of binary>", file=file)
    notes = compiled.module.kernel().attrs.get("fusion_notes", [])
    print(f"===== fusion: {compiled.num_launches} launch(es) per call =====", file=file)
    for note in notes:
        print(note, file=file)
    return compiled
