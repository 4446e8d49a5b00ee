"""Which cost model fits a target: the embedded one when it was trained on a machine like this one,
else a fresh one that ranks by the roofline until it is fitted.

The embedded xgb model (:mod:`tilewise.costmodel.embedded`) reads analytic features: lanes,
register counts and cache-fit estimates computed from the target.  Those transfer between
machines of the same kind, arch, SIMD width and vector-ISA family (:func:`features_transfer`); core
count, caches and tool versions may differ.  The model file's header names its training targets
by key, and the embedded dataset's records carry the full :class:`Target` of each key
(:func:`embedded_training_targets`).

:func:`resolve_model` turns a tuner's ``model`` option into ``(model, source, reason)``: an
instance as given, a path loaded (a file trained on features this tilewise extracts differently is
refused with :class:`ModelFileError`), ``None`` the embedded model if it fits, else a fresh ``xgb``
on ``analytic`` features.  ``source`` and ``reason`` say what was chosen and why (for the CLI).
"""
from __future__ import annotations

import functools
import gzip
import json
import os

from tilewise.core.target import Target
from tilewise.costmodel.base import CostModel, create, load_model


def isa_family(t: Target) -> str:
    """The widest vector ISA a kernel compiled for ``t`` uses (what the analytic features' lanes
    and register counts stand for)."""
    isa = set(t.isa)
    for family, flags in (("avx512", {"avx512f"}), ("avx2+fma", {"avx2", "fma"}), ("avx2", {"avx2"}),
                          ("avx", {"avx"}), ("sse4_2", {"sse4_2"})):
        if flags <= isa:
            return family
    # kept as a string test: Target has no GPU predicate, and "kind" is what the package compares
    return t.isa[0] if t.kind == "cuda" and t.isa else "scalar"


def describe_target(t: Target) -> str:
    return f"{t.name} ({t.arch}, {isa_family(t)}, {t.simd_bits}-bit SIMD)"


def features_transfer(trained: Target, here: Target) -> tuple[bool, str]:
    """Whether a model trained on ``trained`` ranks schedules on ``here``: same kind, arch, SIMD
    width and ISA family (the exact key -- cores, caches, versions -- may differ)."""
    diffs = [f"{what} {a} vs {b}" for what, a, b in (
        ("kind", trained.kind, here.kind), ("arch", trained.arch, here.arch),
        ("SIMD width", trained.simd_bits, here.simd_bits), ("ISA family", isa_family(trained), isa_family(here)))
        if a != b]
    if diffs:
        return False, f"trained on {describe_target(trained)}, this is {describe_target(here)}: {', '.join(diffs)}"
    return True, (f"trained on {describe_target(trained)}: same arch, SIMD width and ISA family as "
                  f"this {describe_target(here)}")


@functools.lru_cache(maxsize=4)
def _dataset_targets(path: str, wanted: frozenset[str]) -> tuple[Target, ...]:
    """The targets of ``wanted`` keys among a record file's records (stops once all are found)."""
    found: dict[str, Target] = {}
    seen_json: set[str] = set()
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        for line in fh:
            if not line.strip():
                continue
            raw = json.dumps(json.loads(line)["target"], sort_keys=True)
            if raw in seen_json:
                continue
            seen_json.add(raw)
            t = Target.from_json(json.loads(raw))
            if t.key() in wanted:
                found[t.key()] = t
                if len(found) == len(wanted):
                    break
    return tuple(found.values())


def embedded_training_targets(model_path: str | os.PathLike | None = None,
                              dataset_path: str | os.PathLike | None = None) -> tuple[Target, ...]:
    """The targets the embedded model was trained on: its file's header names them by key, the
    embedded dataset's records carry the full :class:`Target` of each key (empty if unknown)."""
    from tilewise.costmodel.embedded import EMBEDDED_MODEL
    from tilewise.costmodel.fileformat import ModelFileError, read_header
    from tilewise.datasets.embedded import EMBEDDED_DATASET
    try:
        keys = (read_header(model_path or EMBEDDED_MODEL).get("trained_on") or {}).get("targets") or []
    except ModelFileError:
        return ()
    if not keys:
        return ()
    return _dataset_targets(os.fspath(dataset_path or EMBEDDED_DATASET), frozenset(keys))


def embedded_model_fits(target: Target, model_path: str | os.PathLike | None = None,
                        dataset_path: str | os.PathLike | None = None) -> tuple[bool, str]:
    """``(fits, reason)``: whether the embedded model was trained on a target like ``target``
    (:func:`features_transfer` for any of its training targets)."""
    trained = embedded_training_targets(model_path, dataset_path)
    if not trained:
        return False, "the embedded model is missing or its training target is not recorded in the embedded dataset"
    verdicts = [features_transfer(t, target) for t in trained]
    return next((v for v in verdicts if v[0]), verdicts[0])


def resolve_model(model: CostModel | str | os.PathLike | None, target: Target) -> tuple[CostModel, str, str]:
    """``(model, source, reason)`` for a tuner's ``model`` option (module docstring)."""
    if isinstance(model, CostModel):
        return model, f"instance:{model.name}", "the cost model given"
    if isinstance(model, (str, os.PathLike)):
        return load_model(model), f"file:{os.fspath(model)}", "the cost-model file given"
    if model is not None:
        raise TypeError(f"model must be a CostModel, a path to a model file or None, not {type(model).__name__}")
    from tilewise.costmodel.embedded import EMBEDDED_MODEL
    fits, reason = embedded_model_fits(target)
    if fits:
        return load_model(EMBEDDED_MODEL), "embedded", f"the embedded xgb model, {reason}"
    trained = embedded_training_targets()
    source = (f"roofline→xgb (embedded model trained on {describe_target(trained[0])}, "
              f"this is {describe_target(target)})" if trained else "roofline→xgb (no embedded model)")
    return (create("xgb", features="analytic"), source,
            f"a fresh xgb model, ranking by the roofline until it is fitted: the embedded model {reason}")
