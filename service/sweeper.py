"""Removes what has expired: files past `expires_at`, uploads left pending past their hour."""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.db.models import File, Upload
from service.ids import now_s
from service.storage import ObjectStorage

log = logging.getLogger("ftserve.sweeper")
SWEEP_INTERVAL_S = 300


async def sweep_once(sessionmaker: async_sessionmaker[AsyncSession], storage: ObjectStorage) -> int:
    """One pass; returns how many objects were removed. Rows go first, then their bytes."""
    now = now_s()
    removed = 0
    async with sessionmaker() as session:
        files = list(await session.scalars(select(File).where(File.expires_at.is_not(None), File.expires_at <= now)))
        if files:
            await session.execute(delete(File).where(File.seq.in_([f.seq for f in files])))
        uploads = list(
            await session.scalars(select(Upload.id).where(Upload.status == "pending", Upload.expires_at <= now))
        )
        if uploads:
            await session.execute(update(Upload).where(Upload.id.in_(uploads)).values(status="expired"))
        await session.commit()
    for file in files:
        await asyncio.to_thread(storage.delete, file.storage_key)
        removed += 1
    for upload_id in uploads:
        await asyncio.to_thread(storage.delete_prefix, f"uploads/{upload_id}/")
        removed += 1
    return removed


async def sweep_forever(
    sessionmaker: async_sessionmaker[AsyncSession],
    storage: ObjectStorage,
    interval_s: float = SWEEP_INTERVAL_S,
) -> None:
    while True:
        try:
            removed = await sweep_once(sessionmaker, storage)
            if removed:
                log.info("sweeper removed %d expired objects", removed)
        except Exception:
            log.exception("sweeper pass failed; retrying in %ss", interval_s)
        await asyncio.sleep(interval_s)
