"""Webhooks: signed, durable notices of jobs and eval runs that reached a final state.

`outbox.record` writes one delivery row per subscribed endpoint in the transaction of the state
change; `sender.send_forever` (in every API process) claims due rows, signs each attempt per
Standard Webhooks (`signing`) and sends it to a checked address (`targets`), retrying with
exponential backoff until delivered or given up.
"""

from __future__ import annotations

EVENT_TYPES: tuple[str, ...] = (
    "fine_tuning.job.succeeded",
    "fine_tuning.job.failed",
    "fine_tuning.job.cancelled",
    "eval.run.succeeded",
    "eval.run.failed",
    "eval.run.canceled",
)
"""OpenAI's event types that ftserve sends."""
