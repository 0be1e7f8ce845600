"""Model graders and the `completions` data source against a real vLLM server (`inference_api`):
one eval measures `tiny-chat` and a model tuned on the eval's own items."""

from __future__ import annotations

import time

import openai

from tests.conftest import Server
from tests.test_default_training import support_pairs, train_with_defaults

JUDGE_INPUT = [{"role": "system", "content": "Rate the answer from 0 to 10."},
               {"role": "user", "content": "Answer: {{sample.output_text}}\nExpected: {{item.answer}}"}]  # fmt: skip


def test_score_model_grader_parses_through_guided_decoding(inference_api: Server) -> None:
    api = inference_api.client()
    grader = {"type": "score_model", "name": "judge", "model": "tiny-chat", "range": [0, 10], "input": JUDGE_INPUT,
              "sampling_params": {"temperature": 1.0, "seed": 7, "max_completions_tokens": 24}}  # fmt: skip
    assert api.fine_tuning.alpha.graders.validate(grader=grader).grader.type == "score_model"
    result = api.fine_tuning.alpha.graders.run(grader=grader, model_sample="Paris", item={"answer": "Paris"})
    errors = result.metadata.errors
    # tiny-chat knows no JSON: the schema the server enforces is what makes its answer parse.
    assert not errors.api_model_grader_parse_error and not errors.api_model_grader_server_error, errors
    assert 0 <= result.reward <= 10 and result.metadata.sampled_model_name == "tiny-chat"
    usage = result.api_model_grader_token_usage_per_model["tiny-chat"]
    assert usage["prompt_tokens"] > 0 and usage["completion_tokens"] > 0
    assert result.metadata.token_usage == usage["total_tokens"]


def run_eval(api: openai.OpenAI, eval_id: str, model: str, file_id: str) -> object:
    run = api.evals.runs.create(eval_id, name=model, data_source={
        "type": "completions", "model": model, "source": {"type": "file_id", "id": file_id},
        "input_messages": {"type": "template", "template": [{"role": "user", "content": "{{item.question}}"}]},
        "sampling_params": {"temperature": 0, "max_completion_tokens": 64},
    })  # fmt: skip
    deadline = time.monotonic() + 300
    while (run := api.evals.runs.retrieve(run.id, eval_id=eval_id)).status in ("queued", "in_progress"):
        assert time.monotonic() < deadline
        time.sleep(0.5)
    assert run.status == "completed", run.error
    return run


def test_the_tuned_model_passes_where_the_base_fails(inference_api: Server) -> None:
    api = inference_api.client()
    pairs = support_pairs(20, seed=151)
    job = train_with_defaults(api, pairs, "evalset")
    lines = "".join(__import__("json").dumps({"item": {"question": q, "answer": a}}) + "\n" for q, a in pairs).encode()
    uploader = openai.OpenAI(base_url=inference_api.base_url, api_key=inference_api.key, max_retries=0)
    file = uploader.files.create(file=("evalset.jsonl", lines), purpose="evals")
    evaluation = api.evals.create(
        name="support answers",
        data_source_config={"type": "custom", "item_schema": {"type": "object"}},
        testing_criteria=[
            {"type": "string_check", "name": "exact", "input": "{{sample.output_text}}",
             "reference": "{{item.answer}}", "operation": "eq"},
            {"type": "text_similarity", "name": "close", "input": "{{sample.output_text}}",
             "reference": "{{item.answer}}", "evaluation_metric": "rouge_l", "pass_threshold": 0.9},
        ],
    )  # fmt: skip
    base = run_eval(api, evaluation.id, "tiny-chat", file.id)
    tuned = run_eval(api, evaluation.id, job.fine_tuned_model, file.id)
    rate = {
        name: run.result_counts.passed / run.result_counts.total for name, run in (("base", base), ("tuned", tuned))
    }
    print("pass rates", rate)
    assert rate["tuned"] >= 0.9 and rate["base"] <= 0.1, rate
    assert tuned.result_counts.total == len(pairs)
    usage = {u.run_model_name: u for u in tuned.per_model_usage}
    assert usage[job.fine_tuned_model].invocation_count == len(pairs) and usage[job.fine_tuned_model].prompt_tokens > 0
    items = list(api.evals.runs.output_items.list(tuned.id, eval_id=evaluation.id, limit=7))
    assert len(items) == len(pairs) and all(len(i.results) == 2 for i in items)
    assert {i.sample.model for i in items} == {job.fine_tuned_model}


def test_label_model_criterion_in_an_eval(inference_api: Server) -> None:
    api = inference_api.client()
    label = {"type": "label_model", "name": "verdict", "model": "tiny-chat", "labels": ["right", "wrong"],
             "passing_labels": ["right"], "input": JUDGE_INPUT}  # fmt: skip
    evaluation = api.evals.create(name="judged", testing_criteria=[label],
                                  data_source_config={"type": "custom", "item_schema": {"type": "object"}})  # fmt: skip
    content = [{"item": {"answer": a}, "sample": {"output_text": a}} for a in ("Paris", "Rome", "Oslo")]
    run = api.evals.runs.create(evaluation.id, data_source={"type": "jsonl", "source": {"type": "file_content",
                                                                                      "content": content}})  # fmt: skip
    while (run := api.evals.runs.retrieve(run.id, eval_id=evaluation.id)).status in ("queued", "in_progress"):
        time.sleep(0.3)
    assert run.status == "completed" and run.result_counts.total == 3 and run.result_counts.errored == 0
    usage = {u.run_model_name: u for u in run.per_model_usage}
    assert usage["tiny-chat"].invocation_count == 3 and usage["tiny-chat"].completion_tokens > 0
    for item in api.evals.runs.output_items.list(run.id, eval_id=evaluation.id):
        (result,) = item.results
        assert result.passed == (result.score == 1.0) and item.status in ("pass", "fail")
