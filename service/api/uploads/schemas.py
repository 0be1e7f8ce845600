"""Wire shapes of `/v1/uploads`, as OpenAI's `Upload` and `UploadPart`."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field

from service.api.files.schemas import MAX_FILENAME_CHARS, FileObject
from service.api.files.services import EXPIRES_MAX_S, EXPIRES_MIN_S
from service.db.models import File, Upload, UploadPart
from service.ids import now_s

UploadStatus = Literal["pending", "completed", "cancelled", "expired"]


class ExpiresAfter(BaseModel):
    anchor: Literal["created_at"]
    """Only `created_at` is supported."""
    seconds: int = Field(ge=EXPIRES_MIN_S, le=EXPIRES_MAX_S)
    """Lifetime of the resulting file, from its creation."""


class CreateUploadRequest(BaseModel):
    bytes: int = Field(ge=0)
    """Total size the parts will add up to."""
    filename: str = Field(min_length=1, max_length=MAX_FILENAME_CHARS)
    """Name of the file the upload becomes."""
    mime_type: str = Field(min_length=1, max_length=128)
    """MIME type; it must suit the purpose (`text/jsonl` for `fine-tune`)."""
    purpose: str = Field(max_length=64)
    """Purpose of the resulting file."""
    expires_after: ExpiresAfter | None = None
    """Expiry policy of the resulting file."""


class CompleteUploadRequest(BaseModel):
    part_ids: list[Annotated[str, Field(max_length=64)]] = Field(max_length=10_000)
    """Part ids in the order their bytes are to be joined (at most 10,000, as OpenAI's)."""
    md5: str | None = Field(default=None, max_length=64)
    """Optional MD5 (hex) of the whole file, checked before the file is created."""


class UploadObject(BaseModel):
    """An upload in progress, or its outcome."""

    id: str
    """Such as `upload_abc123`."""
    object: Literal["upload"]
    """Always `upload`."""
    bytes: int
    """The intended size."""
    created_at: int
    expires_at: int
    """After this Unix time a pending upload expires."""
    filename: str
    purpose: str
    status: UploadStatus
    file: FileObject | None = None
    """The file created on completion."""

    @classmethod
    def from_row(cls, row: Upload, file: File | None = None) -> UploadObject:
        status = row.status
        if status == "pending" and row.expires_at <= now_s():
            status = "expired"
        return cls(
            id=row.id,
            object="upload",
            bytes=row.bytes,
            created_at=row.created_at,
            expires_at=row.expires_at,
            filename=row.filename,
            purpose=row.purpose,
            status=status,  # type: ignore[arg-type]
            file=FileObject.from_row(file) if file else None,
        )


class UploadPartObject(BaseModel):
    id: str
    """Such as `part_def456`."""
    object: Literal["upload.part"]
    """Always `upload.part`."""
    created_at: int
    upload_id: str

    @classmethod
    def from_row(cls, row: UploadPart) -> UploadPartObject:
        return cls(id=row.id, object="upload.part", created_at=row.created_at, upload_id=row.upload_id)
