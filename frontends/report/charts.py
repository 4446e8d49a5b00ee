"""Plotly figures of the report dict (data.py).  Plotly is imported here only.

Why plotly: the report is opened by a person in a browser, and plotly gives hover (which schedule
is that point?), zoom on log axes and toggling traces in one self-contained HTML file with the
library inlined, no server and no network; the figures are JSON, so the browser test can check
that every chart drew its traces.  Altair needs vega/vega-lite/vega-embed from a CDN unless three
bundles are inlined by hand; matplotlib gives static images only.
"""
from __future__ import annotations

import math
from typing import Any

import plotly.graph_objects as go

from tilewise.frontends.report.data import UNATTRIBUTED

COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
          "#bcbd22", "#17becf"]
KIND = {"best": "#2ca02c", "default": "#7f7f7f", "reference": "#1f77b4"}
MAX_CURVE_FIGURES = 12


def _layout(fig: go.Figure, title: str, height: int = 420, **kw) -> go.Figure:
    kw.setdefault("legend", {"font": {"size": 11}})
    fig.update_layout(template="plotly_white", title={"text": title, "x": 0.01}, height=height,
                      margin={"l": 60, "r": 20, "t": 60, "b": 50}, **kw)
    return fig


def _row_label(row: dict[str, Any]) -> str:
    return f"{row['workload']} · {row['threads']}t"


def tuning_curves(section: dict[str, Any]) -> list[go.Figure]:
    """Per workload: best-so-far GFLOP/s vs measurements, one line per run (strategy), trials as
    faint markers, the default schedule and the reference as dotted lines."""
    by_workload: dict[str, list[dict]] = {}
    for c in section["curves"]:
        by_workload.setdefault(c["workload"], []).append(c)
    ranked = sorted(by_workload, key=lambda w: -sum(len(c["trial_gflops"]) for c in by_workload[w]))
    rows = {r["workload"]: r for r in section["workloads"]}
    figs = []
    for w in ranked[:MAX_CURVE_FIGURES]:
        fig = go.Figure()
        for i, c in enumerate(by_workload[w]):
            color = COLORS[i % len(COLORS)] if c["strategy"] != UNATTRIBUTED else "#555"
            x = list(range(1, len(c["best_gflops"]) + 1))
            fig.add_trace(go.Scatter(x=x, y=c["best_gflops"], mode="lines", name=c["label"],
                                     line={"color": color, "width": 2.5, "shape": "hv"}, legendgroup=c["label"],
                                     hovertemplate="measurement %{x}<br>best so far %{y:.1f} GFLOP/s<extra></extra>"))
            fig.add_trace(go.Scatter(x=x, y=c["trial_gflops"], mode="markers", name=f"{c['label']} trials",
                                     marker={"color": color, "size": 5, "opacity": 0.35}, legendgroup=c["label"],
                                     showlegend=False,
                                     hovertemplate="measurement %{x}: %{y:.1f} GFLOP/s<extra></extra>"))
        row = rows.get(w)
        for name in ("default", "reference"):
            t = row.get(name) if row else None
            if t and t.get("gflops"):
                label = "default schedule" if name == "default" else f"{t['name']} (reference)"
                fig.add_hline(y=t["gflops"], line={"dash": "dot", "color": KIND[name]},
                              annotation_text=f"{label} {t['gflops']:.1f}", annotation_position="bottom right")
        _layout(fig, f"Tuning curve · {w}", height=360, xaxis_title="measurements",
                yaxis_title="best GFLOP/s so far")
        figs.append(fig)
    return figs


def roofline(section: dict[str, Any]) -> go.Figure | None:
    """Log-log roofline of the measured ceilings, every workload's default and best kernel on it."""
    rf = section.get("roofline")
    if not rf:
        return None
    fig = go.Figure()
    rows = section["workloads"]
    xs = [r["intensity"] for r in rows] or [1.0]
    lo, hi = min(0.05, min(xs) / 3), max(500.0, max(xs) * 3)
    grid = [lo * (hi / lo) ** (i / 200) for i in range(201)]
    dashes = ["solid", "dash", "dot", "dashdot"]
    for i, (t, bw) in enumerate(sorted((int(k), v) for k, v in rf["bandwidth_gbs"].items())):
        peak = rf["fma_gflops"].get(str(t)) or rf["sgemm_gflops"][str(t)]
        fig.add_trace(go.Scatter(x=grid, y=[min(peak, bw * x) for x in grid], mode="lines",
                                 name=f"roofline {t} thread{'s' * (t > 1)}: {peak:.0f} GFLOP/s, {bw:.1f} GB/s",
                                 line={"color": "#333", "dash": dashes[i % 4], "width": 2}))
        cache_bw = rf.get("cache_bandwidth_gbs", {}).get(str(t))
        if cache_bw:
            fig.add_trace(go.Scatter(x=grid, y=[min(peak, cache_bw * x) for x in grid], mode="lines",
                                     name=f"last-level-cache roof {t}t: {cache_bw:.0f} GB/s",
                                     line={"color": "#aaa", "dash": dashes[i % 4], "width": 1}))
        if rf["sgemm_gflops"].get(str(t)):
            s = rf["sgemm_gflops"][str(t)]
            fig.add_trace(go.Scatter(x=[lo, hi], y=[s, s], mode="lines", name=f"SGEMM (OpenBLAS) {t}t: {s:.0f} GFLOP/s",
                                     line={"color": "#1f77b4", "dash": dashes[i % 4], "width": 1}))
    for i, r in enumerate(rows):
        color = COLORS[i % len(COLORS)]
        for kind, symbol in (("default", "circle-open"), ("best", "star")):
            t = r.get(kind)
            if not t or not t.get("gflops"):
                continue
            fig.add_trace(go.Scatter(
                x=[r["intensity"]], y=[t["gflops"]], mode="markers", name=f"{_row_label(r)} {kind}",
                legendgroup=_row_label(r), marker={"color": color, "symbol": symbol, "size": 13 if kind == "best" else 10,
                                                    "line": {"width": 2, "color": color}},
                hovertemplate=(f"{r['workload']} ({r['threads']} threads) {kind}<br>%{{y:.1f}} GFLOP/s at "
                               "%{x:.2f} FLOP/byte<extra></extra>")))
    _layout(fig, "Roofline (measured ceilings) · default ○ and best ★ kernel per workload", height=560,
            legend={"orientation": "v", "x": 1.02, "y": 1, "font": {"size": 11}},
            xaxis={"type": "log", "title": "arithmetic intensity (FLOP / byte of compulsory traffic)"},
            yaxis={"type": "log", "title": "GFLOP/s"})
    return fig


def speedup_bars(section: dict[str, Any]) -> go.Figure | None:
    rows = section["workloads"]
    if not rows:
        return None
    labels = [_row_label(r) for r in rows]
    fig = go.Figure()
    for kind in ("best", "default", "reference"):
        ys, texts = [], []
        for r in rows:
            t = r.get(kind)
            ys.append(t["gflops"] if t else None)
            if kind == "best" and r.get("speedup_vs_default"):
                texts.append(f"{r['speedup_vs_default']:.2f}× vs default")
            elif kind == "reference" and r.get("ratio_vs_reference") and t:
                texts.append(f"best = {r['ratio_vs_reference']:.2f}× {t['name']}")
            else:
                texts.append("")
        name = {"best": "best (tuned)", "default": "default schedule", "reference": "OpenBLAS/numpy reference"}[kind]
        fig.add_trace(go.Bar(x=labels, y=ys, name=name, marker_color=KIND[kind], text=texts, textposition="outside",
                             hovertemplate="%{x}<br>%{y:.1f} GFLOP/s<extra>" + name + "</extra>"))
    _layout(fig, "Best vs default vs reference (interleaved A/B medians)", barmode="group",
            yaxis_title="GFLOP/s", height=440)
    return fig


def model_scatter(cm: dict[str, Any]) -> go.Figure:
    fig = go.Figure()
    for seen, name, color in ((False, "workloads unseen in training", "#d62728"),
                              (True, "workloads seen in training", "#7f7f7f")):
        pts = [p for p in cm["points"] if p[3] == seen]
        if not pts:
            continue
        fig.add_trace(go.Scatter(x=[p[0] * 1e3 for p in pts], y=[p[1] * 1e3 for p in pts], mode="markers",
                                 name=name, text=[p[2] for p in pts], marker={"color": color, "size": 6, "opacity": 0.6},
                                 hovertemplate="%{text}<br>measured %{x:.4g} ms<br>predicted %{y:.4g} ms<extra></extra>"))
    values = [v for p in cm["points"] for v in p[:2]]
    lo, hi = min(values) * 1e3 / 1.5, max(values) * 1e3 * 1.5
    fig.add_trace(go.Scatter(x=[lo, hi], y=[lo, hi], mode="lines", name="predicted = measured",
                             line={"color": "#333", "dash": "dash"}))
    m = cm["metrics"]

    def f(v):
        return "n/a" if v is None else f"{v:.3f}"
    _layout(fig, f"{cm['model']} cost model: R² {f(m['r2'])} · Spearman {f(m['spearman'])} · top-1 {f(m['top1'])}"
            f" · top-5 {f(m['top5'])}", height=460,
            xaxis={"type": "log", "title": "measured latency (ms)"}, yaxis={"type": "log", "title": "predicted latency (ms)"})
    return fig


def importances(cm: dict[str, Any]) -> go.Figure | None:
    if not cm.get("importances"):
        return None
    items = list(reversed(cm["importances"]))
    fig = go.Figure(go.Bar(x=[v for _, v in items], y=[k for k, _ in items], orientation="h", marker_color="#9467bd",
                           hovertemplate="%{y}: %{x:.3f}<extra></extra>"))
    _layout(fig, "Feature importances (share of total gain)", height=80 + 24 * len(items), xaxis_title="importance")
    return fig


def precision(p: dict[str, Any]) -> go.Figure:
    fig = go.Figure()
    precisions = sorted({q["precision"] for q in p["points"]})
    floor = min((q["rel_error"] for q in p["points"] if q["rel_error"] > 0), default=1e-12) / 10
    for i, name in enumerate(precisions):
        pts = [q for q in p["points"] if q["precision"] == name]
        fig.add_trace(go.Scatter(x=[q["latency_s"] * 1e3 for q in pts], y=[max(q["rel_error"], floor) for q in pts],
                                 mode="markers", name=name, marker={"color": COLORS[i % len(COLORS)], "size": 8, "opacity": 0.7},
                                 hovertemplate=name + ": %{x:.4g} ms, rel. error %{y:.2e}<extra></extra>"))
    front = [q for q in p["points"] if q["pareto"]]
    fig.add_trace(go.Scatter(x=[q["latency_s"] * 1e3 for q in front], y=[max(q["rel_error"], floor) for q in front],
                             mode="lines+markers", name="Pareto front", line={"color": "#333", "shape": "hv"},
                             marker={"symbol": "diamond-open", "size": 11}))
    _layout(fig, f"Precision trade-off · {p['workload']}", height=400, xaxis_title="latency (ms)",
            yaxis={"type": "log", "title": "relative error vs float64"})
    return fig


def model_trace(mt: dict[str, Any]) -> go.Figure | None:
    timed = [k for k in mt["kernels"] if k["median_s"] is not None]
    if not timed:
        return None
    timed = list(reversed(timed))       # execution order top to bottom
    fig = go.Figure()
    for kind, color, name in (("kernel", "#2ca02c", "tilewise kernel"), ("eager", "#d62728", "eager fallback")):
        ks = [k for k in timed if k["kind"] == kind]
        if ks:
            fig.add_trace(go.Bar(
                x=[k["median_s"] * 1e3 for k in ks], y=[k["name"] for k in ks], orientation="h", name=name,
                marker_color=color, text=["+".join(k["ops"]) for k in ks], textposition="auto",
                customdata=[k.get("reason") or k.get("workload") or "" for k in ks],
                hovertemplate="%{y}: %{x:.4g} ms<br>%{text}<br>%{customdata}<extra></extra>"))
    _layout(fig, f"{mt['model']}: time per kernel / fusion group (median per call)", height=120 + 28 * len(timed),
            xaxis_title="ms per call", yaxis={"categoryorder": "array", "categoryarray": [k["name"] for k in timed]})
    return fig


def fmt_gflops(v: float | None) -> str:
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.1f}"
