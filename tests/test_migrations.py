"""Alembic migrations build exactly the schema the models describe, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.ext.asyncio import create_async_engine

from service.db import upgrade_database
from service.db.models import Base
from service.settings import Settings


def schema_drift(url: str) -> list[object]:
    async def run() -> list[object]:
        engine = create_async_engine(url)
        async with engine.connect() as conn:
            diff = await conn.run_sync(lambda sync: compare_metadata(MigrationContext.configure(sync), Base.metadata))
        await engine.dispose()
        return diff

    return asyncio.run(run())


@pytest.mark.parametrize("database", ["sqlite", "postgres"])
def test_migrations_match_models(database: str, tmp_path, new_postgres_database: Callable[[], str]) -> None:  # type: ignore[no-untyped-def]
    url = new_postgres_database() if database == "postgres" else None
    settings = Settings(data_dir=tmp_path, database_url=url)
    upgrade_database(settings)
    upgrade_database(settings)  # idempotent
    assert schema_drift(settings.resolved_database_url()) == []
