"""Language-model helpers the tests share: greedy answers from a model on tiny-chat."""

from __future__ import annotations

from typing import Any


def greedy_answers(model: Any, tokenizer: Any, questions: list[str]) -> list[str]:
    """The model's greedy reply to each question asked alone, special tokens stripped."""
    model.eval()
    answers = []
    for question in questions:
        prompt = tokenizer.apply_chat_template(
            [{"role": "user", "content": question}], add_generation_prompt=True, return_tensors="pt", return_dict=True
        )
        out = model.generate(
            **prompt,
            max_new_tokens=20,
            do_sample=False,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
        answers.append(tokenizer.decode(out[0][prompt["input_ids"].shape[1] :], skip_special_tokens=True).strip())
    return answers
