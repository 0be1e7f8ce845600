"""Expired files and abandoned uploads are removed, rows first, then their bytes."""

from __future__ import annotations

import asyncio
from pathlib import Path

from sqlalchemy import select

from service.db import create_engine, create_sessionmaker, upgrade_database
from service.db.models import File, Upload, UploadPart
from service.ids import now_s
from service.keys import get_or_create_organization
from service.settings import Settings
from service.storage import open_storage
from service.sweeper import sweep_once


def test_sweep_removes_only_what_expired(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    upgrade_database(settings)
    storage = open_storage((tmp_path / "objects").as_uri())

    async def scenario() -> None:
        engine = create_engine(settings)
        sessionmaker = create_sessionmaker(engine)
        now = now_s()
        async with sessionmaker() as session:
            org = await get_or_create_organization(session, "acme")
            for file_id, expires_at in (("file-old", now - 1), ("file-live", now + 3600), ("file-forever", None)):
                storage.put_stream(f"files/{org.id}/{file_id}", [b"x"])
                session.add(
                    File(
                        id=file_id, organization_id=org.id, filename="f", purpose="batch", bytes=1, created_at=now,
                        expires_at=expires_at, status="processed", storage_key=f"files/{org.id}/{file_id}",
                    )
                )  # fmt: skip
            for upload_id, expires_at in (("upload_stale", now - 1), ("upload_fresh", now + 3600)):
                session.add(
                    Upload(
                        id=upload_id, organization_id=org.id, filename="u", purpose="batch", bytes=1,
                        mime_type="text/plain", status="pending", created_at=now, expires_at=expires_at,
                    )
                )  # fmt: skip
                await session.flush()
                storage.put_stream(f"uploads/{upload_id}/part_1", [b"x"])
                session.add(
                    UploadPart(
                        id=f"part_{upload_id}",
                        upload_id=upload_id,
                        bytes=1,
                        storage_key=f"uploads/{upload_id}/part_1",
                        created_at=now,
                    )
                )
            await session.commit()

        assert await sweep_once(sessionmaker, storage) == 2

        async with sessionmaker() as session:
            assert set(await session.scalars(select(File.id))) == {"file-live", "file-forever"}
            statuses = dict((await session.execute(select(Upload.id, Upload.status))).all())
        assert statuses == {"upload_stale": "expired", "upload_fresh": "pending"}
        assert storage.list_keys("uploads/") == ["uploads/upload_fresh/part_1"]
        assert sorted(k.rsplit("/", 1)[-1] for k in storage.list_keys("files/")) == ["file-forever", "file-live"]
        assert await sweep_once(sessionmaker, storage) == 0
        await engine.dispose()

    asyncio.run(scenario())
