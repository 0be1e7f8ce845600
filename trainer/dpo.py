"""Direct preference optimisation of a LoRA adapter, with the base model as the reference.

The reference model is the same network with the adapter switched off (`disable_adapter()`),
so DPO costs no second copy of the weights. For each pair the loss is

    -log sigmoid(beta * ((logp(chosen) - logp_ref(chosen)) - (logp(rejected) - logp_ref(rejected))))

with log-probabilities summed over the output's tokens only; `beta * (...)` is the reward margin.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from trainer.data import IGNORE_INDEX, TokenizedExample, tokenize_chat
from trainer.sft import SFTConfig, StepOutcome, _collate, labelled


@dataclass
class PreferencePair:
    """One prompt with a preferred and a non-preferred answer, each tokenised with the prompt."""

    chosen: TokenizedExample
    rejected: TokenizedExample


def tokenize_preference(tokenizer: Any, example: dict[str, Any], *, max_tokens: int) -> PreferencePair:
    """OpenAI's preference line (`input`, `preferred_output`, `non_preferred_output`, or the older
    `*_completion` names). Only the outputs' tokens carry loss; assistant turns of the prompt do not.

    Example:
        >>> pair = tokenize_preference(tok, {"input": {"messages": [{"role": "user", "content": "hi"}]},
        ...     "preferred_output": [{"role": "assistant", "content": "hello"}],
        ...     "non_preferred_output": [{"role": "assistant", "content": "go away"}]}, max_tokens=64)
        ... # doctest: +SKIP
    """
    source = example["input"]
    prompt = [{**m, "weight": 0} if m.get("role") == "assistant" else m for m in source["messages"]]
    tools = source.get("tools") or example.get("tools")
    outputs = []
    for name in ("preferred_output", "non_preferred_output"):
        output = example.get(name, example.get(name.replace("_output", "_completion")))
        outputs.append(tokenize_chat(tokenizer, {"messages": prompt + output, "tools": tools}, max_tokens=max_tokens))
    return PreferencePair(*outputs)


def sequence_logps(model: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Per row, the summed log-probability of its labelled tokens."""
    device = next(model.parameters()).device
    inputs = {k: batch[k].to(device) for k in ("input_ids", "attention_mask")}
    logits = model(**inputs, use_cache=False).logits
    logps = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    targets = batch["labels"][:, 1:].to(device)
    valid = targets != IGNORE_INDEX
    picked = torch.gather(logps, 2, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return (picked * valid).sum(-1)


class DPOObjective:
    """`trainer.loop.Objective` for DPO. `beta` scales how far the adapter may move from the base."""

    def __init__(self, pad_id: int, beta: float) -> None:
        self.pad_id = pad_id
        self.beta = beta

    def margins(self, model: Any, pairs: list[PreferencePair]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        batch = _collate([p.chosen for p in pairs] + [p.rejected for p in pairs], self.pad_id)
        policy = sequence_logps(model, batch)
        with torch.no_grad(), model.disable_adapter():
            reference = sequence_logps(model, batch)
        n = len(pairs)
        margin = self.beta * ((policy[:n] - reference[:n]) - (policy[n:] - reference[n:]))
        return margin, batch

    def normaliser(self, items: list[PreferencePair]) -> int:
        return len(items)

    def step(self, model: Any, items: list[PreferencePair], config: SFTConfig, normaliser: int) -> StepOutcome:
        if not items:
            return StepOutcome(0.0, {"train_reward_margin": 0.0, "train_preference_accuracy": 0.0}, 0, 0)
        margin, batch = self.margins(model, items)
        loss = -torch.nn.functional.logsigmoid(margin).sum() / normaliser
        loss.backward()
        return StepOutcome(
            loss=float(loss.detach()),
            metrics={
                "train_reward_margin": float(margin.detach().sum()) / normaliser,
                "train_preference_accuracy": float((margin.detach() > 0).float().sum()) / normaliser,
            },
            trained_tokens=labelled(batch),
            processed_tokens=int(batch["input_ids"].numel()),
        )

    @torch.no_grad()
    def evaluate(self, model: Any, items: list[PreferencePair]) -> dict[str, float]:
        model.eval()
        margin, _ = self.margins(model, items)
        model.train()
        return {
            "valid_loss": float(-torch.nn.functional.logsigmoid(margin).mean()),
            "valid_reward_margin": float(margin.mean()),
            "valid_preference_accuracy": float((margin > 0).float().mean()),
        }
