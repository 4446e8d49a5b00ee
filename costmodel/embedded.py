"""The embedded default cost model: xgb on analytic features, trained on the embedded dataset
(``tilewise/datasets/data/embedded_v4.jsonl.gz``) with the default workload split (seed 0), so
``tilewise eval`` can score it on the workloads it never saw.

Rebuild with ``python -m tilewise.costmodel.embedded``.
"""
from __future__ import annotations

from pathlib import Path

EMBEDDED_MODEL = Path(__file__).resolve().parent / "data" / "embedded_xgb.twmodel"


def build() -> dict:
    from tilewise.costmodel.training import EMBEDDED, train
    return train(EMBEDDED, model="xgb", features="analytic", out=EMBEDDED_MODEL, split="workload", seed=0)


if __name__ == "__main__":
    import json
    print(json.dumps(build()["metrics"], indent=2))
