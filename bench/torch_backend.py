"""torch.compile(backend="tilewise") vs eager PyTorch and Inductor (default, max-autotune).

Three model kinds (MLP, transformer encoder block, small CNN) at two sizes each, 1 and 2 threads,
float32, inference (no_grad).  Each (model, size, threads) runs in a fresh worker process: eager,
tilewise (default mode), Inductor default and Inductor max-autotune are compiled, checked against
eager, then timed in interleaved rounds (median of per-round means); a second worker with the same
compile cache times tilewise's cached compile.  Both compilers start cold (fresh tilewise cache,
fresh ``TORCHINDUCTOR_CACHE_DIR``); torch._dynamo is imported before any clock starts.  Prints one table: latency per call, ratios
(eager / tilewise, inductor / tilewise: > 1 means tilewise is faster), and compile times.

Goal (issue #6): >= 1.25x faster than eager and >= 1.5x faster than Inductor.

    python bench/torch_backend.py [--models mlp,transformer,cnn] [--sizes small,large]
                                  [--threads 1,2] [--no-inductor] [--no-max-autotune]
                                  [--rounds 15] [--json out.json] [--compare-fuse]

``--compare-fuse`` also times tilewise with ``options={"fuse": False}`` (every epilogue as in-place
torch ops after its kernel instead of inside the fused MLIR kernel) and prints unfused / fused.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time

SIZES = {
    "mlp": {"small": dict(batch=64, d=512, hidden=2048), "large": dict(batch=256, d=1024, hidden=4096)},
    "transformer": {"small": dict(batch=1, seq=128, d=256, heads=4, ff=1024),
                    "large": dict(batch=4, seq=128, d=512, heads=8, ff=2048)},
    "cnn": {"small": dict(batch=1, hw=32, chans=(32, 64)), "large": dict(batch=8, hw=64, chans=(32, 64, 128))},
}


# --- models (worker side) -----------------------------------------------------------------------
def build(kind: str, p: dict):
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    class MLP(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1, self.fc2 = nn.Linear(p["d"], p["hidden"]), nn.Linear(p["hidden"], p["d"])

        def forward(self, x):
            return self.fc2(F.gelu(self.fc1(x)))

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            d = p["d"]
            self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
            self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
            self.ff1, self.ff2 = nn.Linear(d, p["ff"]), nn.Linear(p["ff"], d)

        def forward(self, x):
            b, s, d = x.shape
            h = p["heads"]
            q, k, v = self.qkv(self.ln1(x)).chunk(3, dim=-1)
            q, k, v = (t.view(b, s, h, d // h).transpose(1, 2) for t in (q, k, v))
            att = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(d // h), dim=-1)
            x = x + self.proj((att @ v).transpose(1, 2).reshape(b, s, d))
            return x + self.ff2(F.gelu(self.ff1(self.ln2(x))))

    class CNN(nn.Module):
        def __init__(self):
            super().__init__()
            chans = (3,) + tuple(p["chans"])
            self.convs = nn.ModuleList(nn.Conv2d(a, b, 3, padding=1) for a, b in zip(chans, chans[1:]))
            side = p["hw"] >> len(self.convs)
            self.fc = nn.Linear(chans[-1] * side * side, 10)

        def forward(self, x):
            for c in self.convs:
                x = F.max_pool2d(F.relu(c(x)), 2)
            return self.fc(torch.flatten(x, 1))

    torch.manual_seed(0)
    if kind == "mlp":
        return MLP().eval(), torch.randn(p["batch"], p["d"])
    if kind == "transformer":
        return Block().eval(), torch.randn(p["batch"], p["seq"], p["d"])
    return CNN().eval(), torch.randn(p["batch"], 3, p["hw"], p["hw"])


def flops(kind: str, p: dict) -> float:
    if kind == "mlp":
        return 4.0 * p["batch"] * p["d"] * p["hidden"]
    if kind == "transformer":
        n, d, s = p["batch"] * p["seq"], p["d"], p["seq"]
        return 2.0 * n * d * (3 * d + d + 2 * p["ff"]) + 4.0 * p["batch"] * s * s * d
    total, hw, c = 0.0, p["hw"], 3
    for f in p["chans"]:
        total += 2.0 * p["batch"] * hw * hw * 9 * c * f
        hw, c = hw // 2, f
    return total


def worker(args) -> dict:
    import torch
    import torch._dynamo  # noqa: F401  (imported before any clock starts: every backend needs it)
    torch.set_num_threads(args.threads)
    kind, size = args.model, args.size
    model, x = build(kind, SIZES[kind][size])
    out: dict = {"model": kind, "size": size, "threads": args.threads}
    impls = {}
    with torch.no_grad():
        ref = model(x)
        t = time.perf_counter()
        tw = torch.compile(model, backend="tilewise",
                           options={"cache": args.cache, "threads": args.threads})
        y = tw(x)
        out["tilewise_compile_s"] = time.perf_counter() - t
        out["tilewise_rel_error"] = float((y - ref).norm() / ref.norm())
        if args.compile_only:
            return out
        impls["eager"], impls["tilewise"] = (lambda: model(x)), (lambda: tw(x))
        if args.compare_fuse:     # the same compile with every epilogue as torch ops after its kernel
            torch._dynamo.reset()
            unf = torch.compile(model, backend="tilewise",
                                options={"cache": args.cache, "threads": args.threads, "fuse": False})
            y = unf(x)
            out["tilewise-unfused_rel_error"] = float((y - ref).norm() / ref.norm())
            impls["tilewise-unfused"] = (lambda: unf(x))
        for name, mode in (("inductor", None), ("inductor-max-autotune", "max-autotune")):
            if args.no_inductor or (mode and args.no_max_autotune):
                continue
            try:
                torch._dynamo.reset()
                t = time.perf_counter()
                fn = torch.compile(model, mode=mode)
                y = fn(x)
                out[f"{name}_compile_s"] = time.perf_counter() - t
                out[f"{name}_rel_error"] = float((y - ref).norm() / ref.norm())
                impls[name] = (lambda f=fn: f(x))
            except Exception as e:   # no C++ compiler, or Inductor rejects the model: say so
                out[f"{name}_error"] = f"{type(e).__name__}: {' '.join(str(e).split())[:120]}"
        times = {k: [] for k in impls}
        for f in impls.values():
            for _ in range(3):
                f()
        for _ in range(args.rounds):
            for name, f in impls.items():
                n = 0
                t = time.perf_counter()
                while n < 3 or (time.perf_counter() - t < 0.02 and n < 200):
                    f()
                    n += 1
                times[name].append((time.perf_counter() - t) / n)
        for name, ts in times.items():
            out[f"{name}_s"] = statistics.median(ts)
    out["gflop"] = flops(kind, SIZES[kind][size]) / 1e9
    return out


# --- driver -----------------------------------------------------------------------------------------
def run_worker(model, size, threads, cache, extra, timeout=900, omp_wait_policy=None) -> dict:
    cmd = [sys.executable, __file__, "--worker", "--model", model, "--size", size, "--threads", str(threads),
           "--cache", cache] + extra
    # Inductor's compile cache lives beside tilewise's: the first worker of a config compiles both
    # cold, the second (compile-only) finds tilewise's cache
    env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": os.path.join(cache, "inductor")}
    if omp_wait_policy:       # the same for every implementation in the worker: eager, Inductor, tilewise
        env["OMP_WAIT_POLICY"] = omp_wait_policy
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    if done.returncode:
        return {"model": model, "size": size, "threads": threads,
                "error": (done.stderr.strip().splitlines() or ["?"])[-1][:160]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def _fmt_ms(s):
    return f"{s * 1e3:.3f}" if s else "-"


def _ratio(r, base):
    return f"{r[base + '_s'] / r['tilewise_s']:.2f}x" if r.get(base + "_s") and r.get("tilewise_s") else \
        ("fail" if r.get(base + "_error") else "-")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="mlp,transformer,cnn")
    ap.add_argument("--sizes", default="small,large")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--no-inductor", action="store_true")
    ap.add_argument("--no-max-autotune", action="store_true")
    ap.add_argument("--json", default=None)
    ap.add_argument("--compare-fuse", action="store_true",
                    help="also time tilewise with fuse=False and print the unfused/fused latency ratio")
    ap.add_argument("--omp-wait-policy", choices=["ACTIVE", "PASSIVE"], default=None,
                    help="OMP_WAIT_POLICY of the worker processes (all implementations alike); torch's "
                         "libgomp spins between ops by default and takes the cores from tilewise's "
                         "multi-threaded kernels")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--compile-only", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--model", help=argparse.SUPPRESS)
    ap.add_argument("--size", help=argparse.SUPPRESS)
    ap.add_argument("--cache", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        args.threads = int(args.threads)
        print(json.dumps(worker(args)))
        return
    extra = ["--rounds", str(args.rounds)] + (["--no-inductor"] if args.no_inductor else []) + \
        (["--no-max-autotune"] if args.no_max_autotune else []) + (["--compare-fuse"] if args.compare_fuse else [])
    rows = []
    for model in args.models.split(","):
        for size in args.sizes.split(","):
            for threads in [int(t) for t in args.threads.split(",")]:
                with tempfile.TemporaryDirectory() as cache:
                    r = run_worker(model, size, threads, cache, extra, omp_wait_policy=args.omp_wait_policy)
                    if "error" not in r:
                        again = run_worker(model, size, threads, cache, ["--compile-only"],
                                           omp_wait_policy=args.omp_wait_policy)
                        r["tilewise_cached_compile_s"] = again.get("tilewise_compile_s")
                rows.append(r)
                print(json.dumps(r), file=sys.stderr, flush=True)
    print(f"OMP_WAIT_POLICY of the workers: {args.omp_wait_policy or os.environ.get('OMP_WAIT_POLICY') or 'unset (libgomp default: spin)'}")
    print_table(rows)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


def print_columns(lines: list[list[str]]) -> None:
    """Print rows of cells in aligned columns, the first row as the header (bench/hf_models.py too)."""
    widths = [max(len(ln[i]) for ln in lines) for i in range(len(lines[0]))]
    for i, ln in enumerate(lines):
        print("  ".join(c.ljust(w) for c, w in zip(ln, widths)))
        if i == 0:
            print("  ".join("-" * w for w in widths))


def print_table(rows):
    head = ["model", "size", "thr", "eager ms", "tilewise ms", "GFLOP/s tw", "vs eager", "vs inductor",
            "vs ind-max-at", "tw compile cold/cached s", "inductor compile s (def/max)", "tw rel err"]
    lines = [head]
    for r in rows:
        if "error" in r:
            lines.append([r["model"], r["size"], str(r["threads"]), "error: " + r["error"]] + [""] * 8)
            continue
        gf = f"{r['gflop'] / r['tilewise_s']:.1f}" if r.get("tilewise_s") else "-"
        ind = "/".join(f"{r[k]:.1f}" if r.get(k) else ("fail" if r.get(k.replace('compile_s', 'error')) else "-")
                       for k in ("inductor_compile_s", "inductor-max-autotune_compile_s"))
        lines.append([r["model"], r["size"], str(r["threads"]), _fmt_ms(r.get("eager_s")), _fmt_ms(r.get("tilewise_s")),
                      gf, _ratio(r, "eager"), _ratio(r, "inductor"), _ratio(r, "inductor-max-autotune"),
                      f"{r['tilewise_compile_s']:.2f}/{(r.get('tilewise_cached_compile_s') or float('nan')):.2f}",
                      ind, f"{r['tilewise_rel_error']:.1e}"])
    print_columns(lines)
    for r in rows:
        if r.get("tilewise-unfused_s") and r.get("tilewise_s"):
            print(f"fuse: {r['model']}/{r['size']}/{r['threads']}t unfused {_fmt_ms(r['tilewise-unfused_s'])} ms, "
                  f"fused {_fmt_ms(r['tilewise_s'])} ms: unfused/fused {r['tilewise-unfused_s'] / r['tilewise_s']:.3f}x")
    for r in rows:
        for k, v in r.items():
            if k.endswith("_error") and isinstance(v, str):
                print(f"note: {r['model']}/{r['size']}/{r['threads']}t {k[:-6]} failed: {v}")


if __name__ == "__main__":
    main()
