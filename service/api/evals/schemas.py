"""Wire shapes of the Evals API, with the fields OpenAI's `Eval`, `EvalRun` and `EvalRunOutputItem` require.

Nested objects (graders, data sources, samples) are passed through as the service stores them;
their shapes are `service.evals.shapes`'s.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel


class EvalObject(BaseModel):
    object: Literal["eval"]
    id: str
    name: str
    created_at: int
    metadata: dict[str, str] | None
    data_source_config: dict[str, Any]
    """`{"type": "custom", "schema": …}`: the JSON schema of a line (`item`, and `sample` when asked)."""
    testing_criteria: list[dict[str, Any]]
    """The graders, as created."""


class EvalList(BaseModel):
    object: Literal["list"]
    data: list[EvalObject]
    first_id: str | None
    last_id: str | None
    has_more: bool


class EvalDeleted(BaseModel):
    object: Literal["eval.deleted"]
    deleted: bool
    eval_id: str


class ApiError(BaseModel):
    code: str
    message: str


class ResultCounts(BaseModel):
    total: int
    passed: int
    failed: int
    errored: int


class CriteriaResult(BaseModel):
    testing_criteria: str
    passed: int
    failed: int


class ModelUsage(BaseModel):
    model_name: str
    invocation_count: int
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cached_tokens: int


class EvalRunObject(BaseModel):
    object: Literal["eval.run"]
    id: str
    eval_id: str
    name: str
    model: str
    status: Literal["queued", "in_progress", "completed", "failed", "canceled"]
    created_at: int
    metadata: dict[str, str] | None
    data_source: dict[str, Any]
    error: ApiError
    """`{"code": "", "message": ""}` while nothing went wrong (the SDKs require the object)."""
    result_counts: ResultCounts
    per_testing_criteria_results: list[CriteriaResult]
    per_model_usage: list[ModelUsage]
    report_url: str
    """The run's output items on this service."""


class EvalRunList(BaseModel):
    object: Literal["list"]
    data: list[EvalRunObject]
    first_id: str | None
    last_id: str | None
    has_more: bool


class EvalRunDeleted(BaseModel):
    object: Literal["eval.run.deleted"]
    deleted: bool
    run_id: str


class OutputItemObject(BaseModel):
    object: Literal["eval.run.output_item"]
    id: str
    run_id: str
    eval_id: str
    created_at: int
    status: str
    """`pass`, `fail`, or `error` (sampling failed, or a grader reported an error)."""
    datasource_item_id: int
    datasource_item: dict[str, Any]
    results: list[dict[str, Any]]
    """One per testing criterion: `name`, `type`, `score`, `passed`, and the grader's `errors`."""
    sample: dict[str, Any]


class OutputItemList(BaseModel):
    object: Literal["list"]
    data: list[OutputItemObject]
    first_id: str | None
    last_id: str | None
    has_more: bool


class CreateEvalRequest(BaseModel):
    name: str | None = None
    metadata: dict[str, str] | None = None
    data_source_config: dict[str, Any]
    """`{"type": "custom", "item_schema": {…}, "include_sample_schema": bool}`."""
    testing_criteria: list[Any]
    """Graders (`service.graders`), each with its `pass_threshold` where OpenAI has one."""


class UpdateEvalRequest(BaseModel):
    name: str | None = None
    metadata: dict[str, str] | None = None


class CreateEvalRunRequest(BaseModel):
    name: str | None = None
    metadata: dict[str, str] | None = None
    data_source: dict[str, Any]
    """`jsonl` (`source`: `file_id` or `file_content`) or `completions` (`model`, `input_messages`…)."""
