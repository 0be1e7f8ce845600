"""A reinforcement job survives its worker's SIGKILL: the next worker resumes from the checkpoint.

As in `test_job_recovery.py`, the API runs without workers (`ftserve up --workers 0`) against an
external Redis, with a 3 s lease, and the test starts and kills `ftserve worker` processes itself.
"""

from __future__ import annotations

import base64
import signal
from collections.abc import Iterator

import openai
import pytest
import redis

from tests import rft_task
from tests.conftest import Server, Stack, make_stack
from tests.support import all_events, wait_for_event, wait_for_job

REDIS_URL = "redis://127.0.0.1:6379/11"
# tiny-chat's answers hold an "e" now and then: rewards vary within groups, so samples can be told apart.
GRADER = {"type": "string_check", "name": "has_e", "input": "{{sample.output_text}}",
          "reference": "{{item.answer}}", "operation": "like"}  # fmt: skip
STEPS = 20  # 20 prompts, 4 a step: 5 steps an epoch, a checkpoint at the end of each


@pytest.fixture(scope="module", name="stack")
def fx_stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    redis.Redis.from_url(REDIS_URL).flushdb()
    stack = make_stack(request, "sqlite-local", tmp_path_factory.mktemp("rft-recovery"), REDIS_URL=REDIS_URL,
                       FTSERVE_LEASE_S="3", FTSERVE_RFT_MAX_SAMPLE_TOKENS="8")  # fmt: skip
    try:
        yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="module", name="api")
def fx_api(stack: Stack) -> Server:
    return stack.start_api("--workers", "0", "--no-inference")


def test_a_killed_rft_worker_is_resumed_from_its_checkpoint_drawing_the_same_samples(stack: Stack, api: Server) -> None:
    client = api.client()
    training = client.files.create(file=("rft.jsonl", rft_task.jsonl(rft_task.rft_lines(rft_task.RFT_NOUNS, "e"))),
                                   purpose="fine-tune")  # fmt: skip
    method = {"type": "reinforcement",
              "reinforcement": {"grader": GRADER, "hyperparameters": {"n_epochs": 4, "batch_size": 4}}}  # fmt: skip
    worker = stack.start_worker()
    job_id = client.fine_tuning.jobs.create(model="tiny-chat", training_file=training.id, seed=3,
                                            method=method).id  # type: ignore[arg-type]  # fmt: skip
    # Two steps past the first checkpoint (at the end of step 5), so that there is work to lose.
    wait_for_event(client, job_id, lambda e: e.type == "metrics" and e.data["step"] >= 7, timeout_s=180)  # type: ignore[index]
    worker.send_signal(signal.SIGKILL)
    worker.wait(timeout=60)
    before = rewards(client, job_id)  # what the killed worker drew, past its checkpoint too
    checkpoint = client.fine_tuning.jobs.checkpoints.list(job_id).data[0].step_number
    assert checkpoint < STEPS
    assert client.fine_tuning.jobs.retrieve(job_id).status == "running"  # nobody has noticed yet

    stack.start_worker()  # the lease lapses, the reconciler requeues, this worker resumes
    job = wait_for_job(client, job_id, timeout_s=300)
    assert job.status == "succeeded", job.error
    events = all_events(client, job_id)
    assert any("stopped responding" in e.message for e in events)
    assert [int(e.message.rsplit(" ", 1)[1]) for e in events if e.message.startswith("Resuming")] == [checkpoint]
    # Each step once in the result: the checkpoint's history, then the resumed run.
    csv = base64.b64decode(client.files.content(job.result_files[0]).read()).decode().splitlines()[1:]
    assert [int(line.split(",")[0]) for line in csv] == list(range(1, STEPS + 1))
    # The steps the killed worker ran past its checkpoint were run again, drawing the same samples;
    # their events were replaced, each step's metrics once.
    after = rewards(client, job_id)
    assert sorted(after) == list(range(1, STEPS + 1))
    redone = [step for step in before if step > checkpoint]
    assert redone and len({before[s] for s in before}) > 1, before  # rewards that tell samples apart
    assert [after[s] for s in before] == pytest.approx([before[s] for s in before], abs=1e-6)


def rewards(client: openai.OpenAI, job_id: str) -> dict[int, float]:
    """Each step's mean reward, from the job's metrics events."""
    found: dict[int, float] = {}
    for event in all_events(client, job_id):
        if event.type == "metrics":
            assert int(event.data["step"]) not in found  # type: ignore[index]
            found[int(event.data["step"])] = event.data["train_reward_mean"]  # type: ignore[index]
    return found
