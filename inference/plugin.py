"""The vLLM general plugin `ftserve` (entry point group `vllm.general_plugins`).

vLLM calls `register()` in each of its processes when `VLLM_PLUGINS=ftserve`: the API server
process gets the storage resolver, and every process gets the CPU LoRA fix and the loader that
fetches evicted adapters again (`inference.refetch`). Storage and cache
settings come from the same environment as every ftserve process (`STORAGE_URL`, …,
`FTSERVE_ADAPTER_CACHE_DIR`, `FTSERVE_ADAPTER_CACHE_BYTES`).
"""

from __future__ import annotations

import logging

log = logging.getLogger("ftserve.inference")
RESOLVER_NAME = "ftserve"
_registered = False


def register() -> None:
    global _registered
    from inference import cpu_lora_fix

    cpu_lora_fix.apply()
    if _registered:
        return
    from vllm.lora.request import LoRARequest
    from vllm.lora.resolver import LoRAResolverRegistry

    from inference import refetch
    from inference.cache import AdapterCache
    from inference.resolver import StorageAdapterResolver
    from service.settings import Settings
    from service.storage import configured_storage

    settings = Settings()
    storage = configured_storage(settings)
    cache = AdapterCache(storage, settings.resolved_adapter_cache_dir(), max_bytes=settings.adapter_cache_bytes)
    LoRAResolverRegistry.register_resolver(RESOLVER_NAME, StorageAdapterResolver(cache, LoRARequest))
    refetch.apply(cache)
    _registered = True
