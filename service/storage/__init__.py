"""Object storage behind one small synchronous interface, with a local and an S3 backend.

Keys are relative, slash-separated paths such as `files/org-…/file-…`. Every write is atomic:
a reader sees the whole object or none of it. The calls block (boto3 is synchronous); async
code runs them with `asyncio.to_thread`.

    >>> storage = open_storage("file:///tmp/ftserve-objects")
    >>> storage.put_stream("a/b", [b"hello ", b"world"])
    11
    >>> b"".join(storage.read_chunks("a/b"))
    b'hello world'
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable
from urllib.parse import unquote, urlparse

if TYPE_CHECKING:
    from service.settings import Settings

CHUNK_BYTES = 1024 * 1024


def file_chunks(path: Path, chunk_bytes: int = CHUNK_BYTES) -> Iterator[bytes]:
    """A local file's bytes in chunks, for `put_stream` or a checker on the way."""
    with path.open("rb") as src:
        yield from iter(lambda: src.read(chunk_bytes), b"")


class ObjectNotFound(KeyError):
    """No object is stored under the key."""


@runtime_checkable
class ObjectStorage(Protocol):
    """What the service, the trainer and the inference layer need from a blob store."""

    url: str

    def put_stream(self, key: str, chunks: Iterable[bytes]) -> int:
        """Store the concatenated chunks under `key`, atomically; returns the byte count."""
        ...

    def put_file(self, key: str, path: Path) -> int:
        """Store a local file under `key`, atomically; returns the byte count."""
        ...

    def read_chunks(self, key: str, chunk_bytes: int = CHUNK_BYTES) -> Iterator[bytes]:
        """The object's bytes in chunks; raises `ObjectNotFound`."""
        ...

    def size(self, key: str) -> int | None:
        """The object's size, or None when there is none."""
        ...

    def delete(self, key: str) -> None:
        """Remove the object; a missing object is not an error."""
        ...

    def delete_prefix(self, prefix: str) -> None:
        """Remove every object whose key starts with `prefix`."""
        ...

    def list_keys(self, prefix: str = "") -> list[str]:
        """Keys under `prefix`, sorted."""
        ...


def upload_tree(storage: ObjectStorage, local: Path, prefix: str, *, last: str | None = None) -> None:
    """Put every file under `local` at `prefix` + its relative path; `last` (a relative path) goes
    last, so a reader that finds it finds the whole tree."""
    files = sorted(p for p in local.rglob("*") if p.is_file())
    files.sort(key=lambda p: p.relative_to(local).as_posix() == last)
    for path in files:
        storage.put_file(prefix + path.relative_to(local).as_posix(), path)


def download_tree(storage: ObjectStorage, prefix: str, local: Path, keys: list[str] | None = None) -> Path:
    """Fetch every object under `prefix` (or just `keys`, already listed) into `local`, keeping
    relative paths."""
    for key in storage.list_keys(prefix) if keys is None else keys:
        target = local / key[len(prefix) :]
        target.parent.mkdir(parents=True, exist_ok=True)
        with target.open("wb") as out:
            for chunk in storage.read_chunks(key):
                out.write(chunk)
    return local


def open_storage(url: str, *, endpoint_url: str | None = None, region: str = "us-east-1") -> ObjectStorage:
    """The backend for `file:///dir` or `s3://bucket/prefix`."""
    parsed = urlparse(url)
    if parsed.scheme == "file":
        from service.storage.local import LocalStorage

        return LocalStorage(Path(unquote(parsed.path)))
    if parsed.scheme == "s3":
        from service.storage.s3 import S3Storage

        return S3Storage(bucket=parsed.netloc, prefix=parsed.path.strip("/"), endpoint_url=endpoint_url, region=region)
    raise ValueError(f"unsupported storage URL {url!r}: use file:///dir or s3://bucket/prefix")


def configured_storage(settings: Settings) -> ObjectStorage:
    """The storage a deployment's settings name (`STORAGE_URL`, S3 endpoint and region)."""
    return open_storage(
        settings.resolved_storage_url(), endpoint_url=settings.s3_endpoint_url, region=settings.s3_region
    )
