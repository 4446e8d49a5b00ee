"""Precision that pays? Every precision tilewise and torch can run, per shape, in one interleaved run.

For each shape (``MxNxK``: C[M,N] = A[M,K] @ W[K,N], A and W uniform in [-1, 1]) this times, round
robin in one process (median over ``--rounds`` rounds of ``--runs`` runs each):

* tilewise ``f32`` (tuned; on decode shapes also a hand schedule that sweeps 16-row blocks of K
  across N, which the f32 space's row blocks of 64 and up miss: the goals use the faster), ``bf16`` as this CPU computes it (the same schedule with
  ``precision=bf16``: bf16 inputs, f32 FMAs), ``w8`` and ``w4`` (weight-only int8 / int4, groups of
  ``--group`` along K, dequantized in registers: ``matmul:MxNxK:w4a32:g128``);
* the rows a CPU without the units cannot run, as ``n/a`` with the missing flag: bf16 on the
  dot-product unit (``avx512_bf16``), int8 on VNNI (``avx512_vnni`` / ``avx_vnni``);
* numpy f32 (OpenBLAS), torch eager f32 and bf16 ``torch.matmul``, ``torch.ao`` dynamic int8
  ``Linear`` (int8 weights per channel, activations quantized per call), and torch's weight-only
  CPU kernels: ``aten._weight_int8pack_mm`` (int8, per-channel scales) and
  ``aten._weight_int4pack_mm_for_cpu`` (int4, the same groups and scales as tilewise's w4).

Columns: median ms, GFLOP/s and its share of the FMA peak this machine measured
(``profiling.hardware``: ``tilewise info``'s figures), effective GB/s of the bytes the kernel must
move (weights at their width) against the measured DRAM stream bandwidth, the speedup over tilewise
f32 (the faster of its rows), and two errors against float64: ``err(A@W)`` against the exact product of the f32 inputs
(quantization included), ``err(own)`` against the product of the weights the kernel was given
(a quantized kernel's arithmetic alone; the stated bound is 1e-4 for f32 arithmetic, 3e-2 for bf16).

tilewise schedules are tuned with ``--trials`` trials of the model strategy per workload (recorded in
``--db``, so a rerun reuses them: then the table says "tuned (store)"; a store holding 1-thread
records answers a ``--threads 2`` run with them, so give that run a store of its own); ``--trials 0``
takes the op kind's default schedule.  Goals (issue 18): bf16 >= 1.7x and i8 >= 3x tilewise f32 on the
compute-bound shapes, w4 GEMV >= 4x tilewise f32 GEMV and >= the best torch kernel in any precision.

    flock /work/notes/cpu.lock python bench/precision.py [--threads 1] [--trials 8] [--shapes 1x4096x4096]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

#: the hand-written decode schedule of f32 (the weight-only default's sweep): 16-row blocks of K across N
STREAM = "hand: 16-row blocks of K across N, 1x32, threads over N"
SHAPES = ("512x512x512", "1024x1024x1024", "197x768x3072", "1x4096x4096", "8x4096x4096", "1x4096x11008")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shapes", default=",".join(SHAPES), help="MxNxK, comma-separated")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--trials", type=int, default=8, help="tuning trials per tilewise workload (0: default schedule)")
    ap.add_argument("--group", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--db", default=None, help="record store of the tuning (default: the cache's precision_bench.db)")
    args = ap.parse_args()
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)

    from tilewise.core.paths import cache_home
    from tilewise.core.target import detect
    from tilewise.profiling.hardware import descriptor

    target = detect()
    figures = descriptor(target)
    fma = figures.get(f"fma_f32_{target.simd_bits}b_{args.threads}t_flops_per_s", 0.0)
    dram = figures.get(f"stream_dram_{args.threads}t_bytes_per_s", figures.get("load_dram_bytes_per_s", 0.0))
    db = args.db or os.path.join(cache_home(), "precision_bench.db")
    print(f"{target.name}, {target.cores} cores, ISA {' '.join(target.isa)}")
    print(f"threads {args.threads}; measured FMA peak {fma / 1e9:.1f} GFLOP/s, DRAM stream {dram / 1e9:.1f} GB/s; "
          f"schedules: {'tuned, ' + str(args.trials) + ' trials, store ' + db if args.trials else 'op defaults'}")
    missing = unit_gaps(target)
    summary = []
    for text in args.shapes.split(","):
        m, n, k = (int(x) for x in text.split("x"))
        rows = bench_shape(m, n, k, args, target, db, missing)
        print_table(f"matmul {m}x{n}x{k} (M x N x K)", rows, m * n * k * 2.0, fma, dram)
        summary.append((m, n, k, rows))
    print_goals(summary, missing)
    return 0


def unit_gaps(target) -> dict[str, str]:
    """precision -> why this CPU cannot run tilewise's kernel for it (absent: it can)."""
    gaps = {}
    if "avx512_bf16" not in target.isa:
        gaps["bf16"] = "n/a: no avx512_bf16"
    else:
        gaps["bf16"] = "n/a: the vdpbf16ps lowering is not built yet"
    if not {"avx512_vnni", "avx_vnni"} & set(target.isa):
        gaps["i8"] = "n/a: no avx512_vnni / avx_vnni"
    else:
        gaps["i8"] = "n/a: the vpdpbusd lowering is not built yet"
    return gaps


# -- one shape ---------------------------------------------------------------------------------------
class Row:
    def __init__(self, name, run=None, out=None, bytes_=0.0, own_ref=None, bound=None, note=""):
        self.name, self.run, self.out, self.bytes, self.own_ref, self.bound = name, run, out, bytes_, own_ref, bound
        self.note = note
        self.times: list[float] = []
        self.err = self.err_own = None

    @property
    def median_s(self) -> float:
        return statistics.median(self.times) if self.times else float("nan")


def bench_shape(m, n, k, args, target, db, missing) -> list[Row]:
    import numpy as np

    from tilewise.ir import quant
    from tilewise.profiling.measure import page_aligned_empty

    rng = np.random.default_rng(0)
    a = aligned(rng.uniform(-1, 1, (m, k)).astype(np.float32), page_aligned_empty)
    wt = aligned(rng.uniform(-1, 1, (k, n)).astype(np.float32), page_aligned_empty)
    exact = a.astype(np.float64) @ wt.astype(np.float64)
    rows = tilewise_rows(m, n, k, a, wt, args, target, db, missing)
    rows += library_rows(m, n, k, a, wt, args)
    interleave([r for r in rows if r.run], args)
    for r in rows:
        if r.run:
            got = np.asarray(r.out(), dtype=np.float64)
            r.err = rel_error(got, exact)
            r.err_own = rel_error(got, r.own_ref) if r.own_ref is not None else r.err
    return rows


def aligned(x, empty):
    out = empty(x.shape, x.dtype)
    out[...] = x
    return out


def rel_error(got, ref) -> float:
    import numpy as np
    if not np.all(np.isfinite(got)):
        return float("inf")
    return float(np.max(np.abs(got - ref)) / max(np.max(np.abs(ref)), 1e-30))


def tilewise_rows(m, n, k, a, wt, args, target, db, missing) -> list[Row]:
    import numpy as np

    from tilewise.core.schedule import Schedule
    from tilewise.core.workload import Workload
    from tilewise.ir import quant
    from tilewise.ir.compiler import compile
    from tilewise.ir.dtypes import to_storage
    from tilewise.profiling.measure import page_aligned_empty

    rows = []
    w32 = Workload.parse(f"matmul:{m}x{n}x{k}:f32")
    s32, how = schedule_for(w32, args, target, db)
    c = page_aligned_empty((m, n), np.float32)
    rows.append(Row(f"tilewise f32 [{how}]", compile(w32, s32).bind([a, wt, c]), out=lambda c=c: c,
                    bytes_=4.0 * (m * k + k * n + m * n), bound=1e-4))
    if m <= 8:        # decode: the f32 space's row blocks start at 64; 16 rows across N streams better
        stream = Schedule(tile=[0, 0, 16], interchange=[0, 2, 1], reg_tile=[1, min(32, n)], promote=False,
                          vectorize=True, unroll=1, threads=args.threads, parallel_dim="n", precision="f32")
        cs = page_aligned_empty((m, n), np.float32)
        rows.append(Row(f"tilewise f32 [{STREAM}]", compile(w32, stream).bind([a, wt, cs]), out=lambda c=cs: c,
                        bytes_=4.0 * (m * k + k * n + m * n), bound=1e-4))
    sb = s32.replace(precision="bf16")
    cb = page_aligned_empty((m, n), np.float32)
    ab, wb = (aligned(to_storage(x, "bf16"), page_aligned_empty) for x in (a, wt))
    try:
        rows.append(Row("tilewise bf16 on f32 FMAs [f32's schedule]", compile(w32, sb).bind([ab, wb, cb]),
                        out=lambda c=cb: c, bytes_=2.0 * (m * k + k * n) + 4.0 * m * n, bound=3e-2))
    except Exception as e:                                     # a schedule bf16 cannot take: say so
        rows.append(Row("tilewise bf16 on f32 FMAs", note=f"n/a: {str(e).splitlines()[0][:60]}"))
    rows.append(Row("tilewise bf16 on the dot unit", note=missing["bf16"]))
    rows.append(Row("tilewise i8 on VNNI", note=missing["i8"]))
    for bits in (8, 4):
        w = Workload.parse(f"matmul:{m}x{n}x{k}:w{bits}a32:g{args.group}")
        s, how = schedule_for(w, args, target, db)
        stored, scale = quant.quantize(wt, bits, args.group)
        stored, scale = (aligned(x, page_aligned_empty) for x in (stored, scale))
        own = a.astype(np.float64) @ quant.dequantize(stored, scale, bits, args.group)
        cq = page_aligned_empty((m, n), np.float32)
        rows.append(Row(f"tilewise w{bits} g{args.group} [{how}]", compile(w, s).bind([a, stored, scale, cq]),
                        out=lambda c=cq: c, bytes_=w.kind.bytes_moved(w), own_ref=own, bound=1e-4))
    return rows


def schedule_for(w, args, target, db):
    """(schedule, how it was chosen): tuned with the model strategy, or the op kind's default."""
    if not args.trials:
        return w.kind.default_schedule(w, target), "default"
    from tilewise.datasets.base import open_store
    from tilewise.tuner.tune import TuneConfig, tune
    config = TuneConfig(trials=args.trials, strategy="model", max_threads=args.threads, top_k=2, ab_rounds=3)
    store = open_store(db)
    try:
        result = tune(w, target, config, store=store)
    finally:
        close = getattr(store, "close", None)
        if close:
            close()
    if result.best is None or result.best.schedule is None:
        return w.kind.default_schedule(w, target), "default (tuning found nothing)"
    return result.best.schedule, ("tuned" if result.searched else "tuned (store)")


def library_rows(m, n, k, a, wt, args) -> list[Row]:
    import numpy as np
    import torch

    from tilewise.ir import quant

    torch.set_num_threads(args.threads)
    out_np = np.empty((m, n), np.float32)
    rows = [Row("numpy f32 (OpenBLAS)", lambda: np.matmul(a, wt, out=out_np), out=lambda: out_np,
                bytes_=4.0 * (m * k + k * n + m * n), bound=1e-4)]
    ta, tw = torch.from_numpy(a), torch.from_numpy(wt)
    res = {}

    def keep(name, fn):
        def run():
            res[name] = fn()
        return run

    rows.append(Row("torch f32 matmul", keep("f32", lambda: torch.matmul(ta, tw)), out=lambda: res["f32"].numpy(),
                    bytes_=4.0 * (m * k + k * n + m * n), bound=1e-4))
    tab, twb = ta.bfloat16(), tw.bfloat16()
    rows.append(Row("torch bf16 matmul", keep("bf16", lambda: torch.matmul(tab, twb)),
                    out=lambda: res["bf16"].float().numpy(), bytes_=2.0 * (m * k + k * n + m * n), bound=3e-2))
    try:
        lin = torch.nn.Linear(k, n, bias=False)
        with torch.no_grad():
            lin.weight.copy_(tw.t())
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            qlin = torch.ao.quantization.quantize_dynamic(torch.nn.Sequential(lin), {torch.nn.Linear}, dtype=torch.qint8)
        rows.append(Row("torch.ao dynamic int8 Linear", keep("ao", lambda: qlin(ta)), out=lambda: res["ao"].numpy(),
                        bytes_=1.0 * k * n + 4.0 * (m * k + m * n)))
    except Exception as e:
        rows.append(Row("torch.ao dynamic int8 Linear", note=f"n/a: {str(e).splitlines()[0][:60]}"))
    wn = wt.T.astype(np.float64)                                          # [N, K], torch's weight layout
    if hasattr(torch.ops.aten, "_weight_int8pack_mm"):
        sc = np.maximum(np.abs(wn).max(axis=1), 1e-30) / 127
        q8 = np.clip(np.rint(wn / sc[:, None]), -127, 127).astype(np.int8)
        own8 = a.astype(np.float64) @ (q8 * sc[:, None]).T
        tq8, tsc = torch.from_numpy(np.ascontiguousarray(q8)), torch.from_numpy(sc.astype(np.float32))
        rows.append(Row("torch _weight_int8pack_mm (w8/channel)",
                        keep("i8p", lambda: torch.ops.aten._weight_int8pack_mm(ta, tq8, tsc)),
                        out=lambda: res["i8p"].numpy(), bytes_=1.0 * k * n + 4.0 * (m * k + m * n + n),
                        own_ref=own8, bound=1e-4))
    if hasattr(torch.ops.aten, "_weight_int4pack_mm_for_cpu") and k % args.group == 0:
        stored, scale = quant.quantize(wt, 4, args.group)
        q4 = quant.unpack_int4(stored).astype(np.int32)                   # [K, N] in [-7, 7]
        packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(torch.from_numpy(np.ascontiguousarray(q4.T + 8)), 1)
        sz = torch.from_numpy(np.stack([scale, np.zeros_like(scale)], axis=-1))   # w = (u - 8) * s + 0
        own4 = a.astype(np.float64) @ quant.dequantize(stored, scale, 4, args.group)
        rows.append(Row(f"torch _weight_int4pack_mm (w4 g{args.group})",
                        keep("i4p", lambda: torch.ops.aten._weight_int4pack_mm_for_cpu(ta, packed, args.group, sz)),
                        out=lambda: res["i4p"].numpy(), bytes_=0.5 * k * n + 8.0 * (k // args.group) * n + 4.0 * (m * k + m * n),
                        own_ref=own4, bound=1e-4))
    return rows


def interleave(rows: list[Row], args) -> None:
    """Round robin: every kernel ``runs`` times per round (after a warm-up), ``rounds`` rounds; a
    kernel slower than 40 ms a run (torch's bf16 and weight-only CPU paths) fewer times a round."""
    from tilewise.profiling.measure import time_runs
    settle = 0.3 if args.threads > 1 else 0.0        # thread pools of other runtimes stop spinning
    runs = {}
    for r in rows:
        t0 = time.perf_counter()
        r.run()
        runs[r.name] = max(1, min(args.runs, int(0.2 / max(time.perf_counter() - t0, 1e-9))))   # slow: fewer
    for _ in range(args.rounds):
        for r in rows:
            if settle:
                time.sleep(settle)
            r.times += time_runs(r.run, repeats=runs[r.name], min_time_s=0.0, warmup=1)


# -- output ----------------------------------------------------------------------------------------------
def print_table(title, rows, flops, fma, dram) -> None:
    base = min((r.median_s for r in rows if r.run and r.name.startswith("tilewise f32")), default=float("nan"))
    print(f"\n{title}")
    print(f"{'kernel':46s} {'ms':>8s} {'GFLOP/s':>8s} {'%FMA':>5s} {'GB/s':>6s} {'%DRAM':>5s} "
          f"{'vs tw f32':>9s} {'err(A@W)':>9s} {'err(own)':>9s} {'bound':>6s}")
    for r in rows:
        if not r.run:
            print(f"{r.name:46s} {r.note}")
            continue
        t = r.median_s
        gf = flops / t / 1e9
        gbs = r.bytes / t / 1e9
        bound = f"{r.bound:.0e}" if r.bound else "-"
        ok = "" if r.bound is None or r.err_own <= r.bound else "  EXCEEDS"
        print(f"{r.name:46s} {t * 1e3:8.3f} {gf:8.1f} {100 * gf * 1e9 / fma:5.0f} {gbs:6.1f} {100 * gbs * 1e9 / dram:5.0f} "
              f"{base / t:8.2f}x {r.err:9.1e} {r.err_own:9.1e} {bound:>6s}{ok}")
    sys.stdout.flush()


def print_goals(summary, missing) -> None:
    print("\nGoals (issue 18)")
    for m, n, k, rows in summary:
        by = {r.name.split(" [")[0]: r for r in rows if r.run}
        f32 = min((r for r in rows if r.run and r.name.startswith("tilewise f32")), key=lambda r: r.median_s)
        if m <= 8:                                           # decode shapes: memory-bound GEMV/GEMM
            w4 = next((r for name, r in by.items() if name.startswith("tilewise w4")), None)
            torch_best = min((r for name, r in by.items() if name.startswith("torch")), key=lambda r: r.median_s)
            blas = by["numpy f32 (OpenBLAS)"]
            print(f"  {m}x{n}x{k}: w4 vs the faster tilewise f32 {f32.median_s / w4.median_s:.2f}x (goal >= 4x; vs numpy f32 "
                  f"{blas.median_s / w4.median_s:.2f}x); vs best torch ({torch_best.name}) "
                  f"{torch_best.median_s / w4.median_s:.2f}x (goal >= 1x)")
        else:
            print(f"  {m}x{n}x{k}: bf16 >= 1.7x f32: {missing['bf16']}; i8 >= 3x f32: {missing['i8']}")


if __name__ == "__main__":
    sys.exit(main())
