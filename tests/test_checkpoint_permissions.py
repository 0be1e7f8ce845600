"""Checkpoint permissions with the official SDK against `ftserve up` (no inference server).

`project_ids` are organisation names. With no inference server running, a model the caller may
use answers a completion with 503 `model_not_served` (it was found and routed), and one it may
not use with 404 `model_not_found`: that difference is what "may call" means here.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from tests.conftest import BIN, Server, create_key, make_stack
from tests.support import QA, qa_jsonl, wait_for_job
from tests.test_openapi import LIST, required_of, resolve, sdk_required


@pytest.fixture(scope="module", name="api")
def fx_api(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    stack = make_stack(request, "sqlite-local", tmp_path_factory.mktemp("permissions"))
    stack.env["TEST_INITECH_KEY"] = create_key(stack.env, "initech")
    stack.env["TEST_ADMIN_KEY"] = _admin_key(stack.env, "acme")
    try:
        yield stack.start_api("--no-inference")
    finally:
        stack.stop()


def _admin_key(env: dict[str, str], org: str) -> str:
    out = subprocess.run([str(BIN / "ftserve"), "keys", "create", "--org", org, "--admin"], env=env,
                         capture_output=True, text=True, check=True)  # fmt: skip
    return out.stdout.strip().splitlines()[-1]


def _can_call(client: openai.OpenAI, model: str) -> bool:
    """True when the gateway routes the model (503: no inference server here), False on a 404."""
    try:
        client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}], max_tokens=1)
    except openai.InternalServerError as exc:
        assert exc.status_code == 503 and exc.code == "model_not_served"
        return True
    except openai.NotFoundError as exc:
        assert exc.code == "model_not_found"
        return False
    raise AssertionError("no inference server runs in this stack")


def _can_fine_tune(client: openai.OpenAI, model: str, file_id: str) -> bool:
    try:
        job = client.fine_tuning.jobs.create(model=model, training_file=file_id)
    except openai.BadRequestError as exc:
        assert exc.code == "model_not_available"
        return False
    client.fine_tuning.jobs.cancel(job.id)
    return True


def _access(client: openai.OpenAI, model: str, file_id: str) -> dict[str, Any]:
    listed = {m.id: m.owned_by for m in client.models.list()}
    return {"call": _can_call(client, model), "listed": listed.get(model),
            "fine_tune": _can_fine_tune(client, model, file_id)}  # fmt: skip


def test_grant_list_and_revoke(api: Server) -> None:
    owner, admin = api.client(), api.client(api.env["TEST_ADMIN_KEY"])
    globex, initech = api.client(api.other_key), api.client(api.env["TEST_INITECH_KEY"])
    training = owner.files.create(file=("qa.jsonl", qa_jsonl(QA[:10])), purpose="fine-tune")
    theirs = globex.files.create(file=("qa.jsonl", qa_jsonl(QA[:10])), purpose="fine-tune")
    job = owner.fine_tuning.jobs.create(model="tiny-chat", training_file=training.id, suffix="shared",
                                        method={"type": "supervised", "supervised": {"hyperparameters": {
                                            "n_epochs": 2, "batch_size": 5}}})  # fmt: skip
    job = wait_for_job(owner, job.id, timeout_s=300)
    assert job.status == "succeeded", job.error
    model = job.fine_tuned_model
    assert model is not None
    checkpoint = owner.fine_tuning.jobs.checkpoints.list(job.id).data[-1].fine_tuned_model_checkpoint
    permissions = admin.fine_tuning.checkpoints.permissions

    before = _access(globex, model, theirs.id)
    assert before == {"call": False, "listed": None, "fine_tune": False}

    # Only an admin key of the owner manages grants: OpenAI's 403 for a plain key.
    with pytest.raises(openai.PermissionDeniedError) as denied:
        owner.fine_tuning.checkpoints.permissions.create(model, project_ids=["globex"])
    assert denied.value.body["type"] == "permission_error"  # type: ignore[index]
    assert denied.value.code == "insufficient_permissions"
    with pytest.raises(openai.PermissionDeniedError):
        owner.fine_tuning.checkpoints.permissions.list(model)
    with pytest.raises(openai.BadRequestError) as unknown:
        permissions.create(model, project_ids=["no-such-org"])
    assert unknown.value.code == "invalid_project_id"
    with pytest.raises(openai.NotFoundError):  # not acme's model
        permissions.create("ft:tiny-chat:globex::ftjob-none", project_ids=["initech"])

    granted = permissions.create(model, project_ids=["globex", "initech"])
    assert [(p.object, p.project_id) for p in granted.data] == [("checkpoint.permission", "globex"),
                                                                ("checkpoint.permission", "initech")]  # fmt: skip
    assert all(p.id.startswith("cp_") for p in granted.data)
    assert permissions.create(model, project_ids=["globex"]).data[0].id == granted.data[0].id  # granted once
    on_checkpoint = permissions.create(checkpoint, project_ids=["globex"]).data[0]

    during = _access(globex, model, theirs.id)
    assert during == {"call": True, "listed": "acme", "fine_tune": True}
    assert globex.models.retrieve(model).owned_by == "acme"
    assert _can_call(globex, checkpoint) and _can_call(initech, model)
    with pytest.raises(openai.PermissionDeniedError):  # shared is not owned
        globex.models.delete(model)

    # Paged (one per page, followed by the SDK), ordered, filtered by project.
    paged = [p.id for p in permissions.list(model, limit=1)]
    assert paged == [granted.data[1].id, granted.data[0].id]  # newest first by default
    first = permissions.list(model, limit=1)
    assert first.has_more and first.last_id == granted.data[1].id
    assert [p.id for p in permissions.list(model, order="ascending")] == [granted.data[0].id, granted.data[1].id]
    assert [p.project_id for p in permissions.list(model, project_id="initech").data] == ["initech"]
    assert permissions.list(model, project_id="nobody").data == []
    assert [p.id for p in permissions.list(checkpoint).data] == [on_checkpoint.id]

    # A job of globex on the shared model trains from it and is globex's own.
    shared_job = globex.fine_tuning.jobs.create(model=model, training_file=theirs.id, method={
        "type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 1, "batch_size": 5}}})  # fmt: skip
    shared_job = wait_for_job(globex, shared_job.id, timeout_s=300)
    assert shared_job.status == "succeeded", shared_job.error
    assert shared_job.fine_tuned_model == f"ft:tiny-chat:globex::{shared_job.id}"

    # Revoke: the lookup globex made a moment ago is cached, and must not outlive the revocation.
    assert _can_call(globex, model)
    deleted = permissions.delete(granted.data[0].id, fine_tuned_model_checkpoint=model)
    assert (deleted.id, deleted.object, deleted.deleted) == (granted.data[0].id, "checkpoint.permission", True)
    assert _access(globex, model, theirs.id) == before
    assert _can_call(initech, model)  # the other grants stand
    assert _can_call(globex, checkpoint)
    assert _can_call(globex, shared_job.fine_tuned_model)  # what globex trained stays its own
    with pytest.raises(openai.NotFoundError):
        permissions.delete(granted.data[0].id, fine_tuned_model_checkpoint=model)
    assert [p.project_id for p in permissions.list(model).data] == ["initech"]

    # Deleting the model ends every grant's access too.
    owner.models.delete(model)
    assert not _can_call(initech, model)
    assert model not in {m.id for m in initech.models.list()}


def test_permission_operations_match_openai() -> None:
    import json
    import re

    from openai.types.fine_tuning.checkpoints import (
        PermissionCreateResponse,
        PermissionDeleteResponse,
        PermissionListResponse,
        permission_create_params,
    )

    from tests.test_openapi import COMMITTED

    ours = json.loads(COMMITTED.read_text())
    path = "/v1/fine_tuning/checkpoints/{fine_tuned_model_checkpoint}/permissions"
    operations = [
        ("post", path, "createFineTuningCheckpointPermission", PermissionCreateResponse, LIST,
         permission_create_params.PermissionCreateParams),
        ("get", path, "listFineTuningCheckpointPermissions", PermissionListResponse, LIST, None),
        ("delete", path + "/{permission_id}", "deleteFineTuningCheckpointPermission", PermissionDeleteResponse,
         None, None),
    ]  # fmt: skip
    for method, route, operation_id, model, kind, params in operations:
        op = ours["paths"][route][method]
        assert op["operationId"] == operation_id
        assert {p["name"] for p in op["parameters"] if p["in"] == "path"} == set(re.findall(r"\{(\w+)\}", route))
        body = op["responses"]["200"]["content"]["application/json"]["schema"]
        if kind == LIST:
            page = resolve(ours, body)
            assert {"object", "data", "has_more"} <= required_of(ours, page)
            body = page["properties"]["data"]["items"]
        assert not sdk_required(model) - required_of(ours, body), route
        assert op["responses"]["403"]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/ErrorResponse"
        }
        if params is not None:
            schema = resolve(ours, op["requestBody"]["content"]["application/json"]["schema"])
            assert set(params.__required_keys__) <= set(schema["properties"])
    listing = {p["name"]: p for p in ours["paths"][path]["get"]["parameters"] if p["in"] == "query"}
    assert {"project_id", "after", "limit", "order"} <= set(listing)
    assert listing["limit"]["schema"].get("default") == 10
