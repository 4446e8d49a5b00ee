"""``tilewise info``: the detected target."""
from __future__ import annotations

import typer
from rich.table import Table

from tilewise.frontends.cli.context import out, print_json, torch_sees_gpu


def info(as_json: bool = typer.Option(False, "--json", help="print the target as JSON")):
    """Print the detected target (CPU model, ISA, cores, caches) and its key.

    Examples:

      tilewise info

      tilewise info --json
    """
    from tilewise.core.target import detect
    from tilewise.profiling.cuda_target import describe_cuda
    t = detect()
    gpu = describe_cuda() if torch_sees_gpu() else None
    if as_json:
        d = dict(t.to_json(), key=t.key())
        if gpu is not None:
            d["gpus"] = [dict(gpu.to_json(), key=gpu.key())]
        print_json(d)
        return
    table = Table(title="tilewise target", show_header=False)
    table.add_row("cpu", t.name)
    table.add_row("arch", t.arch)
    table.add_row("cores", str(t.cores))
    table.add_row("simd", f"{t.simd_bits}-bit ({t.simd_lanes()} f32 lanes)")
    table.add_row("isa", " ".join(t.isa))
    table.add_row("caches", ", ".join(f"{k} {v // 1024} KiB" for k, v in t.caches.items()))
    table.add_row("versions", ", ".join(f"{k} {v}" for k, v in t.versions))
    table.add_row("key", t.key()[:16])
    if gpu is not None:
        table.add_row("gpu", f"{gpu.name} ({gpu.arch}, {gpu.cores} SMs)")
    out.print(table)
