"""`/v1/fine_tuning/alpha/graders/validate` and `/run` with the official SDK against `ftserve up`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from tests.conftest import Server, make_stack


@pytest.fixture(scope="module", name="graders_server")
def fx_graders_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    stack = make_stack(request, "sqlite-local", Path(tmp_path_factory.mktemp("graders")))
    try:
        yield stack.start_api("--no-inference")
    finally:
        stack.stop()


@pytest.fixture(name="api")
def fx_api(graders_server: Server) -> openai.OpenAI:
    return graders_server.client()


STRING = {"type": "string_check", "name": "exact", "input": "{{sample.output_text}}",
          "reference": "{{item.answer}}", "operation": "eq"}  # fmt: skip
SIMILAR = {"type": "text_similarity", "name": "close", "input": "{{sample.output_text}}",
           "reference": "{{item.answer}}", "evaluation_metric": "rouge_1"}  # fmt: skip
PYTHON = {"type": "python", "name": "py",
          "source": "def grade(sample, item):\n    return len(sample['output_text']) / 10\n"}  # fmt: skip
MULTI = {"type": "multi", "name": "both", "graders": {"exact": STRING, "close": SIMILAR},
         "calculate_output": "(exact + close) / 2"}  # fmt: skip
# The form of the SDK's type: one grader, which the formula names by its `name`.
MULTI_ONE = {"type": "multi", "name": "one", "graders": SIMILAR, "calculate_output": "min(close * 2, 1)"}


@pytest.mark.parametrize("grader", [STRING, SIMILAR, PYTHON, MULTI_ONE], ids=lambda g: g["type"])
def test_validate_returns_the_grader(api: openai.OpenAI, grader: dict) -> None:
    validated = api.fine_tuning.alpha.graders.validate(grader=grader)
    assert validated.grader is not None and validated.grader.type == grader["type"]
    assert validated.grader.name == grader["name"]


def test_run_each_type(api: openai.OpenAI) -> None:
    item = {"answer": "the cat sat"}
    exact = api.fine_tuning.alpha.graders.run(grader=STRING, model_sample="the cat sat", item=item)
    assert exact.reward == 1.0 and exact.metadata.type == "string_check" and exact.metadata.scores == {"exact": 1.0}
    close = api.fine_tuning.alpha.graders.run(grader=SIMILAR, model_sample="the cat sat down", item=item)
    assert close.reward == pytest.approx(2 * 1 * 0.75 / 1.75)  # P = 3/4, R = 1: F1 = 6/7
    py = api.fine_tuning.alpha.graders.run(grader=PYTHON, model_sample="12345", item=item)
    assert py.reward == 0.5 and py.metadata.errors.python_grader_runtime_error is False
    both = api.fine_tuning.alpha.graders.run(grader=MULTI, model_sample="the cat", item=item)
    assert both.sub_rewards["exact"] == 0.0 and both.reward == pytest.approx(both.sub_rewards["close"] / 2)
    one = api.fine_tuning.alpha.graders.run(grader=MULTI_ONE, model_sample="the cat", item=item)
    assert one.sub_rewards == {"close": pytest.approx(0.8)} and one.reward == 1.0
    assert both.metadata.execution_time >= 0 and both.api_model_grader_token_usage_per_model == {}


def test_grader_mistakes_are_metadata_errors_not_500s(api: openai.OpenAI) -> None:
    missing = api.fine_tuning.alpha.graders.run(grader=STRING, model_sample="x", item={"other": 1})
    assert missing.reward == 0.0 and missing.metadata.errors.invalid_variable_error
    raises = {**PYTHON, "source": "def grade(sample, item):\n    raise RuntimeError('boom')\n"}
    failed = api.fine_tuning.alpha.graders.run(grader=raises, model_sample="x")
    assert failed.metadata.errors.python_grader_runtime_error
    assert "boom" in (failed.metadata.errors.python_grader_runtime_error_details or "")
    escape = {**PYTHON, "source": "import socket\ndef grade(s, i):\n    socket.create_connection(('1.1.1.1', 80), 2)\n"}
    assert api.fine_tuning.alpha.graders.run(
        grader=escape, model_sample="x"
    ).metadata.errors.python_grader_runtime_error


@pytest.mark.parametrize(
    ("grader", "param"),
    [
        ({**STRING, "operation": "regex"}, "grader.operation"),
        ({**SIMILAR, "evaluation_metric": "cosine"}, "grader.evaluation_metric"),
        ({**STRING, "input": "{{env.HOME}}"}, "grader.input"),
        ({**MULTI, "calculate_output": "__import__('os')"}, "grader.calculate_output"),
        ({"type": "label_model", "name": "l"}, "grader.type"),
        ({**PYTHON, "source": "def nope(): pass"}, "grader.source"),
        ({"type": "score_model", "name": "s", "model": "no-such-model",
          "input": [{"role": "user", "content": "{{sample.output_text}}"}]}, "grader.model"),
    ],
)  # fmt: skip
def test_invalid_graders_are_400s(api: openai.OpenAI, grader: dict, param: str) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        api.fine_tuning.alpha.graders.validate(grader=grader)
    assert caught.value.status_code == 400 and caught.value.body["param"] == param
    with pytest.raises(openai.BadRequestError):
        api.fine_tuning.alpha.graders.run(grader=grader, model_sample="x")
