"""`/metrics` of the API and of a trainer worker's health port, read with the Prometheus client's
own parser: the series are there, labelled by route templates (never ids), and they move."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import Server, Stack, make_stack
from tests.support import chat_jsonl, free_port, wait_for_http, wait_for_job

REDIS_URL = "redis://127.0.0.1:6379/9"
JOB_ROUTE = "/v1/fine_tuning/jobs/{fine_tuning_job_id}"


def scrape(url: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Sample name → (labels, value) of every sample at `url`."""
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(httpx.get(url).text):
        samples.setdefault(family.name, [])
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((sample.labels, sample.value))
    return samples


def value(samples: dict[str, list[tuple[dict[str, str], float]]], name: str, **labels: str) -> float:
    return sum(v for found, v in samples.get(name, []) if all(found.get(k) == w for k, w in labels.items()))


@pytest.fixture(scope="module", name="stack")
def fx_stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    redis.Redis.from_url(REDIS_URL).flushdb()
    stack = make_stack(request, "sqlite-local", tmp_path_factory.mktemp("metrics"), REDIS_URL=REDIS_URL)
    try:
        yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="module", name="api")
def fx_api(stack: Stack) -> Server:
    return stack.start_api("--workers", "0", "--no-inference")


def test_api_metrics_count_requests_by_route_template_and_show_jobs(api: Server) -> None:
    client = api.client()
    training = client.files.create(file=("t.jsonl", chat_jsonl(10)), purpose="fine-tune")
    job = client.fine_tuning.jobs.create(model="tiny-chat", training_file=training.id)
    metrics_url = api.base_url.removesuffix("/v1") + "/metrics"
    before = scrape(metrics_url)
    for _ in range(3):
        client.fine_tuning.jobs.retrieve(job.id)
    httpx.get(f"{api.base_url}/fine_tuning/jobs/ftjob-nope", headers={"authorization": f"Bearer {api.key}"})
    after = scrape(metrics_url)
    counted = "ftserve_http_requests_total"
    labels = {"route": JOB_ROUTE, "method": "GET"}
    assert value(after, counted, **labels, status="200") - value(before, counted, **labels, status="200") == 3
    assert value(after, counted, **labels, status="404") - value(before, counted, **labels, status="404") == 1
    assert value(after, "ftserve_http_request_duration_seconds_count", **labels) >= 4
    every_label = {v for samples in after.values() for found, _ in samples for v in found.values()}
    assert not [v for v in every_label if "ftjob-" in v or "file-" in v], "ids never become labels"
    assert sum(v for _, v in after["ftserve_fine_tuning_jobs"]) >= 1
    for name in ("ftserve_queue_depth", "ftserve_eval_runs", "ftserve_webhook_deliveries",
                 "ftserve_webhook_attempts", "ftserve_gateway_upstream_seconds", "ftserve_gateway_upstream_errors",
                 "ftserve_gateway_tokens", "ftserve_event_streams"):  # fmt: skip
        assert name in after, name


def test_a_training_worker_shows_its_step_rate_on_its_health_port(stack: Stack, api: Server) -> None:
    port = free_port()
    stack.start_worker(FTSERVE_WORKER_HEALTH_PORT=str(port))
    wait_for_http(f"http://127.0.0.1:{port}/health")
    url = f"http://127.0.0.1:{port}/metrics"
    assert value(scrape(url), "ftserve_trainer_steps_total") == 0
    client = api.client()
    training = client.files.create(file=("t.jsonl", chat_jsonl(30)), purpose="fine-tune")
    job = client.fine_tuning.jobs.create(model="tiny-chat", training_file=training.id,
                                         hyperparameters={"n_epochs": 4, "batch_size": 1})  # fmt: skip
    wait_for_job(client, job.id, statuses=("running",))
    seen = {}
    while not (seen and value(seen, "ftserve_trainer_step_rate") > 0):
        seen = scrape(url)
        assert client.fine_tuning.jobs.retrieve(job.id).status == "running", "the job ended before a rate showed"
    assert value(seen, "ftserve_trainer_training") == 1
    assert value(seen, "ftserve_trainer_tokens_per_second") > 0
    assert value(seen, "ftserve_trainer_mfu") > 0  # the tests set a nominal peak
    assert value(seen, "ftserve_trainer_last_heartbeat_timestamp_seconds") > 0
    assert wait_for_job(client, job.id).status == "succeeded"
    assert value(scrape(url), "ftserve_trainer_steps_total") > 0
