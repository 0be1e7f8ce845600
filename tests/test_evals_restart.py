"""An eval run survives a restart of `ftserve up` in its middle: it resumes, storing each item once."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.conftest import make_stack

SLOW = {"type": "python", "name": "slow", "pass_threshold": 0.5,
        "source": "import time\ndef grade(sample, item):\n    time.sleep(0.3)\n    return 1.0\n"}  # fmt: skip
ITEMS = 40


def test_run_resumes_after_a_restart(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    stack = make_stack(request, "sqlite-local", tmp_path, FTSERVE_EVAL_CONCURRENCY="2")
    try:
        api = stack.start_api("--no-inference").client()
        evaluation = api.evals.create(
            name="restart", data_source_config={"type": "custom", "item_schema": {"type": "object"}},
            testing_criteria=[SLOW],
        )  # fmt: skip
        content = [{"item": {"i": i}, "sample": {"output_text": "x"}} for i in range(ITEMS)]
        source = {"type": "jsonl", "source": {"type": "file_content", "content": content}}
        run = api.evals.runs.create(evaluation.id, data_source=source)
        while len(api.evals.runs.output_items.list(run.id, eval_id=evaluation.id, limit=100).data) < 4:
            time.sleep(0.2)
        stack.stop()  # every process of the deployment, in the middle of the run
        api = stack.start_api("--no-inference").client()  # a fresh start sees the run unfinished…
        stored = len(api.evals.runs.output_items.list(run.id, eval_id=evaluation.id, limit=100).data)
        assert stored < ITEMS
        stack.stop()  # …and a second restart while it resumes
        before = stack.procs[:]
        api = stack.start_api("--no-inference").client()
        assert len(stack.procs) == len(before) + 1
        deadline = time.monotonic() + 120
        while (done := api.evals.runs.retrieve(run.id, eval_id=evaluation.id)).status != "completed":
            assert done.status in ("queued", "in_progress") and time.monotonic() < deadline, done
            time.sleep(0.5)
        assert done.result_counts.total == ITEMS and done.result_counts.passed == ITEMS
        items = list(api.evals.runs.output_items.list(run.id, eval_id=evaluation.id, limit=100))
        assert sorted(i.datasource_item_id for i in items) == list(range(ITEMS))
    finally:
        stack.stop()
