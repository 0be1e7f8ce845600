"""The trainer's torch core on the locally built `tiny-chat`: real LoRA steps, no mocks."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import AutoTokenizer

from tests import lm
from tests.support import QA
from trainer.data import IGNORE_INDEX, tokenize_chat
from trainer.sft import SFTConfig, StopRequest, load_lora_model, train
from trainer.tiny_model import build_tiny_chat, ensure_tiny_chat

MEMORISE = {"n_epochs": 30, "batch_size": 2, "learning_rate": 5e-3}


@pytest.fixture(scope="session", name="tiny_chat")
def fx_tiny_chat(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return ensure_tiny_chat(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="session", name="tokenizer")
def fx_tokenizer(tiny_chat: Path) -> Any:
    return AutoTokenizer.from_pretrained(tiny_chat)


class Recorder:
    """Callbacks that record what the trainer reports and can ask it to stop at a given step."""

    def __init__(self, stop_at: int | None = None, request: StopRequest = "pause") -> None:
        self.metrics: list[tuple[int, dict[str, float]]] = []
        self.epochs: list[int] = []
        self.stop_at = stop_at
        self.request = request
        self.saved: dict[str, Any] | None = None

    def on_metrics(self, step: int, total_steps: int, metrics: dict[str, float]) -> None:
        self.metrics.append((step, metrics))

    def on_epoch_end(self, epoch: int, step: int, total_steps: int, save: Any, metrics: dict[str, float]) -> None:
        self.epochs.append(epoch)

    def should_stop(self, step: int) -> StopRequest:
        return self.request if self.stop_at is not None and step >= self.stop_at else None

    def on_stop(self, request: StopRequest, step: int, save_state: Any) -> None:
        self.saved = copy.deepcopy(save_state())


def qa_examples(tokenizer: Any) -> list[Any]:
    return [
        tokenize_chat(
            tokenizer,
            {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]},
            max_tokens=256,
        )
        for q, a in QA
    ]


def greedy_answers(model: Any, tokenizer: Any) -> list[str]:
    return lm.greedy_answers(model, tokenizer, [q for q, _ in QA])


def lora_weights(model: Any) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.named_parameters() if "lora_" in k}


def test_tiny_chat_is_built_deterministically(tmp_path: Path, tiny_chat: Path) -> None:
    again = build_tiny_chat(tmp_path / "again")
    assert (again / "tokenizer.json").read_bytes() == (tiny_chat / "tokenizer.json").read_bytes()
    assert (again / "model.safetensors").read_bytes() == (tiny_chat / "model.safetensors").read_bytes()


def test_loss_only_on_weighted_assistant_tokens(tokenizer: Any) -> None:
    example = {
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "first?"},
            {"role": "assistant", "content": "skip me", "weight": 0},
            {"role": "user", "content": "second?"},
            {"role": "assistant", "content": "learn me"},
        ]
    }
    tokenized = tokenize_chat(tokenizer, example, max_tokens=512)
    learned = [t for t, label in zip(tokenized.input_ids, tokenized.labels, strict=True) if label != IGNORE_INDEX]
    assert tokenizer.decode(learned) == "learn me<|im_end|>\n"
    full = tokenizer.decode(tokenized.input_ids)
    assert "skip me" in full and "second?" in full  # context stays, only its loss is off


def test_tool_calls_render_through_the_template(tokenizer: Any) -> None:
    example = {
        "messages": [
            {"role": "user", "content": "weather in paris?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "weather", "arguments": '{"city": "paris"}'}}
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
            {"role": "assistant", "content": "It is sunny."},
        ]
    }
    tokenized = tokenize_chat(tokenizer, example, max_tokens=512)
    learned = tokenizer.decode(
        [t for t, lab in zip(tokenized.input_ids, tokenized.labels, strict=True) if lab != IGNORE_INDEX]
    )
    assert '<tool_call>weather {"city": "paris"}</tool_call>' in learned
    assert "It is sunny." in learned
    assert "sunny<|im_end|>" not in learned.replace("It is sunny.<|im_end|>", "")  # the tool's reply is context


def test_examples_are_held_as_int32_arrays(tokenizer: Any) -> None:
    example = {"messages": [{"role": "user", "content": "x " * 40}, {"role": "assistant", "content": "y"}]}
    tokenized = tokenize_chat(tokenizer, example, max_tokens=256)
    n = len(tokenized.input_ids)
    assert tokenized.input_ids.nbytes == tokenized.labels.nbytes == 4 * n  # not Python lists of ints


def test_long_examples_are_truncated(tokenizer: Any) -> None:
    example = {"messages": [{"role": "user", "content": "x " * 400}, {"role": "assistant", "content": "y"}]}
    tokenized = tokenize_chat(tokenizer, example, max_tokens=64)
    assert tokenized.truncated
    assert len(tokenized.input_ids) == len(tokenized.labels) == 64


def test_lora_training_memorises_the_answers(tiny_chat: Path, tokenizer: Any) -> None:
    model = load_lora_model(tiny_chat, SFTConfig(**MEMORISE, seed=0).lora, seed=0)
    base_before = {k: v.detach().clone() for k, v in model.named_parameters() if "lora_" not in k}
    with model.disable_adapter():
        base_answers = greedy_answers(model, tokenizer)
    recorder = Recorder()

    result = train(
        model, SFTConfig(**MEMORISE, seed=0), qa_examples(tokenizer), recorder, pad_id=tokenizer.pad_token_id
    )

    expected = [a for _, a in QA]
    assert greedy_answers(model, tokenizer) == expected
    assert sum(a == e for a, e in zip(base_answers, expected, strict=True)) == 0
    losses = [m["train_loss"] for _, m in recorder.metrics]
    assert losses[-1] < losses[0] / 20
    assert result.steps == 300 and recorder.epochs == list(range(1, 31))
    assert result.trained_tokens > 0
    for name, tensor in model.named_parameters():  # only the adapter learned
        if "lora_" not in name:
            assert torch.equal(tensor, base_before[name]), name


def test_paused_run_resumes_exactly_where_it_stopped(tiny_chat: Path, tokenizer: Any) -> None:
    config = SFTConfig(n_epochs=3, batch_size=3, learning_rate=5e-3, seed=11)
    examples = qa_examples(tokenizer)

    straight = load_lora_model(tiny_chat, config.lora, seed=config.seed)
    train(straight, config, examples, Recorder(), pad_id=tokenizer.pad_token_id)

    paused = load_lora_model(tiny_chat, config.lora, seed=config.seed)
    recorder = Recorder(stop_at=10)
    result = train(paused, config, examples, recorder, pad_id=tokenizer.pad_token_id)
    assert result.stopped == "pause" and result.steps == 10
    assert recorder.saved is not None and recorder.saved["step"] == 10

    resumed = load_lora_model(tiny_chat, config.lora, seed=config.seed)
    resumed.load_state_dict(lora_weights(paused), strict=False)
    continued = Recorder()
    final = train(resumed, config, examples, continued, pad_id=tokenizer.pad_token_id, resume_state=recorder.saved)

    assert final.steps == 21 and continued.metrics[0][0] == 11  # continues at step 11, not step 1
    for name, tensor in lora_weights(straight).items():
        torch.testing.assert_close(lora_weights(resumed)[name], tensor, rtol=1e-5, atol=1e-6)


def test_cancel_stops_between_steps(tiny_chat: Path, tokenizer: Any) -> None:
    config = SFTConfig(n_epochs=5, batch_size=2, learning_rate=5e-3, seed=0)
    model = load_lora_model(tiny_chat, config.lora, seed=0)
    result = train(
        model, config, qa_examples(tokenizer), Recorder(stop_at=3, request="cancel"), pad_id=tokenizer.pad_token_id
    )
    assert (result.stopped, result.steps) == ("cancel", 3)


def test_same_seed_same_adapter(tiny_chat: Path, tokenizer: Any) -> None:
    config = SFTConfig(n_epochs=1, batch_size=4, learning_rate=5e-3, seed=3)
    runs = []
    for _ in range(2):
        model = load_lora_model(tiny_chat, config.lora, seed=config.seed)
        train(model, config, qa_examples(tokenizer), Recorder(), pad_id=tokenizer.pad_token_id)
        runs.append(lora_weights(model))
    for name in runs[0]:
        assert torch.equal(runs[0][name], runs[1][name])


def test_gradient_checkpointing_trains_the_same_adapter(tiny_chat: Path, tokenizer: Any) -> None:
    config = SFTConfig(n_epochs=1, batch_size=4, learning_rate=5e-3, seed=5)
    runs = []
    for checkpointing in (False, True):
        model = load_lora_model(tiny_chat, config.lora, seed=config.seed, gradient_checkpointing=checkpointing)
        assert model.get_base_model().is_gradient_checkpointing == checkpointing
        train(model, config, qa_examples(tokenizer), Recorder(), pad_id=tokenizer.pad_token_id)
        runs.append(lora_weights(model))
    for name, tensor in runs[0].items():
        torch.testing.assert_close(runs[1][name], tensor, rtol=1e-5, atol=1e-6)


def test_flop_count_matches_what_torch_counts(tiny_chat: Path, tokenizer: Any) -> None:
    from torch.utils.flop_counter import FlopCounterMode

    from trainer.sft import SFTObjective
    from trainer.throughput import ModelFlops

    config = SFTConfig(n_epochs=1, batch_size=8, learning_rate=5e-3, seed=0)
    model = load_lora_model(tiny_chat, config.lora, seed=0)
    objective, items = SFTObjective(tokenizer.pad_token_id), qa_examples(tokenizer)[:8]
    with FlopCounterMode(display=False) as counted:
        outcome = objective.step(model, items, config, objective.normaliser(items))
    estimate = ModelFlops.of(model).training(outcome.processed_tokens, outcome.trained_tokens)
    # Within 10%: the estimate leaves out attention scores and the adapter's weight gradients, and
    # counts input gradients that autograd skips in the first layer (its input needs none).
    assert abs(estimate / counted.get_total_flops() - 1) < 0.1


def test_metrics_carry_tokens_per_second_and_mfu(tiny_chat: Path, tokenizer: Any) -> None:
    config = SFTConfig(n_epochs=1, batch_size=4, learning_rate=5e-3, seed=0, peak_flops=1e12)
    model = load_lora_model(tiny_chat, config.lora, seed=0)
    recorder = Recorder()
    train(model, config, qa_examples(tokenizer), recorder, pad_id=tokenizer.pad_token_id)
    assert recorder.metrics and all(m["tokens_per_second"] > 0 and 0 < m["mfu"] < 1 for _, m in recorder.metrics)
    unknown = Recorder()  # no peak known (a CPU, unset): no MFU rather than a made-up one
    train(model, SFTConfig(n_epochs=1, batch_size=4, learning_rate=5e-3, seed=0), qa_examples(tokenizer), unknown,
          pad_id=tokenizer.pad_token_id)  # fmt: skip
    assert all("mfu" not in metrics for _, metrics in unknown.metrics)
