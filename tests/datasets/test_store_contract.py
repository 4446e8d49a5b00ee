"""The RecordStore contract (datasets/base.py), run over every backend in conftest.BACKENDS."""
import pytest

from tilewise.datasets import StoreError, open_store
from tilewise.core.workload import Workload

from .records import MATMUL, RELU, make_record


def test_append_then_query_fastest_first(store, target):
    records = [make_record(i, target=target) for i in range(12)]
    assert store.append(records) == 12
    got = store.query(Workload.parse(MATMUL), target)
    assert sorted(got, key=lambda r: r.schedule_key) == sorted(records, key=lambda r: r.schedule_key)
    medians = [r.measurement.median_s for r in got]
    assert medians == sorted(medians)


def test_top_k(store, target):
    records = [make_record(i, target=target) for i in range(10)]
    store.append(records)
    best3 = sorted(records, key=lambda r: r.measurement.median_s)[:3]
    assert store.query(Workload.parse(MATMUL), target, top_k=3) == best3
    assert store.query(Workload.parse(MATMUL), target, top_k=0) == []
    assert len(store.query(Workload.parse(MATMUL), target, top_k=100)) == 10


def test_status_filter(store, target):
    ok = [make_record(i, target=target) for i in range(3)]
    bad = [make_record(10, target=target, status="compile_error"), make_record(11, target=target, status="timeout")]
    store.append(ok + bad)
    w = Workload.parse(MATMUL)
    assert {r.measurement.status for r in store.query(w, target)} == {"ok"}
    assert store.query(w, target, status="timeout") == [bad[1]]
    everything = store.query(w, target, status=None)
    assert len(everything) == 5 and {r.measurement.status for r in everything[3:]} == {"compile_error", "timeout"}
    with pytest.raises(ValueError, match="unknown status 'OK'"):
        store.query(w, target, status="OK")


def test_query_is_per_workload(store, target):
    store.append([make_record(i, MATMUL, target) for i in range(3)] + [make_record(i, RELU, target) for i in range(2)])
    assert len(store.query(Workload.parse(MATMUL), target)) == 3
    assert {str(r.workload) for r in store.query(Workload.parse(RELU), target)} == {RELU}
    assert store.query(Workload.parse("matmul:64x64x32:f32"), target) == []


def test_iter_and_len_in_insertion_order(store, target):
    records = [make_record(i, MATMUL if i % 2 else RELU, target, "ok" if i % 3 else "invalid") for i in range(9)]
    for r in records:
        store.append([r])
    assert len(store) == 9
    assert list(store.iter()) == records
    assert list(store) == records


def test_duplicates_are_ignored_keeping_the_first(store, target):
    first = make_record(1, target=target)
    remeasured = make_record(2, target=target)
    remeasured = type(first)(first.workload, first.target, first.schedule, remeasured.measurement, first.timestamp + 60)
    assert first.keys == remeasured.keys and first != remeasured
    assert store.append([first]) == 1
    assert store.append([remeasured]) == 0
    assert store.append([make_record(5, target=target), make_record(5, target=target), first]) == 1
    assert len(store) == 2
    stored = store.query(Workload.parse(MATMUL), target, status=None)
    assert first in stored and remeasured not in stored


def test_target_aware(store, target, other_target):
    assert other_target.key() != target.key()
    mine = [make_record(i, target=target) for i in range(4)]
    store.append(mine)
    w = Workload.parse(MATMUL)
    assert store.query(w, other_target, status=None) == []
    assert store.keys(w, other_target) == set()
    assert not store.contains(w, other_target, mine[0].schedule)
    # the same schedule measured on the other CPU is a new record, and answers only for it
    theirs = make_record(0, target=other_target)
    assert store.append([theirs]) == 1
    assert store.query(w, other_target) == [theirs]
    assert theirs not in store.query(w, target) and len(store.query(w, target)) == 4


def test_keys_and_contains(store, target):
    records = [make_record(i, target=target, status="ok" if i else "invalid") for i in range(5)]
    store.append(records)
    w = Workload.parse(MATMUL)
    assert store.keys(w, target) == {r.schedule_key for r in records}
    assert store.contains(w, target, records[0].schedule)
    assert not store.contains(w, target, make_record(99).schedule)


def test_append_is_all_or_nothing(store, target):
    def batch():
        yield make_record(0, target=target)
        yield make_record(1, target=target)
        raise RuntimeError("the producer failed half-way")
    with pytest.raises(RuntimeError):
        store.append(batch())
    assert len(store) == 0
    assert store.append([]) == 0


def test_records_persist_across_reopen(store_url, target):
    records = [make_record(i, target=target) for i in range(3)]
    with open_store(store_url) as s:
        s.append(records)
    with open_store(store_url) as s:
        assert list(s.iter()) == records
        assert s.append(records) == 0


def test_closed_store_refuses_use(store_url, target):
    s = open_store(store_url)
    s.close()
    s.close()
    with pytest.raises(StoreError, match="closed"):
        s.append([make_record(0, target=target)])
    with pytest.raises(StoreError, match="closed"):
        len(s)
