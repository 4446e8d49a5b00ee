"""The ``fuse`` knob of a fusion group: its epilogue inside the anchor's MLIR kernel, or not.

``fuse: true``: the group is imported through the torch-mlir FX importer and compiled as one kernel
with the epilogue fused into the anchor's tiles (``mlir_group.py``; conv groups: ``mlir_conv.py``);
``fuse: false``: the anchor's
kernel writes its output and the epilogue runs as in-place torch ops on it (``runtime.py``).

Decision (recorded in the group's plan entry beside its schedule: ``"fuse"``, ``"fuse_reason"``):

* ``"default"`` mode: the cost model scores single-op workloads only and cannot score a fused
  kernel, so the rule is: fuse when the fused kernel builds and matches eager PyTorch on the example
  inputs.  Fusing keeps the anchor's tuned schedule and removes one pass over the output: measured
  (interleaved medians) 1.02-1.10x over the unfused kernel + in-place torch epilogue on the MLP
  layers at 1 thread, up to 1.2x at 2 threads, and not slower beyond noise on any shape tried;
* ``"max-autotune"``: the fused and the unfused kernel are timed side by side and the faster runs
  (then, as before, the kernel is timed against eager PyTorch).

Never a wrong answer: every fused kernel is checked against the group's aten ops in eager PyTorch
before it is used (normwise relative error <= ``max_rel_error``, default 1e-4); if the import, the
transform, the build or the check fails, the group keeps the unfused path with one log line.
"""
from __future__ import annotations

import logging
from typing import Any

import torch

from tilewise.frontends.torch_backend import mlir_group, profile
from tilewise.frontends.torch_backend.runtime import GroupRunner

log = logging.getLogger("tilewise.torch_backend")
_NOT_FUSABLE = "no fused kernel for this group: "


class FusedRunner(GroupRunner):
    """Callable like :class:`GroupRunner`: one call of the fused kernel (anchor + epilogue)."""

    def __init__(self, spec: dict[str, Any], prog: dict[str, Any], kernel, kind, reuse_output: bool = False):
        super().__init__(spec, kernel, prog["out_shape"], kind, reuse_output=reuse_output)
        self.prog = prog
        # (input index, kernel shape[, how a conv kernel reads it: "channel" or "nchw"])
        self.extra = [(int(e[0]), tuple(e[1]), e[2] if len(e) > 2 else None) for e in prog["extra"]]

    def __call__(self, *inputs: torch.Tensor) -> torch.Tensor:
        extra = [self.kind.extra_operand(inputs[i], s, how) for i, s, how in self.extra]
        out = self._launch(*self._anchor_operands(inputs), *extra)
        return self.kind.fused_output(out, self.prog)


def rel_error(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double(), b.double()
    return float((a - b).norm() / max(float(b.norm()), 1e-30))


def eager_group(g, env: dict) -> torch.Tensor:
    """The group's aten ops in eager PyTorch on ``env``'s values."""
    with torch.no_grad():
        return profile.eager_chain(g.nodes, env)()


def try_fused(g, entry: dict[str, Any], env: dict, opts, reuse_output: bool) -> tuple[Any, str | None]:
    """``(FusedRunner, None)`` when the fused kernel builds and matches eager, else ``(None, why)``."""
    from tilewise.core.schedule import Schedule
    spec = g.to_json()
    try:
        shapes = [tuple(i.meta["val"].shape) for i in g.inputs]
        prog = mlir_group.group_program(g.kind, spec, shapes)
        kernel = mlir_group.load_fused(g.kind, spec, prog, Schedule.from_json(entry["schedule"]), opts.cache_dir())
        runner = FusedRunner(spec, prog, kernel, g.kind, reuse_output=reuse_output)
    except mlir_group.NotFusable as e:
        return None, _NOT_FUSABLE + str(e)
    except Exception as e:      # the importer, the transform, the JIT or the link rejected it
        return None, f"fused kernel failed to build: {type(e).__name__}: {' '.join(str(e).split())[:200]}"
    bound = opts.max_rel_error if opts.max_rel_error is not None else 1e-4
    try:
        with torch.no_grad():
            ref = eager_group(g, env)
            got = runner(*[env[i] for i in g.inputs])
            err = rel_error(got, ref) if got.shape == ref.shape else float("inf")
    except Exception as e:
        return None, f"fused kernel failed its check: {type(e).__name__}: {' '.join(str(e).split())[:200]}"
    if not err <= bound:
        return None, f"fused kernel differs from eager (rel. error {err:.2e} > {bound:.0e})"
    return runner, None


def decide(values, decided: list, opts, reuse_of) -> list:
    """Set each kernel group's ``fuse`` knob (module docstring); returns ``decided`` updated.
    ``values()``: the graph's node values on the example inputs (computed once by the caller)."""
    candidates = [g for g, d in decided if d["runner"] is not None
                  and d["plan"].get("fuse", True) and any(st["op"] != "view" for st in g.epilogue)]
    if not opts.fuse or not candidates:
        return [(g, {**d, "plan": {**d["plan"], "fuse": False}}) if d["runner"] is not None else (g, d)
                for g, d in decided]
    env = values()
    names = {g.name for g in candidates}
    out = []
    for g, d in decided:
        if d["runner"] is None:
            out.append((g, d))
            continue
        plan = {**d["plan"], "fuse": False}
        if g.name in names:
            runner, why = try_fused(g, plan, env, opts, reuse_of(g))
            if runner is None:
                plan["fuse_reason"] = why
                (log.info if why.startswith(_NOT_FUSABLE) else log.warning)(
                    "tilewise: %s (%s): epilogue not fused into the kernel: %s; it runs as torch ops",
                    g.name, "+".join(g.ops), why)
            elif opts.mode == "max-autotune" and "fused_s" not in plan:
                args = [env[i] for i in g.inputs]
                fused_s, unfused_s = profile.interleaved_s(lambda: runner(*args), lambda: d["runner"](*args))
                plan.update(fused_s=fused_s, unfused_s=unfused_s)
                if fused_s <= unfused_s:
                    plan.update(fuse=True, fuse_reason=None)
                    d = {**d, "runner": runner}
                else:
                    plan["fuse_reason"] = (f"unfused measured faster ({unfused_s * 1e3:.3f} ms vs "
                                           f"{fused_s * 1e3:.3f} ms fused)")
            else:
                plan.update(fuse=True, fuse_reason=None)
                d = {**d, "runner": runner}
        out.append((g, {**d, "plan": plan}))
    return out
