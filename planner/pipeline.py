"""The critical path of the 1F1B pipeline schedule (PipeDream-Flush; Narayanan et al. 2021).

Stage ``s`` of ``p`` runs ``min(p - s - 1, m)`` warm-up forwards, then alternates one forward and
one backward until its ``m`` forwards are done, then drains the remaining backwards.  A forward of
micro-batch ``i`` on stage ``s`` waits for stage ``s-1``'s forward of ``i`` plus the p2p transfer
between them; a backward waits for stage ``s+1``'s backward of ``i`` plus the transfer (the last
stage's backward for its own forward).  A stage runs one op at a time, in that order; transfers do
not occupy the sender (sends are asynchronous).  The schedule is simulated event by event, so
unequal stages and costly links give the true critical path, not the ``(m + p - 1) x max stage``
bound.  Past :data:`SIMULATE_MAX_EVENTS` ops (thousands of micro-batches over tens of stages, a
published cluster's plans) :func:`finish_times` uses the closed form instead: fill and drain
through every stage once, the slowest stage for the other ``m - 1`` micro-batches, and a transfer
each way per hop -- exact for equal stages, and within one stage time of the simulation otherwise.
"""
from __future__ import annotations

from typing import Sequence


def order(stage: int, stages: int, micro_batches: int) -> list[tuple[str, int]]:
    """The ops stage ``stage`` runs, in order: ("F", i) / ("B", i)."""
    warm = min(stages - stage - 1, micro_batches)
    ops = [("F", i) for i in range(warm)]
    f, b = warm, 0
    while b < micro_batches:
        if f < micro_batches:
            ops.append(("F", f))
            f += 1
        ops.append(("B", b))
        b += 1
    return ops


def simulate(fwd_s: Sequence[float], bwd_s: Sequence[float], p2p_s: Sequence[float],
             micro_batches: int) -> list[float]:
    """Each stage's finish time of one 1F1B step.  ``p2p_s[s]`` is the transfer between stages s and s+1."""
    p = len(fwd_s)
    queues = [order(s, p, micro_batches) for s in range(p)]
    done: dict[tuple[str, int, int], float] = {}
    clock = [0.0] * p
    pos = [0] * p
    remaining = sum(len(q) for q in queues)
    while remaining:
        progressed = False
        for s in range(p):
            while pos[s] < len(queues[s]):
                kind, i = queues[s][pos[s]]
                if kind == "F":
                    dep = 0.0 if s == 0 else done.get(("F", s - 1, i))
                    dep = dep if s == 0 or dep is None else dep + p2p_s[s - 1]
                    dur = fwd_s[s]
                else:
                    dep = done.get(("F", s, i)) if s == p - 1 else done.get(("B", s + 1, i))
                    dep = dep if s == p - 1 or dep is None else dep + p2p_s[s]
                    dur = bwd_s[s]
                if dep is None:
                    break
                clock[s] = max(clock[s], dep) + dur
                done[(kind, s, i)] = clock[s]
                pos[s] += 1
                remaining -= 1
                progressed = True
        if not progressed:
            raise RuntimeError("1F1B schedule deadlocked")   # cannot happen for a well-formed order
    return clock


SIMULATE_MAX_EVENTS = 20000


def closed_form(fwd_s: Sequence[float], bwd_s: Sequence[float], p2p_s: Sequence[float], micro_batches: int) -> float:
    """``sum_s (F_s + B_s) + (m - 1) max_s (F_s + B_s) + 2 sum(p2p)``: the first stage's finish."""
    per = [f + b for f, b in zip(fwd_s, bwd_s)]
    return sum(per) + (micro_batches - 1) * max(per) + 2 * sum(p2p_s)


def finish_times(fwd_s: Sequence[float], bwd_s: Sequence[float], p2p_s: Sequence[float],
                 micro_batches: int) -> list[float]:
    """Each stage's finish: simulated, or every stage at the closed form's end when the schedule is large."""
    if 2 * len(fwd_s) * micro_batches <= SIMULATE_MAX_EVENTS:
        return simulate(fwd_s, bwd_s, p2p_s, micro_batches)
    return [closed_form(fwd_s, bwd_s, p2p_s, micro_batches)] * len(fwd_s)
