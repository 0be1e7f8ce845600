"""Where a catalogue base model's weights are on this machine, checked before first use.

Sources, in the order they are tried:
- `builtin:tiny-chat`, `builtin:tiny-embed`: built once under the data dir;
- an entry with `weights` (a GGUF that `ftserve models add` converted): that directory, downloaded
  once from object storage, so every role reads the same bytes;
- a `.gguf` file (or a directory holding one) named in a hand-edited catalogue: converted once
  here, under the data dir;
- a local model directory: used as it is;
- anything else: a Hugging Face id, fetched (or found in the hub's cache).

Whatever the source, `trainer.model_import.check_model_dir` runs once per process on the result,
and every failure is a `ModelSourceError` that names the source and the fix: a job on such a
model fails at once instead of being retried.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from service.catalog import BaseModel
from service.settings import CommonSettings, StorageSettings
from trainer.model_import import ModelSourceError, check_model_dir, convert_gguf, find_gguf

_checked: dict[tuple[str, str], Path] = {}


def base_model_path(base: BaseModel, settings: StorageSettings) -> Path:
    """A local directory with the base model's weights and tokenizer, checked (see the module)."""
    key = (base.name, f"{base.source}|{base.weights}|{base.chat_template}")
    if key in _checked:
        return _checked[key]
    models_dir = settings.resolved_data_dir() / "models"
    if base.source == "builtin:tiny-chat":
        from trainer.tiny_model import ensure_tiny_chat

        return ensure_tiny_chat(models_dir)
    if base.source == "builtin:tiny-embed":
        from trainer.tiny_embedder import ensure_tiny_embedder

        return ensure_tiny_embedder(models_dir)
    stored = base.weights is not None
    path = _stored_copy(base, settings, models_dir) if stored else _local_or_fetched(base, settings, models_dir)
    check_model_dir(path, base.source, chat_template=base.chat_template, task=base.task)
    _checked[key] = path
    return path


def _local_or_fetched(base: BaseModel, settings: CommonSettings, models_dir: Path) -> Path:
    local = Path(base.source).expanduser()
    if local.exists():
        gguf = find_gguf(local)
        if gguf is None:
            return local
        stat = gguf.stat()
        stamp = f"{gguf.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{base.chat_template}"
        name = hashlib.sha256(stamp.encode()).hexdigest()[:16]
        target = models_dir / "gguf" / name
        if not (target / "config.json").is_file():
            _build_atomically(target, lambda tmp: convert_gguf(gguf, tmp, base.chat_template))
        return target
    return fetch_source(base.source, settings)


def fetch_source(source: str, settings: CommonSettings) -> Path:
    """A Hugging Face model id, downloaded (or found in the hub's cache); a path that is not on
    this machine is refused as such, not looked up on the hub."""
    from huggingface_hub import snapshot_download

    if source.startswith(("/", ".", "~")) or source.endswith(".gguf"):
        raise ModelSourceError(
            f"{source}: no such file or directory on this machine. Every trainer and inference server must see "
            "the path (mount it), or add the model with `ftserve models add`, which stores a converted GGUF in "
            "object storage for all of them."
        )

    try:
        return Path(snapshot_download(source, token=settings.hf_token or None))
    except Exception as exc:
        reason = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"
        raise ModelSourceError(
            f"The base model {source!r} could not be fetched from the Hugging Face hub ({reason}). On a machine "
            "without a route to the hub, put the model in a local directory or a .gguf file and add it with "
            "`ftserve models add NAME --source PATH`; for a gated model, set FTSERVE_HF_TOKEN."
        ) from exc


def _stored_copy(base: BaseModel, settings: StorageSettings, models_dir: Path) -> Path:
    """The converted model under `base.weights`, downloaded once into the data dir."""
    from service.storage import configured_storage, download_tree

    assert base.weights is not None
    target = models_dir / "stored" / base.weights.strip("/").replace("/", "--")
    if (target / "config.json").is_file():
        return target
    storage = configured_storage(settings)
    if storage.size(base.weights + "config.json") is None:
        raise ModelSourceError(
            f"{base.name}: its converted weights are missing from object storage "
            f"({base.weights}); add the model again with `ftserve models add {base.name} "
            f"--source {base.source}`."
        )
    _build_atomically(target, lambda tmp: download_tree(storage, base.weights or "", tmp))
    return target


def _build_atomically(target: Path, build: Callable[[Path], object]) -> None:
    """Build into a temporary sibling, then rename: a reader never sees half a model, and of two
    processes building at once, one wins and the other's copy is dropped."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        build(tmp)
        try:
            os.rename(tmp, target)
        except OSError:
            if not (target / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
