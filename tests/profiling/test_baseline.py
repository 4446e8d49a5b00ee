"""The baseline process: numpy's kernel, or a tilewise schedule served the same way (how a peer's
kernel in another runtime is timed side by side with tilewise's, bench/tvm_matmul.py)."""
import pytest

from tilewise.core.schedule import Schedule
from tilewise.core.workload import Workload
from tilewise.profiling.baseline import BaselineProcess
from tilewise.core.target import detect

pytestmark = pytest.mark.jit


def test_serves_numpy_and_a_checked_tilewise_kernel():
    w = Workload.parse("matmul:96x80x64:f32")
    s = w.kind.default_schedule(w, detect())
    with BaselineProcess(str(w), 1, 0) as numpy_side, BaselineProcess(str(w), 1, 0, schedule=s) as tw:
        assert numpy_side.name == "numpy" and tw.name == f"tilewise {s.key()[:12]}"
        for side in (numpy_side, tw):
            times = side.time(4)
            assert len(times) >= 4 and all(t > 0 for t in times)


def test_an_illegal_schedule_ends_the_child_with_its_error():
    w = Workload.parse("matmul:96x80x64:f32")
    default = w.kind.default_schedule(w, detect())
    bad = Schedule.from_json(dict(default.to_json(), tile=[7, 7, 7]))
    n = default["reg_tile"][1]          # one vector register's lanes (or two): 8 on AVX2, 16 on AVX-512
    assert n > 7
    with pytest.raises(RuntimeError, match=f"^baseline process died: the tilewise schedule does not build: reg_tile n={n} exceeds the cache tile n=7$"):
        BaselineProcess(str(w), 1, 0, schedule=bad)
