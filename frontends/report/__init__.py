"""The profile report: what the tuner did, whether it was worth it, and whether to trust the model.

``build(store)`` gathers one plain-JSON dict (:mod:`.data` documents its shape) from a record store
and its tuning-run log, adds the measured roofline of this machine (:mod:`.roofline`, cached per
target), the cost model's quality on the store's records (:mod:`.model_quality`) and, optionally, a
compiled torch model's trace (:mod:`.trace`).  ``html.write`` renders it as one self-contained HTML
file with plotly charts, ``markdown.render`` as Markdown tables of the same numbers.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from tilewise.datasets.base import RecordStore
from tilewise.core.target import Target, detect


@dataclass(frozen=True)
class ReportOptions:
    model_path: str | None = None          # cost model file; None: the embedded model
    cost_model: bool = True                # score a cost model at all
    roofline: bool = True                  # measure (or reuse the cached) roofline of this machine
    refresh_roofline: bool = False         # measure again even if cached
    roofline_cache: str | None = None      # folder of the roofline cache (default ~/.cache/tilewise/roofline)
    model_trace: str | None = None         # path of a ModelTrace JSON file


def build(store: RecordStore, options: ReportOptions = ReportOptions(), *, target: Target | None = None,
          on_step: Callable[[str], None] | None = None) -> dict[str, Any]:
    """The report dict of ``store``.  ``target``: this machine (default: detected); only its
    roofline can be measured.  ``on_step(description)`` is called as each stage starts."""
    from tilewise.frontends.report import data, model_quality, roofline
    step = on_step or (lambda _: None)
    target = target or detect()
    step("reading records")
    records = list(store.iter())
    runs = store.runs()
    report = data.gather(records, runs, store=str(getattr(store, "path", store)), local_target=target)
    for section in report["targets"]:
        if section["local"] and options.roofline:
            step("measuring the roofline" if roofline.cached(target, options.roofline_cache) is None
                 or options.refresh_roofline else "roofline (cached)")
            section["roofline"] = roofline.roofline(target, refresh=options.refresh_roofline,
                                                    folder=options.roofline_cache).to_json()
    if options.cost_model and records:
        step("scoring the cost model")
        model, path = model_quality.load(options.model_path)
        for section in report["targets"]:
            mine = [r for r in records if r.target_key == section["key"]]
            if (mine and mine[0].target.kind == "cuda"      # (a record's kind: the right test)
                    and "gpu_analytic" not in str(getattr(model, "features", ""))):
                section["cost_model"] = None    # a CPU model cannot read Triton schedules (--model a GPU one)
                continue
            section["cost_model"] = model_quality.evaluate(model, path, mine)
    if options.model_trace:
        from tilewise.frontends.model_trace import ModelTrace
        from tilewise.frontends.report import trace
        step("reading the model trace")
        report["model_trace"] = trace.section(ModelTrace.load(options.model_trace), options.model_trace)
    return report
