"""The arq queues on Redis: what is enqueued, under which ids, and how to tell a job is held.

Two queues, two kinds of worker:

- `ftserve:validate`, consumed inside every API process: reads a job's files, counts the
  examples, resolves `"auto"` hyperparameters and moves the job to `queued`.
  arq job id: `<ftjob id>:validate`.
- `ftserve:train`, consumed by trainer workers (`ftserve worker`): trains the job.
  arq job id: the fine-tuning job id itself, so enqueueing twice is a no-op.

Redis holds nothing that cannot be rebuilt: `service.reconciler` re-enqueues from the database
whatever Redis lost.
"""

from __future__ import annotations

from arq.connections import ArqRedis, RedisSettings, create_pool
from arq.constants import in_progress_key_prefix, job_key_prefix

VALIDATE_QUEUE = "ftserve:validate"
TRAIN_QUEUE = "ftserve:train"
VALIDATE_FUNCTION = "validate_job"
TRAIN_FUNCTION = "train_job"


def redis_settings(url: str) -> RedisSettings:
    return RedisSettings.from_dsn(url)


async def open_queue(url: str) -> ArqRedis:
    """A connection pool to the queue's Redis; retries the first connection briefly."""
    return await create_pool(redis_settings(url), retry=10)


def validate_job_id(job_id: str) -> str:
    return f"{job_id}:validate"


async def enqueue_validation(redis: ArqRedis, job_id: str, request_id: str | None = None) -> None:
    """`request_id`: the request that created the job, carried into the validation's log lines."""
    await redis.enqueue_job(
        VALIDATE_FUNCTION, job_id, request_id, _job_id=validate_job_id(job_id), _queue_name=VALIDATE_QUEUE
    )


async def enqueue_training(redis: ArqRedis, job_id: str, request_id: str | None = None) -> None:
    """`request_id`: the request that created the job, carried into the worker's log lines."""
    await redis.enqueue_job(TRAIN_FUNCTION, job_id, request_id, _job_id=job_id, _queue_name=TRAIN_QUEUE)


async def is_enqueued(redis: ArqRedis, arq_job_id: str) -> bool:
    """Whether Redis still holds the arq job (waiting or running)."""
    return bool(await redis.exists(job_key_prefix + arq_job_id))


async def release_in_progress(redis: ArqRedis, arq_job_id: str) -> None:
    """Forget that a dead worker was running the job, so that a live one may pick it up now."""
    await redis.delete(in_progress_key_prefix + arq_job_id)
