"""The weight-only matmul's search space, and what the analytic features make of its candidates."""
import numpy as np
import pytest

from tilewise.core.candidate import Candidate
from tilewise.core.workload import Workload
from tilewise.features.base import create as create_features
from tilewise.tuner.space import SpaceOptions, space_for


@pytest.mark.parametrize("text", ["matmul:1x4096x4096:w4a32:g128", "matmul:8x4096x11008:w8a32:g64"])
def test_every_drawn_schedule_is_legal_for_the_op(text, fixed_target):
    w = Workload.parse(text)
    space = space_for(w, fixed_target, SpaceOptions(max_threads=2))
    rng = np.random.default_rng(0)
    for _ in range(200):
        w.kind.validate(w, space.sample(rng))
    assert space.knobs["precision"] == [w.dtype]          # the format is the workload's, not a knob
    assert all(kc == 0 or kc % 128 == 0 or 128 % kc == 0 for _, _, kc in space.knobs["tile"]) or w.kind.group(w) != 128


def test_a_decode_space_keeps_mr_to_one_and_threads_to_the_cap(fixed_target):
    w = Workload.parse("matmul:1x4096x4096:w4a32:g128")
    space = space_for(w, fixed_target, SpaceOptions(max_threads=2))
    assert {mr for mr, _ in space.knobs["reg_tile"]} == {1}
    assert space.knobs["threads"] == [1, 2] and space.knobs["parallel_dim"] == ["n"]


def test_the_features_count_the_weights_at_their_width(fixed_target):
    """elt_bytes is a weight's bytes with its share of the scale; log2_bytes the whole stream."""
    ext = create_features("analytic")
    names = ext.names()
    rows = {}
    for text in ("matmul:1x4096x4096:w4a32:g128", "matmul:1x4096x4096:w8a32:g32", "matmul:1x4096x4096:f32"):
        w = Workload.parse(text)
        s = w.kind.default_schedule(w, fixed_target)
        rows[w.dtype] = dict(zip(names, ext.extract([Candidate(w, s)], fixed_target)[0]))
    assert rows["w4a32"]["elt_bytes"] == pytest.approx(0.5 + 4 / 128)
    assert rows["w8a32"]["elt_bytes"] == pytest.approx(1 + 4 / 32)
    assert rows["f32"]["elt_bytes"] == 4
    w4_bytes = 4096 * 4 + 4096 * 4096 * (0.5 + 4 / 128) + 4096 * 4
    assert 2 ** rows["w4a32"]["log2_bytes"] == pytest.approx(w4_bytes, rel=1e-5)
    assert rows["w4a32"]["precision_f32"] == 1.0            # computed in f32
    assert rows["f32"]["log10_memory_s"] - rows["w4a32"]["log10_memory_s"] == pytest.approx(
        np.log10((4096 * 4096 * 4 + 8 * 4096) / w4_bytes), abs=1e-4)
