"""What every process reads: where its data lives, the queue's Redis, the catalogue, logging.

Variables are prefixed `FTSERVE_`, except the connection URLs that deployments conventionally
name alone (`DATABASE_URL`, `REDIS_URL`, `STORAGE_URL`).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

MB = 1024 * 1024


class CommonSettings(BaseSettings):
    """Settings every role reads."""

    model_config = SettingsConfigDict(
        env_prefix="FTSERVE_", extra="ignore", populate_by_name=True, use_attribute_docstrings=True
    )

    data_dir: Path = Path("~/.ftserve")
    """Where the embedded defaults live: the SQLite database and the local object store."""

    redis_url: str | None = Field(default=None, validation_alias=AliasChoices("REDIS_URL"))
    """Redis for the job queue. Unset: `ftserve up` starts a private Redis."""

    models_file: Path | None = None
    """The base-model catalogue (JSON). Unset: `data_dir/models.json`."""

    hf_token: str | None = Field(default=None, validation_alias=AliasChoices("FTSERVE_HF_TOKEN", "HF_TOKEN"))
    """Hugging Face token, for catalogue entries whose `source` is a gated hub id (where the hub is
    reachable). Unset: anonymous downloads."""

    log_format: str = "auto"
    """`json` (one object per line), `text`, or `auto`: text when stderr is a terminal, else JSON."""

    log_level: str = "INFO"
    """Lowest level logged (`DEBUG`, `INFO`, `WARNING`, …)."""

    def resolved_data_dir(self) -> Path:
        return self.data_dir.expanduser().resolve()
