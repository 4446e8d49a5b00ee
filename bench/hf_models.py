"""Hugging Face models through torch.compile: eager, Inductor (default, max-autotune) and tilewise
(default, max-autotune), in the default environment.

Models are ``transformers`` classes built from their configs with random weights (nothing is
downloaded): a BERT-base encoder layer, a GPT-2 block and a 2-layer GPT-2 LM (d=512), a 2-layer
LLaMA-style decoder (d=512: RMS norm, SwiGLU, rotary embedding, grouped-query attention with 8
query and 4 key/value heads), a 2-layer ViT (d=384, 224x224 images, 197 tokens), and the small
CNN of bench/torch_backend.py.  Inference (no_grad), float32.

Each (model, batch, sequence, threads) runs in a fresh worker process, nothing set in its
environment (no OMP_WAIT_POLICY, no pinning): every backend is compiled cold (fresh tilewise cache,
fresh ``TORCHINDUCTOR_CACHE_DIR``), checked against eager, then all are timed in interleaved
rounds (median of per-round means).  A second worker on the same caches times the cached
compiles.  A third pass compiles tilewise from its cache with ``profile`` on and reads the trace:
the share of the graph's time spent inside tilewise kernels (the rest: eager aten ops between them).

Prints one table (ratios > 1: tilewise is faster) and the issue-17 goals with pass/fail.  Each row
also shows the model's counted GFLOP (matmuls, convolutions, attention: torch's FlopCounterMode),
eager's speed as a share of the f32 FMA peak measured for that thread count (bench/fma_peak.py's
loop), and the peak's speed-up over eager: the hardware limit of any backend's ratio to eager.
The goals:
every row >= 1.3x eager and >= 1.2x Inductor, geomean >= 1.5x Inductor at 1 thread, >= 90 % of
graph time in tilewise kernels, cold compile no slower than Inductor's, rel. error <= 1e-4.

    python bench/hf_models.py [--models bert-layer,gpt2-block,gpt2-lm,llama,vit,cnn]
                              [--batch 1,8] [--seq 128,512] [--threads 1,2]
                              [--backends eager,inductor,inductor-max-autotune,tilewise,tilewise-max-autotune]
                              [--rounds 11] [--json out.json]

The whole default matrix (6 models x 2 batches x 2 lengths x 2 thread counts, 5 backends) takes
hours on 2 cores; ViT and the CNN have no sequence length (one row per batch).
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

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_backend import print_columns  # noqa: E402  (bench/torch_backend.py: the same table layout)
import fma_peak  # noqa: E402  (bench/fma_peak.py: the measured FMA ceiling)

BACKENDS = ("eager", "inductor", "inductor-max-autotune", "tilewise", "tilewise-max-autotune")
MODELS = ("bert-layer", "gpt2-block", "gpt2-lm", "llama", "vit", "cnn")
NO_SEQ = ("vit", "cnn")            # their token count is fixed by the image


# --- models (worker side) ----------------------------------------------------------------------
def _first(out):
    """A layer's hidden states: a tensor, or the first item of the tuple some layers return."""
    return out[0] if isinstance(out, (tuple, list)) else out


def build(name: str, batch: int, seq: int):
    """``(callable, module, input)``: the callable returns one tensor."""
    import torch
    import transformers as tf
    torch.manual_seed(0)
    if name == "bert-layer":
        cfg = tf.BertConfig()                                     # BERT-base: 768, 12 heads, 3072
        cfg._attn_implementation = "sdpa"                         # what BertModel would set
        m = tf.models.bert.modeling_bert.BertLayer(cfg)
        return (lambda x: _first(m(x))), m, torch.randn(batch, seq, cfg.hidden_size)
    if name == "gpt2-block":
        cfg = tf.GPT2Config()                                     # GPT-2 small: 768, 12 heads
        cfg._attn_implementation = "sdpa"
        m = tf.models.gpt2.modeling_gpt2.GPT2Block(cfg)
        return (lambda x: _first(m(x))), m, torch.randn(batch, seq, cfg.n_embd)
    if name == "gpt2-lm":
        cfg = tf.GPT2Config(n_embd=512, n_head=8, n_layer=2, n_positions=1024)
        m = tf.GPT2LMHeadModel(cfg)
        return (lambda ids: m(ids).logits), m, torch.randint(0, cfg.vocab_size, (batch, seq))
    if name == "llama":
        cfg = tf.LlamaConfig(hidden_size=512, intermediate_size=1376, num_hidden_layers=2,
                             num_attention_heads=8, num_key_value_heads=4, vocab_size=32000,
                             max_position_embeddings=1024)
        m = tf.LlamaModel(cfg)
        return (lambda ids: m(ids).last_hidden_state), m, torch.randint(0, cfg.vocab_size, (batch, seq))
    if name == "vit":
        cfg = tf.ViTConfig(hidden_size=384, num_attention_heads=6, intermediate_size=1536, num_hidden_layers=2)
        m = tf.ViTModel(cfg, add_pooling_layer=False)
        return (lambda px: m(px).last_hidden_state), m, torch.randn(batch, 3, cfg.image_size, cfg.image_size)
    if name == "cnn":
        from torch_backend import SIZES, build as build_small
        m, x = build_small("cnn", {**SIZES["cnn"]["large"], "batch": batch})
        return m, m, x
    raise SystemExit(f"error: unknown model {name!r}: use {', '.join(MODELS)}")


def _compile(backend: str, fn, cache: str, threads: int):
    import torch
    if backend == "eager":
        return fn
    if backend.startswith("inductor"):
        return torch.compile(fn, mode="max-autotune" if backend.endswith("max-autotune") else None)
    opts = {"cache": cache, "db": os.path.join(cache, "records.db"), "threads": threads}
    return torch.compile(fn, backend="tilewise", mode="max-autotune" if backend.endswith("max-autotune") else None,
                         options=opts)


def kernel_share(fn, x, cache: str, threads: int) -> float | None:
    """Share of the graph's time inside tilewise kernels: tilewise compiled from its (warm) cache
    with ``profile`` on, every kernel and eager op of the trace timed."""
    import torch
    from tilewise.frontends.model_trace import ModelTrace
    torch._dynamo.reset()
    path = os.path.join(cache, "trace.json")
    opts = {"cache": cache, "db": os.path.join(cache, "records.db"), "threads": threads,
            "trace": path, "profile": True}
    torch.compile(fn, backend="tilewise", options=opts)(x)
    times = [(k.kind, k.median_s or 0.0) for k in ModelTrace.load(path).kernels]   # each node runs once a call
    total = sum(t for _, t in times)
    return sum(t for kind, t in times if kind == "kernel") / total if total else None


def model_gflop(fn, x) -> float:
    """The model's floating-point work (GFLOP) as torch counts it: matmuls, convolutions and
    attention (2 per multiply-add); elementwise ops and norms are not counted, so the FMA ceiling
    below is an upper bound on the speed any backend can reach."""
    from torch.utils.flop_counter import FlopCounterMode
    with FlopCounterMode(display=False) as counter:
        fn(x)
    return counter.get_total_flops() / 1e9


def worker(args) -> dict:
    import torch
    import torch._dynamo  # noqa: F401  (imported before any clock starts: every backend needs it)
    torch.set_num_threads(args.threads)
    fn, module, x = build(args.model, args.batch, args.seq)
    module.eval()
    out: dict = {"model": args.model, "batch": args.batch, "seq": args.seq, "threads": args.threads}
    impls = {}
    with torch.no_grad():
        ref = fn(x)
        out["gflop"] = model_gflop(fn, x)
        for b in args.backends.split(","):
            try:
                torch._dynamo.reset()
                t = time.perf_counter()
                compiled = _compile(b, fn, args.cache, args.threads)
                y = compiled(x)
                if b != "eager":
                    out[f"{b}_compile_s"] = time.perf_counter() - t
                out[f"{b}_rel_error"] = float((y - ref).double().norm() / ref.double().norm())
                impls[b] = compiled
            except Exception as e:     # no C++ compiler, or a backend rejects the model: say so
                out[f"{b}_error"] = f"{type(e).__name__}: {' '.join(str(e).split())[:160]}"
        if args.compile_only:
            return out
        times = {b: [] for b in impls}
        for f in impls.values():
            for _ in range(2):
                f(x)
        for _ in range(args.rounds):
            for b, f in impls.items():
                n, t = 0, time.perf_counter()
                while n < 2 or (time.perf_counter() - t < 0.05 and n < 100):
                    f(x)
                    n += 1
                times[b].append((time.perf_counter() - t) / n)
        for b, ts in times.items():
            out[f"{b}_s"] = statistics.median(ts)
        if "tilewise" in impls:
            out["tilewise_kernel_share"] = kernel_share(fn, x, args.cache, args.threads)
    return out


# --- driver ------------------------------------------------------------------------------------
def measure_peaks(thread_counts: list[int]) -> dict[int, float]:
    """f32 FMA GFLOP/s on 1..n cores at once (bench/fma_peak.py's loop), per thread count."""
    allowed = sorted(os.sched_getaffinity(0))
    with tempfile.TemporaryDirectory(prefix="fma-peak-") as tmp:
        exe = fma_peak.build(__import__("pathlib").Path(tmp))
        return {t: sum(g for _, g in fma_peak.run(exe, allowed[:t])) for t in thread_counts if t <= len(allowed)}


def ceiling(r: dict) -> float | None:
    """How many times faster than eager the FMA peak would run the model's counted flops: no
    backend can beat eager by more on this machine (ratios above it are out of reach)."""
    if r.get("gflop") and r.get("fma_peak_gflops") and r.get("eager_s"):
        return r["eager_s"] / (r["gflop"] / r["fma_peak_gflops"])
    return None


def run_worker(cfg: tuple, cache: str, extra: list[str], timeout: float) -> dict:
    model, batch, seq, threads = cfg
    cmd = [sys.executable, __file__, "--worker", "--models", model, "--batch", str(batch), "--seq", str(seq),
           "--threads", str(threads), "--cache", cache] + extra
    env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": os.path.join(cache, "inductor")}
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"model": model, "batch": batch, "seq": seq, "threads": threads, "error": f"timed out after {timeout:.0f} s"}
    if done.returncode:
        return {"model": model, "batch": batch, "seq": seq, "threads": threads,
                "error": (done.stderr.strip().splitlines() or ["?"])[-1][:160]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def _ratio(r: dict, base: str, impl: str = "tilewise") -> str:
    if r.get(f"{base}_s") and r.get(f"{impl}_s"):
        return f"{r[base + '_s'] / r[impl + '_s']:.2f}x"
    return "fail" if r.get(f"{base}_error") or r.get(f"{impl}_error") else "-"


def _secs(r: dict, key: str) -> str:
    v = r.get(key)
    return f"{v:.1f}" if v is not None else ("fail" if r.get(key.replace("compile_s", "error")) else "-")


def print_table(rows: list[dict]) -> None:
    head = ["model", "b", "seq", "thr", "GFLOP", "eager % peak", "peak vs eager", "eager ms", "tw ms", "tw vs eager",
            "tw vs ind", "tw vs ind-max",
            "tw-max vs ind", "in kernels", "tw compile cold/cached s", "ind compile cold/cached s",
            "ind-max compile s", "tw rel err"]
    lines = [head]
    for r in rows:
        seq = "-" if r["model"] in NO_SEQ else str(r["seq"])
        if "error" in r:
            lines.append([r["model"], str(r["batch"]), seq, str(r["threads"]), "error: " + r["error"]] + [""] * 13)
            continue
        share = r.get("tilewise_kernel_share")
        top = ceiling(r)
        lines.append([
            r["model"], str(r["batch"]), seq, str(r["threads"]),
            f"{r['gflop']:.2f}" if r.get("gflop") else "-",
            f"{1 / top:.0%}" if top else "-", f"{top:.2f}x" if top else "-",
            f"{r['eager_s'] * 1e3:.2f}" if r.get("eager_s") else "-",
            f"{r['tilewise_s'] * 1e3:.2f}" if r.get("tilewise_s") else "-",
            _ratio(r, "eager"), _ratio(r, "inductor"), _ratio(r, "inductor-max-autotune"),
            _ratio(r, "inductor", "tilewise-max-autotune"),
            f"{share:.0%}" if share is not None else "-",
            f"{_secs(r, 'tilewise_compile_s')}/{_secs(r, 'tilewise_cached_compile_s')}",
            f"{_secs(r, 'inductor_compile_s')}/{_secs(r, 'inductor_cached_compile_s')}",
            _secs(r, "inductor-max-autotune_compile_s"),
            f"{r['tilewise_rel_error']:.1e}" if r.get("tilewise_rel_error") is not None else "-"])
    print_columns(lines)
    for r in rows:
        for k, v in r.items():
            if k.endswith("_error") and isinstance(v, str):
                print(f"note: {r['model']} b{r['batch']} s{r['seq']} {r['threads']}t: {k[:-6]} failed: {v}")


def goals(rows: list[dict]) -> list[tuple[str, bool | None, str]]:
    """The issue-17 goals: (goal, met (None: not measured), the measured value)."""
    ok = [r for r in rows if "error" not in r and r.get("tilewise_s")]

    def ratios(base, sel=lambda r: True):
        return [r[f"{base}_s"] / r["tilewise_s"] for r in ok if r.get(f"{base}_s") and sel(r)]

    def check(name, values, want, agg):
        if not values:
            return name, None, "not measured"
        v = agg(values)
        return name, v >= want if "compile" not in name else v <= want, f"{v:.2f}"
    geo = lambda v: math.exp(sum(map(math.log, v)) / len(v))     # noqa: E731
    shares = [r["tilewise_kernel_share"] for r in ok if r.get("tilewise_kernel_share") is not None]
    cold = [r["tilewise_compile_s"] / r["inductor_compile_s"] for r in ok
            if r.get("inductor_compile_s") and r.get("tilewise_compile_s")]
    errs = [r["tilewise_rel_error"] for r in ok]
    return [check("every row >= 1.3x eager (worst row)", ratios("eager"), 1.3, min),
            check("every row >= 1.2x Inductor (worst row)", ratios("inductor"), 1.2, min),
            check("geomean >= 1.5x Inductor at 1 thread", ratios("inductor", lambda r: r["threads"] == 1), 1.5, geo),
            check(">= 90 % of graph time in tilewise kernels (worst row)", shares, 0.9, min),
            check("cold compile / Inductor's <= 1 (worst row)", cold, 1.0, max),
            ("rel. error <= 1e-4 (worst row)", max(errs) <= 1e-4 if errs else None,
             f"{max(errs):.1e}" if errs else "not measured")]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--batch", default="1,8")
    ap.add_argument("--seq", default="128,512")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--backends", default=",".join(BACKENDS))
    ap.add_argument("--rounds", type=int, default=11)
    ap.add_argument("--timeout", type=float, default=3600, help="seconds per worker")
    ap.add_argument("--json", default=None)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--compile-only", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--cache", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    unknown = set(args.backends.split(",")) - set(BACKENDS)
    if unknown or "eager" not in args.backends.split(","):
        raise SystemExit(f"error: --backends takes eager (always) and {', '.join(BACKENDS[1:])}; got {args.backends}")
    if args.worker:
        args.model, args.batch, args.seq, args.threads = args.models, int(args.batch), int(args.seq), int(args.threads)
        print(json.dumps(worker(args)))
        return
    for k in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS", "KMP_AFFINITY", "GOMP_CPU_AFFINITY"):
        if k in os.environ:
            print(f"warning: {k}={os.environ[k]} is set: this is not the default environment", file=sys.stderr)
    configs = []
    for model in args.models.split(","):
        for batch in map(int, args.batch.split(",")):
            seqs = [int(args.seq.split(",")[0])] if model in NO_SEQ else list(map(int, args.seq.split(",")))
            for seq in seqs:
                configs += [(model, batch, seq, t) for t in map(int, args.threads.split(","))]
    extra = ["--rounds", str(args.rounds), "--backends", args.backends]
    peaks = measure_peaks(sorted({c[3] for c in configs}))
    rows = []
    for cfg in configs:
        with tempfile.TemporaryDirectory() as cache:
            r = run_worker(cfg, cache, extra, args.timeout)
            if "error" not in r:         # the same caches: tilewise's plans/kernels, Inductor's FX graphs
                cached = ["eager"] + [b for b in ("inductor", "tilewise") if b in args.backends.split(",")]
                again = run_worker(cfg, cache, ["--compile-only", "--backends", ",".join(cached)], args.timeout)
                r["tilewise_cached_compile_s"] = again.get("tilewise_compile_s")
                r["inductor_cached_compile_s"] = again.get("inductor_compile_s")
        r["fma_peak_gflops"] = peaks.get(cfg[3])
        rows.append(r)
        print(json.dumps(r), file=sys.stderr, flush=True)
    print_table(rows)
    print()
    for name, met, value in goals(rows):
        print(f"goal {name}: {value} -> {'met' if met else 'not measured' if met is None else 'MISSED'}")
    tops = [(ceiling(r), r) for r in rows if ceiling(r)]
    if tops:
        top, r = min(tops, key=lambda t: t[0])
        print(f"hardware limit: the FMA peak runs the counted flops at most {top:.2f}x faster than eager "
              f"({r['model']} b{r['batch']} s{r['seq']} {r['threads']}t, eager at {1 / top:.0%} of peak); "
              "a goal above it is out of reach on this machine")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
