"""DPO on tiny-chat: after training, the adapter prefers the preferred answers more than the base did."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import AutoTokenizer

from tests.support import QA, MetricsRecorder
from trainer.dpo import DPOObjective, PreferencePair, packed_sequence_logps, sequence_logps, tokenize_preference
from trainer.loop import run
from trainer.sft import LoraSettings, SFTConfig, _collate, load_lora_model
from trainer.tiny_model import ensure_tiny_chat


@pytest.fixture(scope="module", name="tiny_chat")
def fx_tiny_chat(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return ensure_tiny_chat(tmp_path_factory.mktemp("models"))


def preference_lines() -> list[dict[str, Any]]:
    """Each question: its own answer preferred over the answer of the next item."""
    return [
        {
            "input": {"messages": [{"role": "system", "content": "Be exact."}, {"role": "user", "content": q}]},
            "preferred_output": [{"role": "assistant", "content": a}],
            "non_preferred_completion": [{"role": "assistant", "content": QA[(i + 1) % len(QA)][1]}],  # older key
        }
        for i, (q, a) in enumerate(QA)
    ]


def logp_margins(model: Any, pairs: list[PreferencePair], pad_id: int, *, adapter: bool) -> torch.Tensor:
    """log p(preferred) - log p(non-preferred) per pair, with the adapter on or off."""
    batch = _collate([p.chosen for p in pairs] + [p.rejected for p in pairs], pad_id)
    model.eval()
    with torch.no_grad():
        if adapter:
            logps = sequence_logps(model, batch)
        else:
            with model.disable_adapter():
                logps = sequence_logps(model, batch)
    return logps[: len(pairs)] - logps[len(pairs) :]


def test_only_the_outputs_carry_loss(tiny_chat: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(tiny_chat)
    line = preference_lines()[0]
    line["input"]["messages"].append({"role": "assistant", "content": "an earlier turn"})
    line["input"]["messages"].append({"role": "user", "content": "again?"})
    pair = tokenize_preference(tokenizer, line, max_tokens=512)
    learned = tokenizer.decode([t for t, label in zip(pair.chosen.input_ids, pair.chosen.labels, strict=True)
                                if label != -100])  # fmt: skip
    assert learned == f"{QA[0][1]}<|im_end|>\n"
    assert "an earlier turn" in tokenizer.decode(pair.chosen.input_ids)


def test_dpo_raises_the_preferred_margin_above_the_base(tiny_chat: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(tiny_chat)
    pairs = [tokenize_preference(tokenizer, line, max_tokens=512) for line in preference_lines()]
    model = load_lora_model(tiny_chat, LoraSettings(), seed=0)
    pad = tokenizer.pad_token_id
    base = logp_margins(model, pairs, pad, adapter=False)
    recorder = MetricsRecorder()
    config = SFTConfig(n_epochs=10, batch_size=4, learning_rate=5e-3, seed=0)
    run(model, config, pairs, recorder, DPOObjective(pad, beta=0.1), validation=pairs[:4])
    tuned = logp_margins(model, pairs, pad, adapter=True)
    assert torch.equal(logp_margins(model, pairs, pad, adapter=False), base)  # the reference never moved
    assert float(tuned.mean()) > float(base.mean()) + 2.0
    assert int((tuned > base).sum()) >= 0.9 * len(pairs)
    first, last = recorder.metrics[0], recorder.metrics[-1]
    assert {"train_loss", "train_reward_margin", "train_preference_accuracy"} <= last.keys()
    assert last["train_reward_margin"] > first["train_reward_margin"]
    assert last["train_preference_accuracy"] == 1.0
    assert last["valid_preference_accuracy"] == 1.0


def test_packed_log_probabilities_equal_the_padded_ones(tiny_chat: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(tiny_chat)
    pairs = [tokenize_preference(tokenizer, line, max_tokens=512) for line in preference_lines()[:6]]
    sequences = [p.chosen for p in pairs] + [p.rejected for p in pairs]
    model = load_lora_model(tiny_chat, LoraSettings(), seed=0).eval()
    with torch.no_grad():
        packed, labelled_tokens = packed_sequence_logps(model, sequences)
        model.get_base_model().set_attn_implementation("sdpa")  # the reference: stock masked attention
        padded = sequence_logps(model, _collate(sequences, tokenizer.pad_token_id))
    torch.testing.assert_close(packed, padded, atol=1e-4, rtol=1e-5)
    assert labelled_tokens == sum(s.trained_tokens for s in sequences)


def test_a_step_over_the_token_budget_runs_in_passes_with_the_same_loss_and_gradients(tiny_chat: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(tiny_chat)
    lines = preference_lines()[:8]
    longest = max(tokenize_preference(tokenizer, line, max_tokens=512).tokens for line in lines)
    outcomes, gradients, counts = [], [], []
    for budget in (None, longest):  # the longest pair's tokens: several passes instead of one
        pairs = [tokenize_preference(tokenizer, line, max_tokens=512) for line in lines]
        model = load_lora_model(tiny_chat, LoraSettings(), seed=0)
        objective = DPOObjective(tokenizer.pad_token_id, beta=0.1)
        config = SFTConfig(n_epochs=1, batch_size=8, learning_rate=5e-3, seed=0, max_tokens_per_microbatch=budget)
        passes: list[int] = []
        # The decoder runs once a pass (the output layer only where labels are: `trainer.token_logps`).
        decoder = model.get_base_model().get_decoder()
        decoder.register_forward_pre_hook(lambda _module, _args, passes=passes: passes.append(1))
        outcomes.append(objective.step(model, pairs, config, normaliser=len(pairs)))
        gradients.append([p.grad.clone() for p in model.parameters() if p.requires_grad])
        counts.append(len(passes))
    assert counts[0] == 2  # one pass with the policy, one with the reference
    assert counts[1] >= 8 and counts[1] % 2 == 0  # each pass of the policy has one of the reference
    one, split = outcomes
    assert abs(one.loss - split.loss) < 1e-5
    assert one.metrics == pytest.approx(split.metrics, abs=1e-5)
    assert (one.trained_tokens, one.processed_tokens) == (split.trained_tokens, split.processed_tokens)
    for a, b in zip(*gradients, strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-4)


def test_reference_log_probabilities_are_computed_once_per_pair(tiny_chat: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(tiny_chat)
    pairs = [tokenize_preference(tokenizer, line, max_tokens=512) for line in preference_lines()[:6]]
    model = load_lora_model(tiny_chat, LoraSettings(), seed=0)
    objective = DPOObjective(tokenizer.pad_token_id, beta=0.1)
    config = SFTConfig(n_epochs=3, batch_size=2, learning_rate=5e-3, seed=0)
    run(model, config, pairs, MetricsRecorder(), objective, validation=pairs[:2])
    assert objective.reference_sequences == 2 * len(pairs)  # three epochs, validation too: once each
    with torch.no_grad(), model.disable_adapter():
        fresh = [(float(c), float(r)) for c, r in zip(*packed_sequence_logps(model.eval(), [p.chosen for p in pairs]
                 + [p.rejected for p in pairs])[0].split(len(pairs)), strict=True)]  # fmt: skip
    for pair, (chosen, rejected) in zip(pairs, fresh, strict=True):
        assert objective.references[id(pair)] == pytest.approx((chosen, rejected), abs=1e-4)
