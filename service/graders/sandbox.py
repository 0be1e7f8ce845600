"""Running a `python` grader's `grade(sample, item)` in a sandbox, never in this process.

Each call starts a fresh process tree under bubblewrap (`bwrap`) with:
- every namespace unshared (network, PID, IPC, UTS, mount, user): no network at all, no view
  of this host's processes;
- a filesystem of `/usr` (read-only, for the interpreter and its standard library), a private
  `/proc` and `/dev`, and an empty, read-only working directory: nothing of the service's data,
  no other tenant's files, nowhere to write;
- when the service runs as root, the sandbox runs as `nobody` (65534), so that the process
  limit below counts the sandbox's processes only;
- resource limits (`prlimit`): CPU seconds, address space, processes, file size, open files;
- a wall-clock timeout, after which the whole process group is killed (bwrap's PID namespace
  dies with its first process, taking every descendant with it).

The source and the JSON of `sample` and `item` travel on stdin; the reward comes back on stdout.
Where bubblewrap cannot start (not installed, or user namespaces switched off, as in many
Kubernetes pods), python graders are refused with a 400; they never run unsandboxed.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import shutil
import signal
import subprocess
from dataclasses import dataclass
from typing import Any

from service.graders.errors import GraderConfigError, SampleFailure

NOBODY = 65534

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
    """Wall-clock limit of one grading call."""
    cpu_s: int = 10
    """CPU seconds (RLIMIT_CPU)."""
    memory_mb: int = 512
    """Address space (RLIMIT_AS)."""
    processes: int = 32
    """Processes of the sandbox's user (RLIMIT_NPROC)."""
    file_mb: int = 1
    """Largest file it may write (RLIMIT_FSIZE); nothing is writable anyway."""
    interpreter: str = "/usr/bin/python3"
    """A Python under /usr, the only tree the sandbox sees."""


def command(limits: SandboxLimits) -> list[str]:
    bwrap, prlimit = shutil.which("bwrap"), shutil.which("prlimit")
    if not bwrap or not prlimit:
        raise _unavailable("bubblewrap (`bwrap`) and `prlimit` must be installed")
    argv = [
        prlimit,
        f"--cpu={limits.cpu_s}",
        f"--as={limits.memory_mb * 1024 * 1024}",
        f"--nproc={limits.processes}",
        f"--fsize={limits.file_mb * 1024 * 1024}",
        "--nofile=64",
        "--core=0",
        "--",
    ]
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if not setpriv:
            raise _unavailable("`setpriv` is needed to drop root before entering the sandbox")
        argv += [setpriv, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
    argv += [
        bwrap, "--unshare-all", "--die-with-parent", "--new-session",
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
    try:
        argv = command(limits)
    except GraderConfigError as error:
        return error.message
    payload = json.dumps({"source": "def grade(s, i):\n    return 1", "sample": {}, "item": {}})
    try:
        done = subprocess.run(argv, input=payload.encode(), capture_output=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"the sandbox did not start ({error})"
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
    process = await asyncio.create_subprocess_exec(
        *command(limits),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
    )
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(payload), limits.timeout_s)
    except TimeoutError:
        raise SampleFailure(
            "python_grader_runtime_error", f"The grader did not finish within {limits.timeout_s:g} s and was killed."
        ) from None
    finally:
        if process.returncode is None:
            with _suppress_lookup():
                os.killpg(process.pid, signal.SIGKILL)
            await process.wait()
    if process.returncode != 0:
        tail = stderr.decode(errors="replace").strip()[-1500:]
        if process.returncode < 0:
            tail = f"killed by signal {-process.returncode} ({signal.Signals(-process.returncode).name}). {tail}"
        raise SampleFailure("python_grader_runtime_error", tail or f"exit status {process.returncode}")
    try:
        return float(json.loads(stdout)["reward"])
    except (ValueError, KeyError, TypeError):
        raise SampleFailure("python_grader_runtime_error", "`grade` did not return a number.") from None


class _suppress_lookup:
    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> bool:
        return kind is not None and issubclass(kind, ProcessLookupError | PermissionError)
