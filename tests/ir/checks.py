"""Shared check for op-kind tests: random legal schedules compile and match the reference."""
import numpy as np

from tilewise.ir import Workload, compile
from tilewise.profiling.measure import check, make_problem
from tilewise.tuner.space import SpaceOptions, space_for


def check_random_schedules(text: str, target, n: int = 20, seed: int = 0, max_threads: int = 2,
                           precisions=()) -> list:
    """Compile ``n`` distinct random schedules of ``text`` (plus its default and untuned ones),
    assert each matches the float64 reference within the op's tolerance; returns the schedules."""
    w = Workload.parse(text)
    space = space_for(w, target, SpaceOptions(max_threads=max_threads, precisions=tuple(precisions)))
    rng = np.random.default_rng(seed)
    schedules = {w.kind.default_schedule(w, target), w.kind.untuned_schedule(w)}
    tries = 0
    while len(schedules) < n + 2 and tries < 50 * n:
        schedules.add(space.sample(rng))
        tries += 1
    for s in schedules:
        precision = s.get("precision", w.dtype)
        problem = make_problem(w, precision, seed=1)
        kernel = compile(w, s)
        err = check(kernel, problem)
        bound = w.kind.tolerance(w, precision)
        assert err <= bound, f"{w} {s}: relative error {err:.3g} > {bound:.3g}"
    return sorted(schedules, key=lambda s: s.dumps())
