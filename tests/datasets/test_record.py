import dataclasses
import json

import pytest

from tilewise.core.record import Record, RecordError
from tilewise.core.schedule import Schedule
from tilewise.core.workload import Workload
from tilewise.core.measurement import Measurement

from .records import RELU, make_record


def test_json_round_trip(target):
    for r in (make_record(3, target=target), make_record(4, RELU, target, status="compile_error")):
        d = r.to_json()
        assert json.loads(json.dumps(d)) == d            # plain JSON, no custom types
        assert Record.from_json(d) == r
        assert Record.loads(r.dumps()) == r
        assert Record.loads(r.dumps()).dumps() == r.dumps()


def test_keys_are_the_component_keys(target):
    r = make_record(1, target=target)
    assert r.workload_key == Workload.parse("matmul:64x64x64:f32").key()
    assert r.target_key == target.key()
    assert r.schedule_key == r.schedule.key()
    assert r.keys == (r.workload_key, r.target_key, r.schedule_key)


def test_versions_default_to_the_targets(target):
    r = make_record(1, target=target)
    assert r.versions == tuple(sorted(target.versions))
    explicit = dataclasses.replace(r, versions=(("torch-mlir", "1"), ("tilewise", "2")))
    assert explicit.versions == (("tilewise", "2"), ("torch-mlir", "1"))
    assert Record.from_json(explicit.to_json()).versions == explicit.versions


def test_record_is_frozen(target):
    r = make_record(1, target=target)
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.timestamp = 0.0


def test_unknown_schema_version_is_refused_clearly(target):
    d = make_record(1, target=target).to_json()
    with pytest.raises(RecordError, match="record schema version 2 is not supported: this tilewise reads version 1"):
        Record.from_json(dict(d, schema_version=2))
    with pytest.raises(RecordError, match="schema version None"):
        Record.from_json({k: v for k, v in d.items() if k != "schema_version"})
    with pytest.raises(RecordError, match="lacks the field 'measurement'"):
        Record.from_json({k: v for k, v in d.items() if k != "measurement"})
    with pytest.raises(RecordError, match="^record: target schema version 3 is not supported: this tilewise reads 1"):
        Record.from_json(dict(d, target=dict(d["target"], schema_version=3)))
    with pytest.raises(RecordError, match="^record: measurement schema 7 is not supported"):
        Record.from_json(dict(d, measurement=dict(d["measurement"], schema_version=7)))


def test_untimed_measurement_round_trips(target):
    r = Record(Workload.parse(RELU), target, Schedule(tile=[8, 8]), Measurement("timeout", "no result after 10 s"), 5.0)
    back = Record.from_json(json.loads(json.dumps(r.to_json())))
    assert back == r and back.measurement.times_s == () and back.measurement.median_s == float("inf")
