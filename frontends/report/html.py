"""One self-contained HTML file: plotly.js inlined once, every chart as an inline ``div`` + script,
the key-number tables beside them; nothing is fetched when it is opened."""
from __future__ import annotations

import datetime
import html
import os
import tempfile
from typing import Any

from tilewise.frontends.report import charts as C
from tilewise.frontends.report import tables as T

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#222;background:#fafafa}
header{background:#1d3557;color:#fff;padding:18px 32px}header h1{margin:0;font-size:24px}
header p{margin:4px 0 0;opacity:.85}main{padding:8px 32px 48px;max-width:1500px}
section.target{background:#fff;border:1px solid #ddd;border-radius:8px;padding:12px 20px;margin:18px 0}
h2{border-bottom:2px solid #1d3557;padding-bottom:4px}h3{margin-top:28px}
.cards{display:flex;flex-wrap:wrap;gap:12px;margin:12px 0}
.card{background:#f1f5fb;border-radius:8px;padding:10px 16px;min-width:150px}
.card b{display:block;font-size:22px}.card span{font-size:12px;color:#555}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(560px,1fr));gap:12px}
.chart{border:1px solid #eee;border-radius:6px;min-height:200px}
table{border-collapse:collapse;margin:8px 0 16px;font-size:13px}
th,td{border:1px solid #ddd;padding:4px 8px;text-align:right}th{background:#eef2f7}
td:first-child,th:first-child{text-align:left}.note{color:#666;font-size:13px}
"""


def _table(t: T.Table) -> str:
    title, header, rows = t
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<h4>{html.escape(title)}</h4><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


class _Charts:
    """Numbers the chart divs (``chart-0``, ...) so ids are unique in the file."""

    def __init__(self):
        self.n = 0

    def __call__(self, fig, wide: bool = False) -> str:
        if fig is None:
            return ""
        div = fig.to_html(full_html=False, include_plotlyjs=False, div_id=f"chart-{self.n}",
                          config={"displaylogo": False, "responsive": True})
        self.n += 1
        style = ' style="grid-column:1/-1"' if wide else ""
        return f'<div class="chart"{style}>{div}</div>'


def _cards(section: dict[str, Any]) -> str:
    rows = section["workloads"]
    speedups = [r["speedup_vs_default"] for r in rows if r.get("speedup_vs_default")]
    vs_ref = [r["ratio_vs_reference"] for r in rows if r.get("ratio_vs_reference")]
    cards = [("records", str(section["n_records"])), ("tuning runs", str(section["n_runs"])),
             ("workloads", str(len({r["workload"] for r in rows})))]
    if speedups:
        cards.append(("best speedup vs default", f"{max(speedups):.2f}×"))
    if vs_ref:
        cards.append(("best vs OpenBLAS/numpy", f"{max(vs_ref):.2f}×"))
    rf = section.get("roofline")
    if rf:
        ts = sorted(rf["bandwidth_gbs"], key=int)
        peaks = " / ".join(f"{rf['fma_gflops'].get(t) or rf['sgemm_gflops'][t]:.0f}" for t in ts)
        label = " / ".join(ts)
        cards.append((f"peak GFLOP/s ({label} threads)", peaks))
        cards.append((f"DRAM GB/s ({label} threads)", " / ".join(f"{rf['bandwidth_gbs'][t]:.1f}" for t in ts)))
    cm = section.get("cost_model")
    if cm and cm["metrics"].get("spearman") is not None:
        cards.append((f"{cm['model']} Spearman ρ", f"{cm['metrics']['spearman']:.2f}"))
    return '<div class="cards">' + "".join(f"<div class=card><b>{html.escape(v)}</b><span>{html.escape(k)}</span></div>"
                                           for k, v in cards) + "</div>"


def _target(section: dict[str, Any], chart: _Charts) -> str:
    parts = [f'<section class="target" data-target="{section["key"][:12]}">',
             f"<h2>{html.escape(section['name'])} <small class=note>key {section['key'][:12]}"
             f"{' · this machine' if section['local'] else ' · another machine'}</small></h2>",
             f"<p class=note>{html.escape(section['description'])}</p>", _cards(section)]
    parts.append("<h3>Where the kernels stand</h3>")
    if section.get("roofline"):
        parts.append(f'<div class="grid">{chart(C.roofline(section), wide=True)}{chart(C.speedup_bars(section), wide=True)}</div>')
        parts.append(_table(T.roofline(section)))
        parts.append(f"<p class=note>{html.escape(T.roofline_note(section))}</p>")
    else:
        why = ("ceilings are measured on the machine that renders the report, and this is another one"
               if not section["local"] else "not measured (--no-roofline)")
        parts.append(f"<p class=note>No roofline: {why}.</p>")
        parts.append(f'<div class="grid">{chart(C.speedup_bars(section))}</div>')
    parts.append(_table(T.workloads(section)))
    above = T.above_roof(section)
    if above:
        parts.append(f"<p class=note>{html.escape(above)}</p>")
    curves = C.tuning_curves(section)
    if curves:
        parts.append("<h3>Tuning curves</h3><div class=grid>" + "".join(chart(f) for f in curves) + "</div>")
        parts.append(_table(T.curves(section)))
    cm = section.get("cost_model")
    if cm:
        parts.append("<h3>Cost model quality</h3>")
        parts.append(f"<p class=note>{html.escape(cm['path'])}: predictions for every ok record of this target "
                     "(red: workloads the model never saw in training).</p>")
        parts.append(f'<div class="grid">{chart(C.model_scatter(cm))}{chart(C.importances(cm))}</div>')
        parts += [_table(t) for t in (T.cost_model(section), T.importances(section)) if t]
    if section["precision"]:
        parts.append("<h3>Precision trade-offs</h3><div class=grid>"
                     + "".join(chart(C.precision(p)) for p in section["precision"]) + "</div>")
        parts.append(_table(T.precision(section)))
    parts.append("</section>")
    return "\n".join(parts)


def render(report: dict[str, Any]) -> str:
    from plotly.offline import get_plotlyjs
    chart = _Charts()
    body = [_table(T.summary(report))] + [_target(s, chart) for s in report["targets"]]
    mt = report.get("model_trace")
    if mt:
        body.append('<section class="target" data-target="model-trace"><h2>Compiled model</h2>'
                    f"<p class=note>{html.escape(mt['path'])}: what torch.compile(backend='tilewise') ran, "
                    f"kernel by kernel, on {html.escape(mt['target'])}; red: fell back to eager PyTorch.</p>"
                    f'<div class=grid>{chart(C.model_trace(mt), wide=True)}</div>'
                    + "".join(_table(t) for t in T.model_trace(mt)) + "</section>")
    if not report["targets"] and not mt:
        body.append("<p>The store holds no records: run <code>tilewise tune WORKLOAD --db PATH</code> first.</p>")
    when = datetime.datetime.fromtimestamp(report["generated"], datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return (f"<!DOCTYPE html><html lang=en><head><meta charset=utf-8><title>tilewise report</title>"
            f"<meta name=viewport content='width=device-width,initial-scale=1'><style>{_CSS}</style>"
            f"<script>{get_plotlyjs()}</script></head><body>"
            f"<header><h1>tilewise profile report</h1><p>{html.escape(report['store'] or '')} · {when} · "
            f"{report['n_records']} records · {chart.n} charts</p></header><main>{''.join(body)}</main></body></html>")


def write(report: dict[str, Any], path: str | os.PathLike) -> str:
    """Render and write atomically; return the absolute path."""
    path = os.path.abspath(os.fspath(path))
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".report-", suffix=".html")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(render(report))
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)          # mkstemp makes it 0600: a report is for sharing
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    return path
