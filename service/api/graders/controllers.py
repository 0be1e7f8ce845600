"""HTTP handlers of `/v1/fine_tuning/alpha/graders`: check the body, run the library, shape the answer."""

from __future__ import annotations

from litestar import Controller, post
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.params import JSONBody

from service.api.graders.schemas import (
    GraderRunResponse,
    GraderValidateResponse,
    RunGraderRequest,
    ValidateGraderRequest,
)
from service.api.openapi_docs import ERROR_RESPONSES
from service.db.models import Organization
from service.evals.sampler import GatewaySampler
from service.graders import RUNNABLE, GradingOptions, check_grader, grade, sample_namespace


def grading_options(state: State, organization: Organization) -> GradingOptions:
    sampler = GatewaySampler(state.sessionmaker, state.settings, state.http, organization)
    return GradingOptions.from_settings(state.settings, sampler)


class GraderController(Controller):
    path = "/v1/fine_tuning/alpha/graders"
    tags = ["Graders"]

    @post("/validate", responses=ERROR_RESPONSES, operation_id="validateGrader",
          summary="Validate a grader", status_code=200)  # fmt: skip
    async def validate(
        self, data: JSONBody[ValidateGraderRequest], organization: NamedDependency[Organization], state: State
    ) -> GraderValidateResponse:
        grader = await check_grader(data.grader, grading_options(state, organization), allowed=RUNNABLE)
        return GraderValidateResponse(grader=grader)

    @post("/run", responses=ERROR_RESPONSES, operation_id="runGrader", summary="Run a grader", status_code=200)
    async def run(
        self, data: JSONBody[RunGraderRequest], organization: NamedDependency[Organization], state: State
    ) -> GraderRunResponse:
        options = grading_options(state, organization)
        grader = await check_grader(data.grader, options, allowed=RUNNABLE)
        result = await grade(grader, sample_namespace(data.model_sample), data.item or {}, options)
        return GraderRunResponse.model_validate(result.response())
