"""Row-wise groups (frontends/torch_backend/rowwise.py): chains of elementwise ops and last-dim
reductions between the kernels become one fused MLIR kernel, checked against eager."""
import math

import pytest
import torch
from torch.fx.experimental.proxy_tensor import make_fx

from tilewise.frontends.torch_backend import profile, rowwise

from .backend_helpers import force_timing as _force
from .backend_helpers import plan_entries

pytestmark = pytest.mark.jit


def rms_norm(x, w):
    v = x.pow(2).mean(-1, keepdim=True)
    return w * (x * torch.rsqrt(v + 1e-6))


def gelu_new(x):       # GPT-2's activation as transformers writes it
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


def add_layer_norm(x, r, w, b):
    return torch.nn.functional.layer_norm(x + r, (x.shape[-1],), w, b, 1e-5)


def scaled_softmax(x):
    return torch.softmax(x * 0.125, -1)


def log_softmax_bias(x, b):
    return torch.log_softmax(x + b, -1)


def swiglu(a, b):
    return torch.nn.functional.silu(a) * b


def rotary(q, cos, sin, rot):
    return q * cos + rot * sin


def _case(name, shape=(1, 19, 37)):
    g = torch.Generator().manual_seed(0)
    x = lambda *s: torch.randn(*s, generator=g)         # noqa: E731
    n = shape[-1]
    return {
        "rms_norm": (rms_norm, (x(*shape), x(n)), 6),
        "gelu_new": (gelu_new, (x(*shape),), 8),
        "add_layer_norm": (add_layer_norm, (x(*shape), x(*shape), x(n), x(n)), 2),
        "scaled_softmax": (scaled_softmax, (x(1, 3, *shape[1:]),), 2),
        "swiglu": (swiglu, (x(*shape), x(*shape)), 2),
        "log_softmax_bias": (log_softmax_bias, (x(*shape), x(n)), 2),
        "rotary": (rotary, (x(1, 2, *shape[1:]), x(1, 1, *shape[1:]), x(1, 1, *shape[1:]), x(1, 2, *shape[1:])), 3),
    }[name]


NAMES = ["rms_norm", "gelu_new", "add_layer_norm", "scaled_softmax", "swiglu", "rotary", "log_softmax_bias"]


@pytest.mark.parametrize("name", NAMES)
def test_each_chain_is_one_group(name):
    fn, args, n_ops = _case(name)
    gm = make_fx(fn, tracing_mode="fake")(*args)
    groups = rowwise.find_rowwise_groups(gm.graph, set())
    assert len(groups) == 1
    assert len(rowwise.group_ops(groups[0]["nodes"])) == n_ops
    assert groups[0]["nodes"][-1] is next(n for n in gm.graph.nodes if n.op == "output").args[0]


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("shape", [(1, 19, 37), (2, 16, 64)])
@pytest.mark.parametrize("name", NAMES)
def test_kernel_matches_eager(name, shape, threads, tmp_path):
    """Each pattern's kernel, built with its default schedule, against the aten ops in eager
    PyTorch -- odd rows and widths (partial vector steps) and several row tiles."""
    fn, args, _ = _case(name, shape)
    gm = make_fx(fn)(*args)
    (g,) = rowwise.find_rowwise_groups(gm.graph, set())
    kargs, out = rowwise.kernel_signature(g["inputs"], g["shape"])
    s = {**rowwise.default_schedule(out, threads), "args": kargs, "out": out}
    runner = rowwise.RowwiseRunner(rowwise.load(g["nodes"], g["inputs"], s, str(tmp_path)), g["shape"], kargs, out)
    env = profile.node_values(gm, args)
    ref = fn(*args)
    for _ in range(2):           # the bound descriptors are re-pointed at a second set of tensors
        got = runner(*[env[i].clone() for i in g["inputs"]])
        assert got.shape == ref.shape
        assert float((got - ref).norm() / ref.norm()) < 1e-5


def test_a_value_used_outside_ends_the_chain():
    def f(x):
        y = x * 2.0
        return y + 1.0, y           # y escapes: the add alone is no group
    gm = make_fx(f)(torch.randn(4, 8))
    assert rowwise.find_rowwise_groups(gm.graph, set()) == []


def test_a_reduction_over_another_dim_is_not_taken():
    def f(x):
        return (x * 2.0).mean(1, keepdim=True) + 1.0
    gm = make_fx(f)(torch.randn(4, 8, 16))
    groups = rowwise.find_rowwise_groups(gm.graph, set())
    assert all("aten.mean" not in rowwise.group_ops(g["nodes"]) for g in groups)


class Norms(torch.nn.Module):
    """An MLP block as transformers writes one: residual add + layer norm, gelu_new, RMS norm."""

    def __init__(self, d=64):
        super().__init__()
        self.fc = torch.nn.Linear(d, 2 * d)
        self.proj = torch.nn.Linear(2 * d, d)
        self.ln = torch.nn.LayerNorm(d)
        self.w = torch.nn.Parameter(torch.randn(d))

    def forward(self, x, r):
        h = self.ln(x + r)
        h = self.proj(gelu_new(self.fc(h)))
        return rms_norm(h, self.w)


def _compile_and_check(options):
    model = Norms().eval()
    x, r = torch.randn(2, 8, 64), torch.randn(2, 8, 64)
    with torch.no_grad():
        out = torch.compile(model, backend="tilewise", options=options)(x, r)
        assert torch.allclose(out, model(x, r), atol=1e-5, rtol=1e-4)


def test_backend_runs_row_wise_kernels_and_reuses_the_plan(opts, tmp_path, monkeypatch):
    torch.manual_seed(0)
    model = Norms().eval()
    x, r = torch.randn(2, 8, 64), torch.randn(2, 8, 64)
    calls = _force(monkeypatch, kernel_faster=True)
    with torch.no_grad():
        ref = model(x, r)
        compiled = torch.compile(model, backend="tilewise", options=opts)
        out = compiled(x, r)
        assert float((out - ref).norm() / ref.norm()) < 1e-5
        assert torch.allclose(compiled(x * 2, r), model(x * 2, r), atol=1e-5, rtol=1e-4)
    entries = plan_entries(tmp_path / "cache", "rowwise")
    assert len(entries) == 3 and all(e["use_kernel"] and e["schedule"] for e in entries), entries
    assert len(calls) == 3
    # a second compile follows the cached plan: nothing is timed again
    torch._dynamo.reset()
    with torch.no_grad():
        again = torch.compile(model, backend="tilewise", options=opts)(x, r)
    assert len(calls) == 3 and torch.allclose(again, out)


def test_eager_measured_faster_keeps_the_ops_and_says_why(opts, tmp_path, monkeypatch):
    _force(monkeypatch, kernel_faster=False)
    _compile_and_check(opts)
    entries = plan_entries(tmp_path / "cache", "rowwise")
    assert entries and all(not e["use_kernel"] and "eager measured faster" in e["reason"] for e in entries)


def test_a_failed_build_falls_back_for_that_group_only(opts, tmp_path, monkeypatch, caplog):
    _force(monkeypatch, kernel_faster=True)

    def broken(gm, inputs, s, path):
        raise RuntimeError("injected build failure")
    monkeypatch.setattr(rowwise, "build", broken)
    _compile_and_check(opts)
    entries = plan_entries(tmp_path / "cache", "rowwise")
    assert entries and all("injected build failure" in e["reason"] for e in entries)
    assert "injected build failure" in caplog.text


def test_rowwise_false_keeps_the_chains_eager(opts, tmp_path, monkeypatch):
    calls = _force(monkeypatch, kernel_faster=True)
    _compile_and_check({**opts, "rowwise": False})
    assert not calls and not plan_entries(tmp_path / "cache", "rowwise")


def test_rowwise_option_must_be_a_bool():
    from tilewise.frontends.torch_backend.options import BackendOptions, OptionsError
    with pytest.raises(OptionsError, match="rowwise="):
        BackendOptions.parse(None, {"rowwise": "yes"})


def test_max_autotune_times_the_row_wise_variants(opts, tmp_path, monkeypatch):
    """max-autotune builds the default, one-row and longer-vector variants and keeps the fastest
    (timing made deterministic: the last variant measures fastest)."""
    _force(monkeypatch, kernel_faster=True)
    seen = []

    def timed(fn, **kw):
        fn()
        seen.append(1)
        return 1.0 / len(seen), 3
    monkeypatch.setattr(profile, "median_time_s", timed)
    x, w = torch.randn(2, 8, 64), torch.randn(64)
    with torch.no_grad():
        out = torch.compile(rms_norm, backend="tilewise", options={**opts, "mode": "max-autotune"})(x, w)
        assert torch.allclose(out, rms_norm(x, w), atol=1e-5, rtol=1e-4)
    (e,) = plan_entries(tmp_path / "cache", "rowwise")
    candidates = rowwise.variants({**rowwise.default_schedule((16, 64), 1), "args": [], "out": (16, 64)})
    assert len(seen) >= len(candidates) >= 3
    assert e["use_kernel"] and "max-autotune" in e["source"] and e["schedule"]["vector"] == 32, e
