"""A local disk cache of adapters fetched from object storage, bounded by size, least recently used out.

An adapter is fetched into a temporary directory beside the cache and renamed into place only
when complete (its `ftserve.json` marker is uploaded last, and must be there), so a reader
never sees half an adapter. One lock per adapter, held across processes with `flock`, makes
concurrent requests for the same adapter download it once.

    >>> cache = AdapterCache(storage, Path("/var/cache/ftserve/adapters"), max_bytes=10 * 2**30)
    >>> cache.fetch("jobs/org-1/ftjob-1/adapter/")  # doctest: +SKIP
    PosixPath('/var/cache/ftserve/adapters/3f2a…')
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from service.metrics import inference as metrics
from service.storage import ObjectStorage, download_tree

MARKER = "ftserve.json"


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _last_use_and_size(path: Path) -> tuple[float, int] | None:
    """A cached adapter's last use and bytes, or None when it vanished while being measured: the
    API server and vLLM's workers evict from one directory, each in its own process."""
    try:
        return path.stat().st_mtime, _size(path)
    except FileNotFoundError:
        return None


class AdapterCache:
    def __init__(self, storage: ObjectStorage, root: Path, *, max_bytes: int) -> None:
        self.storage = storage
        self.root = root
        self.max_bytes = max_bytes
        self.downloads = 0
        """How many adapters this process fetched from storage (cache misses)."""
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        # Tenants' adapters: the cache is its user's alone (each fetched adapter is a 0700 directory
        # from `mkdtemp`, renamed into place).
        root.mkdir(parents=True, exist_ok=True, mode=0o700)
        root.chmod(0o700)

    def path_for(self, prefix: str) -> Path:
        return self.root / hashlib.sha256(prefix.encode()).hexdigest()[:32]

    @contextlib.contextmanager
    def _locked(self, key: str) -> Iterator[None]:
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        lock_file = os.open(self.root / f".{key}.lock", os.O_WRONLY | os.O_CREAT, 0o600)
        with lock, os.fdopen(lock_file, "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)  # other processes sharing the cache directory
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def fetch(self, prefix: str) -> Path | None:
        """The adapter stored under `prefix` as a local directory, or None when storage has no
        complete adapter there."""
        with self.holding(prefix) as target:
            pass
        if target is not None:
            self.evict(keep=target)
        return target

    @contextlib.contextmanager
    def holding(self, prefix: str) -> Iterator[Path | None]:
        """The adapter's local directory, fetched first if it is not (or no longer) cached, and
        kept from eviction until the block ends: for reading it, as vLLM's loader does. None when
        storage has no complete adapter under `prefix`."""
        target = self.path_for(prefix)
        with self._locked(target.name):
            if (target / MARKER).exists():
                os.utime(target)  # most recently used
                metrics.CACHE_LOOKUPS.labels(result="hit").inc()
                yield target
                return
            metrics.CACHE_LOOKUPS.labels(result="miss").inc()
            started = time.perf_counter()
            staging = Path(tempfile.mkdtemp(prefix=".fetch-", dir=self.root))
            try:
                keys = self.storage.list_keys(prefix)
                if prefix + MARKER not in keys:
                    yield None
                    return
                download_tree(self.storage, prefix, staging, keys)
                if target.exists():
                    shutil.rmtree(target)
                os.replace(staging, target)
                self.downloads += 1
                metrics.FETCH_SECONDS.observe(time.perf_counter() - started)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
            yield target

    def evict(self, keep: Path | None = None) -> list[Path]:
        """Remove least recently used adapters until the cache fits `max_bytes`; returns what went."""
        entries = [p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith(".")]
        found = {p: info for p in entries if (info := _last_use_and_size(p)) is not None}
        total = sum(size for _, size in found.values())
        removed = []
        for path in sorted(found, key=lambda p: found[p][0]):
            if total <= self.max_bytes:
                break
            if path == keep:
                continue
            with self._locked(path.name):
                shutil.rmtree(path, ignore_errors=True)
            total -= found[path][1]
            removed.append(path)
        metrics.CACHE_BYTES.set(total)
        metrics.CACHE_EVICTIONS.inc(len(removed))
        return removed
