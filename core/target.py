"""Targets: what a kernel runs on, detected from the machine (never hard-coded).

``Target.key()`` hashes the hardware description together with the tilewise and MLIR (torch-mlir
wheel, which pins LLVM) versions: a measurement taken on one CPU or with one compiler never
answers for another.  The description includes the CPU's identity as the processor reports it
(``cpuid``: vendor, family, model, stepping), so two microarchitectures with the same model string,
flags and caches (both "AMD EPYC", say) do not share records.  What is *measured* about a target
(``peaks``: FMA throughput per vector width, bandwidth per cache level, fork/join cost;
:mod:`tilewise.profiling.hardware`) is carried but is neither identity nor key.

Schema 2 added ``cpuid``; schema-1 targets (records written before it) load with an empty one and
keep their key: the key is computed in schema 1's form, with ``cpuid`` joining it only when known.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import platform
from dataclasses import asdict, dataclass, field
from importlib import metadata
from typing import Any, ClassVar

_ISA_FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_bf16",
              "avx512_fp16", "avx512_vnni", "avx_vnni", "amx_tile", "amx_bf16", "amx_int8", "f16c")


@dataclass(frozen=True)
class Target:
    kind: str                                   # "cpu" | "cuda"
    name: str                                   # CPU model string
    arch: str                                   # x86_64, aarch64, ...
    isa: tuple[str, ...]                        # relevant ISA features, sorted
    cores: int                                  # cores this process may run on
    simd_bits: int                              # widest float vector register (a warp's 32 lanes on cuda)
    cache_bytes: tuple[tuple[str, int], ...]    # (("L1d", 32768), ("L2", ...), ("L3", ...))
    versions: tuple[tuple[str, str], ...] = field(default=())
    #: measured peaks of a GPU (("bf16_flops_per_s", ...), ("dram_bytes_per_s", ...)): measured,
    #: not identity, so neither in ``key()`` nor in equality; omitted from the JSON when empty
    #: (every CPU target), so CPU targets' JSON and keys are what they were before this field
    peaks: tuple[tuple[str, float], ...] = field(default=(), compare=False)
    #: (("family", "26"), ("model", "2"), ("stepping", "1"), ("vendor", "AuthenticAMD")); empty for a
    #: GPU and for targets read from schema-1 records
    cpuid: tuple[tuple[str, str], ...] = ()
    schema_version: ClassVar[int] = 2

    @property
    def caches(self) -> dict[str, int]:
        return dict(self.cache_bytes)

    def simd_lanes(self, dtype: str = "f32") -> int:
        """Vector lanes of the type a kernel of ``dtype`` computes in (f32 for bf16/f16 inputs,
        since this code path widens them; i32 for i8)."""
        return self.simd_bits // 32

    @property
    def vector_registers(self) -> int:
        return 32 if self.simd_bits >= 512 else 16

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["isa"] = list(self.isa)
        d["cache_bytes"] = dict(self.cache_bytes)
        d["versions"] = dict(self.versions)
        # written in the oldest schema that holds it: a target without cpuid is schema 1, byte for byte
        d["schema_version"] = self.schema_version if self.cpuid else 1
        if self.peaks:
            d["peaks"] = dict(self.peaks)
        else:
            del d["peaks"]
        if self.cpuid:
            d["cpuid"] = dict(self.cpuid)
        else:
            del d["cpuid"]
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "Target":
        version = d.get("schema_version", 1)
        if version not in (1, cls.schema_version):
            raise ValueError(f"target schema version {version!r} is not supported: this tilewise reads "
                             f"1 and {cls.schema_version}; upgrade tilewise to read these records")
        return cls(kind=d["kind"], name=d["name"], arch=d["arch"], isa=tuple(d["isa"]), cores=d["cores"],
                   simd_bits=d["simd_bits"], cache_bytes=tuple(d["cache_bytes"].items()),
                   versions=tuple(d["versions"].items()),
                   peaks=tuple((str(k), float(v)) for k, v in (d.get("peaks") or {}).items()),
                   cpuid=tuple(sorted((str(k), str(v)) for k, v in (d.get("cpuid") or {}).items())))

    def key(self) -> str:
        d = self.to_json()
        d.pop("peaks", None)
        d["schema_version"] = 1          # the key's form stays schema 1's: old records keep their keys
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()

    def peak(self, name: str, default: float = 0.0) -> float:
        return dict(self.peaks).get(name, default)

    def describe(self) -> str:
        c = self.caches
        caches = ", ".join(f"{k} {v // 1024} KiB" for k, v in c.items())
        return (f"{self.name} ({self.arch}), {self.cores} cores, {self.simd_bits}-bit SIMD, "
                f"ISA {' '.join(self.isa)}; {caches}")


def _versions() -> tuple[tuple[str, str], ...]:
    out = {}
    for dist in ("tilewise", "torch-mlir"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "unknown"
    return tuple(sorted(out.items()))


#: /proc/cpuinfo fields of the processor's identity -> Target.cpuid names (x86; "CPU implementer",
#: "CPU part" and "CPU revision" on arm64)
_CPUID_FIELDS = {"vendor_id": "vendor", "cpu family": "family", "model": "model", "stepping": "stepping",
                 "CPU implementer": "vendor", "CPU architecture": "family", "CPU part": "model",
                 "CPU revision": "stepping"}


def _cpuinfo() -> tuple[str, set[str], dict[str, str]]:
    """(model name, flags, identity) of the first processor in /proc/cpuinfo."""
    name, flags, ident = platform.processor() or platform.machine(), set(), {}
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                key = key.strip()
                if not key and (flags or ident):
                    break                       # the first processor's block ended
                if key == "model name" and name in ("", platform.machine(), platform.processor()):
                    name = value.strip()
                elif key in ("flags", "Features") and not flags:
                    flags = set(value.split())
                elif key in _CPUID_FIELDS and _CPUID_FIELDS[key] not in ident:
                    ident[_CPUID_FIELDS[key]] = value.strip()
    except OSError:
        pass
    return name, flags, ident


def _size(text: str) -> int:
    text = text.strip().upper()
    mult = {"K": 1024, "M": 1024 ** 2, "G": 1024 ** 3}.get(text[-1:], 1)
    return int(text.rstrip("KMG") or 0) * mult


def _caches(cpu: int = 0) -> tuple[tuple[str, int], ...]:
    base = f"/sys/devices/system/cpu/cpu{cpu}/cache"
    found = {}
    try:
        entries = sorted(os.listdir(base))
    except OSError:
        return ()
    for e in entries:
        if not e.startswith("index"):
            continue
        try:
            level = open(f"{base}/{e}/level").read().strip()
            ctype = open(f"{base}/{e}/type").read().strip()
            size = _size(open(f"{base}/{e}/size").read())
        except OSError:
            continue
        if ctype == "Instruction":
            continue
        label = f"L{level}" + ("d" if ctype == "Data" else "")
        found[label] = size
    return tuple(sorted(found.items()))


@functools.lru_cache(maxsize=1)
def detect() -> Target:
    """The CPU this process runs on."""
    name, flags, ident = _cpuinfo()
    isa = tuple(sorted(f for f in _ISA_FLAGS if f in flags))
    simd = 512 if "avx512f" in flags else 256 if "avx" in flags else 128
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    return Target(kind="cpu", name=name, arch=platform.machine(), isa=isa, cores=cores,
                  simd_bits=simd, cache_bytes=_caches(), versions=_versions(), cpuid=tuple(sorted(ident.items())))
