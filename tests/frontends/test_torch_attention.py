"""Attention groups (frontends/torch_backend/attention.py): scaled_dot_product_attention as a
batch_matmul, softmax and batch_matmul tilewise kernels, checked and timed against eager."""
import pytest
import torch
import torch.nn.functional as F

from .backend_helpers import force_timing as _force
from .backend_helpers import plan_entries

pytestmark = pytest.mark.jit


class Attn(torch.nn.Module):
    """Multi-head (or grouped-query) attention as transformers calls SDPA: q/k/v projections, heads
    split by a view + transpose (q, k, v are permuted views, not contiguous)."""

    def __init__(self, d=32, heads=4, kv_heads=4, causal=False):
        super().__init__()
        self.h, self.hk, self.causal = heads, kv_heads, causal
        self.dh = d // heads
        self.q = torch.nn.Linear(d, d)
        self.kv = torch.nn.Linear(d, 2 * kv_heads * self.dh)

    def forward(self, x, mask=None):
        b, s, _ = x.shape
        q = self.q(x).view(b, s, self.h, self.dh).transpose(1, 2)
        k, v = self.kv(x).view(b, s, 2 * self.hk, self.dh).transpose(1, 2).chunk(2, dim=1)
        o = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=self.causal,
                                           enable_gqa=self.hk != self.h)
        return o.transpose(1, 2).reshape(b, s, -1)


@pytest.mark.parametrize("heads,kv_heads,causal,seq,mask", [
    (4, 4, False, 16, None), (4, 4, True, 19, None), (4, 2, True, 23, None),
    (4, 4, False, 16, "float"), (4, 1, False, 13, "bool")])
def test_attention_kernels_match_eager(heads, kv_heads, causal, seq, mask, opts, tmp_path, monkeypatch):
    _force(monkeypatch, kernel_faster=True)
    torch.manual_seed(0)
    model = Attn(heads=heads, kv_heads=kv_heads, causal=causal).eval()
    x = torch.randn(2, seq, 32)
    m = None
    if mask == "float":
        m = torch.randn(2, 1, seq, seq)
    elif mask == "bool":
        m = torch.rand(2, 1, seq, seq) > 0.3
        m[..., 0] = True                       # every query sees at least one key
    with torch.no_grad():
        compiled = torch.compile(model, backend="tilewise", options=opts)
        for _ in range(2):
            ref = model(x, m)
            got = compiled(x, m)
            assert float((got - ref).norm() / ref.norm()) < 1e-5
            x = x * 1.5
    (e,) = plan_entries(tmp_path / "cache", "attention")
    assert e["use_kernel"] and set(e["schedule"]) == {"qk", "softmax", "pv"}, e
    b, h = 2, heads
    assert e["kernels"]["qk"] == f"batch_matmul:{b * h}x{seq}x{seq}x8:f32"
    assert e["kernels"]["softmax"] == f"softmax:{b * h}x{seq}x{seq}:f32"


def test_eager_measured_faster_keeps_sdpa_and_says_why(opts, tmp_path, monkeypatch):
    calls = _force(monkeypatch, kernel_faster=False)
    model = Attn(causal=True).eval()
    x = torch.randn(1, 16, 32)
    with torch.no_grad():
        out = torch.compile(model, backend="tilewise", options=opts)(x)
        assert torch.allclose(out, model(x), atol=1e-5, rtol=1e-4)
    (e,) = plan_entries(tmp_path / "cache", "attention")
    assert not e["use_kernel"] and "eager measured faster" in e["reason"]
    # the cached plan keeps the decision without timing again
    torch._dynamo.reset()
    n = len(calls)
    with torch.no_grad():
        torch.compile(model, backend="tilewise", options=opts)(x)
    assert len(calls) == n


def test_a_wrong_kernel_is_caught_by_the_check(opts, tmp_path, monkeypatch):
    from tilewise.frontends.torch_backend import attention
    _force(monkeypatch, kernel_faster=True)
    real = attention.AttentionRunner.__call__

    def off(self, *args):
        return real(self, *args) * 1.01
    monkeypatch.setattr(attention.AttentionRunner, "__call__", off)
    model = Attn().eval()
    x = torch.randn(1, 16, 32)
    with torch.no_grad():
        out = torch.compile(model, backend="tilewise", options=opts)(x)
        assert torch.allclose(out, model(x), atol=1e-5, rtol=1e-4)
    (e,) = plan_entries(tmp_path / "cache", "attention")
    assert e["schedule"] is None and "differ from eager" in e["reason"]
