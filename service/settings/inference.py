"""An inference server: vLLM's flags, its adapter cache, the key it requires."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from service.settings.common import MB
from service.settings.storage import StorageSettings


class InferenceSettings(StorageSettings):
    """Everything an inference server reads (`ftserve config --role inference`)."""

    inference_api_key: str | None = None
    """The key inference servers require and only the gateway sends (`VLLM_API_KEY`); `ftserve up`
    generates one when unset. An inference server refuses to start without one."""

    inference_max_lora_rank: int = 32
    """Largest LoRA rank an inference server accepts (adapters of higher rank fail to load)."""

    inference_max_loras: int = 4
    """Adapters one batch may mix (vLLM's `max_loras`: memory on the device)."""

    inference_max_cpu_loras: int = 32
    """Adapters an inference server keeps loaded in host memory (vLLM's `max_cpu_loras`)."""

    inference_cpu_kv_cache_gib: int = 1
    """KV cache of a CPU inference server, in GiB (vLLM's `VLLM_CPU_KVCACHE_SPACE`)."""

    inference_extra_args: list[str] = []
    """More `vllm serve` arguments, appended last (JSON list)."""

    adapter_cache_dir: Path | None = None
    """Where an inference server keeps adapters fetched from storage. Unset: `data_dir/adapter-cache`."""

    adapter_cache_bytes: int = 20 * 1024 * MB
    """Disk the adapter cache may use; least recently used adapters leave first."""

    inference_gpu_memory_utilization: float = Field(default=0.9, gt=0, le=1)
    """Share of its GPU's memory one vLLM server takes for weights, adapter slots and KV cache;
    GPU builds only, a CPU build sizes its KV cache with `FTSERVE_INFERENCE_CPU_KV_CACHE_GIB`."""

    def resolved_adapter_cache_dir(self) -> Path:
        return self.adapter_cache_dir or self.resolved_data_dir() / "adapter-cache"
