"""Contract tests over every built-in extractor, and hand-computed analytic values."""
import math

import numpy as np
import pytest

from tilewise.features import base
from tilewise.features.analytic import AnalyticFeatures
from tilewise.features.ir_tokens import IRTokenFeatures
from tilewise.ir import Workload
from tilewise.core.schedule import Schedule
from tilewise.core.candidate import Candidate
from tests.features.helpers import TARGET


def cand(text: str, **knobs) -> Candidate:
    return Candidate(Workload.parse(text), Schedule(knobs))


def mixed_batch() -> list[Candidate]:
    """One candidate of every op family (small shapes: the ``ir`` extractor transforms each)."""
    return [
        cand("matmul:16x32x8:f32", tile=[8, 16, 0], reg_tile=[4, 16], vectorize=True),
        cand("batch_matmul:2x8x16x8:f32", tile=[8, 16, 8], reg_tile=[2, 16], threads=2, parallel_dim="b"),
        cand("conv2d_nhwc:1x6x6x4,3x3x4x16:f32", reg_tile=[2, 16], c_tile=2),
        cand("relu:8x40:f32", tile=2, vector=16),
        cand("softmax:4x40:f32", tile=2, vector=16),
        cand("reduce_sum:4x40:f32", tile=2, vector=8),
    ]


def fake_transform(w, s):
    return "module {\n  func.func @kernel() {\n    return\n  }\n}\n"


EXTRACTORS = {
    "analytic": AnalyticFeatures,
    "ir": lambda: IRTokenFeatures(transform=fake_transform),
    "target": lambda: base.create("target"),
}


@pytest.mark.parametrize("name", sorted(EXTRACTORS))
def test_names_match_width_and_rows_are_fixed_length(name):
    ex = EXTRACTORS[name]()
    names = ex.names()
    assert len(names) == len(set(names))
    x = ex.extract(mixed_batch(), TARGET)
    assert x.dtype == np.float32 and x.shape == (6, len(names))
    assert np.isfinite(x).all()
    assert ex.extract([], TARGET).shape == (0, len(names))


def test_create_concatenates_with_prefixed_names():
    ex = base.create("analytic, ir ,target")
    names = ex.names()
    x = ex.extract(mixed_batch()[:3], TARGET)      # real transforms: ~50 ms each
    assert x.shape == (3, len(names))
    assert names[0].startswith("analytic.") and names[-1].startswith("target.")
    assert sum(n.startswith("ir.") for n in names) == len(IRTokenFeatures().names())
    assert np.isfinite(x).all()


def test_unknown_extractor_names_the_available_ones():
    with pytest.raises(ValueError) as e:
        base.create("analytic,bogus")
    for known in ("analytic", "ir", "target"):
        assert known in str(e.value)


def test_deterministic_and_order_preserving():
    batch = mixed_batch()
    a = AnalyticFeatures().extract(batch, TARGET)
    b = AnalyticFeatures().extract(batch[::-1], TARGET)[::-1]
    one_by_one = np.concatenate([AnalyticFeatures().extract([c], TARGET) for c in batch])
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, one_by_one)


def test_missing_knobs_take_the_op_defaults():
    ex = AnalyticFeatures()
    bare = ex.extract([cand("matmul:64x64x64:f32"), cand("conv2d_nhwc:1x8x8x4,3x3x4x8:f32"),
                       cand("gelu:8x32:f32")], TARGET)
    explicit = ex.extract([
        cand("matmul:64x64x64:f32", tile=[0, 0, 0], reg_tile=[1, 1], interchange=[0, 1, 2], promote=False,
             vectorize=True, unroll=1, threads=1, parallel_dim="n", precision="f32"),
        cand("conv2d_nhwc:1x8x8x4,3x3x4x8:f32", tile=[0, 0, 0, 0], reg_tile=[1, 1], c_tile=1, vectorize=True,
             threads=1, parallel_dim="oh", precision="f32"),
        cand("gelu:8x32:f32", tile=1, vector=1, vectorize=True, threads=1)], TARGET)
    np.testing.assert_array_equal(bare, explicit)


def features(c: Candidate) -> dict[str, float]:
    ex = AnalyticFeatures()
    return dict(zip(ex.names(), ex.extract([c], TARGET)[0].tolist()))


def test_matmul_values_by_hand():
    # 64x96x80, two threads split n: each thread's share is 64 x 48 x 80
    f = features(cand("matmul:64x96x80:f32", tile=[32, 48, 0], reg_tile=[4, 16], unroll=2, threads=2,
                      parallel_dim="n", interchange=[1, 0, 2]))
    assert f["family_contraction"] == 1 and f["family_conv"] == 0
    assert f["log2_dim_p1"] == pytest.approx(6) and f["log2_dim_p2"] == pytest.approx(math.log2(96))
    assert f["log2_cache_p1"] == pytest.approx(5)                        # Mc = 32
    assert f["log2_cache_r"] == pytest.approx(math.log2(80))             # Kc = 0: all of k
    assert f["log2_cache_trips_p1"] == pytest.approx(1)                  # 64 / 32
    assert f["log2_cache_trips_p2"] == pytest.approx(0)                  # 48 / 48
    assert f["log2_reg_trips_p1"] == pytest.approx(3)                    # 32 / 4
    assert f["log2_reg_trips_p2"] == pytest.approx(math.log2(3))         # 48 / 16
    assert f["log2_reg_trips_r"] == pytest.approx(math.log2(40))         # 80 / unroll 2
    assert f["log2_cache_bytes_in0"] == pytest.approx(math.log2(32 * 80 * 4))   # A: Mc x Kc
    assert f["log2_cache_bytes_in1"] == pytest.approx(math.log2(80 * 48 * 4))   # B: Kc x Nc
    assert f["log2_cache_bytes_out"] == pytest.approx(math.log2(32 * 48 * 4))   # C: Mc x Nc
    assert f["log2_cache_bytes_over_L1d"] == pytest.approx(math.log2((10240 + 15360 + 6144) / 32768), abs=1e-5)
    assert f["log2_reg_bytes_in1"] == pytest.approx(math.log2(2 * 16 * 4))      # unroll 2 x nr
    assert f["accumulators"] == 4 and f["vec_multiple"] == 1 and f["lane_use"] == 1
    assert f["load_imbalance"] == 1 and f["split_p2"] == 1 and f["threads"] == 2
    assert f["rem_total"] == 0 and f["interchange_nmk"] == 1 and f["unroll"] == 2
    assert f["log2_flops"] == pytest.approx(math.log2(2 * 64 * 96 * 80), abs=1e-4)
    assert f["log2_bytes"] == pytest.approx(math.log2((64 * 80 + 80 * 96 + 64 * 96) * 4), abs=1e-4)
    # ideal compute time: 2 cores x 16 lanes x 2 FMA units x 2 flops x 3 GHz
    assert f["log10_compute_s"] == pytest.approx(math.log10(2 * 64 * 96 * 80 / (2 * 16 * 2 * 2 * 3e9)), abs=1e-4)


def test_matmul_two_d_thread_grid():
    # 4 threads as a 2 x 2 grid over m and n: each thread's share is 32 x 48 x 80
    f = features(cand("matmul:64x96x80:f32", tile=[32, 48, 0], reg_tile=[4, 16], threads=4, parallel_dim="mn"))
    assert f["split_p0"] == 0 and f["split_p1"] == 1 and f["split_p2"] == 1 and f["threads"] == 4
    assert f["log2_cache_trips_p1"] == pytest.approx(0)                  # 32 / 32
    assert f["log2_cache_trips_p2"] == pytest.approx(0)                  # 48 / 48
    assert f["load_imbalance"] == 1


def test_matmul_remainders_and_precision():
    # m = 10 in tiles of 4: one partial cache tile of 2 rows; reg tile 3 rows: 4 = 3 + 1, 2 = 0 + 2
    f = features(cand("matmul:10x32x16:f32", tile=[4, 0, 0], reg_tile=[3, 24], precision="bf16"))
    assert f["cache_rem_p1"] == pytest.approx(0.2)
    assert f["reg_rem_p1"] == pytest.approx((2 * 1 + 2) / 10)
    assert f["reg_rem_p2"] == pytest.approx(8 / 32)                      # 32 = 24 + 8
    assert f["vec_multiple"] == 0 and f["lane_use"] == pytest.approx(24 / 32)
    assert f["accumulators"] == 3 * 2
    assert f["elt_bytes"] == 2 and f["out_bytes"] == 4 and f["precision_bf16"] == 1
    assert f["log2_cache_bytes_in0"] == pytest.approx(math.log2(4 * 16 * 2))


def test_conv_values_by_hand():
    # 10x10x8 input, 3x3x8x32 filter, no padding: 8x8 output
    f = features(cand("conv2d_nhwc:1x10x10x8,3x3x8x32:f32", tile=[4, 8, 16, 8], reg_tile=[4, 16], c_tile=2))
    assert f["family_conv"] == 1
    assert f["log2_dim_r"] == pytest.approx(math.log2(3 * 3 * 8))
    assert f["log2_filter_taps"] == pytest.approx(math.log2(9))
    assert f["log2_cache_bytes_in0"] == pytest.approx(math.log2(6 * 10 * 8 * 4))  # (4-1+3) x (8-1+3) x 8 halo
    assert f["log2_cache_bytes_in1"] == pytest.approx(math.log2(3 * 3 * 8 * 16 * 4))
    assert f["log2_cache_bytes_out"] == pytest.approx(math.log2(4 * 8 * 16 * 4))
    assert f["log2_reg_bytes_in0"] == pytest.approx(math.log2(4 * 2 * 4))        # 4 pixels x 2 channels
    assert f["log2_cache_trips_p0"] == pytest.approx(1) and f["log2_cache_trips_p2"] == pytest.approx(1)
    assert f["log2_reg_trips_p1"] == pytest.approx(1) and f["log2_reg_trips_r"] == pytest.approx(2)
    assert f["accumulators"] == 4


def test_rowwise_values_by_hand():
    f = features(cand("add:10x100:f32", tile=4, vector=16, threads=3))
    assert f["family_elementwise"] == 1
    assert f["cache_rem_p2"] == pytest.approx(0.04)                      # 100 = 6 x 16 + 4
    assert f["cache_rem_p1"] == pytest.approx(0.0)                       # a thread's 4 rows: one tile
    assert f["load_imbalance"] == pytest.approx(4 * 3 / 10)              # shares 4, 4, 2
    assert f["log2_cache_bytes_in1"] == pytest.approx(math.log2(4 * 16 * 4))
    assert f["accumulators"] == 4
    f = features(cand("reduce_sum:6x40:f32", tile=2, vector=16))
    assert f["family_reduction"] == 1 and f["cache_rem_r"] == pytest.approx(0.2)
    assert f["log2_cache_bytes_out"] == pytest.approx(math.log2(2 * 4))  # one f32 per row
    assert f["log2_cache_bytes_in1"] == pytest.approx(-30)               # no second input
    f = features(cand("softmax:2x8x100:f32", tile=4, vector=32))
    assert f["family_softmax"] == 1
    assert f["log2_cache_bytes_in0"] == pytest.approx(math.log2(4 * 100 * 4))   # 4 whole rows
    assert f["log2_reg_bytes_in0"] == pytest.approx(math.log2(32 * 4))
    assert f["reg_rem_r"] == pytest.approx(0.04)


def test_memory_layout_by_hand():
    # B rows 1024 f32 = 4 KiB apart: every row of a Kc = 64 sweep falls in one L1 set (32 KiB L1:
    # 8 ways of 64 sets), 64 rows over 8 lines; one page per row
    f = features(cand("matmul:64x1024x80:f32", tile=[32, 128, 64], reg_tile=[4, 16]))
    assert f["log2_row_stride_in0"] == pytest.approx(math.log2(320)) and f["row_align_in0"] == 6
    assert f["log2_l1_sets_in0"] == 6                                   # 320 = 5 lines: all 64 sets
    assert f["row_align_in1"] == 12 and f["log2_l1_sets_in1"] == 0
    assert f["log2_rows_over_l1_in1"] == pytest.approx(3)                # 64 rows / (1 set x 8 ways)
    assert f["log2_pages_in1"] == pytest.approx(6)
    assert f["log2_rows_over_l1_out"] == pytest.approx(-1)               # mr = 4 rows of C
    assert f["log2_pack_per_fma"] == pytest.approx(-30)
    # promoted: B is read from its 128-wide packed panel (512 bytes a row: 8 sets), copied once per Mc rows
    f = features(cand("matmul:64x1024x80:f32", tile=[32, 128, 64], reg_tile=[4, 16], promote=True))
    assert f["row_align_in1"] == 9 and f["log2_l1_sets_in1"] == 3
    assert f["log2_rows_over_l1_in1"] == pytest.approx(0)                # 64 rows / (8 sets x 8 ways)
    assert f["log2_pages_in1"] == pytest.approx(3)                       # 64 x 512 bytes = 8 pages
    assert f["log2_pack_per_fma"] == pytest.approx(-5)                   # 1 / Mc
    # rows of 400 bytes: not line-aligned, so they spread over every set; a 4-row tile reads 4 runs
    # unless its vector covers the whole row
    f = features(cand("add:10x100:f32", tile=4, vector=16))
    assert f["row_align_in0"] == 4 and f["log2_l1_sets_in0"] == 6
    assert f["log2_rows_over_l1_in0"] == pytest.approx(2 - 9) and f["log2_pages_in0"] == 0
    f = features(cand("add:10x100:f32", tile=4, vector=128))
    assert f["log2_rows_over_l1_in0"] == pytest.approx(0 - 9)


def test_target_features():
    ex = base.create("target")
    row = dict(zip(ex.names(), ex.extract(mixed_batch()[:1], TARGET)[0].tolist()))
    assert row["cores"] == 2 and row["simd_bits"] == 512 and row["vector_registers"] == 32
    assert row["log2_L1d_bytes"] == 15 and row["log2_L2_bytes"] == 20
    assert row["isa_avx512f"] == 1 and row["isa_amx_tile"] == 0 and row["kind_cpu"] == 1


def test_unknown_op_is_refused():
    from tilewise.features.views import family_of

    class Fake:
        op = "transpose"
    with pytest.raises(ValueError, match="transpose"):
        family_of(Fake())
