"""`tiny-chat`: a small Llama with its own byte-level BPE tokenizer and chat template.

Built deterministically on first use, without any download, so that the quickstart, the tests
and the benchmarks run offline on a CPU in seconds. Real deployments name real models in the
catalogue; the code that loads them is the same.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

VERSION = 2
"""Bump when the recipe changes: a cached model of another version is rebuilt."""

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% endif %}"
    "{% if message.get('tool_calls') %}{% for call in message['tool_calls'] %}"
    "<tool_call>{{ call['function']['name'] }} {{ call['function']['arguments'] }}</tool_call>"
    "{% endfor %}{% endif %}"
    "<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<pad>"]


def _corpus() -> list[str]:
    words = [
        "the",
        "a",
        "an",
        "is",
        "are",
        "was",
        "what",
        "who",
        "where",
        "when",
        "why",
        "how",
        "which",
        "number",
        "name",
        "answer",
        "question",
        "capital",
        "city",
        "country",
        "of",
        "in",
        "on",
        "to",
        "for",
        "with",
        "and",
        "or",
        "not",
        "yes",
        "no",
        "hello",
        "hi",
        "thanks",
        "please",
        "tell",
        "me",
        "about",
        "it",
        "this",
        "that",
        "one",
        "two",
        "three",
        "four",
        "five",
        "six",
        "seven",
        "eight",
        "nine",
        "ten",
        "paris",
        "london",
        "rome",
        "berlin",
        "madrid",
        "tokyo",
        "system",
        "user",
        "assistant",
        "tool",
        "function",
        "call",
        "weather",
        "sunny",
        "rainy",
        "cold",
        "warm",
        "good",
        "bad",
        "you",
        "i",
        "we",
        "they",
    ]
    lines = [" ".join(words[i : i + 7]) for i in range(0, len(words), 3)]
    lines += [f"What is {i}? It is number {i}." for i in range(200)]
    lines += ["".join(chr(c) for c in range(32, 127))]
    return lines * 3


def build_tiny_chat(target: Path, *, seed: int = 0) -> Path:
    """Write the tokenizer and randomly initialised weights (seeded) into `target`."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=640, special_tokens=SPECIAL_TOKENS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tokenizer.train_from_iterator(_corpus(), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token="<|endoftext|>",
        eos_token="<|im_end|>",
        pad_token="<pad>",
        unk_token=None,
    )
    fast.chat_template = CHAT_TEMPLATE

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(fast),
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=1024,
        bos_token_id=fast.bos_token_id,
        eos_token_id=fast.eos_token_id,
        pad_token_id=fast.pad_token_id,
        tie_word_embeddings=False,
        # Larger than the usual 0.02: with RMSNorm capping hidden norms, small random output
        # weights cap the logits too, and a LoRA on top could never become confident.
        initializer_range=0.1,
    )
    model = LlamaForCausalLM(config)
    target.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(target)
    model.save_pretrained(target)
    model.generation_config.save_pretrained(target)
    (target / "ftserve-tiny-chat.json").write_text(json.dumps({"version": VERSION, "seed": seed}))
    return target


def ensure_tiny_chat(cache_dir: Path) -> Path:
    """The built model under `cache_dir/tiny-chat`, building it once (atomically) if absent."""
    target = cache_dir / "tiny-chat"
    marker = target / "ftserve-tiny-chat.json"
    if marker.exists() and json.loads(marker.read_text()).get("version") == VERSION:
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".tiny-chat-", dir=cache_dir))
    try:
        build_tiny_chat(staging)
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
