"""Prometheus series of the API process (`GET /metrics`), in its default registry.

Labels are route templates, methods, statuses, event types and model names, never ids, so the
number of series stays bounded. The trainer's and the inference side's series live in
`service.metrics.trainer` and `service.metrics.inference`, imported only by those processes.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

HTTP_REQUESTS = Counter(
    "ftserve_http_requests", "HTTP requests answered, by route template, method and status.",
    ["route", "method", "status"],
)  # fmt: skip
HTTP_LATENCY = Histogram(
    "ftserve_http_request_duration_seconds", "Time to answer an HTTP request (to the end of its body).",
    ["route", "method"], buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)  # fmt: skip
JOBS = Gauge("ftserve_fine_tuning_jobs", "Fine-tuning jobs by status (read at scrape time).", ["status"])
QUEUE_DEPTH = Gauge("ftserve_queue_depth", "Jobs waiting for a trainer (queued) and holding one (running).", ["state"])
EVAL_RUNS = Gauge("ftserve_eval_runs", "Eval runs by status (read at scrape time).", ["status"])
WEBHOOK_ATTEMPTS = Counter(
    "ftserve_webhook_attempts", "Webhook delivery attempts by event type and outcome "
    "(delivered, failed: to be retried or given up, refused: a target not allowed).", ["event_type", "outcome"],
)  # fmt: skip
WEBHOOK_DELIVERIES = Gauge(
    "ftserve_webhook_deliveries", "Webhook deliveries by status (pending, delivered, failed; read at scrape time).",
    ["status"],
)  # fmt: skip
EVENT_STREAMS = Gauge("ftserve_event_streams", "Event streams (`…/events?stream=true`) open in this process.")
UPSTREAM_LATENCY = Histogram(
    "ftserve_gateway_upstream_seconds", "Time from a gateway request to vLLM's answer head, by base model.",
    ["model"], buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
)  # fmt: skip
UPSTREAM_ERRORS = Counter(
    "ftserve_gateway_upstream_errors", "Gateway requests that vLLM failed or did not answer, by base model and kind.",
    ["model", "kind"],
)  # fmt: skip
TOKENS_SERVED = Counter(
    "ftserve_gateway_tokens", "Tokens of the gateway's answers (their `usage`, streamed ones too), by base model.",
    ["model", "kind"],
)  # fmt: skip
