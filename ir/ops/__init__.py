"""Op kinds: each registers itself by name (``get_op("matmul")``)."""
from tilewise.ir.ops.base import ArgSpec, OpKind, ScheduleError, all_ops, get_op, register  # noqa: F401
from tilewise.ir.ops import matmul  # noqa: F401,E402
from tilewise.ir.ops import elementwise, reduction  # noqa: F401,E402
from tilewise.ir.ops import conv  # noqa: F401,E402
