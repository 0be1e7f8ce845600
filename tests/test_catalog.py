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


def test_models_add_writes_the_measured_defaults_for_a_pretrained_model(tmp_path: Path) -> None:
    from service.catalog import PRETRAINED_DEFAULTS, PRETRAINED_LEARNING_RATE, load_catalog
    from service.training_defaults import resolve_hyperparameters

    for name, extra in (("plain", []), ("stated", ["--learning-rate", "3e-4"])):
        added = run_cli(
            "models", "add", name, "--source", f"/m/{name}", "--data-dir", str(tmp_path), "--skip-check", *extra
        )
        assert added.returncode == 0, added.stderr
    catalog = load_catalog(Settings(data_dir=tmp_path))
    plain, stated = catalog.resolve("plain"), catalog.resolve("stated")
    assert plain is not None and stated is not None
    assert (plain.learning_rate, plain.auto) == (PRETRAINED_LEARNING_RATE, PRETRAINED_DEFAULTS)
    assert stated.learning_rate == 3e-4  # a stated rate is kept
    # 80 lines: OpenAI's rule would give batch 1 (240 steps); the entry's floor makes it 4 (60 steps).
    auto = {"n_epochs": "auto", "batch_size": "auto", "learning_rate_multiplier": "auto"}
    assert resolve_hyperparameters(auto, 80, plain) == {"n_epochs": 3, "batch_size": 4, "learning_rate_multiplier": 1.0}
    assert resolve_hyperparameters(auto, 3, plain)["batch_size"] == 3  # never more than the file holds
    assert resolve_hyperparameters(auto, 80, catalog.resolve("tiny-chat"))["batch_size"] == 1
