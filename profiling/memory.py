"""Whether a workload's buffers fit in this machine's memory, asked before any is allocated.

A workload far too large for the machine (``matmul:99999999x99999x9999:f32``) would otherwise die
deep in numpy with a ``MemoryError`` and a traceback, after a search whose every trial failed.
:func:`check_buffers_fit` refuses it up front with one line that says what is wrong and what to do;
the CLI calls it for every workload of a command that allocates buffers (tune, measure, collect),
and :func:`tilewise.profiling.measure.make_problem` calls it before it allocates, so the Python
``tune()`` and ``measure()`` paths refuse alike.
"""
from __future__ import annotations

import os
from typing import TYPE_CHECKING


if TYPE_CHECKING:
    from tilewise.core.workload import Workload


class BuffersTooLarge(ValueError):
    """A workload whose argument buffers exceed the memory this machine has available."""


def buffer_bytes(w: "Workload", precision: str | None = None) -> int:
    """Bytes of the kernel's argument buffers of ``w`` in ``precision`` (``OpKind.buffer_bytes``)."""
    return w.kind.buffer_bytes(w, precision)


def available_memory_bytes() -> int | None:
    """MemAvailable of ``/proc/meminfo`` (what can be allocated without swapping), else the free
    physical pages; None where neither can be read."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def format_bytes(n: float) -> str:
    """``7.28 TiB``: binary units, as numpy's allocation errors print them."""
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"):
        if n < 1024 or unit == "EiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.2f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def check_buffers_fit(w: "Workload", precision: str | None = None) -> None:
    """Raise :class:`BuffersTooLarge` (one line: the need, what is available, what to do) when the
    argument buffers of ``w`` exceed the memory available now; a machine that does not say how much
    it has is not refused."""
    need = buffer_bytes(w, precision)
    have = available_memory_bytes()
    if have is not None and need > have:
        raise BuffersTooLarge(f"{w} needs {format_bytes(need)} of buffers; this machine has "
                              f"{format_bytes(have)} available: use smaller shapes")
