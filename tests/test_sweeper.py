"""Expired files and abandoned uploads are removed, rows first, then their bytes; what crashes left
behind goes once older than the grace period."""

from __future__ import annotations

import asyncio
import os
import stat
import time
from pathlib import Path

from sqlalchemy import select

from service.db import create_engine, create_sessionmaker, upgrade_database
from service.db.models import File, FineTuningJob, Upload, UploadPart
from service.fine_tuning.layout import job_prefix, saved_state_prefix
from service.ids import now_s
from service.keys import get_or_create_organization
from service.settings import Settings
from service.storage import open_storage
from service.sweeper import spool_dir, sweep_once


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


def _age(storage_root: Path, key_or_path: str | Path, seconds: float) -> None:
    path = key_or_path if isinstance(key_or_path, Path) else storage_root / key_or_path
    then = time.time() - seconds
    os.utime(path, (then, then))


def test_sweep_removes_leftovers_older_than_the_grace_and_pauses_of_ended_jobs(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, orphan_grace_s=60)
    upgrade_database(settings)
    root = tmp_path / "objects"
    storage = open_storage(root.as_uri())
    spool = spool_dir(settings)

    async def scenario() -> None:
        engine = create_engine(settings)
        sessionmaker = create_sessionmaker(engine)
        now = now_s()
        async with sessionmaker() as session:
            org = (await get_or_create_organization(session, "acme")).id
            listed = f"files/{org}/file-listed"
            session.add(File(id="file-listed", organization_id=org, filename="f", purpose="batch", bytes=1,
                             created_at=now, status="processed", storage_key=listed))  # fmt: skip
            for upload_id, status in (("upload_open", "pending"), ("upload_done", "completed")):
                session.add(Upload(id=upload_id, organization_id=org, filename="u", purpose="batch", bytes=1,
                                   mime_type="text/plain", status=status, created_at=now,
                                   expires_at=now + 3600))  # fmt: skip
                await session.flush()
                session.add(UploadPart(id=f"part_{upload_id}", upload_id=upload_id, bytes=1,
                                       storage_key=f"uploads/{upload_id}/part_1", created_at=now))  # fmt: skip
            for job_id, status in (("ftjob-running", "running"), ("ftjob-ended", "succeeded")):
                session.add(FineTuningJob(id=job_id, organization_id=org, model="tiny-chat", base_model="tiny-chat",
                                          training_file="file-listed", seed=1, method={"type": "supervised"},
                                          status=status, created_at=now))  # fmt: skip
            await session.commit()

        def job_key(job_id: str, rest: str) -> str:
            return job_prefix(org, job_id) + rest

        kept_old = [
            listed, "uploads/upload_open/part_1",
            job_key("ftjob-running", "adapter/ftserve.json"),
            saved_state_prefix(job_prefix(org, "ftjob-running"), "pauses", 4) + "state.pt",
            job_key("ftjob-ended", "adapter/ftserve.json"),
        ]  # fmt: skip
        removed_old = [
            f"files/{org}/file-orphan",  # stored, then the process died before its row committed
            "uploads/upload_open/part_orphan",
            "uploads/upload_done/part_1",  # completed, but the crash came before its parts went
            job_key("ftjob-gone", "adapter/ftserve.json"),
            job_key("ftjob-gone", "checkpoints/step-2/state.pt"),
        ]
        fresh = [f"files/{org}/file-in-flight", "uploads/upload_open/part_in_flight", job_key("ftjob-new", "x")]
        ended_pauses = [saved_state_prefix(job_prefix(org, "ftjob-ended"), "pauses", 7) + name
                        for name in ("state.pt", "adapter/adapter_model.safetensors")]  # fmt: skip
        for key in kept_old + removed_old + fresh + ended_pauses:
            storage.put_stream(key, [b"x"])
        for key in kept_old + removed_old:
            _age(root, key, 120)
        partial_old, partial_new = root / "files" / ".partial-old", root / "files" / ".partial-new"
        spooled_old, spooled_new = spool / "ftserve-upload-old", spool / "ftserve-upload-new"
        for path in (partial_old, partial_new, spooled_old, spooled_new):
            path.write_bytes(b"x")
        _age(root, partial_old, 120)
        _age(root, spooled_old, 120)

        assert await sweep_once(sessionmaker, storage, settings) == len(removed_old) + len(ended_pauses) + 2
        assert storage.list_keys() == sorted(kept_old + fresh)
        assert not partial_old.exists() and partial_new.exists()
        assert not spooled_old.exists() and spooled_new.exists()
        assert await sweep_once(sessionmaker, storage, settings) == 0
        await engine.dispose()

    asyncio.run(scenario())


def test_the_local_store_and_the_spool_are_private(tmp_path: Path) -> None:
    storage = open_storage((tmp_path / "objects").as_uri())
    storage.put_stream("files/org-1/file-1", [b"x"])
    assert stat.S_IMODE((tmp_path / "objects").stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "objects" / "files").stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "objects" / "files" / "org-1").stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "objects" / "files" / "org-1" / "file-1").stat().st_mode) == 0o600
    assert stat.S_IMODE(spool_dir(Settings(data_dir=tmp_path)).stat().st_mode) == 0o700
