"""``tilewise info``: the detected target and its measured ceilings."""
from __future__ import annotations

import typer
from rich.table import Table

from tilewise.frontends.cli.context import err, out, print_json, torch_sees_gpu


def info(as_json: bool = typer.Option(False, "--json", help="print the target as JSON"),
         refresh: bool = typer.Option(False, "--refresh", help="measure the CPU's ceilings again (a few seconds)")):
    """Print the detected target (CPU model, ISA, cores, caches), its key and measured ceilings.

    The CPU's identity (vendor, family, model, stepping) is part of the key.  The ceilings -- FMA
    throughput per vector width, load bandwidth per cache level and DRAM, OpenMP fork/join cost --
    are measured at first use (a few seconds) and cached per key.

    Examples:

      tilewise info

      tilewise info --refresh --json
    """
    from tilewise.core.target import detect
    from tilewise.profiling import hardware
    from tilewise.profiling.cuda_target import describe_cuda
    t = detect()
    measured = None if refresh else hardware.cached_descriptor(t)
    if measured is None:
        err.print("measuring this CPU's ceilings (once per target; tilewise info --refresh repeats it)")
        measured = hardware.descriptor(t, refresh=True)
    gpu = describe_cuda() if torch_sees_gpu() else None
    if as_json:
        d = dict(t.to_json(), key=t.key(), measured=measured)
        if gpu is not None:
            d["gpus"] = [dict(gpu.to_json(), key=gpu.key())]
        print_json(d)
        return
    table = Table(title="tilewise target", show_header=False)
    table.add_row("cpu", t.name)
    if t.cpuid:
        c = dict(t.cpuid)
        table.add_row("cpuid", f"{c.get('vendor', '?')} family {c.get('family', '?')} model {c.get('model', '?')} "
                               f"stepping {c.get('stepping', '?')}")
    table.add_row("arch", t.arch)
    table.add_row("cores", str(t.cores))
    table.add_row("simd", f"{t.simd_bits}-bit ({t.simd_lanes()} f32 lanes)")
    table.add_row("isa", " ".join(t.isa))
    table.add_row("caches", ", ".join(f"{k} {v // 1024} KiB" for k, v in t.caches.items()))
    table.add_row("versions", ", ".join(f"{k} {v}" for k, v in t.versions))
    table.add_row("key", t.key()[:16])
    for label, text in measured_rows(measured, t.cores):
        table.add_row(label, text)
    if gpu is not None:
        table.add_row("gpu", f"{gpu.name} ({gpu.arch}, {gpu.cores} SMs)")
    out.print(table)


def measured_rows(m: dict[str, float], cores: int) -> list[tuple[str, str]]:
    """The measured figures (``profiling.hardware``) as a few rows of fixed labels."""
    rows = []
    for t, label in ((1, "fma f32, 1 core"), (cores, f"fma f32, {cores} cores")):
        cells = [f"{k.split('_')[2][:-1]}-bit {v / 1e9:.1f}" for k, v in m.items()
                 if k.startswith("fma_f32_") and k.endswith(f"_{t}t_flops_per_s")]
        if cells and (t == 1 or cores > 1):
            rows.append((label, ", ".join(cells) + " GFLOP/s"))
    loads = [f"{k[len('load_'):-len('_bytes_per_s')].replace('dram', 'DRAM')} {v / 1e9:.1f}" for k, v in m.items()
             if k.startswith("load_")]
    if loads:
        rows.append(("load, 1 core", ", ".join(loads) + " GB/s"))
    copies = [f"{n} core{'s' if n != '1' else ''} {v / 1e9:.1f}" for k, v in m.items() if k.startswith("stream_dram_")
              for n in [k.split("_")[2][:-1]]]
    if copies:
        rows.append(("DRAM copy", ", ".join(copies) + " GB/s"))
    forks = [f"{k.split('_')[3][:-1]} threads {v * 1e6:.2f}" for k, v in m.items() if k.startswith("omp_fork_join_")]
    if forks:
        rows.append(("fork/join", ", ".join(forks) + " us"))
    return rows
