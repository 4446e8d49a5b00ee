"""What differs between fusion groups by their anchor: one object per kind, chosen once.

``graph.find_groups`` picks a group's kind when it forms the group (``GroupSpec.kind``); a group read
back from its JSON gets it from :func:`group_kind`.  Everything else asks the kind instead of
testing the anchor's name:

* running (``runtime.GroupRunner``, ``fused.FusedRunner``): which operands the kernel takes, the
  kernel's output buffer shape for a graph value, how that buffer is seen as the graph value, how a
  bias and an epilogue tensor are laid out for it;
* the fused build (``mlir_group``): the group as a torch program, its argument shapes, the layout
  rewrite of the imported module and the fused schedule.

A matmul or batch-matmul group (:class:`ContractionGroup`) works in the graph's own row-major
layout.  A conv2d group (:class:`ConvGroup`) runs its kernel in NHWC / HWCF (``mlir_conv``): the
output buffer is NHWC, seen by the graph as an NCHW permuted view (channels last), so views of it
must become reshapes.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch

from tilewise.frontends.torch_backend import mlir_conv, mlir_group
from tilewise.frontends.torch_backend.mlir_common import NotFusable


class ContractionGroup:
    """A matmul or batch-matmul anchor: ``epilogue(a @ b)`` in the anchor's output domain."""

    operand_names = ("a", "b")
    #: the kernel's output is a permuted (channels-last) view of the graph value
    channels_last = False

    def __init__(self, name: str, batch: bool):
        self.name, self.batch = name, batch

    # -- running -------------------------------------------------------------------------------
    def kernel_out_shape(self, value_shape: Sequence[int]) -> tuple[int, ...]:
        """The kernel's output buffer for a graph value of ``value_shape``."""
        return tuple(value_shape)

    def to_graph(self, out: torch.Tensor) -> torch.Tensor:
        """The kernel's output buffer as the graph value (the unfused epilogue runs on this)."""
        return out

    def as_kernel_out(self, out: torch.Tensor) -> torch.Tensor:
        """The output buffer as the kernel's out argument (its shape)."""
        return out

    def bias_view(self, bias: torch.Tensor) -> torch.Tensor:
        return bias

    def extra_operand(self, t: torch.Tensor, kshape: Sequence[int], how: str | None) -> torch.Tensor:
        """An epilogue tensor as the fused kernel reads it (``how`` from the program's ``extra``)."""
        return t.contiguous().reshape(tuple(kshape))

    def fused_output(self, out: torch.Tensor, prog: dict[str, Any]) -> torch.Tensor:
        """The fused kernel's output as the group's (last) value."""
        final = tuple(prog["final_shape"])
        return out if final == tuple(prog["out_shape"]) else out.view(final)

    # -- the fused build -----------------------------------------------------------------------
    def program(self, spec, input_shapes):
        return mlir_group.contraction_program(spec, input_shapes)

    def arg_shapes(self, spec, prog):
        return mlir_group.contraction_arg_shapes(spec, prog)

    def torch_program(self, spec, prog) -> torch.nn.Module:
        return mlir_group.ContractionProgram(prog["steps"], self.batch)

    def rewrite(self, prog) -> dict[str, int] | None:
        """What ``mlir_group.prepare`` rewrites first (None: the import is already in kernel form)."""
        return None

    def schedule(self, script, w, s) -> None:
        mlir_group.fused_schedule(script, w, s)


class ConvGroup(ContractionGroup):
    """A conv2d anchor: NHWC activation, HWCF filter, NHWC output seen as NCHW (``mlir_conv``)."""

    operand_names = ("x", "w")
    channels_last = True

    def __init__(self):
        super().__init__("conv2d", batch=False)

    def kernel_out_shape(self, value_shape):
        n, f, oh, ow = value_shape
        return (n, oh, ow, f)

    def to_graph(self, out):
        return out.permute(0, 3, 1, 2)

    def bias_view(self, bias):
        return bias.view(-1, 1, 1)

    def extra_operand(self, t, kshape, how):
        return mlir_conv.extra_operand(t, kshape, how)

    def fused_output(self, out, prog):
        return self.to_graph(out)

    def program(self, spec, input_shapes):
        return mlir_conv.conv_program(spec, input_shapes)

    def arg_shapes(self, spec, prog):
        return mlir_conv.conv_arg_shapes(spec, prog)

    def torch_program(self, spec, prog) -> torch.nn.Module:
        return mlir_conv.ConvProgram(prog["steps"], prog["stride"], prog["pad"])

    def rewrite(self, prog) -> dict[str, int] | None:
        return {"pad": prog["pad"], "stride": prog["stride"]}

    def schedule(self, script, w, s) -> None:
        mlir_conv.fused_conv_schedule(script, w, s)


class PatchConvGroup(ConvGroup):
    """A conv2d whose stride equals its kernel and has no padding (non-overlapping patches, a ViT's
    patch embedding) as one matmul: ``A`` the patches ``[N*OH*OW, C*KH*KW]`` (one copy of the
    activation), ``B`` the filter ``[C*KH*KW, F]`` (a parameter packed once), the output NHWC seen as
    NCHW like a conv group's.  The general conv kernel ran ViT's 16x16/16 patch embedding
    (``1x224x224x3 -> 384``) in 5.3 ms on a Zen 3, a quarter of the model; the matmul is
    ``matmul:196x384x768``."""

    operand_names = ("a", "b")

    def __init__(self):
        ContractionGroup.__init__(self, "patch_conv", batch=False)

    def as_kernel_out(self, out: torch.Tensor) -> torch.Tensor:
        return out.view(-1, out.shape[-1])

    def program(self, spec, input_shapes):
        raise NotFusable("a patch-embedding conv runs its epilogue as torch ops")


#: the group kinds by anchor name (``GroupSpec.anchor``)
GROUP_KINDS: dict[str, ContractionGroup] = {
    "matmul": ContractionGroup("matmul", batch=False),
    "batch_matmul": ContractionGroup("batch_matmul", batch=True),
    "conv2d": ConvGroup(),
    "patch_conv": PatchConvGroup(),
}


def group_kind(spec: dict[str, Any]) -> ContractionGroup:
    """The kind of a group read back from its JSON (``GroupSpec.to_json``)."""
    kind = GROUP_KINDS.get(spec["anchor"])
    if kind is None:
        raise NotFusable(f"{spec['anchor']} groups have no tilewise kernel kind")
    return kind
