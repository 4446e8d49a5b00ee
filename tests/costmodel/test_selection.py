"""Which cost model a tuner starts from (``tilewise.costmodel.selection``): the embedded model on a
target like the one it was trained on, else a fresh xgb that ranks by the roofline."""
from __future__ import annotations

import dataclasses

import pytest

from tilewise.costmodel import create as create_model
from tilewise.costmodel.selection import (embedded_model_fits, embedded_training_targets, features_transfer,
                                          resolve_model)


def test_embedded_model_fit_decision(target):
    trained = embedded_training_targets()
    assert trained, "the embedded dataset records the target the embedded model was trained on"
    home = trained[0]
    assert embedded_model_fits(home)[0]
    assert embedded_model_fits(target)[0] == features_transfer(home, target)[0]
    # same kind of machine, another exact key (cores, caches, name, versions): fits
    sibling = dataclasses.replace(home, name="Some other " + home.name, cores=home.cores * 4,
                                  cache_bytes=(("L1d", 32768), ("L2", 524288)), versions=(("tilewise", "9"),))
    assert sibling.key() != home.key()
    assert embedded_model_fits(sibling) == (True, features_transfer(home, sibling)[1])
    foreign = dataclasses.replace(home, name="Neoverse", arch="aarch64", isa=(), simd_bits=128)
    fits, reason = embedded_model_fits(foreign)
    assert not fits and "arch x86_64 vs aarch64" in reason and "SIMD width" in reason
    narrower = dataclasses.replace(home, isa=("avx", "avx2", "fma", "sse4_2"), simd_bits=256)
    assert not embedded_model_fits(narrower)[0]


def test_resolve_model_of_an_instance_and_of_nothing(target):
    given = create_model("roofline")
    assert resolve_model(given, target) == (given, "instance:roofline", "the cost model given")
    home = embedded_training_targets()[0]
    foreign = dataclasses.replace(home, name="Neoverse", arch="aarch64", isa=(), simd_bits=128)
    model, source, reason = resolve_model(None, foreign)
    assert model.name == "xgb" and not model.fitted and source.startswith("roofline→xgb (embedded model trained on")
    assert reason.endswith(embedded_model_fits(foreign)[1])
    model, source, _ = resolve_model(None, home)
    assert source == "embedded" and model.fitted
    with pytest.raises(TypeError, match="model must be"):
        resolve_model(3, target)
