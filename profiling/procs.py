"""Process helpers shared by the runner's workers: placement, memory cap, exit reasons, ending a
child that speaks a line protocol on its stdin/stdout."""
from __future__ import annotations

import os
import signal
import subprocess
import threading
import time


def allowed_cores() -> list[int]:
    try:
        return sorted(os.sched_getaffinity(0))
    except AttributeError:          # not Linux: no pinning
        return list(range(os.cpu_count() or 1))


def pin(cores) -> None:
    """Run the calling thread on ``cores`` (threads it starts afterwards inherit them)."""
    if cores and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, set(cores))


def lower_to_idle_priority() -> None:
    """SCHED_IDLE: run only when no normal-priority task wants the core (no privilege needed)."""
    if hasattr(os, "SCHED_IDLE"):
        try:
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
        except OSError:
            os.nice(19)


def limit_memory(max_bytes: int | None) -> None:
    """Cap the address space: an allocation beyond it fails in this process instead of the
    out-of-memory killer picking a victim on the whole machine."""
    if max_bytes:
        import resource
        resource.setrlimit(resource.RLIMIT_AS, (max_bytes, max_bytes))


def exit_reason(returncode: int | None) -> str:
    """``-11`` -> ``"killed by SIGSEGV"``; a SIGKILL nobody sent is most often the OOM killer."""
    if returncode is None:
        return "still running"
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        hint = " (out of memory?)" if -returncode == signal.SIGKILL else ""
        return f"killed by {name}{hint}"
    return f"exited with status {returncode}"


def ask_to_exit(proc: subprocess.Popen | None, wait_s: float) -> None:
    """Close a live child's stdin (the end of its requests) and give it ``wait_s`` to exit."""
    if proc is not None and proc.poll() is None:
        try:
            proc.stdin.close()
            proc.wait(wait_s)
        except (OSError, subprocess.TimeoutExpired):
            pass


def kill_child(proc: subprocess.Popen, wait_s: float) -> None:
    """SIGKILL the child if it still runs, reap it (waiting up to ``wait_s``), close its pipes."""
    if proc.poll() is None:
        proc.kill()
    try:
        proc.wait(wait_s)
    except subprocess.TimeoutExpired:
        pass
    for f in (proc.stdin, proc.stdout):
        try:
            f.close()
        except OSError:
            pass


def tail(path: str, max_chars: int = 300) -> str:
    """The last lines a worker wrote to its log, on one line."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - max_chars))
            text = f.read().decode(errors="replace")
    except OSError:
        return ""
    return " ".join(text.split())


def exit_with_parent(poll_s: float = 1.0, remove_dir: str | None = None) -> int:
    """Exit when the parent process goes away, even in the middle of a hung kernel (ctypes drops
    the GIL around the call), removing ``remove_dir`` first; returns the watchdog thread's native
    id.  A runner killed outright (SIGKILL) leaves no spinning worker behind."""
    parent = os.getppid()
    started = threading.Event()
    ident = []

    def watch():
        ident.append(threading.get_native_id())
        started.set()
        while os.getppid() == parent:
            time.sleep(poll_s)
        if remove_dir:
            import shutil
            shutil.rmtree(remove_dir, ignore_errors=True)
        os._exit(3)

    threading.Thread(target=watch, name="tilewise-exit-with-parent", daemon=True).start()
    started.wait()
    return ident[0]
