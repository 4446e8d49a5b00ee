"""TVM MetaSchedule side of ``bench/vs_peers.py``: tune one f32 matmul, build the best schedule,
check it against numpy, and time it interleaved with the numpy baseline.  Prints one JSON line.

Runs inside the TVM environment (``bench/.tvm-venv``, made by vs_peers.py), never the project's
.venv: it imports neither tilewise nor anything of the project.  Written against apache-tvm 0.27,
where MetaSchedule lives in ``tvm.s_tir.meta_schedule`` (``tvm.meta_schedule`` in older releases)
and targets are JSON dicts (the CLI form "llvm -mcpu=... -num-cores N" is refused).

Threads: the caller sets ``TVM_NUM_THREADS=T`` and the CPU affinity (the first T cores); this script
also pins itself to the first T cores it may use.  The baseline is, by choice:

* ``--baseline-python PY``: tilewise's own baseline process (``PY -m tilewise.profiling.baseline``),
  the same code, numpy and OpenBLAS that tilewise's tuner times against, in a child process;
* otherwise numpy ``A @ B`` timed in this process (this venv's numpy/OpenBLAS, ``OPENBLAS_NUM_THREADS``).

``--tilewise-schedule JSON`` (with ``--baseline-python``) adds tilewise's tuned kernel as a third
side: the same baseline process started with that schedule compiles it, checks it and serves its
timings, so TVM, tilewise and numpy are timed round-robin in one window and ``tilewise_latency_s``
compares with ``latency_s`` directly.

    python bench/tvm_matmul.py --m 512 --n 512 --k 512 --threads 1 --trials 64
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

#: let the other side's spinning pool threads go to sleep first (as tilewise.profiling.baseline)
SETTLE_S = 0.3
#: the line the result is printed on, so TVM's own chatter on stdout does not matter
MARK = "TVM_RESULT_JSON: "


def host_cpu() -> str:
    """The host CPU as LLVM names it (znver4, znver5, skylake-avx512, ...), from TVM's own LLVM."""
    from tvm.target import codegen
    return str(codegen.llvm_get_system_cpu())


def _time_calls(fn, runs: int, warmup: int = 1) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


class _InProcessNumpy:
    name = "numpy (in the TVM process)"

    def __init__(self, a, b, threads):
        try:
            from threadpoolctl import threadpool_limits
            threadpool_limits(threads)
        except ImportError:          # OPENBLAS_NUM_THREADS from the caller does it
            pass
        self.a, self.b, self.threads = a, b, threads

    def time(self, runs):
        if self.threads > 1:
            time.sleep(SETTLE_S)
        t = _time_calls(lambda: self.a @ self.b, runs, warmup=2)
        if self.threads > 1:
            time.sleep(SETTLE_S)
        return t

    def close(self):
        pass


class _TilewiseBaseline:
    """tilewise.profiling.baseline's child process, spoken to over its stdin/stdout protocol."""

    def __init__(self, python, workload, threads, seed, schedule_json=None):
        self.threads = threads
        env = dict(os.environ, OPENBLAS_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads),
                   MKL_NUM_THREADS=str(threads))
        env.pop("PYTHONPATH", None)
        extra = [schedule_json] if schedule_json else []
        self.proc = subprocess.Popen([python, "-m", "tilewise.profiling.baseline", workload, str(threads), str(seed),
                                      *extra],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, env=env)
        self.name = self._read()["name"]

    def _read(self):
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"baseline process died: {self.proc.stderr.read().strip()[-300:]}")
        return json.loads(line)

    def time(self, runs):
        if self.threads > 1:
            time.sleep(SETTLE_S)
        self.proc.stdin.write(json.dumps({"runs": runs}) + "\n")
        self.proc.stdin.flush()
        return self._read()["times_s"]

    def close(self):
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--m", type=int, required=True)
    ap.add_argument("--n", type=int, required=True)
    ap.add_argument("--k", type=int, required=True)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--trials", type=int, default=64, help="max_trials_global")
    ap.add_argument("--per-iter", type=int, default=16,
                    help="num_trials_per_iter: candidates per search round (the cost model retrains between)")
    ap.add_argument("--mcpu", default=None, help="LLVM CPU name (default: TVM's llvm_get_system_cpu())")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rounds", type=int, default=15,
                    help="interleaved timing rounds (TVM, baseline, then tilewise when given)")
    ap.add_argument("--runs-per-round", type=int, default=3)
    ap.add_argument("--baseline-python", default=None,
                    help="the project's python: time tilewise's own baseline process instead of numpy here")
    ap.add_argument("--tilewise-schedule", default=None, metavar="JSON",
                    help="also time this tilewise schedule (needs --baseline-python), round-robin with TVM and numpy")
    ap.add_argument("--work-dir", default=None, help="MetaSchedule's logs and database (default: a temp dir)")
    args = ap.parse_args(argv)

    t_threads = max(1, args.threads)
    try:   # the first T cores this process may use (the timing cores tilewise's A/B re-timing runs on)
        os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:t_threads])
    except (AttributeError, OSError):
        pass
    os.environ["TVM_NUM_THREADS"] = str(t_threads)

    import tvm
    from tvm import te
    from tvm.s_tir import meta_schedule as ms

    m, n, k = args.m, args.n, args.k
    mcpu = args.mcpu or host_cpu()
    target = tvm.target.Target({"kind": "llvm", "mcpu": mcpu, "num-cores": t_threads})

    a_t = te.placeholder((m, k), name="A", dtype="float32")
    b_t = te.placeholder((k, n), name="B", dtype="float32")
    kk = te.reduce_axis((0, k), name="k")
    c_t = te.compute((m, n), lambda i, j: te.sum(a_t[i, kk] * b_t[kk, j], axis=kk), name="C")
    func = te.create_prim_func([a_t, b_t, c_t]).with_attr("global_symbol", "main")
    mod = tvm.IRModule({"main": func})

    tmp = None if args.work_dir else tempfile.TemporaryDirectory(prefix="tvm-ms-")
    work_dir = args.work_dir or tmp.name
    t0 = time.perf_counter()
    database = ms.tune_tir(
        mod=mod, target=target, work_dir=work_dir, max_trials_global=args.trials,
        num_trials_per_iter=args.per_iter, num_tuning_cores=t_threads, seed=args.seed,
        runner=ms.runner.LocalRunner(evaluator_config=ms.runner.EvaluatorConfig(
            number=3, repeat=1, min_repeat_ms=100, enable_cpu_cache_flush=False)),
    )
    tune_s = time.perf_counter() - t0
    if tmp is not None:                 # the records live on in the in-memory database
        tmp.cleanup()
    n_records = len(database.get_all_tuning_records())
    sch = ms.tir_integration.compile_tir(database, mod, target)
    if sch is None:
        print(MARK + json.dumps({"error": "MetaSchedule found no valid schedule", "tune_s": tune_s}), flush=True)
        return 1
    lib = tvm.compile(sch.mod, target=target).jit()     # an Executable in 0.27; jit() is the Module

    dev = tvm.cpu(0)
    rng = np.random.default_rng(args.seed)
    a = rng.uniform(-1, 1, (m, k)).astype(np.float32)
    b = rng.uniform(-1, 1, (k, n)).astype(np.float32)
    ta, tb = tvm.runtime.tensor(a, dev), tvm.runtime.tensor(b, dev)
    tc = tvm.runtime.tensor(np.zeros((m, n), np.float32), dev)
    lib["main"](ta, tb, tc)
    ref = a.astype(np.float64) @ b.astype(np.float64)
    rel_error = float(np.max(np.abs(tc.numpy() - ref)) / np.max(np.abs(ref)))
    ok = rel_error <= 1e-4

    workload = f"matmul:{m}x{n}x{k}:f32"
    baseline = (_TilewiseBaseline(args.baseline_python, workload, t_threads, args.seed)
                if args.baseline_python else _InProcessNumpy(a, b, t_threads))
    tilewise = None
    if args.tilewise_schedule and args.baseline_python:
        try:
            tilewise = _TilewiseBaseline(args.baseline_python, workload, t_threads, args.seed, args.tilewise_schedule)
        except RuntimeError as e:
            baseline.close()
            print(MARK + json.dumps({"error": f"tilewise side: {e}", "tune_s": tune_s}), flush=True)
            return 1
    evaluator = lib.time_evaluator("main", dev, number=1, repeat=args.runs_per_round, min_repeat_ms=0)
    tvm_times: list[float] = []
    ref_times: list[float] = []
    tw_times: list[float] = []
    try:
        for _ in range(args.rounds):
            if t_threads > 1:
                time.sleep(SETTLE_S)                      # the other sides' pools stop spinning
            lib["main"](ta, tb, tc)                       # warm-up, as tilewise's interleaving does
            tvm_times.extend(float(x) for x in evaluator(ta, tb, tc).results)
            ref_times.extend(baseline.time(args.runs_per_round))
            if tilewise is not None:
                tw_times.extend(tilewise.time(args.runs_per_round))
    finally:
        baseline.close()
        if tilewise is not None:
            tilewise.close()
    flops = 2.0 * m * n * k
    tvm_s, ref_s = statistics.median(tvm_times), statistics.median(ref_times)
    out = {
        "tvm_version": tvm.__version__, "target": str(target), "mcpu": mcpu, "threads": t_threads,
        "trials": args.trials, "per_iter": args.per_iter, "tuning_records": n_records,
        "tune_s": tune_s, "ok": ok, "rel_error": rel_error,
        "latency_s": tvm_s, "gflops": flops / tvm_s / 1e9,
        "baseline": baseline.name, "baseline_latency_s": ref_s, "baseline_gflops": flops / ref_s / 1e9,
        "ratio_to_baseline": ref_s / tvm_s,
        "times_s": tvm_times, "baseline_times_s": ref_times,
    }
    if tw_times:
        tw_s = statistics.median(tw_times)
        out.update(tilewise=tilewise.name, tilewise_latency_s=tw_s, tilewise_gflops=flops / tw_s / 1e9,
                   tilewise_times_s=tw_times)
    print(MARK + json.dumps(out), flush=True)
    return 0 if ok else 2


if __name__ == "__main__":
    sys.exit(main())
