"""Typed settings, read from the environment, grouped per role.

Each role reads one class, and an operator reading a role's class (or `ftserve config --role
ROLE`) sees only that role's knobs:

    CommonSettings            data dir, Redis, catalogue, logs            (every role)
    ├── DatabaseSettings      database URL and pool                       (api, worker)
    ├── StorageSettings       object storage                              (api, worker, inference)
    └── InferenceClientSettings → GraderSettings
                              inference servers' URLs and key; graders    (api, worker)
    ApiSettings       = Database + Storage + Grader + the API's own       (`ftserve up`, the API image)
    WorkerSettings    = Database + Storage + Grader + the trainer's own   (`ftserve worker`)
    InferenceSettings = Storage + the inference server's own              (`ftserve inference`)
    Settings          = all three roles, for code that serves several (the CLI, `ftserve up`)

Variables are prefixed `FTSERVE_` (`FTSERVE_LEASE_S`), except the connection URLs that
deployments conventionally name alone: `DATABASE_URL`, `REDIS_URL` and `STORAGE_URL`.
"""

from __future__ import annotations

import functools

from pydantic_settings import BaseSettings

from service.settings.api import ApiSettings
from service.settings.common import MB, CommonSettings
from service.settings.database import DatabaseSettings
from service.settings.inference import InferenceSettings
from service.settings.models import GraderSettings, InferenceClientSettings
from service.settings.storage import StorageSettings
from service.settings.worker import WorkerSettings

__all__ = [
    "MB",
    "ROLES",
    "ApiSettings",
    "CommonSettings",
    "DatabaseSettings",
    "GraderSettings",
    "InferenceClientSettings",
    "InferenceSettings",
    "Settings",
    "StorageSettings",
    "WorkerSettings",
    "get_settings",
]


class Settings(ApiSettings, WorkerSettings, InferenceSettings):
    """Every role's settings in one object.

    Example:
        >>> from pathlib import Path
        >>> Settings(data_dir=Path("/tmp/ft")).resolved_database_url()
        'sqlite+aiosqlite:////tmp/ft/ftserve.db'
    """


ROLES: dict[str, type[BaseSettings]] = {"api": ApiSettings, "worker": WorkerSettings, "inference": InferenceSettings}
"""Each role's settings class, for `ftserve config --role`."""


@functools.cache
def get_settings() -> Settings:
    """The process's settings, read once from the environment."""
    return Settings()
