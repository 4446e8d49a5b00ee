"""A throw-away Ray cluster on loopback for the tests: a head node and worker nodes, each a
``ray start --block`` process in a session of its own, so that one node can be killed (SIGKILL to
its whole process tree) while the others go on.  Nothing here touches Ray processes it did not
start (no ``ray stop``, which would end every Ray process on the machine)."""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

RAY = os.path.join(os.path.dirname(sys.executable), "ray")

#: environment of every node and of the driver: no usage stats, no token set-up, and node deaths
#: noticed within a few seconds (the GCS health check; Ray's default takes ~30 s)
ENV = {
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_AUTH_MODE": "disabled",
    "RAY_health_check_initial_delay_ms": "1000",
    "RAY_health_check_period_ms": "500",
    "RAY_health_check_timeout_ms": "1000",
    "RAY_health_check_failure_threshold": "3",
    "RAY_DEDUP_LOGS": "0",
    # Ray Client (ray://) on a loaded 2-core machine: its per-client server may take a while to start
    "RAY_CLIENT_SERVER_CHECK_CHANNEL_TIMEOUT_S": "120",
    "RAY_CLIENT_INITIAL_CONNECTION_TIMEOUT_S": "20",
    "RAY_CLIENT_MAX_CONNECTION_TIMEOUT_S": "60",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                stat = fh.read()
        except OSError:
            continue
        ppid = int(stat.rpartition(")")[2].split()[1])
        tree.setdefault(ppid, []).append(int(entry))
    return tree


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants now alive."""
    tree, out, todo = _children(), [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(tree.get(p, []))
    return out


def kill_tree(proc: subprocess.Popen) -> None:
    """SIGKILL ``proc``, every descendant and its process group (a node dies as on a power cut)."""
    pids = process_tree(proc.pid)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        pass


class LocalCluster:
    def __init__(self):
        # short: Ray's socket paths live under it and a Unix socket path has ~107 bytes at most
        self.temp_dir = tempfile.mkdtemp(prefix="twray-", dir="/tmp")
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.client_port = free_port()                   # Ray Client server: ray://127.0.0.1:PORT
        self.nodes: list[subprocess.Popen] = []
        self.env = dict(os.environ, **ENV)

    def _start(self, args: list[str], cores: list[int] | None, log: str) -> subprocess.Popen:
        argv = [RAY, "start", "--block", "--node-ip-address", "127.0.0.1", "--num-cpus", "1",
                "--object-store-memory", str(100 * 1024 ** 2), "--disable-usage-stats",
                "--dashboard-agent-listen-port", str(free_port()), "--metrics-export-port", str(free_port()),
                "--runtime-env-agent-port", str(free_port()), *args]
        if cores:
            argv = ["taskset", "-c", ",".join(map(str, cores))] + argv
        out = open(os.path.join(self.temp_dir, log), "w")
        proc = subprocess.Popen(argv, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        self.nodes.append(proc)
        return proc

    def start_head(self, cores: list[int] | None = None) -> subprocess.Popen:
        return self._start(["--head", "--port", str(self.port), "--include-dashboard", "false",
                            "--ray-client-server-port", str(self.client_port), "--temp-dir", self.temp_dir],
                           cores, "head.log")

    def add_worker(self, cores: list[int] | None = None) -> subprocess.Popen:
        return self._start(["--address", self.address], cores, f"worker{len(self.nodes)}.log")

    def wait_for_nodes(self, n: int, timeout_s: float = 120.0) -> None:
        import ray
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            alive = [x for x in ray.nodes() if x["Alive"]]
            if len(alive) >= n:
                return
            for p in self.nodes:
                if p.poll() is not None:
                    raise RuntimeError(f"a Ray node exited ({p.returncode}): {self.logs()}")
            time.sleep(0.5)
        raise TimeoutError(f"{n} Ray nodes did not come up in {timeout_s:g} s: {self.logs()}")

    def logs(self) -> str:
        text = []
        for name in sorted(os.listdir(self.temp_dir)):
            if name.endswith(".log"):
                with open(os.path.join(self.temp_dir, name), errors="replace") as fh:
                    text.append(f"--- {name}\n{fh.read()[-1500:]}")
        return "\n".join(text)

    def shutdown(self) -> None:
        for proc in reversed(self.nodes):
            kill_tree(proc)
        shutil.rmtree(self.temp_dir, ignore_errors=True)
