"""HTTP handlers of `/v1/fine_tuning/jobs`."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from litestar import Controller, Request, get, post
from litestar.background_tasks import BackgroundTask
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, HeaderParameter, JSONBody, QueryParameter

from service.api.fine_tuning.schemas import (
    CreateJobRequest,
    FineTuningJobCheckpointList,
    FineTuningJobCheckpointObject,
    FineTuningJobEventList,
    FineTuningJobEventObject,
    FineTuningJobList,
    FineTuningJobObject,
)
from service.api.fine_tuning.services import JobService
from service.api.fine_tuning.stream import EventStream, job_events, take_slot
from service.api.fine_tuning.stream import last_event_id as last_event_id_number
from service.api.openapi_docs import ERROR_RESPONSES
from service.errors import InvalidRequestError

NO_METADATA: dict[str, str] = {}
JobStatus = Literal["validating_files", "queued", "running", "paused", "succeeded", "failed", "cancelled"]


def metadata_filter(request: Request[Any, Any, Any]) -> dict[str, str] | None:
    """`metadata[k]=v` pairs of the query (OpenAI's deepObject style); `metadata=null`: jobs without any."""
    pairs: dict[str, str] = {}
    for name, value in request.query_params.items():
        if name == "metadata":
            if value != "null":
                raise InvalidRequestError("Use metadata[key]=value to filter by metadata.", param="metadata")
            return NO_METADATA
        if name.startswith("metadata[") and name.endswith("]"):
            pairs[name[len("metadata[") : -1]] = value
    return pairs or None


STREAM_DOC = (
    "Stream the job's events as server-sent events, oldest first, until the job is final (an addition "
    "to OpenAI's API). Each event's `id` is its number in the job; a client that reconnects with "
    "`Last-Event-ID` resumes after it. `limit` and `after` do not apply."
)


async def _event_stream(
    request: Request[Any, Any, Any], job_service: JobService, job_id: str, last_event_id: str | None
) -> EventStream:
    """The SSE form of the events list (see `service.api.fine_tuning.stream`)."""
    after = last_event_id_number(last_event_id)
    await job_service.get(job_id)  # 404 for another organisation's job
    await job_service.session.close()  # the stream polls with sessions of its own
    state = request.app.state
    give_back = take_slot(job_service.organization.id, state.settings.event_streams_per_organization)
    frames = job_events(state.sessionmaker, state.settings, job_id, after, give_back)
    headers = {"cache-control": "no-cache", "x-accel-buffering": "no"}
    return EventStream(frames, headers=headers, background=BackgroundTask(give_back))


class FineTuningJobController(Controller):
    path = "/v1/fine_tuning/jobs"
    tags = ["Fine-tuning"]

    @post(responses=ERROR_RESPONSES, operation_id="createFineTuningJob", summary="Create a fine-tuning job",
          status_code=200)  # fmt: skip
    async def create_job(
        self,
        data: JSONBody[CreateJobRequest],
        job_service: NamedDependency[JobService],
        idempotency_key: Annotated[str | None, HeaderParameter(name="Idempotency-Key", max_length=256)] = None,
    ) -> FineTuningJobObject:
        return FineTuningJobObject.from_row(await job_service.create(data, idempotency_key))

    @get(responses=ERROR_RESPONSES, operation_id="listPaginatedFineTuningJobs", summary="List fine-tuning jobs")
    async def list_jobs(
        self,
        request: Request[Any, Any, Any],
        job_service: NamedDependency[JobService],
        limit: Annotated[int, QueryParameter(ge=1, le=10000)] = 20,
        after: FromQuery[str | None] = None,
        status: Annotated[
            JobStatus | None, QueryParameter(description="Only jobs in this status (an addition to OpenAI's API).")
        ] = None,
        model: Annotated[
            str | None,
            QueryParameter(description="Only jobs of this model, as asked or resolved (an addition).", max_length=512),
        ] = None,
    ) -> FineTuningJobList:
        page = await job_service.list(
            limit=limit, after=after, metadata=metadata_filter(request), status=status, model=model
        )
        return FineTuningJobList(
            object="list", data=[FineTuningJobObject.from_row(j) for j in page.items], has_more=page.has_more
        )

    @get("/{fine_tuning_job_id:str}", responses=ERROR_RESPONSES, operation_id="retrieveFineTuningJob",
         summary="Retrieve a fine-tuning job")  # fmt: skip
    async def retrieve_job(
        self, fine_tuning_job_id: FromPath[str], job_service: NamedDependency[JobService]
    ) -> FineTuningJobObject:
        return FineTuningJobObject.from_row(await job_service.get(fine_tuning_job_id))

    @post("/{fine_tuning_job_id:str}/cancel", responses=ERROR_RESPONSES, operation_id="cancelFineTuningJob",
          summary="Cancel a fine-tuning job", status_code=200)  # fmt: skip
    async def cancel_job(
        self, fine_tuning_job_id: FromPath[str], job_service: NamedDependency[JobService]
    ) -> FineTuningJobObject:
        return FineTuningJobObject.from_row(await job_service.cancel(fine_tuning_job_id))

    @post("/{fine_tuning_job_id:str}/pause", responses=ERROR_RESPONSES, operation_id="pauseFineTuningJob",
          summary="Pause a fine-tuning job", status_code=200)  # fmt: skip
    async def pause_job(
        self, fine_tuning_job_id: FromPath[str], job_service: NamedDependency[JobService]
    ) -> FineTuningJobObject:
        return FineTuningJobObject.from_row(await job_service.pause(fine_tuning_job_id))

    @post("/{fine_tuning_job_id:str}/resume", responses=ERROR_RESPONSES, operation_id="resumeFineTuningJob",
          summary="Resume a paused fine-tuning job", status_code=200)  # fmt: skip
    async def resume_job(
        self, fine_tuning_job_id: FromPath[str], job_service: NamedDependency[JobService]
    ) -> FineTuningJobObject:
        return FineTuningJobObject.from_row(await job_service.resume(fine_tuning_job_id))

    @get("/{fine_tuning_job_id:str}/events", responses=ERROR_RESPONSES, operation_id="listFineTuningEvents",
         summary="List a job's events, newest first")  # fmt: skip
    async def list_events(
        self,
        request: Request[Any, Any, Any],
        fine_tuning_job_id: FromPath[str],
        job_service: NamedDependency[JobService],
        limit: Annotated[int, QueryParameter(ge=1, le=10000)] = 20,
        after: FromQuery[str | None] = None,
        stream: Annotated[bool, QueryParameter(description=STREAM_DOC)] = False,
        last_event_id: Annotated[
            str | None, HeaderParameter(name="Last-Event-ID", required=False, max_length=32)
        ] = None,
    ) -> FineTuningJobEventList:
        if stream:
            return await _event_stream(request, job_service, fine_tuning_job_id, last_event_id)  # type: ignore[return-value]
        page = await job_service.events(fine_tuning_job_id, limit=limit, after=after)
        return FineTuningJobEventList(
            object="list", data=[FineTuningJobEventObject.from_row(e) for e in page.items], has_more=page.has_more
        )

    @get("/{fine_tuning_job_id:str}/checkpoints", responses=ERROR_RESPONSES,
         operation_id="listFineTuningJobCheckpoints", summary="List a job's checkpoints, newest first")  # fmt: skip
    async def list_checkpoints(
        self,
        fine_tuning_job_id: FromPath[str],
        job_service: NamedDependency[JobService],
        limit: Annotated[int, QueryParameter(ge=1, le=10000)] = 10,
        after: FromQuery[str | None] = None,
    ) -> FineTuningJobCheckpointList:
        page = await job_service.checkpoints(fine_tuning_job_id, limit=limit, after=after)
        data = [FineTuningJobCheckpointObject.from_row(c) for c in page.items]
        return FineTuningJobCheckpointList(
            object="list",
            data=data,
            has_more=page.has_more,
            first_id=data[0].id if data else None,
            last_id=data[-1].id if data else None,
        )
