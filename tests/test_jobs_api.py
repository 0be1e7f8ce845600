"""The jobs API's contract: state changes, refusals, idempotency, paging, metadata and tenants."""

from __future__ import annotations

import time

import openai
import pytest

from tests.conftest import Server
from tests.support import all_events, chat_jsonl, qa_jsonl, wait_for_event, wait_for_job

LONG = {"n_epochs": 50, "batch_size": 1}
"""100 examples, 50 epochs: minutes of steps, so a test can act on a job while it runs."""


def lax(server: Server, key: str | None = None) -> openai.OpenAI:
    """An SDK client as users build it: not strict, so the `paused` status (absent from the SDK's
    Literal, though OpenAI's own pause endpoint returns it) passes through."""
    return openai.OpenAI(base_url=server.base_url, api_key=key or server.key, max_retries=0)


def training_file(client: openai.OpenAI, n: int = 20) -> str:
    return client.files.create(file=("t.jsonl", chat_jsonl(n)), purpose="fine-tune").id


def started(client: openai.OpenAI, job_id: str) -> int:
    """Wait for the job's first metrics event; returns its step."""
    event = wait_for_event(client, job_id, lambda e: e.type == "metrics")
    return int(event.data["step"])  # type: ignore[index]


def metric_steps(client: openai.OpenAI, job_id: str) -> list[int]:
    return [int(e.data["step"]) for e in all_events(client, job_id) if e.type == "metrics"]  # type: ignore[index]


def test_cancel_stops_a_running_job_and_frees_the_worker(client: openai.OpenAI) -> None:
    file_id = training_file(client, 100)
    running = client.fine_tuning.jobs.create(model="tiny-chat", training_file=file_id, hyperparameters=LONG)
    started(client, running.id)
    waiting = client.fine_tuning.jobs.create(model="tiny-chat", training_file=file_id, hyperparameters=LONG)
    assert wait_for_job(client, waiting.id, ("queued",)).status == "queued"  # one worker: it waits

    cancelled = client.fine_tuning.jobs.cancel(waiting.id)
    assert cancelled.status == "cancelled" and cancelled.finished_at is not None
    cancelled = client.fine_tuning.jobs.cancel(running.id)
    assert cancelled.status == "cancelled"

    time.sleep(2.5)  # the worker reads the request within a second and stops between steps
    steps = metric_steps(client, running.id)
    time.sleep(1.5)
    assert metric_steps(client, running.id) == steps, "training went on after cancel"
    assert steps[-1] < 5000
    job = client.fine_tuning.jobs.retrieve(running.id)
    assert job.status == "cancelled" and job.fine_tuned_model is None and job.result_files == []
    assert "Fine-tuning job started" not in [e.message for e in all_events(client, waiting.id)]

    # The worker is free again: the next job runs to the end.
    quick = client.fine_tuning.jobs.create(model="tiny-chat", training_file=file_id, hyperparameters={"n_epochs": 1})
    assert wait_for_job(client, quick.id).status == "succeeded"

    # A repeated cancel (an SDK retrying after a timeout) answers the cancelled job.
    again = client.fine_tuning.jobs.cancel(running.id)
    assert again.status == "cancelled" and again.finished_at == job.finished_at
    with pytest.raises(openai.BadRequestError) as caught:
        client.fine_tuning.jobs.cancel(quick.id)
    assert caught.value.body["code"] == "invalid_job_state"
    assert caught.value.body["param"] == "fine_tuning_job_id"


def test_pause_saves_the_step_and_resume_continues_from_it(server: Server, client: openai.OpenAI) -> None:
    user = lax(server)
    job = client.fine_tuning.jobs.create(
        model="tiny-chat", training_file=training_file(client, 100), hyperparameters={"n_epochs": 20, "batch_size": 1}
    )
    started(client, job.id)
    paused = user.fine_tuning.jobs.pause(job.id)
    assert paused.status == "paused"
    event = wait_for_event(client, job.id, lambda e: e.message.startswith("Job paused at step"))
    saved = int(event.message.split("step ")[1].split("/")[0])
    assert 0 < saved < 2000
    assert user.fine_tuning.jobs.retrieve(job.id).status == "paused"
    time.sleep(1.5)
    assert max(metric_steps(client, job.id)) <= saved, "a paused job kept training"
    with pytest.raises(openai.BadRequestError):
        user.fine_tuning.jobs.pause(job.id)  # already paused

    resumed = user.fine_tuning.jobs.resume(job.id)
    assert resumed.status == "queued"
    wait_for_event(client, job.id, lambda e: e.type == "metrics" and e.data["step"] > saved)  # type: ignore[index]
    client.fine_tuning.jobs.cancel(job.id)  # the rest would only take time
    events = all_events(client, job.id)
    resumed_at = [e.message for e in events].index(f"Resuming from step {saved}")
    after = [int(e.data["step"]) for e in events[resumed_at:] if e.type == "metrics"]  # type: ignore[index]
    assert after[0] == saved + 1, "the resumed run did not continue from the saved step"
    with pytest.raises(openai.BadRequestError) as caught:
        user.fine_tuning.jobs.resume(job.id)  # cancelled jobs do not resume
    assert caught.value.body["code"] == "invalid_job_state"


def test_create_is_idempotent_with_a_key(server: Server, client: openai.OpenAI, other_client: openai.OpenAI) -> None:
    file_id = training_file(client, 3)  # fails validation at once: nothing to train
    headers = {"Idempotency-Key": f"retry-{server.label}-{time.time()}"}
    first = client.fine_tuning.jobs.create(model="tiny-chat", training_file=file_id, extra_headers=headers)
    again = client.fine_tuning.jobs.create(model="tiny-chat", training_file=file_id, extra_headers=headers)
    assert again.id == first.id
    other_file = training_file(other_client, 3)
    theirs = other_client.fine_tuning.jobs.create(model="tiny-chat", training_file=other_file, extra_headers=headers)
    assert theirs.id != first.id  # keys are per organisation
    without = client.fine_tuning.jobs.create(model="tiny-chat", training_file=file_id)
    assert without.id != first.id


def test_list_pages_newest_first_and_filters_by_metadata(server: Server, client: openai.OpenAI) -> None:
    file_id = training_file(client, 3)
    tag = f"{server.label}-{time.time()}"
    made = [
        client.fine_tuning.jobs.create(model="tiny-chat", training_file=file_id, metadata={"run": tag, "i": str(i)})
        for i in range(3)
    ]
    page = client.fine_tuning.jobs.list(limit=2, metadata={"run": tag})
    assert [j.id for j in page.data] == [made[2].id, made[1].id]
    assert page.has_more is True
    rest = client.fine_tuning.jobs.list(limit=2, after=page.data[-1].id, metadata={"run": tag})
    assert [j.id for j in rest.data] == [made[0].id] and rest.has_more is False
    followed = [j.id for j in client.fine_tuning.jobs.list(limit=1, metadata={"run": tag})]
    assert followed == [m.id for m in reversed(made)]  # the SDK follows `after` by itself
    only = client.fine_tuning.jobs.list(metadata={"run": tag, "i": "1"}).data
    assert [j.id for j in only] == [made[1].id]
    assert client.fine_tuning.jobs.list(metadata={"run": "nothing-has-this"}).data == []
    newest = client.fine_tuning.jobs.list(limit=1).data[0]
    assert newest.id == made[2].id


def test_events_page_newest_first(client: openai.OpenAI) -> None:
    job = client.fine_tuning.jobs.create(model="tiny-chat", training_file=training_file(client, 3))
    wait_for_job(client, job.id)
    first = client.fine_tuning.jobs.list_events(job.id, limit=2)
    assert first.has_more is True and len(first.data) == 2
    assert first.data[0].created_at >= first.data[1].created_at
    everything = list(client.fine_tuning.jobs.list_events(job.id, limit=1))
    assert [e.message for e in everything][-1] == f"Created fine-tuning job: {job.id}"
    assert [e.id for e in everything][:2] == [e.id for e in first.data]


def test_jobs_are_private_to_their_organisation(client: openai.OpenAI, other_client: openai.OpenAI) -> None:
    file_id = training_file(client, 3)
    job = client.fine_tuning.jobs.create(model="tiny-chat", training_file=file_id)
    for call in (
        lambda: other_client.fine_tuning.jobs.retrieve(job.id),
        lambda: other_client.fine_tuning.jobs.cancel(job.id),
        lambda: other_client.fine_tuning.jobs.list_events(job.id),
        lambda: other_client.fine_tuning.jobs.checkpoints.list(job.id),
    ):
        with pytest.raises(openai.NotFoundError) as caught:
            call()
        assert caught.value.body["message"] == f"No such FineTuningJob object: {job.id}"
    assert job.id not in [j.id for j in other_client.fine_tuning.jobs.list(limit=100)]
    with pytest.raises(openai.BadRequestError) as caught:
        other_client.fine_tuning.jobs.create(model="tiny-chat", training_file=file_id)
    assert (caught.value.body["param"], caught.value.body["code"]) == ("training_file", "file_not_found")


@pytest.mark.parametrize(
    ("changes", "param"),
    [
        ({"model": "gpt-9-ultra"}, "model"),
        ({"suffix": "x" * 65}, "suffix"),
        ({"suffix": "a:b"}, "suffix"),
        ({"seed": -1}, "seed"),
        ({"hyperparameters": {"n_epochs": 0}}, "hyperparameters.n_epochs"),
        ({"hyperparameters": {"batch_size": "big"}}, "hyperparameters.batch_size"),
        ({"method": {"type": "reinforcement"}}, "method.reinforcement.grader"),
        ({"method": {"type": "supervised"}, "hyperparameters": {"n_epochs": 2}}, "hyperparameters"),
        ({"metadata": {f"k{i}": "v" for i in range(17)}}, "metadata"),
        ({"training_file": "file-doesnotexist"}, "training_file"),
        ({"validation_file": "file-doesnotexist"}, "validation_file"),
        ({"integrations": [{"type": "slack"}]}, "integrations"),
    ],
)
def test_bad_requests_name_their_param(client: openai.OpenAI, changes: dict, param: str) -> None:
    body = {"model": "tiny-chat", "training_file": training_file(client, 10), **changes}
    before = len(client.fine_tuning.jobs.list(limit=1000).data)
    with pytest.raises(openai.BadRequestError) as caught:
        client.fine_tuning.jobs.create(**body)
    error = caught.value.body
    assert error["type"] == "invalid_request_error"
    assert error["param"] is not None and error["param"].startswith(param), error
    assert len(client.fine_tuning.jobs.list(limit=1000).data) == before  # nothing half-created


def test_a_file_for_another_purpose_is_refused(client: openai.OpenAI) -> None:
    batch = client.files.create(file=("b.jsonl", b'{"custom_id": "1"}\n'), purpose="batch")
    with pytest.raises(openai.BadRequestError) as caught:
        client.fine_tuning.jobs.create(model="tiny-chat", training_file=batch.id)
    assert caught.value.body["code"] == "invalid_file_purpose"


def test_auto_hyperparameters_are_resolved_from_the_data(client: openai.OpenAI) -> None:
    job = client.fine_tuning.jobs.create(
        model="tiny-chat", training_file=client.files.create(file=("q.jsonl", qa_jsonl()), purpose="fine-tune").id
    )
    assert job.hyperparameters.n_epochs == "auto"
    job = wait_for_job(client, job.id, ("queued", "running", "succeeded"))
    # tiny-chat's catalogue entry: 25 epochs, at least 300 steps (OpenAI's rule would give 5 for 20 examples)
    assert (job.hyperparameters.n_epochs, job.hyperparameters.batch_size) == (25, 1)
    assert job.hyperparameters.learning_rate_multiplier == 1.0
    assert wait_for_job(client, job.id).status == "succeeded"
