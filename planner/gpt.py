"""The built-in GPT-style model: what ``tilewise plan gpt-...`` traces and ``bench/plan_gloo.py`` trains.

A pre-norm decoder (GPT-2's layout): token + position embeddings, ``layers`` blocks of causal
self-attention (fused QKV GEMM, scaled dot-product attention, output GEMM) and a GELU MLP, a final
LayerNorm and an untied LM head with the cross-entropy loss.  The row-parallel GEMMs' biases are
separate parameters added after ``tp_exit`` so one class serves both the whole model and a
Megatron-style tensor-parallel shard: ``tp=t`` builds a rank's slice (heads / t, ffn / t) and the
caller passes ``tp_enter`` (identity forward, all-reduce backward: Megatron's f) and ``tp_exit``
(all-reduce forward, identity backward: g).

Named sizes: two small ones this machine trains, and published configurations (GPT-3 175B as in
Brown et al. 2020 and Narayanan et al. 2021; the 1T model of Narayanan et al. 2021) for the planner
to cost on paper -- traced on the meta device, nothing is allocated.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn
from torch.nn import functional as F


@dataclass(frozen=True)
class GPTConfig:
    hidden: int
    layers: int
    heads: int
    vocab: int
    seq_len: int
    ffn: int = 0                # 0: 4 x hidden
    dtype_bytes: int = 4        # 2: f16/bf16 with f32 master weights (mixed precision)
    vocab_parallel: bool = False  # Megatron's vocabulary-parallel embedding and head (the published runs)

    @property
    def ffn_size(self) -> int:
        return self.ffn or 4 * self.hidden


SIZES: dict[str, GPTConfig] = {
    "gpt-cpu-tiny": GPTConfig(hidden=64, layers=2, heads=2, vocab=512, seq_len=32),
    "gpt-cpu-small": GPTConfig(hidden=256, layers=4, heads=4, vocab=4096, seq_len=128),
    "gpt3-175b": GPTConfig(hidden=12288, layers=96, heads=96, vocab=51200, seq_len=2048, dtype_bytes=2,
                           vocab_parallel=True),
    "megatron-1t": GPTConfig(hidden=25600, layers=128, heads=160, vocab=51200, seq_len=2048, dtype_bytes=2,
                             vocab_parallel=True),
}

Hook = Callable[[torch.Tensor], torch.Tensor]


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


class Block(nn.Module):
    def __init__(self, c: GPTConfig, tp: int = 1, tp_enter: Hook = _identity, tp_exit: Hook = _identity):
        super().__init__()
        self.heads, self.head_dim = c.heads // tp, c.hidden // c.heads
        self.tp_enter, self.tp_exit = tp_enter, tp_exit
        self.ln1 = nn.LayerNorm(c.hidden)
        self.qkv = nn.Linear(c.hidden, 3 * c.hidden // tp)
        self.proj = nn.Linear(c.hidden // tp, c.hidden, bias=False)
        self.proj_bias = nn.Parameter(torch.zeros(c.hidden))
        self.ln2 = nn.LayerNorm(c.hidden)
        self.fc1 = nn.Linear(c.hidden, c.ffn_size // tp)
        self.fc2 = nn.Linear(c.ffn_size // tp, c.hidden, bias=False)
        self.fc2_bias = nn.Parameter(torch.zeros(c.hidden))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, s, _ = x.shape
        q, k, v = self.qkv(self.tp_enter(self.ln1(x))).view(b, s, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        a = a.transpose(1, 2).reshape(b, s, self.heads * self.head_dim)
        x = x + self.tp_exit(self.proj(a)) + self.proj_bias
        h = F.gelu(self.fc1(self.tp_enter(self.ln2(x))))
        return x + self.tp_exit(self.fc2(h)) + self.fc2_bias


class Embedding(nn.Module):
    def __init__(self, c: GPTConfig):
        super().__init__()
        self.tok = nn.Embedding(c.vocab, c.hidden)
        self.pos = nn.Embedding(c.seq_len, c.hidden)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.tok(idx) + self.pos(torch.arange(idx.shape[1], device=idx.device))


class Head(nn.Module):
    def __init__(self, c: GPTConfig):
        super().__init__()
        self.ln = nn.LayerNorm(c.hidden)
        self.out = nn.Linear(c.hidden, c.vocab, bias=False)

    def forward(self, x: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        logits = self.out(self.ln(x))
        return F.cross_entropy(logits.flatten(0, 1), targets.flatten())


class GPT(nn.Module):
    def __init__(self, c: GPTConfig, tp: int = 1, tp_enter: Hook = _identity, tp_exit: Hook = _identity):
        super().__init__()
        self.config = c
        self.embed = Embedding(c)
        self.blocks = nn.ModuleList(Block(c, tp, tp_enter, tp_exit) for _ in range(c.layers))
        self.head = Head(c)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        x = self.embed(idx)
        for block in self.blocks:
            x = block(x)
        return self.head(x, targets)


def spec_for(name: str, seq_len: int | None = None):
    """The traced :class:`~tilewise.planner.model.ModelSpec` of a named size (meta device)."""
    c = SIZES[name]
    if seq_len:
        c = GPTConfig(**{**c.__dict__, "seq_len": seq_len})
    return trace_config(c, name)


def trace_config(c: GPTConfig, name: str):
    from tilewise.planner.trace import trace_module
    dtype = torch.float16 if c.dtype_bytes == 2 else torch.float32
    with torch.device("meta"):
        model = GPT(c).to(dtype)
    return trace_module(model, c.seq_len, name=name, mixed_precision=c.dtype_bytes == 2,
                        call=lambda m, idx: m(idx, idx), vocab_parallel=c.vocab_parallel)
