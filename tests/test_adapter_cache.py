"""The inference servers' adapter cache: whole adapters only, one download per adapter, LRU-bounded."""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from inference.cache import AdapterCache
from service.storage import ObjectStorage, open_storage


@pytest.fixture(name="storage")
def fx_storage(tmp_path: Path) -> ObjectStorage:
    return open_storage((tmp_path / "objects").as_uri())


def put_adapter(storage: ObjectStorage, prefix: str, size: int = 1000, *, complete: bool = True) -> None:
    storage.put_stream(prefix + "adapter_config.json", [b'{"r": 8}'])
    storage.put_stream(prefix + "adapter_model.safetensors", [b"x" * size])
    if complete:
        storage.put_stream(prefix + "ftserve.json", [b'{"base_model": "tiny-chat"}'])


def test_concurrent_requests_download_once(storage: ObjectStorage, tmp_path: Path) -> None:
    put_adapter(storage, "jobs/o/j/adapter/")
    cache = AdapterCache(storage, tmp_path / "cache", max_bytes=10**9)
    with ThreadPoolExecutor(8) as pool:
        paths = list(pool.map(lambda _: cache.fetch("jobs/o/j/adapter/"), range(16)))
    assert len(set(paths)) == 1 and paths[0] is not None
    assert cache.downloads == 1
    assert (paths[0] / "adapter_model.safetensors").read_bytes() == b"x" * 1000
    assert not [p for p in (tmp_path / "cache").iterdir() if p.name.startswith(".fetch-")]


def test_an_incomplete_or_missing_adapter_is_not_served(storage: ObjectStorage, tmp_path: Path) -> None:
    put_adapter(storage, "jobs/o/half/adapter/", complete=False)  # its marker never arrived
    cache = AdapterCache(storage, tmp_path / "cache", max_bytes=10**9)
    assert cache.fetch("jobs/o/half/adapter/") is None
    assert cache.fetch("jobs/o/none/adapter/") is None
    assert not [p for p in (tmp_path / "cache").iterdir() if p.is_dir()]


def test_least_recently_used_adapters_leave_first(storage: ObjectStorage, tmp_path: Path) -> None:
    for name in ("a", "b", "c"):
        put_adapter(storage, f"jobs/o/{name}/adapter/", size=4000)
    cache = AdapterCache(storage, tmp_path / "cache", max_bytes=9000)  # room for two
    a = cache.fetch("jobs/o/a/adapter/")
    b = cache.fetch("jobs/o/b/adapter/")
    assert a and b
    past = time.time() - 100
    os.utime(b, (past, past))  # b is now the least recently used
    assert cache.fetch("jobs/o/a/adapter/") == a  # a hit refreshes a
    c = cache.fetch("jobs/o/c/adapter/")
    assert c and c.exists() and a.exists() and not b.exists()
    assert cache.downloads == 3
    assert cache.fetch("jobs/o/b/adapter/") == b and cache.downloads == 4  # fetched again on demand


def test_an_adapter_held_for_reading_is_not_evicted_and_comes_back(storage: ObjectStorage, tmp_path: Path) -> None:
    for name in ("a", "b"):
        put_adapter(storage, f"jobs/o/{name}/adapter/", size=4000)
    cache = AdapterCache(storage, tmp_path / "cache", max_bytes=5000)  # room for one
    a = cache.fetch("jobs/o/a/adapter/")
    b = cache.fetch("jobs/o/b/adapter/")
    assert a and b and not a.exists()  # b evicted a
    with ThreadPoolExecutor(1) as pool:
        with cache.holding("jobs/o/a/adapter/") as held:
            assert held == a and (a / "adapter_config.json").exists()  # fetched again, to the same path
            evicting = pool.submit(cache.evict, keep=b)  # waits for the hold: a is being read
            time.sleep(0.2)
            assert not evicting.done() and a.exists()
        assert evicting.result(timeout=10) == [a] and not a.exists()


def test_eviction_survives_an_adapter_removed_by_another_process(
    storage: ObjectStorage, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    import inference.cache

    for name in ("a", "b", "c"):
        put_adapter(storage, f"jobs/o/{name}/adapter/", size=4000)
    cache = AdapterCache(storage, tmp_path / "cache", max_bytes=10**9)
    a, b, c = (cache.fetch(f"jobs/o/{name}/adapter/") for name in ("a", "b", "c"))
    assert a and b and c
    for age, path in enumerate((a, b, c)):  # a oldest, c newest
        os.utime(path, (time.time() - 100 + age, time.time() - 100 + age))
    measure = inference.cache._size

    def measure_while_another_evicts(path: Path) -> int:
        shutil.rmtree(a, ignore_errors=True)  # another process evicts a while this one measures
        return measure(path)

    monkeypatch.setattr(inference.cache, "_size", measure_while_another_evicts)
    cache.max_bytes = 5000  # room for one
    assert cache.evict(keep=c) == [b]
    assert c.exists() and not a.exists() and not b.exists()
