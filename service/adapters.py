"""What makes a stored adapter fit a base model: its marker file and the base model's fingerprint.

The trainer writes `ftserve.json` beside each adapter it stores, last, with the fingerprint of
the base model it trained on; an inference server serves the adapter only if the fingerprint
matches its own base model's.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

ADAPTER_MARKER = "ftserve.json"
FULL_HASH_BYTES = 1 << 30
"""Weights up to this size in all are hashed whole; larger ones by size and their first and last MiB."""
SAMPLE_BYTES = 1 << 20

_weights_digests: dict[tuple[str, ...], str] = {}


def _digest(paths: list[Path], extra: str = "") -> str:
    sha = hashlib.sha256(extra.encode())
    for path in sorted(paths):
        if path.exists():
            sha.update(path.name.encode())
            sha.update(path.read_bytes())
    return sha.hexdigest()


def _weights_digest(weights: list[Path]) -> str:
    """The weights' content hash, computed once per process for files of the same size and time.

    Models built locally (`tiny-chat`) are built by every role, so trainer and inference server
    must agree on the bytes, not only on their size. Gigabytes of downloaded weights would cost
    seconds at every job: above `FULL_HASH_BYTES` a sample of each file stands in.
    """
    stats = [(p, p.stat()) for p in weights]
    key = tuple(f"{p}:{s.st_size}:{s.st_mtime_ns}" for p, s in stats)
    if key in _weights_digests:
        return _weights_digests[key]
    whole = sum(s.st_size for _, s in stats) <= FULL_HASH_BYTES
    sha = hashlib.sha256()
    for path, stat in stats:
        sha.update(f"{path.name}:{stat.st_size}".encode())
        with path.open("rb") as f:
            if whole:
                for block in iter(lambda: f.read(SAMPLE_BYTES), b""):
                    sha.update(block)
            else:
                sha.update(f.read(SAMPLE_BYTES))
                f.seek(max(0, stat.st_size - SAMPLE_BYTES))
                sha.update(f.read(SAMPLE_BYTES))
    _weights_digests[key] = sha.hexdigest()
    return _weights_digests[key]


def base_fingerprint(base_path: Path) -> dict[str, str]:
    """Hashes that tell whether an adapter fits a server's base model and tokenizer.

    `base` covers the architecture config and the weights (`_weights_digest`); `tokenizer`
    covers the vocabulary, the special tokens and the chat template, which decide what the
    adapter was trained to read.
    """
    weights = sorted(base_path.glob("*.safetensors")) + sorted(base_path.glob("*.bin"))
    tokenizer_files = [base_path / n for n in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja")]
    return {
        "base": _digest([base_path / "config.json"], _weights_digest(weights)),
        "tokenizer": _digest(tokenizer_files),
    }
