"""`tiny-embed`: a small Llama encoder that turns text into 128 numbers, for tests and the quickstart.

Built deterministically on first use, without any download, like `tiny-chat`
(`trainer.tiny_model`), whose tokenizer recipe it shares. It is saved as a bare `LlamaModel`
(no language-model head) with the files sentence-transformers reads, `modules.json`, a mean
pooling module and a normalising one, so that vLLM's pooling runner serves it with
`/v1/embeddings`: the embedding of a text is the normalised mean of its tokens' last hidden
states.

The weights are random, so the embedding means nothing about meaning; it is a function of the
words: the same text gives the same vector (cosine 1), and texts that share words are closer than
texts that share none, because the layers add only a small part to each token's own embedding
(`RESIDUAL_SCALE`). Real deployments list a real embeddings model in the catalogue (`task: embed`).
"""

from __future__ import annotations

import json
from pathlib import Path

VERSION = 1
"""Bump when the recipe changes: a cached model of another version is rebuilt."""
NAME = "tiny-embed"
DIMENSIONS = 128
RESIDUAL_SCALE = 0.2
"""The attention and MLP output projections are scaled by this: each token's hidden state stays
mostly its own embedding, so that a mean over tokens behaves like a bag of words."""
MAX_POSITIONS = 4096
"""RoPE has no weights per position: the catalogue's default `max_seq_len` (4096) fits without saying it."""


def _tokenizer(seed: int):  # type: ignore[no-untyped-def]
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from trainer.tiny_model import SPECIAL_TOKENS, _corpus

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=2048, special_tokens=SPECIAL_TOKENS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tokenizer.train_from_iterator(_corpus(seed), trainer=trainer)
    # No bos token is added to a text: a token every text starts with would pull all means together.
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token=None, eos_token="<|endoftext|>", pad_token="<pad>", unk_token=None
    )


def _sentence_transformers_files(target: Path) -> None:
    """The module list vLLM reads to choose mean pooling and normalisation (`get_pooling_config`)."""
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
    ]
    (target / "modules.json").write_text(json.dumps(modules, indent=2))
    (target / "1_Pooling").mkdir(exist_ok=True)
    pooling = {"word_embedding_dimension": DIMENSIONS, "pooling_mode_mean_tokens": True,
               "pooling_mode_cls_token": False, "pooling_mode_max_tokens": False}  # fmt: skip
    (target / "1_Pooling" / "config.json").write_text(json.dumps(pooling, indent=2))
    (target / "2_Normalize").mkdir(exist_ok=True)
    (target / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": MAX_POSITIONS}))


def build_tiny_embedder(target: Path, *, seed: int = 0) -> Path:
    """Write the tokenizer, the seeded random weights and the pooling files into `target`."""
    import torch
    from transformers import LlamaConfig, LlamaModel

    tokenizer = _tokenizer(seed)
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=DIMENSIONS,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=MAX_POSITIONS,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        initializer_range=0.1,
    )
    config.architectures = ["LlamaModel"]
    model = LlamaModel(config)
    with torch.no_grad():
        for layer in model.layers:
            layer.self_attn.o_proj.weight.mul_(RESIDUAL_SCALE)
            layer.mlp.down_proj.weight.mul_(RESIDUAL_SCALE)
    target.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(target)
    model.save_pretrained(target)
    _sentence_transformers_files(target)
    (target / "ftserve-tiny-embed.json").write_text(json.dumps({"version": VERSION, "seed": seed}))
    return target


def ensure_tiny_embedder(cache_dir: Path) -> Path:
    """The built model under `cache_dir/tiny-embed`, building it once (atomically) if absent."""
    from trainer.tiny_model import ensure_built

    return ensure_built(cache_dir, NAME, VERSION, build_tiny_embedder)
