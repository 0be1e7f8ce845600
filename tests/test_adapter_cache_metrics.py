"""The adapter cache's Prometheus series: hits, misses, fetch time, bytes and evictions."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import REGISTRY

from inference.cache import AdapterCache
from service.storage import open_storage
from tests.test_adapter_cache import put_adapter


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_lookups_fetches_and_evictions_are_counted(tmp_path: Path) -> None:
    storage = open_storage((tmp_path / "objects").as_uri())
    for name in ("a", "b"):
        put_adapter(storage, f"jobs/o/{name}/adapter/", size=6000)
    cache = AdapterCache(storage, tmp_path / "cache", max_bytes=8000)  # room for one adapter
    before = {k: sample("ftserve_adapter_cache_lookups_total", result=k) for k in ("hit", "miss")}
    fetches, evictions = sample("ftserve_adapter_fetch_seconds_count"), sample("ftserve_adapter_cache_evictions_total")
    cache.fetch("jobs/o/a/adapter/")
    cache.fetch("jobs/o/a/adapter/")
    cache.fetch("jobs/o/b/adapter/")  # evicts a
    assert sample("ftserve_adapter_cache_lookups_total", result="miss") - before["miss"] == 2
    assert sample("ftserve_adapter_cache_lookups_total", result="hit") - before["hit"] == 1
    assert sample("ftserve_adapter_fetch_seconds_count") - fetches == 2
    assert sample("ftserve_adapter_cache_evictions_total") - evictions == 1
    assert 6000 < sample("ftserve_adapter_cache_bytes") <= 8000
