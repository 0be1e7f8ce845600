"""Upload logic: parts stored as they arrive, joined in the client's order on completion."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from service.api.files.checks import JsonlChecks
from service.api.files.services import FileService, check_purpose
from service.db.models import File, Organization, Upload, UploadPart
from service.errors import ConflictError, InvalidRequestError, NotFoundError
from service.ids import new_part_id, new_upload_id, now_s
from service.settings import Settings
from service.storage import ObjectStorage

JSONL_MIME_TYPES = frozenset(
    {"text/jsonl", "application/jsonl", "application/x-ndjson", "application/json", "text/plain"}
)
"""MIME types accepted for `fine-tune` uploads (OpenAI documents `text/jsonl`)."""


class Md5Mismatch(InvalidRequestError):
    pass


def joined_chunks(storage: ObjectStorage, keys: list[str], digest: hashlib._Hash) -> Iterator[bytes]:
    for key in keys:
        for chunk in storage.read_chunks(key):
            digest.update(chunk)
            yield chunk


def verify_md5(chunks: Iterable[bytes], digest: hashlib._Hash, expected: str | None) -> Iterator[bytes]:
    """Pass chunks through; at the end compare the digest, failing the stream (and so the store) on mismatch."""
    yield from chunks
    if expected and digest.hexdigest() != expected.lower():
        raise Md5Mismatch(
            f"The md5 checksum {expected} does not match the uploaded bytes ({digest.hexdigest()}).",
            param="md5",
            code="md5_mismatch",
        )


@dataclass
class UploadService:
    """Uploads of one organisation."""

    session: AsyncSession
    storage: ObjectStorage
    organization: Organization
    settings: Settings
    checks: JsonlChecks

    async def release_connection(self) -> None:
        """End the read transaction: the connection goes back to the pool while a body arrives."""
        await self.session.commit()

    async def create(
        self, *, bytes_: int, filename: str, mime_type: str, purpose: str, expires_after_s: int | None
    ) -> Upload:
        check_purpose(purpose)
        if bytes_ > self.settings.max_upload_bytes:
            raise InvalidRequestError(
                f"An upload can be at most {self.settings.max_upload_bytes} bytes; got {bytes_}.",
                param="bytes",
            )
        if purpose == "fine-tune" and mime_type.split(";")[0].strip().lower() not in JSONL_MIME_TYPES:
            raise InvalidRequestError(
                f"mime_type {mime_type!r} is not supported for purpose 'fine-tune'; use 'text/jsonl'.",
                param="mime_type",
            )
        created = now_s()
        row = Upload(
            id=new_upload_id(),
            organization_id=self.organization.id,
            filename=filename,
            purpose=purpose,
            bytes=bytes_,
            mime_type=mime_type,
            status="pending",
            created_at=created,
            expires_at=created + self.settings.upload_ttl_s,
            file_expires_after_s=expires_after_s,
        )
        self.session.add(row)
        await self.session.commit()
        return row

    async def get(self, upload_id: str) -> Upload:
        row = await self.session.scalar(
            select(Upload).where(Upload.id == upload_id, Upload.organization_id == self.organization.id)
        )
        if row is None:
            raise NotFoundError.for_object("Upload", upload_id, param="upload_id")
        return row

    async def file_of(self, row: Upload) -> File | None:
        if row.file_id is None:
            return None
        return await self.session.scalar(select(File).where(File.id == row.file_id))

    async def _pending(self, upload_id: str) -> Upload:
        row = await self.get(upload_id)
        if row.status != "pending":
            raise ConflictError(f"Upload {upload_id} is already {row.status}.", param="upload_id")
        if row.expires_at <= now_s():
            raise ConflictError(f"Upload {upload_id} has expired.", param="upload_id", code="upload_expired")
        return row

    async def add_part(self, upload_id: str, path: Path, size: int) -> UploadPart:
        upload = await self._pending(upload_id)
        stored = await self.session.scalar(
            select(func.coalesce(func.sum(UploadPart.bytes), 0)).where(UploadPart.upload_id == upload_id)
        )
        if int(stored or 0) + size > upload.bytes:
            raise InvalidRequestError(
                f"The parts would add up to more than the {upload.bytes} bytes declared for upload {upload_id}.",
                param="data",
            )
        part_id = new_part_id()
        key = f"uploads/{upload_id}/{part_id}"
        await asyncio.to_thread(self.storage.put_file, key, path)
        row = UploadPart(id=part_id, upload_id=upload_id, bytes=size, storage_key=key, created_at=now_s())
        self.session.add(row)
        try:
            await self.session.commit()
        except BaseException:
            await asyncio.to_thread(self.storage.delete, key)
            raise
        return row

    async def complete(self, upload_id: str, part_ids: list[str], md5: str | None) -> tuple[Upload, File]:
        upload = await self._pending(upload_id)
        if len(set(part_ids)) != len(part_ids):
            raise InvalidRequestError("part_ids contains the same part more than once.", param="part_ids")
        parts = {
            p.id: p
            for p in await self.session.scalars(
                select(UploadPart).where(UploadPart.upload_id == upload_id, UploadPart.id.in_(part_ids))
            )
        }
        missing = [p for p in part_ids if p not in parts]
        if missing:
            raise InvalidRequestError(f"No such part(s) in upload {upload_id}: {', '.join(missing)}.", param="part_ids")
        total = sum(parts[p].bytes for p in part_ids)
        if total != upload.bytes:
            raise InvalidRequestError(
                f"The parts add up to {total} bytes, but the upload was created with bytes={upload.bytes}.",
                param="part_ids",
            )
        digest = hashlib.md5(usedforsecurity=False)
        keys = [parts[p].storage_key for p in part_ids]
        files = FileService(self.session, self.storage, self.organization, self.checks)
        file = await files.store(
            chunks=verify_md5(joined_chunks(self.storage, keys, digest), digest, md5),
            filename=upload.filename,
            purpose=upload.purpose,
            expires_after_s=upload.file_expires_after_s,
        )
        # The status flips only if nobody completed or cancelled the upload meanwhile; the file row
        # commits in the same transaction, so the two can never disagree.
        claimed = await self.session.execute(
            update(Upload)
            .where(Upload.id == upload_id, Upload.status == "pending")
            .values(status="completed", file_id=file.id)
        )
        if claimed.rowcount != 1:  # type: ignore[attr-defined]
            await self.session.rollback()
            await asyncio.to_thread(self.storage.delete, file.storage_key)
            raise ConflictError(f"Upload {upload_id} is no longer pending.", param="upload_id")
        self.session.add(file)
        await files.commit_or_discard(file)
        await self.session.refresh(upload)
        await asyncio.to_thread(self.storage.delete_prefix, f"uploads/{upload_id}/")
        return upload, file

    async def cancel(self, upload_id: str) -> Upload:
        await self._pending(upload_id)
        cancelled = await self.session.execute(
            update(Upload).where(Upload.id == upload_id, Upload.status == "pending").values(status="cancelled")
        )
        if cancelled.rowcount != 1:  # type: ignore[attr-defined]
            raise ConflictError(f"Upload {upload_id} is no longer pending.", param="upload_id")
        await self.session.commit()
        await asyncio.to_thread(self.storage.delete_prefix, f"uploads/{upload_id}/")
        return await self.get(upload_id)
