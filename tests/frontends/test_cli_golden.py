"""Every CLI command's output and ``--json`` against the golden files in ``golden_cli/``.

The cases, fixtures and normaliser live in :mod:`tests.frontends.cli_golden`; after a deliberate
change of the CLI's output, regenerate with ``python -m tests.frontends.cli_golden --write [CASE...]``
and review the diff of ``golden_cli/``.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.frontends import cli_golden as golden


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory):
    return golden.build_fixtures(tmp_path_factory.mktemp("cli_golden_fixtures"))


#: cases that compile no kernel run this many at a time (each is a subprocess of its own, in a folder
#: of its own; most of a case is the CLI's start-up): the module takes about half as long on 2 cores
CONCURRENT_CASES = 2


@pytest.fixture(scope="module")
def no_jit_outputs(request):
    """The normalised output of every selected case that compiles no kernel, run concurrently; the
    JIT cases (which time kernels) run one at a time in their own test."""
    cases = [item.callspec.params["case"] for item in request.session.items
             if item.module is request.module and hasattr(item, "callspec") and "case" in item.callspec.params]
    cases = [c for c in cases if not c.jit]
    fixtures = request.getfixturevalue("fixtures") if any(c.fixtures for c in cases) else None
    with ThreadPoolExecutor(CONCURRENT_CASES) as pool:
        outputs = pool.map(lambda c: golden.actual(c, fixtures if c.fixtures else None), cases)
        return dict(zip((c.name for c in cases), outputs))


def _param(case: golden.Case):
    return pytest.param(case, id=case.name, marks=[pytest.mark.jit] if case.jit else [])


@pytest.mark.parametrize("case", [_param(c) for c in golden.CASES])
def test_cli_output_matches_golden(case, request):
    path = golden.golden_path(case)
    assert path.exists(), f"no golden file {path.name}: python -m tests.frontends.cli_golden --write {case.name}"
    expected = path.read_text(encoding="utf-8")
    if case.jit:
        got = golden.actual(case, request.getfixturevalue("fixtures") if case.fixtures else None)
    else:
        got = request.getfixturevalue("no_jit_outputs")[case.name]
    if got != expected:
        pytest.fail(f"{case.name}: the CLI's normalised output differs from {path.name} "
                    f"(regenerate with python -m tests.frontends.cli_golden --write {case.name} if the change "
                    f"is meant):\n{golden.diff(expected, got, case.name)}", pytrace=False)


def test_every_golden_file_has_a_case():
    names = {p.stem for p in golden.GOLDEN_DIR.glob("*.txt")}
    assert names == set(golden.CASES_BY_NAME), names ^ set(golden.CASES_BY_NAME)


def test_normaliser_masks_what_varies_and_keeps_what_the_cli_says():
    from tilewise.core.target import detect
    masks = golden.Masks("/tmp/twgold-abcd1234", detect())
    text = ("matmul:64x48x32:f32: 98.3 GFLOP/s (0.002 ms, rel. error 2.1e-07), 2.38x, top-1 score, f32, L1d, "
            "measured 2026-01-01 00:00 in /tmp/twgold-abcd1234/t.db on " + detect().name)
    assert golden.normalise_text(text, masks) == (
        "matmul:64x48x32:f32: <n> GFLOP/s (<n> ms, rel. error <n>), <n>x, top-1 score, f32, L1d, "
        "measured <time> in <tmp>/t.db on <cpu>")
    # a title rich wrapped to the table's width is one line again; borders and padding do not count
    table = ["  a long      ", "   title      ", "┌────┬───────┐", "│ x  │  1.50 │", "└────┴───────┘"]
    assert golden.normalise_text("\n".join(table), masks).split("\n") == [
        "a long title", "┌─┬─┐", "│ x │ <n> │", "└─┴─┘"]
    assert golden.normalise_json({"b": [1.5, 2], "a": {"schedule": {"tile": [1]}, "ok": True, "n": 3}}, masks) == \
        {"b": [0], "a": {"schedule": {"tile": [1]}, "ok": True, "n": 0}}
    assert golden.normalise_json({"schedule": {"tile": [1]}}, masks, mask_schedules=True) == {"schedule": "<schedule>"}
