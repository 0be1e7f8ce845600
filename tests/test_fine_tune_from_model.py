"""A job whose `model` is a fine-tuned model or checkpoint continues from that adapter.

The trainer-level test checks DPO's reference when starting from a tuned model; the end-to-end
tests run `ftserve up` (no inference server) with the official SDK, download the adapters the
jobs stored and score them locally with the trainer's own code. Greedy answers are generated
with peft on the CPU (tiny-chat answers in milliseconds there; vLLM would add a minute's start).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
import torch
from transformers import AutoTokenizer

from service.catalog import load_catalog
from service.fine_tuning.layout import adapter_prefix
from service.settings import Settings
from service.storage import download_tree
from tests.conftest import Server, make_stack
from tests.support import QA, MetricsRecorder, all_events, qa_jsonl, wait_for_job
from tests.test_default_training import support_pairs
from trainer.data import tokenize_chat
from trainer.dpo import REFERENCE_ADAPTER, DPOObjective, tokenize_preference
from trainer.job import TRAINED_ADAPTER, JobSpec, base_model_path, download_source, load_source_weights
from trainer.loop import run
from trainer.sft import LoraSettings, SFTConfig, SFTObjective, load_lora_model
from trainer.tiny_model import ensure_tiny_chat

# --- DPO from a tuned model: the source, frozen, is the reference ---------------------------


def _source_adapter(tiny_chat: Path, out: Path) -> Path:
    """A small SFT adapter on QA, saved as a job saves it."""
    tokenizer = AutoTokenizer.from_pretrained(tiny_chat)
    examples = [tokenize_chat(tokenizer, json.loads(line), max_tokens=512) for line in qa_jsonl(QA[:8]).splitlines()]
    model = load_lora_model(tiny_chat, LoraSettings(r=4, alpha=8), seed=1)
    run(model, SFTConfig(n_epochs=4, batch_size=2, learning_rate=5e-3, seed=1), examples, MetricsRecorder(),
        SFTObjective(tokenizer.pad_token_id))  # fmt: skip
    model.save_pretrained(out)
    return out


def _preferences() -> list[dict[str, Any]]:
    return [
        {
            "input": {"messages": [{"role": "user", "content": q}]},
            "preferred_output": [{"role": "assistant", "content": a}],
            "non_preferred_output": [{"role": "assistant", "content": QA[(i + 3) % len(QA)][1]}],
        }
        for i, (q, a) in enumerate(QA[:8])
    ]


def test_dpo_from_a_tuned_model_measures_against_that_model(tmp_path: Path) -> None:
    tiny_chat = ensure_tiny_chat(tmp_path / "models")
    source = _source_adapter(tiny_chat, tmp_path / "source")
    tokenizer = AutoTokenizer.from_pretrained(tiny_chat)
    pairs = [tokenize_preference(tokenizer, line, max_tokens=512) for line in _preferences()]
    config = SFTConfig(n_epochs=2, batch_size=8, learning_rate=5e-3, seed=0)

    def first_and_last(reference: str | None) -> tuple[list[dict[str, float]], Any]:
        lora = LoraSettings(r=4, alpha=8)
        model = load_lora_model(tiny_chat, lora, seed=0)
        load_source_weights(model, source)
        if reference:
            model.load_adapter(str(source), adapter_name=REFERENCE_ADAPTER, is_trainable=False)
        recorder = MetricsRecorder()
        run(model, config, pairs, recorder, DPOObjective(tokenizer.pad_token_id, 0.1, reference_adapter=reference))
        return recorder.metrics, model

    metrics, model = first_and_last(REFERENCE_ADAPTER)
    # The policy starts as the reference: every margin is 0, the loss log 2.
    assert metrics[0]["train_reward_margin"] == pytest.approx(0.0, abs=1e-6)
    assert metrics[0]["train_loss"] == pytest.approx(math.log(2), rel=1e-6)
    assert metrics[-1]["train_reward_margin"] > 0.05  # and it still learns
    # The reference stayed frozen, and only the trained adapter is saved.
    from safetensors.torch import load_file

    saved = load_file(source / "adapter_model.safetensors")
    for name, param in model.named_parameters():
        if f".{REFERENCE_ADAPTER}." in name:
            assert not param.requires_grad
            key = name.replace(f".{REFERENCE_ADAPTER}.", ".")
            assert torch.equal(param.detach().cpu(), saved[key])
    model.save_pretrained(tmp_path / "out", selected_adapters=[TRAINED_ADAPTER])
    assert not (tmp_path / "out" / REFERENCE_ADAPTER).exists()
    # Against the bare base, the source's own preferences show up as a margin from the first step.
    base_metrics, _ = first_and_last(None)
    assert abs(base_metrics[0]["train_reward_margin"]) > 1e-3


def test_a_source_of_another_base_build_or_gone_fails_the_job(tmp_path: Path) -> None:
    from service.storage import open_storage
    from trainer.job import JobFailure

    tiny_chat = ensure_tiny_chat(tmp_path / "models")
    storage = open_storage((tmp_path / "objects").as_uri())
    source = _source_adapter(tiny_chat, tmp_path / "source")
    (source / "ftserve.json").write_text(json.dumps({"fingerprint": {"base": "another build"}}))
    for path in source.iterdir():
        storage.put_file(f"jobs/o/j/adapter/{path.name}", path)
    spec = JobSpec(job_id="k", base=None, fine_tuned_model="ft:x", seed=0, hyperparameters={},  # type: ignore[arg-type]
                   training_key="", validation_key=None, storage_prefix="", source_adapter="jobs/o/j/adapter/",
                   source_model="ft:tiny-chat:o::j")  # fmt: skip
    spec.base = load_catalog(Settings(data_dir=tmp_path)).resolve("tiny-chat")  # type: ignore[assignment]
    with pytest.raises(JobFailure, match="another build") as failure:
        download_source(spec, storage, tmp_path / "a", {"base": "this build"})
    assert failure.value.code == "model_not_available"
    lora = download_source(spec, storage, tmp_path / "b", {"base": "another build"})
    assert (lora.r, lora.alpha) == (4, 8)  # inherited from the source's adapter_config.json
    spec.source_adapter = "jobs/o/gone/adapter/"
    with pytest.raises(JobFailure, match="was deleted"):
        download_source(spec, storage, tmp_path / "c", {"base": "another build"})


# --- end to end, through the SDK ------------------------------------------------------------


@pytest.fixture(scope="module", name="api")
def fx_api(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    stack = make_stack(request, "sqlite-local", tmp_path_factory.mktemp("from-model"))
    try:
        yield stack.start_api("--no-inference")
    finally:
        stack.stop()


def _train(client: openai.OpenAI, model: str, file_id: str, suffix: str, **hyperparameters: Any) -> Any:
    method = {"type": "supervised", "supervised": {"hyperparameters": hyperparameters}} if hyperparameters else None
    job = client.fine_tuning.jobs.create(model=model, training_file=file_id, suffix=suffix,
                                         **({"method": method} if method else {}))  # fmt: skip
    job = wait_for_job(client, job.id, timeout_s=300)
    assert job.status == "succeeded", job.error
    return job


def _local_model(api: Server, job: Any, tmp: Path) -> tuple[Any, Any, Path]:
    """The job's stored adapter on the base model, loaded with the trainer's own code."""
    base = base_model_path(load_catalog(Settings()).resolve("tiny-chat"),  # type: ignore[arg-type]
                           Settings(data_dir=Path(api.env["FTSERVE_DATA_DIR"])))  # fmt: skip
    local = download_tree(api.storage, adapter_prefix(job.organization_id, job.id), tmp)
    config = json.loads((local / "adapter_config.json").read_text())
    model = load_lora_model(base, LoraSettings(config["r"], config["lora_alpha"], 0.0, config["target_modules"]),
                            seed=0)  # fmt: skip
    load_source_weights(model, local)
    return model, AutoTokenizer.from_pretrained(base), base


def greedy_answers(model: Any, tokenizer: Any, questions: list[str]) -> list[str]:
    """Greedy replies, long enough for every answer of `support_pairs`."""
    model.eval()
    answers = []
    for question in questions:
        prompt = tokenizer.apply_chat_template([{"role": "user", "content": question}], add_generation_prompt=True,
                                               return_tensors="pt", return_dict=True)  # fmt: skip
        out = model.generate(**prompt, max_new_tokens=64, do_sample=False, eos_token_id=tokenizer.eos_token_id,
                             pad_token_id=tokenizer.pad_token_id)  # fmt: skip
        answers.append(tokenizer.decode(out[0][prompt["input_ids"].shape[1] :], skip_special_tokens=True).strip())
    return answers


def test_a_job_on_a_tuned_model_starts_from_its_weights(api: Server, tmp_path: Path) -> None:
    client = api.client()
    pairs = support_pairs(10, seed=201)
    training = client.files.create(file=("facts.jsonl", qa_jsonl(pairs)), purpose="fine-tune")
    source = _train(client, "tiny-chat", training.id, "first", n_epochs=3, batch_size=1)
    # Trained again on the source's own file, the whole file as the first step's batch.
    job = _train(client, source.fine_tuned_model, training.id, "again", n_epochs=1, batch_size=10)
    assert job.model == source.fine_tuned_model
    assert job.fine_tuned_model == f"ft:tiny-chat:acme:again:{job.id}"
    messages = [e.message for e in all_events(client, job.id)]
    assert any(m.startswith(f"Fine-tuning from {source.fine_tuned_model}: starting from its adapter") for m in messages)
    first = next(e for e in all_events(client, job.id) if e.type == "metrics" and e.data["step"] == 1)

    model, tokenizer, base = _local_model(api, source, tmp_path / "source")
    examples = [tokenize_chat(tokenizer, json.loads(line), max_tokens=512) for line in qa_jsonl(pairs).splitlines()]
    objective = SFTObjective(tokenizer.pad_token_id)
    config = SFTConfig(n_epochs=1, batch_size=10, learning_rate=0.0, seed=0)
    source_loss = objective.step(model, examples, config, objective.normaliser(examples)).loss
    fresh = load_lora_model(base, LoraSettings(), seed=0)  # a new adapter computes the base model's loss
    base_loss = objective.step(fresh, examples, config, objective.normaliser(examples)).loss
    assert first.data["train_loss"] == pytest.approx(source_loss, rel=1e-4)
    assert abs(base_loss - source_loss) > 0.1 * base_loss


def test_a_job_on_a_tuned_model_keeps_old_facts_and_learns_new_ones(api: Server, tmp_path: Path) -> None:
    client = api.client()
    old, new = support_pairs(20, seed=301)[:10], support_pairs(20, seed=302)[10:]
    first = client.files.create(file=("old.jsonl", qa_jsonl(old)), purpose="fine-tune")
    source = _train(client, "tiny-chat", first.id, "old")
    both = client.files.create(file=("both.jsonl", qa_jsonl(old + new)), purpose="fine-tune")
    checkpoint = client.fine_tuning.jobs.checkpoints.list(source.id).data[0].fine_tuned_model_checkpoint
    job = _train(client, checkpoint, both.id, "both")  # a checkpoint id is a starting point too
    assert job.fine_tuned_model.startswith("ft:tiny-chat:acme:both:")

    model, tokenizer, _ = _local_model(api, job, tmp_path / "tuned")
    answers = greedy_answers(model, tokenizer, [q for q, _ in old + new])
    want = [a for _, a in old + new]
    right = [got == a for got, a in zip(answers, want, strict=True)]
    misses = [(a, got) for got, a in zip(answers, want, strict=True) if got != a]
    assert sum(right[:10]) >= 9 and sum(right[10:]) >= 9, json.dumps(misses)
    source_model, _, _ = _local_model(api, source, tmp_path / "source")
    assert sum(got == a for got, a in zip(greedy_answers(source_model, tokenizer, [q for q, _ in new]), want[10:],
                                           strict=True)) == 0  # fmt: skip


def test_a_model_the_organisation_may_not_use_is_refused_like_an_unknown_one(api: Server) -> None:
    client, other = api.client(), api.client(api.other_key)
    training = client.files.create(file=("qa.jsonl", qa_jsonl(QA[:10])), purpose="fine-tune")
    theirs = other.files.create(file=("qa.jsonl", qa_jsonl(QA[:10])), purpose="fine-tune")
    source = _train(client, "tiny-chat", training.id, "mine", n_epochs=1)

    def refusal(c: openai.OpenAI, model: str, file_id: str) -> dict[str, Any]:
        with pytest.raises(openai.BadRequestError) as err:
            c.fine_tuning.jobs.create(model=model, training_file=file_id)
        body = err.value.body
        assert isinstance(body, dict)
        return {**body, "message": body["message"].replace(model, "MODEL")}

    unknown = refusal(other, "ft:tiny-chat:acme::ftjob-doesnotexist", theirs.id)
    assert unknown["code"] == "model_not_available" and unknown["param"] == "model"
    assert refusal(other, source.fine_tuned_model, theirs.id) == unknown  # another organisation's
    assert refusal(other, "no-such-base", theirs.id) == unknown
    client.models.delete(source.fine_tuned_model)
    assert refusal(client, source.fine_tuned_model, training.id) == unknown  # deleted
