"""The Litestar application: routes, dependencies, error mapping and the resources' lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx
from arq import worker as arq_worker
from arq.connections import ArqRedis
from litestar import Litestar
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme
from sqlalchemy.ext.asyncio import AsyncSession

from service import __version__
from service.api.checkpoints.controllers import CheckpointPermissionController
from service.api.dashboard.controllers import DASHBOARD_ROUTES
from service.api.deps import (
    add_rate_limit_headers,
    keys_lifespan,
    provide_db_session,
    provide_organization,
    provide_storage,
)
from service.api.errors import EXCEPTION_HANDLERS
from service.api.evals.controllers import EvalController
from service.api.files.checks import JsonlChecks
from service.api.files.controllers import FileController
from service.api.files.services import FileService
from service.api.fine_tuning.controllers import FineTuningJobController
from service.api.fine_tuning.services import JobService
from service.api.graders.controllers import GraderController
from service.api.health import health, queue_depth, ready
from service.api.inference.controllers import CompletionController, EmbeddingController
from service.api.middleware.edge import EdgeMiddleware
from service.api.middleware.metrics import MetricsMiddleware
from service.api.models.controllers import ModelController
from service.api.uploads.controllers import UploadController
from service.api.uploads.services import UploadService
from service.api.usage.controllers import UsageController
from service.api.webhooks.controllers import WebhookController
from service.background import keep_running
from service.catalog import load_catalog
from service.db import create_engine, create_sessionmaker
from service.db.models import Organization
from service.evals.runner import eval_worker, recover_forever
from service.evals.sampler import GatewaySampler
from service.graders import GradingOptions
from service.logging_config import configure_logging
from service.queue import VALIDATE_FUNCTION, VALIDATE_QUEUE, open_queue
from service.reconciler import reconcile_forever
from service.settings import Settings, get_settings
from service.storage import ObjectStorage, configured_storage
from service.sweeper import sweep_forever
from service.usage import METER
from service.validation import validate_job
from service.webhooks.sender import send_forever

log = logging.getLogger("ftserve.api")


def provide_file_service(
    db_session: NamedDependency[AsyncSession],
    storage: NamedDependency[ObjectStorage],
    organization: NamedDependency[Organization],
    state: State,
) -> FileService:
    return FileService(db_session, storage, organization, state.jsonl_checks)


def provide_upload_service(
    db_session: NamedDependency[AsyncSession],
    storage: NamedDependency[ObjectStorage],
    organization: NamedDependency[Organization],
    state: State,
) -> UploadService:
    return UploadService(db_session, storage, organization, state.settings, state.jsonl_checks)


def provide_job_service(
    db_session: NamedDependency[AsyncSession],
    organization: NamedDependency[Organization],
    state: State,
) -> JobService:
    # The catalogue is a small file an operator may edit while the service runs: read it each time.
    # A reinforcement job's grader is checked with the API's grading options, as `graders/validate`
    # checks it, its model resolved by the API's own sampler; an unknown model names the job's field.
    sampler = GatewaySampler(state.sessionmaker, state.settings, state.http, organization,
                             param="method.reinforcement.grader.model")  # fmt: skip
    return JobService(
        db_session,
        organization,
        load_catalog(state.settings),
        state.queue,
        max_active_jobs=state.settings.max_active_jobs_per_organization,
        grading=GradingOptions.from_settings(state.settings, sampler),
    )


def validator_worker(settings: Settings, ctx: dict[str, Any], redis: ArqRedis) -> arq_worker.Worker:
    """The in-process arq worker of the `validating_files` step (no torch needed)."""
    return arq_worker.Worker(
        functions=[arq_worker.func(validate_job, name=VALIDATE_FUNCTION, keep_result=0, max_tries=1000)],
        queue_name=VALIDATE_QUEUE,
        redis_pool=redis,
        ctx=ctx,
        max_jobs=settings.validate_concurrency,
        job_timeout=3600,
        keep_result=0,
        poll_delay=0.2,
        handle_signals=False,
    )


def create_app(settings: Settings | None = None) -> Litestar:
    """Build the API. Resources (engine, storage) open in the lifespan, so building connects to nothing."""
    settings = settings or get_settings()

    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        # Here rather than at build time: uvicorn sets up its own loggers between the two.
        configure_logging(settings.log_format, settings.log_level)
        engine = create_engine(settings)
        storage = configured_storage(settings)
        if hasattr(storage, "ensure_bucket"):
            await asyncio.to_thread(storage.ensure_bucket)
        if not settings.redis_url:
            raise RuntimeError("REDIS_URL is not set (`ftserve up` starts a private Redis when it is unset)")
        queue = await open_queue(settings.redis_url)
        sessionmaker = create_sessionmaker(engine)
        app.state.settings = settings
        app.state.storage = storage
        app.state.sessionmaker = sessionmaker
        app.state.queue = queue
        app.state.jsonl_checks = JsonlChecks(settings)
        # One pooled client for the inference servers; generation can take minutes.
        app.state.http = httpx.AsyncClient(
            timeout=httpx.Timeout(600.0, connect=5.0), limits=httpx.Limits(max_connections=1000)
        )
        validation_ctx = {"sessionmaker": sessionmaker, "storage": storage, "redis": queue, "settings": settings}
        validators: list[arq_worker.Worker] = []

        async def run_validator() -> None:
            # arq's worker ends when Redis goes away: each start is a fresh one on the same pool.
            validators.append(validator_worker(settings, validation_ctx, queue))
            await validators[-1].async_run()

        async def run_evals() -> None:  # eval runs execute here too, off the request path
            validators.append(eval_worker(settings, validation_ctx, queue))
            await validators[-1].async_run()

        tasks = [
            asyncio.create_task(sweep_forever(sessionmaker, storage, settings=settings)),
            asyncio.create_task(
                reconcile_forever(
                    sessionmaker, queue, settings.reconcile_interval_s, max_restarts=settings.max_restarts
                )
            ),
            asyncio.create_task(keep_running("the validation queue consumer", run_validator)),
            asyncio.create_task(keep_running("the eval queue consumer", run_evals)),
            asyncio.create_task(recover_forever(sessionmaker, queue, max(settings.reconcile_interval_s, 1.0))),
            asyncio.create_task(keep_running("the webhook sender", lambda: send_forever(sessionmaker, settings))),
            asyncio.create_task(METER.flush_forever(sessionmaker)),  # tokens the gateway counted
        ]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            for validator in validators:
                with contextlib.suppress(Exception):
                    await validator.close()
            with contextlib.suppress(Exception):
                await METER.flush(sessionmaker)  # what was counted since the last flush
            app.state.jsonl_checks.close()
            await app.state.http.aclose()
            await engine.dispose()

    dependencies: dict[str, Any] = {
        "db_session": Provide(provide_db_session),
        "storage": Provide(provide_storage, sync_to_thread=False),
        "organization": Provide(provide_organization),
        "file_service": Provide(provide_file_service, sync_to_thread=False),
        "upload_service": Provide(provide_upload_service, sync_to_thread=False),
        "job_service": Provide(provide_job_service, sync_to_thread=False),
    }
    app = Litestar(
        route_handlers=[
            FileController,
            UploadController,
            FineTuningJobController,
            CheckpointPermissionController,
            ModelController,
            GraderController,
            EvalController,
            CompletionController,
            EmbeddingController,
            WebhookController,
            UsageController,
            *DASHBOARD_ROUTES,
            health,
            ready,
            queue_depth,
        ],
        dependencies=dependencies,
        exception_handlers=EXCEPTION_HANDLERS,
        lifespan=[lifespan, keys_lifespan(settings)],
        before_send=[add_rate_limit_headers],  # x-request-id is set by the edge middleware
        request_max_body_size=None,  # the edge middleware enforces each route's limit
        openapi_config=OpenAPIConfig(
            title="ftserve",
            version=__version__,
            description="Self-hosted fine-tuning, wire-compatible with OpenAI's API.",
            components=Components(security_schemes={"ApiKeyAuth": SecurityScheme(type="http", scheme="bearer")}),
            security=[{"ApiKeyAuth": []}],
            path="/openapi",
        ),
        debug=False,
    )
    # Outside Litestar's routing and body decoding, so that it sees every request (unknown routes
    # included) and can refuse one before a body byte is read; it wraps the exception layer.
    app.asgi_handler = MetricsMiddleware(EdgeMiddleware(app.asgi_handler, settings))
    return app
