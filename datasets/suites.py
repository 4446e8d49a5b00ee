"""Named suites of real workload shapes (``suite:NAME`` in ``tilewise collect --workloads``).

Shapes come from the published model configurations:

* BERT-base (hidden 768, 12 heads, FFN 3072) at 128, 384 (SQuAD) and 512 tokens, BERT-large
  (1024, 16 heads, 4096) at 128 and 512 tokens; GPT-2 small (768, 12 heads, FFN 3072, vocab 50257) at 128 and 1024 tokens;
  LLaMA-7B (4096, 32 heads of 128, FFN 11008) at 1, 32 and 128 tokens (decode and prefill),
  LLaMA-13B (5120, 40 heads, FFN 13824) and Mistral-7B (4096, 32 query heads sharing 8 key/value
  heads, FFN 14336) at 1 and 32 tokens;
* ViT-B/16 and ViT-L/16 at 224x224 (197 tokens: 196 patches and the class token; hidden 768, 12
  heads, MLP 3072 / hidden 1024, 16 heads, MLP 4096) and their 16x16 stride-16 patch embeddings;
* ResNet-18 (its 3x3 and strided 1x1 shortcut convolutions that ResNet-50 does not have),
  ResNet-50 and MobileNet-v1 convolutions at batch 1, 224x224 input (MobileNet's depthwise
  convolutions are grouped and not a ``conv2d_nhwc``; only its dense/pointwise layers are here);
* attention batch-matmuls (Q K^T and P V per head) and the elementwise, reduction and softmax
  shapes those models run.

Canonical forms: ``matmul:MxNxK`` (M tokens, N outputs, K inputs), ``batch_matmul:BxMxNxK``.
"""
from __future__ import annotations

import re

_STARTS_WORKLOAD = re.compile(r"^[a-z][a-z_0-9]*:")    # "matmul:..." or "suite:...", not "3x3x4x8:f32"


def _transformer(hidden: int, heads: int, ffn: int, tokens: int, seq: int | None = None) -> list[str]:
    seq = seq or tokens
    head = hidden // heads
    out = [
        f"matmul:{tokens}x{3 * hidden}x{hidden}:f32",      # fused QKV projection
        f"matmul:{tokens}x{hidden}x{hidden}:f32",          # attention output projection
        f"matmul:{tokens}x{ffn}x{hidden}:f32",             # FFN up
        f"matmul:{tokens}x{hidden}x{ffn}:f32",             # FFN down
        f"batch_matmul:{heads}x{seq}x{seq}x{head}:f32",    # Q K^T
        f"batch_matmul:{heads}x{seq}x{head}x{seq}:f32",    # P V
        f"softmax:{heads}x{seq}x{seq}:f32",
        f"gelu:{tokens}x{ffn}:f32",
        f"add:{tokens}x{hidden}:f32",                      # residual
        f"reduce_sum:{tokens}x{hidden}:f32",               # layer-norm statistics
    ]
    return out


def _llama(tokens: int, h: int = 4096, ffn: int = 11008, heads: int = 32, kv_heads: int | None = None) -> list[str]:
    head = h // heads
    kv = (kv_heads or heads) * head
    return [
        f"matmul:{tokens}x{h}x{h}:f32",                    # q, k, v, o projections
        *([f"matmul:{tokens}x{kv}x{h}:f32"] if kv != h else []),   # k, v of grouped-query attention
        f"matmul:{tokens}x{ffn}x{h}:f32",                  # gate and up
        f"matmul:{tokens}x{h}x{ffn}:f32",                  # down
        f"batch_matmul:{heads}x{tokens}x{max(tokens, 128)}x{head}:f32",   # Q K^T against a 128+ cache
        f"mul:{tokens}x{ffn}:f32",                         # SwiGLU gate * up
        f"reduce_sum:{tokens}x{h}:f32",                    # RMSNorm statistics
        f"mul:{tokens}x{h}:f32",                           # RMSNorm: normalized x * weight
        f"add:{tokens}x{h}:f32",                           # residual
        f"softmax:{heads}x{tokens}x{max(tokens, 128)}:f32",  # attention scores
    ]


RESNET50 = [
    "conv2d_nhwc:1x224x224x3,7x7x3x64:f32:pad=3,stride=2",
    "conv2d_nhwc:1x56x56x64,1x1x64x64:f32",
    "conv2d_nhwc:1x56x56x64,3x3x64x64:f32:pad=1",
    "conv2d_nhwc:1x56x56x64,1x1x64x256:f32",
    "conv2d_nhwc:1x56x56x256,1x1x256x64:f32",
    "conv2d_nhwc:1x56x56x256,1x1x256x128:f32",
    "conv2d_nhwc:1x56x56x128,3x3x128x128:f32:pad=1,stride=2",
    "conv2d_nhwc:1x28x28x128,3x3x128x128:f32:pad=1",
    "conv2d_nhwc:1x28x28x128,1x1x128x512:f32",
    "conv2d_nhwc:1x28x28x512,1x1x512x128:f32",
    "conv2d_nhwc:1x14x14x256,3x3x256x256:f32:pad=1",
    "conv2d_nhwc:1x14x14x256,1x1x256x1024:f32",
    "conv2d_nhwc:1x14x14x1024,1x1x1024x256:f32",
    "conv2d_nhwc:1x7x7x512,3x3x512x512:f32:pad=1",
    "conv2d_nhwc:1x7x7x512,1x1x512x2048:f32",
    "conv2d_nhwc:1x7x7x2048,1x1x2048x512:f32",
    "matmul:1x1000x2048:f32",
    # the activations after each stage's convolutions, and the residual adds
    "relu:1x112x112x64:f32",
    "relu:1x56x56x64:f32",
    "relu:1x56x56x256:f32",
    "relu:1x28x28x128:f32",
    "relu:1x28x28x512:f32",
    "relu:1x14x14x256:f32",
    "relu:1x14x14x1024:f32",
    "relu:1x7x7x512:f32",
    "relu:1x7x7x2048:f32",
    "add:1x56x56x256:f32",
    "add:1x28x28x512:f32",
    "add:1x14x14x1024:f32",
    "add:1x7x7x2048:f32",
]

RESNET18 = [
    "conv2d_nhwc:1x224x224x3,7x7x3x64:f32:pad=3,stride=2",
    "conv2d_nhwc:1x56x56x64,3x3x64x64:f32:pad=1",
    "conv2d_nhwc:1x56x56x64,3x3x64x128:f32:pad=1,stride=2",
    "conv2d_nhwc:1x56x56x64,1x1x64x128:f32:stride=2",
    "conv2d_nhwc:1x28x28x128,3x3x128x128:f32:pad=1",
    "conv2d_nhwc:1x28x28x128,3x3x128x256:f32:pad=1,stride=2",
    "conv2d_nhwc:1x28x28x128,1x1x128x256:f32:stride=2",
    "conv2d_nhwc:1x14x14x256,3x3x256x256:f32:pad=1",
    "conv2d_nhwc:1x14x14x256,3x3x256x512:f32:pad=1,stride=2",
    "conv2d_nhwc:1x14x14x256,1x1x256x512:f32:stride=2",
    "conv2d_nhwc:1x7x7x512,3x3x512x512:f32:pad=1",
    "matmul:1x1000x512:f32",
    "relu:1x112x112x64:f32",
    "relu:1x56x56x64:f32",
    "relu:1x28x28x128:f32",
    "relu:1x14x14x256:f32",
    "relu:1x7x7x512:f32",
    "add:1x56x56x64:f32",
    "add:1x28x28x128:f32",
    "add:1x14x14x256:f32",
    "add:1x7x7x512:f32",
]

MOBILENET = [
    "conv2d_nhwc:1x224x224x3,3x3x3x32:f32:pad=1,stride=2",
    "conv2d_nhwc:1x112x112x32,1x1x32x64:f32",
    "conv2d_nhwc:1x56x56x64,1x1x64x128:f32",
    "conv2d_nhwc:1x56x56x128,1x1x128x128:f32",
    "conv2d_nhwc:1x28x28x128,1x1x128x256:f32",
    "conv2d_nhwc:1x28x28x256,1x1x256x256:f32",
    "conv2d_nhwc:1x14x14x256,1x1x256x512:f32",
    "conv2d_nhwc:1x14x14x512,1x1x512x512:f32",
    "conv2d_nhwc:1x7x7x512,1x1x512x1024:f32",
    "conv2d_nhwc:1x7x7x1024,1x1x1024x1024:f32",
    "matmul:1x1000x1024:f32",
    # ReLU6 after each pointwise convolution (a relu's shape and traffic)
    "relu:1x112x112x32:f32",
    "relu:1x112x112x64:f32",
    "relu:1x56x56x128:f32",
    "relu:1x28x28x256:f32",
    "relu:1x14x14x512:f32",
    "relu:1x7x7x1024:f32",
]


def _dedupe(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


SUITES: dict[str, list[str]] = {
    "bert-base": _dedupe(_transformer(768, 12, 3072, 128) + _transformer(768, 12, 3072, 384)
                         + _transformer(768, 12, 3072, 512)),
    "bert-large": _dedupe(_transformer(1024, 16, 4096, 128) + _transformer(1024, 16, 4096, 512)),
    "gpt2": _dedupe(_transformer(768, 12, 3072, 128) + _transformer(768, 12, 3072, 1024)
                    + ["matmul:128x50257x768:f32"]),
    "llama-7b": _dedupe(_llama(1) + _llama(32) + _llama(128)),
    "llama-13b": _dedupe(_llama(1, 5120, 13824, 40) + _llama(32, 5120, 13824, 40)),
    "mistral-7b": _dedupe(_llama(1, 4096, 14336, 32, 8) + _llama(32, 4096, 14336, 32, 8)),
    "vit-b16": _dedupe(["conv2d_nhwc:1x224x224x3,16x16x3x768:f32:stride=16"]   # patch embedding
                       + _transformer(768, 12, 3072, 197)),
    "vit-l16": _dedupe(["conv2d_nhwc:1x224x224x3,16x16x3x1024:f32:stride=16"]
                       + _transformer(1024, 16, 4096, 197)),
    "resnet18": RESNET18,
    "resnet50": RESNET50,
    "mobilenet": MOBILENET,
    "attention": _dedupe([f"batch_matmul:{h}x{s}x{s}x{d}:f32" for h, d in ((12, 64), (16, 64), (32, 128))
                          for s in (128, 256, 512)]
                         + [f"softmax:{h}x{s}x{s}:f32" for h in (12, 16) for s in (128, 512)]),
    "small": ["matmul:128x128x128:f32", "matmul:96x200x64:f32", "batch_matmul:4x64x64x32:f32",
              "conv2d_nhwc:1x14x14x32,3x3x32x32:f32:pad=1", "relu:256x512:f32", "softmax:64x128:f32",
              "reduce_sum:128x256:f32"],
}
SUITES["transformers"] = _dedupe(SUITES["bert-base"] + SUITES["bert-large"] + SUITES["gpt2"] + SUITES["llama-7b"]
                                 + SUITES["llama-13b"] + SUITES["mistral-7b"] + SUITES["vit-b16"] + SUITES["vit-l16"])
SUITES["cnn"] = _dedupe(RESNET18 + RESNET50 + MOBILENET)


def expand(spec: str) -> list[str]:
    """``suite:NAME`` or comma-separated workload strings (suites may be mixed in) -> workloads."""
    out: list[str] = []
    for part in _split(spec):
        if part.startswith("suite:"):
            name = part[len("suite:"):]
            if name not in SUITES:
                raise ValueError(f"unknown suite {name!r}: available suites are {', '.join(sorted(SUITES))}")
            out += SUITES[name]
        elif part:
            out.append(part)
    return _dedupe(out)


def _split(spec: str) -> list[str]:
    """Split on spaces and on commas that separate workloads (a conv's shapes contain a comma too:
    ``conv2d_nhwc:1x8x8x4,3x3x4x8:f32`` is one workload)."""
    parts: list[str] = []
    for token in spec.replace(";", " ").split():
        current = ""
        for piece in token.split(","):
            if current and _STARTS_WORKLOAD.match(piece):
                parts.append(current)
                current = piece
            else:
                current = f"{current},{piece}" if current else piece
        if current:
            parts.append(current)
    return parts
