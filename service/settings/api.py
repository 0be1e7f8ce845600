"""The API process: HTTP, uploads, limits, keys, the sweeper, evals, events and webhooks."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from service.settings.common import MB
from service.settings.database import DatabaseSettings
from service.settings.models import GraderSettings
from service.settings.storage import StorageSettings


class ApiSettings(DatabaseSettings, StorageSettings, GraderSettings):
    """Everything the API process reads (`ftserve config --role api`)."""

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

    reconcile_interval_s: float = 5.0
    """How often the API compares the database with the queue (see `service.reconciler`)."""

    max_restarts: int = Field(default=3, ge=0, le=100)
    """Times a job or eval run is started again after losing its worker (a crash, a lapsed lease,
    a transient fault) before it fails instead; a job's count restarts at each checkpoint, and
    graceful shutdowns and preemptions do not count."""

    validate_concurrency: int = 4
    """Jobs whose files one API process validates at once."""

    max_json_body_bytes: int = 1 * MB
    """Largest body of a JSON route (jobs, uploads, …); larger: 413 before the body is read."""

    max_inference_body_bytes: int = 16 * MB
    """Largest body of `/v1/chat/completions` and `/v1/completions` (long prompts)."""

    body_idle_timeout_s: float = 30.0
    """A request body that sends nothing for this long is cut (408) and its temporary data removed."""

    jsonl_check_processes: int = 1
    """Processes that check uploaded fine-tuning JSONL, apart from the event loop's threads."""

    key_cache_s: float = 10.0
    """How long an API process trusts a key it has checked while it hears revocations (Redis
    pub/sub, `service.invalidation`); at most 1 s while it does not."""

    max_active_jobs_per_organization: int = 50
    """Jobs of one organisation validating, queued or running at once; one more is a 429. 0: no limit."""

    key_request_limit: int = 6000
    """Requests one key may make per `key_request_window_s`; past it, 429 with `Retry-After`. 0: no limit."""

    key_request_window_s: int = 60
    """Length of a key's request-counting window, in seconds."""

    orphan_grace_s: float = 6 * 3600
    """Age past which the sweeper removes an object without a row, a partial write or an upload's
    temporary file: longer than any request or job takes from writing bytes to committing their row."""

    sweep_interval_s: float = 300.0
    """How often the API's sweeper runs (it also runs once at start)."""

    upload_spool_dir: Path | None = None
    """Where request bodies are spooled while they arrive. Unset: `data_dir/spool`."""

    eval_concurrency: int = 64
    """Items an eval run samples and grades at the same time (vLLM batches them: 64 gave 28 items/s
    against 24 at 16 in `tests/benchmarks/bench_evals.py`)."""

    eval_max_items: int = 5000
    """Most items one eval run may have; a longer data source is refused with a 400."""

    eval_runs_per_process: int = 4
    """Eval runs one API process executes at the same time (its arq worker's `max_jobs`)."""

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
