"""The Evals API with the official SDK against `ftserve up` (SQLite, local storage): jsonl data sources."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from tests.conftest import Server, make_stack
from tests.support import qa_jsonl

NODE_DIR = Path(__file__).resolve().parent / "node"


@pytest.fixture(scope="module", name="evals_server")
def fx_evals_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    stack = make_stack(request, "sqlite-local", Path(tmp_path_factory.mktemp("evals")), FTSERVE_EVAL_CONCURRENCY="2")
    try:
        yield stack.start_api("--no-inference")
    finally:
        stack.stop()


@pytest.fixture(name="api")
def fx_api(evals_server: Server) -> openai.OpenAI:
    return evals_server.client()


CRITERIA = [
    {"type": "string_check", "name": "exact", "input": "{{sample.output_text}}", "reference": "{{item.answer}}",
     "operation": "eq"},
    {"type": "text_similarity", "name": "close", "input": "{{sample.output_text}}", "reference": "{{item.answer}}",
     "evaluation_metric": "fuzzy_match", "pass_threshold": 0.8},
]  # fmt: skip
ITEM_SCHEMA = {"type": "object", "properties": {"question": {"type": "string"}, "answer": {"type": "string"}}}


def make_eval(api: openai.OpenAI, criteria: list | None = None) -> str:
    created = api.evals.create(
        name="capitals",
        data_source_config={"type": "custom", "item_schema": ITEM_SCHEMA, "include_sample_schema": True},
        testing_criteria=criteria or CRITERIA,
        metadata={"team": "geo"},
    )
    assert created.object == "eval" and created.name == "capitals" and created.metadata == {"team": "geo"}
    return created.id


def wait(api: openai.OpenAI, eval_id: str, run_id: str, timeout_s: float = 60) -> object:
    deadline = time.monotonic() + timeout_s
    while True:
        run = api.evals.runs.retrieve(run_id, eval_id=eval_id)
        if run.status in ("completed", "failed", "canceled") or time.monotonic() > deadline:
            return run
        time.sleep(0.2)


LINES = [
    {"item": {"question": "France?", "answer": "Paris"}, "sample": {"output_text": "Paris"}},
    {"item": {"question": "Italy?", "answer": "Rome"}, "sample": {"output_text": "Rome."}},
    {"item": {"question": "Spain?", "answer": "Madrid"}, "sample": {"output_text": "Lisbon"}},
]


def test_eval_crud_and_a_jsonl_run_from_a_file(api: openai.OpenAI, evals_server: Server) -> None:
    eval_id = make_eval(api)
    assert api.evals.retrieve(eval_id).testing_criteria[1].name == "close"
    assert api.evals.update(eval_id, name="capitals v2").name == "capitals v2"
    assert eval_id in [e.id for e in api.evals.list()]
    data = "".join(json.dumps(line) + "\n" for line in LINES).encode()
    # The SDK's FileObject type lists no `evals` purpose, though OpenAI answers it: not strict here.
    uploader = openai.OpenAI(base_url=evals_server.base_url, api_key=evals_server.key, max_retries=0)
    file = uploader.files.create(file=("capitals.jsonl", io.BytesIO(data)), purpose="evals")
    source = {"type": "jsonl", "source": {"type": "file_id", "id": file.id}}
    run = api.evals.runs.create(eval_id, name="from-file", data_source=source)
    assert run.status in ("queued", "in_progress") and run.object == "eval.run"
    done = wait(api, eval_id, run.id)
    assert done.status == "completed", done
    assert done.result_counts.total == 3 and done.result_counts.passed == 1 and done.result_counts.failed == 2
    per = {r.testing_criteria: (r.passed, r.failed) for r in done.per_testing_criteria_results}
    # exact: only Paris; fuzzy ≥ 0.8: Paris and "Rome." (ratio 8/9).
    assert per == {"exact": (1, 2), "close": (2, 1)}
    assert done.report_url.endswith(f"/v1/evals/{eval_id}/runs/{run.id}/output_items")
    # Pages of one: every item once, with its grades.
    items = list(api.evals.runs.output_items.list(run.id, eval_id=eval_id, limit=1))
    assert sorted(i.datasource_item_id for i in items) == [0, 1, 2]
    rome = next(i for i in items if i.datasource_item["answer"] == "Rome")
    assert [(r.name, r.passed) for r in rome.results] == [("exact", False), ("close", True)]
    assert rome.results[1].score == pytest.approx(8 / 9) and rome.status == "fail"
    same = api.evals.runs.output_items.retrieve(rome.id, eval_id=eval_id, run_id=run.id)
    assert same.id == rome.id and same.sample.output[0].content == "Rome."
    assert [r.id for r in api.evals.runs.list(eval_id)] == [run.id]


def test_inline_content_and_another_organisation(api: openai.OpenAI, evals_server: Server) -> None:
    eval_id = make_eval(api)
    run = api.evals.runs.create(eval_id, data_source={"type": "jsonl", "source": {"type": "file_content",
                                                                                 "content": LINES[:1]}})  # fmt: skip
    assert wait(api, eval_id, run.id).result_counts.passed == 1
    other = evals_server.client(evals_server.other_key)
    with pytest.raises(openai.NotFoundError):
        other.evals.retrieve(eval_id)
    with pytest.raises(openai.NotFoundError):
        other.evals.runs.retrieve(run.id, eval_id=eval_id)
    with pytest.raises(openai.NotFoundError):
        other.evals.runs.create(eval_id, data_source={"type": "jsonl", "source": {"type": "file_content",
                                                                                 "content": LINES}})  # fmt: skip
    assert eval_id not in [e.id for e in other.evals.list()]
    # Deleting the eval deletes its runs and their items.
    assert api.evals.delete(eval_id).deleted is True
    with pytest.raises(openai.NotFoundError):
        api.evals.runs.retrieve(run.id, eval_id=eval_id)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"data_source_config": {"type": "logs"}, "testing_criteria": CRITERIA}, "data_source_config.type"),
        ({"data_source_config": {"type": "custom", "item_schema": ITEM_SCHEMA},
          "testing_criteria": [{**CRITERIA[1], "pass_threshold": None}]}, "testing_criteria[0].pass_threshold"),
        ({"data_source_config": {"type": "custom", "item_schema": ITEM_SCHEMA},
          "testing_criteria": [{**CRITERIA[0], "operation": "regex"}]}, "testing_criteria[0].operation"),
    ],
)  # fmt: skip
def test_invalid_evals_are_400s(api: openai.OpenAI, body: dict, param: str) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        api.evals.create(**body)
    assert caught.value.body["param"] == param


def test_unsupported_run_sources_are_400s(api: openai.OpenAI) -> None:
    eval_id = make_eval(api)
    with pytest.raises(openai.BadRequestError) as caught:
        api.evals.runs.create(eval_id, data_source={"type": "responses", "source": {"type": "responses"}})
    assert caught.value.body["param"] == "data_source.type"
    with pytest.raises(openai.BadRequestError) as caught:
        api.evals.runs.create(eval_id, data_source={"type": "completions", "model": "no-such-model",
                                                    "input_messages": {"type": "item_reference",
                                                                       "item_reference": "item.messages"},
                                                    "source": {"type": "file_content", "content": LINES}})  # fmt: skip
    assert caught.value.body["param"] == "data_source.model"
    training = api.files.create(file=("train.jsonl", qa_jsonl()), purpose="fine-tune")
    with pytest.raises(openai.BadRequestError) as caught:
        api.evals.runs.create(eval_id, data_source={"type": "jsonl", "source": {"type": "file_id", "id": training.id}})
    assert caught.value.body["param"] == "data_source.source.id" and "evals" in caught.value.body["message"]


def test_cancel_stops_a_running_run(api: openai.OpenAI) -> None:
    slow = {"type": "python", "name": "slow", "pass_threshold": 0.5,
            "source": "import time\ndef grade(sample, item):\n    time.sleep(0.5)\n    return 1.0\n"}  # fmt: skip
    eval_id = make_eval(api, [slow])
    content = [{"item": {"question": str(i), "answer": "x"}, "sample": {"output_text": "x"}} for i in range(60)]
    run = api.evals.runs.create(eval_id, data_source={"type": "jsonl", "source": {"type": "file_content",
                                                                                 "content": content}})  # fmt: skip
    while api.evals.runs.retrieve(run.id, eval_id=eval_id).status == "queued":
        time.sleep(0.1)
    time.sleep(1.5)
    assert api.evals.runs.cancel(run.id, eval_id=eval_id).status == "canceled"
    time.sleep(2.5)  # the run notices within half a second; items in flight finish their grader
    stored = len(list(api.evals.runs.output_items.list(run.id, eval_id=eval_id, limit=100)))
    time.sleep(2)
    assert len(list(api.evals.runs.output_items.list(run.id, eval_id=eval_id, limit=100))) == stored < 60
    assert api.evals.runs.retrieve(run.id, eval_id=eval_id).status == "canceled"
    assert api.evals.runs.delete(run.id, eval_id=eval_id).deleted is True


def test_the_node_sdk_runs_graders_and_an_eval(evals_server: Server) -> None:
    node = shutil.which("node")
    assert node, "node is needed for this test"
    assert (NODE_DIR / "node_modules" / "openai").exists(), "run `npm ci --prefix tests/node` (CI does)"
    env = {**os.environ, "BASE_URL": evals_server.base_url, "API_KEY": evals_server.key,
           "OTHER_KEY": evals_server.other_key}  # fmt: skip
    result = subprocess.run([node, str(NODE_DIR / "evals.mjs")], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "node evals ok" in result.stdout
