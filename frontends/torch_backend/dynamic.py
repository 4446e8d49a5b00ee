"""Graphs with symbolic sizes: lowered once, specialised per concrete shape at run time.

Dynamo hands the backend a graph with symbolic sizes under ``torch.compile(..., dynamic=True)`` and,
by default, after a graph has seen a second input shape (automatic dynamic shapes): its example
inputs then hold ``SymInt`` sizes and symbolic ints.  Returning that graph to eager (what the
backend did before) made every model served at more than one sequence length run without a
tilewise kernel.

The backend returns a :class:`ShapeSpecializer` for such a graph instead: dynamo compiles the frame
once, with its symbolic sizes, and each concrete shape signature seen at run time gets its own
static lowering (``backend.compile_graph`` on the real inputs: traced to aten ops with those sizes,
its groups given kernels from the tuning database or the cost model, fused, checked against eager,
the plan and the kernels cached on disk, so another process that meets the same shapes loads them).
A known signature runs its graph at once (one dict lookup).  Dynamo sees no new shape after that, so
its recompile limit cannot push the model to eager, however many sizes a server sees.

Memory: at most ``max_shapes`` specialisations are kept in this process (least recently used out;
what is evicted stays in the compile cache on disk and comes back as a cache hit).
"""
from __future__ import annotations

import logging
from collections import OrderedDict
from typing import Any, Callable, Sequence

import torch

log = logging.getLogger("tilewise.torch_backend")

#: specialisations kept in memory per graph (the compile cache on disk keeps all)
MAX_SHAPES = 32


def is_symbolic(example_inputs: Sequence[Any]) -> bool:
    """Whether dynamo traced the graph with symbolic sizes (a SymInt input or a tensor of one)."""
    for x in example_inputs:
        if isinstance(x, torch.SymInt):
            return True
        if isinstance(x, torch.Tensor) and any(not isinstance(d, int) for d in x.shape):
            return True
    return False


def signature(args: Sequence[Any]) -> tuple:
    """What a static lowering depends on: each tensor's shape, strides, dtype, device and whether
    it needs grad; each other argument's value (dynamo passes the symbolic sizes as ints)."""
    out = []
    for a in args:
        if isinstance(a, torch.Tensor):
            out.append((tuple(a.shape), a.stride(), a.dtype, a.device.type, a.requires_grad,
                        isinstance(a, torch.nn.Parameter)))
        else:
            out.append((type(a).__name__, a if isinstance(a, (int, float, bool, str, type(None))) else id(a)))
    return tuple(out)


class ShapeSpecializer:
    """Callable like the graph: the static lowering for the arguments' shapes, made when first met."""

    def __init__(self, gm, opts, compile_static: Callable[[Any, list, Any], Callable],
                 max_shapes: int = MAX_SHAPES):
        self.gm, self.opts = gm, opts
        self._compile = compile_static
        self._max = max_shapes
        self._by_shape: OrderedDict[tuple, Callable] = OrderedDict()
        self.specialised = 0                 # how many lowerings this graph has made (evictions included)

    def __call__(self, *args):
        key = signature(args)
        fn = self._by_shape.get(key)
        if fn is None:
            fn = self._compile(self.gm, list(args), self.opts)
            self.specialised += 1
            self._by_shape[key] = fn
            while len(self._by_shape) > self._max:
                self._by_shape.popitem(last=False)
        else:
            self._by_shape.move_to_end(key)
        return fn(*args)

    @property
    def shapes(self) -> list[tuple]:
        """The signatures held in memory, least recently used first."""
        return list(self._by_shape)
