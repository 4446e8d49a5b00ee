"""Attention groups: ``scaled_dot_product_attention`` as tilewise kernels.

Dynamo's aten graph of a transformers model (``attn_implementation="sdpa"``) holds one
``aten._scaled_dot_product_flash_attention_for_cpu(q, k, v, dropout_p, is_causal, scale=)`` per
layer: eager PyTorch's fused CPU flash-attention kernel, 58 % of the time LLaMA spent outside
tilewise kernels (2-layer, d=512, seq 128, one thread on a Zen 3).  An *attention group* runs it as
three tuned tilewise kernels on the heads flattened into the batch dim (B*H):

* ``S = (q * scale) @ k^T`` -- ``batch_matmul:(B*H)xSqxSkxD`` (k transposed into ``[B*H, D, Sk]``;
  grouped-query heads repeated to the query heads);
* a causal mask (``is_causal``: key j > query i masked, as PyTorch aligns it) or an additive /
  boolean ``attn_mask`` applied to ``S`` in place, then ``P = softmax(S)`` -- ``softmax:(B*H)xSqxSk``
  (exp and sum in f32 over the row, ``ir.ops.reduction``);
* ``O = P @ v`` -- ``batch_matmul:(B*H)xSqxDxSk``.

The three are ordinary workloads: their schedules come from the tuning database or the cost model
like every other kernel's (``tilewise tune`` / ``collect`` take them), and they are built once per
shape into the compile cache.  The scores are materialised (``B*H*Sq*Sk`` floats, one buffer per
group reused across calls) -- not one fused flash kernel: for long sequences the eager flash
kernel's tiling wins, which is what the compile-time timing is for.  Each group is checked against
the eager op on the example inputs (normwise relative error <= ``max_rel_error``, default 1e-4) and
timed against it (interleaved medians); the faster runs and the plan says why.
"""
from __future__ import annotations

import operator
from typing import Any

import torch
import torch.fx as fx

aten = torch.ops.aten

SDPA = aten._scaled_dot_product_flash_attention_for_cpu.default


def _val(n):
    return n.meta.get("val") if isinstance(n, fx.Node) else None


def _f32(v) -> bool:
    return isinstance(v, torch.Tensor) and v.dtype == torch.float32 and v.device.type == "cpu"


def attention_args(n: fx.Node) -> dict[str, Any] | None:
    """``{"q", "k", "v", "mask", "causal", "scale"}`` of an SDPA node this group kind takes, else None:
    4-D f32 CPU q/k/v, no dropout, the logsumexp output unused."""
    if n.op != "call_function" or n.target != SDPA:
        return None
    q, k, v = n.args[:3]
    dropout = n.args[3] if len(n.args) > 3 else n.kwargs.get("dropout_p", 0.0)
    causal = bool(n.args[4] if len(n.args) > 4 else n.kwargs.get("is_causal", False))
    mask = n.kwargs.get("attn_mask")
    if dropout or not all(_f32(_val(x)) and _val(x).dim() == 4 for x in (q, k, v)):
        return None
    if mask is not None and (not isinstance(_val(mask), torch.Tensor)
                             or _val(mask).dtype not in (torch.float32, torch.bool)):
        return None
    (b, h, sq, d), (bk, hk, sk, dk) = _val(q).shape, _val(k).shape
    if bk != b or dk != d or tuple(_val(v).shape) != (b, hk, sk, d) or hk == 0 or h % hk:
        return None
    items = [u for u in n.users if u.target is operator.getitem]
    if len(items) != len(n.users) or any(u.args[1] != 0 and u.users for u in items):
        return None
    scale = n.kwargs.get("scale")
    return {"q": q, "k": k, "v": v, "mask": mask, "causal": causal,
            "scale": float(scale) if scale is not None else d ** -0.5, "dims": (b, h, hk, sq, sk, d)}


def find_attention_groups(g: fx.Graph, taken: set[fx.Node]) -> list:
    """GroupSpecs (``anchor`` "attention") of the SDPA nodes no other group owns."""
    from tilewise.frontends.torch_backend.graph import GroupSpec
    out = []
    for n in list(g.nodes):
        if n in taken:
            continue
        a = attention_args(n)
        if a is None:
            continue
        items = sorted((u for u in n.users), key=lambda u: u.args[1])
        result = next((u for u in items if u.args[1] == 0), None)
        if result is None:
            continue
        nodes = [n] + [u for u in items if u is not result] + [result]
        inputs = [a["q"], a["k"], a["v"]] + ([a["mask"]] if a["mask"] is not None else [])
        b, h, hk, sq, sk, d = a["dims"]
        spec = GroupSpec(name=f"attention{len(out)}", anchor="attention",
                         workload=f"attention:{b}x{h}x{hk}x{sq}x{sk}x{d}:f32:causal={int(a['causal'])}"
                                  f":scale={a['scale']!r}:mask={'none' if a['mask'] is None else _val(a['mask']).dtype}",
                         ops=["aten._scaled_dot_product_flash_attention_for_cpu"], operands={}, epilogue=[],
                         nodes=nodes, inputs=inputs, kind=ATTENTION)
        spec.attention = a
        out.append(spec)
    return out


class AttentionKind:
    """The group kind of an attention group: its output is a fresh row-major [B, H, Sq, D]."""
    channels_last = False


ATTENTION = AttentionKind()


def workloads(dims) -> dict[str, str]:
    b, h, hk, sq, sk, d = dims
    bh = b * h
    return {"qk": f"batch_matmul:{bh}x{sq}x{sk}x{d}:f32", "softmax": f"softmax:{bh}x{sq}x{sk}:f32",
            "pv": f"batch_matmul:{bh}x{sq}x{d}x{sk}:f32"}


class AttentionRunner:
    """Callable: ``(q, k, v[, mask])`` in, the attention output ``[B, H, Sq, D]`` out."""

    def __init__(self, kernels: dict[str, Any], dims, scale: float, causal: bool, has_mask: bool,
                 reuse_output: bool = False):
        from tilewise.frontends.torch_backend.runtime import BoundCall
        b, h, hk, sq, sk, d = dims
        self.dims, self.scale, self.causal, self.has_mask = dims, scale, causal, has_mask
        bh = b * h
        self._qk = BoundCall(kernels["qk"]._fn, [(bh, sq, d), (bh, d, sk), (bh, sq, sk)])
        self._sm = BoundCall(kernels["softmax"]._fn, [(bh, sq, sk), (bh, sq, sk)])
        self._pv = BoundCall(kernels["pv"]._fn, [(bh, sq, sk), (bh, sk, d), (bh, sq, d)])
        self._scores = torch.empty((bh, sq, sk))
        self._probs = torch.empty((bh, sq, sk))
        self._buffer = torch.empty((b, h, sq, d)) if reuse_output else None
        # is_causal: query i sees keys j <= i (PyTorch's top-left alignment)
        self._causal = torch.full((sq, sk), float("-inf")).triu(1) if causal else None

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        """k or v with grouped-query heads repeated to the query heads."""
        b, h, hk, _, _, _ = self.dims
        return x if hk == h else x.repeat_interleave(h // hk, dim=1)

    def __call__(self, q, k, v, mask=None) -> torch.Tensor:
        b, h, hk, sq, sk, d = self.dims
        bh = b * h
        qs = torch.mul(q, self.scale).reshape(bh, sq, d).contiguous()   # mul keeps a permuted layout
        kt = self._heads(k).transpose(-1, -2).reshape(bh, d, sk).contiguous()
        self._qk(qs, kt, self._scores)
        if self._causal is not None:
            self._scores.view(b, h, sq, sk).add_(self._causal)
        if mask is not None:
            s4 = self._scores.view(b, h, sq, sk)
            if mask.dtype == torch.bool:
                s4.masked_fill_(~mask, float("-inf"))
            else:
                s4.add_(mask)
        self._sm(self._scores, self._probs)
        vv = self._heads(v).reshape(bh, sk, d).contiguous()
        out = self._buffer if self._buffer is not None else torch.empty((b, h, sq, d))
        self._pv(self._probs, vv, out)
        return out


def decide(spec, entry: dict[str, Any] | None, env, opts, threads: int, pick, reuse_output: bool):
    """``(runner or None, plan entry)``.  ``pick(workload) -> (schedule json, kernel)`` chooses and
    builds one kernel's schedule (the backend's database / cost-model choice).  A cached entry is
    followed; else the runner is checked against the eager op and timed against it."""
    from tilewise.core.schedule import Schedule
    from tilewise.core.workload import Workload
    from tilewise.frontends.torch_backend import kernels as kern
    from tilewise.frontends.torch_backend import profile
    a = spec.attention
    if entry is not None and (entry.get("schedule") is None or entry.get("use_kernel") is False):
        return None, entry
    plan = {"workload": spec.workload, "schedule": None, "use_kernel": True, "reason": None,
            "kernels": workloads(a["dims"])}
    try:
        built, schedules = {}, {}
        for part, wl in workloads(a["dims"]).items():
            if entry is not None:
                schedules[part] = entry["schedule"][part]
                built[part] = kern.load_kernel(Workload.parse(wl), Schedule.from_json(schedules[part]),
                                               opts.cache_dir())
            else:
                schedules[part], built[part] = pick(wl)
        runner = AttentionRunner(built, a["dims"], a["scale"], a["causal"], a["mask"] is not None,
                                 reuse_output=reuse_output)
    except Exception as e:
        return None, {**plan, "reason": f"attention kernels failed to build: {type(e).__name__}: "
                                        f"{' '.join(str(e).split())[:200]}"}
    plan["schedule"] = schedules
    if entry is not None:
        return runner, {**plan, **{k: entry[k] for k in ("kernel_s", "eager_s") if k in entry}}
    return (runner if profile.check_and_time(runner, spec, env(), opts, plan, "attention kernels") else None), plan
