import pytest

from tilewise.ir import Schedule, ScheduleError, Workload, WorkloadError


def test_canonical_string_round_trip():
    for text in ["matmul:512x512x512:f32", "batch_matmul:12x128x128x64:bf16", "matmul:7x9x11:i8"]:
        w = Workload.parse(text)
        assert str(w) == text
        assert Workload.parse(str(w)) == w
        assert Workload.from_json(w.to_json()) == w


def test_key_is_sha256_of_canonical_mlir():
    import hashlib
    w = Workload.parse("matmul:64x32x16:f32")
    assert w.key() == hashlib.sha256(w.mlir().encode()).hexdigest()
    assert w.key() == Workload.parse("matmul:64x32x16:f32").key()
    assert w.key() != Workload.parse("matmul:64x32x16:f16").key()
    assert w.key() != Workload.parse("matmul:32x64x16:f32").key()


def test_mlir_is_linalg_on_tensors():
    text = Workload.parse("matmul:64x32x16:f32").mlir()
    assert "linalg.matmul" in text and "tensor<64x16xf32>" in text and "tensor<16x32xf32>" in text
    assert "linalg.fill" in text


@pytest.mark.parametrize("text,fragment", [
    ("matmul", "expected OP:SHAPES:DTYPE"),
    ("matmul:512x512:f32", "expects shapes MxNxK"),
    ("matmul:512xx512x512:f32", "malformed shape"),
    ("matmul:0x512x512:f32", ">= 1"),
    ("matmul:512x512x512:f64", "does not support dtype"),
    ("matmull:512x512x512:f32", "unknown op"),
    ("matmul:512x512x512:f32:stride", "malformed attribute"),
    ("batch_matmul:4x4x4:f32", "BxMxNxK"),
])
def test_malformed_workloads_say_what_is_wrong(text, fragment):
    with pytest.raises(WorkloadError, match=fragment):
        Workload.parse(text)


@pytest.mark.parametrize("knobs,fragment", [
    ({"tile": [1024, 0, 0], "reg_tile": [4, 16]}, r"tile\[0\]=1024 is out of range"),
    ({"reg_tile": [4, 0]}, r"reg_tile\[1\]=0 is out of range"),
    ({"reg_tile": [4]}, "expected a list of 2 integers"),
    ({"tile": [64, 32, 0], "reg_tile": [4, 64]}, "exceeds the cache tile"),
    ({"reg_tile": [4, 16], "interchange": [0, 0, 1]}, "permutation"),
    ({"reg_tile": [4, 16], "threads": 0}, "threads=0"),
    ({"reg_tile": [4, 16], "promote": True}, "promote needs a cache tile"),
    ({"reg_tile": [4, 16], "precision": "i8"}, "precision='i8' is not available"),
    ({"reg_tile": [4, 16], "tile_size": [1]}, "has no knob 'tile_size'"),
])
def test_impossible_schedules_are_rejected(knobs, fragment):
    w = Workload.parse("matmul:512x512x512:f32")
    with pytest.raises(ScheduleError, match=fragment):
        w.kind.validate(w, Schedule(knobs))


def test_schedule_is_a_hashable_value():
    a = Schedule(tile=[64, 64, 0], reg_tile=[4, 16])
    b = Schedule({"reg_tile": (4, 16), "tile": (64, 64, 0)})
    assert a == b and hash(a) == hash(b) and len({a, b}) == 1
    assert Schedule.from_json(a.to_json()) == a
    assert a.key() == b.key()
    with pytest.raises(AttributeError):
        a.foo = 1
