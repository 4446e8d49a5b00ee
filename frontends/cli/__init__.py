"""The ``tilewise`` command line.

Every command takes ``--json`` for machine output.  Bad input (a malformed workload, an illegal
schedule, an unreadable .mlir file, a workload whose buffers cannot fit in memory) prints one line
``error: ...`` to stderr and exits with 2.

One module per command group (:mod:`.info`; :mod:`.tuning`: tune, best, measure; :mod:`.data`:
collect, dataset export|import; :mod:`.models`: train, eval; :mod:`.report`; :mod:`.plan`), and
:mod:`.context` for what they share (target kinds, stores, runners, checks, ``fail()``, JSON).  This module only
assembles the app, in the order ``tilewise --help`` lists the commands.
"""
from __future__ import annotations

import sys

import typer

from tilewise.frontends.cli import data, info, models, plan, report, tuning
from tilewise.frontends.cli.context import err

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="tilewise: learned cost models and autotuning for ML kernels on MLIR.",
                  epilog="Start with: tilewise info; tilewise tune matmul:512x512x512:f32 --trials 24 --db my.db; "
                         "tilewise report --db my.db --out report.html.  Every command takes --json; "
                         "'tilewise COMMAND --help' shows its examples.")
app.command()(info.info)
app.command()(tuning.tune)
app.command()(tuning.best)
app.command()(tuning.measure)
app.command()(data.collect)

dataset_app = typer.Typer(help="Record-store datasets: export and import.", no_args_is_help=True)
app.add_typer(dataset_app, name="dataset")
dataset_app.command("export")(data.dataset_export)
dataset_app.command("import")(data.dataset_import)

app.command()(models.train)
app.command(name="eval")(models.eval_)
app.command()(report.report)
app.command()(plan.plan)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
