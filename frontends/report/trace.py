"""The ``model_trace`` section: time per kernel / fusion group of a compiled torch model, and what
fell back to eager PyTorch (:mod:`tilewise.frontends.model_trace` is the file's schema)."""
from __future__ import annotations

from typing import Any

from tilewise.frontends.model_trace import ModelTrace


def section(trace: ModelTrace, path: str = "") -> dict[str, Any]:
    kernels = []
    for k in trace.kernels:
        kernels.append({"name": k.name, "kind": k.kind, "ops": list(k.ops), "median_s": k.median_s,
                        "calls": k.calls, "workload": k.workload,
                        "gflops": k.flops / k.median_s / 1e9 if k.flops and k.median_s else None,
                        "schedule": k.schedule, "reason": k.reason})
    timed = [k for k in kernels if k["median_s"] is not None]
    per_call = {kind: sum(k["median_s"] for k in timed if k["kind"] == kind) for kind in ("kernel", "eager")}
    whole = sum(per_call.values())
    return {"path": path, "model": trace.model, "mode": trace.mode, "compile_s": trace.compile_s,
            "target": trace.target.get("name", ""), "fallbacks": list(trace.fallbacks),
            "n_kernels": sum(k["kind"] == "kernel" for k in kernels),
            "n_eager": sum(k["kind"] == "eager" for k in kernels),
            "n_untimed": len(kernels) - len(timed),
            "time_per_call_s": per_call, "tilewise_fraction": per_call["kernel"] / whole if whole else None,
            "kernels": kernels}
