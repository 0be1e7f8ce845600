"""Removes what has expired, and what a crash or a cancelled write left behind.

Expired (`sweep_expired`): files past `expires_at`, uploads left pending past their hour; rows
first, then their bytes.

Left behind (`sweep_leftovers`), each only once older than `orphan_grace_s`:
- objects with no row: under `files/` without a file row, under `uploads/{upload}/` without a
  part row of a pending upload, under `jobs/{org}/{job}/` of a job that does not exist;
- partial writes: `.partial-*` files of the local store, unfinished S3 multipart uploads;
- request bodies spooled under the spool directory (`upload_spool_dir`).
Besides, the pause states (`pauses/`) of jobs that ended are removed, whatever their age.

Why this never removes what a live request or job may still commit: every writer stores bytes
first and commits the row that names them after (a file's object, then its row; a part's
object, then its row), and a job's row commits before any worker writes under its prefix. An
object without a row is thus either garbage or a write whose commit is still to come, and that
commit follows the write by at most the time a request takes to check and store its largest
body, which the grace period exceeds by far (a failed commit removes its own object). The
storage is listed before the database is read, so a row committed in between keeps its object.
A partial write and a spooled body are written chunk by chunk as their bytes arrive, and a
request removes its spooled body once stored, so one untouched for the grace period belongs to
no running request. A pause state is read only to resume a paused job; an ended job never
resumes, and a late write by a worker that lost its job is removed by the next pass.
"""

from __future__ import annotations

import asyncio
import logging
import posixpath
import time
from collections.abc import Iterable
from pathlib import Path

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.db.models import File, FineTuningJob, Upload, UploadPart
from service.fine_tuning import FINAL_STATUSES
from service.fine_tuning.layout import job_prefix, saved_state_prefix
from service.ids import now_s
from service.settings import Settings, get_settings
from service.storage import ObjectStorage

log = logging.getLogger("ftserve.sweeper")
QUERY_BATCH = 500
"""Keys per `IN (…)` query."""


def spool_dir(settings: Settings) -> Path:
    """Where request bodies are spooled (created 0700): under the data dir unless configured."""
    path = (settings.upload_spool_dir or settings.resolved_data_dir() / "spool").expanduser()
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


def pauses_prefix(organization_id: str, job_id: str) -> str:
    """The folder holding every pause state of a job (the parent of `saved_state_prefix`'s)."""
    return posixpath.dirname(saved_state_prefix(job_prefix(organization_id, job_id), "pauses", 0).rstrip("/")) + "/"


async def sweep_expired(sessionmaker: async_sessionmaker[AsyncSession], storage: ObjectStorage) -> int:
    """Files past `expires_at` and uploads pending past theirs; returns how many were removed."""
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


def _listing(storage: ObjectStorage, prefix: str) -> list[tuple[str, float]]:
    """(key, last write as Unix time) under `prefix`."""
    list_modified = getattr(storage, "list_modified", None)
    if list_modified is not None:
        return list(list_modified(prefix))
    client, bucket, root = storage.client, storage.bucket, storage.prefix  # type: ignore[attr-defined]
    listed = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=root + prefix):
        listed.extend((o["Key"][len(root) :], o["LastModified"].timestamp()) for o in page.get("Contents", []))
    return listed


def _remove_partials(storage: ObjectStorage, older_than: float) -> int:
    """Interrupted writes: `.partial-*` files locally, unfinished multipart uploads on S3."""
    remove_partials = getattr(storage, "remove_partials", None)
    if remove_partials is not None:
        return int(remove_partials(older_than))
    client, bucket, root = storage.client, storage.bucket, storage.prefix  # type: ignore[attr-defined]
    removed = 0
    for page in client.get_paginator("list_multipart_uploads").paginate(Bucket=bucket, Prefix=root):
        for upload in page.get("Uploads", []):
            if upload["Initiated"].timestamp() < older_than:
                client.abort_multipart_upload(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])
                removed += 1
    return removed


def _remove_spooled(directory: Path, older_than: float) -> int:
    removed = 0
    if not directory.is_dir():
        return 0
    for path in directory.iterdir():
        try:
            if path.is_file() and path.stat().st_mtime < older_than:
                path.unlink()
                removed += 1
        except FileNotFoundError:  # its request removed it meanwhile
            continue
    return removed


async def _existing(session: AsyncSession, column, values: Iterable[str]) -> set[str]:  # type: ignore[no-untyped-def]
    values = sorted(set(values))
    found: set[str] = set()
    for start in range(0, len(values), QUERY_BATCH):
        found.update(await session.scalars(select(column).where(column.in_(values[start : start + QUERY_BATCH]))))
    return found


async def sweep_leftovers(
    sessionmaker: async_sessionmaker[AsyncSession], storage: ObjectStorage, settings: Settings
) -> int:
    """What crashes and late writes left behind (see the module's docstring); returns how many
    objects and files were removed."""
    cutoff = time.time() - settings.orphan_grace_s
    # Storage first, then the database: see the module's docstring.
    old_files = [k for k, t in await asyncio.to_thread(_listing, storage, "files/") if t < cutoff]
    old_parts = [k for k, t in await asyncio.to_thread(_listing, storage, "uploads/") if t < cutoff]
    job_objects = await asyncio.to_thread(_listing, storage, "jobs/")
    jobs: dict[str, tuple[str, list[tuple[str, float]]]] = {}
    for key, modified in job_objects:
        parts = key.split("/")
        if len(parts) > 3 and key.startswith(job_prefix(parts[1], parts[2])):
            jobs.setdefault(parts[2], (parts[1], []))[1].append((key, modified))
    async with sessionmaker() as session:
        kept_files = await _existing(session, File.storage_key, old_files)
        pending_parts = set()
        part_keys = sorted(set(old_parts))
        for start in range(0, len(part_keys), QUERY_BATCH):
            pending_parts.update(
                await session.scalars(
                    select(UploadPart.storage_key)
                    .join(Upload, Upload.id == UploadPart.upload_id)
                    .where(
                        Upload.status == "pending", UploadPart.storage_key.in_(part_keys[start : start + QUERY_BATCH])
                    )
                )
            )
        job_status: dict[str, str] = {}
        job_ids = sorted(jobs)
        for start in range(0, len(job_ids), QUERY_BATCH):
            rows = await session.execute(
                select(FineTuningJob.id, FineTuningJob.status).where(
                    FineTuningJob.id.in_(job_ids[start : start + QUERY_BATCH])
                )
            )
            job_status.update((job_id, status) for job_id, status in rows.all())
    doomed = [k for k in old_files if k not in kept_files]
    doomed += [k for k in old_parts if k not in pending_parts]
    for job_id, (organization_id, objects) in jobs.items():
        status = job_status.get(job_id)
        if status is None:
            doomed += [k for k, t in objects if t < cutoff]
        elif status in FINAL_STATUSES:
            doomed += [k for k, _ in objects if k.startswith(pauses_prefix(organization_id, job_id))]
    for key in doomed:
        await asyncio.to_thread(storage.delete, key)
    removed = len(doomed)
    removed += await asyncio.to_thread(_remove_partials, storage, cutoff)
    removed += await asyncio.to_thread(_remove_spooled, spool_dir(settings), cutoff)
    return removed


async def sweep_once(
    sessionmaker: async_sessionmaker[AsyncSession], storage: ObjectStorage, settings: Settings | None = None
) -> int:
    """One pass; returns how many objects were removed. With `settings`, leftovers go too."""
    removed = await sweep_expired(sessionmaker, storage)
    if settings is not None:
        removed += await sweep_leftovers(sessionmaker, storage, settings)
    return removed


async def sweep_forever(
    sessionmaker: async_sessionmaker[AsyncSession],
    storage: ObjectStorage,
    interval_s: float | None = None,
    settings: Settings | None = None,
) -> None:
    """A pass at once (what the last run left behind goes at start), then every `sweep_interval_s`."""
    settings = settings or get_settings()
    interval_s = interval_s or settings.sweep_interval_s
    while True:
        try:
            removed = await sweep_once(sessionmaker, storage, settings)
            if removed:
                log.info("sweeper removed %d expired or left-over objects", removed)
        except Exception:
            log.exception("sweeper pass failed; retrying in %ss", interval_s)
        await asyncio.sleep(interval_s)
