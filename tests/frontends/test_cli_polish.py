"""CLI conventions every command keeps: --help with examples, --json, one-line actionable errors."""
import json
import subprocess
import sys

import pytest

from tests.datasets.records import make_record

CLI = [sys.executable, "-m", "tilewise.frontends.cli"]
COMMANDS = [["info"], ["tune"], ["best"], ["measure"], ["collect"], ["train"], ["eval"], ["report"],
            ["dataset", "export"], ["dataset", "import"]]


def run(*args):
    return subprocess.run(CLI + list(args), capture_output=True, text=True, timeout=300,
                          env={**__import__("os").environ, "COLUMNS": "200"})


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_help_has_examples_and_json(command):
    r = run(*command, "--help")
    assert r.returncode == 0, r.stderr
    assert "Example" in r.stdout and "tilewise " + " ".join(command) in r.stdout
    assert "--json" in r.stdout


def test_top_level_help_says_where_to_start():
    r = run("--help")
    assert r.returncode == 0 and "tilewise report --db" in r.stdout and "--json" in r.stdout


@pytest.mark.parametrize("args,fragment", [
    (["dataset", "export", "--db", "/nonexistent/a.db", "--out", "x.parquet"], "no record store at /nonexistent/a.db"),
    (["dataset", "import", "/nonexistent/a.parquet"], "dataset export"),
    (["eval", "--db", "/nonexistent/a.db"], "--db embedded"),
    (["train", "--db", "/nonexistent/a.db"], "tilewise collect"),
])
def test_missing_inputs_say_what_to_do(args, fragment):
    r = run(*args)
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert r.returncode == 2 and len(lines) == 1 and lines[0].startswith("error:") and fragment in lines[0], r.stderr


def test_dataset_export_and_import_json(tmp_path):
    from tilewise.datasets.sqlite_store import SQLiteStore
    with SQLiteStore(tmp_path / "a.db") as store:
        store.append([make_record(i) for i in range(3)])
    exported = run("dataset", "export", "--db", str(tmp_path / "a.db"), "--out", str(tmp_path / "a.parquet"), "--json")
    assert exported.returncode == 0, exported.stderr
    assert json.loads(exported.stdout)["records"] == 3
    imported = run("dataset", "import", str(tmp_path / "a.parquet"), "--db", str(tmp_path / "b.db"), "--json")
    assert imported.returncode == 0, imported.stderr
    assert json.loads(imported.stdout) == {"db": str(tmp_path / "b.db"), "in": str(tmp_path / "a.parquet"), "imported": 3}
