"""A trainer worker: leases, checkpoints, LoRA defaults, devices, reinforcement fine-tuning."""

from __future__ import annotations

from service.settings.database import DatabaseSettings
from service.settings.models import GraderSettings
from service.settings.storage import StorageSettings


class WorkerSettings(DatabaseSettings, StorageSettings, GraderSettings):
    """Everything a trainer worker reads (`ftserve config --role worker`)."""

    lease_s: int = 30
    """A trainer renews its hold on a job this often (÷3); a job whose hold lapses is requeued."""

    checkpoints_kept: int = 3
    """Epoch checkpoints kept per job (OpenAI keeps the last 3)."""

    lora_r: int = 8
    """LoRA rank of new adapters."""

    lora_alpha: int = 16
    """LoRA scaling numerator (the update is scaled by alpha / r)."""

    lora_dropout: float = 0.0
    """Dropout on the LoRA path."""

    lora_target_modules: list[str] = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    """Linear layers that get adapters (JSON list in the environment)."""

    worker_health_port: int | None = None
    """Port of a trainer worker's `GET /health` (for probes); unset: none."""

    trainer_devices: int = 1
    """Devices one job trains on (data parallel; GPUs, or CPU processes when there is none)."""

    trainer_threads: int | None = None
    """CPU threads torch may use in a trainer; unset: torch's default."""

    trainer_tokens_per_pass: int | None = None
    """Tokens in one forward pass of the trainer (a packed row); unset: 4,096 on the CPU, 16,384
    on a GPU. Raise it on large GPUs, lower it (or turn on checkpointing) when memory runs out."""

    trainer_gradient_checkpointing: bool = False
    """Recompute activations in the backward pass: about a third more compute, far less memory."""

    trainer_peak_flops: float | None = None
    """One device's peak FLOP/s, for the `mfu` in metric events; unset: known GPUs' bf16 peak."""

    rft_max_sample_tokens: int = 256
    """Most tokens the trainer samples for one completion of a reinforcement job; a longer one is
    cut there and graded as it stands."""

    rft_max_job_s: float = 24 * 3600.0
    """Training time one run of a reinforcement job may take (a resumed run starts its own count);
    past it the job ends with the adapter trained so far and a `warn` event."""

    rft_grader_concurrency: int = 8
    """Samples a reinforcement job grades at the same time (python sandboxes, model-grader requests)."""

    rft_sampler: str = "local"
    """How a reinforcement job samples: `local` (generation in the training process, tested) or
    `vllm` (vLLM's engine in the worker, on a GPU where vLLM is installed; untested here)."""
