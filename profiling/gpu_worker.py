"""The GPU runner's worker processes: one JSON request per stdin line, one JSON reply per stdout line.

``python -m tilewise.profiling.gpu_worker`` serves three kinds of request:

``{"op": "measure", "workload", "schedule", "config"}``    -> a Measurement's JSON
``{"op": "reference", "workload", "precision", "epilogue", "config"}`` -> torch.matmul's Measurement
``{"op": "precompile", "workload", "schedule", "config"}``  -> ``{"ok": bool}`` (compile into
Triton's on-disk cache, launch nothing: what the parallel compile workers do)

A reply after a CUDA error (other than out of resources) carries ``"restart": true`` and the worker
exits: the error poisons its CUDA context, so the next request goes to a new process.

The environment decides the device: the parent sets ``TRITON_INTERPRET=1`` for the interpreter
(triton reads it once, at import).  A worker exits when its parent goes away.
"""
from __future__ import annotations

import functools
import json
import os
import select
import subprocess
import sys
import tempfile

from tilewise.profiling.procs import ask_to_exit, exit_reason, kill_child


class WorkerDied(RuntimeError):
    pass


class WorkerTimeout(RuntimeError):
    pass


@functools.lru_cache(maxsize=2)
def _problem(w, seed: int):
    """The inputs and float64 references of (workload, seed), kept for the next candidates: drawing
    them and the float64 matmul on the CPU cost more than timing a candidate on a large GEMM (as
    the CPU timing process keeps its ``Inputs``)."""
    from tilewise.profiling.gpu_runner import make_gemm_problem
    return make_gemm_problem(w, seed)


def _serve(msg: dict) -> dict:
    from tilewise.core.schedule import Schedule
    from tilewise.core.workload import Workload
    from tilewise.profiling.gpu_runner import GpuRunnerConfig, measure_gpu, measure_torch, precompile
    from tilewise.core.measurement import Measurement
    w, cfg = Workload.from_json(msg["workload"]), GpuRunnerConfig(**msg["config"])
    op = msg.get("op", "measure")
    try:
        if op == "precompile":
            return {"ok": precompile(w, Schedule.from_json(msg["schedule"]), cfg)}
        if op == "reference":
            return measure_torch(w, msg["precision"], msg.get("epilogue", "none"), cfg,
                                 problem=_problem(w, cfg.seed)).to_json()
        return measure_gpu(w, Schedule.from_json(msg["schedule"]), cfg, problem=_problem(w, cfg.seed)).to_json()
    except Exception as e:        # a bug of ours in one candidate must not end the run
        if op == "precompile":
            return {"ok": False}
        return Measurement("runtime_error", f"{type(e).__name__}: {e}").to_json()


def worker_main() -> None:
    from tilewise.profiling.procs import exit_with_parent
    exit_with_parent()
    # the protocol gets its own copy of fd 1; fd 1 itself (and sys.stdout) go to stderr, so what a
    # library prints, from Python or from C, cannot corrupt a reply
    out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    for line in sys.stdin:
        if line.strip():
            reply = _serve(json.loads(line))
            poisoned = _poisoned(reply)
            out.write(json.dumps(dict(reply, restart=True) if poisoned else reply) + "\n")
            out.flush()
            if poisoned:              # a CUDA error poisons the context: the parent starts a new process
                os._exit(0)


def _poisoned(reply: dict) -> bool:
    msg = str(reply.get("error_msg", "")).lower()
    return (reply.get("status") == "runtime_error" and "out of resources" not in msg
            and ("cuda" in msg or "illegal" in msg or "device-side" in msg))


class WorkerProcess:
    """One worker subprocess, started on first use and restarted after it dies or hangs."""

    def __init__(self, device: str):
        self.device = device
        self.proc: subprocess.Popen | None = None
        self._log = None

    def _start(self) -> None:
        env = dict(os.environ)
        if self.device == "interpret":
            env["TRITON_INTERPRET"] = "1"
        else:
            env.pop("TRITON_INTERPRET", None)
        if self._log is None:
            self._log = tempfile.TemporaryFile()
        self._log.seek(0)
        self._log.truncate()
        self.proc = subprocess.Popen([sys.executable, "-m", "tilewise.profiling.gpu_worker"], env=env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log,
                                     text=True, bufsize=1)

    @property
    def stdout(self):
        return self.proc.stdout

    def send(self, request: dict) -> None:
        if self.proc is None or self.proc.poll() is not None:
            self.stop()
            self._start()
        try:
            self.proc.stdin.write(json.dumps(request) + "\n")
            self.proc.stdin.flush()
        except OSError:
            raise WorkerDied(self._death()) from None

    def read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            raise WorkerDied(self._death())
        try:
            reply = json.loads(line)
        except ValueError:
            raise WorkerDied(self._death()) from None
        if reply.pop("restart", False):
            self.stop()
        return reply

    def request(self, request: dict, timeout_s: float) -> dict:
        self.send(request)
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout_s)
        if not ready:
            self.stop()
            raise WorkerTimeout(f"no result within {timeout_s:.0f} s")
        return self.read()

    def _death(self) -> str:
        try:
            code = self.proc.wait(10) if self.proc is not None else None
        except subprocess.TimeoutExpired:
            code = None
        tail = self.log_tail()
        self.stop()
        return f"the GPU worker died ({exit_reason(code)})" + (f": {tail}" if tail else "")

    def log_tail(self) -> str:
        if self._log is None:
            return ""
        self._log.seek(0)
        return " ".join(self._log.read().decode(errors="replace").split())[-300:]

    def stop(self) -> None:
        if self.proc is not None:
            kill_child(self.proc, 10)
        self.proc = None

    def close(self) -> None:
        ask_to_exit(self.proc, 10)
        self.stop()
        if self._log is not None:
            self._log.close()
            self._log = None


if __name__ == "__main__":
    worker_main()
