"""The streaming JSONL checker: codes, line numbers, and chunk boundaries anywhere."""

from __future__ import annotations

import json

import pytest

from service.datasets import JsonlChecker
from service.errors import InvalidFileError
from tests.support import chat_jsonl


def check(data: bytes, chunk: int) -> int:
    checker = JsonlChecker(param="training_file")
    for start in range(0, len(data), chunk):
        checker.feed(data[start : start + chunk])
    return checker.close()


@pytest.mark.parametrize("chunk", [1, 7, 64, 10_000])
def test_counts_examples_whatever_the_chunking(chunk: int) -> None:
    data = chat_jsonl(25) + b"\n   \n" + chat_jsonl(5)  # blank lines are skipped
    assert check(data, chunk) == 30


@pytest.mark.parametrize("chunk", [3, 1000])
def test_error_names_the_line_and_param(chunk: int) -> None:
    bad = json.dumps({"messages": [{"role": "user", "content": "x"}, {"role": "robot", "content": "y"}]}).encode()
    data = chat_jsonl(4) + b"\n" + bad + b"\n" + chat_jsonl(1)
    with pytest.raises(InvalidFileError) as caught:
        check(data, chunk)
    assert caught.value.code == "invalid_role"
    assert caught.value.param == "training_file"
    assert "line 6:" in caught.value.message
    assert "messages[1]" in caught.value.message


def test_weight_only_on_assistant_messages() -> None:
    line = {"messages": [{"role": "user", "content": "q", "weight": 1}, {"role": "assistant", "content": "a"}]}
    with pytest.raises(InvalidFileError) as caught:
        check(json.dumps(line).encode(), 100)
    assert caught.value.code == "invalid_weight"
    ok = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a", "weight": 0}]}
    assert check(json.dumps(ok).encode(), 100) == 1


def test_preference_examples_need_both_outputs() -> None:
    line = {
        "input": {"messages": [{"role": "user", "content": "q"}]},
        "preferred_completion": [{"role": "assistant", "content": "good"}],
    }
    with pytest.raises(InvalidFileError) as caught:
        check(json.dumps(line).encode(), 100)
    assert caught.value.code == "missing_preference_output"
    line["non_preferred_completion"] = [{"role": "assistant", "content": "bad"}]  # older key names
    assert check(json.dumps(line).encode(), 100) == 1


def test_an_endless_line_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("service.datasets.MAX_LINE_BYTES", 1000)
    with pytest.raises(InvalidFileError) as caught:
        check(b'{"messages": "' + b"x" * 5000, 100)
    assert caught.value.code == "line_too_long"
