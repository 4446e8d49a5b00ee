"""Search space of ``conv2d_nhwc``, sized from the target.

What moves the needle (measured on a 16-lane AVX-512 core, ResNet 3x3 layers): the register tile
(owr output pixels x fr output channels; accumulators ``owr * fr / lanes`` within the register
file, fr a power-of-two multiple of half a vector), a cache tile over output and input channels
(Fc, Cc) once the filter outgrows L2 (C, F >= 256: 1.3x), threads split over f or oh.  Blocking
oh/ow and a c step above 1 matter little; their ranges stay small.
"""
from __future__ import annotations

from tilewise.tuner.space import Space, SpaceOptions, precisions, register_space, thread_counts


@register_space("conv2d_nhwc")
def conv_space(w, target, options: SpaceOptions) -> Space:
    d = w.loop_dims
    oh, ow, f, c = d["oh"], d["ow"], d["f"], d["c"]
    lanes = target.simd_lanes(w.dtype)
    regs = target.vector_registers
    frs = sorted({v for v in (lanes // 2, lanes, 2 * lanes, 4 * lanes) if 1 <= v <= f}
                 | ({f} if f < 4 * lanes else set()))
    owrs = [v for v in range(1, 15) if v <= ow]
    ohcs = sorted({v for v in (1, 2, 4, 8) if v <= oh} | {0})
    owcs = sorted({v for v in (4, 8, 16, 28, 32) if v <= ow} | {0})
    fcs = sorted({v for v in (fr * m for fr in frs for m in (1, 2, 4)) if v <= f} | {0})
    ccs = sorted({v for v in (8, 16, 32, 64, 128) if v <= c} | {0})
    c_tiles = [v for v in (1, 2, 4) if v <= c]
    threads = thread_counts(options.max_threads)
    par_dims = (["n"] if d["n"] > 1 else []) + ["oh", "f"]
    sizes = {"n": d["n"], "oh": oh, "f": f}

    def legal(s) -> bool:
        ohc, owc, fc, cc = s["tile"]
        owr, fr = s["reg_tile"]
        vectors = -(-fr // lanes)
        if owr * vectors + vectors + 2 > regs:          # accumulators + filter row + broadcast
            return False
        if (owc and (owr > owc or owc % owr)) or (fc and (fr > fc or fc % fr)):
            return False
        if cc and s["c_tile"] > cc:
            return False
        t, dim = s["threads"], s["parallel_dim"]
        if t == 1:
            return dim == "oh"      # parallel_dim means nothing single-threaded: one spelling only
        if t > sizes[dim]:
            return False
        if dim == "f":              # equal, vector-aligned shares keep every tile static
            share = f // t
            return f % t == 0 and share % fr == 0 and (not fc or share % fc == 0)
        return True

    return Space(
        {
            "tile": [(a, b, e, g) for a in ohcs for b in owcs for e in fcs for g in ccs],
            "reg_tile": [(owr, fr) for owr in owrs for fr in frs],
            "c_tile": c_tiles,
            "vectorize": [True],
            "threads": threads,
            "parallel_dim": par_dims,
            "precision": precisions(w, options),
        },
        legal,
    )
