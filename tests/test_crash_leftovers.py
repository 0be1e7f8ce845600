"""`ftserve up` killed (SIGKILL) during concurrent uploads, several times: after a restart and a
sweep, the object store holds exactly the listed files' objects, no partial write or spooled body
is left, and every file the API confirmed reads back byte for byte. What it leaves on disk is
its user's alone (0700 dirs, 0600 files), and its private Redis answers only to its password.
"""

from __future__ import annotations

import contextlib
import os
import signal
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
import redis

from tests.conftest import Stack, make_stack

KILLS = 3
THREADS = 6
GRACE_S = 2
FILE_BYTES = 1_500_000
PART_BYTES = 200_000


def upload_until_refused(stack: Stack, confirmed: dict[str, bytes], uploads: list[str], stop: threading.Event) -> None:
    """Direct files and multipart Uploads, one after another, until the server stops answering."""
    client = stack.server.client(timeout=30)  # type: ignore[attr-defined]
    n = 0
    while not stop.is_set():
        data = os.urandom(FILE_BYTES)
        n += 1
        try:
            if n % 2:
                confirmed[client.files.create(file=("f.bin", data), purpose="batch").id] = data
                continue
            upload = client.uploads.create(bytes=4 * PART_BYTES, filename="u.bin", mime_type="application/octet-stream",
                                           purpose="batch")  # fmt: skip
            uploads.append(upload.id)
            parts = [client.uploads.parts.create(upload.id, data=data[i * PART_BYTES : (i + 1) * PART_BYTES]).id
                     for i in range(4)]  # fmt: skip
            done = client.uploads.complete(upload.id, part_ids=parts)
            assert done.file is not None
            confirmed[done.file.id] = data[: 4 * PART_BYTES]
        except (openai.APIConnectionError, openai.APITimeoutError, openai.InternalServerError):
            return  # the server was killed under this request


def stored_keys(stack: Stack) -> list[str]:
    return stack.storage.list_keys()


def leftovers(stack: Stack) -> list[Path]:
    partials = list((stack.data_dir / "objects").rglob(".partial-*"))
    spooled = list((stack.data_dir / "spool").glob("*"))
    return partials + spooled


@pytest.fixture(name="stack")
def fx_stack(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Stack]:
    stack = make_stack(request, "sqlite-local", tmp_path / "data", FTSERVE_ORPHAN_GRACE_S=str(GRACE_S),
                       FTSERVE_SWEEP_INTERVAL_S="1", FTSERVE_KEY_REQUEST_LIMIT="0")  # fmt: skip
    yield stack
    stack.stop()


def test_kills_during_uploads_leave_nothing_behind(stack: Stack) -> None:
    # As an older version left it: readable by every local user.
    stack.data_dir.chmod(0o755)
    (stack.data_dir / "ftserve.db").chmod(0o644)
    confirmed: dict[str, bytes] = {}
    uploads: list[str] = []
    left_behind = 0
    for _ in range(KILLS):
        stack.server = stack.start_api("--no-inference", "--workers", "0")  # type: ignore[attr-defined]
        stop = threading.Event()
        threads = [threading.Thread(target=upload_until_refused, args=(stack, confirmed, uploads, stop))
                   for _ in range(THREADS)]  # fmt: skip
        for thread in threads:
            thread.start()
        time.sleep(2.5)  # requests in every stage: bodies arriving, bytes stored, rows committing
        stack.procs[-1].send_signal(signal.SIGKILL)
        stack.procs[-1].wait()
        stop.set()
        for thread in threads:
            thread.join(60)
        left_behind = max(left_behind, len(leftovers(stack)))
    print(f"\n{len(confirmed)} files confirmed; up to {left_behind} partial or spooled files left by a kill")
    assert confirmed

    stack.server = stack.start_api("--no-inference", "--workers", "1")  # type: ignore[attr-defined]
    client = stack.server.client()  # type: ignore[attr-defined]
    for upload_id in uploads:  # what a client does with an Upload it could not finish
        with contextlib.suppress(openai.BadRequestError):  # completed, or cancelled already
            client.uploads.cancel(upload_id)
    listed = {f.id for f in client.files.list()}
    assert set(confirmed) <= listed
    print(f"after the restart: {len(stored_keys(stack)) - len(listed)} objects without a listed file, "
          f"{len(leftovers(stack))} partial or spooled files")  # fmt: skip
    time.sleep(GRACE_S + 0.5)
    deadline = time.monotonic() + 30  # a sweep runs every second once the grace has passed
    while time.monotonic() < deadline and (leftovers(stack) or len(stored_keys(stack)) != len(listed)):
        time.sleep(0.5)
    keys = stored_keys(stack)
    assert sorted(k.rsplit("/", 1)[-1] for k in keys) == sorted(listed), "objects without a listed file"
    assert all(k.startswith("files/") for k in keys)
    assert leftovers(stack) == []
    for file_id, data in confirmed.items():
        assert client.files.content(file_id).read() == data

    # Files and directories of the run: the data dir, the database, the logs, the store, Redis's.
    data_dir = stack.data_dir
    checked = [data_dir, *data_dir.glob("ftserve.db*"), *data_dir.glob("logs/*"), *data_dir.glob("redis/*"),
               data_dir / "redis.url", data_dir / "objects", data_dir / "spool"]  # fmt: skip
    assert (data_dir / "logs" / "worker-1.log") in checked and (data_dir / "redis" / "redis.log") in checked
    modes = {p.relative_to(data_dir.parent).as_posix(): oct(stat.S_IMODE(p.stat().st_mode)) for p in checked}
    print(modes)
    assert modes == {name: ("0o700" if (data_dir.parent / name).is_dir() else "0o600") for name in modes}
    for path in (data_dir / "objects").rglob("*"):
        assert stat.S_IMODE(path.stat().st_mode) == (0o700 if path.is_dir() else 0o600), path

    url = (data_dir / "redis.url").read_text().strip()
    bare = url.split("@", 1)[1]
    with pytest.raises(redis.AuthenticationError):
        redis.Redis.from_url(f"redis://{bare}").ping()
    assert redis.Redis.from_url(url).ping()
    httpx.get(f"{stack.server.base_url.removesuffix('/v1')}/health").raise_for_status()  # type: ignore[attr-defined]
