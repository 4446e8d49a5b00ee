"""Aten graph -> fusion groups.

A *fusion group* is one anchor op (``aten.mm``, ``aten.addmm``, ``aten.bmm``, 2-D
``aten.convolution``) that becomes a tilewise kernel, followed by the chain of its elementwise
consumers (bias add, ReLU / GELU / SiLU / sigmoid / tanh, add / mul / sub / div with a tensor that
broadcasts into the result or a scalar, and free ``view``s in between) which run in place on the
kernel's fresh output buffer.  A chain link joins only when the value it consumes has no other
user, so no other op can observe the buffer before the epilogue ran, and a node joins one group
only (a binary op of two anchors' results belongs to the first).

Everything else stays an aten op of the graph and runs in eager PyTorch.

The group's description (:class:`GroupSpec`) is plain JSON data: it is what the compile cache stores
and what the runtime (``runtime.py``) executes.
"""
from __future__ import annotations

import operator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.fx as fx

from tilewise.frontends.torch_backend.group_kinds import GROUP_KINDS, ContractionGroup

aten = torch.ops.aten

UNARY = {aten.relu.default: "relu", aten.gelu.default: "gelu", aten.silu.default: "silu",
         aten.sigmoid.default: "sigmoid", aten.tanh.default: "tanh"}
BINARY = {aten.add.Tensor: "add", aten.mul.Tensor: "mul", aten.sub.Tensor: "sub", aten.div.Tensor: "div"}
VIEWS = (aten.view.default, aten._unsafe_view.default, aten.reshape.default)
TRANSPOSES = (aten.t.default, aten.transpose.int, aten.permute.default)
ANCHORS = (aten.mm.default, aten.addmm.default, aten.bmm.default, aten.convolution.default)


@dataclass
class GroupSpec:
    """One fusion group: anchor kind, its workload string, operand sources, epilogue steps."""
    name: str
    anchor: str                       # "matmul" | "batch_matmul" | "conv2d" | "patch_conv" | "rowwise"
    workload: str                     # canonical tilewise workload string
    ops: list[str]                    # aten op names covered, in order
    operands: dict[str, Any]          # anchor operand -> {"input": i, "layout": "..."}
    epilogue: list[dict[str, Any]] = field(default_factory=list)
    nodes: list[fx.Node] = field(default_factory=list, repr=False)     # not persisted
    inputs: list[fx.Node] = field(default_factory=list, repr=False)    # not persisted
    #: the anchor's group kind (``group_kinds``), chosen when the group is formed; not persisted
    kind: ContractionGroup | None = field(default=None, repr=False, compare=False)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "anchor": self.anchor, "workload": self.workload, "ops": self.ops,
                "operands": self.operands, "epilogue": self.epilogue}


class Unsupported(Exception):
    """This anchor cannot become a tilewise kernel (the message says why)."""


def _val(n):
    return n.meta.get("val") if isinstance(n, fx.Node) else None


def _is_f32_cpu(n) -> bool:
    v = _val(n)
    return isinstance(v, torch.Tensor) and v.dtype == torch.float32 and v.device.type == "cpu"


def op_name(n: fx.Node) -> str:
    """``aten.addmm`` style name of a call_function node."""
    t = n.target
    name = getattr(t, "name", None)
    if callable(name):
        return name().split(".")[0].replace("::", ".")
    return getattr(t, "__name__", str(t))


class _Builder:
    def __init__(self, params: set[fx.Node]):
        self.params = params
        self.inputs: list[fx.Node] = []

    def input(self, n: fx.Node) -> int:
        if n not in self.inputs:
            self.inputs.append(n)
        return self.inputs.index(n)

    def matrix_b(self, w: fx.Node, batch: bool) -> dict[str, Any]:
        """B of C = A @ B: a transposed parameter is packed once ("param_t"), else made contiguous."""
        if not batch and w.op == "call_function" and w.target in TRANSPOSES and self._is_2d_transpose(w):
            src = w.args[0]
            if src in self.params:
                return {"input": self.input(src), "layout": "param_t"}
        return {"input": self.input(w), "layout": "contiguous"}

    @staticmethod
    def _is_2d_transpose(w: fx.Node) -> bool:
        v = _val(w.args[0])
        if not isinstance(v, torch.Tensor) or v.dim() != 2:
            return False
        if w.target == aten.permute.default:
            return list(w.args[1]) == [1, 0]
        return True


def _anchor(n: fx.Node, b: _Builder) -> tuple[str, str, dict, list]:
    """(anchor kind, workload, operands, initial epilogue) of ``n``; raises Unsupported."""
    ins = [a for a in n.args if isinstance(a, fx.Node)]
    if not all(_is_f32_cpu(a) for a in ins) or not _is_f32_cpu(n):
        raise Unsupported("only float32 CPU tensors are compiled")
    if n.target in (aten.mm.default, aten.addmm.default):
        if n.target == aten.addmm.default:
            if n.kwargs.get("beta", 1) != 1 or n.kwargs.get("alpha", 1) != 1:
                raise Unsupported("addmm with alpha/beta != 1")
            bias, x, w = n.args[:3]
        else:
            bias, (x, w) = None, n.args[:2]
        (m, k), (_, nn) = _val(x).shape, _val(w).shape
        ops = {"a": {"input": b.input(x), "layout": "contiguous"}, "b": b.matrix_b(w, batch=False)}
        epi = [] if bias is None else [{"op": "bias", "input": b.input(bias)}]
        return "matmul", f"matmul:{m}x{nn}x{k}:f32", ops, epi
    if n.target == aten.bmm.default:
        x, w = n.args[:2]
        (bt, m, k), (_, _, nn) = _val(x).shape, _val(w).shape
        ops = {"a": {"input": b.input(x), "layout": "contiguous"}, "b": b.matrix_b(w, batch=True)}
        return "batch_matmul", f"batch_matmul:{bt}x{m}x{nn}x{k}:f32", ops, []
    # aten.convolution(x, w, bias, stride, padding, dilation, transposed, output_padding, groups)
    x, w, bias, stride, padding, dilation, transposed, _, groups = n.args
    if _val(x).dim() != 4:
        raise Unsupported("only 2-D convolutions are compiled")
    if transposed or groups != 1 or list(dilation) != [1, 1]:
        raise Unsupported("transposed, grouped or dilated convolution")
    if len(set(stride)) != 1 or len(set(padding)) != 1:
        raise Unsupported("convolution with different strides or paddings per spatial dim")
    nb, c, h, wd = _val(x).shape
    f, _, kh, kw = _val(w).shape
    if (kh, kw) == (stride[0], stride[0]) and padding[0] == 0 and h % kh == 0 and wd % kw == 0:
        # non-overlapping patches (a ViT's patch embedding): one matmul of the patches, no conv
        oh, ow = h // kh, wd // kw
        ops = {"a": {"input": b.input(x), "layout": "patches", "patch": [kh, kw]},
               "b": {"input": b.input(w), "layout": "param_patch" if w in b.params else "patch_w"}}
        epi = [] if bias is None else [{"op": "bias", "input": b.input(bias)}]
        return "patch_conv", f"matmul:{nb * oh * ow}x{f}x{c * kh * kw}:f32", ops, epi
    layout = "param_hwcf" if w in b.params else "hwcf"
    ops = {"x": {"input": b.input(x), "layout": "nhwc"}, "w": {"input": b.input(w), "layout": layout}}
    epi = [] if bias is None else [{"op": "bias", "input": b.input(bias)}]
    wl = f"conv2d_nhwc:{nb}x{h}x{wd}x{c},{kh}x{kw}x{c}x{f}:f32:pad={padding[0]},stride={stride[0]}"
    return "conv2d", wl, ops, epi


def _epilogue_step(cur: fx.Node, c: fx.Node, b: _Builder, members: set) -> dict[str, Any] | None:
    """The epilogue step ``c`` applies to ``cur`` in place, or None when it cannot join."""
    if c.op != "call_function" or not _is_f32_cpu(c):
        return None
    out_shape = tuple(_val(c).shape)
    if c.target in VIEWS:
        return {"op": "view", "shape": list(out_shape)}
    if out_shape != tuple(_val(cur).shape):
        return None
    if c.target in UNARY and c.args[0] is cur:
        step = {"op": "unary", "name": UNARY[c.target]}
        if c.target == aten.gelu.default:
            step["approximate"] = c.kwargs.get("approximate", "none")
        return step
    if c.target in BINARY and len(c.args) == 2:
        lhs, rhs = c.args
        name = BINARY[c.target]
        if set(c.kwargs) - {"alpha"}:
            return None
        alpha = c.kwargs.get("alpha", 1)
        if lhs is cur:
            other = rhs
        elif rhs is cur and name in ("add", "mul") and alpha == 1:
            other = lhs
        else:
            return None
        step = {"op": "binary", "name": name, "alpha": alpha}
        if isinstance(other, fx.Node):
            if other in members or not _is_f32_cpu(other):
                return None
            step["input"] = b.input(other)
        elif isinstance(other, (int, float)) and not isinstance(other, bool):
            step["scalar"] = float(other)
        else:
            return None
        return step
    return None


def fold_batch_norms(g: fx.Graph) -> int:
    """Rewrite each inference-mode batch norm of a 4-D f32 activation into ``x * scale + shift``
    with ``scale = weight * rsqrt(running_var + eps)`` and ``shift = bias - running_mean * scale``
    (per channel, ``[C, 1, 1]``): the two per-channel ops then join the conv before them as its
    epilogue (inside its fused kernel), and only the C-element scale/shift run as eager ops.  The
    running stats stay graph inputs, so an updated model is followed.  Returns how many were folded."""
    folded = 0
    for n in list(g.nodes):
        if n.op != "call_function":
            continue
        if n.target == aten.native_batch_norm.default:
            x, w, b, mean, var, training, _, eps = n.args
            if training:
                continue
        elif n.target == aten._native_batch_norm_legit_no_training.default:
            x, w, b, mean, var, _, eps = n.args
        else:
            continue
        v = _val(x)
        if not _is_f32_cpu(x) or v.dim() != 4 or mean is None or var is None:
            continue
        items = list(n.users)
        if any(u.target is not operator.getitem for u in items) or any(u.users for u in items if u.args[1] != 0):
            continue
        out = next((u for u in items if u.args[1] == 0), None)
        if out is None:
            continue
        c = v.shape[1]
        with g.inserting_before(n):
            inv = g.call_function(aten.rsqrt.default, (g.call_function(aten.add.Tensor, (var, float(eps))),))
            scale = g.call_function(aten.mul.Tensor, (inv, w)) if w is not None else inv
            shift = g.call_function(aten.mul.Tensor, (mean, scale))
            shift = g.call_function(aten.sub.Tensor, (b, shift)) if b is not None else \
                g.call_function(aten.neg.default, (shift,))
            scale4 = g.call_function(aten.view.default, (scale, [c, 1, 1]))
            shift4 = g.call_function(aten.view.default, (shift, [c, 1, 1]))
            y = g.call_function(aten.mul.Tensor, (x, scale4))
            y = g.call_function(aten.add.Tensor, (y, shift4))
        for node, shape in ((inv, (c,)), (scale, (c,)), (shift, (c,)), (scale4, (c, 1, 1)), (shift4, (c, 1, 1))):
            node.meta["val"] = torch.empty(shape)          # C floats: a real tensor stands in
        for node in (y.args[0], y):
            node.meta["val"] = out.meta["val"]
        out.replace_all_uses_with(y)
        for u in items:
            g.erase_node(u)
        g.erase_node(n)
        folded += 1
    return folded


def find_groups(g: fx.Graph, params: set[fx.Node]) -> tuple[list[GroupSpec], list[tuple[fx.Node, str]]]:
    """Fusion groups of ``g`` and the anchors that stay eager (with the reason)."""
    groups: list[GroupSpec] = []
    skipped: list[tuple[fx.Node, str]] = []
    taken: set[fx.Node] = set()
    for n in list(g.nodes):
        if n.op != "call_function" or n.target not in ANCHORS or n in taken:
            continue
        b = _Builder(params)
        try:
            kind, wl, operands, epi = _anchor(n, b)
        except Unsupported as e:
            skipped.append((n, str(e)))
            continue
        nodes, cur = [n], n
        members = {n}
        while len(cur.users) == 1:
            c = next(iter(cur.users))
            if c in taken:      # joins two anchors' results (SwiGLU's silu(gate) * up): the first owns it
                break
            step = _epilogue_step(cur, c, b, members)
            if step is None:
                break
            epi.append(step)
            nodes.append(c)
            members.add(c)
            cur = c
        # a trailing view is not worth owning: it is free in eager too and keeps the output simple
        while nodes[-1] is not n and epi[-1]["op"] == "view":
            nodes.pop()
            epi.pop()
        taken.update(nodes)
        spec = GroupSpec(name=f"group{len(groups)}", anchor=kind, workload=wl,
                         ops=[op_name(x) for x in nodes], operands=operands, epilogue=epi,
                         nodes=nodes, inputs=list(b.inputs), kind=GROUP_KINDS[kind])
        groups.append(spec)
    return groups, skipped
