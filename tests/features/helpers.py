"""Shared fixtures of the feature tests."""
from tilewise.core.target import Target

#: a fixed target, so hand-computed values do not depend on the machine running the tests
TARGET = Target(kind="cpu", name="test cpu", arch="x86_64", isa=("avx2", "avx512f", "fma"), cores=2,
                simd_bits=512, cache_bytes=(("L1d", 32768), ("L2", 1 << 20), ("L3", 1 << 25)))
