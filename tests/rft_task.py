"""A small task for reinforcement fine-tuning on tiny-chat: pick a colour for a thing.

A short SFT on some nouns, half answered "red" and half "blue", gives a starting model that
answers other nouns with either colour (or now and then something else): a grader that wants one
colour scores it between 0.2 and 0.6. RFT on further nouns must then teach it the wanted colour
for nouns it never saw. The SFT'd adapter is merged into a model directory that the tests
register as a catalogue entry, so the RFT jobs start from it as from any base model.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import torch

NOUNS = (
    "spoon", "plate", "shelf", "drawer", "sofa", "rug", "vase", "kite", "boat", "tent", "hat", "glove", "sock",
    "boot", "cup", "bowl", "fork", "knife", "towel", "brush", "kettle", "lamp", "chair", "table", "door", "window",
    "carpet", "bottle", "garden", "bicycle", "pencil", "basket", "blanket", "mirror", "teapot", "jacket", "ribbon",
    "candle", "wagon", "fence", "button", "scarf", "bucket", "ladder", "pillow", "curtain", "helmet", "umbrella",
    "bench", "clock",
)  # fmt: skip
SFT_NOUNS, RFT_NOUNS, HELD_OUT = NOUNS[:18], NOUNS[18:38], NOUNS[38:]
LEARNING_RATE = 5e-3


def messages(noun: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": f"Pick a colour for the {noun}."}]


def rft_lines(nouns: tuple[str, ...] | list[str], answer: str, **extra: Any) -> list[dict[str, Any]]:
    return [{"messages": messages(n), "answer": answer, **extra} for n in nouns]


def jsonl(lines: list[dict[str, Any]]) -> bytes:
    return b"".join(json.dumps(line).encode() + b"\n" for line in lines)


def build_start_model(target: Path, models_dir: Path, epochs: int = 12) -> Path:
    """tiny-chat after a short SFT on `SFT_NOUNS`, merged into a plain model directory."""
    from transformers import AutoTokenizer

    from trainer.data import tokenize_chat
    from trainer.sft import LoraSettings, SFTConfig, load_lora_model, train
    from trainer.tiny_model import ensure_tiny_chat

    base = ensure_tiny_chat(models_dir)
    tokenizer = AutoTokenizer.from_pretrained(base)
    lines = [{"messages": [*messages(n), {"role": "assistant", "content": ("red", "blue")[i % 2]}]}
             for i, n in enumerate(SFT_NOUNS)]  # fmt: skip
    examples = [tokenize_chat(tokenizer, line, max_tokens=256) for line in lines]
    model = load_lora_model(base, LoraSettings(), seed=0, device=torch.device("cpu"))

    class Quiet:
        def on_metrics(self, *args: object) -> None: ...
        def on_epoch_end(self, *args: object) -> None: ...
        def should_stop(self, step: int) -> None: ...
        def on_stop(self, *args: object) -> None: ...

    config = SFTConfig(n_epochs=epochs, batch_size=1, learning_rate=LEARNING_RATE, seed=0)
    train(model, config, examples, Quiet(), pad_id=tokenizer.pad_token_id)
    merged = model.merge_and_unload()
    merged.config._attn_implementation = "sdpa"  # the trainer's per-example attention is set at load
    merged.save_pretrained(target)
    tokenizer.save_pretrained(target)
    return target


def held_out_reward(model_dir: Path, adapter_dir: Path | None, grader: dict[str, Any], answer: str,
                    samples: int = 8) -> float:  # fmt: skip
    """The mean reward of `samples` completions of each held-out prompt, sampled at temperature 1
    with fixed seeds and graded with the shared graders, as the job's own sampling does."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from service.graders import GradingOptions, grade, sample_namespace
    from trainer.rft import sampling_seed, tokenize_prompt
    from trainer.sampling import LocalSampler

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model: Any = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    if adapter_dir is not None:
        model = PeftModel.from_pretrained(model, adapter_dir)
    items = rft_lines(HELD_OUT, answer)
    prompts = [tokenize_prompt(tokenizer, item, i, max_tokens=256) for i, item in enumerate(items)]
    seeds = [sampling_seed(1234, 0, p.index, kind="measure") for p in prompts]
    texts = [[c.text for c in row] for row in LocalSampler(tokenizer).sample(model, [p.prompt_ids for p in prompts],
                                                                               samples, seeds, 8)]  # fmt: skip

    async def scores() -> list[float]:
        options = GradingOptions()
        limit = asyncio.Semaphore(4)

        async def one(item: dict[str, Any], text: str) -> float:
            async with limit:
                result = await grade(grader, sample_namespace(text), item, options)
            assert not result.errors.any(), result.errors
            return result.reward

        return await asyncio.gather(*(one(item, t) for item, row in zip(items, texts, strict=True) for t in row))

    rewards = asyncio.run(scores())
    return sum(rewards) / len(rewards)
