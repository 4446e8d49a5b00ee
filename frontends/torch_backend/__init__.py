"""``torch.compile(model, backend="tilewise")``: whole graphs lowered to fused, tuned tilewise kernels.

Registered through the ``torch_dynamo_backends`` entry point (pyproject.toml), so the string works
without importing tilewise.  Modules: ``options`` (what the user can set), ``graph`` (aten graph ->
fusion groups), ``kernels`` (schedules and the kernel-library cache), ``runtime`` (running a group on
torch tensors), ``cache`` (per-graph plans), ``profile`` (timing and the model trace), ``backend``
(the dynamo entry point and the fallback rules).
"""
from tilewise.frontends.torch_backend.backend import backend

__all__ = ["backend"]
