"""A user's whole fine-tuning flow with the official SDK, on every database and storage backend."""

from __future__ import annotations

import base64
import json
import tempfile
from pathlib import Path
from typing import Any

import openai
import pytest

from service.storage import download_tree
from tests import lm
from tests.conftest import Server
from tests.support import QA, all_events, qa_jsonl, wait_for_job

MEMORISE = {"n_epochs": 30, "batch_size": 2}


@pytest.fixture(scope="module", name="tiny_chat")
def fx_tiny_chat(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from trainer.tiny_model import ensure_tiny_chat

    return ensure_tiny_chat(tmp_path_factory.mktemp("models"))


def test_a_job_teaches_the_adapter_its_answers(server: Server, client: openai.OpenAI, tiny_chat: Path) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from service.adapters import base_fingerprint

    training = client.files.create(file=("qa.jsonl", qa_jsonl()), purpose="fine-tune")
    job = client.fine_tuning.jobs.create(
        model="tiny-chat",
        training_file=training.id,
        suffix="qa",
        seed=7,
        method={"type": "supervised", "supervised": {"hyperparameters": MEMORISE}},
        metadata={"team": "search"},
    )
    assert job.status == "validating_files"
    assert job.fine_tuned_model is None and job.trained_tokens is None and job.result_files == []

    job = wait_for_job(client, job.id)
    assert job.status == "succeeded", job.error
    assert job.fine_tuned_model == f"ft:tiny-chat:acme:qa:{job.id}"
    assert job.hyperparameters.n_epochs == 30 and job.hyperparameters.batch_size == 2
    assert job.hyperparameters.learning_rate_multiplier == 1.0
    assert job.method is not None and job.method.supervised is not None
    assert job.seed == 7 and job.metadata == {"team": "search"}
    assert job.trained_tokens and job.trained_tokens > 0
    assert job.finished_at is not None and job.finished_at >= job.created_at

    events = all_events(client, job.id)
    messages = [e.message for e in events]
    for expected in (
        "Validating training file",
        "Files validated, moving job to queued state",
        "Fine-tuning job started",
        f"New fine-tuned model created: {job.fine_tuned_model}",
        "The job has successfully completed",
    ):
        assert any(m.startswith(expected) for m in messages), (expected, messages)
    metrics = [e for e in events if e.type == "metrics"]
    assert metrics[0].message.startswith("Step 1/300: training loss=")
    assert metrics[-1].data["step"] == 300  # type: ignore[index]
    assert metrics[-1].data["train_loss"] < metrics[0].data["train_loss"] / 5  # type: ignore[index]
    for event in metrics:  # throughput in every report, and MFU against the configured nominal peak
        data: dict[str, Any] = event.data  # type: ignore[assignment]
        assert data["tokens_per_second"] > 0 and 0 < data["mfu"] < 1

    # Result file: OpenAI's CSV, base64-encoded as OpenAI serves it.
    result = client.files.retrieve(job.result_files[0])
    assert result.purpose == "fine-tune-results"
    csv = base64.b64decode(client.files.content(result.id).read()).decode().splitlines()
    assert csv[0] == "step,train_loss,train_accuracy,valid_loss,valid_mean_token_accuracy"
    assert len(csv) == 1 + 300 and csv[-1].startswith("300,")

    # The last three epoch checkpoints, newest first, each with its metrics.
    checkpoints = client.fine_tuning.jobs.checkpoints.list(job.id).data
    assert [c.step_number for c in checkpoints] == [300, 290, 280]
    assert checkpoints[0].fine_tuned_model_checkpoint == f"{job.fine_tuned_model}:ckpt-step-300"
    assert checkpoints[0].metrics.train_loss is not None

    # The stored adapter is a plain PEFT directory that reproduces the trained answers.
    prefix = f"jobs/{job.organization_id}/{job.id}/adapter/"
    with tempfile.TemporaryDirectory() as tmp:
        adapter = download_tree(server.storage, prefix, Path(tmp))
        assert {"adapter_config.json", "adapter_model.safetensors", "ftserve.json"} <= {
            p.name for p in adapter.iterdir()
        }
        marker = json.loads((adapter / "ftserve.json").read_text())
        assert marker["base_model"] == "tiny-chat"
        assert marker["fingerprint"] == base_fingerprint(tiny_chat)
        tokenizer = AutoTokenizer.from_pretrained(tiny_chat)
        base = AutoModelForCausalLM.from_pretrained(tiny_chat)
        questions = [q for q, _ in QA]
        before = lm.greedy_answers(base, tokenizer, questions)
        tuned = PeftModel.from_pretrained(base, adapter)
        after = lm.greedy_answers(tuned, tokenizer, questions)
    expected = [a for _, a in QA]
    assert after == expected
    assert sum(b == a for b, a in zip(before, expected, strict=True)) == 0


def test_a_validation_file_is_scored_each_epoch(client: openai.OpenAI) -> None:
    training = client.files.create(file=("t.jsonl", qa_jsonl(QA[:12])), purpose="fine-tune")
    validation = client.files.create(file=("v.jsonl", qa_jsonl(QA[12:])), purpose="fine-tune")
    job = client.fine_tuning.jobs.create(
        model="tiny-chat",
        training_file=training.id,
        validation_file=validation.id,
        hyperparameters={"n_epochs": 2, "batch_size": 4},
    )
    job = wait_for_job(client, job.id)
    assert job.status == "succeeded", job.error
    assert job.validation_file == validation.id
    scored = [e for e in all_events(client, job.id) if e.type == "metrics" and "valid_loss" in (e.data or {})]
    assert [e.data["step"] for e in scored] == [3, 6]  # type: ignore[index]
    assert "validation loss=" in scored[-1].message
    checkpoint = client.fine_tuning.jobs.checkpoints.list(job.id).data[0]
    assert checkpoint.metrics.valid_loss is not None and checkpoint.metrics.valid_mean_token_accuracy is not None


def test_a_dpo_job_trains_on_preference_pairs(client: openai.OpenAI) -> None:
    lines = [
        {
            "input": {"messages": [{"role": "user", "content": q}]},
            "preferred_output": [{"role": "assistant", "content": a}],
            "non_preferred_output": [{"role": "assistant", "content": QA[(i + 1) % len(QA)][1]}],
        }
        for i, (q, a) in enumerate(QA[:12])
    ]
    training = client.files.create(
        file=("pairs.jsonl", "".join(json.dumps(line) + "\n" for line in lines).encode()), purpose="fine-tune"
    )
    job = client.fine_tuning.jobs.create(
        model="tiny-chat",
        training_file=training.id,
        method={"type": "dpo", "dpo": {"hyperparameters": {"beta": 0.2, "n_epochs": 3, "batch_size": 4}}},
    )
    job = wait_for_job(client, job.id)
    assert job.status == "succeeded", job.error
    assert job.method is not None and job.method.type == "dpo" and job.method.dpo is not None
    hyperparameters = job.method.dpo.hyperparameters
    assert hyperparameters is not None
    assert (hyperparameters.beta, hyperparameters.n_epochs, hyperparameters.batch_size) == (0.2, 3, 4)
    assert hyperparameters.learning_rate_multiplier == 1.0  # "auto", resolved
    metrics = [e for e in all_events(client, job.id) if e.type == "metrics"]
    assert metrics[-1].data["step"] == 9  # type: ignore[index]
    assert {"train_loss", "train_reward_margin", "train_preference_accuracy"} <= metrics[-1].data.keys()  # type: ignore[union-attr]
    csv = base64.b64decode(client.files.content(job.result_files[0]).read()).decode().splitlines()
    assert len(csv) == 1 + 9 and csv[-1].split(",")[2] != ""  # train_accuracy: the preference accuracy
