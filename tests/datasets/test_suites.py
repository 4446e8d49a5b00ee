"""The named suites: every shape parses into a workload whose kernel arguments can be built."""
from __future__ import annotations

import pytest

from tilewise.datasets.suites import SUITES, expand
from tilewise.core.workload import Workload


@pytest.mark.parametrize("name", sorted(SUITES))
def test_every_suite_workload_is_valid(name):
    ws = SUITES[name]
    assert ws and len(ws) == len(set(ws)), f"suite {name} is empty or repeats a shape"
    for text in ws:
        w = Workload.parse(text)
        assert str(w) == text, "suites hold canonical workload strings"
        assert w.flops > 0 and w.kind.args(w, w.dtype)


def test_aggregate_suites_and_model_shapes():
    assert set(SUITES["transformers"]) == set(expand("suite:bert-base,suite:bert-large,suite:gpt2,suite:llama-7b,"
                                                     "suite:llama-13b,suite:mistral-7b,suite:vit-b16,suite:vit-l16"))
    assert set(SUITES["cnn"]) == set(SUITES["resnet18"]) | set(SUITES["resnet50"]) | set(SUITES["mobilenet"])
    patch = Workload.parse(SUITES["vit-b16"][0]).kind.geometry(Workload.parse(SUITES["vit-b16"][0]))
    assert (patch["oh"], patch["ow"], patch["f"]) == (14, 14, 768)          # 196 patches of 768
    assert "matmul:197x2304x768:f32" in SUITES["vit-b16"]                   # + the class token
    assert "matmul:32x1024x4096:f32" in SUITES["mistral-7b"]                 # 8 kv heads of 128
    assert "matmul:1x13824x5120:f32" in SUITES["llama-13b"]
