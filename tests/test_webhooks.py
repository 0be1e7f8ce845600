"""Webhooks end to end: `ftserve webhooks add`, a job's final state, a delivery the official SDK's
`client.webhooks.unwrap` accepts; retries after a receiver error; deliveries pending when the API
is killed are sent after its restart; private targets refused without the operator's leave."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from collections.abc import Iterator

import httpx
import openai
import pytest
import redis

from service.settings import Settings
from service.webhooks.sender import Attempt, attempt
from service.webhooks.signing import new_secret, sign
from service.webhooks.targets import RefusedTarget, resolve
from tests.conftest import BIN, Server, Stack, make_stack
from tests.support import chat_jsonl
from tests.webhook_receiver import Receiver, serve

REDIS_URL = "redis://127.0.0.1:6379/8"


@pytest.fixture(scope="module", name="stack")
def fx_stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    redis.Redis.from_url(REDIS_URL).flushdb()
    stack = make_stack(request, "sqlite-local", tmp_path_factory.mktemp("webhooks"), REDIS_URL=REDIS_URL,
                       FTSERVE_WEBHOOK_ALLOW_PRIVATE="1", FTSERVE_WEBHOOK_RETRY_BASE_S="0.3",
                       FTSERVE_WEBHOOK_POLL_S="0.1")  # fmt: skip
    try:
        yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="module", name="api")
def fx_api(stack: Stack) -> Server:
    return stack.start_api("--workers", "0", "--no-inference")


def ftserve(stack: Stack, *args: str) -> str:
    return subprocess.run([str(BIN / "ftserve"), *args], env=stack.env, capture_output=True, text=True,
                          check=True).stdout  # fmt: skip


def add_endpoint(stack: Stack, url: str, *events: str) -> str:
    """The new endpoint's secret (the last line `ftserve webhooks add` prints)."""
    flags = [arg for event in events for arg in ("--event", event)]
    return ftserve(stack, "webhooks", "add", "--org", "acme", "--url", url, *flags).strip().splitlines()[-1]


def cancelled_job(client: openai.OpenAI) -> str:
    training = client.files.create(file=("t.jsonl", chat_jsonl(10)), purpose="fine-tune")
    job = client.fine_tuning.jobs.create(model="tiny-chat", training_file=training.id)
    client.fine_tuning.jobs.cancel(job.id)
    return job.id


def wait_until(predicate, timeout_s: float = 60.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        time.sleep(0.1)


@pytest.fixture(name="receiver")
def fx_receiver(stack: Stack) -> Iterator[tuple[Receiver, str, str]]:
    receiver = Receiver()
    server = serve(receiver)
    url = f"http://127.0.0.1:{server.server_address[1]}/hooks"
    receiver.secret = add_endpoint(stack, url, "fine_tuning.job.cancelled")
    endpoint_id = next(line.split("\t")[0] for line in ftserve(stack, "webhooks", "list").splitlines()
                       if url in line)  # fmt: skip
    try:
        yield receiver, url, endpoint_id
    finally:
        ftserve(stack, "webhooks", "remove", endpoint_id)
        server.shutdown()


def test_a_delivery_is_verified_by_the_sdk_and_retried_after_receiver_errors(
    stack: Stack, api: Server, receiver: tuple[Receiver, str, str]
) -> None:
    hook, _, endpoint_id = receiver
    hook.failing = 2
    job_id = cancelled_job(api.client())
    wait_until(lambda: len(hook.events) == 1)
    ((webhook_id, event),) = hook.events.items()
    assert event.type == "fine_tuning.job.cancelled"
    assert event.data.id == job_id
    assert event.id.startswith("evt_") and event.object == "event"
    assert not hook.refused
    # Three attempts (two answered 500), each with the same webhook-id and its own signature.
    assert [a["webhook-id"] for a in hook.attempts] == [webhook_id] * 3
    assert all(a["webhook-signature"].startswith("v1,") for a in hook.attempts)
    # An admin key sees the endpoint and the delivery; a plain key is refused.
    admin = ftserve(stack, "keys", "create", "--org", "acme", "--admin").strip().splitlines()[-1]
    auth = {"authorization": f"Bearer {admin}"}
    endpoints = httpx.get(f"{api.base_url}/organization/webhooks", headers=auth).json()["data"]
    assert endpoint_id in [e["id"] for e in endpoints] and "secret" not in endpoints[0]
    deliveries = httpx.get(f"{api.base_url}/organization/webhooks/deliveries", headers=auth,
                           params={"endpoint_id": endpoint_id}).json()["data"]  # fmt: skip
    assert [(d["id"], d["status"], d["attempts"]) for d in deliveries] == [(webhook_id, "delivered", 3)]
    plain = httpx.get(f"{api.base_url}/organization/webhooks", headers={"authorization": f"Bearer {api.key}"})
    assert plain.status_code == 403 and plain.json()["error"]["code"] == "insufficient_permissions"


def test_deliveries_pending_when_the_api_is_killed_are_sent_after_its_restart(
    stack: Stack, api: Server, receiver: tuple[Receiver, str, str]
) -> None:
    hook, _, _ = receiver
    hook.failing = 10**6  # the receiver is down
    job_ids = {cancelled_job(api.client()) for _ in range(3)}
    wait_until(lambda: len(hook.attempts) >= 3)
    proc = stack.procs[-1]
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    seen_before = len(hook.attempts)
    hook.failing = 0  # the receiver is back, the API is not
    time.sleep(1.0)
    assert len(hook.attempts) == seen_before and not hook.events
    restarted = stack.start_api("--workers", "0", "--no-inference")
    wait_until(lambda: len(hook.events) == 3)
    assert {e.data.id for e in hook.events.values()} == job_ids
    time.sleep(1.0)  # nothing is sent again once delivered
    assert len(hook.events) == 3 and len({a["webhook-id"] for a in hook.attempts}) == 3
    assert restarted.base_url == api.base_url


def test_an_endpoint_only_gets_the_event_types_it_asked_for(
    stack: Stack, api: Server, receiver: tuple[Receiver, str, str]
) -> None:
    hook, _, _ = receiver
    other = Receiver()
    server = serve(other)
    other.secret = add_endpoint(stack, f"http://127.0.0.1:{server.server_address[1]}/", "fine_tuning.job.succeeded")
    try:
        cancelled_job(api.client())
        wait_until(lambda: len(hook.events) == 1)
        time.sleep(0.5)
        assert other.attempts == []
    finally:
        server.shutdown()


def test_a_private_target_is_refused_without_the_setting() -> None:
    hook = Receiver(secret=new_secret())
    server = serve(hook)
    url = f"http://localhost:{server.server_address[1]}/hooks"
    item = Attempt("wh_1", "fine_tuning.job.failed", '{"id": "evt_1"}', url, hook.secret, 1, int(time.time()))

    async def send(allow_private: bool):  # type: ignore[no-untyped-def]
        async with httpx.AsyncClient() as client:
            return await attempt(client, Settings(webhook_allow_private=allow_private), item)

    try:
        refused = asyncio.run(send(False))
        assert not refused.delivered and refused.final and "FTSERVE_WEBHOOK_ALLOW_PRIVATE" in (refused.error or "")
        assert hook.attempts == []  # nothing was sent
        allowed = asyncio.run(send(True))
        assert allowed.delivered and len(hook.events) == 1
        # The connection went to the checked address; the Host header keeps the name.
        assert hook.attempts[0]["host"] == f"localhost:{server.server_address[1]}"
    finally:
        server.shutdown()
    for address in ("10.1.2.3", "169.254.169.254", "::1", "fd00::1", "100.64.0.1", "0.0.0.0"):
        with pytest.raises(RefusedTarget):
            asyncio.run(resolve(f"http://{address if ':' not in address else f'[{address}]'}/", allow_private=False))


def test_signatures_are_accepted_by_the_sdk_and_bound_to_the_body() -> None:
    secret = new_secret()
    body = b'{"id":"evt_1","object":"event","type":"eval.run.succeeded","created_at":1,"data":{"id":"evalrun_1"}}'
    headers = sign(secret, "wh_1", int(time.time()), body)
    sdk = openai.OpenAI(api_key="unused")
    assert sdk.webhooks.unwrap(body, headers, secret=secret).type == "eval.run.succeeded"
    with pytest.raises(openai.InvalidWebhookSignatureError):
        sdk.webhooks.unwrap(body.replace(b"evalrun_1", b"evalrun_2"), headers, secret=secret)
    stale = sign(secret, "wh_1", int(time.time()) - 600, body)  # a retry re-signs with a fresh timestamp
    with pytest.raises(openai.InvalidWebhookSignatureError):
        sdk.webhooks.unwrap(body, stale, secret=secret)


def test_an_eval_run_that_completes_sends_eval_run_succeeded(stack: Stack, api: Server) -> None:
    hook = Receiver()
    server = serve(hook)
    hook.secret = add_endpoint(stack, f"http://127.0.0.1:{server.server_address[1]}/", "eval.run.succeeded")
    try:
        client = api.client()
        eval_id = client.evals.create(
            name="echo", data_source_config={"type": "custom", "item_schema": {"type": "object"},
                                             "include_sample_schema": True},
            testing_criteria=[{"type": "string_check", "name": "same", "input": "{{sample.output_text}}",
                               "reference": "{{item.answer}}", "operation": "eq"}],
        ).id  # fmt: skip
        lines = [{"item": {"answer": "Paris"}, "sample": {"output_text": "Paris"}}]
        source = {"type": "jsonl", "source": {"type": "file_content", "content": lines}}
        run = client.evals.runs.create(eval_id, data_source=source)  # type: ignore[arg-type]
        wait_until(lambda: len(hook.events) == 1)
        (event,) = hook.events.values()
        assert (event.type, event.data.id) == ("eval.run.succeeded", run.id)
        assert client.evals.runs.retrieve(run.id, eval_id=eval_id).status == "completed"
    finally:
        server.shutdown()


def test_two_senders_never_claim_the_same_delivery(new_postgres_database) -> None:  # type: ignore[no-untyped-def]
    """Two senders (two API processes) claiming at the same moment on PostgreSQL get disjoint rows."""
    from sqlalchemy import update

    from service.db import create_engine, create_sessionmaker, upgrade_database
    from service.db.models import Organization, WebhookDelivery, WebhookEndpoint
    from service.webhooks import outbox
    from service.webhooks.sender import claim

    settings = Settings(DATABASE_URL=new_postgres_database(), webhook_timeout_s=30)
    upgrade_database(settings)

    async def race() -> list[tuple[list[str], list[str]]]:
        engine = create_engine(settings)
        try:
            sessions = create_sessionmaker(engine)
            async with sessions() as session:
                session.add(Organization(id="org-1", name="acme", created_at=0))
                session.add(WebhookEndpoint(id="we_1", organization_id="org-1", url="http://x/", secret=new_secret(),
                                            created_at=0))  # fmt: skip
                await session.flush()
                for n in range(40):
                    await outbox.record(session, "org-1", "fine_tuning.job.failed", f"ftjob-{n}")
                await session.commit()

            async def one() -> list[str]:
                async with sessions() as session:
                    return [a.delivery_id for a in await claim(session, settings)]

            rounds = []
            for _ in range(5):
                rounds.append(await asyncio.gather(one(), one()))
                async with sessions() as session:  # due again, unclaimed, for the next round
                    await session.execute(update(WebhookDelivery).values(claimed_until=None))
                    await session.commit()
            return rounds
        finally:
            await engine.dispose()

    for first, second in asyncio.run(race()):
        assert not set(first) & set(second)
        assert len(first) + len(second) >= 20  # one claimed a batch, the other what it could
