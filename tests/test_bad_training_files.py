"""A corpus of bad training files: each fails with its own code, naming its line, and breaks nothing.

Most are refused at upload (400, nothing stored); the rest pass upload and fail the job in
`validating_files`: a line that suits some method (an RFT prompt without an assistant turn) is
stored, and refused only by a job whose method cannot train on it. The trainer reads every
file again before training and reports the same code and line, so a file stored before a rule
existed cannot crash a worker either.
"""

from __future__ import annotations

import json

import openai
import pytest

from service.storage import open_storage
from tests.conftest import Server
from tests.support import chat_jsonl, qa_jsonl, wait_for_job
from trainer.job import JobFailure, read_examples


def line(obj: object) -> bytes:
    return json.dumps(obj).encode() + b"\n"


def chat(*messages: dict) -> bytes:
    return line({"messages": list(messages)})


USER = {"role": "user", "content": "q"}
ASSISTANT = {"role": "assistant", "content": "a"}
PREFERENCE = line({
    "input": {"messages": [USER]},
    "preferred_output": [ASSISTANT],
    "non_preferred_output": [{"role": "assistant", "content": "b"}],
})  # fmt: skip

# (name, content, code, line): refused at upload.
REFUSED_AT_UPLOAD = [
    ("broken json", chat_jsonl(3) + b'{"messages": [}\n', "invalid_json", 4),
    ("not utf-8", chat_jsonl(1) + b"\xff\xfe\n", "invalid_encoding", 2),
    ("not an object", b"[1, 2]\n", "invalid_example", 1),
    ("no messages key", chat_jsonl(2) + line({"prompt": "x", "completion": "y"}), "missing_messages", 3),
    ("empty messages", line({"messages": []}), "missing_messages", 1),
    ("message not an object", chat("hello", ASSISTANT), "invalid_message", 1),
    ("unknown role", chat_jsonl(2) + chat({"role": "wizard", "content": "x"}, ASSISTANT), "invalid_role", 3),
    ("no content", chat({"role": "user"}, ASSISTANT), "missing_content", 1),
    ("content a number", chat({"role": "user", "content": 42}, ASSISTANT), "invalid_content", 1),
    ("weight 2", chat(USER, {**ASSISTANT, "weight": 2}), "invalid_weight", 1),
    ("weight on a user", chat({**USER, "weight": 1}, ASSISTANT), "invalid_weight", 1),
    ("input not an object", line({"input": "q", "preferred_output": [ASSISTANT]}), "invalid_input", 1),
    ("one preference output", line({"input": {"messages": [USER]}, "preferred_output": [ASSISTANT]}),
     "missing_preference_output", 1),
    ("only blank lines", b"\n  \n", "empty_file", None),
]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "content", "code", "line_number"), REFUSED_AT_UPLOAD, ids=[c[0] for c in REFUSED_AT_UPLOAD]
)
def test_refused_at_upload(
    server: Server, client: openai.OpenAI, name: str, content: bytes, code: str, line_number: int | None
) -> None:
    before = server.storage.list_keys("files/")
    with pytest.raises(openai.BadRequestError) as caught:
        client.files.create(file=("bad.jsonl", content), purpose="fine-tune")
    error = caught.value.body
    assert (error["code"], error["type"], error["param"]) == (code, "invalid_request_error", "file")
    if line_number is not None:
        assert error["message"].startswith(f"Invalid file format: line {line_number}:")
    assert server.storage.list_keys("files/") == before


# A line with no assistant turn is an RFT prompt: stored at upload, refused for a supervised job.
NO_ASSISTANT = ("no assistant", chat_jsonl(5) + chat(USER), "missing_assistant_message", 6)
CHECKED_BY_THE_TRAINER = [*REFUSED_AT_UPLOAD[:-1], NO_ASSISTANT]


@pytest.mark.parametrize(("name", "content", "code", "line_number"), CHECKED_BY_THE_TRAINER,
                         ids=[c[0] for c in CHECKED_BY_THE_TRAINER])  # fmt: skip
def test_the_trainer_checks_again(tmp_path, name: str, content: bytes, code: str, line_number: int) -> None:  # type: ignore[no-untyped-def]
    storage = open_storage(tmp_path.as_uri())
    storage.put_stream("bad", [content])
    with pytest.raises(JobFailure) as caught:
        read_examples(storage, "bad", "training_file")
    assert (caught.value.code, caught.value.param) == (code, "training_file")
    assert caught.value.message.startswith(f"Invalid file format: line {line_number}:")


# (name, content, method, code, line): stored, then the job fails while validating its files.
FAILED_AT_VALIDATION = [
    ("too few examples", chat_jsonl(3), "supervised", "invalid_n_examples", None),
    ("preference pairs for a supervised job", chat_jsonl(12) + PREFERENCE, "supervised", "invalid_example_format", 13),
    (NO_ASSISTANT[0], NO_ASSISTANT[1], "supervised", NO_ASSISTANT[2], NO_ASSISTANT[3]),
    ("a chat answer for a reinforcement job", chat(USER) * 3 + chat_jsonl(9), "reinforcement", "invalid_example_format",
     4),
]  # fmt: skip


@pytest.mark.parametrize(("name", "content", "method", "code", "line_number"), FAILED_AT_VALIDATION,
                         ids=[c[0] for c in FAILED_AT_VALIDATION])  # fmt: skip
def test_job_fails_in_validation(
    client: openai.OpenAI, name: str, content: bytes, method: str, code: str, line_number: int | None
) -> None:
    training = client.files.create(file=("t.jsonl", content), purpose="fine-tune")
    body: dict = {"type": method}
    if method == "reinforcement":
        body["reinforcement"] = {"grader": {"type": "string_check", "name": "g", "input": "{{sample.output_text}}",
                                            "reference": "yes", "operation": "eq"}}  # fmt: skip
    job = client.fine_tuning.jobs.create(model="tiny-chat", training_file=training.id, method=body)  # type: ignore[arg-type]
    job = wait_for_job(client, job.id)
    assert job.status == "failed"
    assert job.error is not None
    assert (job.error.code, job.error.param) == (code, "training_file")
    if line_number is not None:
        assert f"line {line_number}:" in job.error.message
    else:
        assert job.error.message == "Training file has 3 example(s), but must have at least 10 examples"
    assert job.finished_at is not None and job.fine_tuned_model is None
    events = client.fine_tuning.jobs.list_events(job.id).data
    assert events[0].level == "error" and events[0].message == job.error.message


def test_a_bad_validation_file_names_its_param(client: openai.OpenAI) -> None:
    training = client.files.create(file=("t.jsonl", qa_jsonl()), purpose="fine-tune")
    validation = client.files.create(file=("v.jsonl", chat_jsonl(2) + PREFERENCE), purpose="fine-tune")
    job = client.fine_tuning.jobs.create(model="tiny-chat", training_file=training.id, validation_file=validation.id)
    job = wait_for_job(client, job.id)
    assert job.status == "failed" and job.error is not None
    assert (job.error.code, job.error.param) == ("invalid_example_format", "validation_file")
    assert "line 3:" in job.error.message


def test_over_long_examples_are_truncated_with_a_warning(client: openai.OpenAI) -> None:
    long_answer = " ".join(f"word{i}" for i in range(1500))  # well past tiny-chat's 1024 tokens
    content = chat_jsonl(10) + chat(USER, {"role": "assistant", "content": long_answer})
    training = client.files.create(file=("t.jsonl", content), purpose="fine-tune")
    job = client.fine_tuning.jobs.create(model="tiny-chat", training_file=training.id,
                                         hyperparameters={"n_epochs": 1, "batch_size": 4})  # fmt: skip
    job = wait_for_job(client, job.id)
    assert job.status == "succeeded", job.error
    warnings = [e for e in client.fine_tuning.jobs.list_events(job.id, limit=100) if e.level == "warn"]
    assert [w.message for w in warnings] == ["1 training example(s) exceed 1024 tokens and were truncated at the end."]
