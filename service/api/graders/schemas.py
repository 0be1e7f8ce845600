"""Wire shapes of `/v1/fine_tuning/alpha/graders`, with the fields OpenAI's responses require."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


class GraderErrorsObject(BaseModel):
    formula_parse_error: bool
    invalid_variable_error: bool
    model_grader_parse_error: bool
    model_grader_refusal_error: bool
    model_grader_server_error: bool
    model_grader_server_error_details: str | None
    other_error: bool
    python_grader_runtime_error: bool
    python_grader_runtime_error_details: str | None
    python_grader_server_error: bool
    python_grader_server_error_type: str | None
    sample_parse_error: bool
    truncated_observation_error: bool
    unresponsive_reward_error: bool


class GraderRunMetadata(BaseModel):
    name: str
    type: str
    errors: GraderErrorsObject
    execution_time: float
    scores: dict[str, Any]
    token_usage: int | None
    sampled_model_name: str | None


class GraderRunResponse(BaseModel):
    reward: float
    metadata: GraderRunMetadata
    sub_rewards: dict[str, Any]
    model_grader_token_usage_per_model: dict[str, Any]


class GraderValidateResponse(BaseModel):
    grader: dict[str, Any]
    """The grader, as checked."""


class RunGraderRequest(BaseModel):
    grader: dict[str, Any]
    model_sample: str
    item: Any = None


class ValidateGraderRequest(BaseModel):
    grader: dict[str, Any]
