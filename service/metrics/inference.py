"""Prometheus series of the adapter cache of an inference server.

vLLM serves its own `/metrics` from prometheus_client's registry, in multiprocess mode when
`PROMETHEUS_MULTIPROC_DIR` is set (vLLM sets it for its API server and engine processes): these
series are created in that registry and so appear on vLLM's `/metrics` with its own.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

CACHE_LOOKUPS = Counter("ftserve_adapter_cache_lookups", "Adapter cache lookups by result (hit, miss).", ["result"])
CACHE_BYTES = Gauge(
    "ftserve_adapter_cache_bytes", "Bytes of adapters in the cache directory.", multiprocess_mode="livemax"
)
CACHE_EVICTIONS = Counter("ftserve_adapter_cache_evictions", "Adapters evicted from the cache to make room.")
FETCH_SECONDS = Histogram(
    "ftserve_adapter_fetch_seconds", "Time to fetch an adapter from object storage into the cache.",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
)  # fmt: skip
