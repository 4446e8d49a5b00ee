"""The ``ir`` extractor: tokenization on hand-written text, the cache, failures, a real transform."""
import math
import zlib

import numpy as np
import pytest

from tilewise.features.ir_tokens import BIGRAM_BUCKETS, NAMES, IRTokenFeatures, ir_features
from tilewise.ir import Workload
from tilewise.ir.ops.base import ScheduleError
from tilewise.core.schedule import Schedule
from tilewise.core.candidate import Candidate
from tests.features.helpers import TARGET

TEXT = """\
module {
  func.func @kernel(%arg0: memref<64x80xf32>) {
    %c0 = arith.constant 0 : index
    %c4 = arith.constant 4 : index
    %c1 = arith.constant 1 : index
    scf.for %arg1 = %c0 to %c4 step %c1 {
      scf.for %arg2 = %c0 to %c4 step %c1 {
        %1 = vector.load %arg0[%arg1, %arg2] : memref<64x80xf32>, vector<16xf32>
        %2 = vector.fma %1, %1, %1 : vector<16xf32>
      }
    }
    return
  }
}
"""


def row(text: str) -> dict[str, float]:
    return {n: pytest.approx(v) for n, v in zip(NAMES, ir_features(text).tolist())}


def test_static_and_dynamic_counts():
    r = row(TEXT)
    assert r["op_scf_for"] == math.log1p(2) and r["op_vector_fma"] == math.log1p(1)
    assert r["op_arith_constant"] == math.log1p(3)
    assert r["op_other"] == math.log1p(2)                   # func.func, func.return
    assert r["dyn_vector_fma"] == math.log1p(16)            # inside a 4 x 4 nest
    assert r["dyn_vector_load"] == math.log1p(16)
    assert r["loop_depth"] == 2 and r["innermost_ops"] == math.log1p(2)
    assert r["lanes_9_16"] == math.log1p(2)                 # vector<16xf32> twice
    assert r["elt_f32"] == math.log1p(4)                    # two memrefs, two vectors
    assert r["transform_failed"] == 0


def test_bigrams_use_a_stable_hash():
    r = dict(zip(NAMES, ir_features(TEXT).tolist()))
    bucket = zlib.crc32(b"vector.load|vector.fma") % BIGRAM_BUCKETS
    assert r[f"bigram_{bucket}"] >= math.log1p(1)
    total = sum(math.expm1(r[f"bigram_{i}"]) for i in range(BIGRAM_BUCKETS))
    assert round(total) == 9                                # one per op, including the first


def test_failure_is_a_row_not_an_exception_and_rows_are_cached():
    calls = []

    def transform(w, s):
        calls.append(s)
        if s.get("reg_tile") == (99, 99):
            raise ScheduleError("reg_tile too large")
        return TEXT

    ex = IRTokenFeatures(transform=transform)
    w = Workload.parse("matmul:16x16x16:f32")
    good, bad = Candidate(w, Schedule(reg_tile=[2, 16])), Candidate(w, Schedule(reg_tile=[99, 99]))
    x = ex.extract([good, bad, good], TARGET)
    assert len(calls) == 2                                  # the repeat came from the cache
    np.testing.assert_array_equal(x[0], x[2])
    failed = NAMES.index("transform_failed")
    assert x[1, failed] == 1 and x[1].sum() == 1 and x[0, failed] == 0


def test_real_transform_counts_every_fma():
    # 16x32x8 in 3x16 register tiles (peeled rows included): 16 * 32 * 8 / 16 lanes = 256 vector FMAs executed
    c = Candidate(Workload.parse("matmul:16x32x8:f32"), Schedule(tile=[8, 16, 0], reg_tile=[3, 16]))
    r = dict(zip(NAMES, IRTokenFeatures().extract([c], TARGET)[0].tolist()))
    assert math.expm1(r["dyn_vector_fma"]) == pytest.approx(256, rel=1e-5)
    assert r["loop_depth"] >= 3 and r["transform_failed"] == 0
