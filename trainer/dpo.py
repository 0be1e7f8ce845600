"""Direct preference optimisation of a LoRA adapter, with the base model as the reference.

The reference model is the same network with the adapter switched off (`disable_adapter()`),
so DPO costs no second copy of the weights. A job that starts from a fine-tuned model has that
model as its reference instead: its adapter is loaded a second time, frozen, under
`REFERENCE_ADAPTER`, and the reference pass switches to it. For each pair the loss is

    -log sigmoid(beta * ((logp(chosen) - logp_ref(chosen)) - (logp(rejected) - logp_ref(rejected))))

with log-probabilities summed over the output's tokens only; `beta * (...)` is the reward margin.
A step's pairs run packed in rows of at most `FTSERVE_TRAINER_TOKENS_PER_PASS` tokens, without
padding, as SFT's do (a pair's two sequences share a row; further rows accumulate gradients).
The reference's log-probabilities are computed once per pair and job and kept by the objective
(`DPOObjective.references`), not on the pairs: another run over the same pairs, with another
reference, starts afresh.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch

from trainer.data import IGNORE_INDEX, TokenizedExample, tokenize_chat
from trainer.sft import SFTConfig, StepOutcome, pack
from trainer.token_logps import labelled_token_logps

REFERENCE_ADAPTER = "reference"
"""Name of the frozen source adapter that serves as the reference policy, when there is one."""


@dataclass
class PreferencePair:
    """One prompt with a preferred and a non-preferred answer, each tokenised with the prompt."""

    chosen: TokenizedExample
    rejected: TokenizedExample

    @property
    def tokens(self) -> int:
        return len(self.chosen.input_ids) + len(self.rejected.input_ids)


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


def packed_sequence_logps(model: Any, sequences: list[TokenizedExample]) -> tuple[torch.Tensor, int]:
    """Per sequence, the summed log-probability of its labelled tokens, from one packed row with
    logits only where a label follows; and the count of those labels."""
    picked, _, keep = labelled_token_logps(model, pack(sequences))
    lengths = torch.tensor([len(s.input_ids) for s in sequences])
    owner = torch.repeat_interleave(torch.arange(len(sequences)), lengths)[1:][keep].to(picked.device)
    return torch.zeros(len(sequences), device=picked.device).index_add(0, owner, picked), int(keep.numel())


def sequence_logps(model: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Per row of a padded batch, the summed log-probability of its labelled tokens."""
    device = next(model.parameters()).device
    inputs = {k: batch[k].to(device) for k in ("input_ids", "attention_mask")}
    logits = model(**inputs, use_cache=False).logits
    logps = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    targets = batch["labels"][:, 1:].to(device)
    valid = targets != IGNORE_INDEX
    picked = torch.gather(logps, 2, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return (picked * valid).sum(-1)


@contextlib.contextmanager
def reference_policy(model: Any, adapter: str | None) -> Iterator[None]:
    """The reference model for the block: the base (adapter off), or the frozen `adapter`.

    Switching adapters changes which of them require gradients; the trained one is active again,
    and trainable, before anything runs backward."""
    if adapter is None:
        with model.disable_adapter():
            yield
        return
    trained = model.active_adapter
    model.set_adapter(adapter)
    try:
        yield
    finally:
        model.set_adapter(trained)


def _pair_passes(pairs: list[PreferencePair], budget: int) -> list[list[PreferencePair]]:
    """Pairs in passes of at most `budget` tokens (first-fit decreasing; a longer pair alone)."""
    passes: list[list[PreferencePair]] = []
    room: list[int] = []
    for pair in sorted(pairs, key=lambda p: p.tokens, reverse=True):
        for index, left in enumerate(room):
            if pair.tokens <= left:
                passes[index].append(pair)
                room[index] -= pair.tokens
                break
        else:
            passes.append([pair])
            room.append(budget - pair.tokens)
    return passes


class DPOObjective:
    """`trainer.loop.Objective` for DPO. `beta` scales how far the adapter may move from the
    reference: the base model, or the adapter named `reference_adapter` (frozen) when given."""

    reference_passes = 1

    def __init__(self, pad_id: int, beta: float, reference_adapter: str | None = None) -> None:
        self.pad_id = pad_id
        self.beta = beta
        self.reference_adapter = reference_adapter
        self.budget = 16_384 if torch.cuda.is_available() else 4_096
        """Tokens per forward pass (`FTSERVE_TRAINER_TOKENS_PER_PASS`), set from the step's config."""

        self.reference_sequences = 0
        """Sequences whose reference log-probabilities were computed (each once per job)."""
        self.references: dict[int, tuple[float, float]] = {}
        """The reference policy's log-probabilities of each pair's (chosen, rejected), by the pair's
        `id`: frozen, so computed the first time the pair is met and kept for the job."""

    def _references(self, model: Any, pairs: list[PreferencePair]) -> torch.Tensor:
        """(chosen, rejected) reference log-probabilities per pair, computed for the pairs met for
        the first time only, in passes within the token budget."""
        fresh = [p for p in pairs if id(p) not in self.references]
        for group in _pair_passes(fresh, self.budget):
            sequences = [p.chosen for p in group] + [p.rejected for p in group]
            with torch.no_grad(), reference_policy(model, self.reference_adapter):
                logps, _ = packed_sequence_logps(model, sequences)
            values = logps.tolist()
            for i, pair in enumerate(group):
                self.references[id(pair)] = (values[i], values[len(group) + i])
            self.reference_sequences += len(sequences)
        return torch.tensor([self.references[id(p)] for p in pairs], dtype=torch.float32)

    def margins(self, model: Any, pairs: list[PreferencePair]) -> tuple[torch.Tensor, int, int]:
        """Each pair's reward margin (all in one pass); the labelled and the processed tokens."""
        reference = self._references(model, pairs)
        sequences = [p.chosen for p in pairs] + [p.rejected for p in pairs]
        policy, labelled_tokens = packed_sequence_logps(model, sequences)
        reference = reference.to(policy.device)
        n = len(pairs)
        margin = self.beta * ((policy[:n] - reference[:, 0]) - (policy[n:] - reference[:, 1]))
        return margin, labelled_tokens, sum(len(s.input_ids) for s in sequences)

    def normaliser(self, items: list[PreferencePair]) -> int:
        return len(items)

    def step(self, model: Any, items: list[PreferencePair], config: SFTConfig, normaliser: int) -> StepOutcome:
        if not items:
            return StepOutcome(0.0, {"train_reward_margin": 0.0, "train_preference_accuracy": 0.0}, 0, 0)
        self.budget = config.max_tokens_per_microbatch or (16_384 if torch.cuda.is_available() else 4_096)
        loss_total = margin_total = correct = 0.0
        trained = processed = 0
        # A pair's two sequences share a pass; each pass adds its share of the step's loss.
        for group in _pair_passes(items, self.budget):
            margin, labelled, tokens = self.margins(model, group)
            loss = -torch.nn.functional.logsigmoid(margin).sum() / normaliser
            loss.backward()
            loss_total += float(loss.detach())
            margin_total += float(margin.detach().sum())
            correct += float((margin.detach() > 0).float().sum())
            trained += labelled
            processed += tokens
        return StepOutcome(
            loss=loss_total,
            metrics={
                "train_reward_margin": margin_total / normaliser,
                "train_preference_accuracy": correct / normaliser,
            },
            trained_tokens=trained,
            processed_tokens=processed,
        )

    @torch.no_grad()
    def evaluate(self, model: Any, items: list[PreferencePair]) -> dict[str, float]:
        model.eval()
        margin = torch.cat([self.margins(model, group)[0] for group in _pair_passes(items, self.budget)])
        model.train()
        return {
            "valid_loss": float(-torch.nn.functional.logsigmoid(margin).mean()),
            "valid_reward_margin": float(margin.mean()),
            "valid_preference_accuracy": float((margin > 0).float().mean()),
        }
