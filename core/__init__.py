"""The ground floor: tilewise's core types, free of torch and MLIR.

``Workload`` (one op, its shapes and dtype), ``Schedule`` (knob values), ``Target`` (what a kernel
runs on), ``Candidate`` (a workload and a schedule to measure), ``Measurement`` (what timing it
gave) and ``Record`` (a measurement of a candidate on a target, as persisted), each a frozen value
with explicit JSON and a schema version; and the ``Registry`` every pluggable part uses.  Every
other package imports these from here; nothing here imports another tilewise package (op kinds
register themselves from ``tilewise.ir.ops``, found by name on the first lookup).
"""
