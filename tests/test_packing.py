"""Padding-free packing: the same loss and gradients as padded batches, and no attention across examples."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import AutoTokenizer

from trainer.attention import use_segment_attention
from trainer.data import tokenize_chat
from trainer.sft import LoraSettings, SFTConfig, _collate, labelled, load_lora_model, loss_sums, microbatches, pack
from trainer.tiny_model import ensure_tiny_chat


@pytest.fixture(scope="module", name="tiny_chat")
def fx_tiny_chat(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return ensure_tiny_chat(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module", name="examples")
def fx_examples(tiny_chat: Path) -> list[Any]:
    tokenizer = AutoTokenizer.from_pretrained(tiny_chat)
    lengths = [3, 40, 9, 120, 1, 25]  # words per answer: rows of very different lengths
    return [
        tokenize_chat(tokenizer, {"messages": [
            {"role": "system", "content": "Answer."},
            {"role": "user", "content": f"Tell me {n} things about item {i}."},
            {"role": "assistant", "content": " ".join(f"thing{j}" for j in range(n)), "weight": 1},
        ]}, max_tokens=1024)
        for i, n in enumerate(lengths)
    ]  # fmt: skip


def model_with_nonzero_adapter(tiny_chat: Path) -> Any:
    model = load_lora_model(tiny_chat, LoraSettings(), seed=0)
    with torch.no_grad():  # LoRA starts with B = 0; give it weight so both A and B get gradients
        for index, (name, param) in enumerate(model.named_parameters()):
            if "lora_B" in name:
                param.normal_(0, 0.02, generator=torch.Generator().manual_seed(index))
    model.train()
    return model


def step_loss_and_grads(model: Any, passes: list[dict[str, torch.Tensor]]) -> tuple[float, dict[str, torch.Tensor]]:
    model.zero_grad(set_to_none=True)
    count = sum(labelled(batch) for batch in passes)
    total = 0.0
    for batch in passes:
        loss_sum, _ = loss_sums(model, batch)
        (loss_sum / count).backward()
        total += float(loss_sum.detach()) / count
    return total, {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize(("microbatch", "passes"), [(100_000, 1), (160, None)], ids=["one row", "several passes"])
def test_packed_loss_and_gradients_equal_padded(
    tiny_chat: Path, examples: list[Any], microbatch: int, passes: int | None
) -> None:
    model = model_with_nonzero_adapter(tiny_chat)
    # The reference is the stock masked attention on a padded batch: an implementation of its own.
    model.get_base_model().set_attn_implementation("sdpa")
    padded_loss, padded_grads = step_loss_and_grads(model, [_collate(examples, pad_id=0)])
    use_segment_attention(model)
    config = SFTConfig(n_epochs=1, batch_size=6, learning_rate=1e-3, seed=0, max_tokens_per_microbatch=microbatch)
    batches = microbatches(examples, 0, config)
    assert len(batches) == passes if passes else len(batches) > 1
    assert all(batch["input_ids"].shape[0] == 1 for batch in batches)  # one row a pass
    packed_loss, packed_grads = step_loss_and_grads(model, batches)
    assert abs(packed_loss - padded_loss) < 1e-5
    assert padded_grads.keys() == packed_grads.keys() and padded_grads
    for name, grad in padded_grads.items():
        torch.testing.assert_close(packed_grads[name], grad, atol=1e-5, rtol=1e-4, msg=name)
    # No padding at all: every slot the model computes holds a real token.
    assert sum(b["input_ids"].numel() for b in batches) == sum(len(e.input_ids) for e in examples)


def test_no_token_attends_across_examples(tiny_chat: Path, examples: list[Any]) -> None:
    model = model_with_nonzero_adapter(tiny_chat).eval()
    first, second = examples[1], examples[3]
    with torch.no_grad():
        together = model(**{k: v for k, v in pack([first, second]).items() if k != "labels"}, use_cache=False).logits
        alone = model(input_ids=torch.from_numpy(second.input_ids).long()[None], use_cache=False).logits
    torch.testing.assert_close(together[0, len(first.input_ids) :], alone[0], atol=1e-5, rtol=1e-4)
    # And position_ids matter: the same row without them would let the second example see the first.
    with torch.no_grad():
        leaky = model(input_ids=pack([first, second])["input_ids"], use_cache=False).logits
    assert not torch.allclose(leaky[0, len(first.input_ids) :], alone[0], atol=1e-3)
