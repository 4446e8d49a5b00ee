"""``tilewise train`` and ``tilewise eval``: cost models, scored on held-out workloads next to the
roofline baseline."""
from __future__ import annotations

from typing import Optional

import typer

from tilewise.frontends.cli.context import checked_target_kind, existing_store, fail, out, print_json, spinner, train_function


def train(
    db: str = typer.Option("embedded", "--db", help="record store to learn from ('embedded': the shipped "
                           "dataset; 'embedded:all': every shipped CPU's records)"),
    model: str = typer.Option("xgb", "--model", "-m", help="xgb | rf | gbm | mlp | roofline"),
    features: str = typer.Option("analytic", "--features", help="extractors, e.g. analytic,target (ir is slow)"),
    out: Optional[str] = typer.Option(None, "--out", "-o", help="where to save the trained model"),
    split: str = typer.Option("workload", "--split", help="hold out by workload (default) or target"),
    test_fraction: float = typer.Option(0.2, "--test-fraction"),
    seed: int = typer.Option(0, "--seed"),
    test_target: Optional[str] = typer.Option(None, "--test-target", help="with --split target: the "
                                              "target held out (key prefix or CPU name; default: drawn)"),
    few_shot: int = typer.Option(0, "--few-shot", min=0, help="with --split target: records of the "
                                 "held-out target that join training (0: zero-shot)"),
    target_kind: str = typer.Option("cpu", "--target", help="cpu, or cuda: train on the store's GPU "
                                    "records (gpu_analytic features; needs no GPU)"),
    as_json: bool = typer.Option(False, "--json"),
):
    """Train a cost model; print its metrics on held-out workloads next to the roofline baseline.

    Example: tilewise train --db bert.db --model xgb --features analytic,target --out bert.xgb

    Transfer to a CPU: tilewise train --db embedded:all --split target --test-target e40681bc --few-shot 32
    """
    train_command = train_function(checked_target_kind(target_kind))
    if split != "target" and (test_target is not None or few_shot):
        fail("--test-target and --few-shot hold out a CPU's records: add --split target")
    existing_store(db, "collect a dataset first (tilewise collect --workloads suite:small --db PATH) "
                       "or use --db embedded")
    try:
        with spinner(f"training {model} on {db}"):
            rep, table = train_command(db, model=model, out=out, features=features, split=split,
                                       test_fraction=test_fraction, seed=seed,
                                       **({"test_targets": [test_target] if test_target else None,
                                           "few_shot": few_shot} if split == "target" else {}))
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
