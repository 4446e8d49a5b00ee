"""The ``fuse`` knob: fusion groups through the torch-mlir FX importer, one fused MLIR kernel each."""
from __future__ import annotations

import json
import logging
import os

import pytest

torch = pytest.importorskip("torch")
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

pytestmark = pytest.mark.jit
LOGGER = "tilewise.torch_backend"

# the backend tests' models (SmallCNN: two conv + bias + ReLU groups, pooling, a linear); `opts` in conftest
from .test_torch_backend import MLP, SmallCNN, check_batchnorm_updates_once_per_call, rel_error  # noqa: E402
from tilewise.frontends.torch_backend.group_kinds import group_kind  # noqa: E402


def _spec(m, n, k, epilogue, anchor="matmul"):
    wl = f"matmul:{m}x{n}x{k}:f32" if anchor == "matmul" else f"batch_matmul:{m}x{n}x{k}:f32"
    return {"name": "g", "anchor": anchor, "workload": wl, "ops": [],
            "operands": {"a": {"input": 0, "layout": "contiguous"}, "b": {"input": 1, "layout": "contiguous"}},
            "epilogue": epilogue}


# --- the importer path ------------------------------------------------------------------------------
def test_importer_gives_the_graph_of_linalg_ops():
    from tilewise.frontends.torch_backend import mlir_group as mg
    spec = _spec(8, 32, 16, [{"op": "bias", "input": 2}, {"op": "unary", "name": "gelu", "approximate": "none"}])
    prog = mg.group_program(group_kind(spec), spec, [(8, 16), (16, 32), (32,)])
    module = mg.import_group(group_kind(spec), spec, prog)
    ops = mg.linalg_ops(module)
    assert [o["op"] for o in ops] == ["linalg.fill", "linalg.matmul", "linalg.generic", "linalg.generic"]
    assert ops[2]["body"] == ["arith.addf"] and "math.erf" in ops[3]["body"]
    # kernel form: one epilogue generic in place on the contraction's result, output as last argument
    assert mg.prepare(module) == ["linalg.fill", "linalg.matmul", "linalg.generic"]
    text = str(module)
    assert "func.func @kernel" in text and "math.erf" not in text and "tensor.empty" not in text
    # a batch matmul with a scalar division (attention scores) goes through the importer too
    spec = _spec(2, 8, 8, [{"op": "binary", "name": "div", "alpha": 1, "scalar": 4.0}], anchor="batch_matmul")
    spec["workload"] = "batch_matmul:2x8x8x4:f32"
    ops = mg.linalg_ops(mg.import_group(group_kind(spec), spec, mg.group_program(group_kind(spec), spec, [(2, 8, 4), (2, 4, 8)])))
    assert [o["op"] for o in ops] == ["linalg.fill", "linalg.batch_matmul", "linalg.generic"]


def _conv_spec(n, c, h, w, f, k, stride, pad, epilogue):
    wl = f"conv2d_nhwc:{n}x{h}x{w}x{c},{k}x{k}x{c}x{f}:f32:pad={pad},stride={stride}"
    return {"name": "g", "anchor": "conv2d", "workload": wl, "ops": [],
            "operands": {"x": {"input": 0, "layout": "nhwc"}, "w": {"input": 1, "layout": "hwcf"}},
            "epilogue": epilogue}


def test_importer_gives_the_linalg_graph_of_a_conv_group():
    """NCHW conv between transposes and a pad from the importer; rewritten into the tuned kernel's
    conv_2d_nhwc_hwcf on the NHWC / HWCF arguments, the epilogue one generic on its NHWC result."""
    from tilewise.frontends.torch_backend import mlir_group as mg
    spec = _conv_spec(1, 3, 8, 8, 4, 3, 2, 1, [{"op": "bias", "input": 2}, {"op": "unary", "name": "relu"}])
    prog = mg.group_program(group_kind(spec), spec, [(1, 3, 8, 8), (4, 3, 3, 3), (4,)])
    assert prog["out_shape"] == (1, 4, 4, 4) and prog["final_shape"] == (1, 4, 4, 4)
    module = mg.import_group(group_kind(spec), spec, prog)
    ops = [o["op"] for o in mg.linalg_ops(module)]
    assert ops == ["linalg.transpose", "linalg.transpose", "linalg.fill", "linalg.conv_2d_nchw_fchw",
                   "linalg.transpose", "linalg.generic", "linalg.generic"]
    assert "tensor.pad" in str(module)
    names = mg.prepare(module, {"pad": prog["pad"], "stride": prog["stride"]})
    assert names == ["linalg.fill", "linalg.copy", "linalg.fill", "linalg.conv_2d_nhwc_hwcf", "linalg.generic"]
    text = str(module)
    assert "linalg.transpose" not in text and "tensor.pad" not in text and "strides = dense<2>" in text
    assert "func.func @kernel(%arg0: tensor<1x8x8x3xf32>, %arg1: tensor<3x3x3x4xf32>, %arg2: tensor<4xf32>, " \
           "%arg3: tensor<1x4x4x4xf32>)" in text
    # no padding: no scratch buffer, the conv reads the argument itself
    spec = _conv_spec(1, 3, 8, 8, 4, 3, 1, 0, [{"op": "unary", "name": "relu"}])
    module = mg.import_group(group_kind(spec), spec, mg.group_program(group_kind(spec), spec, [(1, 3, 8, 8), (4, 3, 3, 3)]))
    assert mg.prepare(module, {"pad": 0, "stride": 1}) == ["linalg.fill", "linalg.conv_2d_nhwc_hwcf",
                                                          "linalg.generic"]
    # a view inside a conv epilogue keeps the unfused path
    spec = _conv_spec(1, 3, 8, 8, 4, 3, 1, 1, [{"op": "view", "shape": [1, 256]}, {"op": "unary", "name": "relu"}])
    with pytest.raises(mg.NotFusable, match="view"):
        mg.group_program(group_kind(spec), spec, [(1, 3, 8, 8), (4, 3, 3, 3)])


# --- fused kernels vs eager ---------------------------------------------------------------------------
@pytest.mark.parametrize("act,threads", [("gelu", 1), ("relu", 1), ("silu", 1), ("gelu", 2)])
def test_fused_linear_activation_matches_eager(act, threads, tmp_path):
    from tilewise.frontends.torch_backend import mlir_group as mg
    from tilewise.frontends.torch_backend.fused import FusedRunner
    from tilewise.core.schedule import Schedule
    m, n, k = 48, 128, 96
    spec = _spec(m, n, k, [{"op": "bias", "input": 2}, {"op": "unary", "name": act}])
    prog = mg.group_program(group_kind(spec), spec, [(m, k), (k, n), (n,)])
    s = Schedule(tile=(0, 16, 96), reg_tile=(6, 16), promote=True, vectorize=True, unroll=1, threads=threads,
                 parallel_dim="n", precision="f32", interchange=(0, 1, 2))
    runner = FusedRunner(spec, prog, mg.load_fused(group_kind(spec), spec, prog, s, str(tmp_path)), group_kind(spec))
    torch.manual_seed(0)
    x, w, b = torch.randn(m, k), torch.randn(k, n), torch.randn(n)
    assert rel_error(runner(x, w, b), getattr(F, act)(x @ w + b)) <= 1e-4


@pytest.mark.parametrize("stride,pad,threads", [(1, 1, 1), (2, 1, 1), (1, 0, 2), (2, 0, 2), (1, 1, 2)])
def test_fused_conv_bias_relu_matches_eager(stride, pad, threads, tmp_path):
    from tilewise.frontends.torch_backend import mlir_group as mg
    from tilewise.frontends.torch_backend.fused import FusedRunner
    from tilewise.core.schedule import Schedule
    n, c, h, w, f = 2, 8, 12, 11, 24
    spec = _conv_spec(n, c, h, w, f, 3, stride, pad, [{"op": "bias", "input": 2}, {"op": "unary", "name": "relu"}])
    prog = mg.group_program(group_kind(spec), spec, [(n, c, h, w), (f, c, 3, 3), (f,)])
    # a cache tile (oh 2, ow 4, f 12), a register tile that does not divide ow, 4 channels a step
    s = Schedule(tile=[2, 4, 12, 0], reg_tile=[3, 8], c_tile=4, vectorize=True, threads=threads,
                 parallel_dim="oh" if stride == 1 else "f", precision="f32")
    runner = FusedRunner(spec, prog, mg.load_fused(group_kind(spec), spec, prog, s, str(tmp_path)), group_kind(spec))
    torch.manual_seed(0)
    x, wt, b = torch.randn(n, c, h, w), torch.randn(f, c, 3, 3), torch.randn(f)
    ref = F.relu(F.conv2d(x, wt, b, stride=stride, padding=pad))
    got = runner(x.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2), wt, b)
    assert got.shape == ref.shape and rel_error(got, ref) <= 1e-4


def test_fused_conv_with_a_residual_and_gelu_matches_eager(tmp_path):
    """An NCHW tensor in the epilogue (a residual) is passed in the kernel's NHWC domain."""
    from tilewise.frontends.torch_backend import mlir_group as mg
    from tilewise.frontends.torch_backend.fused import FusedRunner
    from tilewise.core.schedule import Schedule
    n, c, h, w, f = 1, 4, 9, 9, 16
    epi = [{"op": "bias", "input": 2}, {"op": "unary", "name": "gelu", "approximate": "none"},
           {"op": "binary", "name": "add", "alpha": 1, "input": 3},
           {"op": "binary", "name": "mul", "alpha": 1, "input": 4}]
    spec = _conv_spec(n, c, h, w, f, 3, 1, 1, epi)
    prog = mg.group_program(group_kind(spec), spec, [(n, c, h, w), (f, c, 3, 3), (f,), (n, f, h, w), (f, 1, 1)])
    assert [e[2] for e in prog["extra"]] == ["channel", "nchw", "nchw"]
    s = Schedule(tile=[0, 0, 0, 0], reg_tile=[4, 16], c_tile=1, vectorize=True, threads=1, parallel_dim="oh",
                 precision="f32")
    runner = FusedRunner(spec, prog, mg.load_fused(group_kind(spec), spec, prog, s, str(tmp_path)), group_kind(spec))
    torch.manual_seed(0)
    x, wt, b = torch.randn(n, c, h, w), torch.randn(f, c, 3, 3), torch.randn(f)
    res, scale = torch.randn(n, f, h, w), torch.randn(f, 1, 1)
    ref = (F.gelu(F.conv2d(x, wt, b, padding=1)) + res) * scale
    assert rel_error(runner(x, wt, b, res, scale), ref) <= 1e-4


def _plan_groups(cache):
    folder = os.path.join(cache, "plans")
    groups = {}
    for name in os.listdir(folder):
        with open(os.path.join(folder, name)) as f:
            groups.update(json.load(f)["groups"])
    return groups


@pytest.mark.parametrize("act", [F.gelu, F.silu], ids=["gelu", "silu"])
def test_mlp_runs_fused_kernels(act, opts, tmp_path, caplog):
    from tilewise.frontends.model_trace import ModelTrace
    caplog.set_level(logging.INFO, LOGGER)
    torch.manual_seed(0)
    model, x = MLP(act=act).eval(), torch.randn(16, 64)
    trace = tmp_path / "trace.json"
    with torch.no_grad():
        compiled = torch.compile(model, backend="tilewise", options={**opts, "trace": str(trace)})
        assert rel_error(compiled(x), model(x)) <= 1e-4
        assert rel_error(compiled(x), model(x)) <= 1e-4
    groups = _plan_groups(opts["cache"])
    assert len(groups) == 2 and all(g["fuse"] is True and g["schedule"] for g in groups.values())
    kernels = [k for k in ModelTrace.load(trace).kernels if k.kind == "kernel"]
    assert len(kernels) == 2 and all(k.schedule["fuse"] is True for k in kernels)
    assert any("2 with the epilogue inside the MLIR kernel" in r.getMessage() for r in caplog.records)
    assert any(f.startswith("fused-") for f in os.listdir(os.path.join(opts["cache"], "kernels")))


def test_fuse_false_keeps_the_unfused_path(opts):
    torch.manual_seed(0)
    model, x = MLP(act=F.relu).eval(), torch.randn(8, 64)
    with torch.no_grad():
        compiled = torch.compile(model, backend="tilewise", options={**opts, "fuse": False})
        assert rel_error(compiled(x), model(x)) <= 1e-4
    assert all(g["fuse"] is False for g in _plan_groups(opts["cache"]).values())


def test_failed_fused_build_falls_back(opts, monkeypatch, caplog):
    from tilewise.frontends.torch_backend import mlir_group as mg

    def broken(*a, **k):
        raise RuntimeError("the importer rejected it")
    monkeypatch.setattr(mg, "build_fused", broken)
    caplog.set_level(logging.INFO, LOGGER)
    torch.manual_seed(0)
    model, x = MLP(act=F.gelu).eval(), torch.randn(8, 64)
    with torch.no_grad():
        compiled = torch.compile(model, backend="tilewise", options=opts)
        assert rel_error(compiled(x), model(x)) <= 1e-4
    groups = _plan_groups(opts["cache"]).values()
    assert all(g["fuse"] is False and "importer rejected" in g["fuse_reason"] for g in groups)
    lines = [r.getMessage() for r in caplog.records if "epilogue not fused" in r.getMessage()]
    assert len(lines) == 2 and all(r.levelno == logging.WARNING for r in caplog.records
                                   if "epilogue not fused" in r.getMessage())


def test_wrong_fused_kernel_is_caught_by_the_check(opts, monkeypatch, caplog):
    """A fused kernel that computes something else (its activation dropped) fails the compile-time
    check against eager and is not used."""
    from tilewise.frontends.torch_backend import mlir_group as mg
    real = mg.group_program

    def without_activation(kind, spec, shapes):
        prog = real(kind, spec, shapes)
        return {**prog, "steps": [s for s in prog["steps"] if s["op"] != "unary"]}
    monkeypatch.setattr(mg, "group_program", without_activation)
    caplog.set_level(logging.INFO, LOGGER)
    torch.manual_seed(0)
    model, x = MLP(act=F.relu).eval(), torch.randn(8, 64)
    with torch.no_grad():
        compiled = torch.compile(model, backend="tilewise", options=opts)
        assert rel_error(compiled(x), model(x)) <= 1e-4
    groups = _plan_groups(opts["cache"])
    fc1 = next(g for g in groups.values() if g["workload"] == "matmul:8x256x64:f32")
    assert fc1["fuse"] is False and "differs from eager" in fc1["fuse_reason"]
    fc2 = next(g for g in groups.values() if g["workload"] == "matmul:8x64x256:f32")
    assert fc2["fuse"] is True          # bias only: nothing dropped, the check passes


@pytest.mark.slow
def test_max_autotune_times_fused_against_unfused(opts):
    torch.manual_seed(0)
    model, x = MLP(32, 64, 32, F.relu).eval(), torch.randn(8, 32)
    with torch.no_grad():
        compiled = torch.compile(model, backend="tilewise",
                                 options={**opts, "mode": "max-autotune", "trials": 2, "threads": 1})
        assert rel_error(compiled(x), model(x)) <= 1e-4
    groups = _plan_groups(opts["cache"]).values()
    assert len(groups) == 2
    for g in groups:
        assert g["fused_s"] > 0 and g["unfused_s"] > 0
        assert g["fuse"] is (g["fused_s"] <= g["unfused_s"])


def test_odd_shapes_and_uneven_thread_splits_are_fused(opts):
    """Tiles that do not divide, and threads that do not divide a dim (ragged thread tiles)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(100, 96), nn.SiLU(), nn.Linear(96, 50), nn.Tanh()).eval()
    x = torch.randn(33, 100)
    with torch.no_grad():
        compiled = torch.compile(model, backend="tilewise", options={**opts, "threads": 2})
        assert rel_error(compiled(x), model(x)) <= 1e-4
    groups = _plan_groups(opts["cache"]).values()
    assert len(groups) == 2 and all(g["fuse"] is True for g in groups)


def test_check_does_not_run_stateful_ops_again(opts):
    """The compile-time check must not update a BatchNorm's running stats an extra time."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.BatchNorm1d(16), nn.Linear(16, 16), nn.ReLU())
    check_batchnorm_updates_once_per_call(model, torch.randn(4, 8), opts)
    assert any(g["fuse"] for g in _plan_groups(opts["cache"]).values())


@pytest.mark.parametrize("threads", [1, 2])
def test_cnn_runs_its_conv_groups_fused(threads, opts, tmp_path, caplog):
    from tilewise.frontends.model_trace import ModelTrace
    caplog.set_level(logging.INFO, LOGGER)
    torch.manual_seed(0)
    model, x = SmallCNN().eval(), torch.randn(2, 3, 16, 16)
    trace = tmp_path / "trace.json"
    with torch.no_grad():
        compiled = torch.compile(model, backend="tilewise", options={**opts, "trace": str(trace), "threads": threads})
        for _ in range(2):
            assert rel_error(compiled(x), model(x)) <= 1e-4
    groups = _plan_groups(opts["cache"])
    convs = [g for g in groups.values() if g["workload"].startswith("conv2d_nhwc")]
    assert len(convs) == 2 and all(g["fuse"] is True and g["schedule"] for g in convs)
    kernels = [k for k in ModelTrace.load(trace).kernels if k.kind == "kernel"]
    conv_k = [k for k in kernels if k.ops[0] == "aten.convolution"]
    assert len(conv_k) == 2 and all(k.schedule["fuse"] is True and "aten.relu" in k.ops for k in conv_k)
    assert any("3 with the epilogue inside the MLIR kernel" in r.getMessage() for r in caplog.records)


def test_failed_conv_layout_rewrite_falls_back(opts, monkeypatch, caplog):
    from tilewise.frontends.torch_backend import mlir_conv

    def broken(*a, **k):
        raise RuntimeError("no NHWC conv here")
    monkeypatch.setattr(mlir_conv, "to_nhwc", broken)
    caplog.set_level(logging.INFO, LOGGER)
    torch.manual_seed(0)
    model, x = SmallCNN().eval(), torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        compiled = torch.compile(model, backend="tilewise", options=opts)
        for _ in range(2):
            assert rel_error(compiled(x), model(x)) <= 1e-4
    groups = _plan_groups(opts["cache"]).values()
    convs = [g for g in groups if g["workload"].startswith("conv2d_nhwc")]
    assert len(convs) == 2 and all(g["fuse"] is False and "no NHWC conv here" in g["fuse_reason"] for g in convs)
    assert [g["fuse"] for g in groups if g["workload"].startswith("matmul")] == [True]
    lines = [r for r in caplog.records if "epilogue not fused" in r.getMessage()]
    assert len(lines) == 2 and all(r.levelno == logging.WARNING for r in lines)


def test_without_a_compile_cache_the_unfused_kernels_run(opts):
    """``cache: False`` builds kernels into a per-process scratch folder, plain and fused alike
    (plain kernels used to come back as JIT kernels, whose entry point the group runner calls
    with the wrong convention: a segfault on the first unfused call)."""
    torch.manual_seed(0)
    model, x = MLP(act=F.relu).eval(), torch.randn(8, 64)
    with torch.no_grad():
        compiled = torch.compile(model, backend="tilewise", options={**opts, "cache": False, "fuse": False})
        assert rel_error(compiled(x), model(x)) <= 1e-4


def test_eval_batch_norm_is_folded_into_the_conv_epilogue(opts, caplog):
    """An eval-mode BatchNorm after a conv becomes ``x * scale + shift`` per channel (graph rewrite),
    which joins the conv's fused kernel with the ReLU after it; affine and non-affine norms, and
    running statistics changed after compiling are followed (they stay graph inputs)."""
    from torch.fx.experimental.proxy_tensor import make_fx
    from tilewise.frontends.torch_backend.graph import find_groups, fold_batch_norms
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(4, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                          nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8, affine=False)).eval()
    for bn in (model[1], model[4]):
        bn.running_mean.normal_()
        bn.running_var.uniform_(0.5, 2.0)
    x = torch.randn(2, 4, 12, 12)
    caplog.set_level(logging.INFO, logger="tilewise")
    with torch.no_grad():
        gm = make_fx(model)(x)
    assert fold_batch_norms(gm.graph) == 2
    assert not any("batch_norm" in str(n.target) for n in gm.graph.nodes)
    groups, _ = find_groups(gm.graph, set())
    assert [[s["op"] for s in g.epilogue] for g in groups] == [["bias", "binary", "binary", "unary"],
                                                                ["binary", "binary"]]
    with torch.no_grad():
        compiled = torch.compile(model, backend="tilewise", options=opts)
        assert torch.allclose(compiled(x), model(x), atol=1e-5, rtol=1e-4)
        model[1].running_var.mul_(3.0)
        assert torch.allclose(compiled(x), model(x), atol=1e-5, rtol=1e-4)
    assert "2 fused kernel(s) (2 with the epilogue inside" in caplog.text and "native_batch_norm" not in caplog.text
