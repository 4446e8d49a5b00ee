"""Search space of the weight-only quantized matmul (``matmul:MxNxK:w4a32:g128`` and friends).

What moves the needle (measured on ``1x4096x4096`` on a Zen 3, ``bench/precision.py``): the row
block Kc of K swept across N before the next block (a column strip down all of K touches one page
per row: 16 rows 1.6 ms, whole K 7.9 ms for w8), the register tile width nr (a 64-byte line of
int8 weights per row, or half of one), threads over n.  Decode shapes (M of 1..8) make mr small;
Mc and Nc blocking and the loop order get short ranges.  Kc is a divisor of the group (rows of one
group) or a multiple of it (whole groups).
"""
from __future__ import annotations

from tilewise.tuner.space import Space, SpaceOptions, thread_counts


def weight_only_space(w, target, options: SpaceOptions) -> Space:
    dims = w.loop_dims
    m, n, k = dims["m"], dims["n"], dims["k"]
    g = w.kind.group(w)
    lanes = target.simd_lanes("f32")
    regs = target.vector_registers
    nrs = [v for v in (lanes, 2 * lanes, 4 * lanes, 8 * lanes, 16 * lanes) if v <= n] or [n]
    mrs = [v for v in range(1, 9) if v <= m]
    kcs = sorted({v for v in (4, 8, 16, 32, 64, g, 2 * g, 4 * g) if v <= k and (g % v == 0 or v % g == 0)} | {0})
    ncs = sorted({v for v in (256, 512, 1024, 2048) if v < n} | {0})
    mcs = sorted({v for v in (4, 16, 64) if v < m} | {0})
    threads = thread_counts(options.max_threads)

    def legal(s) -> bool:
        mc, nc, kc = s["tile"]
        mr, nr = s["reg_tile"]
        vectors = max(1, nr // lanes)
        if (mr + 1) * vectors > regs - 2:        # accumulators and one row of scale vectors
            return False
        if (nc and (nr > nc or nc % nr)) or (mc and mr > mc):
            return False
        if s["threads"] == 1 and s["parallel_dim"] != "n":
            return False                          # one spelling of "no split"
        return True

    knobs = {
        "tile": [(mc, nc, kc) for mc in mcs for nc in ncs for kc in kcs],
        "interchange": [(0, 2, 1), (0, 1, 2), (2, 0, 1)],
        "reg_tile": [(mr, nr) for mr in mrs for nr in nrs],
        "vectorize": [True],
        "unroll": [1, 2],
        "threads": threads,
        "parallel_dim": ["n", "m"] if m > 1 else ["n"],
        "precision": [w.dtype],
    }
    return Space(knobs, legal)
