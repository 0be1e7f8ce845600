"""Reinforcement fine-tuning of a LoRA adapter: group-relative policy optimisation (GRPO).

The algorithm follows GRPO as introduced with DeepSeekMath (Shao et al., 2024, "DeepSeekMath:
Pushing the Limits of Mathematical Reasoning in Open Language Models", arXiv:2402.03300). For
each prompt q of an optimizer step:

1. Sample a group of G completions o_1..o_G from the current policy (the adapter as it stands),
   at temperature 1, at most `FTSERVE_RFT_MAX_SAMPLE_TOKENS` tokens each
   (`trainer.sampling`; seeded by (job seed, step, prompt) so a resumed run draws the same).
2. Grade each with the job's grader (`trainer.rft_grading`): rewards r_1..r_G. A sample the
   grader fails on (a python grader that raises) gets 0, and is counted.
3. Normalise within the group: A_i = (r_i - mean(r)) / (std(r) + 1e-4) (population std). A
   group whose rewards are all equal has A = 0 and teaches nothing but staying near the reference.
4. Minimise, over the completion tokens o_i,t,

       L = 1/(N G) sum_q sum_i 1/|o_i| sum_t [ -min(rho A_i, clip(rho, 1-eps, 1+eps) A_i) + beta KL_t ]

   with rho = pi(o_i,t) / pi_old(o_i,t), and the per-token KL estimate of the paper,
   KL_t = pi_ref/pi - log(pi_ref/pi) - 1 (always >= 0, unbiased). The reference pi_ref is the
   base model with the adapter switched off, as in DPO: no second copy of the weights; for a job
   started from an `ft:` model, that model's adapter, frozen (`trainer.dpo.reference_policy`).

Defaults: G = 8 at `compute_multiplier` 1 (round(8 x multiplier), at least 2), beta = 0.04 and
eps = 0.2 (the paper's), one optimizer step per batch of samples (the paper's mu = 1, so
pi_old is the policy that sampled and rho is 1 in value; the clip bounds the step should that
change). The learning rate is the catalogue's for the base model times
`learning_rate_multiplier`, with the loop's warm-up, linear decay and gradient clipping.

Sequences (prompt + completion, loss on the completion's tokens only) are packed like SFT's,
within the token budget of a pass (`FTSERVE_TRAINER_TOKENS_PER_PASS`), and gradients accumulate
across passes, so a step's result does not depend on the budget.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from trainer.data import IGNORE_INDEX, TokenizedExample
from trainer.dpo import reference_policy
from trainer.rft_grading import GradedGroup
from trainer.sampling import Completion, CompletionSampler
from trainer.sft import SFTConfig, StepOutcome, _pack_rows, pack
from trainer.token_logps import labelled_token_logps

GROUP_PER_MULTIPLIER = 8
KL_BETA = 0.04
CLIP_EPSILON = 0.2
ADVANTAGE_EPSILON = 1e-4


def group_size(compute_multiplier: float) -> int:
    """Completions per prompt for a job's `compute_multiplier`.

    Example:
        >>> group_size(1.0), group_size(0.1), group_size(2.5)
        (8, 2, 20)
    """
    return max(2, round(GROUP_PER_MULTIPLIER * float(compute_multiplier)))


def sampling_seed(job_seed: int, step: int, prompt_index: int, kind: str = "train") -> int:
    """The seed of one prompt's group at one step: the same on every run of the job.

    Example:
        >>> sampling_seed(7, 3, 1) == sampling_seed(7, 3, 1) != sampling_seed(7, 4, 1)
        True
    """
    digest = hashlib.blake2b(f"{kind}:{job_seed}:{step}:{prompt_index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") & (2**63 - 1)


@dataclass
class RFTPrompt:
    """One training line: its prompt's tokens (ending where the assistant's turn begins), the line
    itself for the grader (`{{item.…}}`), and its index in the file (for the sampling seed)."""

    index: int
    prompt_ids: np.ndarray
    item: dict[str, Any]
    truncated: bool = False


def tokenize_prompt(tokenizer: Any, example: dict[str, Any], index: int, *, max_tokens: int) -> RFTPrompt:
    """The line's `messages` (and `tools`) rendered up to the assistant's turn; a prompt longer than
    `max_tokens` keeps its end (the turn the model answers)."""
    messages = [{k: v for k, v in m.items() if k != "weight"} for m in example["messages"]]
    text = tokenizer.apply_chat_template(messages, tools=example.get("tools"), tokenize=False,
                                         add_generation_prompt=True)  # fmt: skip
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    return RFTPrompt(index, np.asarray(ids[-max_tokens:], dtype=np.int32), example, len(ids) > max_tokens)


def advantages(rewards: torch.Tensor) -> torch.Tensor:
    """Rewards normalised within each group (rows: prompts, columns: a group's samples).

    Example:
        >>> advantages(torch.tensor([[1.0, 0.0], [0.5, 0.5]])).tolist()
        [[0.9998000264167786, -0.9998000264167786], [0.0, 0.0]]
    """
    mean = rewards.mean(dim=1, keepdim=True)
    std = rewards.std(dim=1, keepdim=True, unbiased=False)
    return (rewards - mean) / (std + ADVANTAGE_EPSILON)


def grpo_token_terms(
    logps: torch.Tensor, old_logps: torch.Tensor, ref_logps: torch.Tensor, advantage: torch.Tensor,
    *, beta: float = KL_BETA, epsilon: float = CLIP_EPSILON,
) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """Per completion token: the clipped policy-gradient loss and the KL estimate to the reference.
    `advantage` is each token's completion's A_i; the loss to minimise is `pg + beta * kl`."""
    ratio = torch.exp(logps - old_logps)
    pg = -torch.minimum(ratio * advantage, torch.clamp(ratio, 1 - epsilon, 1 + epsilon) * advantage)
    delta = ref_logps - logps
    kl = torch.exp(delta) - delta - 1
    return pg, kl


def grpo_loss(
    logps: torch.Tensor, old_logps: torch.Tensor, ref_logps: torch.Tensor, advantage: torch.Tensor,
    owner: torch.Tensor, lengths: torch.Tensor, divisor: float, *, beta: float = KL_BETA,
    epsilon: float = CLIP_EPSILON,
) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """The step's loss share of these tokens (`owner`: each token's completion, whose length is in
    `lengths`; `advantage`: per token) divided by `divisor` (prompts x group size), and the sum of
    the completions' mean KL, detached."""
    pg, kl = grpo_token_terms(logps, old_logps, ref_logps, advantage, beta=beta, epsilon=epsilon)
    weight = 1.0 / lengths[owner].to(logps.dtype)
    loss = ((pg + beta * kl) * weight).sum() / divisor
    return loss, (kl.detach() * weight).sum()


class RFTObjective:
    """`trainer.loop.Objective` for GRPO (see the module docstring)."""

    reference_passes = 1

    def __init__(
        self,
        sampler: CompletionSampler,
        grade: Callable[[list[dict[str, Any]], list[list[str]]], list[GradedGroup]],
        *,
        seed: int,
        group: int,
        max_new_tokens: int,
        eval_interval: int,
        eval_samples: int,
        sub_grader_names: list[str] | None = None,
        on_failures: Callable[[int, int, str | None], None] | None = None,
        beta: float = KL_BETA,
        epsilon: float = CLIP_EPSILON,
        reference_adapter: str | None = None,
    ) -> None:
        self.sampler, self.grade = sampler, grade
        self.seed, self.group, self.max_new_tokens = seed, group, max_new_tokens
        self.eval_interval, self.eval_samples = eval_interval, eval_samples
        self.names = list(sub_grader_names or [])
        self.on_failures = on_failures
        self.beta, self.epsilon = beta, epsilon
        self.reference_adapter = reference_adapter
        """The frozen source adapter of a job started from an `ft:` model; None: the base."""
        self.current_step = 0
        self.sampling_seconds = 0.0
        """Time spent sampling (for the benchmark's share of the step time)."""
        self.grading_seconds = 0.0
        """Time spent waiting for the graders."""
        self.samples = 0

    def begin_step(self, step: int) -> None:
        """Called by the loop before each step: the step number seeds the sampling."""
        self.current_step = step

    def normaliser(self, items: list[RFTPrompt]) -> int:
        return len(items)

    def _metric_names(self) -> list[str]:
        names = ["train_reward_mean", "train_reward_std", "kl", "sample_tokens_mean", "grader_errors"]
        return names + [f"train_reward_{name}" for name in self.names]

    def rollouts(self, model: Any, items: list[RFTPrompt], group: int, seeds: list[int]) -> tuple[
        list[list[Completion]], list[GradedGroup]]:  # fmt: skip
        completions, graded = self._sample_and_grade(model, items, group, seeds)
        self.samples += sum(len(row) for row in completions)
        return completions, graded

    def _sample_and_grade(self, model: Any, items: list[RFTPrompt], group: int, seeds: list[int]) -> tuple[
        list[list[Completion]], list[GradedGroup]]:  # fmt: skip
        started = time.perf_counter()
        completions = self.sampler.sample(model, [p.prompt_ids for p in items], group, seeds, self.max_new_tokens)
        sampled = time.perf_counter()
        graded = self.grade([p.item for p in items], [[c.text for c in row] for row in completions])
        self.sampling_seconds += sampled - started
        self.grading_seconds += time.perf_counter() - sampled
        return completions, graded

    def step(self, model: Any, items: list[RFTPrompt], config: SFTConfig, normaliser: int) -> StepOutcome:
        if not items:
            return StepOutcome(0.0, dict.fromkeys(self._metric_names(), 0.0), 0, 0)
        seeds = [sampling_seed(self.seed, self.current_step, p.index) for p in items]
        completions, graded = self.rollouts(model, items, self.group, seeds)
        failures = sum(g.failures for g in graded)
        if failures and self.on_failures:
            detail = next((g.failure_detail for g in graded if g.failure_detail), None)
            self.on_failures(self.current_step + 1, failures, detail)
        rewards = torch.tensor([g.rewards for g in graded], dtype=torch.float32)
        advantage = advantages(rewards)
        sequences, seq_advantage = [], []
        for prompt, row, adv in zip(items, completions, advantage.tolist(), strict=True):
            for completion, a in zip(row, adv, strict=True):
                if len(completion.token_ids) == 0:
                    continue
                ids = np.concatenate([prompt.prompt_ids, completion.token_ids])
                labels = np.full(len(ids), IGNORE_INDEX, dtype=np.int32)
                labels[len(prompt.prompt_ids) :] = completion.token_ids
                sequences.append(TokenizedExample(ids, labels))
                seq_advantage.append(a)
        divisor = float(max(normaliser, 1) * self.group)
        loss_total, kl_total, processed = 0.0, 0.0, 0
        limit = config.max_tokens_per_microbatch or (16_384 if torch.cuda.is_available() else 4_096)
        budget = max([limit, *(len(s.input_ids) for s in sequences)])
        by_id = {id(s): a for s, a in zip(sequences, seq_advantage, strict=True)}
        for row in _pack_rows(sequences, budget) if sequences else []:
            loss, kl = self._pass(model, row, [by_id[id(s)] for s in row], divisor)
            loss.backward()
            loss_total += float(loss.detach())
            kl_total += float(kl)
            processed += sum(len(s.input_ids) for s in row)
        tokens = [len(c.token_ids) for row in completions for c in row]
        metrics = {
            "train_reward_mean": float(rewards.mean(dim=1).sum()) / normaliser,
            "train_reward_std": float(rewards.std(dim=1, unbiased=False).sum()) / normaliser,
            "kl": kl_total / divisor,
            "sample_tokens_mean": float(np.sum(tokens)) / divisor,
            "grader_errors": float(failures),
        }
        for name in self.names:
            sub = torch.tensor([g.sub_rewards[name] for g in graded], dtype=torch.float32)
            metrics[f"train_reward_{name}"] = float(sub.mean(dim=1).sum()) / normaliser
        return StepOutcome(loss_total, metrics, trained_tokens=int(np.sum(tokens)), processed_tokens=processed)

    def _pass(self, model: Any, row: list[TokenizedExample], row_advantage: list[float], divisor: float) -> tuple[
        torch.Tensor, torch.Tensor]:  # fmt: skip
        batch = pack(row)
        logps, _, keep = labelled_token_logps(model, batch)
        with torch.no_grad(), reference_policy(model, self.reference_adapter):
            ref_logps, _, _ = labelled_token_logps(model, batch)
        lengths = torch.tensor([len(s.input_ids) for s in row])
        owner = torch.repeat_interleave(torch.arange(len(row)), lengths)[1:][keep].to(logps.device)
        counts = torch.bincount(owner, minlength=len(row)).clamp(min=1)
        adv = torch.tensor(row_advantage, dtype=logps.dtype, device=logps.device)[owner]
        # One optimizer step per batch of samples: the sampling policy is the current one (mu = 1).
        return grpo_loss(logps, logps.detach(), ref_logps, adv, owner, counts, divisor, beta=self.beta,
                         epsilon=self.epsilon)  # fmt: skip

    @torch.no_grad()
    def evaluate(self, model: Any, items: list[RFTPrompt]) -> dict[str, float]:
        """The mean reward of `eval_samples` samples of each validation prompt, seeded per prompt
        alone, so that every evaluation of a job draws alike and scores compare across steps."""
        seeds = [sampling_seed(self.seed, 0, p.index, kind="eval") for p in items]
        _, graded = self._sample_and_grade(model, items, self.eval_samples, seeds)
        rewards = [r for g in graded for r in g.rewards]
        return {"valid_reward_mean": float(np.mean(rewards)) if rewards else 0.0}
