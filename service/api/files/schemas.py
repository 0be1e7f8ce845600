"""Wire shapes of `/v1/files`, field for field as OpenAI's `FileObject`."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

from service.db.models import File

FilePurpose = Literal[
    "assistants",
    "assistants_output",
    "batch",
    "batch_output",
    "fine-tune",
    "fine-tune-results",
    "vision",
    "user_data",
    "evals",
]
CREATABLE_PURPOSES: frozenset[str] = frozenset({"assistants", "batch", "fine-tune", "vision", "user_data", "evals"})
"""Purposes a client may upload with; the others are written by the service itself."""
MAX_FILENAME_CHARS = 512
"""Longest file name (`POST /v1/files`, `POST /v1/uploads`); the database column holds 512."""


class FileObject(BaseModel):
    """A stored file."""

    id: str
    """The file id, such as `file-abc123`."""
    object: Literal["file"]
    """Always `file`."""
    bytes: int
    """Size in bytes."""
    created_at: int
    """Unix time (s) of creation."""
    expires_at: int | None = None
    """Unix time (s) after which the file is gone; null when it does not expire."""
    filename: str
    """The name the file was uploaded with."""
    purpose: FilePurpose
    """What the file is for."""
    status: Literal["uploaded", "processed", "error"]
    """`processed` once stored and checked (deprecated by OpenAI, still required by the SDKs)."""
    status_details: str | None = None
    """Why a file is in `error` (deprecated)."""

    @classmethod
    def from_row(cls, row: File) -> FileObject:
        return cls(
            id=row.id,
            object="file",
            bytes=row.bytes,
            created_at=row.created_at,
            expires_at=row.expires_at,
            filename=row.filename,
            purpose=row.purpose,  # type: ignore[arg-type]
            status=row.status,  # type: ignore[arg-type]
            status_details=row.status_details,
        )


class FileList(BaseModel):
    """A cursor page of files; the next page is `after=<last_id>`."""

    object: Literal["list"]
    """Always `list`."""
    data: list[FileObject]
    first_id: str | None
    """Id of the first file on this page (null when empty)."""
    last_id: str | None
    """Id of the last file on this page: the `after` of the next page."""
    has_more: bool
    """Whether another page follows."""


class FileDeleted(BaseModel):
    id: str
    """The deleted file's id."""
    object: Literal["file"]
    """Always `file`."""
    deleted: bool
    """True once the file and its bytes are gone."""
