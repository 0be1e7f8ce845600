"""Object storage in a local directory (the embedded default).

Directories are created 0700 and objects 0600 (`mkstemp`'s mode, kept by the rename): the
store holds tenants' files and adapters, readable by the service's user alone.
"""

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
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.root.chmod(0o700)  # a store created by an older version was 0755
        self.url = self.root.as_uri()

    def _mkdirs(self, directory: Path) -> None:
        """Create `directory` and its missing parents under the root, each 0700 (`Path.mkdir`
        gives missing parents the umask's mode)."""
        missing = []
        while directory != self.root and not directory.is_dir():
            missing.append(directory)
            directory = directory.parent
        for path in reversed(missing):
            path.mkdir(mode=0o700, exist_ok=True)

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        # Keys come from our own ids, but never let one escape the root.
        if os.path.commonpath([path, self.root]) != str(self.root) or path == self.root:
            raise ValueError(f"invalid object key {key!r}")
        return path

    def put_stream(self, key: str, chunks: Iterable[bytes]) -> int:
        path = self._path(key)
        self._mkdirs(path.parent)
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

    def list_modified(self, prefix: str = "") -> list[tuple[str, float]]:
        """(key, modification time) of the objects under `prefix`, sorted by key."""
        listed = []
        for key in self.list_keys(prefix):
            try:
                listed.append((key, self._path(key).stat().st_mtime))
            except FileNotFoundError:  # removed since it was listed
                continue
        return listed

    def remove_partials(self, older_than: float) -> int:
        """Remove `.partial-*` files last written before `older_than` (Unix time): writes that a
        crash interrupted. A live write touches its file with every chunk, so it is never one."""
        removed = 0
        for path in self.root.rglob(".partial-*"):
            try:
                if path.is_file() and path.stat().st_mtime < older_than:
                    path.unlink()
                    removed += 1
            except FileNotFoundError:  # renamed into place or removed meanwhile
                continue
        return removed
