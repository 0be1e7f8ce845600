"""File logic: check, store, list, read and delete an organisation's files."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import delete, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from service.api.files.checks import JsonlChecks
from service.api.files.schemas import CREATABLE_PURPOSES
from service.api.pagination import Page, cursor_page
from service.db.models import File, Organization
from service.errors import InvalidRequestError, NotFoundError
from service.ids import new_file_id, now_s
from service.storage import ObjectNotFound, ObjectStorage

EXPIRES_MIN_S = 3600
EXPIRES_MAX_S = 30 * 24 * 3600


def check_purpose(purpose: str | None) -> str:
    """The purpose a client may upload with, or a 400 naming the allowed ones."""
    if not purpose:
        raise InvalidRequestError("Missing required parameter: 'purpose'.", param="purpose")
    if purpose not in CREATABLE_PURPOSES:
        raise InvalidRequestError(
            f"Invalid value for 'purpose': {purpose!r}; expected one of {sorted(CREATABLE_PURPOSES)}.",
            param="purpose",
        )
    return purpose


def parse_expires_after(anchor: str | None, seconds: str | int | None) -> int | None:
    """`expires_after` (anchor `created_at`, 3600..2592000 s) as seconds, or None when absent."""
    if anchor is None and seconds is None:
        return None
    if anchor != "created_at":
        raise InvalidRequestError("expires_after.anchor must be 'created_at'.", param="expires_after.anchor")
    try:
        value = int(seconds)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise InvalidRequestError("expires_after.seconds must be an integer.", param="expires_after.seconds") from None
    if not EXPIRES_MIN_S <= value <= EXPIRES_MAX_S:
        raise InvalidRequestError(
            f"expires_after.seconds must be between {EXPIRES_MIN_S} and {EXPIRES_MAX_S}.",
            param="expires_after.seconds",
        )
    return value


def store_or_remove(storage: ObjectStorage, key: str, chunks: Iterable[bytes]) -> int:
    """Store the stream under `key`; if the stream fails (an md5 mismatch), nothing is left behind."""
    try:
        return storage.put_stream(key, chunks)
    except BaseException:
        # Local writes and S3 multipart uploads are atomic, but a single-part S3 put of a stream
        # that failed at its end may have landed: remove it.
        storage.delete(key)
        raise


@dataclass
class FileService:
    """Files of one organisation."""

    session: AsyncSession
    storage: ObjectStorage
    organization: Organization
    checks: JsonlChecks

    async def release_connection(self) -> None:
        """End the session's read transaction, so that its connection goes back to the pool while
        a slow client sends its body (the session opens a new one when next used)."""
        await self.session.commit()

    @staticmethod
    def storage_key(organization_id: str, file_id: str) -> str:
        return f"files/{organization_id}/{file_id}"

    async def store(
        self,
        *,
        chunks: Iterable[bytes],
        filename: str,
        purpose: str,
        expires_after_s: int | None = None,
        local_path: Path | None = None,
    ) -> File:
        """Check and store the bytes; returns the row to insert, not yet added to the session.

        `fine-tune` data is checked in the checking processes: from `local_path` (the same bytes
        as `chunks`, on disk) before storing when given, else from storage after it."""
        file_id = new_file_id()
        key = self.storage_key(self.organization.id, file_id)
        fine_tune = purpose == "fine-tune"
        if fine_tune and local_path is not None:
            await self.checks.check_file(local_path)
        size = await asyncio.to_thread(store_or_remove, self.storage, key, chunks)
        if fine_tune and local_path is None:
            try:
                await self.checks.check_object(key)
            except BaseException:
                await asyncio.to_thread(self.storage.delete, key)
                raise
        created = now_s()
        return File(
            id=file_id,
            organization_id=self.organization.id,
            filename=filename[:512],
            purpose=purpose,
            bytes=size,
            created_at=created,
            expires_at=created + expires_after_s if expires_after_s else None,
            status="processed",
            storage_key=key,
        )

    async def commit_or_discard(self, row: File) -> None:
        """Commit the session; if that fails, remove the stored object so no orphan stays behind."""
        try:
            await self.session.commit()
        except BaseException:
            await self.session.rollback()
            await asyncio.to_thread(self.storage.delete, row.storage_key)
            raise

    async def create(self, **kwargs: Any) -> File:
        """Check, store and record a file. The row exists only if the object does."""
        row = await self.store(**kwargs)
        self.session.add(row)
        await self.commit_or_discard(row)
        return row

    def _visible(self):  # type: ignore[no-untyped-def]
        return select(File).where(
            File.organization_id == self.organization.id,
            or_(File.expires_at.is_(None), File.expires_at > now_s()),
        )

    async def get(self, file_id: str) -> File:
        row = await self.session.scalar(self._visible().where(File.id == file_id))
        if row is None:
            raise NotFoundError.for_object("File", file_id)
        return row

    async def list(self, *, purpose: str | None, limit: int, order: str, after: str | None) -> Page[File]:
        query = self._visible()
        if purpose:
            query = query.where(File.purpose == purpose)
        return await cursor_page(self.session, query, File, limit=limit, order=order, after=after)

    async def delete(self, file_id: str) -> None:
        """Remove the row first, then the object: a crash in between leaves an orphan object, never a
        row that points at nothing."""
        row = await self.get(file_id)
        await self.session.execute(delete(File).where(File.seq == row.seq))
        await self.session.commit()
        await asyncio.to_thread(self.storage.delete, row.storage_key)

    async def content(self, file_id: str) -> tuple[File, AsyncIterator[bytes]]:
        """The row and its bytes. The first chunk is read here, so that bytes missing from storage
        are a 404 before any header is sent, not a body cut short after its `content-length`."""
        row = await self.get(file_id)
        iterator = self.storage.read_chunks(row.storage_key)
        try:
            first = await asyncio.to_thread(next, iterator, None)
        except ObjectNotFound:
            raise NotFoundError(
                f"The content of file {file_id} is missing from storage.", param="file_id", code="file_content_missing"
            ) from None
        return row, iterate_in_thread(first, iterator)


async def iterate_in_thread(first: bytes | None, iterator: Iterator[bytes]) -> AsyncIterator[bytes]:
    """The object's chunks, each read in a worker thread so the event loop never blocks on storage."""
    sentinel = object()
    chunk: Any = first
    while chunk is not None and chunk is not sentinel:
        yield chunk
        chunk = await asyncio.to_thread(next, iterator, sentinel)
