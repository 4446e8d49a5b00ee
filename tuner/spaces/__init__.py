"""Built-in search spaces (each module registers its op kinds' space)."""
from tilewise.tuner.spaces import contraction  # noqa: F401
from tilewise.tuner.spaces import elementwise  # noqa: F401,E402
from tilewise.tuner.spaces import conv  # noqa: F401,E402
from tilewise.tuner.spaces import gpu_gemm  # noqa: F401,E402  (cuda targets: Triton GEMMs)
