"""Models nobody here wrote: Hugging Face ``transformers`` layers built from small configs (random
weights, nothing downloaded) compiled with ``backend="tilewise"`` match eager, with no graph that
falls back whole; a group that cannot compile falls back alone."""
from __future__ import annotations

import logging
import re

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from tests.frontends.test_torch_backend import LOGGER, kernel_count, rel_error  # noqa: E402

pytestmark = pytest.mark.jit
WHOLE_GRAPH_EAGER = "runs in eager PyTorch"


def _bert():
    cfg = transformers.BertConfig(hidden_size=64, num_attention_heads=4, intermediate_size=96,
                                  num_hidden_layers=1, vocab_size=100, max_position_embeddings=64)
    cfg._attn_implementation = "sdpa"   # what BertModel sets; a bare layer would log (a graph break)
    layer = transformers.models.bert.modeling_bert.BertLayer(cfg)
    return (lambda x: layer(x)[0]), layer, lambda seq: torch.randn(2, seq, 64)


def _gpt2():
    cfg = transformers.GPT2Config(n_embd=64, n_head=4, n_layer=2, n_positions=64, vocab_size=100)
    model = transformers.GPT2Model(cfg)
    return (lambda ids: model(ids).last_hidden_state), model, lambda seq: torch.randint(0, 100, (2, seq))


def _llama():
    # RMS norm, SwiGLU MLP, rotary embedding, grouped-query attention (4 query heads, 2 kv heads)
    cfg = transformers.LlamaConfig(hidden_size=64, intermediate_size=88, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2, vocab_size=100,
                                   max_position_embeddings=64)
    model = transformers.LlamaModel(cfg)
    return (lambda ids: model(ids).last_hidden_state), model, lambda seq: torch.randint(0, 100, (1, seq))


def _vit():
    cfg = transformers.ViTConfig(hidden_size=64, num_attention_heads=4, intermediate_size=96,
                                 num_hidden_layers=1, image_size=32, patch_size=8, num_channels=3)
    model = transformers.ViTModel(cfg, add_pooling_layer=False)
    return (lambda px: model(px).last_hidden_state), model, lambda _: torch.randn(1, 3, 32, 32)


MODELS = {"bert_layer": _bert, "gpt2": _gpt2, "llama": _llama, "vit": _vit}


def _whole_graph_fallbacks(caplog) -> list[str]:
    """Graphs that went to eager PyTorch whole (a graph without any op to compile is not one)."""
    return [r.getMessage() for r in caplog.records if r.name == LOGGER and WHOLE_GRAPH_EAGER in r.getMessage()
            and "no anchor op" not in r.getMessage()]


@pytest.mark.parametrize("name", list(MODELS))
def test_hf_model_matches_eager(name, opts, caplog):
    caplog.set_level(logging.INFO, LOGGER)
    torch.manual_seed(0)
    run, module, make_input = MODELS[name]()
    module.eval()
    x = make_input(19)                    # an odd sequence length
    with torch.no_grad():
        ref = run(x)
        compiled = torch.compile(run, backend="tilewise", options=opts)
        out, again = compiled(x), compiled(x)
    assert out.shape == ref.shape
    assert rel_error(out, ref) <= 1e-4 and rel_error(again, ref) <= 1e-4
    assert _whole_graph_fallbacks(caplog) == []
    assert kernel_count(caplog) >= 4      # the projections and MLP matmuls at the least


def test_three_sequence_lengths_all_run_kernels(opts, caplog, tmp_path):
    """A served model sees many lengths: each one runs tilewise kernels (the trace says so)."""
    from tilewise.frontends.model_trace import ModelTrace
    caplog.set_level(logging.INFO, LOGGER)
    torch.manual_seed(0)
    run, module, make_input = MODELS["llama"]()
    module.eval()
    trace = tmp_path / "trace.json"
    compiled = torch.compile(run, backend="tilewise", options={**opts, "trace": str(trace)})
    with torch.no_grad():
        for seq in (7, 16, 23):
            x = make_input(seq)
            assert rel_error(compiled(x), run(x)) <= 1e-4
    assert _whole_graph_fallbacks(caplog) == []
    workloads = {k.workload for k in ModelTrace.load(trace).kernels if k.kind == "kernel"}
    for seq in (7, 16, 23):              # batch 1: the projections are seq x N x K matmuls
        assert any(w.startswith(f"matmul:{seq}x") for w in workloads), (seq, sorted(workloads))


class SwiGLU(nn.Module):
    """silu(gate(x)) * up(x): one mul joins two matmuls' results (the LLaMA MLP)."""

    def __init__(self, d=48, hidden=80):
        super().__init__()
        self.gate, self.up, self.down = nn.Linear(d, hidden, bias=False), nn.Linear(d, hidden, bias=False), \
            nn.Linear(hidden, d, bias=False)

    def forward(self, x):
        return self.down(F.silu(self.gate(x)) * self.up(x))


def _swiglu_matches_eager(options, caplog) -> str:
    """Compile SwiGLU on a 2x11x48 input, check it against eager and that no graph went eager
    whole; returns the graph's summary line."""
    torch.manual_seed(0)
    model = SwiGLU().eval()
    x = torch.randn(2, 11, 48)
    with torch.no_grad():
        ref = model(x)
        out = torch.compile(model, backend="tilewise", options=options)(x)
    assert rel_error(out, ref) <= 1e-5
    assert _whole_graph_fallbacks(caplog) == []
    return next(r.getMessage() for r in caplog.records if "fused kernel(s)" in r.getMessage())


def test_a_binary_op_of_two_kernels_joins_one_group(opts, caplog):
    """The op that crashed the LLaMA compile ("Tried to erase Node _unsafe_view_5 but it still had
    1 users"): the mul belongs to the gate's group, the up projection's group stops before it."""
    caplog.set_level(logging.INFO, LOGGER)
    _swiglu_matches_eager(opts, caplog)
    assert kernel_count(caplog) == 3


def test_a_failing_group_falls_back_alone(opts, caplog, monkeypatch):
    """Choosing or building one group's kernel raises: that group runs in eager PyTorch, the graph's
    other groups still run as kernels, and the output is right."""
    import importlib
    from tilewise.frontends.torch_backend import kernels
    backend = importlib.import_module("tilewise.frontends.torch_backend.backend")   # the module, not the entry point
    caplog.set_level(logging.INFO, LOGGER)
    real_decide, real_load = backend._decide, kernels.load_kernel

    def decide(g, *a, **k):
        if g.workload.startswith("matmul:22x80x48"):          # the up projection (and the gate)
            raise RuntimeError("injected failure")
        return real_decide(g, *a, **k)

    def load(w, *a, **k):
        if str(w).startswith("matmul:22x48x80"):             # the down projection's cached kernel
            raise RuntimeError("injected build failure")
        return real_load(w, *a, **k)
    monkeypatch.setattr(backend, "_decide", decide)
    summary = _swiglu_matches_eager(opts, caplog)
    assert re.search(r": 1 fused kernel", summary) and "choosing a schedule failed: RuntimeError: injected failure" \
        in summary, summary
    # a kernel that fails to load is the other per-group failure (the graph's other groups compile)
    torch._dynamo.reset()
    caplog.clear()
    monkeypatch.setattr(backend, "_decide", real_decide)
    monkeypatch.setattr(kernels, "load_kernel", load)
    summary = _swiglu_matches_eager({**opts, "cache": opts["cache"] + "2"}, caplog)
    assert re.search(r": 2 fused kernel", summary) and "injected build failure" in summary, summary
