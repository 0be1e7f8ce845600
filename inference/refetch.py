"""Adapters evicted from the disk cache are fetched again when vLLM loads them.

vLLM's API server remembers each adapter it resolved, with its local path, and its workers load
an adapter from that path whenever it is not in their memory (more adapters in use than
`max_cpu_loras`). The disk cache may have evicted it in between: loading from the missing path
would fail and take the whole engine down. `apply` wraps the workers' loader so that it first
makes sure the adapter is on disk (fetched again from storage, to the same path, since the
path derives from the adapter's name) and keeps it from eviction while vLLM reads it.

Applied by `inference.plugin` in every vLLM process; a no-op when applied twice.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

from inference.cache import AdapterCache
from service.fine_tuning.layout import is_adapter_name

log = logging.getLogger("ftserve.inference")


def apply(cache: AdapterCache) -> bool:
    """Wrap `WorkerLoRAManager._load_adapter`; returns whether it was wrapped now."""
    from vllm.lora.worker_manager import WorkerLoRAManager

    load = WorkerLoRAManager._load_adapter
    if getattr(load, "ftserve_refetch", False):
        return False

    @functools.wraps(load)
    def load_from_cache(self: Any, lora_request: Any) -> Any:
        if not is_adapter_name(lora_request.lora_name):
            return load(self, lora_request)
        with cache.holding(lora_request.lora_name) as path:
            if path is None:
                log.warning("adapter %s is no longer in storage", lora_request.lora_name)
            loaded = load(self, lora_request)
        if path is not None:
            cache.evict(keep=path)  # a fetch here may have taken the cache over its bound
        return loaded

    load_from_cache.ftserve_refetch = True  # type: ignore[attr-defined]
    WorkerLoRAManager._load_adapter = load_from_cache  # type: ignore[method-assign]
    return True
