"""HTTP handlers of `/v1/fine_tuning/alpha/graders`: check the body, run the library, shape the answer."""

from __future__ import annotations

from typing import Any

from litestar import Controller, post
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.params import JSONBody

from service.api.openapi_docs import ERROR_RESPONSES
from service.db.models import Organization
from service.errors import InvalidRequestError
from service.evals.sampler import GatewaySampler
from service.graders import RUNNABLE, GradingOptions, check_grader, grade, sample_namespace


def grading_options(state: State, organization: Organization) -> GradingOptions:
    sampler = GatewaySampler(state.sessionmaker, state.settings, state.http, organization)
    return GradingOptions.from_settings(state.settings, sampler)


def _grader(data: dict[str, Any]) -> Any:
    if "grader" not in data:
        raise InvalidRequestError("Missing required parameter: 'grader'.", param="grader")
    return data["grader"]


class GraderController(Controller):
    path = "/v1/fine_tuning/alpha/graders"
    tags = ["Graders"]

    @post("/validate", responses=ERROR_RESPONSES, operation_id="validateGrader",
          summary="Validate a grader", status_code=200)  # fmt: skip
    async def validate(
        self, data: JSONBody[dict[str, Any]], organization: NamedDependency[Organization], state: State
    ) -> dict[str, Any]:
        grader = await check_grader(_grader(data), grading_options(state, organization), allowed=RUNNABLE)
        return {"grader": grader}

    @post("/run", responses=ERROR_RESPONSES, operation_id="runGrader", summary="Run a grader", status_code=200)
    async def run(
        self, data: JSONBody[dict[str, Any]], organization: NamedDependency[Organization], state: State
    ) -> dict[str, Any]:
        sample = data.get("model_sample")
        if not isinstance(sample, str):
            raise InvalidRequestError("Missing required parameter: 'model_sample' (a string).", param="model_sample")
        options = grading_options(state, organization)
        grader = await check_grader(_grader(data), options, allowed=RUNNABLE)
        result = await grade(grader, sample_namespace(sample), data.get("item") or {}, options)
        return result.response()
