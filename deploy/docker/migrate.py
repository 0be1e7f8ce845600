"""Database migrations for one release, safe to start in every API pod at once.

    python3 deploy/docker/migrate.py      (the API pods' init container; DATABASE_URL set)

On PostgreSQL a session-level advisory lock is held while Alembic upgrades, so when a rollout
starts several pods only one applies the release's revisions; the others wait, then find the
schema at head and exit at once. SQLite has a single writer anyway and takes no lock.
"""

from __future__ import annotations

import asyncio
import threading

import asyncpg
from sqlalchemy.engine import make_url

from service.db import upgrade_database
from service.settings import Settings

LOCK_KEY = 0x66747365  # "ftse": one advisory lock id, the same in every release
WAIT_S = 1800.0
"""How long a pod waits for another pod's migration before it fails (and restarts)."""


def _hold_lock(dsn: str, acquired: threading.Event, release: threading.Event, failed: list[BaseException]) -> None:
    """In its own thread and loop: Alembic runs its own event loop in the main thread."""

    async def run() -> None:
        connection = await asyncpg.connect(dsn)
        try:
            await connection.execute("SELECT pg_advisory_lock($1)", LOCK_KEY)
            acquired.set()
            await asyncio.to_thread(release.wait)
            await connection.execute("SELECT pg_advisory_unlock($1)", LOCK_KEY)
        finally:
            await connection.close()

    try:
        asyncio.run(run())
    except BaseException as exc:
        failed.append(exc)
        acquired.set()


def migrate(settings: Settings) -> None:
    url = make_url(settings.resolved_database_url())
    if url.get_backend_name() != "postgresql":
        upgrade_database(settings)
        return
    dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
    acquired, release, failed = threading.Event(), threading.Event(), []
    holder = threading.Thread(target=_hold_lock, args=(dsn, acquired, release, failed), daemon=True)
    holder.start()
    if not acquired.wait(WAIT_S):
        raise TimeoutError(f"another migration held the lock for {WAIT_S:.0f} s")
    if failed:
        raise failed[0]
    try:
        upgrade_database(settings)
    finally:
        release.set()
        holder.join()


if __name__ == "__main__":
    migrate(Settings())
    print("database schema at head")
