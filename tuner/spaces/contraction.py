"""Search space of ``matmul`` and ``batch_matmul``, sized from the target.

Ranges come from what moves the needle on CPUs (MLIR_NOTES, "Knobs, in order of impact"): B-panel
packing with Nc in a few vector multiples and Kc up to K, the register tile (nr a power-of-two
multiple of the vector width, mr*nr/lanes accumulators within the register file), threads split
over n or m; M blocking and interchange get small ranges.
"""
from __future__ import annotations

from tilewise.ir.dtypes import DTYPES
from tilewise.ir.ops.matmul import MAX_PANEL_BYTES, thread_grid
from tilewise.tuner.space import Space, SpaceOptions, precisions, register_space, thread_counts
from tilewise.tuner.spaces.weight_only import weight_only_space


@register_space("matmul", "batch_matmul")
def contraction_space(w, target, options: SpaceOptions) -> Space:
    if getattr(w.kind, "weight_only", False):          # matmul:...:w4a32:g128 and friends
        return weight_only_space(w, target, options)
    dims = w.loop_dims
    m, n, k = dims["m"], dims["n"], dims["k"]
    lanes = target.simd_lanes(w.dtype)
    regs = target.vector_registers
    nrs = [v for v in (lanes // 2, lanes, 2 * lanes, 4 * lanes) if 1 <= v <= n] or [n]
    mrs = [v for v in range(1, 13) if v <= m]
    ncs = sorted({v for v in (nr * c for nr in nrs for c in (1, 2, 4, 8)) if v <= n} | {0})
    kcs = sorted({v for v in (64, 128, 256, 512, k) if v <= k} | {0})
    mcs = sorted({v for v in (32, 64, 128, 256) if v <= m} | {0})
    precs = precisions(w, options)
    threads = thread_counts(options.max_threads)
    # a 2-D thread grid exists only from 4 threads on (2 = 1 x 2 is the "n" split)
    par_dims = (["b"] if "b" in dims else []) + ["m", "n"] + (["mn"] if max(threads) >= 4 else [])
    elt = {p: DTYPES[p].nbytes for p in precs}

    def legal(s) -> bool:
        mc, nc, kc = s["tile"]
        mr, nr = s["reg_tile"]
        accumulators = mr * max(1, nr // lanes)
        if accumulators > regs - 2 or (nc and (nr > nc or nc % nr)) or (mc and mr > mc):
            return False
        if s["promote"] and not (nc and kc and nc * kc * elt[s["precision"]] <= MAX_PANEL_BYTES):
            return False
        if s["threads"] == 1 and s["parallel_dim"] != "n":
            return False          # parallel_dim means nothing single-threaded: one spelling only
        if s["parallel_dim"] == "mn" and thread_grid(s["threads"])[0] == 1:
            return False          # a prime thread count has no 2-D grid: it is the "n" split
        return True

    return Space(
        {
            "tile": [(mc, nc, kc) for mc in mcs for nc in ncs for kc in kcs],
            "interchange": [(0, 1, 2), (1, 0, 2), (0, 2, 1), (1, 2, 0)],
            "promote": [True, False],
            "reg_tile": [(mr, nr) for mr in mrs for nr in nrs],
            "vectorize": [True],
            "unroll": [1, 2],
            "threads": threads,
            "parallel_dim": par_dims,
            "precision": precs,
        },
        legal,
    )
