"""``tilewise report``: the profile report of a tuning database (HTML, Markdown or JSON)."""
from __future__ import annotations

from typing import Optional

import typer

from tilewise.frontends.cli.context import fail, open_db, out, print_json, spinner


def report(
    db: Optional[str] = typer.Option(None, "--db", help="record store to report on; default $TILEWISE_DB or "
                                     "~/.cache/tilewise/records.db"),
    out_path: Optional[str] = typer.Option(None, "--out", "-o", help="file to write (default: "
                                           "tilewise-report.html; with --format md: print to stdout)"),
    fmt: str = typer.Option("html", "--format", "-f", help="html (charts, self-contained) | md (Markdown tables)"),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="cost model file to score (default: the embedded model)"),
    no_model: bool = typer.Option(False, "--no-model", help="leave out the cost-model section"),
    model_trace: Optional[str] = typer.Option(None, "--model-trace", help="a compiled torch model's trace "
                                              "(JSON the torch.compile backend writes with options={'trace': PATH})"),
    no_roofline: bool = typer.Option(False, "--no-roofline", help="do not measure this machine's roofline"),
    refresh_roofline: bool = typer.Option(False, "--refresh-roofline",
                                          help="measure the roofline again instead of using the cached one"),
    as_json: bool = typer.Option(False, "--json", help="print the report's data as JSON (the HTML is still written)"),
):
    """Write the profile report of a tuning database: tuning curves per workload and strategy, the
    measured roofline with every default and best kernel on it, best vs default vs OpenBLAS, the cost
    model's quality, precision trade-offs, and a compiled model's time per kernel.

    Examples:

      tilewise report --db demo.db --out report.html

      tilewise report --db demo.db --format md            (Markdown tables on stdout, e.g. in CI logs)

      tilewise report --db demo.db --model bert.twmodel --model-trace trace.json --json
    """
    from tilewise.frontends.report import ReportOptions
    if fmt not in ("html", "md"):
        fail(f"unknown --format {fmt!r}: use html or md")
    location = _report_store(db, model_trace)
    options = ReportOptions(model_path=model, cost_model=not no_model, roofline=not no_roofline,
                            refresh_roofline=refresh_roofline, model_trace=model_trace)
    data = _build(location, options, fmt, out_path)
    if as_json:
        print_json(data, indent=1, default=str)
    elif fmt == "md":
        _print_markdown(data, out_path)
    else:
        n_targets, n_runs = len(data["targets"]), data["n_runs"]
        out.print(f"report: {data['out']}  ({data['n_records']} records, {n_runs} tuning run{'s' * (n_runs != 1)}, "
                  f"{n_targets} target{'s' * (n_targets != 1)})", highlight=False, soft_wrap=True)


def _report_store(db: Optional[str], model_trace: Optional[str]) -> str:
    """The location of the store to report on, checked to exist, and ``--model-trace`` checked."""
    import os
    from tilewise.datasets.base import default_location
    location = db or default_location()
    if "://" not in location and not os.path.exists(location):
        fail(f"no record store at {location}: tune something into it first "
             f"(tilewise tune matmul:256x256x256:f32 --db {location}) or pass --db PATH")
    if model_trace and not os.path.exists(model_trace):
        fail(f"no model trace at {model_trace}: compile with torch.compile(model, backend='tilewise', "
             "options={'trace': PATH}) to write one")
    return location


def _build(location: str, options, fmt: str, out_path: Optional[str]) -> dict:
    """The report's data (and with ``--format html`` the file written), a spinner naming each step."""
    from tilewise.frontends.report import build
    store = open_db(location)
    try:
        with store, spinner("report: starting") as status:
            data = build(store, options, on_step=lambda step: status.update(f"report: {step}"))
            if fmt == "html":
                from tilewise.frontends.report import html as report_html
                status.update("report: rendering HTML")
                data["out"] = report_html.write(data, out_path or "tilewise-report.html")
    except (ValueError, OSError) as e:      # ModelFileError, TraceError, StoreError: one line each
        fail(str(e))
    return data


def _print_markdown(data: dict, out_path: Optional[str]) -> None:
    from tilewise.frontends.report import markdown
    text = markdown.render(data)
    if out_path:
        with open(out_path, "w", encoding="utf-8") as f:
            f.write(text)
        out.print(f"wrote {out_path}", highlight=False)
    else:
        print(text)
