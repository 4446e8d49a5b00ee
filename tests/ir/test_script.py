"""IR tests: print the scheduled module and compare text."""
import pytest

from tilewise.ir import Schedule, Workload, transformed_ir
from tilewise.ir.build import build_module
from tilewise.ir.script import Script


def _script_text(w, s):
    with build_module(w) as (_, module):
        script = Script(module, consumes_root=True)
        w.kind.schedule(script, w, s)
        script.finish()
        return str(module)


def test_packed_schedule_script_has_the_recipe_steps():
    w = Workload.parse("matmul:96x64x64:f32")
    text = _script_text(w, Schedule(tile=[0, 16, 64], promote=True, reg_tile=[6, 16], unroll=2))
    for step in ["transform.bufferization.one_shot_bufferize", "tile_sizes [0, 16, 64]",
                 "transform.structured.promote", "use_alloca", "tile_sizes [6, 16, 1]",
                 "transform.loop.peel", "failures(suppress)", "buffer_loop_hoisting",
                 "vectorize_children_and_apply_patterns", "fold_memref_alias_ops", "apply_licm",
                 "apply_cse", "hoist_redundant_vector_transfers", "lower_contraction",
                 "lower_outerproduct", "transfer_to_scf", "transform.loop.unroll"]:
        assert step in text, step
    # fold/licm/cse must come before hoisting, or hoisting silently does nothing
    assert text.index("apply_cse") < text.index("hoist_redundant_vector_transfers")


def test_threads_use_forall():
    w = Workload.parse("matmul:64x64x64:f32")
    text = _script_text(w, Schedule(reg_tile=[4, 16], threads=2, parallel_dim="m"))
    assert "tile_using_forall" in text and "num_threads [2, 0, 0]" in text


@pytest.mark.jit
def test_transformed_ir_is_vectorized_memref_code():
    w = Workload.parse("matmul:64x64x64:f32")
    text = transformed_ir(w, Schedule(tile=[0, 32, 64], promote=True, reg_tile=[4, 16]))
    assert "memref<64x64xf32>" in text and "vector.fma" in text
    assert "linalg.matmul" not in text
    untuned = transformed_ir(w, w.kind.untuned_schedule(w))
    assert "linalg.matmul" in untuned and "vector." not in untuned
