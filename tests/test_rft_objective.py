"""GRPO's loss (`trainer.rft`): its gradient against one computed by hand, and what a group of
equal rewards contributes (the KL term alone)."""

from __future__ import annotations

import math

import torch

from trainer.rft import KL_BETA, advantages, grpo_loss, sampling_seed

# Two completions of one prompt: the first of two tokens, the second of one.
LOGPS = [-1.0, -2.0, -0.5]
REF = [-1.5, -1.0, -0.5]
OWNER = torch.tensor([0, 0, 1])
LENGTHS = torch.tensor([2, 1])


def gradient(rewards: list[float]) -> tuple[list[float], float]:
    logps = torch.tensor(LOGPS, requires_grad=True)
    adv = advantages(torch.tensor([rewards]))[0][OWNER]
    loss, _ = grpo_loss(logps, logps.detach(), torch.tensor(REF), adv, OWNER, LENGTHS, divisor=2.0)
    loss.backward()
    assert logps.grad is not None
    return logps.grad.tolist(), float(loss.detach())


def by_hand(rewards: list[float]) -> list[float]:
    """d/d logp_t of 1/G sum_i 1/|o_i| sum_t [-rho A_i + beta (e^(ref - logp) - (ref - logp) - 1)],
    at rho = 1 (the sampling policy is the current one): -A_i + beta (1 - e^(ref - logp))."""
    mean = sum(rewards) / 2
    std = math.sqrt(sum((r - mean) ** 2 for r in rewards) / 2)
    adv = [(r - mean) / (std + 1e-4) for r in rewards]
    out = []
    for t, owner in enumerate(OWNER.tolist()):
        per_token = -adv[owner] + KL_BETA * (1 - math.exp(REF[t] - LOGPS[t]))
        out.append(per_token / LENGTHS[owner].item() / 2)
    return out


def test_the_gradient_equals_the_hand_computed_one() -> None:
    grad, _ = gradient([1.0, 0.0])
    expected = by_hand([1.0, 0.0])
    assert all(abs(g - e) < 1e-6 for g, e in zip(grad, expected, strict=True)), (grad, expected)
    # The rewarded completion's tokens are pushed up (a negative gradient of the loss), the other's down.
    assert grad[0] < 0 and grad[1] < 0 and grad[2] > 0


def test_a_group_of_equal_rewards_contributes_only_the_kl_term() -> None:
    grad, loss = gradient([0.7, 0.7])
    kl_only = [KL_BETA * (1 - math.exp(r - lp)) / LENGTHS[o].item() / 2
               for r, lp, o in zip(REF, LOGPS, OWNER.tolist(), strict=True)]  # fmt: skip
    assert all(abs(g - e) < 1e-7 for g, e in zip(grad, kl_only, strict=True)), (grad, kl_only)
    assert grad[2] == 0.0  # that token equals the reference: no KL either
    expected_loss = sum(KL_BETA * (math.exp(r - lp) - (r - lp) - 1) / LENGTHS[o].item() / 2
                        for r, lp, o in zip(REF, LOGPS, OWNER.tolist(), strict=True))  # fmt: skip
    assert abs(loss - expected_loss) < 1e-6


def test_sampling_seeds_depend_on_job_step_and_prompt_only() -> None:
    seeds = {sampling_seed(s, step, p) for s in (1, 2) for step in (0, 1) for p in (0, 1)}
    assert len(seeds) == 8
    assert sampling_seed(1, 5, 3) == sampling_seed(1, 5, 3)
