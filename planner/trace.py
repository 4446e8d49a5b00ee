"""Trace a torch module to the planner's layers (:mod:`tilewise.planner.model`) on the meta device.

One forward pass at micro-batch 1 with three observers, nothing allocated:

* module hooks keep the stack of running modules: which layer an op belongs to (the largest
  ``nn.ModuleList`` holds the blocks; what runs before the first is the ``embedding`` layer, after
  the last the ``head``), and which GEMMs are column- or row-parallel under Megatron's split -- a
  linear-like module (a leaf with a 2-D ``weight``) whose input is a norm's output (``*Norm*``) is
  column-parallel (QKV, fc1, gate/up), any other linear in a block is row-parallel (attention's
  output, fc2, down) and is followed by a TP all-reduce;
* a dispatch mode records the aten ops: ``mm``/``addmm`` as linear GEMMs, ``bmm``/``baddbmm`` as
  batched GEMMs, every other non-view op as pointwise bytes (in + out); a function mode records
  ``scaled_dot_product_attention`` as one attention op (on a real CPU it is one fused kernel);
* saved-tensor hooks count the bytes autograd keeps for backward (each storage once, parameters
  excluded): saved by a norm or as a column GEMM's input it is replicated over TP ranks, anything
  else saved inside a block is split.  Outside the blocks (embedding, head) everything is
  replicated by default: the embedding and the LM head whole on every TP rank (as
  ``bench/plan_gloo.py`` runs them).  ``vocab_parallel=True`` traces Megatron's vocabulary-parallel
  embedding and head instead: the token table and the head's weight split over the vocabulary,
  the head's GEMM column-parallel and its logits (and the loss's saved tensors) split, one TP
  all-reduce each (the embedding's output; the head's input gradient).
"""
from __future__ import annotations

import importlib
from typing import Any, Callable

import torch
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

from tilewise.planner.model import Layer, ModelError, ModelSpec, Op

_VIEWS = {"view", "_unsafe_view", "t", "transpose", "expand", "permute", "reshape", "slice", "select", "unsqueeze",
          "squeeze", "split", "split_with_sizes", "unbind", "alias", "detach", "as_strided", "lift_fresh",
          "empty", "empty_like", "empty_strided", "zeros", "ones", "full", "arange", "scalar_tensor",
          "zeros_like", "ones_like", "full_like", "lift_fresh_copy"}


def _is_norm(m: nn.Module) -> bool:
    return "Norm" in type(m).__name__


def _is_linear(m: nn.Module) -> bool:
    w = getattr(m, "weight", None)
    return (isinstance(w, torch.Tensor) and w.dim() == 2 and not list(m.children())
            and "Embedding" not in type(m).__name__)


def _bytes(x: Any) -> float:
    if isinstance(x, torch.Tensor):
        return float(x.numel() * x.element_size())
    if isinstance(x, (list, tuple)):
        return sum(_bytes(y) for y in x)
    return 0.0


def _first_tensor(x: Any) -> torch.Tensor | None:
    if isinstance(x, torch.Tensor):
        return x
    if isinstance(x, (list, tuple)):
        for y in x:
            t = _first_tensor(y)
            if t is not None:
                return t
    if hasattr(x, "values") and callable(x.values):
        for y in x.values():
            t = _first_tensor(y)
            if t is not None:
                return t
    return None


class _Tracer:
    def __init__(self, module: nn.Module, vocab_parallel: bool = False):
        self.vocab_parallel = vocab_parallel
        blocks = [m for m in module.modules() if isinstance(m, nn.ModuleList)]
        if not blocks:
            raise ModelError(f"{type(module).__name__} has no nn.ModuleList of blocks to cut into pipeline stages")
        self.blocks = max(blocks, key=lambda ml: sum(p.numel() for p in ml.parameters()))
        self.block_index = {id(b): i for i, b in enumerate(self.blocks)}
        self.n = len(self.blocks)
        self.layer = 0                                   # 0 embedding, 1..n blocks, n+1 head
        self.stack: list[nn.Module] = []
        self.norm_out: set[int] = set()
        self.column: set[int] = set()
        self.ops: list[list[Op]] = [[] for _ in range(self.n + 2)]
        self.act = [[0.0, 0.0] for _ in range(self.n + 2)]      # [split, replicated]
        self.out_bytes = [0.0] * (self.n + 2)
        self.allreduces = [0] * (self.n + 2)
        self.temp = [0.0] * (self.n + 2)
        self.seen: set[int] = set()
        self.param_storages = {p.untyped_storage()._cdata for p in module.parameters()}
        self.in_attention = False
        self.hidden = 0

    # -- module hooks ----------------------------------------------------------------------------
    def pre(self, m, args, kwargs):
        self.stack.append(m)
        i = self.block_index.get(id(m))
        if i is not None:
            self.layer = i + 1
            if i == 0:
                self.out_bytes[0] = _bytes(_first_tensor((args, kwargs)))
        if _is_linear(m):
            x = _first_tensor((args, kwargs))
            if x is not None and id(x) in self.norm_out:
                self.column.add(id(m))
            elif 1 <= self.layer <= self.n:
                self.allreduces[self.layer] += 1
        if _is_norm(m) and getattr(m, "weight", None) is not None:
            self.hidden = int(m.weight.shape[-1])

    def post(self, m, args, kwargs, out):
        self.stack.pop()
        if _is_norm(m):
            t = _first_tensor(out)
            if t is not None:
                self.norm_out.add(id(t))
        i = self.block_index.get(id(m))
        if i is not None:
            self.out_bytes[i + 1] = _bytes(_first_tensor(out))
            if i == self.n - 1:
                self.layer = self.n + 1

    def inside(self, pred) -> nn.Module | None:
        for m in reversed(self.stack):
            if pred(m):
                return m
        return None

    @property
    def in_block(self) -> bool:
        return 1 <= self.layer <= self.n

    @property
    def splits(self) -> bool:
        """Whether ops running now are divided over TP ranks (blocks; the head when vocab-parallel)."""
        return self.in_block or (self.vocab_parallel and self.layer == self.n + 1)

    # -- ops -------------------------------------------------------------------------------------
    def linear_split(self) -> str:
        lin = self.inside(_is_linear)
        if lin is None or not self.splits:
            return "none"
        return "column" if id(lin) in self.column else "row"

    def record(self, name: str, args, out) -> None:
        if self.in_attention or name in _VIEWS:
            return
        self.temp[self.layer] = max(self.temp[self.layer], _bytes(out))
        ops = self.ops[self.layer]
        if name in ("mm", "addmm"):
            x, w = (args[1], args[2]) if name == "addmm" else (args[0], args[1])
            ops.append(Op("linear", self.linear_split(), tokens=int(x.shape[0]), k=int(x.shape[1]), n=int(w.shape[1])))
        elif name in ("bmm", "baddbmm"):
            x, w = (args[1], args[2]) if name == "baddbmm" else (args[0], args[1])
            ops.append(Op("bmm", "split" if self.splits else "none", batch=int(x.shape[0]), m=int(x.shape[1]),
                          k=int(x.shape[2]), n=int(w.shape[2])))
        else:
            nbytes = _bytes(list(args)) + _bytes(out)
            if nbytes:
                ops.append(Op("pointwise", self.pointwise_split(out), bytes=nbytes))

    def pointwise_split(self, out) -> str:
        t = _first_tensor(out)
        if not self.splits or self.inside(_is_norm) is not None or t is None:
            return "none"
        return "split" if t.dim() >= 4 or (t.dim() and int(t.shape[-1]) != self.hidden) else "none"

    def attention(self, q: torch.Tensor, causal: bool) -> None:
        self.ops[self.layer].append(Op("attention", "heads" if self.in_block else "none", tokens=int(q.shape[-2]),
                                       k=int(q.shape[-1]), batch=int(q.shape[1]), causal=causal))

    def saved(self, t: torch.Tensor) -> None:
        key = t.untyped_storage()._cdata
        if key in self.param_storages or key in self.seen:
            return
        self.seen.add(key)
        nbytes = float(t.untyped_storage().nbytes())
        replicated = (not self.splits or self.inside(_is_norm) is not None
                      or id(self.inside(_is_linear)) in self.column)
        self.act[self.layer][1 if replicated else 0] += nbytes


class _Dispatch(TorchDispatchMode):
    def __init__(self, tracer: _Tracer):
        super().__init__()
        self.tracer = tracer

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        self.tracer.record(func.overloadpacket.__name__, args, out)
        return out


class _Functions(TorchFunctionMode):
    def __init__(self, tracer: _Tracer):
        super().__init__()
        self.tracer = tracer

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is torch.nn.functional.scaled_dot_product_attention:
            causal = bool(kwargs.get("is_causal", False)) or kwargs.get("attn_mask") is not None
            self.tracer.attention(args[0], causal)
            self.tracer.in_attention = True
            try:
                return func(*args, **kwargs)
            finally:
                self.tracer.in_attention = False
        return func(*args, **kwargs)


def _layer_params(tr: _Tracer, module: nn.Module) -> list[tuple[int, int]]:
    """(split, replicated) parameter counts per layer; vocabulary-parallel: the token table (the
    embedding with the most rows) and the head's linear weights split."""
    in_blocks = set()
    out = [(0, 0)] * (tr.n + 2)
    for i, block in enumerate(tr.blocks):
        split = rep = 0
        for m in block.modules():
            for pname, p in m.named_parameters(recurse=False):
                in_blocks.add(id(p))
                if _is_linear(m) and (pname == "weight" or id(m) in tr.column):
                    split += p.numel()
                else:
                    rep += p.numel()
        out[i + 1] = (split, rep)
    # outside the blocks: parameters used before the first block go to the embedding, the rest to the head
    outside = [(name, p) for name, p in module.named_parameters() if id(p) not in in_blocks]
    emb = [p for name, p in outside if _is_embedding_param(module, name)]
    rest = [(name, p) for name, p in outside if not _is_embedding_param(module, name)]
    if not tr.vocab_parallel:
        out[0] = (0, sum(p.numel() for p in emb))
        out[-1] = (0, sum(p.numel() for _, p in rest))
        return out
    rows = max((p.shape[0] for p in emb), default=0)
    split = sum(p.numel() for p in emb if p.shape[0] == rows)
    out[0] = (split, sum(p.numel() for p in emb) - split)
    head_split = sum(p.numel() for name, p in rest if p.dim() == 2 and _is_linear(_owner(module, name)))
    out[-1] = (head_split, sum(p.numel() for _, p in rest) - head_split)
    return out


def _owner(module: nn.Module, name: str) -> nn.Module:
    return module.get_submodule(name.rsplit(".", 1)[0]) if "." in name else module


def _is_embedding_param(module: nn.Module, name: str) -> bool:
    owner = module.get_submodule(name.rsplit(".", 1)[0]) if "." in name else module
    return "Embedding" in type(owner).__name__


def trace_module(module: nn.Module, seq_len: int, name: str, mixed_precision: bool = False,
                 call: Callable[[nn.Module, torch.Tensor], Any] | None = None,
                 vocab_parallel: bool = False) -> ModelSpec:
    """The layers of ``module`` (its parameters on the meta device, or moved there) at ``seq_len``."""
    module = module.to("meta") if any(p.device.type != "meta" for p in module.parameters()) else module
    module.train()
    tr = _Tracer(module, vocab_parallel)
    handles = []
    for m in module.modules():
        handles.append(m.register_forward_pre_hook(tr.pre, with_kwargs=True))
        handles.append(m.register_forward_hook(tr.post, with_kwargs=True))
    idx = torch.zeros(1, seq_len, dtype=torch.long, device="meta")
    call = call or _default_call
    try:
        with torch.autograd.graph.saved_tensors_hooks(lambda t: (tr.saved(t), t)[1], lambda t: t):
            with _Functions(tr), _Dispatch(tr):
                call(module, idx)
    except ModelError:
        raise
    except Exception as e:          # a model the meta device cannot run: one line, not a traceback
        raise ModelError(f"tracing {name} on the meta device failed: {type(e).__name__}: {e}") from None
    finally:
        for h in handles:
            h.remove()
    params = _layer_params(tr, module)
    names = ["embedding", *(f"block{i}" for i in range(tr.n)), "head"]
    layers = tuple(Layer(name=names[i], ops=tuple(tr.ops[i]), params_split=params[i][0],
                         params_replicated=params[i][1], act_split_bytes=tr.act[i][0],
                         act_replicated_bytes=tr.act[i][1], out_bytes=tr.out_bytes[i],
                         tp_allreduces=tr.allreduces[i] if 1 <= i <= tr.n else int(vocab_parallel),
                         temp_bytes=tr.temp[i])
                   for i in range(tr.n + 2))
    p = next(module.parameters())
    heads = next((op.batch for layer in layers for op in layer.ops if op.kind == "attention"), 1)
    return ModelSpec(name=name, layers=layers, seq_len=seq_len, hidden=tr.hidden, heads=heads,
                     dtype_bytes=p.element_size(), mixed_precision=mixed_precision)


def _default_call(module: nn.Module, idx: torch.Tensor):
    if hasattr(module, "config") and hasattr(module.config, "model_type"):     # a transformers model
        return module(input_ids=idx, labels=idx).loss
    return module(idx)


# -- MODEL strings ---------------------------------------------------------------------------------
_HF = {"gpt2": ("GPT2Config", "GPT2LMHeadModel", "n_positions"),
       "llama": ("LlamaConfig", "LlamaForCausalLM", "max_position_embeddings"),
       "mistral": ("MistralConfig", "MistralForCausalLM", "max_position_embeddings")}


def build_hf(spec: str) -> tuple[nn.Module, int]:
    """``gpt2`` or ``llama:hidden_size=512,num_hidden_layers=4``: the model built from its config with
    random weights on the meta device (nothing downloaded); and its default sequence length."""
    family, _, overrides = spec.partition(":")
    if family not in _HF:
        raise ModelError(f"hf:{family}: known configs are {', '.join('hf:' + k for k in _HF)}")
    try:
        import transformers
    except ImportError:
        raise ModelError("hf: models need transformers (pip install transformers)") from None
    kwargs = {}
    for item in filter(None, overrides.split(",")):
        key, eq, value = item.partition("=")
        if not eq:
            raise ModelError(f"hf:{spec}: override {item!r} is not KEY=VALUE")
        kwargs[key] = int(value) if value.lstrip("-").isdigit() else value
    config_cls, model_cls, seq_key = _HF[family]
    try:
        config = getattr(transformers, config_cls)(**kwargs)
        config._attn_implementation = "sdpa"
        with torch.device("meta"):
            model = getattr(transformers, model_cls)(config)
    except (TypeError, ValueError) as e:
        raise ModelError(f"hf:{spec}: {family} config rejected: {e}") from None
    return model, min(int(getattr(config, seq_key)), 2048)


def build_class(spec: str) -> nn.Module:
    mod_name, _, cls_name = spec.partition(":")
    try:
        cls = getattr(importlib.import_module(mod_name), cls_name)
    except (ImportError, AttributeError) as e:
        raise ModelError(f"MODEL {spec}: cannot import {cls_name} from {mod_name} ({e})") from None
    with torch.device("meta"):
        return cls()
