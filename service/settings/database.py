"""The database: where it is, and the connection pool of each process."""

from __future__ import annotations

from pydantic import AliasChoices, Field

from service.settings.common import CommonSettings


class DatabaseSettings(CommonSettings):
    """What a process that uses the database reads (API and trainer workers)."""

    database_url: str | None = Field(default=None, validation_alias=AliasChoices("DATABASE_URL"))
    """SQLAlchemy URL. `postgresql://…` and `sqlite:///…` are accepted and given async drivers.
    Unset: SQLite in `data_dir`."""

    db_pool_size: int = 10
    """Database connections one API process keeps open."""

    db_max_overflow: int = 10
    """Connections opened beyond `db_pool_size` under load, closed again when idle."""

    db_pool_timeout_s: float = 10.0
    """How long a request waits for a free connection before it answers 503 with `Retry-After`."""

    def resolved_database_url(self) -> str:
        """The database URL with an async driver, defaulting to SQLite in the data dir."""
        url = self.database_url or f"sqlite:///{self.resolved_data_dir() / 'ftserve.db'}"
        for plain, driver in (
            ("postgresql://", "postgresql+asyncpg://"),
            ("postgres://", "postgresql+asyncpg://"),
            ("sqlite://", "sqlite+aiosqlite://"),
        ):
            if url.startswith(plain):
                return driver + url[len(plain) :]
        return url
