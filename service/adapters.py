"""What makes a stored adapter fit a base model: its marker file and the base model's fingerprint.

The trainer writes `ftserve.json` beside each adapter it stores, last, with the fingerprint of
the base model it trained on; an inference server serves the adapter only if the fingerprint
matches its own base model's.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

ADAPTER_MARKER = "ftserve.json"


def _digest(paths: list[Path], extra: str = "") -> str:
    sha = hashlib.sha256(extra.encode())
    for path in sorted(paths):
        if path.exists():
            sha.update(path.name.encode())
            sha.update(path.read_bytes())
    return sha.hexdigest()


def base_fingerprint(base_path: Path) -> dict[str, str]:
    """Hashes that tell whether an adapter fits a server's base model and tokenizer.

    `base` covers the architecture config and the sizes of the weight files (hashing gigabytes
    of weights at every job would cost minutes); `tokenizer` covers the vocabulary, the special
    tokens and the chat template, which decide what the adapter was trained to read.
    """
    weights = sorted(p for p in base_path.glob("*.safetensors")) + sorted(base_path.glob("*.bin"))
    sizes = ",".join(f"{p.name}:{p.stat().st_size}" for p in weights)
    tokenizer_files = [base_path / n for n in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja")]
    return {
        "base": _digest([base_path / "config.json"], sizes),
        "tokenizer": _digest(tokenizer_files),
    }
