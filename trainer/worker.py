"""The trainer worker: an arq worker on `ftserve:train` that runs one job at a time.

    python -m trainer.worker        (what `ftserve worker` runs)

For each job: claim it in the database (a lease, renewed by a heartbeat), train in a thread,
then record the outcome. SIGTERM or SIGINT makes the running job save its full state and go
back to `queued`, so another worker continues it from that step; then the worker exits.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
import signal
import socket
import sys
from typing import Any

from arq.worker import Worker, func
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from service.catalog import load_catalog
from service.db import create_engine, create_sessionmaker
from service.db.models import File, FineTuningJob, Organization
from service.fine_tuning import fine_tuned_model_name, leases, method_hyperparameters
from service.fine_tuning.layout import job_prefix
from service.fine_tuning.leases import Lease
from service.fine_tuning.retrying import in_session, is_transient
from service.ids import new_file_id, now_s, random_token
from service.logging_config import REQUEST_ID, configure_logging
from service.metrics import trainer as worker_metrics
from service.queue import TRAIN_FUNCTION, TRAIN_QUEUE, redis_settings
from service.settings import Settings
from service.storage import ObjectStorage, configured_storage
from trainer import token_cache
from trainer.job import JobFailure, JobSpec, Outcome, run_training
from trainer.pod_deletion_cost import mark_busy
from trainer.reporting import DatabaseReporter, HeldJob, guarded_write, heartbeat

log = logging.getLogger("ftserve.worker")
JOB_TIMEOUT_S = 7 * 24 * 3600
"""A training run may take days; arq's 300 s default would kill every real job."""


async def _spec(session: AsyncSession, job: FineTuningJob, settings: Settings) -> JobSpec:
    base = load_catalog(settings).resolve(job.base_model)
    if base is None:
        raise JobFailure("model_not_available", f"Base model {job.base_model!r} left the catalogue.", "model")
    org = await session.get(Organization, job.organization_id)
    keys = {}
    for param, file_id in (("training_file", job.training_file), ("validation_file", job.validation_file)):
        if file_id:
            row = await session.scalar(select(File).where(File.id == file_id))
            if row is None:
                raise JobFailure(f"invalid_{param}", f"The {param.replace('_', ' ')} {file_id} was deleted.", param)
            keys[param] = row.storage_key
    return JobSpec(
        job_id=job.id,
        base=base,
        fine_tuned_model=fine_tuned_model_name(job.base_model, org.name if org else "org", job.suffix, job.id),
        seed=job.seed,
        hyperparameters=method_hyperparameters(job),
        training_key=keys["training_file"],
        validation_key=keys.get("validation_file"),
        storage_prefix=job_prefix(job.organization_id, job.id),
        resume_prefix=job.resume_checkpoint,
        method=(job.method or {}).get("type", "supervised"),
        source_adapter=job.source_adapter,
        source_model=job.model if job.source_adapter else None,
        organization_id=job.organization_id,
        grader=((job.method or {}).get("reinforcement") or {}).get("grader"),
    )


async def _record_outcome(ctx: dict[str, Any], held: HeldJob, org_id: str, spec: JobSpec, outcome: Outcome) -> None:
    """Record how training ended, through the lease transitions (nothing, once the lease is lost)."""
    sessionmaker, storage = ctx["sessionmaker"], ctx["storage"]
    if outcome.stopped == "lost" or held.control == "lost":
        log.warning("job %s: lease lost at step %s; the next worker resumes it", spec.job_id, outcome.step)
        return
    if outcome.stopped not in ("pause", "requeue"):  # the job has ended: no attempt will read its tokens again
        await asyncio.to_thread(token_cache.remove, ctx["settings"].resolved_data_dir(), spec.job_id)
    if outcome.stopped == "cancel":
        await guarded_write(sessionmaker, held, leases.release)
        return
    if outcome.stopped in ("pause", "requeue"):
        await guarded_write(sessionmaker, held, leases.stop, reason=outcome.stopped, step=outcome.step,
                            total_steps=outcome.total_steps, resume_prefix=outcome.resume_prefix)  # fmt: skip
        return
    file_id = new_file_id()
    key = f"files/{org_id}/{file_id}"
    # Base64, as OpenAI serves result files: clients written against it decode them.
    size = await asyncio.to_thread(storage.put_stream, key, [base64.b64encode(outcome.results_csv.encode())])
    result_file = File(id=file_id, organization_id=org_id, filename="step_metrics.csv", purpose="fine-tune-results",
                       bytes=size, created_at=now_s(), status="processed", storage_key=key)  # fmt: skip
    won = await guarded_write(sessionmaker, held, leases.succeed, fine_tuned_model=spec.fine_tuned_model,
                              trained_tokens=outcome.trained_tokens, result_file=result_file)  # fmt: skip
    if not won:  # cancelled at the last moment, or the lease lapsed: the result file has no row
        await asyncio.to_thread(storage.delete, key)


async def train_job(ctx: dict[str, Any], job_id: str, request_id: str | None = None) -> None:
    """arq entry point. Never raises: the outcome is in the database, and arq must not retry on its own.

    Its log lines (the training thread's included) carry the id of the request that created the job."""
    REQUEST_ID.set(request_id)
    if ctx["shutting_down"].is_set():
        return  # the reconciler enqueues the job again for a worker that is staying
    ctx["idle"].clear()
    await mark_busy(True)  # in Kubernetes: a scale-down removes idle trainers first
    try:
        await _claim_and_train(ctx, job_id)
    finally:
        ctx["idle"].set()
        await mark_busy(False)


async def _claim_and_train(ctx: dict[str, Any], job_id: str) -> None:
    settings: Settings = ctx["settings"]
    sessionmaker = ctx["sessionmaker"]
    lease = Lease(job_id, ctx["worker_id"], settings.lease_s)
    try:
        job = await in_session(sessionmaker, leases.claim, lease, within_s=settings.lease_s)
    except Exception as exc:
        log.warning("job %s: could not claim it (%s); the reconciler enqueues it again", job_id, exc)
        return
    if job is None:
        return
    held = HeldJob(lease, shutting_down=ctx["shutting_down"])
    # Each beat also reads cancel/pause requests, so it runs every second whatever the lease length.
    beat = asyncio.create_task(heartbeat(sessionmaker, held, min(1.0, settings.lease_s / 3)))
    try:
        spec = await in_session(sessionmaker, _spec, job, settings, within_s=held.remaining_s())
        reporter = DatabaseReporter(asyncio.get_running_loop(), sessionmaker, ctx["storage"], held,
                                    spec.fine_tuned_model, settings.checkpoints_kept)  # fmt: skip
        outcome = await asyncio.to_thread(run_training, spec, ctx["storage"], settings, reporter)
        await _record_outcome(ctx, held, job.organization_id, spec, outcome)
    except JobFailure as exc:
        error = {"code": exc.code, "message": exc.message, "param": exc.param}
        if await guarded_write(sessionmaker, held, leases.fail, error):
            await asyncio.to_thread(token_cache.remove, settings.resolved_data_dir(), job_id)
    except Exception as exc:
        if held.control == "lost" or is_transient(exc):
            log.warning("job %s: stopped by a lost lease or an unreachable dependency (%s: %s); the next "
                        "worker resumes it", job_id, type(exc).__name__, exc)  # fmt: skip
        else:
            log.exception("job %s crashed", job_id)
            error = {"code": "training_error", "message": f"Training failed: {type(exc).__name__}: {exc}",
                     "param": None}  # fmt: skip
            if await guarded_write(sessionmaker, held, leases.fail, error):
                await asyncio.to_thread(token_cache.remove, settings.resolved_data_dir(), job_id)
    finally:
        beat.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await beat


async def startup(ctx: dict[str, Any]) -> None:
    settings = Settings()
    engine = create_engine(settings)
    storage: ObjectStorage = configured_storage(settings)
    ctx.update(settings=settings, engine=engine, sessionmaker=create_sessionmaker(engine), storage=storage)
    ctx["worker_id"] = f"{socket.gethostname()}:{os.getpid()}:{random_token(6)}"
    log.info("trainer worker %s ready", ctx["worker_id"])


async def shutdown(ctx: dict[str, Any]) -> None:
    await ctx["engine"].dispose()


def build_worker(settings: Settings) -> Worker:
    idle = asyncio.Event()
    idle.set()
    ctx: dict[str, Any] = {"shutting_down": asyncio.Event(), "idle": idle}
    return Worker(
        functions=[func(train_job, name=TRAIN_FUNCTION, keep_result=0, max_tries=10**6, timeout=JOB_TIMEOUT_S)],
        queue_name=TRAIN_QUEUE,
        redis_settings=redis_settings(settings.redis_url or "redis://127.0.0.1:6379"),
        on_startup=startup,
        on_shutdown=shutdown,
        ctx=ctx,
        max_jobs=1,  # one job per device set; run more workers for more devices
        job_timeout=JOB_TIMEOUT_S,
        keep_result=0,
        max_tries=10**6,
        poll_delay=0.5,
        handle_signals=False,
    )


async def _health(worker: Worker, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """`GET /health` on the worker's health port: 200 while the event loop turns; `GET /metrics`:
    the worker's Prometheus series (step rate, tokens per second, MFU, last heartbeat).

    Liveness only: a database outage is not cured by restarting trainers, and a worker rides out
    a short one (see `trainer.reporting`)."""
    try:
        request_line = await asyncio.wait_for(reader.readline(), timeout=5)
        ctx = worker.ctx
        if request_line.split(b" ")[1:2] == [b"/metrics"]:
            worker_metrics.TRAINING.set(0 if ctx["idle"].is_set() else 1)
            metrics = generate_latest()
            writer.write(f"HTTP/1.1 200 OK\r\ncontent-type: {CONTENT_TYPE_LATEST}\r\n"
                         f"content-length: {len(metrics)}\r\nconnection: close\r\n\r\n".encode() + metrics)  # fmt: skip
            await writer.drain()
            return
        status, body = 200, {"status": "ok", "busy": not ctx["idle"].is_set()}
        if ctx["shutting_down"].is_set():
            status, body = 503, {"status": "shutting_down"}
        payload = json.dumps(body).encode()
        reason = "OK" if status == 200 else "Service Unavailable"
        writer.write(f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
                     f"content-length: {len(payload)}\r\nconnection: close\r\n\r\n".encode() + payload)  # fmt: skip
        await writer.drain()
    finally:
        writer.close()


async def _run(worker: Worker, health_port: int | None) -> None:
    """Run until SIGTERM/SIGINT, then let the running job checkpoint and requeue before exiting."""
    loop = asyncio.get_running_loop()
    if health_port:
        await asyncio.start_server(lambda r, w: _health(worker, r, w), "0.0.0.0", health_port)  # noqa: S104
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    main = asyncio.create_task(worker.async_run())
    await asyncio.wait([main, asyncio.create_task(stop.wait())], return_when=asyncio.FIRST_COMPLETED)
    worker.ctx["shutting_down"].set()
    idle = asyncio.create_task(worker.ctx["idle"].wait())
    await asyncio.wait([main, idle], return_when=asyncio.FIRST_COMPLETED)
    idle.cancel()
    main.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await main
    await worker.close()


def main() -> int:
    settings = Settings()
    configure_logging(settings.log_format, settings.log_level)
    if not settings.redis_url:
        print("ftserve worker: REDIS_URL is not set", file=sys.stderr)
        return 2

    async def run() -> None:
        await _run(build_worker(settings), settings.worker_health_port)  # built in the loop arq binds to

    asyncio.run(run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
