"""Object storage in a local directory (the embedded default)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from service.storage import CHUNK_BYTES, ObjectNotFound, file_chunks


class LocalStorage:
    """Objects as files under `root`; writes go to a temporary file renamed into place."""

    def __init__(self, root: Path) -> None:
        self.root = root.expanduser().resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.url = self.root.as_uri()

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        # Keys come from our own ids, but never let one escape the root.
        if os.path.commonpath([path, self.root]) != str(self.root) or path == self.root:
            raise ValueError(f"invalid object key {key!r}")
        return path

    def put_stream(self, key: str, chunks: Iterable[bytes]) -> int:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".partial-")
        written = 0
        try:
            with os.fdopen(fd, "wb") as out:
                for chunk in chunks:
                    out.write(chunk)
                    written += len(chunk)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return written

    def put_file(self, key: str, path: Path) -> int:
        return self.put_stream(key, file_chunks(path))

    def read_chunks(self, key: str, chunk_bytes: int = CHUNK_BYTES) -> Iterator[bytes]:
        try:
            src = self._path(key).open("rb")
        except FileNotFoundError:
            raise ObjectNotFound(key) from None
        with src:
            yield from iter(lambda: src.read(chunk_bytes), b"")

    def size(self, key: str) -> int | None:
        try:
            return self._path(key).stat().st_size
        except FileNotFoundError:
            return None

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def delete_prefix(self, prefix: str) -> None:
        for key in self.list_keys(prefix):
            self.delete(key)
        target = (self.root / prefix).resolve()
        if target.is_dir() and target != self.root:
            shutil.rmtree(target, ignore_errors=True)

    def list_keys(self, prefix: str = "") -> list[str]:
        keys = []
        for path in self.root.rglob("*"):
            if path.is_file() and not path.name.startswith(".partial-"):
                key = path.relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    keys.append(key)
        return sorted(keys)
