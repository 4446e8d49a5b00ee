"""The key numbers of the report dict as tables (title, header, rows of strings): the Markdown
writer prints them, the HTML writer shows the same tables under its charts."""
from __future__ import annotations

import datetime
import math
from typing import Any

Table = tuple[str, list[str], list[list[str]]]


def _f(v: float | None, fmt: str = "{:.1f}") -> str:
    return "–" if v is None or (isinstance(v, float) and (math.isnan(v) or math.isinf(v))) else fmt.format(v)


def _ms(s: float | None) -> str:
    return _f(None if s is None else s * 1e3, "{:.4g}")


def attainable_gflops(rf: dict[str, Any] | None, threads: int, intensity: float) -> float | None:
    """The roofline bound at ``intensity`` for ``threads`` (nearest measured thread count below)."""
    if not rf:
        return None
    known = sorted(int(k) for k in rf["bandwidth_gbs"])
    t = str(max((k for k in known if k <= threads), default=known[0]))
    peak = rf["fma_gflops"].get(t) or rf["sgemm_gflops"][t]
    return min(peak, rf["bandwidth_gbs"][t] * intensity)


def summary(report: dict[str, Any]) -> Table:
    when = datetime.datetime.fromtimestamp(report["generated"], datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    rows = [["store", report["store"] or "–"], ["generated", when], ["records", str(report["n_records"])],
            ["tuning runs logged", str(report["n_runs"])], ["targets", str(len(report["targets"]))]]
    return "Summary", ["", ""], rows


def roofline(section: dict[str, Any]) -> Table | None:
    rf = section.get("roofline")
    if not rf:
        return None
    rows = []
    for t in sorted(int(k) for k in rf["bandwidth_gbs"]):
        k = str(t)
        peak = rf["fma_gflops"].get(k) or rf["sgemm_gflops"][k]
        rows.append([k, _f(rf["fma_gflops"].get(k)), _f(rf["sgemm_gflops"].get(k)), _f(rf["bandwidth_gbs"][k]),
                     _f(rf.get("cache_bandwidth_gbs", {}).get(k)), _f(peak / rf["bandwidth_gbs"][k], "{:.2f}")])
    return ("Roofline (measured on this machine)",
            ["threads", "FMA peak GFLOP/s", "SGEMM GFLOP/s", "DRAM GB/s", "LLC GB/s", "ridge FLOP/byte"], rows)


def roofline_note(section: dict[str, Any]) -> str:
    rf = section["roofline"]
    when = datetime.datetime.fromtimestamp(rf["measured_at"], datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return (f"Measured on this machine at {when} (cached per target): an FMA-bound loop JIT-compiled through "
            "MLIR, numpy/OpenBLAS SGEMM 1024³, numpy copy/add on arrays 4× the last-level cache (DRAM) and "
            "on arrays that fit in it (LLC); each the best of 3 medians of 5 runs. Ceilings measured while "
            "other processes ran come out low: rerun with `tilewise report --refresh-roofline` on an idle machine."
            + "".join(f" {n}" for n in rf.get("notes", ())))


def above_roof(section: dict[str, Any]) -> str | None:
    """A sentence on kernels above their DRAM roof, or None: operands that stay in cache, or
    ceilings measured on a busy machine."""
    rf = section.get("roofline")
    names = []
    for r in section["workloads"]:
        bound = attainable_gflops(rf, r["threads"], r["intensity"])
        if bound and r["best"].get("gflops") and r["best"]["gflops"] > 1.02 * bound:
            names.append(r["workload"])
    if not names:
        return None
    return (f"Above the DRAM roofline: {', '.join(names)}. Their operands fit in the last-level cache (compare the "
            "LLC roof), or the ceilings were measured while the machine was busy (--refresh-roofline).")


def workloads(section: dict[str, Any]) -> Table:
    rows = []
    for r in section["workloads"]:
        best, default, ref = r["best"], r.get("default"), r.get("reference")
        bound = attainable_gflops(section.get("roofline"), r["threads"], r["intensity"])
        pct = best["gflops"] / bound * 100 if bound and best.get("gflops") else None
        rows.append([r["workload"], str(r["threads"]), str(r["n_records"]), ", ".join(r["strategies"]) or "–",
                     _f(best.get("gflops")), _ms(best.get("latency_s")),
                     _f(default["gflops"]) if default else "–", f"{ref['name']} {_f(ref['gflops'])}" if ref else "–",
                     _f(r.get("speedup_vs_default"), "{:.2f}×"), _f(r.get("ratio_vs_reference"), "{:.2f}×"),
                     _f(pct, "{:.0f}%")])
    return ("Workloads: best vs default vs reference",
            ["workload", "threads", "records", "strategies", "best GFLOP/s", "best ms", "default GFLOP/s",
             "reference GFLOP/s", "speedup vs default", "vs reference", "% of DRAM roofline"], rows)


def curves(section: dict[str, Any]) -> Table:
    rows = []
    for c in section["curves"]:
        final = c["best_gflops"][-1] if c["best_gflops"] else None
        # measurements needed to get within 5% of the run's final best: how fast it converged
        within = next((i + 1 for i, v in enumerate(c["best_gflops"]) if v is not None and final and v >= 0.95 * final), None)
        failed = sum(v is None for v in c["trial_gflops"])
        rows.append([c["workload"], c["label"], str(len(c["trial_gflops"])), str(failed), _f(final),
                     str(within) if within else "–"])
    return ("Tuning runs", ["workload", "strategy", "measurements", "failed", "best GFLOP/s",
                            "measurements to 95% of best"], rows)


def cost_model(section: dict[str, Any]) -> Table | None:
    cm = section.get("cost_model")
    if not cm:
        return None
    labels = {"r2": "R² (latency)", "mape": "MAPE", "spearman": "Spearman ρ", "kendall": "Kendall τ",
              "pairwise": "pairwise accuracy", "top1": "top-1 score", "top5": "top-5 score"}
    rows = [[labels[k], _f(cm["metrics"].get(k), "{:.3f}"), _f(cm["baseline"]["metrics"].get(k), "{:.3f}")]
            for k in labels]
    rows.append(["R² (log latency)", _f(cm.get("log_r2"), "{:.3f}"), "–"])
    title = (f"Cost model {cm['model']} on {cm['n_records']} records of {cm['n_workloads']} workloads "
             f"({cm['n_seen_workloads']} seen in training)")
    return title, ["metric", cm["model"], "roofline baseline"], rows


def importances(section: dict[str, Any]) -> Table | None:
    cm = section.get("cost_model")
    if not cm or not cm.get("importances"):
        return None
    return "Feature importances", ["feature", "share of gain"], [[k, _f(v, "{:.3f}")] for k, v in cm["importances"]]


def precision(section: dict[str, Any]) -> Table | None:
    rows = [[p["workload"], s["precision"], str(s["n"]), _f(s["best_gflops"]), _ms(s["best_latency_s"]),
             _f(s["min_rel_error"], "{:.1e}")]
            for p in section["precision"] for s in p["summary"]]
    if not rows:
        return None
    return ("Precision trade-offs", ["workload", "precision", "measured", "best GFLOP/s", "best ms",
                                     "lowest rel. error"], rows)


def model_trace(mt: dict[str, Any] | None) -> list[Table]:
    if not mt:
        return []
    share = mt.get("tilewise_fraction")
    head = ("Model trace: " + mt["model"], ["", ""],
            [["mode", mt["mode"]], ["compile time", _f(mt["compile_s"], "{:.2f} s")],
             ["tilewise kernels", str(mt["n_kernels"])], ["eager fallbacks", str(mt["n_eager"])],
             ["time in tilewise kernels", _f(None if share is None else share * 100, "{:.0f}%")],
             ["ms per call: kernels / eager", f"{_ms(mt['time_per_call_s']['kernel'])} / {_ms(mt['time_per_call_s']['eager'])}"]]
            + [["graph fallback", f] for f in mt["fallbacks"]])
    rows = [[k["name"], k["kind"], "+".join(k["ops"]), _ms(k["median_s"]), _f(k.get("gflops")),
             k.get("workload") or "–", k.get("reason") or ""] for k in mt["kernels"]]
    return [head, ("Kernels and fusion groups", ["name", "kind", "ops", "ms/call", "GFLOP/s", "workload",
                                                 "fell back because"], rows)]


def for_target(section: dict[str, Any]) -> list[Table]:
    tables = [roofline(section), workloads(section), curves(section), cost_model(section),
              importances(section), precision(section)]
    return [t for t in tables if t is not None]
