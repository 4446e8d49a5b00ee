"""The CPU's dot-product units: which precisions have one on a target, and the bf16 lowering onto
``vdpbf16ps`` (``x86.avx512.dot``) for CPUs with ``avx512_bf16``.

A dot-product instruction multiplies *pairs* along K and adds both products to one f32 lane
(``vdpbf16ps``: 16 lanes x 2 bf16 per 512-bit step; ``vpdpbusd``: u8 x s8 quads into s32).  So its
B operand must hold each pair of K rows interleaved per column -- the VNNI layout ``B[K/2, N, 2]``
-- and A's pair ``A[m, 2p:2p+2]`` is broadcast as one 32-bit lane.  :func:`bf16_dot_module` builds
that contraction (``linalg.generic`` over (m, n, p, v), k = 2p + v), tiles it to 1 x 16 x 1 x 2,
vectorizes it into a ``vector.contract`` on bf16 with an f32 accumulator, and rewrites that with
MLIR's ``x86`` patterns (``apply_patterns.x86.vector_contract_to_packed_type_dot_product``) into
``x86.avx512.dot``; ``convert-vector-to-llvm{enable-x86=true}`` turns it into the intrinsic
``llvm.x86.avx512bf16.dpbf16ps.512``.

The torch-mlir wheel names the dialect ``x86`` (upstream's former ``x86vector``) and the pass option
``enable-x86`` (``enable-x86vector`` no longer parses).  What is not built yet: the ``matmul`` op
kind choosing this lowering from a schedule knob (its B arrives as ``[K, N]``: a VNNI packing step
is needed), and int8 on ``vpdpbusd``.  Where the target lacks the unit the search space offers no
such lowering (:func:`dot_unit_gap` says why), and the module is only compiled, never run: the
test generates its LLVM IR and, with ``llc``, the assembly for ``+avx512bf16``.
"""
from __future__ import annotations

#: compute precision -> ISA flags any one of which provides its dot-product unit
DOT_UNITS = {"bf16": ("avx512_bf16",), "i8": ("avx512_vnni", "avx_vnni")}


def dot_unit_gap(target, precision: str) -> str | None:
    """Why ``target`` has no dot-product unit for ``precision`` (None: it has one)."""
    flags = DOT_UNITS.get(precision)
    if flags is None:
        return f"no dot-product unit computes {precision}"
    if any(f in target.isa for f in flags):
        return None
    return f"no {' / '.join(flags)} on {target.name}"


def bf16_dot_module(m: int, n: int, k: int, *, lanes: int = 16):
    """``C[m, n] = sum_k A[m, k] B[k, n]`` with A as ``[M, K/2, 2]`` and B in VNNI layout ``[K/2, N, 2]``
    (bf16), C f32, scheduled onto ``x86.avx512.dot``: returns ``(context, module)`` after the
    transform (bufferized, vector ops and ``x86.avx512.dot``), before lowering to LLVM."""
    from torch_mlir import ir
    from torch_mlir.dialects import arith, func, linalg, transform
    from torch_mlir.dialects import _x86_transform_ops_gen as x86_transform
    from torch_mlir.dialects.transform import vector as tvec

    from tilewise.ir.compiler import _drop_returned_outputs, _run, _strip_transform
    from tilewise.ir.script import Script

    if k % 2 or n % lanes:
        raise ValueError(f"the bf16 dot lowering needs an even K and N a multiple of {lanes}: got N={n}, K={k}")
    ctx = ir.Context()
    with ctx, ir.Location.unknown():
        module = ir.Module.create()
        bf16, f32 = ir.BF16Type.get(), ir.F32Type.get()

        def t(shape, elt):
            return ir.RankedTensorType.get(list(shape), elt)

        with ir.InsertionPoint(module.body):
            @func.FuncOp.from_py_func(t((m, k // 2, 2), bf16), t((k // 2, n, 2), bf16), t((m, n), f32), name="kernel")
            def kernel(A, B, C):
                acc = linalg.fill(arith.ConstantOp(f32, 0.0).result, outs=[C])
                maps = [ir.Attribute.parse(f"affine_map<(m, n, p, v) -> {r}>") for r in ("(m, p, v)", "(p, n, v)", "(m, n)")]
                it = linalg.IteratorType
                op = linalg.GenericOp_([A, B], [acc], ir.ArrayAttr.get(maps),
                                       [it.parallel, it.parallel, it.reduction, it.reduction])
                block = op.regions[0].blocks[0]
                with ir.InsertionPoint(block):
                    a, b, c = block.arguments
                    linalg.YieldOp([arith.addf(c, arith.mulf(arith.extf(f32, a), arith.extf(f32, b)))])
                return op.result
        for op in module.body.operations:
            op.operation.attributes["llvm.emit_c_interface"] = ir.UnitAttr.get()
        script = Script(module, consumes_root=True)
        f = script.func()
        script.tile(script.match("linalg.fill", f), [1, lanes])
        script.tile(script.match("linalg.generic", f), [1, lanes, 1, 2])
        fb = script.func(script.bufferize())
        fv = script.vectorize(fb)
        # mulf(extf, extf) + reduction -> a bf16 vector.contract into f32 -> the packed dot product
        script._patterns(fv, tvec.ApplyVectorReductionToContractPatternsOp, tvec.ApplyFoldArithExtensionPatternsOp,
                         transform.ApplyCanonicalizationPatternsOp)
        script._patterns(fv, x86_transform.ApplyVectorContractToPackedTypeDotProductPatternsOp)
        fh = script.hoist_vector_transfers(fv)
        script.lower_vectors(fh)
        script.finish()
        _run("builtin.module(transform-interpreter)", module, "transform")
        _strip_transform(module)
        _drop_returned_outputs(module)         # C written in place: the calling convention of every kernel
    return ctx, module


def bf16_dot_llvm_ir(m: int, n: int, k: int) -> str:
    """The LLVM IR (text) of :func:`bf16_dot_module`: lowered with ``enable-x86``, translated."""
    from torch_mlir.dialects import llvm

    from tilewise.ir.compiler import _run, lowering_pipeline

    ctx, module = bf16_dot_module(m, n, k)
    with ctx:
        _run(lowering_pipeline(1, native_bf16=True, x86=True), module, "lower")
        return str(llvm.translate_module_to_llvmir(module.operation))


#: the features the bf16 dot kernel's functions are compiled for when the host lacks them
_BF16_FEATURES = '#llvm.target_features<["+avx512f", "+avx512bw", "+avx512vl", "+avx512bf16"]>'


def bf16_dot_engine(m: int, n: int, k: int, *, for_host: bool = False):
    """An ExecutionEngine holding :func:`bf16_dot_module` compiled to machine code; unless
    ``for_host``, its functions carry ``+avx512bf16`` so that a CPU without the unit compiles them
    too (the code must then never run there: it is for ``dump_to_object_file``)."""
    from torch_mlir import execution_engine, ir

    from tilewise.ir.compiler import _run, lowering_pipeline

    ctx, module = bf16_dot_module(m, n, k)
    with ctx:
        _run(lowering_pipeline(1, native_bf16=True, x86=True), module, "lower")
        if not for_host:
            features = ir.Attribute.parse(_BF16_FEATURES)
            for op in module.body.operations:
                if op.operation.name == "llvm.func" and len(op.regions[0].blocks):
                    op.operation.attributes["target_features"] = features
        return ctx, execution_engine.ExecutionEngine(module, opt_level=2)
