"""Golden outputs of the ``tilewise`` CLI: the cases, their fixtures, and the normaliser.

Shared by the test (``tests/frontends/test_cli_golden.py``) and the generator::

    PYTHONPATH=... python -m tests.frontends.cli_golden --write          # (re)write every golden
    PYTHONPATH=... python -m tests.frontends.cli_golden --write tune_json # just these cases
    PYTHONPATH=... python -m tests.frontends.cli_golden --check          # compare, print diffs

Each case runs ``python -m tilewise.frontends.cli ARGV`` in a subprocess, in a fresh temporary
folder of its own (the working directory, ``$XDG_CACHE_HOME`` and ``$TILEWISE_DB`` all point into
it, so no case reads or writes the user's files), with the fixtures it names copied in.  The
golden file ``golden_cli/<name>.txt`` holds the exit code and the normalised stdout and stderr.

What the normaliser keeps: everything the CLI decides -- wording, labels, column headers, line
structure, JSON key structure and which keys exist.  What it masks, and why:

* numbers in text (timings, GFLOP/s, ratios, counts, metric values) -> ``<n>``: they vary from run
  to run and machine to machine.  Workload strings (``matmul:64x48x32:f32``) and words holding
  digits (``f32``, ``L1d``, ``top-1``) are kept.  Help and ``error:`` cases mask no numbers.
* JSON: numbers -> 0 and a list of numbers -> ``[0]`` (a measurement holds as many timings as its
  timer took); booleans and nulls are kept; strings are masked as text is; then dumped with sorted
  keys, indent 2.
* the case's temporary folder -> ``<tmp>`` (folders are made with one fixed-length name pattern,
  so rich wraps a line holding a path at the same place every run);
* the target: CPU name -> ``<cpu>``, arch -> ``<arch>``, ISA list, caches, versions and the
  target key -> placeholders (the test may run on another CPU, another tilewise version);
* dates and times -> ``<time>``;
* the schedule a ``tune`` picks -> ``<schedule>``: the winner of a 2-trial tune depends on timing
  noise, and the default schedule depends on the CPU's SIMD width (other commands' schedules come
  from the input or a fixture and are kept);
* rich tables: in a line holding box-drawing characters, runs of spaces collapse to one and runs of
  horizontal box-drawing characters to one, so a cell that gets wider (a longer number, a longer
  CPU name) does not move the borders; a table's title or caption, which rich wraps and pads (or
  centres) to the table's width, becomes one unpadded line.  Other lines keep their spacing.
  Trailing spaces are dropped everywhere.
* help text is compared as printed (``COLUMNS=100``) except the program name in ``Usage:``, which
  click takes from how the CLI was started, and trailing spaces (rich pads every line to the width).
  Every other case runs with ``COLUMNS=200``: at 100 a longer ISA list or CPU name than this
  machine's would wrap a table cell onto two lines.
* ``error_tune_cuda``: why torch sees no GPU (a CPU-only build, no device) -> ``<why>``.

Nothing else varied over repeated runs of the generator (``--write`` three times: no file changed).
"""
from __future__ import annotations

import argparse
import difflib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

GOLDEN_DIR = Path(__file__).resolve().parent / "golden_cli"
CLI = (sys.executable, "-m", "tilewise.frontends.cli")
TIMEOUT_S = 300

TINY = "matmul:64x48x32:f32"           # the workload every JIT case measures
SCHEDULE = '{"tile":[16,16,32],"reg_tile":[4,16]}'


@dataclass(frozen=True)
class Case:
    name: str
    argv: tuple[str, ...]              # "{tmp}" is the case's folder
    kind: str = "text"                 # help | text | json | error
    fixtures: tuple[str, ...] = ()     # files of build_fixtures() copied into {tmp}
    jit: bool = False                  # compiles kernels through the MLIR JIT
    mask_schedules: bool = False       # the command prints schedules that timing noise picks
    columns: int = 200                 # wide: a long ISA list or CPU name must not wrap a table cell
    masks: tuple[tuple[str, str], ...] = ()   # (regex, replacement) of this case's run-dependent text


_MEASURED_ROWS = ((r"(│ (?:fma f32, [^│]*|load, 1 core|DRAM copy|fork/join) +│ )[^│]*(│)", r"\1<measured> \2"),)


def _help(*cmd: str) -> Case:
    return Case("help_" + ("_".join(cmd) or "app"), (*cmd, "--help"), kind="help", columns=100)


HELP_CASES = [_help(), *(_help(c) for c in ("info", "tune", "best", "measure", "collect", "train", "eval",
                                             "report", "dataset")),
              _help("dataset", "export"), _help("dataset", "import")]

CASES: list[Case] = [
    *HELP_CASES,
    Case("app_no_args", (), kind="help", columns=100),     # no_args_is_help: usage, exit 2 in click 8.2+
    # -- info
    # the CPU's measured ceilings come from a fixture cache (measured once per module); which
    # figures a CPU has (vector widths, cache levels, thread counts) varies: their cells are masked
    Case("info_text", ("info",), fixtures=("cache",), masks=_MEASURED_ROWS),
    Case("info_json", ("info", "--json"), kind="json", fixtures=("cache",)),
    # -- tune (JIT): a fresh search, and a workload the store answers without searching (its JSON has
    # tune_json's keys)
    Case("tune_text", ("tune", TINY, "--trials", "2", "--db", "{tmp}/tune.db"), jit=True, mask_schedules=True),
    Case("tune_json", ("tune", TINY, "--trials", "2", "--db", "{tmp}/tune.db", "--json"), kind="json", jit=True,
         mask_schedules=True),
    Case("tune_cached_text", ("tune", TINY, "--trials", "2", "--db", "{tmp}/tuned.db"), fixtures=("tuned.db",),
         jit=True, mask_schedules=True),
    # -- best: a fixture store of this machine's target; a workload it does not hold (exit 1)
    Case("best_text", ("best", TINY, "--db", "{tmp}/tuned.db"), fixtures=("tuned.db",)),
    Case("best_json", ("best", TINY, "--db", "{tmp}/tuned.db", "--json"), kind="json", fixtures=("tuned.db",)),
    Case("best_missing_text", ("best", "matmul:8x8x8:f32", "--db", "{tmp}/tuned.db"), fixtures=("tuned.db",)),
    Case("best_missing_json", ("best", "matmul:8x8x8:f32", "--db", "{tmp}/tuned.db", "--json"), kind="json",
         fixtures=("tuned.db",)),
    # -- measure (JIT)
    Case("measure_text", ("measure", TINY, "-s", SCHEDULE), jit=True),
    Case("measure_json", ("measure", TINY, "-s", SCHEDULE, "--json"), kind="json", jit=True),
    # -- collect (JIT)
    Case("collect_text", ("collect", "--workloads", TINY, "--samples", "2", "--db", "{tmp}/c.db"), jit=True),
    Case("collect_json", ("collect", "--workloads", TINY, "--samples", "2", "--db", "{tmp}/c.db", "--json"),
         kind="json", jit=True),
    # -- dataset export / import
    Case("dataset_export_text", ("dataset", "export", "--db", "{tmp}/tuned.db", "--out", "{tmp}/out.parquet"),
         fixtures=("tuned.db",)),
    Case("dataset_export_json", ("dataset", "export", "--db", "{tmp}/tuned.db", "--out", "{tmp}/out.parquet",
                                 "--json"), kind="json", fixtures=("tuned.db",)),
    Case("dataset_import_text", ("dataset", "import", "{tmp}/tuned.parquet", "--db", "{tmp}/new.db"),
         fixtures=("tuned.parquet",)),
    Case("dataset_import_json", ("dataset", "import", "{tmp}/tuned.parquet", "--db", "{tmp}/new.db", "--json"),
         kind="json", fixtures=("tuned.parquet",)),
    # -- train / eval on a small store of shipped records (no JIT)
    Case("train_text", ("train", "--db", "{tmp}/train.db", "--out", "{tmp}/m.twmodel"), fixtures=("train.db",)),
    Case("train_json", ("train", "--db", "{tmp}/train.db", "--model", "rf", "--json"), kind="json",
         fixtures=("train.db",)),
    Case("eval_text", ("eval", "--model", "{tmp}/model.twmodel", "--db", "{tmp}/eval.db"),
         fixtures=("model.twmodel", "eval.db")),
    Case("eval_json", ("eval", "--model", "{tmp}/model.twmodel", "--db", "{tmp}/eval.db", "--json"), kind="json",
         fixtures=("model.twmodel", "eval.db")),
    # -- report (no roofline: measuring it is JIT work and writes a cache)
    Case("report_md", ("report", "--db", "{tmp}/tuned.db", "--format", "md", "--no-roofline"),
         fixtures=("tuned.db",)),
    Case("report_md_out", ("report", "--db", "{tmp}/tuned.db", "--format", "md", "--no-roofline",
                           "--out", "{tmp}/r.md"), fixtures=("tuned.db",)),
    Case("report_html_text", ("report", "--db", "{tmp}/tuned.db", "--no-roofline", "--out", "{tmp}/r.html"),
         fixtures=("tuned.db",)),
    Case("report_json", ("report", "--db", "{tmp}/tuned.db", "--no-roofline", "--out", "{tmp}/r.html", "--json"),
         kind="json", fixtures=("tuned.db",)),
    # -- bad input: one line "error: ..." on stderr, exit 2
    Case("error_tune_workload", ("tune", "matmul:512x512:f32"), kind="error"),
    Case("error_tune_strategy", ("tune", TINY, "--strategy", "nope"), kind="error"),
    Case("error_tune_objectives", ("tune", TINY, "--objectives", "speed"), kind="error"),
    Case("error_tune_target", ("tune", TINY, "--target", "tpu"), kind="error"),
    # CUDA_VISIBLE_DEVICES="" (case_env) hides any GPU; why torch sees none depends on its build: masked
    Case("error_tune_cuda", ("tune", TINY, "--target", "cuda", "--db", "{tmp}/x.db"), kind="error",
         masks=((r"(no CUDA device visible to torch: ).*?(; run on a machine)", r"\1<why>\2"),)),
    Case("error_measure_json", ("measure", TINY, "-s", "not json"), kind="error"),
    Case("error_measure_illegal", ("measure", TINY, "-s", '{"reg_tile": [4, 0]}'), kind="error"),
    Case("error_best_workload", ("best", "matmul:1x2:f32", "--db", "{tmp}/x.db"), kind="error"),
    Case("error_collect_strategy", ("collect", "-w", TINY, "--strategy", "grid", "--db", "{tmp}/x.db"),
         kind="error"),
    Case("error_collect_suite", ("collect", "-w", "suite:nope", "--db", "{tmp}/x.db"), kind="error"),
    Case("error_export_missing_db", ("dataset", "export", "--db", "{tmp}/missing.db", "--out", "{tmp}/o.parquet"),
         kind="error"),
    Case("error_import_missing_file", ("dataset", "import", "{tmp}/missing.parquet", "--db", "{tmp}/x.db"),
         kind="error"),
    Case("error_train_missing_db", ("train", "--db", "{tmp}/missing.db"), kind="error"),
    Case("error_train_model", ("train", "--model", "nope", "--db", "{tmp}/train.db"), kind="error",
         fixtures=("train.db",)),
    Case("error_eval_missing_db", ("eval", "--db", "{tmp}/missing.db"), kind="error"),
    Case("error_report_missing_db", ("report", "--db", "{tmp}/missing.db"), kind="error"),
    Case("error_report_format", ("report", "--db", "{tmp}/tuned.db", "--format", "pdf"), kind="error",
         fixtures=("tuned.db",)),
]
CASES_BY_NAME = {c.name: c for c in CASES}
assert len(CASES_BY_NAME) == len(CASES), "case names must be unique"


# -- fixtures ------------------------------------------------------------------------------------

#: legal schedules of TINY (checked when the fixture is built; legality does not depend on the target)
_TUNED_SCHEDULES = [
    dict(tile=[16, 16, 32], reg_tile=[4, 16]),
    dict(tile=[32, 16, 32], reg_tile=[4, 16], unroll=2),
    dict(tile=[64, 16, 32], reg_tile=[4, 16], promote=True),
    dict(tile=[0, 16, 0], reg_tile=[4, 16], interchange=[0, 2, 1]),
    dict(tile=[16, 32, 0], reg_tile=[8, 16]),
    dict(tile=[0, 0, 0], reg_tile=[4, 16], vectorize=False),
]
_BASE = dict(interchange=[0, 1, 2], parallel_dim="n", precision="f32", promote=False, threads=1, unroll=1,
             vectorize=True)
_T0 = 1767225600.0                     # 2026-01-01 00:00 UTC: every fixture record's timestamp counts from it


def _tuned_records(target):
    """TINY's records on ``target``: six verified schedules with made-up timings, one compile error."""
    from tilewise.core.record import Record
    from tilewise.core.schedule import Schedule
    from tilewise.core.workload import Workload
    from tilewise.core.measurement import Measurement
    w = Workload.parse(TINY)
    out = []
    for i, knobs in enumerate(_TUNED_SCHEDULES):
        s = Schedule(dict(_BASE, **knobs))
        w.kind.validate(w, s)
        t = 2e-6 * (1 + 0.25 * i)
        out.append(Record(w, target, s, Measurement("ok", "", (t * 0.98, t, t * 1.05), 2.1e-7, 0.05), _T0 + i))
    bad = Schedule(dict(_BASE, tile=[48, 16, 32], reg_tile=[6, 16]))
    out.append(Record(w, target, bad, Measurement("compile_error", "synthetic failure"), _T0 + len(out)))
    return out


def _tuning_run(target, records):
    from tilewise.datasets.runs import RunTiming, TrialEntry, TuningRun
    ok = [r for r in records if r.measurement.ok]
    best = min(ok, key=lambda r: r.measurement.median_s)
    default = ok[-1]
    return TuningRun(
        workload=records[0].workload, target=target, strategy="model", started=_T0, finished=_T0 + 3.0,
        searched=True, config={"trials": len(records), "max_threads": 1, "max_rel_error": None,
                               "objectives": ["latency"], "seed": 0, "prior_records": 0},
        trials=tuple(TrialEntry(r.schedule.key(), r.measurement.status,
                                r.measurement.median_s if r.measurement.times_s else None,
                                r.measurement.rel_error, r.schedule.get("precision")) for r in records),
        best=RunTiming("best", best.measurement.times_s, best.schedule.to_json(), best.measurement.rel_error),
        default=RunTiming("default", default.measurement.times_s, default.schedule.to_json(),
                          default.measurement.rel_error),
        reference=RunTiming("numpy", (5e-6, 5.1e-6, 5.3e-6)))


#: the shipped dataset's first workloads: a train store (6 workloads) and an eval store (3 others)
_TRAIN_WORKLOADS, _EVAL_WORKLOADS, _PER_WORKLOAD = 6, 3, 12


def build_fixtures(folder: str | os.PathLike) -> Path:
    """Write every fixture file into ``folder`` (no JIT; a few seconds) and return it:

    ``tuned.db``       TINY's records on this machine's target (``_tuned_records``) and one tuning run
    ``tuned.parquet``  ``tuned.db`` exported
    ``train.db``       12 records of each of the shipped dataset's first 6 workloads
    ``eval.db``        12 records of each of the next 3 workloads
    ``model.twmodel``  an xgb model trained on ``train.db``
    ``cache/``         an ``$XDG_CACHE_HOME`` holding this machine's measured ceilings (``tilewise info``)
    """
    import itertools

    from tilewise.costmodel.training import train
    from tilewise.datasets.base import open_store
    from tilewise.datasets.embedded import embedded_records
    from tilewise.datasets.parquet import export_parquet
    from tilewise.core.target import detect
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    target = detect()
    records = _tuned_records(target)
    with open_store(str(folder / "tuned.db")) as store:
        store.append(records)
        store.append_run(_tuning_run(target, records))
        export_parquet(store, str(folder / "tuned.parquet"))
    by_workload: dict[str, list] = {}
    for r in itertools.islice(embedded_records(), 32 * (_TRAIN_WORKLOADS + _EVAL_WORKLOADS + 2)):
        by_workload.setdefault(str(r.workload), []).append(r)
    names = [n for n, rs in by_workload.items() if len(rs) >= _PER_WORKLOAD]
    assert len(names) >= _TRAIN_WORKLOADS + _EVAL_WORKLOADS, names
    for db, chosen in (("train.db", names[:_TRAIN_WORKLOADS]),
                       ("eval.db", names[_TRAIN_WORKLOADS:_TRAIN_WORKLOADS + _EVAL_WORKLOADS])):
        with open_store(str(folder / db)) as store:
            store.append([r for n in chosen for r in by_workload[n][:_PER_WORKLOAD]])
    train(str(folder / "train.db"), model="xgb", out=str(folder / "model.twmodel"), seed=0)
    from tilewise.profiling.hardware import descriptor
    descriptor(target, folder=str(folder / "cache" / "tilewise" / "targets"))
    return folder


# -- running a case ------------------------------------------------------------------------------

def case_folder() -> str:
    """A fresh folder whose path has the same length every run (so wrapping does not move)."""
    return tempfile.mkdtemp(prefix="twgold-", dir="/tmp" if os.path.isdir("/tmp") else None)


def case_env(case: Case, tmp: str) -> dict[str, str]:
    """This environment, made stable; the subprocess imports the ``tilewise`` this process imported."""
    import tilewise
    env = {k: v for k, v in os.environ.items()
           if k not in ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "LINES", "CLICOLOR_FORCE")}
    home = os.path.dirname(os.path.dirname(os.path.abspath(tilewise.__file__)))
    env["PYTHONPATH"] = os.pathsep.join([home, *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))])
    env.update(COLUMNS=str(case.columns), TERM="dumb", NO_COLOR="1", TZ="UTC", PYTHONHASHSEED="0",
               XDG_CACHE_HOME=os.path.join(tmp, "cache"), TILEWISE_DB=os.path.join(tmp, "default.db"),
               CUDA_VISIBLE_DEVICES="")      # `info` shows no GPU row and `--target cuda` finds none anywhere
    return env


@dataclass
class Outcome:
    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str


def run_case(case: Case, fixtures: Path | None) -> tuple[Outcome, str]:
    """Run ``case`` in a fresh folder; returns the raw outcome and the folder's path (removed)."""
    tmp = case_folder()
    try:
        for f in case.fixtures:
            assert fixtures is not None, f"{case.name} needs fixtures"
            if (fixtures / f).is_dir():
                shutil.copytree(fixtures / f, os.path.join(tmp, f))
            else:
                shutil.copy(fixtures / f, os.path.join(tmp, f))
        argv = tuple(a.replace("{tmp}", tmp) for a in case.argv)
        r = subprocess.run([*CLI, *argv], capture_output=True, text=True, timeout=TIMEOUT_S, cwd=tmp,
                           env=case_env(case, tmp))
        return Outcome(argv, r.returncode, r.stdout, r.stderr), tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# -- normalisation -------------------------------------------------------------------------------

_BOX_CHARS = "─━═│┃║┌┐└┘├┤┬┴┼┏┓┗┛┣┫┳┻╋┡┩╇╈┢┪╭╮╰╯╞╡╪╒╕╘╛"
_BOX_LINE = re.compile(f"^\\s*[{_BOX_CHARS}]")
_BOX_ANY = re.compile(f"[{_BOX_CHARS}]")
_HORIZONTAL = re.compile("[─━═]+")
_SPACES = re.compile(" {2,}")
_TIME = re.compile(r"\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?")
#: kept from number masking: workload strings, and a schedule the CLI prints after "schedule: " (from
#: the input or a fixture; a tune's, which timing noise picks, is masked before: Case.mask_schedules)
_KEEP = re.compile(r"\b[a-z][a-z0-9_]*:\d+(?:x\d+)*:[a-z0-9]+\b|(?<=schedule: )\{.*\}")
#: a number standing alone (not part of a word like f32, L1d, top-1, x86_64); "2.38x" counts as one
_NUMBER = re.compile(r"(?<![\w.\-])-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?(?=x?(?!\w|\.\d))")


@dataclass(frozen=True)
class Masks:
    """Strings of this run that stand for the machine, the installation or the run -> placeholders."""
    tmp: str
    target: object                     # core.target.Target of this machine

    def literal(self) -> list[tuple[str, str]]:
        import tilewise
        t = self.target
        pkg = os.path.dirname(os.path.abspath(tilewise.__file__))
        pairs = [(os.path.realpath(self.tmp), "<tmp>"), (self.tmp, "<tmp>"),
                 (os.path.realpath(pkg), "<pkg>"), (pkg, "<pkg>")]
        caches = ", ".join(f"{k} {v // 1024} KiB" for k, v in t.caches.items())
        versions = ", ".join(f"{k} {v}" for k, v in t.versions)
        for text, mask in ((t.name, "<cpu>"), (" ".join(t.isa), "<isa>"), (caches, "<caches>"),
                           (versions, "<versions>"), (t.arch, "<arch>"), (dict(t.cpuid).get("vendor"), "<vendor>")):
            if text:
                pairs.append((text, mask))
        # longest first, so a string that holds another is masked whole
        return sorted(pairs, key=lambda p: -len(p[0]))

    def apply(self, text: str) -> str:
        key = self.target.key()
        text = re.sub(r"\b[0-9a-f]{8,64}\b", lambda m: "<key>" if key.startswith(m.group(0)) else m.group(0), text)
        for literal, mask in self.literal():
            text = text.replace(literal, mask)
        return re.sub(r"/tmp/twgold-[\w-]+", "<tmp>", text)     # a case folder of another run (should not occur)


def _join_annotations(lines: list[str]) -> list[str]:
    """A table's title (right above its top border) or caption (right below its bottom border) as one
    line without padding: rich wraps them to the table's width, which depends on the numbers in the
    cells, and pads (or centres) each of their lines to exactly that width."""
    lines = list(lines)
    for b, border in enumerate(lines):
        if border is None or not border.lstrip().startswith(tuple("┌┏╭└┗╰")):
            continue
        step = -1 if border.lstrip()[0] in "┌┏╭" else 1
        block, j = [], b + step
        while 0 <= j < len(lines) and lines[j] is not None and len(lines[j]) == len(border) \
                and lines[j].strip() and not _BOX_LINE.match(lines[j]):
            block.append(j)
            j += step
        if block:
            block.sort()
            lines[block[0]] = " ".join(lines[k].strip() for k in block)
            for k in block[1:]:
                lines[k] = None
    return [line for line in lines if line is not None]


def normalise_text(text: str, masks: Masks, kind: str = "text", extra=()) -> str:
    """``kind``: help (byte for byte but the program name click derives from sys.argv), error (paths,
    the machine's strings and ``extra`` masked; numbers kept), text (all of the module doc)."""
    if kind == "help":
        text = re.sub(r"Usage: (?:python -m \S+|\S+) ", "Usage: <prog> ", text)
        return "\n".join(line.rstrip() for line in text.split("\n"))
    if kind == "text":
        text = "\n".join(_join_annotations(text.split("\n")))
    text = masks.apply(text)
    for pattern, repl in extra:
        text = re.sub(pattern, repl, text)
    if kind == "text":
        text = _TIME.sub("<time>", text)
        text = _mask_numbers(text)
    out = []
    for line in text.split("\n"):
        if kind == "text" and _BOX_ANY.search(line):
            line = _HORIZONTAL.sub(lambda m: m.group(0)[0], line)
            line = _SPACES.sub(" ", line)
        out.append(line.rstrip())
    return "\n".join(out)


def _mask_numbers(text: str) -> str:
    kept: list[str] = []

    def keep(m):                       # a private-use character holds the place: no digit, no word char
        kept.append(m.group(0))
        return chr(0xE000 + len(kept) - 1)
    text = _KEEP.sub(keep, text)
    text = _NUMBER.sub("<n>", text)
    return re.sub("[\uE000-\uF8FF]", lambda m: kept[ord(m.group(0)) - 0xE000], text)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def normalise_json(value, masks: Masks, mask_schedules: bool = False, key: str | None = None):
    """Numbers -> 0 and a list of numbers -> ``[0]`` (how many timings a measurement holds varies);
    strings masked as text is; a target object keeps its keys but its ISA list and cache levels
    collapse to one placeholder each (they differ between CPUs); a ``"schedule"`` object is kept
    verbatim (it comes from the input or a fixture), or with ``mask_schedules`` -> ``"<schedule>"``."""
    if isinstance(value, dict):
        if key == "schedule":
            return "<schedule>" if mask_schedules else value
        if key == "measured":            # a CPU's measured ceilings: which figures exist depends on it
            return {"<figure>": 0}
        if {"kind", "name", "arch", "isa", "cores"} <= set(value):          # a Target
            value = dict(value, isa=["<isa>"])
            if isinstance(value.get("cache_bytes"), dict):
                value["cache_bytes"] = {"<cache>": 0}
            if isinstance(value.get("versions"), dict):
                value["versions"] = {k: "<version>" for k in value["versions"]}
        return {masks.apply(k): normalise_json(v, masks, mask_schedules, k) for k, v in value.items()}
    if isinstance(value, list):
        if value and all(_is_number(v) for v in value):
            return [0]
        return [normalise_json(v, masks, mask_schedules, key) for v in value]
    if _is_number(value):
        return 0
    if isinstance(value, str):
        return _mask_numbers(_TIME.sub("<time>", masks.apply(value)))
    return value                        # True, False, None


def normalise(case: Case, outcome: Outcome, tmp: str) -> str:
    """The golden text of one run of ``case``."""
    from tilewise.core.target import detect
    masks = Masks(tmp, detect())
    extra = list(case.masks)
    if case.mask_schedules:
        extra.append((r"(schedule: )\{.*\}", r"\1<schedule>"))
    if case.kind == "json" and outcome.stdout.strip():
        try:
            data = json.loads(outcome.stdout)
        except ValueError:
            stdout = "NOT JSON:\n" + normalise_text(outcome.stdout, masks, "text", extra)
        else:
            stdout = json.dumps(normalise_json(data, masks, case.mask_schedules), indent=2, sort_keys=True,
                                ensure_ascii=False)
    else:
        stdout = normalise_text(outcome.stdout, masks, case.kind if case.kind in ("help", "error") else "text",
                                extra)
    stderr = normalise_text(outcome.stderr, masks, "error" if case.kind == "error" else "text", extra)
    argv = " ".join(_quote(masks.apply(a)) for a in outcome.argv)
    return (f"# golden output of the tilewise CLI; regenerate: python -m tests.frontends.cli_golden --write "
            f"{case.name}\n"
            f"$ tilewise {argv}\n"
            f"exit: {outcome.returncode}\n"
            f"--- stdout ---\n{stdout.rstrip()}\n"
            f"--- stderr ---\n{stderr.rstrip()}\n")


def _quote(arg: str) -> str:
    return arg if re.fullmatch(r"[\w:./<>=,+-]+", arg) else "'" + arg.replace("'", "'\\''") + "'"


def golden_path(case: Case) -> Path:
    return GOLDEN_DIR / f"{case.name}.txt"


def actual(case: Case, fixtures: Path | None) -> str:
    outcome, tmp = run_case(case, fixtures)
    return normalise(case, outcome, tmp)


def diff(expected: str, got: str, name: str) -> str:
    return "".join(difflib.unified_diff(expected.splitlines(True), got.splitlines(True),
                                        f"golden_cli/{name}.txt", f"actual/{name}.txt"))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Regenerate or check the CLI golden outputs.")
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", action="store_true", help="write golden_cli/<case>.txt")
    mode.add_argument("--check", action="store_true", help="compare with golden_cli/, print diffs")
    p.add_argument("--no-jit", action="store_true", help="skip the cases that compile kernels")
    p.add_argument("names", nargs="*", help="cases (default: all)")
    a = p.parse_args(argv)
    unknown = [n for n in a.names if n not in CASES_BY_NAME]
    if unknown:
        p.error(f"unknown cases {unknown}: {', '.join(CASES_BY_NAME)}")
    cases = [CASES_BY_NAME[n] for n in a.names] if a.names else CASES
    cases = [c for c in cases if not (a.no_jit and c.jit)]
    GOLDEN_DIR.mkdir(exist_ok=True)
    bad = 0
    with tempfile.TemporaryDirectory(prefix="twgold-fixtures-") as fx:
        fixtures = build_fixtures(fx) if any(c.fixtures for c in cases) else None
        for c in cases:
            got = actual(c, fixtures)
            path = golden_path(c)
            if a.write:
                changed = not path.exists() or path.read_text(encoding="utf-8") != got
                path.write_text(got, encoding="utf-8")
                print(f"{'wrote' if changed else 'same '} {path.name}")
            else:
                expected = path.read_text(encoding="utf-8") if path.exists() else ""
                if expected != got:
                    bad += 1
                    print(diff(expected, got, c.name) or f"{c.name}: no golden")
                else:
                    print(f"ok    {c.name}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
