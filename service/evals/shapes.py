"""Checking eval and run requests, and the objects the Evals API answers, field for field as OpenAI's.

Supported: `data_source_config` of type `custom`; run data sources `jsonl` (a `file_id` of
purpose `evals`, or inline `file_content`) and `completions` (a model samples each item first).
Testing criteria are the graders of `service.graders`, `label_model` and `multi` included.
"""

from __future__ import annotations

from typing import Any

from service.db.models import Eval, EvalRun, EvalRunOutputItem
from service.errors import InvalidRequestError
from service.graders import TYPES, GradingOptions, check_grader

PASS_THRESHOLD_DEFAULT = 0.5
"""Pass threshold of a criterion that has none (python, score_model, multi)."""


def check_data_source_config(config: Any) -> dict[str, Any]:
    if not isinstance(config, dict) or config.get("type") != "custom":
        kind = config.get("type") if isinstance(config, dict) else None
        raise InvalidRequestError(
            f"Unsupported data_source_config type {kind!r}: this service supports `custom` only.",
            param="data_source_config.type",
        )
    schema = config.get("item_schema")
    if not isinstance(schema, dict):
        raise InvalidRequestError("`item_schema` must be a JSON schema object.", param="data_source_config.item_schema")
    properties = {"item": schema}
    if config.get("include_sample_schema"):
        properties["sample"] = {"type": "object", "properties": {"output_text": {"type": "string"}}}
    return {"type": "custom", "schema": {"type": "object", "properties": properties, "required": ["item"]}}


async def check_testing_criteria(criteria: Any, options: GradingOptions) -> list[dict[str, Any]]:
    if not isinstance(criteria, list) or not criteria:
        raise InvalidRequestError("`testing_criteria` must be a non-empty list of graders.", param="testing_criteria")
    names = set()
    for i, criterion in enumerate(criteria):
        await check_grader(criterion, options, allowed=TYPES, param=f"testing_criteria[{i}]")
        if criterion["name"] in names:
            raise InvalidRequestError(f"Two testing criteria are named {criterion['name']!r}.",
                                      param=f"testing_criteria[{i}].name")  # fmt: skip
        names.add(criterion["name"])
        threshold = criterion.get("pass_threshold")
        if threshold is not None and not isinstance(threshold, int | float):
            raise InvalidRequestError(
                "`pass_threshold` must be a number.", param=f"testing_criteria[{i}].pass_threshold"
            )
        if criterion["type"] == "text_similarity" and threshold is None:
            raise InvalidRequestError("Missing required parameter: 'pass_threshold'.",
                                      param=f"testing_criteria[{i}].pass_threshold")  # fmt: skip
    return criteria


def check_metadata(metadata: Any) -> dict[str, str] | None:
    if metadata is None:
        return None
    if (
        not isinstance(metadata, dict)
        or len(metadata) > 16
        or not all(
            isinstance(k, str) and isinstance(v, str) and len(k) <= 64 and len(v) <= 512 for k, v in metadata.items()
        )
    ):
        raise InvalidRequestError("`metadata`: at most 16 string pairs (keys ≤ 64, values ≤ 512 characters).",
                                  param="metadata")  # fmt: skip
    return metadata


def check_run_data_source(source: Any) -> dict[str, Any]:
    """The run's data source; its file and model are checked by the caller."""
    if not isinstance(source, dict) or source.get("type") not in ("jsonl", "completions"):
        kind = source.get("type") if isinstance(source, dict) else None
        raise InvalidRequestError(
            f"Unsupported data_source type {kind!r}: this service runs `jsonl` and `completions` data sources.",
            param="data_source.type",
        )
    inner = source.get("source")
    if not isinstance(inner, dict) or inner.get("type") not in ("file_id", "file_content"):
        raise InvalidRequestError("`data_source.source` must be of type `file_id` or `file_content`.",
                                  param="data_source.source")  # fmt: skip
    if inner["type"] == "file_id" and not isinstance(inner.get("id"), str):
        raise InvalidRequestError("Missing required parameter: 'id'.", param="data_source.source.id")
    if inner["type"] == "file_content" and not isinstance(inner.get("content"), list):
        raise InvalidRequestError("`content` must be a list of {item, sample}.", param="data_source.source.content")
    if source["type"] == "completions":
        if not isinstance(source.get("model"), str):
            raise InvalidRequestError("Missing required parameter: 'model'.", param="data_source.model")
        messages = source.get("input_messages")
        if not isinstance(messages, dict) or messages.get("type") not in ("template", "item_reference"):
            raise InvalidRequestError("`input_messages` must be of type `template` or `item_reference`.",
                                      param="data_source.input_messages")  # fmt: skip
    return source


def passes(criterion: dict[str, Any], score: float) -> bool:
    if criterion["type"] == "string_check" or criterion["type"] == "label_model":
        return score >= 1.0
    threshold = criterion.get("pass_threshold")
    return score >= (PASS_THRESHOLD_DEFAULT if threshold is None else threshold)


def eval_object(row: Eval) -> dict[str, Any]:
    return {"object": "eval", "id": row.id, "name": row.name, "created_at": row.created_at,
            "metadata": row.metadata_, "data_source_config": row.data_source_config,
            "testing_criteria": row.testing_criteria}  # fmt: skip


NO_ERROR = {"code": "", "message": ""}


def run_object(row: EvalRun, report_base: str) -> dict[str, Any]:
    return {
        "object": "eval.run", "id": row.id, "eval_id": row.eval_id, "name": row.name, "model": row.model,
        "status": row.status, "created_at": row.created_at, "metadata": row.metadata_,
        "data_source": row.data_source, "error": row.error or NO_ERROR, "result_counts": row.result_counts,
        "per_testing_criteria_results": row.per_testing_criteria_results, "per_model_usage": row.per_model_usage,
        "report_url": f"{report_base.rstrip('/')}/v1/evals/{row.eval_id}/runs/{row.id}/output_items",
    }  # fmt: skip


def item_object(row: EvalRunOutputItem) -> dict[str, Any]:
    return {"object": "eval.run.output_item", "id": row.id, "run_id": row.run_id, "eval_id": row.eval_id,
            "created_at": row.created_at, "status": row.status, "datasource_item_id": row.datasource_item_id,
            "datasource_item": row.datasource_item, "results": row.results, "sample": row.sample}  # fmt: skip


def empty_counts() -> dict[str, int]:
    return {"total": 0, "passed": 0, "failed": 0, "errored": 0}
