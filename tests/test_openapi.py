"""The committed OpenAPI document is current and carries what OpenAI's API requires of our endpoints.

The contract is read from the official `openai` SDK the `dev` extra installs: its response
models' required fields and its request parameters' required keys. OpenAI's operation ids are
listed here, so that generated clients name the operations as OpenAI's do.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from openai.types import (
    FileDeleted,
    FileObject,
    Model,
    ModelDeleted,
    Upload,
    eval_create_params,
    eval_update_params,
    file_create_params,
    upload_complete_params,
    upload_create_params,
)
from openai.types.eval_create_response import EvalCreateResponse
from openai.types.eval_delete_response import EvalDeleteResponse
from openai.types.eval_list_response import EvalListResponse
from openai.types.eval_retrieve_response import EvalRetrieveResponse
from openai.types.eval_update_response import EvalUpdateResponse
from openai.types.evals import run_create_params
from openai.types.evals.run_cancel_response import RunCancelResponse
from openai.types.evals.run_create_response import RunCreateResponse
from openai.types.evals.run_delete_response import RunDeleteResponse
from openai.types.evals.run_list_response import RunListResponse
from openai.types.evals.run_retrieve_response import RunRetrieveResponse
from openai.types.evals.runs.output_item_list_response import OutputItemListResponse
from openai.types.evals.runs.output_item_retrieve_response import OutputItemRetrieveResponse
from openai.types.fine_tuning import FineTuningJob, FineTuningJobEvent, job_create_params
from openai.types.fine_tuning.alpha import grader_run_params, grader_validate_params
from openai.types.fine_tuning.alpha.grader_run_response import GraderRunResponse
from openai.types.fine_tuning.alpha.grader_validate_response import GraderValidateResponse
from openai.types.fine_tuning.jobs import FineTuningJobCheckpoint
from openai.types.uploads import UploadPart
from pydantic import BaseModel

from service.api.app import create_app
from service.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
COMMITTED = ROOT / "openapi" / "openapi.json"
LIST = "list"
"""Marks a cursor-page operation: the model is that of each element of `data`."""

# (method, path, OpenAI's operation id, response model, list?, request parameters or None)
OPERATIONS: list[tuple[str, str, str, type[BaseModel] | None, str | None, Any]] = [
    ("post", "/files", "createFile", FileObject, None, file_create_params.FileCreateParams),
    ("get", "/files", "listFiles", FileObject, LIST, None),
    ("get", "/files/{file_id}", "retrieveFile", FileObject, None, None),
    ("delete", "/files/{file_id}", "deleteFile", FileDeleted, None, None),
    ("get", "/files/{file_id}/content", "downloadFile", None, None, None),
    ("post", "/uploads", "createUpload", Upload, None, upload_create_params.UploadCreateParams),
    ("post", "/uploads/{upload_id}/parts", "addUploadPart", UploadPart, None, None),
    ("post", "/uploads/{upload_id}/complete", "completeUpload", Upload, None,
     upload_complete_params.UploadCompleteParams),
    ("post", "/uploads/{upload_id}/cancel", "cancelUpload", Upload, None, None),
    ("post", "/fine_tuning/jobs", "createFineTuningJob", FineTuningJob, None, job_create_params.JobCreateParams),
    ("get", "/fine_tuning/jobs", "listPaginatedFineTuningJobs", FineTuningJob, LIST, None),
    ("get", "/fine_tuning/jobs/{fine_tuning_job_id}", "retrieveFineTuningJob", FineTuningJob, None, None),
    ("post", "/fine_tuning/jobs/{fine_tuning_job_id}/cancel", "cancelFineTuningJob", FineTuningJob, None, None),
    ("post", "/fine_tuning/jobs/{fine_tuning_job_id}/pause", "pauseFineTuningJob", FineTuningJob, None, None),
    ("post", "/fine_tuning/jobs/{fine_tuning_job_id}/resume", "resumeFineTuningJob", FineTuningJob, None, None),
    ("get", "/fine_tuning/jobs/{fine_tuning_job_id}/events", "listFineTuningEvents", FineTuningJobEvent, LIST, None),
    ("get", "/fine_tuning/jobs/{fine_tuning_job_id}/checkpoints", "listFineTuningJobCheckpoints",
     FineTuningJobCheckpoint, LIST, None),
    ("get", "/models", "listModels", Model, LIST, None),
    ("get", "/models/{model}", "retrieveModel", Model, None, None),
    ("delete", "/models/{model}", "deleteModel", ModelDeleted, None, None),
    ("post", "/fine_tuning/alpha/graders/run", "runGrader", GraderRunResponse, None, grader_run_params.GraderRunParams),
    ("post", "/fine_tuning/alpha/graders/validate", "validateGrader", GraderValidateResponse, None,
     grader_validate_params.GraderValidateParams),
    ("post", "/evals", "createEval", EvalCreateResponse, None, eval_create_params.EvalCreateParams),
    ("get", "/evals", "listEvals", EvalListResponse, LIST, None),
    ("get", "/evals/{eval_id}", "getEval", EvalRetrieveResponse, None, None),
    ("post", "/evals/{eval_id}", "updateEval", EvalUpdateResponse, None, eval_update_params.EvalUpdateParams),
    ("delete", "/evals/{eval_id}", "deleteEval", EvalDeleteResponse, None, None),
    ("post", "/evals/{eval_id}/runs", "createEvalRun", RunCreateResponse, None, run_create_params.RunCreateParams),
    ("get", "/evals/{eval_id}/runs", "getEvalRuns", RunListResponse, LIST, None),
    ("get", "/evals/{eval_id}/runs/{run_id}", "getEvalRun", RunRetrieveResponse, None, None),
    ("post", "/evals/{eval_id}/runs/{run_id}", "cancelEvalRun", RunCancelResponse, None, None),
    ("delete", "/evals/{eval_id}/runs/{run_id}", "deleteEvalRun", RunDeleteResponse, None, None),
    ("get", "/evals/{eval_id}/runs/{run_id}/output_items", "getEvalRunOutputItems", OutputItemListResponse, LIST, None),
    ("get", "/evals/{eval_id}/runs/{run_id}/output_items/{output_item_id}", "getEvalRunOutputItem",
     OutputItemRetrieveResponse, None, None),
]  # fmt: skip
PASSED_THROUGH = [
    ("post", "/chat/completions", "createChatCompletion"),
    ("post", "/completions", "createCompletion"),
    ("post", "/embeddings", "createEmbedding"),
]
"""Forwarded to vLLM as they come: only the operation is checked, not the body's schema."""
PATH_PARAMS_ONLY = {"eval_id", "run_id", "output_item_id", "file_id", "upload_id", "fine_tuning_job_id", "model"}


def generated() -> dict[str, Any]:
    return create_app(Settings()).openapi_schema.to_schema()


@pytest.fixture(scope="module", name="ours")
def fx_ours() -> dict[str, Any]:
    return json.loads(COMMITTED.read_text())


def resolve(doc: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = doc["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    return schema


def required_of(doc: dict[str, Any], schema: dict[str, Any]) -> set[str]:
    schema = resolve(doc, schema)
    fields = set(schema.get("required", []))
    for part in schema.get("allOf", []):
        fields |= required_of(doc, part)
    return fields


def sdk_required(model: type[BaseModel]) -> set[str]:
    """The fields the SDK's model cannot do without, by their wire names."""
    return {field.alias or name for name, field in model.model_fields.items() if field.is_required()}


def test_committed_document_is_current(ours: dict[str, Any]) -> None:
    assert generated() == ours, "openapi/openapi.json is stale: run `ftserve openapi -o openapi/openapi.json`"


@pytest.mark.parametrize(("method", "path", "operation_id", "model", "kind", "params"), OPERATIONS,
                         ids=[f"{m} {p}" for m, p, *_ in OPERATIONS])  # fmt: skip
def test_operation_matches_openai(
    ours: dict[str, Any], method: str, path: str, operation_id: str, model: Any, kind: str | None, params: Any
) -> None:
    ours_op = ours["paths"].get("/v1" + path, {}).get(method)
    assert ours_op is not None, f"{method.upper()} /v1{path} is missing"
    assert ours_op["operationId"] == operation_id

    declared = {p["name"] for p in ours_op.get("parameters", []) if p.get("in") == "path"}
    assert declared == set(re.findall(r"\{(\w+)\}", path))

    if model is not None:
        body = ours_op["responses"]["200"]["content"]["application/json"]["schema"]
        if kind == LIST:
            page = resolve(ours, body)
            assert {"object", "data"} <= required_of(ours, page), path
            body = page["properties"]["data"]["items"]
        missing = sdk_required(model) - required_of(ours, body)
        assert not missing, f"response of {method.upper()} {path} lacks required fields {missing}"

    if params is not None:
        content = ours_op["requestBody"]["content"]
        schema = resolve(ours, next(iter(content.values()))["schema"])
        if "properties" in schema:  # JSON bodies; multipart forms are parsed by hand and documented loosely
            missing = set(params.__required_keys__) - set(schema["properties"]) - PATH_PARAMS_ONLY
            assert not missing, f"request of {method.upper()} {path} does not accept {missing}"


@pytest.mark.parametrize(("method", "path", "operation_id"), PASSED_THROUGH)
def test_passed_through_operation_exists(ours: dict[str, Any], method: str, path: str, operation_id: str) -> None:
    assert ours["paths"]["/v1" + path][method]["operationId"] == operation_id


def test_every_error_is_documented_as_the_envelope(ours: dict[str, Any]) -> None:
    for path, item in ours["paths"].items():
        for method, op in item.items():
            for status in ("400", "401", "404"):
                schema = op["responses"][status]["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/ErrorResponse"}, (method, path, status)
    envelope = ours["components"]["schemas"]["ErrorDetail"]
    assert set(envelope["required"]) == {"message", "type", "param", "code"}
