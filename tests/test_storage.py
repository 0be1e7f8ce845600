"""Both object storage backends behave alike: atomic writes, reads, deletes, listing."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from service.storage import ObjectNotFound, ObjectStorage, open_storage
from service.storage.s3 import PART_BYTES


@pytest.fixture(params=["local", "s3"], name="storage")
def fx_storage(request: pytest.FixtureRequest, tmp_path) -> ObjectStorage:  # type: ignore[no-untyped-def]
    if request.param == "local":
        return open_storage((tmp_path / "objects").as_uri())
    endpoint = request.getfixturevalue("seaweedfs")
    storage = open_storage(f"s3://ftserve-test/unit-{uuid.uuid4().hex[:8]}", endpoint_url=endpoint)
    storage.ensure_bucket()  # type: ignore[attr-defined]
    return storage


def test_round_trip_and_listing(storage: ObjectStorage) -> None:
    assert storage.put_stream("a/one", [b"hello ", b"", b"world"]) == 11
    assert storage.put_stream("a/two", []) == 0
    assert storage.put_stream("b/three", [b"x"]) == 1
    assert b"".join(storage.read_chunks("a/one")) == b"hello world"
    assert b"".join(storage.read_chunks("a/two")) == b""
    assert (storage.size("a/one"), storage.size("a/missing")) == (11, None)
    assert storage.list_keys("a/") == ["a/one", "a/two"]
    storage.delete_prefix("a/")
    assert storage.list_keys() == ["b/three"]
    storage.delete("b/three")
    storage.delete("b/three")  # deleting twice is fine
    assert storage.list_keys() == []


def test_missing_object_raises(storage: ObjectStorage) -> None:
    with pytest.raises(ObjectNotFound):
        b"".join(storage.read_chunks("nope"))


def test_large_object_streams_in_parts(storage: ObjectStorage) -> None:
    block = bytes(range(256)) * 4096
    chunks = [block] * (PART_BYTES * 2 // len(block) + 3)  # more than two multipart parts
    size = storage.put_stream("big", chunks)
    assert size == len(block) * len(chunks)
    assert storage.size("big") == size
    read = b"".join(storage.read_chunks("big", chunk_bytes=3 * 1024 * 1024))
    assert read == b"".join(chunks)


@pytest.mark.parametrize("fail_after_bytes", [1024, PART_BYTES + 1024])
def test_failed_stream_leaves_nothing(storage: ObjectStorage, fail_after_bytes: int) -> None:
    storage.put_stream("keep", [b"old"])

    def chunks() -> Iterator[bytes]:
        yield b"x" * fail_after_bytes
        raise RuntimeError("client went away")

    with pytest.raises(RuntimeError):
        storage.put_stream("broken", chunks())
    with pytest.raises(RuntimeError):
        storage.put_stream("keep", chunks())
    assert storage.size("broken") is None
    assert b"".join(storage.read_chunks("keep")) == b"old"  # an overwrite that failed changed nothing
    assert storage.list_keys() == ["keep"]


def test_local_keys_cannot_escape_the_root(tmp_path) -> None:  # type: ignore[no-untyped-def]
    storage = open_storage((tmp_path / "objects").as_uri())
    with pytest.raises(ValueError):
        storage.put_stream("../outside", [b"x"])
    assert not (tmp_path / "outside").exists()


def test_unknown_scheme_is_refused() -> None:
    with pytest.raises(ValueError, match="file:///dir or s3://bucket"):
        open_storage("ftp://example/x")
