"""Where a catalogue base model's weights are on this machine: built-in models are built here."""

from __future__ import annotations

from pathlib import Path

from service.catalog import BaseModel
from service.settings import Settings


def base_model_path(base: BaseModel, settings: Settings) -> Path:
    """A local directory with the base model's weights and tokenizer: `builtin:tiny-chat` and
    `builtin:tiny-embed` are built once under the data dir, a directory is used as it is, and
    anything else is a Hugging Face id, downloaded (or found in the hub's cache)."""
    models_dir = settings.resolved_data_dir() / "models"
    if base.source == "builtin:tiny-chat":
        from trainer.tiny_model import ensure_tiny_chat

        return ensure_tiny_chat(models_dir)
    if base.source == "builtin:tiny-embed":
        from trainer.tiny_embedder import ensure_tiny_embedder

        return ensure_tiny_embedder(models_dir)
    if Path(base.source).is_dir():
        return Path(base.source)
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(base.source))
