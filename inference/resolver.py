"""vLLM's LoRA resolver for ftserve: adapters come from object storage, on first request.

The gateway names an adapter to vLLM by its storage prefix (`jobs/{org}/{job}/adapter/`, or a
checkpoint's). When vLLM meets a name it has not loaded, it asks this resolver, which fetches
the adapter into the local cache (once, atomically), checks that it was trained on this
server's base model (the fingerprint in `ftserve.json`), and hands vLLM the local path.
Nothing is kept that another replica lacks: any replica can serve any adapter on first use.
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

from inference.cache import AdapterCache
from service.adapters import ADAPTER_MARKER, base_fingerprint
from service.fine_tuning.layout import is_adapter_name

log = logging.getLogger("ftserve.inference")


class StorageAdapterResolver:
    """Implements `vllm.lora.resolver.LoRAResolver` (registered by `inference.plugin`)."""

    def __init__(self, cache: AdapterCache, lora_request: Any) -> None:
        self.cache = cache
        self.lora_request = lora_request  # vllm.lora.request.LoRARequest, passed in to keep imports lazy
        self._fingerprints: dict[str, dict[str, str]] = {}

    def fingerprint(self, base_model_path: str) -> dict[str, str]:
        if base_model_path not in self._fingerprints:
            self._fingerprints[base_model_path] = base_fingerprint(Path(base_model_path))
        return self._fingerprints[base_model_path]

    async def resolve_lora(self, base_model_name: str, lora_name: str) -> Any:
        """`base_model_name` is the path vLLM loaded the base from; None means "not mine" (404)."""
        if not is_adapter_name(lora_name):
            return None
        path = await asyncio.to_thread(self.cache.fetch, lora_name)
        if path is None:
            log.info("no adapter stored at %s", lora_name)
            return None
        marker = json.loads((path / ADAPTER_MARKER).read_text())
        if marker.get("fingerprint") != self.fingerprint(base_model_name):
            log.warning("adapter %s was trained on %s, not on this server's base model; refused",
                        lora_name, marker.get("base_model"))  # fmt: skip
            return None
        # vLLM replaces lora_int_id with its own counter; it only has to be positive here.
        return self.lora_request(lora_name=lora_name, lora_int_id=1, lora_path=str(path))
