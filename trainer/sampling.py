"""Sampling completions for reinforcement fine-tuning, behind one interface (`CompletionSampler`).

`LocalSampler` generates with the model being trained, in the training process: the adapter as
it stands, a key/value cache, one batch per prompt holding its whole group (the rows share the
prompt, so the batch needs no padding and per-example attention stays exact). Each group draws
from its own `torch.Generator`, seeded by the caller from (job seed, step, prompt): a resumed run
draws exactly the samples an uninterrupted one would.

`VllmSampler` is the same interface over vLLM's offline engine with the current adapter loaded
each step, for a GPU worker where vLLM is installed. It is not exercised by the tests (vLLM on
a GPU is not available where they run) and is chosen only by `FTSERVE_RFT_SAMPLER=vllm`.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch


@dataclass
class Completion:
    token_ids: np.ndarray
    """The sampled tokens, up to and including the first end-of-turn token (or the cap)."""
    text: str
    """The tokens as text, special tokens left out: what graders see as `sample.output_text`."""


class CompletionSampler(Protocol):
    def sample(
        self, model: Any, prompt_ids: list[np.ndarray], group: int, seeds: list[int], max_new_tokens: int
    ) -> list[list[Completion]]:
        """`group` completions of each prompt, the i-th prompt's drawn with `seeds[i]`."""
        ...


class LocalSampler:
    """Generation in the training process, at temperature `temperature` (1.0: the policy itself)."""

    def __init__(self, tokenizer: Any, temperature: float = 1.0) -> None:
        self.tokenizer = tokenizer
        self.temperature = temperature
        stops = {tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids("<|im_end|>")}
        self.stop_ids = sorted(t for t in stops if isinstance(t, int) and t >= 0)

    @torch.no_grad()
    def sample(
        self, model: Any, prompt_ids: list[np.ndarray], group: int, seeds: list[int], max_new_tokens: int
    ) -> list[list[Completion]]:
        was_training = model.training
        model.eval()
        try:
            pairs = zip(prompt_ids, seeds, strict=True)
            return [self._group(model, ids, group, seed, max_new_tokens) for ids, seed in pairs]
        finally:
            model.train(was_training)

    def _group(self, model: Any, prompt: np.ndarray, group: int, seed: int, max_new_tokens: int) -> list[Completion]:
        device = next(model.parameters()).device
        generator = torch.Generator(device=device).manual_seed(seed)
        length = len(prompt)
        ids = torch.as_tensor(prompt, dtype=torch.long, device=device)[None].expand(group, -1)
        positions = torch.arange(length, device=device)[None].expand(group, -1)
        out = model(input_ids=ids, position_ids=positions, use_cache=True)
        stops = torch.tensor(self.stop_ids, device=device)
        done = torch.zeros(group, dtype=torch.bool, device=device)
        sampled: list[torch.Tensor] = []
        for t in range(max_new_tokens):
            probs = torch.softmax(out.logits[:, -1].float() / self.temperature, dim=-1)
            token = torch.multinomial(probs, 1, generator=generator).squeeze(1)
            token = torch.where(done, stops[0], token)  # finished rows repeat their stop (cut below)
            sampled.append(token)
            done |= torch.isin(token, stops)
            if bool(done.all()) or t == max_new_tokens - 1:
                break
            out = model(input_ids=token[:, None], position_ids=torch.full((group, 1), length + t, device=device),
                        past_key_values=out.past_key_values, use_cache=True)  # fmt: skip
        rows = torch.stack(sampled, dim=1).cpu().numpy() if sampled else np.zeros((group, 0), dtype=np.int64)
        return [self._completion(row) for row in rows]

    def _completion(self, row: np.ndarray) -> Completion:
        stop = np.isin(row, self.stop_ids).nonzero()[0]
        kept = row[: stop[0] + 1] if len(stop) else row
        return Completion(kept.astype(np.int32), self.tokenizer.decode(kept, skip_special_tokens=True))


class VllmSampler:
    """vLLM's offline engine on the worker's GPU, with the adapter saved and loaded at each step.

    Untested here (see the module docstring). Seeds go per request, so the draws are reproducible
    for one vLLM version and GPU, though not equal to `LocalSampler`'s."""

    def __init__(self, base_path: str, tokenizer: Any, temperature: float = 1.0, gpu_memory: float = 0.3) -> None:
        from vllm import LLM

        self.tokenizer = tokenizer
        self.temperature = temperature
        self.llm = LLM(model=base_path, enable_lora=True, gpu_memory_utilization=gpu_memory, enforce_eager=True)
        self.version = 0

    def sample(
        self, model: Any, prompt_ids: list[np.ndarray], group: int, seeds: list[int], max_new_tokens: int
    ) -> list[list[Completion]]:
        from vllm import SamplingParams
        from vllm.lora.request import LoRARequest

        self.version += 1
        with tempfile.TemporaryDirectory(prefix="ftserve-rft-") as tmp:
            model.save_pretrained(tmp)
            lora = LoRARequest(f"rft-{self.version}", self.version, tmp)
            prompts = [{"prompt_token_ids": [int(t) for t in ids]} for ids in prompt_ids]
            params = [SamplingParams(n=group, temperature=self.temperature, max_tokens=max_new_tokens, seed=seed)
                      for seed in seeds]  # fmt: skip
            outputs = self.llm.generate(prompts, params, lora_request=lora, use_tqdm=False)
        return [
            [Completion(np.asarray(o.token_ids, dtype=np.int32), self.tokenizer.decode(o.token_ids,
                                                                                       skip_special_tokens=True))
             for o in output.outputs]
            for output in outputs
        ]  # fmt: skip
