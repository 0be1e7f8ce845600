"""The base-model catalogue: built-ins, operator entries, aliases, and the CLI that edits it."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.catalog import BaseModel, load_catalog, save_entry
from service.settings import Settings
from tests.test_keys_and_cli import run_cli


def test_builtin_tiny_chat_resolves(tmp_path: Path) -> None:
    catalog = load_catalog(Settings(data_dir=tmp_path))
    model = catalog.resolve("tiny-chat")
    assert model is not None and model.is_builtin
    assert catalog.resolve("gpt-4o-mini-2024-07-18") is None


def test_operator_entries_and_aliases(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    save_entry(settings, BaseModel(name="local-llama", source="/models/llama", aliases=("gpt-4o-mini-2024-07-18",)))
    catalog = load_catalog(settings)
    assert catalog.names() == ["tiny-chat", "local-llama"]
    assert catalog.resolve("gpt-4o-mini-2024-07-18").name == "local-llama"  # type: ignore[union-attr]

    save_entry(settings, BaseModel(name="local-llama", source="/models/llama-v2"))  # replaces, drops the alias
    catalog = load_catalog(settings)
    assert catalog.resolve("local-llama").source == "/models/llama-v2"  # type: ignore[union-attr]
    assert catalog.resolve("gpt-4o-mini-2024-07-18") is None


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (BaseModel(name="bad:name", source="x"), "invalid model name"),
        (BaseModel(name="other", source="x", aliases=("tiny-chat",)), "already used"),
    ],
)
def test_invalid_entries_are_refused(tmp_path: Path, entry: BaseModel, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        save_entry(Settings(data_dir=tmp_path), entry)
    assert not (tmp_path / "models.json").exists()


def test_models_cli(tmp_path: Path) -> None:
    added = run_cli(
        "models",
        "add",
        "qwen-small",
        "--source",
        "/m/qwen",
        "--alias",
        "gpt-4o-mini",
        "--data-dir",
        str(tmp_path),
        "--skip-check",  # the catalogue's own rules; sources are checked in test_model_sources.py
    )
    assert added.returncode == 0, added.stderr
    listed = run_cli("models", "list", "--data-dir", str(tmp_path))
    assert listed.stdout.splitlines() == [
        "tiny-chat\tbuiltin:tiny-chat",
        "qwen-small\t/m/qwen (aliases: gpt-4o-mini)",
    ]
    refused = run_cli("models", "add", "x", "--source", "y", "--alias", "qwen-small", "--data-dir", str(tmp_path),
                      "--skip-check")  # fmt: skip
    assert refused.returncode == 2 and "already used by another model: qwen-small" in refused.stderr
