"""Transform-dialect scripts, built with the MLIR Python bindings.

A :class:`Script` appends a ``transform.named_sequence @__transform_main`` to a payload module and
offers one method per scheduling step.  Op-specific schedulers (``tilewise.ir.ops``) compose these
steps; nothing here knows about a particular op.  Every method must be called inside the payload
module's ``Context`` and ``Location``; the builder keeps its own insertion point.

The step sequences that are *always* part of a vectorized schedule (fold/licm/cse before hoisting,
``outerproduct`` contraction lowering, the three vector-lowering pattern sets) live here so that
every op kind gets them the same way (see shared/MLIR_NOTES.md for why each one matters).
"""
from __future__ import annotations

from typing import Sequence

from torch_mlir import ir
from torch_mlir.dialects import transform
from torch_mlir.dialects.bufferization import LayoutMapOption
from torch_mlir.dialects.transform import bufferization as tbuf
from torch_mlir.dialects.transform import loop as tloop
from torch_mlir.dialects.transform import memref as tmemref
from torch_mlir.dialects.transform import structured as ts
from torch_mlir.dialects.transform import vector as tvec

ENTRY_POINT = "__transform_main"

_CONTRACT_LOWERING = {
    "outerproduct": tvec.VectorContractLowering.OuterProduct,
    "dot": tvec.VectorContractLowering.Dot,
    "llvmintr": tvec.VectorContractLowering.LLVMIntr,
    "parallelarith": tvec.VectorContractLowering.ParallelArith,
}


def _any() -> ir.Type:
    return transform.AnyOpType.get()


class Script:
    """Builder for the transform script of one payload module.

    ``consumes_root``: the script bufferizes (``one_shot_bufferize`` consumes the module handle).
    """

    def __init__(self, module: ir.Module, *, consumes_root: bool):
        module.operation.attributes["transform.with_named_sequence"] = ir.UnitAttr.get()
        root_attr = "transform.consumed" if consumes_root else "transform.readonly"
        with ir.InsertionPoint(module.body):
            self._seq = transform.NamedSequenceOp(
                ENTRY_POINT, [_any()], [], arg_attrs=[{root_attr: ir.UnitAttr.get()}])
        self._ip = ir.InsertionPoint(self._seq.body)
        self.root: ir.Value = self._seq.bodyTarget

    def finish(self) -> None:
        with self._ip:
            transform.YieldOp()

    # -- handles ---------------------------------------------------------------------------------
    def match(self, names: str | Sequence[str], within: ir.Value | None = None) -> ir.Value:
        with self._ip:
            return ts.MatchOp.match_op_names(within if within is not None else self.root, names).result

    def match_marked(self, name: str, marker: str, within: ir.Value) -> ir.Value:
        """Every ``name`` op carrying the unit attribute ``marker`` (set when the payload was built;
        tiling and peeling keep it), for kernels with several ops of one name."""
        with self._ip:
            return ts.MatchOp(_any(), within, ops=[name], op_attrs={marker: ir.UnitAttr.get()}).result

    def func(self, within: ir.Value | None = None) -> ir.Value:
        return self.match("func.func", within)

    def split(self, handle: ir.Value, n: int) -> list[ir.Value]:
        with self._ip:
            return list(transform.SplitHandleOp([_any()] * n, handle).results)

    def merge(self, handles: Sequence[ir.Value]) -> ir.Value:
        with self._ip:
            return transform.MergeHandlesOp(list(handles)).result

    def split_op(self, target: ir.Value, dimension: int, after: int) -> ir.Value:
        """``structured.split``: ``target`` cut along loop ``dimension`` into [0, after) and
        [after, extent); one handle holding both ops, in that order."""
        with self._ip:
            return ts.SplitOp(target, dimension=dimension, chunk_sizes=after).result

    # -- tiling ----------------------------------------------------------------------------------
    def tile(self, target: ir.Value, sizes: Sequence[int],
             interchange: Sequence[int] | None = None) -> tuple[ir.Value, list[ir.Value]]:
        """``tile_using_for``; returns the tiled op and one loop handle per non-zero size, in loop
        order (outermost first, i.e. after ``interchange``)."""
        with self._ip:
            op = ts.TileUsingForOp(target, sizes=list(sizes),
                                   interchange=list(interchange) if interchange else None)
            return op.results[0], list(op.results[1:])

    def tile_forall(self, target: ir.Value, num_threads: Sequence[int]) -> tuple[ir.Value, ir.Value]:
        with self._ip:
            op = ts.TileUsingForallOp(target, num_threads=list(num_threads))
            return op.results[0], op.results[1]

    def fuse(self, target: ir.Value, sizes: Sequence[int], use_forall: bool = False) -> ir.Value:
        """``structured.fuse``: tile ``target`` by ``sizes`` (one ``scf.forall`` when
        ``use_forall``) and fuse its producers into each tile, greedily; the tiled op."""
        with self._ip:
            return ts.FuseOp(target, tile_sizes=list(sizes), apply_cleanup=True, use_forall=use_forall).results[0]

    def fuse_into(self, producer: ir.Value, containing: ir.Value) -> tuple[ir.Value, ir.Value]:
        with self._ip:
            op = ts.FuseIntoContainingOp(producer, containing)
            return op.results[0], op.results[1]

    def peel(self, loop_nest: Sequence[ir.Value]) -> None:
        """Peel the loops of a tiled nest (outermost first, as ``tile`` returns them) so that full
        tiles have static sizes.  ``loop.peel`` fails when the step divides the trip count; that is
        not an error here, so each peel runs in its own ``sequence failures(suppress)``.  Inner
        loops go first: peeling a loop consumes the handles of everything nested in it."""
        for loops in reversed(list(loop_nest)):
            self._peel_each(loops)

    def _peel_each(self, loops: ir.Value) -> None:
        with self._ip:
            each = transform.ForeachOp([], [loops])
            with ir.InsertionPoint(each.body):
                seq = transform.SequenceOp(transform.FailurePropagationMode.Suppress, [], each.bodyTargets[0])
                with ir.InsertionPoint(seq.body):
                    loop = transform.CastOp(transform.OperationType.get("scf.for"), seq.bodyTarget).result
                    tloop.LoopPeelOp(_any(), _any(), loop)
                    transform.YieldOp()
                transform.YieldOp()

    def unroll_loops_of(self, ops: ir.Value, factor: int) -> None:
        """Unroll the innermost ``scf.for`` around each op in ``ops`` (k-unroll)."""
        with self._ip:
            parent = transform.GetParentOp(transform.OperationType.get("scf.for"), ops,
                                           op_name="scf.for", deduplicate=True).result
            tloop.LoopUnrollOp(parent, factor=factor)

    # -- memory ----------------------------------------------------------------------------------
    def promote(self, target: ir.Value, operands: Sequence[int], *, use_alloca: bool = True,
                alignment: int = 64) -> ir.Value:
        with self._ip:
            return ts.PromoteOp(_any(), target, operands_to_promote=list(operands),
                                use_alloca=use_alloca, alignment=alignment).result

    def hoist_buffers(self, func: ir.Value) -> None:
        """One buffer per promoted operand, not one per loop iteration (alloca in a loop grows the
        stack until it faults)."""
        with self._ip:
            tbuf.BufferLoopHoistingOp(func)

    def bufferize(self) -> ir.Value:
        """One-shot bufferization of the whole module; returns the new root handle.  Function
        boundaries get identity-layout memrefs so that kernels take plain strided buffers."""
        with self._ip:
            op = tbuf.OneShotBufferizeOp(
                _any(), self.root, bufferize_function_boundaries=True,
                function_boundary_type_conversion=LayoutMapOption.IdentityLayoutMap)
            self.root = op.result
            return self.root

    def eliminate_empty_tensors(self, func: ir.Value) -> None:
        with self._ip:
            tbuf.EliminateEmptyTensorsOp(func)

    # -- patterns --------------------------------------------------------------------------------
    def _patterns(self, target: ir.Value, *builders) -> None:
        with self._ip:
            op = transform.ApplyPatternsOp(target)
            with ir.InsertionPoint(op.patterns):
                for build in builders:
                    build()

    def canonicalize(self, target: ir.Value) -> None:
        self._patterns(target, transform.ApplyCanonicalizationPatternsOp)

    def cse(self, target: ir.Value) -> None:
        """Common-subexpression elimination (after bufferization it merges identical subviews, so
        that in-place ``insert_slice`` copies become self-copies that canonicalization erases)."""
        with self._ip:
            transform.ApplyCommonSubexpressionEliminationOp(target)

    def fold_unit_dims(self, target: ir.Value) -> None:
        """Drop the unit dims of tiled linalg ops on tensors (rank-reducing slices).  A register tile whose
        reduction dims all have extent 1 becomes an all-parallel op, so its body vectorizes as
        written -- a ``math.fma`` stays one FMA -- instead of through a multi-dim reduction."""
        self._patterns(target, ts.ApplyFoldUnitExtentDimsViaSlicesPatternsOp,
                       transform.ApplyCanonicalizationPatternsOp)

    def decompose(self, target: ir.Value) -> ir.Value:
        """Rewrite higher-D convolutions into 1-D ones the vectorizer handles (tensors only)."""
        with self._ip:
            return ts.DecomposeOp(target).result

    def vectorize(self, func: ir.Value) -> ir.Value:
        with self._ip:
            return ts.VectorizeChildrenAndApplyPatternsOp(func).result

    def hoist_vector_transfers(self, func: ir.Value) -> ir.Value:
        """Keep accumulators in registers across the reduction loop.  Without folding subviews into
        the transfers, LICM and CSE first, the hoisting finds nothing (MLIR_NOTES: 17 -> 46 GFLOP/s)."""
        self._patterns(func, tmemref.ApplyFoldMemrefAliasOpsPatternsOp,
                       transform.ApplyCanonicalizationPatternsOp)
        loops = self.match("scf.for", func)
        with self._ip:
            transform.ApplyLoopInvariantCodeMotionOp(loops)
            transform.ApplyLoopInvariantCodeMotionOp(loops)
            transform.ApplyCommonSubexpressionEliminationOp(func)
            return ts.HoistRedundantVectorTransfersOp(_any(), func).result

    def lower_vectors(self, func: ir.Value, contraction: str = "outerproduct") -> None:
        """Lower vector ops to what LLVM turns into FMAs and loads: three pattern sets, in order."""
        self._patterns(
            func,
            tvec.ApplyVectorReductionToContractPatternsOp,
            tvec.ApplyTransferPermutationPatternsOp,
            tvec.ApplyCastAwayVectorLeadingOneDimPatternsOp,
            transform.ApplyCanonicalizationPatternsOp)
        self._patterns(
            func,
            lambda: tvec.ApplyLowerContractionPatternsOp(
                lowering_strategy=_CONTRACT_LOWERING[contraction]),
            tvec.ApplyLowerOuterProductPatternsOp,
            tvec.ApplyCastAwayVectorLeadingOneDimPatternsOp)
        self._patterns(
            func,
            tvec.ApplyLowerBroadcastPatternsOp,
            lambda: tvec.ApplyLowerTransferPatternsOp(max_transfer_rank=1),
            lambda: tvec.ApplyTransferToScfPatternsOp(max_transfer_rank=1, full_unroll=True),
            tvec.ApplyLowerShapeCastPatternsOp,
            lambda: tvec.ApplyLowerTransposePatternsOp(
                lowering_strategy=tvec.VectorTransposeLowering.Shuffle1D),
            lambda: tvec.ApplyMultiReductionUnrollingPatternsOp(
                lowering_strategy=tvec.VectorMultiReductionLowering.InnerReduction),
            lambda: tvec.ApplyMultiReductionFlatteningPatternsOp(
                lowering_strategy=tvec.VectorMultiReductionLowering.InnerReduction))

    def vectorize_bufferized(self, root: ir.Value) -> ir.Value:
        """Vectorize the kernel of a bufferized module ``root`` (its function CSE'd and canonicalized
        first, so identical subviews merge), hoist the transfers and lower the vectors; returns the
        lowered function's handle."""
        fb = self.func(root)
        self.cse(fb)
        self.canonicalize(fb)
        fh = self.hoist_vector_transfers(self.vectorize(fb))
        self.lower_vectors(fh)
        return fh

    def rows_in_vectors(self, ops: Sequence[ir.Value], rank: int, vector: int, func: ir.Value,
                        vectorize: bool = True) -> None:
        """The inner end of a row-wise schedule (softmax, the backend's fused row-wise groups):
        each op in ``ops`` row by row, ``vector`` elements of the last dim per step (the partial
        step peeled), then vectorize, bufferize and lower the vectors."""
        for op in ops:
            _, loops = self.tile(op, [1] * (rank - 1) + [vector])
            self.peel(loops[-1:])
        self.canonicalize(func)
        if vectorize:
            func = self.vectorize(func)
        self.eliminate_empty_tensors(func)
        root = self.bufferize()
        if vectorize:
            self.lower_vectors(self.hoist_vector_transfers(self.func(root)))

    def forall_to_for(self, within: ir.Value) -> None:
        """Sequentialize ``scf.forall`` loops (fusion tiles) after bufferization."""
        foralls = self.match("scf.forall", within)
        with self._ip:
            each = transform.ForeachOp([], [foralls])
            with ir.InsertionPoint(each.body):
                loop = transform.CastOp(transform.OperationType.get("scf.forall"), each.bodyTargets[0]).result
                tloop.ForallToForOp([_any()], loop)
                transform.YieldOp()
