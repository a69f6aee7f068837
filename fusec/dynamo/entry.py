"""The torch.compile backend: Dynamo's FX graph -> AOT autograd (forward and backward aten
graphs, functionalized, with core-aten decompositions) -> compile_graph on each.

Mutations of inputs (BatchNorm's running stats, in-place ops on arguments) are functionalized
by AOT autograd, which writes the new values back after the compiled graph runs, exactly as
eager would leave them. Dynamic sizes reach the graphs as SymInt inputs: aten ops left in
the graph take them; fusec kernels read sizes from their tensors and compile again only when
a specialization key (dtypes, divisibility, power-of-two buckets of reduced sizes) changes.
"""
from __future__ import annotations

import functools
import itertools

import torch
from torch._decomp import core_aten_decompositions, get_decompositions
from torch._dynamo.backends.common import aot_autograd
from torch._functorch.aot_autograd import make_boxed_func
from torch._functorch.partitioners import min_cut_rematerialization_partition

from . import stats
from .graph import compile_graph
from .options import Options
from .pool_offsets import save_pool_offsets

aten = torch.ops.aten

# Composite ops decomposed further than core aten so their pieces fuse with their
# neighbours (softmax with the scale before it, layernorm with the activation after it);
# gelu stays whole (fl.gelu is the accurate erf form).
EXTRA_DECOMPOSITIONS = [aten._softmax, aten._log_softmax, aten.native_layer_norm,
                        aten._native_batch_norm_legit_functional,
                        aten._native_batch_norm_legit,      # no running stats (InstanceNorm)
                        aten._native_batch_norm_legit_no_training,
                        aten._softmax_backward_data, aten._log_softmax_backward_data,
                        aten.native_layer_norm_backward, aten.native_batch_norm_backward,
                        aten.native_group_norm, aten.native_group_norm_backward,
                        aten.silu_backward, aten.sigmoid_backward, aten.tanh_backward,
                        aten.gelu_backward]


@functools.lru_cache(maxsize=1)
def decompositions() -> dict:
    table = dict(core_aten_decompositions())
    table.update(get_decompositions(EXTRA_DECOMPOSITIONS))
    return table


_graph_ids = itertools.count()


def _partition(joint, joint_inputs, **kwargs):
    """AOT autograd's min-cut partition, after the joint graph's rewrites of what the
    forward saves for the backward."""
    save_pool_offsets(joint)
    return min_cut_rematerialization_partition(joint, joint_inputs, **kwargs)


def _compiler(options: Options, kind: str):
    def compile_one(gm, example_inputs):
        label = f"{next(_graph_ids)}_{kind}"
        gm, report = compile_graph(gm, options, label)
        stats.record_graph(report)
        return make_boxed_func(gm.forward)
    return compile_one


def torch_backend(**options):
    """A torch.compile backend with options: `torch.compile(model,
    backend=fusec.torch_backend(mode="max-autotune", matmul="aten"))`. See Options."""
    opts = Options(**options)
    return aot_autograd(fw_compiler=_compiler(opts, "forward"),
                        bw_compiler=_compiler(opts, "backward"),
                        inference_compiler=_compiler(opts, "inference"),
                        partition_fn=_partition,
                        # mutated inputs (buffers) written back by copy_ in the graph,
                        # which a region stores (support.is_store), not after it
                        keep_inference_input_mutations=True,
                        decompositions=decompositions())


def backend(gm, example_inputs):
    """`torch.compile(model, backend="fusec")` (registered as a torch_dynamo_backends entry
    point): the default options."""
    return _default()(gm, example_inputs)


@functools.lru_cache(maxsize=1)
def _default():
    return torch_backend()
