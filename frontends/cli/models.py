"""``tilewise train`` and ``tilewise eval``: cost models, scored on held-out workloads next to the
roofline baseline."""
from __future__ import annotations

from typing import Optional

import typer

from tilewise.frontends.cli.context import checked_target_kind, existing_store, fail, out, print_json, spinner, train_function


def train(
    db: str = typer.Option("embedded", "--db", help="record store to learn from ('embedded': the shipped dataset)"),
    model: str = typer.Option("xgb", "--model", "-m", help="xgb | rf | gbm | mlp | roofline"),
    features: str = typer.Option("analytic", "--features", help="extractors, e.g. analytic,target (ir is slow)"),
    out: Optional[str] = typer.Option(None, "--out", "-o", help="where to save the trained model"),
    split: str = typer.Option("workload", "--split", help="hold out by workload (default) or target"),
    test_fraction: float = typer.Option(0.2, "--test-fraction"),
    seed: int = typer.Option(0, "--seed"),
    target_kind: str = typer.Option("cpu", "--target", help="cpu, or cuda: train on the store's GPU "
                                    "records (gpu_analytic features; needs no GPU)"),
    as_json: bool = typer.Option(False, "--json"),
):
    """Train a cost model; print its metrics on held-out workloads next to the roofline baseline.

    Example: tilewise train --db bert.db --model xgb --features analytic,target --out bert.xgb
    """
    train_command = train_function(checked_target_kind(target_kind))
    existing_store(db, "collect a dataset first (tilewise collect --workloads suite:small --db PATH) "
                       "or use --db embedded")
    try:
        with spinner(f"training {model} on {db}"):
            rep, table = train_command(db, model=model, out=out, features=features, split=split,
                                       test_fraction=test_fraction, seed=seed)
    except ValueError as e:
        fail(str(e))
    _print_report(rep, table, as_json)


def eval_(
    model: Optional[str] = typer.Option(None, "--model", "-m", help="model file (default: the embedded model)"),
    db: str = typer.Option("embedded", "--db", help="record store ('embedded': the shipped dataset)"),
    include_seen: bool = typer.Option(False, "--include-seen", help="also score workloads seen in training"),
    as_json: bool = typer.Option(False, "--json"),
):
    """Evaluate a cost model on the workloads it was not trained on: R², MAPE, Spearman, Kendall,
    pairwise accuracy, top-1/top-5 score, next to the roofline baseline.

    Example: tilewise eval --json   (the embedded model on the shipped dataset's held-out workloads)
    """
    from tilewise.costmodel.cli_commands import eval_command
    from tilewise.costmodel.embedded import EMBEDDED_MODEL
    existing_store(db, "pass a store of measurements (tilewise collect ... --db PATH) or --db embedded")
    try:
        with spinner(f"scoring {model or 'the embedded model'} on {db}"):
            rep, table = eval_command(model or str(EMBEDDED_MODEL), db, include_seen=include_seen)
    except ValueError as e:
        fail(str(e))
    _print_report(rep, table, as_json)


def _print_report(rep: dict, table, as_json: bool) -> None:
    if as_json:
        print_json(rep, default=float)
    else:
        out.print(table)
