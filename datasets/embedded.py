"""The embedded dataset: measurements shipped with tilewise, so a new user gets a trained model
without collecting.

``data/embedded_v4.jsonl.gz`` holds one ``Record.to_json()`` per line.  It was collected on one
machine with ``tilewise collect`` over the named suites (the workload list and the command are in
``data/embedded_v4.README``); its records carry that machine's ``Target``, so they answer for that
target only — models trained on them still rank schedules elsewhere, which is what the tuner uses
them for.
"""
from __future__ import annotations

import gzip
import json
import os
from pathlib import Path
from typing import Iterator

DATA_DIR = Path(__file__).resolve().parent / "data"
EMBEDDED_DATASET = DATA_DIR / "embedded_v4.jsonl.gz"
#: every shipped dataset file, one per CPU the records were measured on (each file's README names it)
SHIPPED_DATASETS = (EMBEDDED_DATASET, DATA_DIR / "embedded_zen4_v1.jsonl.gz", DATA_DIR / "embedded_zen3_v1.jsonl.gz")


#: the measured ceilings of the shipped datasets' CPUs, by target key (each entry says how)
SHIPPED_CEILINGS = DATA_DIR / "targets.json"


def shipped_ceilings() -> dict[str, dict[str, float]]:
    """``{target key: {figure: value}}`` of :data:`SHIPPED_CEILINGS`."""
    with open(SHIPPED_CEILINGS, encoding="utf-8") as f:
        data = json.load(f)
    if data.get("schema_version") != 1:
        raise ValueError(f"{SHIPPED_CEILINGS}: schema version {data.get('schema_version')!r} is not 1")
    return {k: {str(n): float(v) for n, v in t["measured"].items()} for k, t in data["targets"].items()}


def embedded_records(path: str | os.PathLike = EMBEDDED_DATASET) -> Iterator:
    """Every record of the shipped dataset (or of another file in the same format); a record whose
    target carries no measured ceilings gets its CPU's from :data:`SHIPPED_CEILINGS` (the features
    relative to the hardware read them; keys and equality do not change)."""
    import dataclasses
    from tilewise.core.record import Record
    ceilings = shipped_ceilings()
    #: each distinct target of the file, with its ceilings (a Target's hash and equality ignore its
    #: peaks, as its key does; hashing it is ~100x cheaper than the key's sha256 per record)
    with_peaks: dict = {}
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                r = Record.from_json(json.loads(line))
                if not r.target.peaks:
                    if r.target not in with_peaks:
                        figures = ceilings.get(r.target.key())
                        with_peaks[r.target] = dataclasses.replace(
                            r.target, peaks=tuple(sorted(figures.items()))) if figures else r.target
                    r = dataclasses.replace(r, target=with_peaks[r.target])
                yield r


def thin_times(record, k: int):
    """``record`` with at most ``k`` of its timings: the order statistics at ``k`` evenly spaced
    ranks (the fastest, the slowest and, for odd ``k``, the median among them), so the median and
    quantiles a model or a report reads stay put while a record of 5000 pooled runs takes 65."""
    import dataclasses
    times = sorted(record.measurement.times_s)
    if len(times) <= k:
        return record
    last = len(times) - 1
    kept = tuple(times[round(i * last / (k - 1))] for i in range(k))
    return dataclasses.replace(record, measurement=dataclasses.replace(record.measurement, times_s=kept))


def write_records(records, path: str | os.PathLike, max_times: int | None = None) -> int:
    """Write records as gzipped JSON lines, atomically (temp file, then rename); ``max_times``
    thins each record's timings (:func:`thin_times`)."""
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    n = 0
    with gzip.open(tmp, "wt", encoding="utf-8", compresslevel=9) as fh:
        for r in records:
            if max_times is not None:
                r = thin_times(r, max_times)
            fh.write(json.dumps(r.to_json(), sort_keys=True, separators=(",", ":")) + "\n")
            n += 1
    os.replace(tmp, path)
    return n


def pool_collections(*collections) -> list:
    """Records of one set of schedules measured in independent collections (each a sequence of
    records; e.g. two ``tilewise collect --rounds R`` runs with the same seed) -> one record per
    schedule, in the first collection's order, whose measurement pools them all
    (:func:`~tilewise.profiling.measure.pool_measurements`).  Raises ValueError, naming an example,
    when the collections do not hold the same (workload, target, schedule) keys."""
    import dataclasses
    from tilewise.core.measurement import pool_measurements

    def key(r) -> tuple:
        return r.workload_key, r.target_key, r.schedule_key
    lists = [list(c) for c in collections]
    indexes = [{key(r): r for r in c} for c in lists]
    if any(len(index) != len(c) for c, index in zip(lists, indexes)):
        raise ValueError("collections to pool must hold the same schedules once each: "
                         "a schedule measured twice in one collection")
    for index in indexes[1:]:
        odd = set(indexes[0]) ^ set(index)
        if odd:
            raise ValueError(f"collections to pool must hold the same schedules once each: {next(iter(odd))}")
    return [dataclasses.replace(r, measurement=pool_measurements([ix[k].measurement for ix in indexes]))
            for k, r in indexes[0].items()]
