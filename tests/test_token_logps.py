"""Label log-probabilities in chunks: the same values and gradients as the whole output layer at once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import AutoTokenizer

from trainer.data import IGNORE_INDEX, tokenize_chat
from trainer.sft import LoraSettings, load_lora_model, pack
from trainer.tiny_model import ensure_tiny_chat
from trainer.token_logps import labelled_token_logps


@pytest.fixture(scope="module", name="tiny_chat")
def fx_tiny_chat(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return ensure_tiny_chat(tmp_path_factory.mktemp("models"))


def adapted_model(tiny_chat: Path) -> Any:
    model = load_lora_model(tiny_chat, LoraSettings(), seed=0)
    with torch.no_grad():  # B = 0 at the start would leave A without gradient
        for index, (name, param) in enumerate(model.named_parameters()):
            if "lora_B" in name:
                param.normal_(0, 0.02, generator=torch.Generator().manual_seed(index))
    return model.train()


def row(tiny_chat: Path) -> dict[str, torch.Tensor]:
    tokenizer = AutoTokenizer.from_pretrained(tiny_chat)
    examples = [
        tokenize_chat(tokenizer, {"messages": [
            {"role": "user", "content": f"List {n} things about item {i}."},
            {"role": "assistant", "content": " ".join(f"thing{j}" for j in range(n))},
        ]}, max_tokens=512)
        for i, n in enumerate([30, 4, 55])
    ]  # fmt: skip
    return pack(examples)


def whole_vocabulary(model: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The reference: every position's logits from the model's own forward, then the labels' log-softmax."""
    logits = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False).logits[0, :-1]
    targets = batch["labels"][0, 1:]
    keep = targets != IGNORE_INDEX
    return torch.log_softmax(logits.float(), -1)[keep].gather(1, targets[keep].unsqueeze(1)).squeeze(1)


def test_chunks_give_the_same_log_probabilities_and_gradients(tiny_chat: Path) -> None:
    model = adapted_model(tiny_chat)
    batch = row(tiny_chat)
    vocabulary = model.get_base_model().get_output_embeddings().weight.shape[0]
    expected = whole_vocabulary(model, batch)
    expected.sum().backward()
    reference = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)

    budget = vocabulary * 7  # seven labels a chunk: many chunks, the last one short
    assert expected.numel() > 7 * 3 and expected.numel() % 7
    logps, correct, keep = labelled_token_logps(model, batch, budget=budget)
    torch.testing.assert_close(logps, expected, atol=1e-5, rtol=1e-5)
    assert keep.numel() == logps.numel() == correct.numel() and correct.dtype == torch.bool
    logps.sum().backward()
    assert reference
    for name, grad in reference.items():
        torch.testing.assert_close(dict(model.named_parameters())[name].grad, grad, atol=1e-5, rtol=1e-4, msg=name)


def test_one_chunk_and_many_agree_on_the_top_choice(tiny_chat: Path) -> None:
    model = adapted_model(tiny_chat).eval()
    batch = row(tiny_chat)
    with torch.no_grad():
        whole, whole_correct, _ = labelled_token_logps(model, batch)
        parts, parts_correct, _ = labelled_token_logps(model, batch, budget=1)  # one label a chunk
    torch.testing.assert_close(parts, whole)
    assert torch.equal(parts_correct, whole_correct)
