"""`/v1/files` end to end with the official SDK, on every database and storage backend."""

from __future__ import annotations

import json

import httpx
import openai
import pytest
from openai.types import FileDeleted, FileObject

from tests.conftest import TEST_MAX_FILE_BYTES, Server
from tests.support import chat_jsonl


def test_create_retrieve_content_delete(server: Server, client: openai.OpenAI) -> None:
    data = chat_jsonl(12)
    created = client.files.create(file=("train.jsonl", data), purpose="fine-tune")

    assert isinstance(created, FileObject)
    assert created.id.startswith("file-")
    assert (created.object, created.bytes, created.filename) == ("file", len(data), "train.jsonl")
    assert (created.purpose, created.status) == ("fine-tune", "processed")
    assert client.files.wait_for_processing(created.id, poll_interval=0.1).status == "processed"

    retrieved = client.files.retrieve(created.id)
    assert retrieved.model_dump() == created.model_dump()
    assert client.files.content(created.id).read() == data

    deleted = client.files.delete(created.id)
    assert isinstance(deleted, FileDeleted)
    assert (deleted.id, deleted.deleted) == (created.id, True)
    with pytest.raises(openai.NotFoundError) as caught:
        client.files.retrieve(created.id)
    assert caught.value.body == {
        "message": f"No such File object: {created.id}",
        "type": "invalid_request_error",
        "param": "id",
        "code": None,
    }
    with pytest.raises(openai.NotFoundError):
        client.files.content(created.id)
    assert not [k for k in server.storage.list_keys("files/") if k.endswith(created.id)]


def test_binary_content_is_byte_identical(client: openai.OpenAI) -> None:
    data = bytes(range(256)) * 4096  # 1 MiB, every byte value, several storage chunks
    created = client.files.create(file=("blob.bin", data), purpose="user_data")
    assert client.files.content(created.id).read() == data


def test_list_auto_paginates_in_creation_order(client: openai.OpenAI) -> None:
    ids = [client.files.create(file=(f"p{i}.jsonl", chat_jsonl(1, i)), purpose="batch").id for i in range(23)]

    newest_first = [f.id for f in client.files.list(purpose="batch", limit=5)]
    assert newest_first[:23] == ids[::-1]
    oldest_first = [f.id for f in client.files.list(purpose="batch", limit=7, order="asc")]
    assert oldest_first[-23:] == ids

    page = client.files.list(purpose="batch", limit=5)
    body = page.model_dump()
    assert body["has_more"] is True
    assert len(page.data) == 5
    raw = httpx.get(
        f"{client.base_url}files",
        params={"purpose": "batch", "limit": 5, "after": page.data[-1].id},
        headers={"Authorization": f"Bearer {client.api_key}"},
    ).json()
    assert raw["object"] == "list"
    assert raw["first_id"] == raw["data"][0]["id"] == ids[-6]
    assert raw["last_id"] == raw["data"][-1]["id"] == ids[-10]


def test_list_filters_by_purpose(client: openai.OpenAI) -> None:
    tagged = client.files.create(file=("v.png", b"\x89PNG fake"), purpose="vision")
    listed = list(client.files.list(purpose="vision"))
    assert tagged.id in [f.id for f in listed]
    assert {f.purpose for f in listed} == {"vision"}


def test_expires_after_sets_expires_at(client: openai.OpenAI) -> None:
    created = client.files.create(
        file=("e.jsonl", chat_jsonl(1)), purpose="fine-tune", expires_after={"anchor": "created_at", "seconds": 3600}
    )
    assert created.expires_at == created.created_at + 3600
    with pytest.raises(openai.BadRequestError) as caught:
        client.files.create(
            file=("e.jsonl", chat_jsonl(1)), purpose="fine-tune", expires_after={"anchor": "created_at", "seconds": 5}
        )
    assert caught.value.body["param"] == "expires_after.seconds"


def test_chat_tool_calls_and_preference_lines_are_accepted(client: openai.OpenAI) -> None:
    tool_line = {
        "messages": [
            {"role": "user", "content": "Weather in Paris?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "weather", "arguments": '{"city":"Paris"}'}}
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
            {"role": "assistant", "content": "Sunny.", "weight": 1},
        ],
        "tools": [{"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}],
    }
    preference_line = {
        "input": {"messages": [{"role": "user", "content": "Hi"}]},
        "preferred_output": [{"role": "assistant", "content": "Hello!"}],
        "non_preferred_output": [{"role": "assistant", "content": "Go away."}],
    }
    data = (json.dumps(tool_line) + "\n" + json.dumps(preference_line)).encode()  # no final newline
    assert client.files.create(file=("mixed.jsonl", data), purpose="fine-tune").bytes == len(data)


def test_bad_requests_get_openai_errors(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.files.create(file=("x.jsonl", chat_jsonl(1)), purpose="fine-tuning")  # type: ignore[arg-type]
    assert caught.value.body["param"] == "purpose"

    headers = {"Authorization": f"Bearer {client.api_key}"}
    missing_file = httpx.post(
        f"{client.base_url}files", data={"purpose": "fine-tune"}, files={"other": b"x"}, headers=headers
    )
    assert missing_file.status_code == 400
    assert missing_file.json()["error"]["param"] == "file"

    not_multipart = httpx.post(f"{client.base_url}files", json={"purpose": "fine-tune"}, headers=headers)
    assert not_multipart.status_code == 400
    assert set(not_multipart.json()["error"]) == {"message", "type", "param", "code"}

    bad_limit = httpx.get(f"{client.base_url}files", params={"limit": "0"}, headers=headers)
    assert bad_limit.status_code == 400
    assert bad_limit.json()["error"]["param"] == "limit"

    unknown_route = httpx.get(f"{client.base_url}nothing-here", headers=headers)
    assert unknown_route.status_code == 404
    assert unknown_route.json()["error"]["type"] == "invalid_request_error"
    assert unknown_route.headers["x-request-id"].startswith("req_")


def test_oversize_file_is_refused_and_leaves_nothing(server: Server, client: openai.OpenAI) -> None:
    before_rows = [f.id for f in client.files.list()]
    before_keys = server.storage.list_keys()
    big = chat_jsonl(1) * (TEST_MAX_FILE_BYTES // len(chat_jsonl(1)) + 10)
    with pytest.raises(openai.APIStatusError) as caught:
        client.files.create(file=("big.jsonl", big), purpose="fine-tune")
    assert caught.value.status_code == 413
    assert caught.value.body["code"] == "file_too_large"
    assert [f.id for f in client.files.list()] == before_rows
    assert server.storage.list_keys() == before_keys


def test_oversize_stream_without_length_is_refused(server: Server, client: openai.OpenAI) -> None:
    """A chunked body has no Content-Length to check up front: the limit applies while streaming."""
    before_keys = server.storage.list_keys()
    boundary = "ftserveboundary"

    def body():  # type: ignore[no-untyped-def]
        yield (
            f'--{boundary}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nuser_data\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="b.bin"\r\n\r\n'
        ).encode()
        for _ in range(TEST_MAX_FILE_BYTES // 65536 + 4):
            yield b"x" * 65536
        yield f"\r\n--{boundary}--\r\n".encode()

    response = httpx.post(
        f"{client.base_url}files",
        content=body(),
        headers={
            "Authorization": f"Bearer {client.api_key}",
            "Content-Type": f"multipart/form-data; boundary={boundary}",
        },
    )
    assert response.status_code == 413
    assert server.storage.list_keys() == before_keys


def test_authentication_is_required(server: Server) -> None:
    with pytest.raises(openai.AuthenticationError) as caught:
        server.client("sk-ft-not-a-real-key-at-all").files.list()
    assert caught.value.body["code"] == "invalid_api_key"
    response = httpx.get(f"{server.base_url}/files")
    assert response.status_code == 401
    assert response.json()["error"]["type"] == "authentication_error"


def test_tenants_are_isolated(client: openai.OpenAI, other_client: openai.OpenAI) -> None:
    mine = client.files.create(file=("mine.jsonl", chat_jsonl(3)), purpose="fine-tune")
    theirs = other_client.files.create(file=("theirs.jsonl", chat_jsonl(2)), purpose="fine-tune")

    for call in (other_client.files.retrieve, other_client.files.content, other_client.files.delete):
        with pytest.raises(openai.NotFoundError):
            call(mine.id)
    other_ids = {f.id for f in other_client.files.list()}
    assert mine.id not in other_ids
    assert theirs.id in other_ids
    assert theirs.id not in {f.id for f in client.files.list()}
    with pytest.raises(openai.NotFoundError):  # another tenant's id is no cursor either
        other_client.files.list(after=mine.id)
    assert client.files.retrieve(mine.id).id == mine.id  # untouched by the other tenant's delete
