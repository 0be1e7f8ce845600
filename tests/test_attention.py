"""Per-example attention over packed rows equals the stock masked attention, without the mask."""

from __future__ import annotations

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from trainer.attention import SEGMENT_ATTENTION, _spans, segment_attention, use_segment_attention


def tiny_llama(kv_heads: int) -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=97, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=kv_heads, max_position_embeddings=256,
                         attn_implementation="sdpa")  # fmt: skip
    return LlamaForCausalLM(config).eval()


def packed_rows() -> tuple[torch.Tensor, torch.Tensor]:
    """Two rows of 40 tokens: examples of 7+25+8 and 40 tokens."""
    ids = torch.randint(3, 97, (2, 40), generator=torch.Generator().manual_seed(1))
    positions = torch.stack([torch.cat([torch.arange(7), torch.arange(25), torch.arange(8)]), torch.arange(40)])
    return ids, positions


def test_spans_restart_where_positions_do() -> None:
    _, positions = packed_rows()
    assert _spans(positions, 2, 40) == [[(0, 7), (7, 32), (32, 40)], [(0, 40)]]
    assert _spans(None, 2, 5) == [[(0, 5)], [(0, 5)]]


@pytest.mark.parametrize("kv_heads", [4, 2], ids=["multi-head", "grouped-query"])
def test_equals_stock_masked_attention_on_packed_rows(kv_heads: int) -> None:
    model = tiny_llama(kv_heads)
    ids, positions = packed_rows()
    with torch.no_grad():
        stock = model(input_ids=ids, position_ids=positions, use_cache=False).logits
        assert use_segment_attention(model) == SEGMENT_ATTENTION
        ours = model(input_ids=ids, position_ids=positions, use_cache=False).logits
        alone = model(input_ids=ids[:1, 7:32], use_cache=False).logits  # the middle example by itself
    torch.testing.assert_close(ours, stock, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(ours[0, 7:32], alone[0], atol=1e-5, rtol=1e-4)


def test_generation_with_a_cache_is_unchanged() -> None:
    model = tiny_llama(2)
    prompt = torch.randint(3, 97, (1, 12), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        stock = model.generate(prompt, max_new_tokens=8, do_sample=False)
        use_segment_attention(model)
        ours = model.generate(prompt, max_new_tokens=8, do_sample=False)
    assert torch.equal(ours, stock)


@pytest.mark.parametrize("family", ["mistral-sliding-window", "gemma2-softcap"])
def test_models_with_features_it_lacks_stay_exact_on_sdpa(family: str) -> None:
    from transformers import Gemma2Config, Gemma2ForCausalLM, MistralConfig, MistralForCausalLM

    torch.manual_seed(0)
    shape = {"vocab_size": 97, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
             "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16,
             "attn_implementation": "sdpa"}  # fmt: skip
    if family.startswith("mistral"):
        model = MistralForCausalLM(MistralConfig(**shape, sliding_window=8)).eval()
    else:
        model = Gemma2ForCausalLM(Gemma2Config(**shape, sliding_window=8, attn_logit_softcapping=50.0)).eval()
    assert use_segment_attention(model) == "sdpa"
    ids, positions = packed_rows()
    with torch.no_grad():
        packed = model(input_ids=ids, position_ids=positions, use_cache=False).logits
        alone = model(input_ids=ids[:1, 7:32], use_cache=False).logits
    torch.testing.assert_close(packed[0, 7:32], alone[0], atol=1e-5, rtol=1e-4)
    q = torch.randn(1, 4, 6, 16)
    with pytest.raises(ValueError, match="sliding_window"):  # never silently wrong if called anyway
        segment_attention(torch.nn.Module(), q, q, q, None, position_ids=torch.arange(6)[None], sliding_window=8)
