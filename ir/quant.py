"""Weight-only quantization formats: group-wise symmetric int8 and int4 weights, in numpy.

The formats the ``matmul:...:w8a32:g128`` / ``w4a32`` kernels read (:mod:`tilewise.ir.ops.weight_only`).
A weight matrix ``W[K, N]`` (the ``B`` of ``C = A @ B``) is cut into groups of ``G`` consecutive
rows along K; each group of each column has one f32 scale, ``scale[g, n] = max|W[gG:(g+1)G, n]| /
qmax`` (qmax 127 for int8, 7 for int4), and ``q = round(W / scale)`` clipped to ``[-qmax, qmax]``.
Symmetric: no zero point, so a dequantized weight is ``scale * q`` and a zero weight stays zero.

Storage (row-major, what the kernel streams):

- int8: ``q[K, N]`` as int8;
- int4: ``packed[K / 2, N]`` int8 bytes, byte ``(p, n)`` holding row ``2p`` (``lo``) and row
  ``2p + 1`` (``hi``) as the value ``16 hi + lo`` (both in [-7, 7], so it fits a signed byte):
  ``hi = (b + 8) >> 4`` (arithmetic), ``lo = b - 16 hi``.  Packing along K keeps a vector load
  over N contiguous, both values of a byte feed the same output column, and the kernel needs no
  shift pair to isolate ``lo``: with ``x = f32(b)``, ``a_even lo + a_odd hi = a_even x + (a_odd -
  16 a_even) hi`` (one add and one arithmetic shift per byte, then two converts and two FMAs);
- scales ``scale[K / G, N]`` as f32.

``dequantize`` is the float64 reference: the values the kernel's arithmetic stands for.
"""
from __future__ import annotations

import numpy as np

#: weight bits -> largest magnitude of a quantized value (symmetric ranges)
QMAX = {8: 127, 4: 7}
#: group sizes a workload may name (``:g32``, ``:g64``, ``:g128``)
GROUPS = (32, 64, 128)


def quantize(w: np.ndarray, bits: int, group: int) -> tuple[np.ndarray, np.ndarray]:
    """``w[K, N]`` -> (stored weights, f32 scales ``[K / group, N]``) in the format above."""
    k, n = w.shape
    if k % group:
        raise ValueError(f"the group {group} does not divide K={k}")
    qmax = QMAX[bits]
    blocks = np.asarray(w, dtype=np.float64).reshape(k // group, group, n)
    scale = np.max(np.abs(blocks), axis=1) / qmax
    scale = np.where(scale > 0, scale, 1.0).astype(np.float32)
    q = np.clip(np.rint(blocks / scale.astype(np.float64)[:, None, :]), -qmax, qmax).astype(np.int8)
    q = q.reshape(k, n)
    return (pack_int4(q) if bits == 4 else q), scale


def pack_int4(q: np.ndarray) -> np.ndarray:
    """int4 values ``q[K, N]`` (in [-7, 7], K even) -> bytes ``[K / 2, N]``: ``16 q[2p+1] + q[2p]``."""
    if q.shape[0] % 2:
        raise ValueError(f"int4 packing needs an even K, got {q.shape[0]}")
    if q.min(initial=0) < -QMAX[4] or q.max(initial=0) > QMAX[4]:
        raise ValueError(f"int4 values must lie in [-{QMAX[4]}, {QMAX[4]}] (symmetric)")
    q = q.astype(np.int16)
    return (16 * q[1::2] + q[0::2]).astype(np.int8)


def unpack_int4(packed: np.ndarray) -> np.ndarray:
    """Inverse of :func:`pack_int4`: bytes ``[K / 2, N]`` -> int8 values ``[K, N]`` in [-7, 7]."""
    b = np.asarray(packed).astype(np.int8).astype(np.int16)
    hi = (b + 8) >> 4                                  # arithmetic shift: floor((16 hi + lo + 8) / 16)
    out = np.empty((2 * b.shape[0],) + b.shape[1:], dtype=np.int8)
    out[0::2], out[1::2] = b - 16 * hi, hi
    return out


def dequantize(stored: np.ndarray, scale: np.ndarray, bits: int, group: int) -> np.ndarray:
    """The float64 weights ``[K, N]`` that ``(stored, scale)`` stand for."""
    q = unpack_int4(stored) if bits == 4 else np.asarray(stored).astype(np.int8)
    k, n = q.shape
    s = np.asarray(scale, dtype=np.float64)
    return (q.astype(np.float64).reshape(k // group, group, n) * s[:, None, :]).reshape(k, n)


def stored_rows(k: int, bits: int) -> int:
    """Rows of the stored weight array for K rows of weights (int4: two rows per byte)."""
    return k // 2 if bits == 4 else k
