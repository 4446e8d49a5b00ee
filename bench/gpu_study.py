"""The GPU study: Triton GEMM schedules on a real NVIDIA GPU, collected, modelled and tuned.

    python bench/gpu_study.py --out gpu-study            # on a machine with an NVIDIA GPU
    python bench/gpu_study.py --out /tmp/s --dry-run     # anywhere: Triton's interpreter, tiny shapes

One run, every output under ``--out``:

1. **collect** ``--samples`` random legal configs (BLOCK_M/N/K, GROUP_M, num_warps, num_stages,
   split-K, precision f32/tf32/bf16/f16/fp8 where the GPU has it) per BERT-base / LLaMA-7B GEMM
   shape into ``records.db`` (resumable), checked against float64 (error budget
   ``--max-rel-error``; beyond it ``wrong_result``), timed with ``do_bench`` (median of all runs);
   exported as ``records.jsonl.gz``;
2. **model**: ``xgb`` and ``rf`` on ``gpu_analytic`` features, trained on the training shapes'
   records, scored on the held-out shapes (R², MAPE, Spearman, Kendall, top-1/top-5) next to the
   GPU roofline and GPPerf's reported R² 0.98 / MAPE 15.6% (RTX 4070, random forest);
3. **tuning** on each held-out shape in one precision (``--tune-precision``): the tuning space
   measured exhaustively, then the model-guided search (the trained xgb, online updates) replayed
   on those measurements with ``--tune-fraction`` of them; reports the fraction of the exhaustive
   best it reaches and the measurements it used;
4. **vs torch**: per held-out shape and precision, the best measured config re-timed next to
   ``torch.matmul`` (cuBLAS) of the same precision.

Writes ``study.json`` (everything), ``report.md`` (the tables) and ``records.jsonl.gz``.  One run
stops collecting at 60% of ``--minutes`` and measuring the exhaustive sets at 85%; everything it
measured stays in ``records.db``, so running the same command again resumes (several short runs
add up to the full study; the last run's ``study.json`` covers all of it).  Without
CUDA (and without ``--dry-run``) it exits 2 with one line saying so.  ``--dry-run`` runs every
stage on the interpreter with a stand-in sm_90 target: it tests the pipeline, its numbers mean
nothing.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from types import SimpleNamespace

GPPERF = {"r2": 0.98, "mape": 0.156, "source": "GPPerf, RTX 4070 GEMM tile/thread-block configs, random forest"}

# BERT-base (hidden 768, FFN 3072, 12 heads) at 512 and 4096 tokens; LLaMA-7B (hidden 4096, FFN
# 11008, 32 heads) at 16 (batched decode), 512 and 2048 tokens.  (tokens x out x in)
TRAIN_SHAPES = (
    "matmul:512x2304x768:f32", "matmul:512x768x3072:f32", "matmul:4096x3072x768:f32",
    "matmul:4096x768x768:f32", "batch_matmul:96x512x512x64:f32",
    "matmul:16x12288x4096:f32", "matmul:512x4096x4096:f32", "matmul:512x11008x4096:f32",
    "matmul:2048x4096x11008:f32", "batch_matmul:32x512x128x512:f32",
)
HELDOUT_SHAPES = (
    "matmul:512x3072x768:f32", "matmul:4096x2304x768:f32", "matmul:2048x12288x4096:f32",
    "matmul:16x4096x11008:f32", "batch_matmul:96x512x64x512:f32",
)
DRY_TRAIN = ("matmul:32x32x64:f32", "matmul:64x32x32:f32", "batch_matmul:2x32x32x32:f32")
DRY_HELDOUT = ("matmul:48x32x64:f32",)


@dataclass(frozen=True)
class StudyPlan:
    train_shapes: tuple[str, ...] = TRAIN_SHAPES
    heldout_shapes: tuple[str, ...] = HELDOUT_SHAPES
    samples: int = 300                      # random configs per shape (collection)
    max_rel_error: float = 0.1              # admits every precision; each result still checked
    tune_precision: str = "bf16"
    tune_fraction: float = 0.10
    collect_space: dict = field(default_factory=lambda: dict(
        block_mn=(32, 64, 128, 256), block_k=(32, 64, 128), group_m=(1, 8), num_warps=(4, 8),
        num_stages=(2, 3, 4, 5), split_k=(1, 2, 4)))
    tune_space: dict = field(default_factory=lambda: dict(
        block_mn=(64, 128, 256), block_k=(32, 64), group_m=(8,), num_warps=(4, 8),
        num_stages=(3, 4), split_k=(1,)))
    minutes: float = 9.0                    # wall-clock cap of one run (the device allows 10-minute calls)


def dry_plan() -> StudyPlan:
    return StudyPlan(train_shapes=DRY_TRAIN, heldout_shapes=DRY_HELDOUT, samples=10, tune_fraction=0.34,
                     collect_space=dict(block_mn=(16, 32), block_k=(16, 32), group_m=(1, 4), num_warps=(1, 2),
                                        num_stages=(2,), split_k=(1, 2)),
                     tune_space=dict(block_mn=(16, 32), block_k=(16, 32), group_m=(4,), num_warps=(1,),
                                     num_stages=(2,), split_k=(1,)),
                     minutes=5.0)


def stand_in_target():
    """A cuda target for --dry-run: sm_90-like limits, no measured peaks, a name that says so."""
    from tilewise.profiling.cuda_target import target_from_properties
    from tilewise.core.target import _versions
    p = SimpleNamespace(name="Triton interpreter (stand-in for an sm_90 GPU; timings meaningless)",
                        major=9, minor=0, multi_processor_count=132, L2_cache_size=50 << 20,
                        shared_memory_per_block=48 << 10, shared_memory_per_block_optin=227 << 10,
                        shared_memory_per_multiprocessor=228 << 10, regs_per_multiprocessor=65536)
    return target_from_properties(p, _versions())


# -- stages --------------------------------------------------------------------------------------
def _space(w, target, ranges: dict, precisions: tuple[str, ...] | None):
    from tilewise.tuner.space import Space, SpaceOptions
    from tilewise.tuner.spaces.gpu_gemm import GpuSpaceOptions, gemm_space
    space = gemm_space(w, target, SpaceOptions(1, ("lower",)), GpuSpaceOptions(**ranges))
    if precisions is not None:
        space = Space(dict(space.knobs, precision=[p for p in space.knobs["precision"] if p in precisions]),
                      space.constraint)
    return space


def collect_stage(plan, target, runner, store, deadline: float, log) -> dict:
    """``plan.samples`` random legal configs per shape from the study's space; resumable (what the
    store holds is not measured again); one transaction per batch."""
    from tilewise.core.record import Record
    from tilewise.core.workload import Workload
    from tilewise.core.candidate import Candidate
    from tilewise.tuner.base import create
    counts = {}
    for i, text in enumerate(plan.train_shapes + plan.heldout_shapes):
        if time.time() > deadline:
            log(f"collect: time budget spent before {text}")
            break
        w = Workload.parse(text)
        strategy = create("random", _space(w, target, plan.collect_space, None), seed=i)
        held = store.keys(w, target)
        status: dict[str, int] = {}
        wanted = plan.samples
        while wanted > 0 and time.time() < deadline:
            batch = strategy.propose(min(16, wanted))
            if not batch:
                break
            wanted -= len(batch)
            fresh = [s for s in batch if s.key() not in held]
            ms = runner.run([Candidate(w, s) for s in fresh])
            store.append([Record(w, target, s, m) for s, m in zip(fresh, ms)])
            held.update(s.key() for s in fresh)
            for m in ms:
                status[m.status] = status.get(m.status, 0) + 1
            strategy.observe(batch, [])
        counts[text] = status
        log(f"collect {text}: {status}")
    return counts


def model_stage(plan, records, log) -> dict:
    from tilewise.costmodel.base import create
    from tilewise.costmodel.training import report
    heldout = set(plan.heldout_shapes)
    train = [r for r in records if str(r.workload) not in heldout]
    test = [r for r in records if str(r.workload) in heldout]
    out = {"gpperf": GPPERF}
    models = {}
    for name in ("xgb", "rf"):
        m = create(name, features="gpu_analytic")
        t0 = time.perf_counter()
        try:
            m.fit(train)
        except ValueError as e:
            out[name] = {"error": str(e)}
            continue
        rep = report(m, {"by": "workload", "heldout": sorted(heldout)},
                     {str(r.workload) for r in train}, test, train_time_s=time.perf_counter() - t0)
        out[name] = rep
        models[name] = m
        log(f"model {name}: " + ", ".join(f"{k} {v:.3f}" for k, v in rep["metrics"].items()))
    return out, models


def tuning_stage(plan, target, runner, store, model, deadline: float, log) -> list[dict]:
    from tilewise.core.record import Record
    from tilewise.core.workload import Workload
    from tilewise.core.candidate import Candidate
    from tilewise.profiling.runner import ReplayRunner
    from tilewise.tuner.targets import make_strategy
    from tilewise.tuner.tune import TuneConfig, _search
    rows = []
    for text in plan.heldout_shapes:
        if time.time() > deadline:
            log(f"tuning: time budget spent before {text}")
            break
        w = Workload.parse(text)
        space = _space(w, target, plan.tune_space, (plan.tune_precision,))
        legal = list(space)
        held = {r.schedule: r.measurement for r in store.query(w, target, status=None)}
        todo = [s for s in legal if s not in held]
        for i in range(0, len(todo), 16):
            if time.time() > deadline:
                break
            batch = todo[i:i + 16]
            ms = runner.run([Candidate(w, s) for s in batch])
            store.append([Record(w, target, s, m) for s, m in zip(batch, ms)])
            held.update(zip(batch, ms))
        missing = sum(s not in held for s in legal)
        if missing:
            rows.append({"workload": text, "incomplete": f"{len(legal) - missing}/{len(legal)} of the "
                         "exhaustive set measured: run the study again to finish it"})
            log(f"tuning {text}: {rows[-1]['incomplete']}")
            continue
        exhaustive = {s: held[s] for s in legal}
        ok = {s: m.median_s for s, m in exhaustive.items() if m.ok}
        if not ok:
            rows.append({"workload": text, "error": "no legal config ran"})
            continue
        best_s = min(ok.values())
        budget = max(1, math.ceil(plan.tune_fraction * len(legal)))
        replay = ReplayRunner([(Candidate(w, s), m) for s, m in exhaustive.items()])
        strategy = make_strategy("model", space, w, target, seed=0, model=_fresh_copy(model))
        trials = _search(w, target, TuneConfig(trials=budget, batch_size=max(1, budget // 4)),
                         strategy, replay, None, None)
        found = min((t.measurement.median_s for t in trials if t.measurement.ok), default=math.inf)
        rows.append({"workload": text, "precision": plan.tune_precision, "exhaustive_measurements": len(legal),
                     "exhaustive_ok": len(ok), "model_measurements": len(trials),
                     "measurement_fraction": len(trials) / len(legal), "best_exhaustive_s": best_s,
                     "best_model_s": found, "fraction_of_best": best_s / found if found < math.inf else 0.0})
        log(f"tune {text}: {rows[-1]['fraction_of_best']:.3f} of the exhaustive best with "
            f"{len(trials)}/{len(legal)} measurements")
    return rows


def _fresh_copy(model):
    """A copy of the trained model for one tuning session (online updates stay in the session)."""
    import tempfile
    from tilewise.costmodel.base import load_model
    if model is None:
        return None
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "m.twmodel")
        model.save(path)
        return load_model(path)


def torch_stage(plan, target, runner, store, log) -> list[dict]:
    from tilewise.core.workload import Workload
    from tilewise.core.candidate import Candidate
    rows = []
    for text in plan.heldout_shapes:
        w = Workload.parse(text)
        by_prec: dict[str, list] = {}
        for r in store.query(w, target):
            by_prec.setdefault(r.schedule.get("precision", w.dtype), []).append(r)
        for prec, recs in sorted(by_prec.items()):
            best = min(recs, key=lambda r: r.measurement.median_s)
            again = runner.run([Candidate(w, best.schedule)])[0]
            ref = runner.reference(w, prec)
            row = {"workload": text, "precision": prec, "schedule": best.schedule.to_json(),
                   "tuned_s": again.median_s if again.ok else None, "torch_s": ref.median_s if ref.ok else None,
                   "tuned_rel_error": again.rel_error, "torch_rel_error": ref.rel_error,
                   "torch_status": ref.status}
            if again.ok and ref.ok:
                row["speedup_vs_torch"] = ref.median_s / again.median_s
                row["tuned_tflops"] = w.flops / again.median_s / 1e12
                row["torch_tflops"] = w.flops / ref.median_s / 1e12
            rows.append(row)
            log(f"vs torch {text} {prec}: {row.get('speedup_vs_torch', 'n/a')}")
    return rows


# -- outputs -------------------------------------------------------------------------------------
def _f(v, spec=".3f"):
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, spec)


def markdown(result: dict) -> str:
    lines = [f"# GPU study: {result['target']['name']}", "",
             f"{result['n_records']} records ({result['by_status']}); dry run: {result['dry_run']}", "",
             "## Cost model on held-out shapes", "",
             "| model | R² | MAPE | Spearman | Kendall | top-1 | top-5 | roofline R² | roofline MAPE |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name in ("xgb", "rf"):
        rep = result["model"].get(name) or {}
        m, b = rep.get("metrics") or {}, ((rep.get("baseline") or {}).get("metrics") or {})
        lines.append(f"| {name} | {_f(m.get('r2'))} | {_f(m.get('mape'))} | {_f(m.get('spearman'))} | "
                     f"{_f(m.get('kendall'))} | {_f(m.get('top1'))} | {_f(m.get('top5'))} | "
                     f"{_f(b.get('r2'))} | {_f(b.get('mape'))} |")
    lines.append(f"| GPPerf (reported) | {GPPERF['r2']} | {GPPERF['mape']} | | | | | | |")
    lines += ["", "## Model-guided tuning vs exhaustive (held-out shapes)", "",
              "| workload | precision | exhaustive | model | fraction of best |", "| --- | --- | --- | --- | --- |"]
    for r in result["tuning"]:
        lines.append(f"| {r['workload']} | {r.get('precision', '')} | {r.get('exhaustive_measurements', '')} | "
                     f"{r.get('model_measurements', '')} | {_f(r.get('fraction_of_best'))} |")
    lines += ["", "## Tuned Triton vs torch.matmul", "",
              "| workload | precision | tuned ms | torch ms | speedup | tuned TFLOP/s |", "| --- | --- | --- | --- | --- | --- |"]
    for r in result["vs_torch"]:
        ms = lambda s: _f(s * 1e3) if s else "n/a"   # noqa: E731
        lines.append(f"| {r['workload']} | {r['precision']} | {ms(r['tuned_s'])} | {ms(r['torch_s'])} | "
                     f"{_f(r.get('speedup_vs_torch'), '.2f')} | {_f(r.get('tuned_tflops'), '.1f')} |")
    return "\n".join(lines) + "\n"


def run_study(out_dir: str, dry_run: bool, plan: StudyPlan | None = None, log=print) -> dict:
    from tilewise.datasets.base import open_store
    from tilewise.datasets.embedded import write_records
    from tilewise.profiling.gpu_runner import GpuRunner, GpuRunnerConfig
    plan = plan or (dry_plan() if dry_run else StudyPlan())
    os.makedirs(out_dir, exist_ok=True)
    if dry_run:
        target, device = stand_in_target(), "interpret"
    else:
        from tilewise.profiling.cuda_target import detect_cuda_target
        target, device = detect_cuda_target(), "cuda"
    log(f"target: {target.name} ({target.arch}, {target.cores} SMs), key {target.key()[:12]}")
    start = time.time()
    # collection gets 60% of the time, the exhaustive tuning measurements up to 85%; every stage
    # resumes from the store, so a run cut short is continued by running the same command again
    collect_deadline, tune_deadline = start + 0.60 * plan.minutes * 60, start + 0.85 * plan.minutes * 60
    # compiles (seconds each on a GPU) run in parallel on the host's cores, the timing in one process
    workers = 2 if dry_run else max(1, min(16, (os.cpu_count() or 2) - 2))
    config = GpuRunnerConfig(device=device, max_rel_error=plan.max_rel_error, compile_workers=workers)
    with open_store(os.path.join(out_dir, "records.db")) as store, GpuRunner(config) as runner:
        collected = collect_stage(plan, target, runner, store, collect_deadline, log)
        records = [r for r in store.iter() if r.target.key() == target.key()]
        model_report, models = model_stage(plan, records, log)
        tuning = tuning_stage(plan, target, runner, store, models.get("xgb"), tune_deadline, log)
        vs_torch = torch_stage(plan, target, runner, store, log)
        records = [r for r in store.iter() if r.target.key() == target.key()]
    by_status: dict[str, int] = {}
    for r in records:
        by_status[r.measurement.status] = by_status.get(r.measurement.status, 0) + 1
    n = write_records(records, os.path.join(out_dir, "records.jsonl.gz"))
    result = {"dry_run": dry_run, "target": dict(target.to_json(), key=target.key()), "plan": asdict(plan),
              "n_records": n, "by_status": by_status, "collected": collected, "model": model_report,
              "tuning": tuning, "vs_torch": vs_torch, "wall_time_s": time.time() - start}
    with open(os.path.join(out_dir, "study.json"), "w") as fh:
        json.dump(result, fh, indent=1, default=float)
    with open(os.path.join(out_dir, "report.md"), "w") as fh:
        fh.write(markdown(result))
    return result


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="output folder (records.db, records.jsonl.gz, study.json, report.md)")
    ap.add_argument("--dry-run", action="store_true", help="Triton's interpreter, tiny shapes, stand-in target")
    ap.add_argument("--samples", type=int, help="random configs per shape")
    ap.add_argument("--minutes", type=float, help="wall-clock cap on collection and exhaustive tuning")
    args = ap.parse_args(argv)
    if not args.dry_run:
        from tilewise.profiling.cuda_target import NO_CUDA_HINT, cuda_problem
        problem = cuda_problem()
        if problem is not None:
            print(f"error: no CUDA device visible to torch: {problem}; {NO_CUDA_HINT.replace('drop --target cuda', 'use --dry-run')}",
                  file=sys.stderr)
            return 2
    plan = dry_plan() if args.dry_run else StudyPlan()
    import dataclasses
    if args.samples:
        plan = dataclasses.replace(plan, samples=args.samples)
    if args.minutes:
        plan = dataclasses.replace(plan, minutes=args.minutes)
    result = run_study(args.out, args.dry_run, plan)
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
