"""Search spaces of the memory-bound ops: elementwise (``add``, ``mul``, ``relu``, ``gelu``), the
last-dim reductions (``reduce_sum``, ``reduce_max``) and ``softmax``.

These ops stream their data once, so what matters is a vector width that is a power-of-two number
of SIMD registers (never 24 lanes: MLIR_NOTES), enough independent work per iteration (rows per
tile), and threads.  Every block is capped at ``MAX_BLOCK_ELEMENTS`` so the unrolled body stays
small.
"""
from __future__ import annotations

from tilewise.ir.ops.elementwise import MAX_BLOCK_ELEMENTS
from tilewise.tuner.space import Space, SpaceOptions, register_space, thread_counts


def _vectors(n: int, lanes: int) -> list[int]:
    """Power-of-two multiples (and halves) of the SIMD width that fit in a dim of size n."""
    vals = [v for v in (lanes // 2, lanes, 2 * lanes, 4 * lanes, 8 * lanes) if 1 <= v <= n]
    return vals or [n]


def _rows(shape) -> int:
    return shape[-2] if len(shape) >= 2 else 1


def _threads(shape, options: SpaceOptions) -> list[int]:
    return [t for t in thread_counts(options.max_threads) if t == 1 or t <= shape[0]]


@register_space("add", "mul", "relu", "gelu")
def elementwise_space(w, target, options: SpaceOptions) -> Space:
    shape = w.shapes[0]
    lanes = target.simd_lanes(w.dtype)
    return Space(
        {
            "tile": [t for t in (1, 2, 4, 8) if t <= _rows(shape)],
            "vector": _vectors(shape[-1], lanes),
            "vectorize": [True],
            "threads": _threads(shape, options),
        },
        lambda s: s["tile"] * s["vector"] <= MAX_BLOCK_ELEMENTS,
    )


@register_space("reduce_sum", "reduce_max")
def reduction_space(w, target, options: SpaceOptions) -> Space:
    return elementwise_space(w, target, options)


@register_space("softmax")
def softmax_space(w, target, options: SpaceOptions) -> Space:
    shape = w.shapes[0]
    lanes = target.simd_lanes(w.dtype)
    return Space(
        {
            "tile": [t for t in (1, 2, 4, 8, 16, 32) if t <= shape[-2]],
            "vector": _vectors(shape[-1], lanes),
            "vectorize": [True],
            "threads": thread_counts(options.max_threads),
        },
    )
