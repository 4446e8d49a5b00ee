"""torch.compile(model, backend="tilewise"): results vs eager, fallbacks, cache, trace, options."""
from __future__ import annotations

import copy
import json
import logging
import math
import os
import re
import subprocess
import sys
import textwrap

import pytest

torch = pytest.importorskip("torch")
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

pytestmark = pytest.mark.jit
LOGGER = "tilewise.torch_backend"


# --- models ------------------------------------------------------------------------------------
class MLP(nn.Module):
    def __init__(self, d_in=64, d_hidden=256, d_out=64, act=F.gelu):
        super().__init__()
        self.fc1, self.fc2, self.act = nn.Linear(d_in, d_hidden), nn.Linear(d_hidden, d_out), act

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class EncoderBlock(nn.Module):
    """Pre-norm transformer encoder block in plain torch."""

    def __init__(self, d=64, heads=4, ff=128):
        super().__init__()
        self.heads = heads
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.ff1, self.ff2 = nn.Linear(d, ff), nn.Linear(ff, d)

    def forward(self, x):
        b, s, d = x.shape
        hd = d // self.heads
        q, k, v = self.qkv(self.ln1(x)).chunk(3, dim=-1)
        q, k, v = (t.view(b, s, self.heads, hd).transpose(1, 2) for t in (q, k, v))
        att = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(hd), dim=-1)
        x = x + self.proj((att @ v).transpose(1, 2).reshape(b, s, d))
        return x + self.ff2(F.gelu(self.ff1(self.ln2(x))))


class SmallCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1, self.c2 = nn.Conv2d(3, 16, 3, padding=1), nn.Conv2d(16, 32, 3, padding=1, stride=1)
        self.fc = nn.Linear(32 * 4 * 4, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.c1(x)), 2)
        x = F.avg_pool2d(F.relu(self.c2(x)), 2)
        return self.fc(torch.flatten(x, 1))


class WithGraphBreak(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = MLP(32, 64, 32, F.relu), MLP(32, 64, 16, F.silu)

    def forward(self, x):
        h = self.a(x)
        torch._dynamo.graph_break()
        return self.b(h), h.sum()


class WithUnsupported(nn.Module):
    """cumsum and a float64 matmul have no tilewise kernel."""

    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(32, 64), nn.Linear(64, 32)

    def forward(self, x):
        h = torch.cumsum(F.relu(self.fc1(x)), dim=1)
        y = self.fc2(h)
        return y, (y.double() @ y.double().t()).float()


# --- helpers -----------------------------------------------------------------------------------
def rel_error(a, b) -> float:
    return float((a.double() - b.double()).norm() / max(b.double().norm(), 1e-30))


def check(model, *inputs, options, tol=1e-4):
    model.eval()
    with torch.no_grad():
        ref = model(*inputs)
        compiled = torch.compile(model, backend="tilewise", options=options)
        out = compiled(*inputs)
        out2 = compiled(*inputs)          # a second call reuses buffers and packed weights
    refs, outs = (ref, out) if isinstance(ref, tuple) else ((ref,), (out,))
    for r, o in zip(refs, outs):
        assert o.shape == r.shape and o.dtype == r.dtype
        assert rel_error(o, r) <= tol
    for r, o in zip(refs, out2 if isinstance(out2, tuple) else (out2,)):
        assert rel_error(o, r) <= tol
    return out


def kernel_count(caplog) -> int:
    n = 0
    for rec in caplog.records:
        msg = rec.getMessage()
        if rec.name == LOGGER and "fused kernel(s)" in msg:
            n += int(re.search(r"(\d+) fused kernel", msg).group(1))
    return n


# --- correctness vs eager ----------------------------------------------------------------------
@pytest.mark.parametrize("act", [F.gelu, F.relu, F.silu], ids=["gelu", "relu", "silu"])
def test_mlp_matches_eager(act, opts, caplog):
    caplog.set_level(logging.INFO, LOGGER)
    torch.manual_seed(0)
    check(MLP(act=act), torch.randn(16, 64), options=opts)
    assert kernel_count(caplog) == 2


def test_transformer_block_matches_eager(opts, caplog):
    caplog.set_level(logging.INFO, LOGGER)
    torch.manual_seed(0)
    check(EncoderBlock(), torch.randn(2, 16, 64), options=opts)
    # qkv, q@k^T, att@v, proj (+ residual), ff1 (+ gelu), ff2 (+ residual)
    assert kernel_count(caplog) == 6


def test_cnn_matches_eager(opts, caplog):
    caplog.set_level(logging.INFO, LOGGER)
    torch.manual_seed(0)
    out = check(SmallCNN(), torch.randn(2, 3, 16, 16), options=opts)
    assert out.is_contiguous()
    assert kernel_count(caplog) == 3


def test_graph_breaks(opts, caplog):
    caplog.set_level(logging.INFO, LOGGER)
    torch.manual_seed(0)
    check(WithGraphBreak(), torch.randn(8, 32), options=opts)
    graphs = [r for r in caplog.records if r.name == LOGGER and "fused kernel(s)" in r.getMessage()]
    assert len(graphs) >= 2 and kernel_count(caplog) == 4


def test_unsupported_ops_fall_back_and_stay_correct(opts, caplog):
    caplog.set_level(logging.INFO, LOGGER)
    torch.manual_seed(0)
    check(WithUnsupported(), torch.randn(8, 32), options=opts)
    text = " ".join(r.getMessage() for r in caplog.records if r.name == LOGGER)
    assert "aten.cumsum" in text and "float32" in text    # cumsum eager; the f64 mm stays eager, said why
    assert kernel_count(caplog) == 2


# --- fallbacks of whole graphs -------------------------------------------------------------------
def test_training_mode_falls_back_to_eager(opts, caplog):
    caplog.set_level(logging.INFO, LOGGER)
    torch.manual_seed(0)
    model = MLP(act=F.relu).train()
    x = torch.randn(8, 64)
    compiled = torch.compile(model, backend="tilewise", options=opts)
    out = compiled(x)
    out.sum().backward()
    grad = model.fc1.weight.grad.clone()
    model.zero_grad()
    model(x).sum().backward()
    assert torch.allclose(grad, model.fc1.weight.grad)
    assert any("training mode" in r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING)


def _kernel_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if re.search(r"graph \d+: \d+ fused kernel", r.getMessage())]


def test_dynamic_shapes_are_lowered_per_shape(opts, caplog):
    """dynamic=True: dynamo compiles once with symbolic sizes; each concrete shape gets its own
    tilewise kernels when first called, a repeated shape reuses them, every output matches eager."""
    from tilewise.frontends.torch_backend.dynamic import ShapeSpecializer
    caplog.set_level(logging.INFO, LOGGER)
    torch.manual_seed(0)
    model = MLP(act=F.relu).eval()
    made: list = []
    real_init = ShapeSpecializer.__init__

    def spy(self, *a, **k):
        real_init(self, *a, **k)
        made.append(self)
    ShapeSpecializer.__init__ = spy
    try:
        compiled = torch.compile(model, backend="tilewise", options=opts, dynamic=True)
        with torch.no_grad():
            for rows in (5, 9, 5, 12):
                x = torch.randn(rows, 64)
                assert rel_error(compiled(x), model(x)) <= 1e-5
    finally:
        ShapeSpecializer.__init__ = real_init
    assert not any("runs in eager PyTorch" in r.getMessage() for r in caplog.records)
    assert len(made) == 1 and made[0].specialised == 3          # 5, 9, 12: the second 5 is a hit
    lines = _kernel_lines(caplog)
    assert len(lines) == 3 and all(re.search(r": 2 fused kernel", ln) for ln in lines), lines


def test_a_second_shape_does_not_recompile_to_eager(opts, caplog):
    """Without dynamic=True: dynamo recompiles once with symbolic sizes when it meets a second
    sequence length (automatic dynamic shapes); from then on every length runs tilewise kernels
    and dynamo compiles nothing more."""
    from torch._dynamo.utils import counters
    caplog.set_level(logging.INFO, LOGGER)
    torch.manual_seed(0)
    model = EncoderBlock().eval()
    compiled = torch.compile(model, backend="tilewise", options=opts)
    with torch.no_grad():
        for seq in (8, 16):
            x = torch.randn(2, seq, 64)
            assert rel_error(compiled(x), model(x)) <= 1e-4
        frames = counters["stats"]["unique_graphs"]
        for seq in (24, 16):
            x = torch.randn(2, seq, 64)
            assert rel_error(compiled(x), model(x)) <= 1e-4
        assert counters["stats"]["unique_graphs"] == frames     # no recompilation after the second shape
    assert not any("runs in eager PyTorch" in r.getMessage() for r in caplog.records)
    assert len(_kernel_lines(caplog)) == 3                      # 8 static; then 16, 24 (16 again: a hit)


def test_weight_updates_are_seen(opts):
    torch.manual_seed(0)
    model = MLP(act=F.relu).eval()
    x = torch.randn(4, 64)
    with torch.no_grad():
        compiled = torch.compile(model, backend="tilewise", options=opts)
        compiled(x)
        model.fc1.weight.mul_(0.5)
        assert rel_error(compiled(x), model(x)) <= 1e-5


def check_batchnorm_updates_once_per_call(model, x, opts) -> None:
    """``model[1]`` is a BatchNorm in train mode: compiled and called twice under no_grad, its
    running stats must end where eager's do after two calls (none more from compile-time checks)."""
    twin = copy.deepcopy(model)
    with torch.no_grad():
        compiled = torch.compile(model, backend="tilewise", options=opts)
        for _ in range(2):
            assert rel_error(compiled(x), twin(x)) <= 1e-4
    assert model[1].num_batches_tracked.item() == twin[1].num_batches_tracked.item() == 2
    assert rel_error(model[1].running_mean, twin[1].running_mean) <= 1e-5


def test_stateful_ops_run_once_per_call(opts):
    """BatchNorm in train mode under no_grad: running stats update once per call, as in eager."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 6 * 6, 4))
    check_batchnorm_updates_once_per_call(model, torch.randn(2, 3, 8, 8), opts)


def test_inference_mode(opts):
    torch.manual_seed(0)
    model = MLP(act=F.silu).eval()
    x = torch.randn(4, 64)
    with torch.inference_mode():
        compiled = torch.compile(model, backend="tilewise", options=opts)
        assert rel_error(compiled(x), model(x)) <= 1e-4


def test_unknown_option_is_one_clear_error(opts):
    from tilewise.frontends.torch_backend.options import BackendOptions, OptionsError
    with pytest.raises(OptionsError, match="unknown option 'speed'"):
        BackendOptions.parse(None, {"speed": 3})
    with pytest.raises(OptionsError, match="mode 'fast'"):
        BackendOptions.parse("fast", None)


# --- trace, max-autotune ---------------------------------------------------------------------------
def test_trace_is_written(opts, tmp_path):
    from tilewise.frontends.model_trace import ModelTrace
    torch.manual_seed(0)
    path = tmp_path / "trace.json"
    check(EncoderBlock(), torch.randn(2, 16, 64), options={**opts, "trace": str(path), "profile": True})
    trace = ModelTrace.load(path)
    kinds = {k.kind for k in trace.kernels}
    assert kinds == {"kernel", "eager"}
    kernels = [k for k in trace.kernels if k.kind == "kernel"]
    assert len(kernels) == 6 and all(k.median_s and k.median_s > 0 and k.schedule for k in kernels)
    assert any(k.ops[0] == "aten.addmm" and "aten.gelu" in k.ops for k in kernels)
    assert all(k.reason for k in trace.kernels if k.kind == "eager")


@pytest.mark.slow
def test_max_autotune_measures_and_records(opts, tmp_path):
    from tilewise.datasets.base import open_store
    torch.manual_seed(0)
    check(MLP(32, 64, 32, F.relu), torch.randn(8, 32),
          options={**opts, "mode": "max-autotune", "trials": 3, "threads": 1})
    with open_store(opts["db"]) as store:
        assert len(store) >= 3     # the tuning trials were recorded
    plans = os.listdir(os.path.join(opts["cache"], "plans"))
    with open(os.path.join(opts["cache"], "plans", plans[0])) as f:
        groups = json.load(f)["groups"]
    assert all("kernel_s" in g and "eager_s" in g for g in groups.values())
    assert all(g["source"] == "tuned" for g in groups.values() if g["schedule"])
    # default mode, fresh compile cache, same database: the recorded schedules are used, unmeasured
    torch._dynamo.reset()
    fresh = {**opts, "cache": str(tmp_path / "cache2"), "threads": 1}
    check(MLP(32, 64, 32, F.relu), torch.randn(8, 32), options=fresh)
    plans = os.listdir(os.path.join(fresh["cache"], "plans"))
    with open(os.path.join(fresh["cache"], "plans", plans[0])) as f:
        groups = json.load(f)["groups"]
    assert [g["source"] for g in groups.values()] == ["database", "database"]


# --- entry point and compile cache across processes ---------------------------------------------
_SCRIPT = textwrap.dedent("""
    import json, logging, sys, time, torch
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    torch.manual_seed(0)
    m = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.GELU(), torch.nn.Linear(128, 32)).eval()
    x = torch.randn(8, 64)
    assert "tilewise" not in sys.modules
    with torch.no_grad():
        t = time.perf_counter()
        y = torch.compile(m, backend="tilewise", options={"cache": sys.argv[1], "db": sys.argv[2]})(x)
        dt = time.perf_counter() - t
        err = float((y - m(x)).norm() / m(x).norm())
    print(json.dumps({"err": err, "compile_s": dt}))
""")


def test_entry_point_and_cache_in_new_process(opts, tmp_path):
    script = tmp_path / "run.py"
    script.write_text(_SCRIPT)

    def run():
        done = subprocess.run([sys.executable, str(script), opts["cache"], opts["db"]], capture_output=True,
                              text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        return json.loads(done.stdout.strip().splitlines()[-1]), done.stderr

    first, log1 = run()
    libs = sorted(os.listdir(os.path.join(opts["cache"], "kernels")))
    second, log2 = run()
    assert first["err"] <= 1e-4 and second["err"] <= 1e-4
    assert "2 fused kernel(s)" in log1 and "[cached plan]" not in log1
    assert "[cached plan]" in log2
    assert sorted(os.listdir(os.path.join(opts["cache"], "kernels"))) == libs   # nothing rebuilt


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("batch,channels,size,patch", [(1, 3, 32, 8), (2, 4, 24, 4)])
def test_patch_embedding_conv_is_one_matmul(batch, channels, size, patch, bias, opts):
    """A conv whose stride is its kernel and has no padding (ViT's patch embedding) becomes a matmul
    of the patches ([N*OH*OW, C*k*k] x [C*k*k, F]); its NCHW output, bias and the views after it
    (flatten + transpose) match eager; a padded one stays a conv group."""
    from torch.fx.experimental.proxy_tensor import make_fx
    from tilewise.frontends.torch_backend.graph import find_groups
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(channels, 16, patch, stride=patch, bias=bias).eval()
    x = torch.randn(batch, channels, size, size)
    gm = make_fx(lambda x, w: torch.nn.functional.conv2d(x, w, stride=patch))(x, conv.weight.detach())
    (g,), _ = find_groups(gm.graph, set())
    cells = (size // patch) ** 2
    assert g.anchor == "patch_conv" and g.workload == f"matmul:{batch * cells}x16x{channels * patch * patch}:f32"
    padded = make_fx(lambda x, w: torch.nn.functional.conv2d(x, w, stride=patch, padding=1))(x, conv.weight.detach())
    assert find_groups(padded.graph, set())[0][0].anchor == "conv2d"
    f = lambda x: conv(x).flatten(2).transpose(1, 2)        # noqa: E731
    with torch.no_grad():
        compiled = torch.compile(f, backend="tilewise", options=opts)
        for _ in range(2):
            assert torch.allclose(compiled(x), f(x), atol=1e-5, rtol=1e-4)
        with torch.no_grad():
            conv.weight.mul_(0.5)                            # the packed filter follows the parameter
        assert torch.allclose(compiled(x), f(x), atol=1e-5, rtol=1e-4)


def test_conv_schedule_is_the_fastest_of_the_recipes_and_model_picks(monkeypatch, tmp_path):
    """Default mode times the conv recipes and the cost model's top two (kernels.measured_pick):
    the fastest that builds and matches the reference is kept; one that does not build is skipped."""
    from tilewise.core.workload import Workload
    from tilewise.frontends.torch_backend import kernels
    from tilewise.profiling import measure
    w = Workload.parse("conv2d_nhwc:1x10x10x8,3x3x8x16:f32:pad=1,stride=1")
    recipes = kernels.recipe_schedules(w, 1)
    assert len(recipes) >= 2 and all(s.get("c_tile") for s in recipes[:3])
    bad = recipes[0].replace(reg_tile=[99, 99])            # does not validate: never built
    times = iter([3e-3, 1e-3, 2e-3] * 4)
    monkeypatch.setattr(measure, "time_runs", lambda *a, **k: [next(times)])
    s, k = kernels.measured_pick(w, [bad] + recipes[:3], str(tmp_path), top=4)
    assert s == recipes[1]                                  # the one timed fastest
    problem = measure.make_problem(w, "f32", seed=1)
    assert measure.check(k, problem) <= w.kind.tolerance(w, "f32")
