"""The committed OpenAPI document is current and matches OpenAI's contract for our endpoints."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from service.api.app import create_app
from service.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
COMMITTED = ROOT / "openapi" / "openapi.json"
REFERENCE = ROOT.parent / "shared" / "reference" / "openai-openapi.yaml"
OPERATIONS = [
    ("post", "/files"),
    ("get", "/files"),
    ("get", "/files/{file_id}"),
    ("delete", "/files/{file_id}"),
    ("get", "/files/{file_id}/content"),
    ("post", "/uploads"),
    ("post", "/uploads/{upload_id}/parts"),
    ("post", "/uploads/{upload_id}/complete"),
    ("post", "/uploads/{upload_id}/cancel"),
    ("post", "/fine_tuning/jobs"),
    ("get", "/fine_tuning/jobs"),
    ("get", "/fine_tuning/jobs/{fine_tuning_job_id}"),
    ("post", "/fine_tuning/jobs/{fine_tuning_job_id}/cancel"),
    ("post", "/fine_tuning/jobs/{fine_tuning_job_id}/pause"),
    ("post", "/fine_tuning/jobs/{fine_tuning_job_id}/resume"),
    ("get", "/fine_tuning/jobs/{fine_tuning_job_id}/events"),
    ("get", "/fine_tuning/jobs/{fine_tuning_job_id}/checkpoints"),
    ("get", "/models"),
    ("get", "/models/{model}"),
    ("delete", "/models/{model}"),
]
PASSED_THROUGH = [("post", "/chat/completions"), ("post", "/completions")]
"""Forwarded to vLLM as they come: only the operation is checked, not the body's schema."""


def generated() -> dict[str, Any]:
    return create_app(Settings()).openapi_schema.to_schema()


@pytest.fixture(scope="module", name="ours")
def fx_ours() -> dict[str, Any]:
    return json.loads(COMMITTED.read_text())


@pytest.fixture(scope="module", name="reference")
def fx_reference() -> dict[str, Any]:
    if not REFERENCE.exists():
        pytest.fail(f"the reference contract is missing: {REFERENCE}")
    return yaml.safe_load(REFERENCE.read_text())


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


def test_committed_document_is_current(ours: dict[str, Any]) -> None:
    assert generated() == ours, "openapi/openapi.json is stale: run `ftserve openapi -o openapi/openapi.json`"


@pytest.mark.parametrize(("method", "path"), OPERATIONS)
def test_operation_matches_openai(ours: dict[str, Any], reference: dict[str, Any], method: str, path: str) -> None:
    theirs_op = reference["paths"][path][method]
    ours_op = ours["paths"].get("/v1" + path, {}).get(method)
    assert ours_op is not None, f"{method.upper()} /v1{path} is missing"
    assert ours_op["operationId"] == theirs_op["operationId"]

    def path_params(op: dict[str, Any], item: dict[str, Any]) -> set[str]:
        params = op.get("parameters", []) + item.get("parameters", [])
        return {p["name"] for p in params if p.get("in") == "path"}

    assert path_params(ours_op, ours["paths"]["/v1" + path]) == path_params(theirs_op, reference["paths"][path])

    theirs_body = theirs_op["responses"]["200"]["content"]
    ours_body = ours_op["responses"]["200"].get("content") or {}
    for media, content in theirs_body.items():
        theirs_schema = resolve(reference, content["schema"])
        if theirs_schema.get("type") == "string":  # raw bytes (file content)
            continue
        ours_schema = ours_body[media]["schema"]
        missing = required_of(reference, theirs_schema) - required_of(ours, ours_schema)
        assert not missing, f"response of {method.upper()} {path} lacks required fields {missing}"

    if "requestBody" in theirs_op:
        for media, content in theirs_op["requestBody"]["content"].items():
            ours_request = ours_op["requestBody"]["content"][media]["schema"]
            missing = required_of(reference, content["schema"]) - set(resolve(ours, ours_request)["properties"])
            assert not missing, f"request of {method.upper()} {path} does not accept {missing}"


@pytest.mark.parametrize(("method", "path"), PASSED_THROUGH)
def test_passed_through_operation_exists(
    ours: dict[str, Any], reference: dict[str, Any], method: str, path: str
) -> None:
    assert ours["paths"]["/v1" + path][method]["operationId"] == reference["paths"][path][method]["operationId"]


def test_every_error_is_documented_as_the_envelope(ours: dict[str, Any]) -> None:
    for path, item in ours["paths"].items():
        for method, op in item.items():
            for status in ("400", "401", "404"):
                schema = op["responses"][status]["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/ErrorResponse"}, (method, path, status)
    envelope = ours["components"]["schemas"]["ErrorDetail"]
    assert set(envelope["required"]) == {"message", "type", "param", "code"}
