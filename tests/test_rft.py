"""Reinforcement fine-tuning end to end: the official SDK against `ftserve up`, on tiny-chat.

The task (`tests.rft_task`): a model briefly SFT'd to answer "red" or "blue" for a thing earns
0.2 to 0.6 from a grader that wants one colour on nouns it never saw; an RFT job on other nouns
must raise that by at least 0.25, measured on the held-out nouns with the same grader before and
after (by sampling the model locally with fixed seeds: these tests run without an inference
server, which the Evals API's `completions` source needs).
"""

from __future__ import annotations

import base64
import json
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from service.storage import download_tree
from tests import rft_task
from tests.conftest import Server, Stack, make_stack
from tests.support import all_events, wait_for_event, wait_for_job

MODEL = "tiny-colours"
STRING_GRADER = {"type": "string_check", "name": "blue", "input": "{{sample.output_text}}",
                 "reference": "{{item.answer}}", "operation": "eq"}  # fmt: skip
PYTHON_GRADER = {
    "type": "python",
    "name": "blue",
    "source": (
        "def grade(sample, item):\n"
        "    if item.get('explode'):\n"
        "        raise RuntimeError('this item cannot be graded')\n"
        "    return 1.0 if sample['output_text'].strip() == item['answer'] else 0.0\n"
    ),
}
HYPERPARAMETERS = {"n_epochs": 2, "batch_size": 4, "eval_interval": 5, "eval_samples": 4}


@pytest.fixture(scope="module", name="stack")
def fx_stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    data_dir = tmp_path_factory.mktemp("rft")
    start = rft_task.build_start_model(data_dir / "start-model", data_dir / "models")
    entry = {"name": MODEL, "source": str(start), "serve": False, "learning_rate": rft_task.LEARNING_RATE,
             "max_seq_len": 256}  # fmt: skip
    (data_dir / "models.json").write_text(json.dumps({"models": [entry]}))
    # Four sandboxes at once, each with its own process limit (service.graders.sandbox).
    stack = make_stack(request, "sqlite-local", data_dir, FTSERVE_RFT_MAX_SAMPLE_TOKENS="8",
                       FTSERVE_RFT_GRADER_CONCURRENCY="4")  # fmt: skip
    try:
        yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="module", name="server")
def fx_server(stack: Stack) -> Server:
    return stack.start_api("--no-inference")


@pytest.fixture(name="client")
def fx_client(server: Server) -> openai.OpenAI:
    return server.client()


def upload(client: openai.OpenAI, lines: list[dict[str, Any]]) -> str:
    return client.files.create(file=("rft.jsonl", rft_task.jsonl(lines)), purpose="fine-tune").id


def create(client: openai.OpenAI, training: str, grader: dict[str, Any], validation: str | None = None,
           **hyperparameters: Any) -> Any:  # fmt: skip
    body = {"grader": grader, "hyperparameters": {**HYPERPARAMETERS, **hyperparameters}}
    method = {"type": "reinforcement", "reinforcement": body}
    return client.fine_tuning.jobs.create(model=MODEL, training_file=training, validation_file=validation, seed=1,
                                          method=method)  # type: ignore[arg-type]  # fmt: skip


def adapter_dir(server: Server, job_id: str, into: Path) -> Path:
    prefix = next(k for k in server.storage.list_keys("jobs/") if f"/{job_id}/adapter/" in k).rsplit("/", 1)[0]
    return download_tree(server.storage, prefix + "/", into)


def metrics(client: openai.OpenAI, job_id: str) -> list[dict[str, Any]]:
    return [e.data for e in all_events(client, job_id) if e.type == "metrics"]


def start_model(stack: Stack) -> Path:
    return stack.data_dir / "start-model"


def check_learned(stack: Stack, server: Server, client: openai.OpenAI, job: Any, grader: dict[str, Any],
                  answer: str) -> list[dict[str, Any]]:  # fmt: skip
    job = wait_for_job(client, job.id, timeout_s=300)
    assert job.status == "succeeded", job.error
    before = rft_task.held_out_reward(start_model(stack), None, grader, answer)
    with tempfile.TemporaryDirectory() as tmp:
        after = rft_task.held_out_reward(start_model(stack), adapter_dir(server, job.id, Path(tmp)), grader, answer)
    assert 0.2 <= before <= 0.6, before
    assert after >= before + 0.25, (before, after)
    rows = metrics(client, job.id)
    assert [r["step"] for r in rows] == list(range(1, 11))
    rewards = [r["train_reward_mean"] for r in rows]
    assert sum(rewards[-3:]) / 3 > sum(rewards[:3]) / 3 + 0.2, rewards
    assert all(0 <= r["kl"] < 3.0 for r in rows), [r["kl"] for r in rows]  # bounded
    assert all(r["sample_tokens_mean"] > 0 and "train_reward_std" in r for r in rows)
    return rows


def test_string_check_rft_raises_the_held_out_reward(stack: Stack, server: Server, client: openai.OpenAI) -> None:
    training = upload(client, rft_task.rft_lines(rft_task.RFT_NOUNS, "blue"))
    validation = upload(client, rft_task.rft_lines(rft_task.HELD_OUT, "blue"))
    job = create(client, training, STRING_GRADER, validation)
    assert job.method.type == "reinforcement" and job.hyperparameters.n_epochs == 2
    rows = check_learned(stack, server, client, job, STRING_GRADER, "blue")
    scored = [r for r in rows if "valid_reward_mean" in r]
    assert [r["step"] for r in scored] == [5, 10]
    assert scored[-1]["valid_reward_mean"] > 0.6
    job = client.fine_tuning.jobs.retrieve(job.id)
    csv = base64.b64decode(client.files.content(job.result_files[0]).read()).decode().splitlines()
    assert csv[0] == ("step,train_loss,train_accuracy,valid_loss,valid_mean_token_accuracy,train_reward_mean,"
                      "train_reward_std,valid_reward_mean,kl,sample_tokens_mean")  # fmt: skip
    assert len(csv) == 11


def test_python_rft_raises_the_reward_and_counts_the_samples_it_failed_on(
    stack: Stack, server: Server, client: openai.OpenAI
) -> None:
    lines = rft_task.rft_lines(rft_task.RFT_NOUNS, "blue")
    for line in lines[:2]:
        line["explode"] = True  # the grader raises on every sample of these two prompts
    job = create(client, upload(client, lines), PYTHON_GRADER, reasoning_effort="high")
    rows = check_learned(stack, server, client, job, PYTHON_GRADER, "blue")
    events = all_events(client, job.id)
    failed = [e for e in events if e.level == "warn" and "the grader failed on" in e.message]
    assert failed and "python_grader_runtime_error" in failed[0].message and "cannot be graded" in failed[0].message
    assert sum(r["grader_errors"] for r in rows) == 2 * 8 * 2  # two prompts, 8 samples, two epochs
    assert any(e.level == "warn" and "reasoning_effort='high' has no effect" in e.message for e in events)


@pytest.mark.parametrize(
    ("grader", "param"),
    [
        ({**STRING_GRADER, "operation": "equals"}, "method.reinforcement.grader.operation"),
        ({**STRING_GRADER, "reference": "{{answer}}"}, "method.reinforcement.grader.reference"),
        ({"type": "python", "name": "p", "source": "def grade(:"}, "method.reinforcement.grader.source"),
        ({"type": "label_model", "name": "l"}, "method.reinforcement.grader.type"),
        (
            {
                "type": "score_model",
                "name": "judge",
                "model": "no-such-model",
                "input": [{"role": "user", "content": "Rate {{sample.output_text}}"}],
            },
            "method.reinforcement.grader.model",
        ),
    ],
)
def test_a_bad_grader_is_a_400_naming_its_field(client: openai.OpenAI, grader: dict[str, Any], param: str) -> None:
    training = upload(client, rft_task.rft_lines(rft_task.RFT_NOUNS, "blue"))
    with pytest.raises(openai.BadRequestError) as caught:
        create(client, training, grader)
    assert (caught.value.body["type"], caught.value.body["param"]) == ("invalid_request_error", param)


def test_a_line_missing_a_field_the_grader_reads_fails_validation(client: openai.OpenAI) -> None:
    lines = rft_task.rft_lines(rft_task.RFT_NOUNS, "blue")
    del lines[6]["answer"]
    job = wait_for_job(client, create(client, upload(client, lines), STRING_GRADER).id)
    assert job.status == "failed" and job.error is not None
    assert (job.error.code, job.error.param) == ("missing_grader_field", "training_file")
    assert job.error.message.startswith("Invalid file format: line 7: the grader reads `{{item.answer}}`")


def lax(server: Server) -> openai.OpenAI:
    """A client that accepts `paused`, which the SDK's status type lacks."""
    return openai.OpenAI(base_url=server.base_url, api_key=server.key, max_retries=0)


def test_pause_resume_draws_the_same_samples_and_cancel_stops(server: Server, client: openai.OpenAI) -> None:
    training = upload(client, rft_task.rft_lines(rft_task.RFT_NOUNS, "blue"))
    straight = create(client, training, STRING_GRADER, n_epochs=6)
    assert wait_for_job(client, straight.id, timeout_s=300).status == "succeeded"

    paused = create(client, training, STRING_GRADER, n_epochs=6)
    wait_for_event(client, paused.id, lambda e: e.type == "metrics" and e.data["step"] >= 3)  # type: ignore[index]
    assert lax(server).fine_tuning.jobs.pause(paused.id).status == "paused"
    event = wait_for_event(client, paused.id, lambda e: e.message.startswith("Job paused at step"))
    saved = int(event.message.split("step ")[1].split("/")[0])
    assert 3 <= saved < 30
    lax(server).fine_tuning.jobs.resume(paused.id)
    assert wait_for_job(client, paused.id, timeout_s=300).status == "succeeded"
    assert f"Resuming from step {saved}" in [e.message for e in all_events(client, paused.id)]
    # The resumed run sampled exactly what the uninterrupted one did: the same rewards, step by step.
    reference = {r["step"]: r["train_reward_mean"] for r in metrics(client, straight.id)}
    resumed = {r["step"]: r["train_reward_mean"] for r in metrics(client, paused.id) if r["step"] > saved}
    assert resumed and all(abs(reference[s] - v) < 1e-6 for s, v in resumed.items()), (reference, resumed)

    cancelled = create(client, training, STRING_GRADER, n_epochs=6)
    wait_for_event(client, cancelled.id, lambda e: e.type == "metrics")
    assert client.fine_tuning.jobs.cancel(cancelled.id).status == "cancelled"
    time.sleep(1.5)
    last = max(r["step"] for r in metrics(client, cancelled.id))
    time.sleep(1.0)
    assert max(r["step"] for r in metrics(client, cancelled.id)) == last < 30
    assert client.fine_tuning.jobs.retrieve(cancelled.id).fine_tuned_model is None
