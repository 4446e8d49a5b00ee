"""A model as the planner sees it: a sequence of layers, each a list of ops at micro-batch 1.

Pipeline stages cut between layers; tensor parallelism splits inside them.  Every quantity is per
*sample* of a micro-batch (the planner scales by the micro-batch size ``b``), and each op says how a
Megatron-style tensor-parallel split of ``t`` ways shrinks it:

* ``linear`` (a ``[tokens, k] x [k, n]`` GEMM): ``column`` splits ``n``, ``row`` splits ``k`` (the row
  half is followed by an all-reduce of its output), ``none`` is replicated on every TP rank;
* ``attention`` (scaled dot-product attention over ``heads`` heads): heads split;
* ``bmm`` (batched GEMM, eager attention): the batch splits;
* ``pointwise`` (everything else: norms, activations, softmax, adds): ``bytes`` read+written and the
  op ``count``; ``split`` ones shrink by ``t``, the others (norms, residual adds) do not.

A layer also holds its parameter count (split and replicated parts), the activation bytes autograd
saves for backward (split and replicated parts), its output bytes (what a pipeline stage boundary
sends), and how many all-reduces of its output one TP forward and backward needs (two each for a
transformer block: after attention's and the MLP's row-parallel GEMM; Megatron's f and g).

``ModelSpec`` comes from :func:`tilewise.planner.trace.trace_module` (any torch module), from a
built-in GPT size or an HF config (:func:`load_model`); it is JSON-serialisable like every
persisted form.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

SCHEMA_VERSION = 1
OP_KINDS = ("linear", "attention", "bmm", "pointwise")
SPLITS = ("column", "row", "heads", "split", "none")


class ModelError(ValueError):
    """A MODEL argument the planner cannot build or trace."""


@dataclass(frozen=True)
class Op:
    kind: str                 # linear | attention | bmm | pointwise
    split: str = "none"       # column | row (linear), heads (attention), split | none (bmm, pointwise)
    tokens: int = 0           # linear: rows per sample; attention: sequence length
    k: int = 0                # linear/bmm: reduction dim; attention: head dim
    n: int = 0                # linear/bmm: output columns
    batch: int = 0            # bmm: batch per sample; attention: heads
    m: int = 0                # bmm: rows
    causal: bool = False      # attention
    bytes: float = 0.0        # pointwise: bytes read + written per sample
    count: int = 1            # pointwise: how many ops this entry stands for

    @property
    def flops(self) -> float:
        """Forward FLOPs per sample, unsplit."""
        if self.kind == "linear":
            return 2.0 * self.tokens * self.k * self.n
        if self.kind == "bmm":
            return 2.0 * self.batch * self.m * self.k * self.n
        if self.kind == "attention":
            return 4.0 * self.batch * self.tokens * self.tokens * self.k * (0.5 if self.causal else 1.0)
        return 0.0

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v not in (0, 0.0, False, "none") or k == "kind"}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "Op":
        if d.get("kind") not in OP_KINDS:
            raise ModelError(f"op kind {d.get('kind')!r}: expected one of {', '.join(OP_KINDS)}")
        return cls(**d)


@dataclass(frozen=True)
class Layer:
    name: str
    ops: tuple[Op, ...]
    params_split: int = 0             # parameters divided over TP ranks
    params_replicated: int = 0        # parameters every TP rank holds (norms, biases of row GEMMs, ...)
    act_split_bytes: float = 0.0      # activations saved for backward per sample, divided over TP ranks
    act_replicated_bytes: float = 0.0
    out_bytes: float = 0.0            # the layer's output per sample (a stage boundary's message)
    tp_allreduces: int = 0            # all-reduces of out_bytes per forward (and as many per backward)
    temp_bytes: float = 0.0           # the largest op output per sample (transient backward buffers)

    @property
    def params(self) -> int:
        return self.params_split + self.params_replicated

    @property
    def flops(self) -> float:
        return sum(op.flops for op in self.ops)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "ops": [op.to_json() for op in self.ops], "params_split": self.params_split,
                "params_replicated": self.params_replicated, "act_split_bytes": self.act_split_bytes,
                "act_replicated_bytes": self.act_replicated_bytes, "out_bytes": self.out_bytes,
                "tp_allreduces": self.tp_allreduces, "temp_bytes": self.temp_bytes}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "Layer":
        return cls(**{**d, "ops": tuple(Op.from_json(o) for o in d["ops"])})


@dataclass(frozen=True)
class ModelSpec:
    name: str
    layers: tuple[Layer, ...]
    seq_len: int
    hidden: int
    heads: int
    dtype_bytes: int = 4              # activations and weights (4: f32; 2: f16/bf16 mixed precision)
    mixed_precision: bool = False     # f32 master weights in the optimizer state (Megatron's fp16/bf16)
    meta: dict = field(default_factory=dict, compare=False)

    @property
    def params(self) -> int:
        return sum(layer.params for layer in self.layers)

    @property
    def flops_per_sample(self) -> float:
        """Forward FLOPs of one sample (training is about 3x: forward plus a twice-as-costly backward)."""
        return sum(layer.flops for layer in self.layers)

    def to_json(self) -> dict[str, Any]:
        return {"schema_version": SCHEMA_VERSION, "name": self.name, "seq_len": self.seq_len, "hidden": self.hidden,
                "heads": self.heads, "dtype_bytes": self.dtype_bytes, "mixed_precision": self.mixed_precision,
                "layers": [layer.to_json() for layer in self.layers]}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "ModelSpec":
        if d.get("schema_version") != SCHEMA_VERSION:
            raise ModelError(f"model spec schema_version {d.get('schema_version')!r}; expected {SCHEMA_VERSION}")
        return cls(name=d["name"], layers=tuple(Layer.from_json(x) for x in d["layers"]), seq_len=d["seq_len"],
                   hidden=d["hidden"], heads=d["heads"], dtype_bytes=d.get("dtype_bytes", 4),
                   mixed_precision=d.get("mixed_precision", False))


def load_model(spec: str, seq_len: int | None = None) -> ModelSpec:
    """MODEL as the CLI takes it: a built-in GPT size (``gpt-cpu-small``, ``gpt3-175b``, ...), an HF
    config (``hf:gpt2``; overrides after a colon: ``hf:llama`` + ``:hidden_size=512,num_hidden_layers=4``),
    or ``pkg.mod:Class`` (built with no arguments).  Torch modules are traced on the meta device:
    nothing is allocated."""
    from tilewise.planner import gpt
    if spec in gpt.SIZES:
        return gpt.spec_for(spec, seq_len=seq_len)
    from tilewise.planner import trace
    if spec.startswith("hf:"):
        module, seq = trace.build_hf(spec[3:])
        return trace.trace_module(module, seq_len or seq, name=spec)
    if ":" in spec:
        return trace.trace_module(trace.build_class(spec), seq_len or 128, name=spec)
    raise ModelError(f"MODEL {spec!r}: use a built-in size ({', '.join(gpt.SIZES)}), hf:FAMILY[:KEY=VALUE,...] "
                     f"(FAMILY gpt2, llama or mistral) or pkg.mod:Class")
