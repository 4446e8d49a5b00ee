"""Running a fusion group on torch tensors.

The kernel is called through its C interface with memref descriptors built straight from the
tensors' data pointers: no copy when an operand is already contiguous in the layout the kernel
reads (a row-major activation, an NHWC activation that a previous conv group produced).

Weights are *graph arguments* (dynamo lifts parameters to placeholders) but are re-laid out once,
like constants: an ``nn.Linear`` weight [N, K] is stored transposed [K, N] for the tuned matmul
(B-panel packing reads B row-major), a conv filter [F, C, KH, KW] as HWCF.  The packed copy is
reused while the parameter keeps its storage and version counter (in-place updates under
``no_grad`` and ``param.copy_`` bump it), so weight updates are seen without a recompile, and the
kernels are keyed by shapes only -- weights never enter the compile cache, so compile time does not
depend on the weights' values and a model with new weights hits the cache.

The epilogue runs in place on the kernel's output buffer, in the logical layout of the graph
value (NCHW for a conv: a permuted view of the NHWC buffer).  A group whose value cannot escape a
call of the graph (no alias of it reaches the graph's outputs) writes into one buffer allocated at
compile time, so a compiled graph is not re-entrant across threads (as for CUDA graphs).
"""
from __future__ import annotations

import ctypes
import math
from typing import Any, Sequence

import torch

from tilewise.ir.compiler import _descriptor_type

aten = torch.ops.aten

_UNARY_INPLACE = {"relu": aten.relu_.default, "silu": aten.silu_.default, "sigmoid": aten.sigmoid_.default,
                  "tanh": aten.tanh_.default}


def _shaped_descriptor(shape: tuple[int, ...]):
    """A descriptor of a contiguous ``shape`` that points nowhere yet."""
    d = _descriptor_type(len(shape))()
    d.allocated = d.aligned = None
    d.offset = 0
    if shape:
        d.sizes[:] = list(shape)
        d.strides[:] = [math.prod(shape[i + 1:]) for i in range(len(shape))]
    return d


class BoundCall:
    """A kernel's C entry point with its memref descriptors built once: a call only re-points the
    descriptors whose tensor moved.  The tensors are contiguous and keep their shapes from call to
    call (a compiled graph is specialised to its shapes), so sizes and strides never change; building
    five descriptors per call cost more than a small row-wise kernel (~6 us each on an EPYC Zen 3).
    Not re-entrant (like the reused output buffers)."""

    def __init__(self, fn, shapes: Sequence[Sequence[int]]):
        self._fn = fn
        self._descs = [_shaped_descriptor(tuple(sh)) for sh in shapes]
        self._ptrs = [ctypes.addressof(d) for d in self._descs]
        self._at = [0] * len(shapes)

    def __call__(self, *tensors: torch.Tensor) -> None:
        at, descs = self._at, self._descs
        for i, t in enumerate(tensors):
            p = t.data_ptr()
            if p != at[i]:
                descs[i].allocated = descs[i].aligned = p
                at[i] = p
        self._fn(*self._ptrs)


class _Packed:
    """A parameter re-laid out once, refreshed when the parameter changes."""

    def __init__(self, fn):
        self.fn, self.key, self.value = fn, None, None

    def get(self, p: torch.Tensor) -> torch.Tensor:
        try:
            version = p._version
        except RuntimeError:     # an inference tensor has no version counter and cannot change
            version = -1
        key = (p.data_ptr(), version, tuple(p.shape))
        if key != self.key:
            with torch.no_grad():
                self.value = self.fn(p.detach()).contiguous()
            self.key = key
        return self.value


def _nhwc(x: torch.Tensor) -> torch.Tensor:
    return x.permute(0, 2, 3, 1).contiguous()


def _hwcf(w: torch.Tensor) -> torch.Tensor:
    return w.permute(2, 3, 1, 0)


def _patches(x: torch.Tensor, kh: int, kw: int) -> torch.Tensor:
    """[N, C, H, W] -> the non-overlapping kh x kw patches as rows [N*OH*OW, C*kh*kw] (C, kh, kw order)."""
    n, c, h, w = x.shape
    p = x.reshape(n, c, h // kh, kh, w // kw, kw).permute(0, 2, 4, 1, 3, 5)
    return p.reshape(n * (h // kh) * (w // kw), c * kh * kw)


def _patch_filter(w: torch.Tensor) -> torch.Tensor:
    """[F, C, kh, kw] -> [C*kh*kw, F]: B of the patch matmul."""
    return w.reshape(w.shape[0], -1).t()


class GroupRunner:
    """Callable: the group's external inputs in, the group's output value out."""

    def __init__(self, spec: dict[str, Any], kernel, out_shape: Sequence[int], kind, reuse_output: bool = False):
        self.spec, self.kernel, self.kind = spec, kernel, kind      # kind: the group's (group_kinds)
        #: the output never outlives a call of the graph (no alias reaches the graph's outputs): one
        #: buffer serves every call -- no allocation, no page faults on a fresh mapping per call
        self._buffer = torch.empty(tuple(out_shape), dtype=torch.float32) if reuse_output else None
        self.out_shape = tuple(out_shape)    # the kernel's output buffer (NHWC for a conv)
        self._fn = kernel._fn
        self._call: BoundCall | None = None       # built at the first launch (the operands' shapes)
        self._packed: dict[str, _Packed] = {}
        for name, src in spec["operands"].items():
            if src["layout"] == "param_t":
                self._packed[name] = _Packed(lambda p: p.t())
            elif src["layout"] == "param_hwcf":
                self._packed[name] = _Packed(_hwcf)
            elif src["layout"] == "param_patch":
                self._packed[name] = _Packed(_patch_filter)

    def _operand(self, name: str, inputs) -> torch.Tensor:
        src = self.spec["operands"][name]
        x = inputs[src["input"]]
        layout = src["layout"]
        if name in self._packed:
            return self._packed[name].get(x)
        if layout == "nhwc":
            return _nhwc(x)
        if layout == "hwcf":
            return _hwcf(x).contiguous()
        if layout == "patches":
            return _patches(x, *src["patch"])
        if layout == "patch_w":
            return _patch_filter(x).contiguous()
        return x.contiguous()

    def _anchor_operands(self, inputs) -> tuple[torch.Tensor, torch.Tensor]:
        """The anchor's two operands in the kernel's layouts (conv: NHWC activation, HWCF filter)."""
        first, second = self.kind.operand_names
        return self._operand(first, inputs), self._operand(second, inputs)

    def _launch(self, *operands: torch.Tensor) -> torch.Tensor:
        """Run the kernel on ``operands`` into the output buffer (reused, or fresh per call)."""
        out = self._buffer if self._buffer is not None else torch.empty(self.out_shape, dtype=torch.float32)
        kout = self.kind.as_kernel_out(out)
        if self._call is None:
            self._call = BoundCall(self._fn, [tuple(t.shape) for t in (*operands, kout)])
        self._call(*operands, kout)
        return out

    def __call__(self, *inputs: torch.Tensor) -> torch.Tensor:
        out = self._launch(*self._anchor_operands(inputs))
        return self._epilogue(self.kind.to_graph(out), inputs)

    def _epilogue(self, y: torch.Tensor, inputs) -> torch.Tensor:
        for step in self.spec["epilogue"]:
            op = step["op"]
            if op == "bias":
                bias = inputs[step["input"]]
                y.add_(self.kind.bias_view(bias))
            elif op == "view":
                y = y.reshape(step["shape"])
            elif op == "unary":
                if step["name"] == "gelu":
                    aten.gelu_.default(y, approximate=step.get("approximate", "none"))
                else:
                    _UNARY_INPLACE[step["name"]](y)
            else:
                other = inputs[step["input"]] if "input" in step else step["scalar"]
                name, alpha = step["name"], step.get("alpha", 1)
                if name == "add":
                    y.add_(other, alpha=alpha) if alpha != 1 else y.add_(other)
                elif name == "sub":
                    y.sub_(other, alpha=alpha) if alpha != 1 else y.sub_(other)
                elif name == "mul":
                    y.mul_(other)
                else:
                    y.div_(other)
        return y
