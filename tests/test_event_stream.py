"""`GET /v1/fine_tuning/jobs/{id}/events?stream=true`: a job's events as server-sent events.

Run on PostgreSQL, where commits can land out of the table-wide `seq` order while the API and a
worker write a job's events: the stream follows the per-job `job_seq` and so skips none.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import httpx
import openai
import pytest

from tests.conftest import Server, Stack, make_stack
from tests.sse import frames
from tests.support import all_events, chat_jsonl, wait_for_job


@pytest.fixture(scope="module", name="stack")
def fx_stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    stack = make_stack(request, "postgres-local", tmp_path_factory.mktemp("event-stream"),
                       FTSERVE_EVENT_STREAMS_PER_ORGANIZATION="2", FTSERVE_EVENT_STREAM_HEARTBEAT_S="0.3")  # fmt: skip
    try:
        yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="module", name="api")
def fx_api(stack: Stack) -> Server:
    return stack.start_api("--no-inference")


def stream(api: Server, job_id: str, last_event_id: str | None = None, key: str | None = None):  # type: ignore[no-untyped-def]
    headers = {"authorization": f"Bearer {key or api.key}"}
    if last_event_id is not None:
        headers["last-event-id"] = last_event_id
    url = f"{api.base_url}/fine_tuning/jobs/{job_id}/events"
    return httpx.stream("GET", url, params={"stream": "true"}, headers=headers, timeout=120)


def test_a_reconnect_with_last_event_id_resumes_without_gap_or_repeat(api: Server) -> None:
    client = api.client()
    training = client.files.create(file=("t.jsonl", chat_jsonl(40)), purpose="fine-tune")
    job = client.fine_tuning.jobs.create(model="tiny-chat", training_file=training.id,
                                         hyperparameters={"n_epochs": 3, "batch_size": 1})  # fmt: skip
    first: list[dict] = []
    with stream(api, job.id) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream"), response.read()[:500]
        for frame in frames(response):
            if "id" in frame:
                first.append(frame)
            # Leave while it trains: past a few metrics events, well before the job's end.
            if sum(1 for f in first if json.loads(f["data"])["type"] == "metrics") >= 5:
                break
    assert client.fine_tuning.jobs.retrieve(job.id).status == "running"
    second: list[dict] = []
    ended = None
    with stream(api, job.id, last_event_id=first[-1]["id"]) as response:
        for frame in frames(response):
            if "id" in frame:
                second.append(frame)
            elif frame.get("event") == "end":
                ended = json.loads(frame["data"])
    assert ended == {"status": "succeeded"}
    numbers = [int(f["id"]) for f in first + second]
    assert numbers == sorted(set(numbers)), "each event once, in order"
    assert int(second[0]["id"]) > int(first[-1]["id"])
    streamed = [json.loads(f["data"]) for f in first + second]
    listed = all_events(client, job.id)
    assert [e["id"] for e in streamed] == [e.id for e in listed]  # every event, none skipped
    assert streamed[-1]["message"] == "The job has successfully completed"
    assert wait_for_job(client, job.id).status == "succeeded"


def test_a_stream_of_a_quiet_job_sends_heartbeats_and_streams_are_bounded(api: Server) -> None:
    client = api.client()
    training = client.files.create(file=("t.jsonl", chat_jsonl(10)), purpose="fine-tune")
    job = client.fine_tuning.jobs.create(model="tiny-chat", training_file=training.id,
                                         hyperparameters={"n_epochs": 50, "batch_size": 1})  # fmt: skip
    wait_for_job(client, job.id, statuses=("queued", "running"))
    # `paused` is not among the SDK's statuses, so the pause goes through plain HTTP.
    auth = {"authorization": f"Bearer {api.key}"}
    httpx.post(f"{api.base_url}/fine_tuning/jobs/{job.id}/pause", headers=auth).raise_for_status()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        job_row = httpx.get(f"{api.base_url}/fine_tuning/jobs/{job.id}", headers=auth).json()
        if job_row["status"] == "paused" and job_row.get("estimated_finish") is None:
            break
        time.sleep(0.2)
    with stream(api, job.id) as one, stream(api, job.id) as two:
        assert one.status_code == two.status_code == 200
        with stream(api, job.id) as three:
            assert three.status_code == 429
            three.read()
            assert three.json()["error"]["code"] == "too_many_streams"
        comments = 0
        for frame in frames(one):
            comments += "comment" in frame
            if comments == 2:
                break
    # Both slots are free again once the streams closed.
    with stream(api, job.id) as again:
        assert again.status_code == 200
    httpx.post(f"{api.base_url}/fine_tuning/jobs/{job.id}/cancel", headers=auth).raise_for_status()
    with stream(api, job.id, last_event_id="0") as response:
        seen = list(frames(response))
    assert seen[-1] == {"event": "end", "data": '{"status": "cancelled"}'}
    assert [json.loads(f["data"])["message"] for f in seen if "id" in f][-1] == "Job cancelled"


def test_stream_errors_are_openai_envelopes(api: Server) -> None:
    client = api.client()
    training = client.files.create(file=("t.jsonl", chat_jsonl(10)), purpose="fine-tune")
    job = client.fine_tuning.jobs.create(model="tiny-chat", training_file=training.id)
    client.fine_tuning.jobs.cancel(job.id)
    with stream(api, job.id, last_event_id="abc") as response:
        response.read()
        assert response.status_code == 400
        assert response.json()["error"]["param"] == "Last-Event-ID"
    with stream(api, job.id, key=api.other_key) as response:
        response.read()
        assert response.status_code == 404  # another organisation's job
    with pytest.raises(openai.NotFoundError):
        api.client(api.other_key).fine_tuning.jobs.list_events(job.id)
