"""The report's key numbers as Markdown tables (terminals, CI logs, pull requests)."""
from __future__ import annotations

from typing import Any

from tilewise.frontends.report import tables as T


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def table(t: T.Table) -> str:
    title, header, rows = t
    lines = [f"### {title}", "", "| " + " | ".join(_cell(h) for h in header) + " |",
             "|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|"]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    if not rows:
        lines.append("| " + " | ".join(["(none)"] + [""] * (len(header) - 1)) + " |")
    return "\n".join(lines) + "\n"


def render(report: dict[str, Any]) -> str:
    parts = ["# tilewise profile report", "", table(T.summary(report))]
    for section in report["targets"]:
        where = "this machine" if section["local"] else "another machine"
        parts.append(f"## Target {section['name']} ({where}, key {section['key'][:12]})\n")
        parts.append(f"{section['description']}  \n{section['n_records']} records, {section['n_runs']} tuning runs\n")
        if not section.get("roofline"):
            parts.append("_No roofline: ceilings are measured on the machine that runs the report, "
                         "and this target is not it._\n" if not section["local"] else "_Roofline not measured (--no-roofline)._\n")
        parts += [table(t) for t in T.for_target(section)]
        notes = [T.roofline_note(section) if section.get("roofline") else None, T.above_roof(section)]
        parts += [f"_{n}_\n" for n in notes if n]
    parts += [table(t) for t in T.model_trace(report.get("model_trace"))]
    return "\n".join(parts)
