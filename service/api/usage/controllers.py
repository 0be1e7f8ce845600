"""HTTP handler of `/v1/organization/usage/completions`, in the shape of OpenAI's."""

from __future__ import annotations

from typing import Annotated, Literal

from litestar import Controller, get
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.params import QueryParameter
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from service.api.openapi_docs import ERROR_RESPONSES
from service.db.models import Organization
from service.errors import InvalidRequestError
from service.ids import now_s
from service.usage import BUCKET_WIDTHS, DEFAULT_LIMITS, MAX_LIMITS, METER, usage_buckets


class CompletionsUsageResult(BaseModel):
    object: Literal["organization.usage.completions.result"] = "organization.usage.completions.result"
    input_tokens: int
    """Prompt tokens, cached ones included."""
    output_tokens: int
    input_cached_tokens: int
    input_audio_tokens: int = 0
    output_audio_tokens: int = 0
    num_model_requests: int
    """Answers counted."""
    project_id: str | None = None
    user_id: str | None = None
    api_key_id: str | None = None
    model: str | None = None
    """The model id as the client named it, when grouped by `model`."""
    batch: bool | None = None


class UsageBucket(BaseModel):
    object: Literal["bucket"] = "bucket"
    start_time: int
    end_time: int
    results: list[CompletionsUsageResult]


class UsagePage(BaseModel):
    object: Literal["page"] = "page"
    data: list[UsageBucket]
    has_more: bool
    next_page: str | None
    """The `page` value of the next page, when `has_more`."""


class UsageController(Controller):
    path = "/v1/organization/usage"
    tags = ["Usage"]

    @get("/completions", responses=ERROR_RESPONSES, operation_id="usage-completions",
         summary="Tokens served to the caller's organisation, in time buckets")  # fmt: skip
    async def completions(
        self,
        db_session: NamedDependency[AsyncSession],
        organization: NamedDependency[Organization],
        state: State,
        start_time: Annotated[int, QueryParameter(ge=0, description="Start (unix seconds), inclusive.")],
        end_time: Annotated[int | None, QueryParameter(ge=0, description="End (unix seconds), exclusive.")] = None,
        bucket_width: Literal["1m", "1h", "1d"] = "1d",
        group_by: Annotated[list[str] | None, QueryParameter(description="`model` only.")] = None,
        models: Annotated[list[str] | None, QueryParameter(description="Only these models.")] = None,
        limit: Annotated[int | None, QueryParameter(ge=1, description="Buckets per page.")] = None,
        page: Annotated[str | None, QueryParameter(description="`next_page` of the previous page.")] = None,
    ) -> UsagePage:
        fields = {f for g in group_by or [] for f in g.split(",") if f}
        if fields - {"model"}:
            raise InvalidRequestError(
                f"Unsupported group_by value(s): {', '.join(sorted(fields - {'model'}))}; this server groups by "
                "`model` only.",
                param="group_by",
            )
        width = BUCKET_WIDTHS[bucket_width]
        limit = limit or DEFAULT_LIMITS[bucket_width]
        if limit > MAX_LIMITS[bucket_width]:
            raise InvalidRequestError(
                f"`limit` is at most {MAX_LIMITS[bucket_width]} for bucket_width {bucket_width}.", param="limit"
            )
        first = start_time
        if page is not None:
            if not page.isdigit() or int(page) < start_time or (int(page) - start_time) % width:
                raise InvalidRequestError("Invalid `page`: pass the `next_page` of the previous page.", param="page")
            first = int(page)
        end = end_time if end_time is not None else now_s() + 1
        if end <= start_time:
            raise InvalidRequestError("`end_time` must be after `start_time`.", param="end_time")
        last = min(end, first + limit * width)
        await METER.flush(state.sessionmaker)  # this process's latest counts, so a reader sees its own answers
        sums = await usage_buckets(db_session, organization.id, start_time=first, end_time=last, width_s=width,
                                   group_by_model="model" in fields, models=models)  # fmt: skip
        buckets = []
        for start in range(first, last, width):
            results = [
                CompletionsUsageResult(input_tokens=s.input_tokens, output_tokens=s.output_tokens,
                                       input_cached_tokens=s.input_cached_tokens, num_model_requests=s.requests,
                                       model=model)
                for model, s in sorted(sums.get(start, {}).items(), key=lambda kv: kv[0] or "")
            ]  # fmt: skip
            buckets.append(UsageBucket(start_time=start, end_time=min(start + width, end), results=results))
        has_more = last < end
        return UsagePage(data=buckets, has_more=has_more, next_page=str(last) if has_more else None)
