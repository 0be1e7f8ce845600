"""Prometheus series of a trainer worker (`GET /metrics` on its health port), from what it reports."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

STEPS = Counter("ftserve_trainer_steps", "Training steps reported by this worker.")
STEP_RATE = Gauge("ftserve_trainer_step_rate", "Training steps per second of the job this worker trains.")
TOKENS_PER_SECOND = Gauge("ftserve_trainer_tokens_per_second", "Training tokens per second of the current job.")
MFU = Gauge("ftserve_trainer_mfu", "Model FLOPs utilisation of the current job (0..1, when the peak is known).")
LAST_HEARTBEAT = Gauge("ftserve_trainer_last_heartbeat_timestamp_seconds",
                       "When this worker last renewed its job's lease (unix seconds).")  # fmt: skip
TRAINING = Gauge("ftserve_trainer_training", "1 while this worker trains a job, 0 otherwise.")
