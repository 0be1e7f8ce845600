"""One typed settings object, read from the environment.

Every role (API, trainer, inference, CLI) reads the same `Settings`. Variables are prefixed
`FTSERVE_`, except the three connection URLs that deployments conventionally name alone:
`DATABASE_URL`, `REDIS_URL` and `STORAGE_URL`.
"""

from __future__ import annotations

import functools
from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

MB = 1024 * 1024


class Settings(BaseSettings):
    """Configuration for every ftserve process.

    Example:
        >>> Settings(data_dir=Path("/tmp/ft")).resolved_database_url()
        'sqlite+aiosqlite:////tmp/ft/ftserve.db'
    """

    model_config = SettingsConfigDict(env_prefix="FTSERVE_", extra="ignore", populate_by_name=True)

    data_dir: Path = Path("~/.ftserve")
    """Where the embedded defaults live: the SQLite database and the local object store."""

    database_url: str | None = Field(default=None, validation_alias=AliasChoices("DATABASE_URL"))
    """SQLAlchemy URL. `postgresql://…` and `sqlite:///…` are accepted and given async drivers.
    Unset: SQLite in `data_dir`."""

    redis_url: str | None = Field(default=None, validation_alias=AliasChoices("REDIS_URL"))
    """Redis for the job queue. Unset: `ftserve up` starts a private Redis."""

    storage_url: str | None = Field(default=None, validation_alias=AliasChoices("STORAGE_URL"))
    """Object storage: `file:///dir` or `s3://bucket/prefix`. Unset: `data_dir/objects`."""

    s3_endpoint_url: str | None = Field(
        default=None, validation_alias=AliasChoices("FTSERVE_S3_ENDPOINT_URL", "AWS_ENDPOINT_URL")
    )
    """S3 endpoint for non-AWS stores (SeaweedFS, MinIO, Ceph). Unset: AWS."""

    s3_region: str = Field(default="us-east-1", validation_alias=AliasChoices("FTSERVE_S3_REGION", "AWS_REGION"))
    """Region passed to boto3; most non-AWS stores accept any value."""

    models_file: Path | None = None
    """The base-model catalogue (JSON). Unset: `data_dir/models.json`."""

    host: str = "127.0.0.1"
    """Interface the API listens on."""

    port: int = 8000
    """Port the API listens on."""

    max_file_bytes: int = 512 * MB
    """Largest file `POST /v1/files` accepts (OpenAI: 512 MB). Larger: 413."""

    max_upload_bytes: int = 8 * 1024 * MB
    """Largest total size of an Upload (OpenAI: 8 GB)."""

    max_part_bytes: int = 64 * MB
    """Largest Upload part (OpenAI: 64 MB)."""

    upload_ttl_s: int = 3600
    """An Upload not completed within this many seconds expires (OpenAI: one hour)."""

    lease_s: int = 30
    """A trainer renews its hold on a job this often (÷3); a job whose hold lapses is requeued."""

    reconcile_interval_s: float = 5.0
    """How often the API compares the database with the queue (see `service.reconciler`)."""

    validate_concurrency: int = 4
    """Jobs whose files one API process validates at once."""

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

    inference_urls: dict[str, str] = {}
    """Base model name → its inference server's URL (JSON in the environment). `ftserve up` fills
    it for the servers it starts."""

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

    # --- HTTP edge: request bodies, database pool, logs (see README "Limits" and "Logs") ---

    max_json_body_bytes: int = 1 * MB
    """Largest body of a JSON route (jobs, uploads, …); larger: 413 before the body is read."""

    max_inference_body_bytes: int = 16 * MB
    """Largest body of `/v1/chat/completions` and `/v1/completions` (long prompts)."""

    body_idle_timeout_s: float = 30.0
    """A request body that sends nothing for this long is cut (408) and its temporary data removed."""

    db_pool_size: int = 10
    """Database connections one API process keeps open."""

    db_max_overflow: int = 10
    """Connections opened beyond `db_pool_size` under load, closed again when idle."""

    db_pool_timeout_s: float = 10.0
    """How long a request waits for a free connection before it answers 503 with `Retry-After`."""

    jsonl_check_processes: int = 1
    """Processes that check uploaded fine-tuning JSONL, apart from the event loop's threads."""

    log_format: str = "auto"
    """`json` (one object per line), `text`, or `auto`: text when stderr is a terminal, else JSON."""

    log_level: str = "INFO"
    """Lowest level logged (`DEBUG`, `INFO`, `WARNING`, …)."""

    # --- Keys and per-organisation limits (see README "Keys" and "Limits") ---

    key_cache_s: float = 10.0
    """How long an API process trusts a key it has checked while it hears revocations (Redis
    pub/sub, `service.invalidation`); at most 1 s while it does not."""

    max_active_jobs_per_organization: int = 50
    """Jobs of one organisation validating, queued or running at once; one more is a 429. 0: no limit."""

    key_request_limit: int = 6000
    """Requests one key may make per `key_request_window_s`; past it, 429 with `Retry-After`. 0: no limit."""

    key_request_window_s: int = 60
    """Length of a key's request-counting window, in seconds."""

    # --- Leftovers and private channels (see README "Security model") ---

    orphan_grace_s: float = 6 * 3600
    """Age past which the sweeper removes an object without a row, a partial write or an upload's
    temporary file: longer than any request or job takes from writing bytes to committing their row."""

    sweep_interval_s: float = 300.0
    """How often the API's sweeper runs (it also runs once at start)."""

    upload_spool_dir: Path | None = None
    """Where request bodies are spooled while they arrive. Unset: `data_dir/spool`."""

    inference_api_key: str | None = None
    """The key inference servers require and only the gateway sends (`VLLM_API_KEY`); `ftserve up`
    generates one when unset. An inference server refuses to start without one."""

    def resolved_data_dir(self) -> Path:
        return self.data_dir.expanduser().resolve()

    def resolved_database_url(self) -> str:
        """The database URL with an async driver, defaulting to SQLite in the data dir."""
        url = self.database_url or f"sqlite:///{self.resolved_data_dir() / 'ftserve.db'}"
        for plain, driver in (
            ("postgresql://", "postgresql+asyncpg://"),
            ("postgres://", "postgresql+asyncpg://"),
            ("sqlite://", "sqlite+aiosqlite://"),
        ):
            if url.startswith(plain):
                return driver + url[len(plain) :]
        return url

    def resolved_adapter_cache_dir(self) -> Path:
        return self.adapter_cache_dir or self.resolved_data_dir() / "adapter-cache"

    def resolved_storage_url(self) -> str:
        return self.storage_url or (self.resolved_data_dir() / "objects").as_uri()

    # --- Graders and evals (see README "Graders and Evals") ---

    python_grader: str = "on"
    """`off` refuses `python` graders with a 400; `on` runs them in the bubblewrap sandbox."""

    python_grader_timeout_s: float = 10.0
    """Wall-clock limit of one python grader call; past it the sandbox is killed."""

    python_grader_memory_mb: int = 512
    """Address-space limit of a python grader's sandbox."""

    wordnet_dir: Path = Path("/usr/share/wordnet")
    """WordNet 3.0 data for the `meteor` metric (Debian's `wordnet-base` puts it here)."""

    eval_concurrency: int = 64
    """Items an eval run samples and grades at the same time (vLLM batches them: 64 gave 28 items/s
    against 24 at 16 in `tests/benchmarks/bench_evals.py`)."""

    eval_max_items: int = 5000
    """Most items one eval run may have; a longer data source is refused with a 400."""

    eval_runs_per_process: int = 4
    """Eval runs one API process executes at the same time (its arq worker's `max_jobs`)."""

    # --- Reinforcement fine-tuning (see README "Reinforcement fine-tuning") ---

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

    # --- Live events, webhooks and metrics (see README "Live events", "Webhooks", "Metrics") ---

    event_streams_per_organization: int = 20
    """Event streams (`…/events?stream=true`) one organisation may hold open at once, per API
    process; one more is answered 429."""

    event_stream_poll_s: float = 0.5
    """How often an event stream looks for new events (a short query; no connection is held between)."""

    event_stream_heartbeat_s: float = 15.0
    """Seconds of silence after which an event stream sends a comment, so that proxies keep it open."""

    webhook_allow_private: bool = False
    """Allow webhook targets on loopback, private, link-local and other non-public addresses
    (`FTSERVE_WEBHOOK_ALLOW_PRIVATE=1`); refused otherwise, checked after DNS resolution."""

    webhook_poll_s: float = 1.0
    """How often each API process's sender looks for deliveries that are due."""

    webhook_timeout_s: float = 10.0
    """Time limit of one delivery attempt (connect, send and the answer's head)."""

    webhook_retry_base_s: float = 5.0
    """Wait after the first failed attempt; it doubles with each further one (up to an hour)."""

    webhook_retry_for_s: float = 72 * 3600.0
    """How long a delivery is retried after its event before it is given up as `failed`."""


@functools.cache
def get_settings() -> Settings:
    """The process's settings, read once from the environment."""
    return Settings()
