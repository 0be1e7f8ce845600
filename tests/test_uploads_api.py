"""`/v1/uploads` end to end with the official SDK, on every database and storage backend."""

from __future__ import annotations

import hashlib

import httpx
import openai
import pytest
from openai.types import Upload

from tests.conftest import TEST_MAX_PART_BYTES, Server
from tests.support import chat_jsonl


def _split(data: bytes, parts: int) -> list[bytes]:
    size = -(-len(data) // parts)
    return [data[i : i + size] for i in range(0, len(data), size)]


def _upload(client: openai.OpenAI, data: bytes, *, purpose: str = "fine-tune") -> Upload:
    return client.uploads.create(bytes=len(data), filename="big.jsonl", mime_type="text/jsonl", purpose=purpose)


def test_upload_in_parts_becomes_a_file(server: Server, client: openai.OpenAI) -> None:
    data = chat_jsonl(3000)  # about 400 KB: more than one part of the test server's 256 KB limit
    chunks = _split(data, 4)
    upload = _upload(client, data)
    assert (upload.status, upload.object, upload.bytes) == ("pending", "upload", len(data))
    assert upload.expires_at > upload.created_at

    # Parts may arrive in any order; part_ids fixes the order of the bytes.
    part_ids = {i: client.uploads.parts.create(upload.id, data=chunk) for i, chunk in reversed(list(enumerate(chunks)))}
    assert all(p.object == "upload.part" and p.upload_id == upload.id for p in part_ids.values())
    done = client.uploads.complete(
        upload.id, part_ids=[part_ids[i].id for i in range(len(chunks))], md5=hashlib.md5(data).hexdigest()
    )

    assert done.status == "completed"
    assert done.file is not None
    assert (done.file.bytes, done.file.filename, done.file.purpose) == (len(data), "big.jsonl", "fine-tune")
    assert client.files.content(done.file.id).read() == data
    assert server.storage.list_keys(f"uploads/{upload.id}/") == []  # the parts are gone once joined
    with pytest.raises(openai.BadRequestError):  # completing twice
        client.uploads.complete(upload.id, part_ids=[part_ids[0].id])


def test_sdk_chunked_upload_helper(client: openai.OpenAI, tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "train.jsonl"
    path.write_bytes(chat_jsonl(1000))
    upload = client.uploads.upload_file_chunked(
        file=path, mime_type="text/jsonl", purpose="fine-tune", part_size=50_000
    )
    assert upload.status == "completed"
    assert client.files.content(upload.file.id).read() == path.read_bytes()


def test_md5_mismatch_creates_no_file(server: Server, client: openai.OpenAI) -> None:
    data = chat_jsonl(20)
    upload = _upload(client, data)
    parts = [client.uploads.parts.create(upload.id, data=c).id for c in _split(data, 3)]
    files_before = server.storage.list_keys("files/")
    with pytest.raises(openai.BadRequestError) as caught:
        client.uploads.complete(upload.id, part_ids=parts, md5="0" * 32)
    assert (caught.value.body["param"], caught.value.body["code"]) == ("md5", "md5_mismatch")
    assert server.storage.list_keys("files/") == files_before
    assert client.uploads.complete(upload.id, part_ids=parts).status == "completed"  # still pending, retry works


def test_invalid_jsonl_in_parts_is_refused_at_completion(server: Server, client: openai.OpenAI) -> None:
    data = chat_jsonl(10) + b'{"messages": "nope"}\n'
    upload = _upload(client, data)
    parts = [client.uploads.parts.create(upload.id, data=c).id for c in _split(data, 3)]
    files_before = server.storage.list_keys("files/")
    with pytest.raises(openai.BadRequestError) as caught:
        client.uploads.complete(upload.id, part_ids=parts)
    assert caught.value.body["code"] == "missing_messages"
    assert "line 11:" in caught.value.body["message"]
    assert server.storage.list_keys("files/") == files_before


def test_wrong_sizes_and_unknown_parts(client: openai.OpenAI) -> None:
    data = chat_jsonl(10)
    upload = _upload(client, data)
    first = client.uploads.parts.create(upload.id, data=data[:100]).id
    with pytest.raises(openai.BadRequestError) as caught:
        client.uploads.complete(upload.id, part_ids=[first])
    assert caught.value.body["param"] == "part_ids"
    with pytest.raises(openai.BadRequestError) as caught:
        client.uploads.complete(upload.id, part_ids=[first, "part_unknown"])
    assert "part_unknown" in caught.value.body["message"]
    with pytest.raises(openai.BadRequestError) as caught:
        client.uploads.parts.create(upload.id, data=data)  # would exceed the declared bytes
    assert caught.value.body["param"] == "data"

    with pytest.raises(openai.APIStatusError) as too_big:
        big = client.uploads.create(
            bytes=TEST_MAX_PART_BYTES * 2, filename="b", mime_type="text/jsonl", purpose="batch"
        )
        client.uploads.parts.create(big.id, data=b"x" * (TEST_MAX_PART_BYTES + 1))
    assert too_big.value.status_code == 413


def test_create_validates_its_fields(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.uploads.create(bytes=10, filename="x.png", mime_type="image/png", purpose="fine-tune")
    assert caught.value.body["param"] == "mime_type"
    with pytest.raises(openai.BadRequestError) as caught:
        client.uploads.create(bytes=10, filename="x", mime_type="text/jsonl", purpose="nonsense")  # type: ignore[arg-type]
    assert caught.value.body["param"] == "purpose"
    with pytest.raises(openai.BadRequestError) as caught:
        client.uploads.create(bytes=10**13, filename="x", mime_type="text/jsonl", purpose="fine-tune")
    assert caught.value.body["param"] == "bytes"
    response = httpx.post(
        f"{client.base_url}uploads",
        json={"filename": "x", "mime_type": "text/jsonl", "purpose": "fine-tune"},
        headers={"Authorization": f"Bearer {client.api_key}"},
    )
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "bytes"


def test_cancel(server: Server, client: openai.OpenAI) -> None:
    data = chat_jsonl(10)
    upload = _upload(client, data)
    part = client.uploads.parts.create(upload.id, data=data)
    assert server.storage.list_keys(f"uploads/{upload.id}/") != []
    cancelled = client.uploads.cancel(upload.id)
    assert cancelled.status == "cancelled"
    assert server.storage.list_keys(f"uploads/{upload.id}/") == []
    with pytest.raises(openai.BadRequestError):
        client.uploads.complete(upload.id, part_ids=[part.id])
    with pytest.raises(openai.BadRequestError):
        client.uploads.parts.create(upload.id, data=b"more")
    with pytest.raises(openai.BadRequestError):
        client.uploads.cancel(upload.id)


def test_uploads_are_isolated_between_tenants(client: openai.OpenAI, other_client: openai.OpenAI) -> None:
    data = chat_jsonl(10)
    upload = _upload(client, data)
    with pytest.raises(openai.NotFoundError):
        other_client.uploads.parts.create(upload.id, data=data)
    with pytest.raises(openai.NotFoundError):
        other_client.uploads.cancel(upload.id)
    part = client.uploads.parts.create(upload.id, data=data)
    with pytest.raises(openai.NotFoundError):
        other_client.uploads.complete(upload.id, part_ids=[part.id])
    assert client.uploads.complete(upload.id, part_ids=[part.id]).status == "completed"
