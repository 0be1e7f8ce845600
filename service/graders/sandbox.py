"""Running a `python` grader's `grade(sample, item)` in a sandbox, never in this process.

Each call starts a fresh process tree under bubblewrap (`bwrap`) with:
- every namespace unshared (network, PID, IPC, UTS, mount, user): no network at all, no view
  of this host's processes;
- a filesystem of `/usr` (read-only, for the interpreter and its standard library), a private
  `/proc` and `/dev`, and an empty, read-only working directory: nothing of the service's data,
  no other tenant's files, nowhere to write;
- resource limits (`prlimit`): CPU seconds, address space, processes, file size, open files;
- a wall-clock timeout, after which the sandbox is killed and reaped before the call returns:
  the grader is the PID namespace's first process (`--as-pid-1`), so its death takes every
  descendant with it, and bwrap, whose child it is, reaps it and exits (`--die-with-parent`
  does the same should this process die first). bwrap's own init process is left out on
  purpose: bwrap exits as soon as the command does, before that init is reaped, which leaves a
  zombie to the host's init; where that init is slow to reap, the zombies pile up and count
  against the process limit below.

**The process limit, per sandbox.** RLIMIT_NPROC is not counted per process tree: the kernel
counts every process of the sandbox's *real* user on the host (a user namespace maps it to a
uid of its own inside, but each process is still charged to the uid outside). Were every
sandbox to run as one user (`nobody`), concurrent sandboxes, and any other `nobody` process of
the host, would share one budget: a handful of graders at once (three processes each: bwrap,
its init, Python) exhaust 32, and bwrap fails with "Can't fork". So each running sandbox holds
a *slot* from a pool of `SLOTS`, claimed with an exclusive `flock` on a file under the temporary
directory (shared by the API and the workers of one host, released by the kernel if the holder
dies), and:
- when the service runs as root, the sandbox runs as that slot's own uid (`SLOT_UID_BASE` +
  slot, a range no account uses): the limit is then exactly the sandbox's, a fork bomb in one
  grader cannot starve another, and `FTSERVE_RFT_GRADER_CONCURRENCY` graders run at once;
- otherwise it runs as the service's user, whose own processes count too: the limit is then
  set to that user's task count at start plus `processes` for each slot, so the budget is
  concurrency x per-sandbox limit (a runaway grader can take others' share, never the
  service's: the service's own rlimit is untouched).
At most `SLOTS` sandboxes run at once on a host; a call waits for a slot within its timeout.

The source and the JSON of `sample` and `item` travel on stdin; the reward comes back on stdout.
Where bubblewrap cannot start (not installed, or user namespaces switched off, as in many
Kubernetes pods), python graders are refused with a 400; they never run unsandboxed.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import functools
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from service.graders.errors import GraderConfigError, SampleFailure

SLOTS = 64
"""Sandboxes that may run at once on one host (well above any grading concurrency)."""
SLOT_UID_BASE = 0x70000000
"""The first slot's uid when running as root: above systemd's container ranges, below 2^31."""
SLOT_DIR = Path(tempfile.gettempdir()) / "ftserve-sandbox-slots"
"""Where the slots' lock files live."""

# Runs inside the sandbox: the grader's own prints go to stderr, the reward alone to stdout.
HARNESS = """
import json, sys
data = json.loads(sys.stdin.read())
out = sys.stdout
sys.stdout = sys.stderr
namespace = {"__name__": "grader"}
exec(compile(data["source"], "grader.py", "exec"), namespace)
reward = namespace["grade"](data["sample"], data["item"])
out.write(json.dumps({"reward": float(reward)}))
"""


@dataclass(frozen=True)
class SandboxLimits:
    timeout_s: float = 10.0
    """Wall-clock limit of one grading call, waiting for a slot included."""
    cpu_s: int = 10
    """CPU seconds (RLIMIT_CPU)."""
    memory_mb: int = 512
    """Address space (RLIMIT_AS)."""
    processes: int = 32
    """Processes of one sandbox (RLIMIT_NPROC on the slot's own uid; see the module docstring)."""
    file_mb: int = 1
    """Largest file it may write (RLIMIT_FSIZE); nothing is writable anyway."""
    interpreter: str = "/usr/bin/python3"
    """A Python under /usr, the only tree the sandbox sees."""


def _try_slot() -> tuple[int, int] | None:
    """A free slot, claimed: (slot, the lock file's descriptor, to close when done), or None."""
    SLOT_DIR.mkdir(mode=0o700, exist_ok=True)
    for slot in range(SLOTS):
        fd = os.open(SLOT_DIR / f"{slot}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        return slot, fd
    return None


@contextlib.asynccontextmanager
async def _slot(deadline: float) -> AsyncIterator[int]:
    """Hold a slot while the sandbox runs; waits (politely) while all are taken."""
    while (claimed := _try_slot()) is None:
        if time.monotonic() >= deadline:
            raise SampleFailure("python_grader_runtime_error", f"All {SLOTS} sandboxes of this host stayed busy.")
        await asyncio.sleep(0.05)
    slot, fd = claimed
    try:
        yield slot
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def _user_tasks(uid: int) -> int:
    """Processes and threads of `uid` on this host: what RLIMIT_NPROC counts."""
    count = 0
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if entry.stat().st_uid == uid:
                    count += len(os.listdir(f"/proc/{entry.name}/task"))
    return count


def command(limits: SandboxLimits, slot: int = 0) -> list[str]:
    bwrap, prlimit = shutil.which("bwrap"), shutil.which("prlimit")
    if not bwrap or not prlimit:
        raise _unavailable("bubblewrap (`bwrap`) and `prlimit` must be installed")
    root = os.geteuid() == 0
    nproc = limits.processes if root else _user_tasks(os.getuid()) + limits.processes * SLOTS
    argv = [
        prlimit,
        f"--cpu={limits.cpu_s}",
        f"--as={limits.memory_mb * 1024 * 1024}",
        f"--nproc={nproc}",
        f"--fsize={limits.file_mb * 1024 * 1024}",
        "--nofile=64",
        "--core=0",
        "--",
    ]
    if root:
        setpriv = shutil.which("setpriv")
        if not setpriv:
            raise _unavailable("`setpriv` is needed to drop root before entering the sandbox")
        uid = SLOT_UID_BASE + slot
        argv += [setpriv, f"--reuid={uid}", f"--regid={uid}", "--clear-groups"]
    argv += [
        bwrap, "--unshare-all", "--as-pid-1", "--die-with-parent", "--new-session",
        "--ro-bind", "/usr", "/usr",
        "--symlink", "usr/lib", "/lib", "--symlink", "usr/lib64", "/lib64", "--symlink", "usr/bin", "/bin",
        "--proc", "/proc", "--dev", "/dev",
        "--tmpfs", "/grader", "--remount-ro", "/grader", "--chdir", "/grader",
        "--clearenv", "--setenv", "PATH", "/usr/bin",
        limits.interpreter, "-I", "-S", "-c", HARNESS,
    ]  # fmt: skip
    return argv


def _unavailable(why: str) -> GraderConfigError:
    return GraderConfigError(
        f"Python graders cannot run here: {why}. They run only in a sandbox; see the README's "
        "Graders section for what it needs.",
        param="grader.type",
        code="python_grader_unavailable",
    )


@functools.cache
def _probe(limits: SandboxLimits) -> str | None:
    """Why the sandbox cannot start here, or None when a trivial grader runs in it."""
    payload = json.dumps({"source": "def grade(s, i):\n    return 1", "sample": {}, "item": {}})
    claimed = None
    try:
        claimed = _try_slot()
        argv = command(limits, claimed[0] if claimed else SLOTS - 1)
        done = subprocess.run(argv, input=payload.encode(), capture_output=True, timeout=30, check=False)
    except GraderConfigError as error:
        return error.message
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"the sandbox did not start ({error})"
    finally:
        if claimed:
            os.close(claimed[1])
    if done.returncode != 0:
        return f"the sandbox did not start ({done.stderr.decode(errors='replace').strip()[-300:]})"
    return None


def check_available(limits: SandboxLimits, enabled: bool) -> None:
    """Refuse (400) python graders when they are switched off or the sandbox cannot start."""
    if not enabled:
        raise GraderConfigError(
            "Python graders are switched off on this service (FTSERVE_PYTHON_GRADER=off).",
            param="grader.type",
            code="python_grader_disabled",
        )
    why = _probe(limits)
    if why:
        raise _unavailable(why)


async def run_python(source: str, sample: dict[str, Any], item: Any, limits: SandboxLimits) -> float:
    """The reward `grade(sample, item)` returns; any failure is this sample's runtime error."""
    payload = json.dumps({"source": source, "sample": sample, "item": item}).encode()
    deadline = time.monotonic() + limits.timeout_s
    async with _slot(deadline) as slot:
        stdout, stderr, returncode = await _run(command(limits, slot), payload, deadline, limits.timeout_s)
    if returncode != 0:
        tail = stderr.decode(errors="replace").strip()[-1500:]
        if returncode < 0:
            tail = f"killed by signal {-returncode} ({signal.Signals(-returncode).name}). {tail}"
        raise SampleFailure("python_grader_runtime_error", tail or f"exit status {returncode}")
    try:
        return float(json.loads(stdout)["reward"])
    except (ValueError, KeyError, TypeError):
        raise SampleFailure("python_grader_runtime_error", "`grade` did not return a number.") from None


async def _run(argv: list[str], payload: bytes, deadline: float, timeout_s: float) -> tuple[bytes, bytes, int]:
    """Run one sandbox to its end or the deadline; either way it is killed and reaped before the
    slot is given back, so no process of it outlives the call (nor a zombie)."""
    process = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
    )
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(payload), max(0.0, deadline - time.monotonic()))
    except TimeoutError:
        raise SampleFailure(
            "python_grader_runtime_error", f"The grader did not finish within {timeout_s:g} s and was killed."
        ) from None
    finally:
        if process.returncode is None:
            await asyncio.shield(_kill(process))
    assert process.returncode is not None
    return stdout, stderr, process.returncode


async def _kill(process: asyncio.subprocess.Process) -> None:
    """Kill a sandbox that overran or was cancelled, and reap it.

    What bwrap runs goes first, so that bwrap reaps it and exits: killing bwrap first would hand
    its child to the host's init, a zombie (still counted by the slot's process limit) for as long
    as that init does not reap it. The child is the sandbox's PID 1 (`--as-pid-1`): its death
    takes every process of the sandbox with it. Should bwrap not follow (caught mid-setup), its
    process group is killed too."""
    _kill_children(process.pid)
    try:
        await asyncio.wait_for(asyncio.shield(process.wait()), 2.0)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        await process.wait()


def _kill_children(pid: int) -> None:
    with contextlib.suppress(OSError):  # procfs: no disk behind it
        for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
            os.kill(int(child), signal.SIGKILL)
