"""The job state machine (`service.fine_tuning`) at the level of its functions.

Races are run for real: two sessions on two connections, released together by a barrier, on
SQLite and on PostgreSQL.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.db import create_engine, create_sessionmaker, upgrade_database
from service.db.models import File, FineTuningJob, FineTuningJobEvent, Organization
from service.fine_tuning import leases, states
from service.fine_tuning.leases import Lease
from service.ids import new_id, now_s
from service.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
ROUNDS = 200


Scenario = Callable[[async_sessionmaker[AsyncSession]], Awaitable[None]]


@pytest.fixture(params=["sqlite", "postgres"], name="run")
def fx_run(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[Scenario], None]:
    """Runs a scenario against a fresh, migrated database holding one organisation."""
    if request.param == "postgres":
        settings = Settings(database_url=request.getfixturevalue("new_postgres_database")(), data_dir=tmp_path)
    else:
        settings = Settings(data_dir=tmp_path)
    upgrade_database(settings)

    def run(scenario: Scenario) -> None:
        async def main() -> None:
            engine = create_engine(settings)
            maker = create_sessionmaker(engine)
            try:
                async with maker() as session:
                    if await session.get(Organization, "org-1") is None:
                        session.add(Organization(id="org-1", name="acme", created_at=now_s()))
                        await session.commit()
                await scenario(maker)
            finally:
                await engine.dispose()

        asyncio.run(main())

    return run


def _job(status: str = "queued") -> FineTuningJob:
    return FineTuningJob(
        id=new_id("ftjob-"), organization_id="org-1", model="tiny-chat", base_model="tiny-chat",
        training_file="file-x", seed=1, method={"type": "supervised"}, status=status, result_files=[],
        created_at=now_s(),
    )  # fmt: skip


async def _running(maker: async_sessionmaker[AsyncSession], lease_s: int = 30) -> Lease:
    job = _job()
    async with maker() as session:
        await states.create(session, job)
    lease = Lease(job.id, "worker-a", lease_s)
    async with maker() as session:
        assert await leases.claim(session, lease) is not None
    return lease


async def _together(maker: async_sessionmaker[AsyncSession], *calls: Callable[..., object]) -> list[object]:
    """Run each call in its own session, all released at once."""
    barrier = asyncio.Barrier(len(calls))

    async def one(call: Callable[..., object]) -> object:
        async with maker() as session:
            await session.execute(select(1))  # hold a connection before the barrier
            await barrier.wait()
            return await call(session)  # type: ignore[misc]

    return list(await asyncio.gather(*(one(c) for c in calls)))


async def _status_and_events(maker: async_sessionmaker[AsyncSession], job_id: str) -> tuple[str, list[str]]:
    async with maker() as session:
        status = await session.scalar(select(FineTuningJob.status).where(FineTuningJob.id == job_id))
        events = list(await session.scalars(
            select(FineTuningJobEvent.message).where(FineTuningJobEvent.job_id == job_id)
            .order_by(FineTuningJobEvent.seq)
        ))  # fmt: skip
    return str(status), events


def test_cancel_racing_the_finish_has_one_winner_that_the_events_and_answer_agree_with(run) -> None:  # type: ignore[no-untyped-def]
    run(_cancel_racing_the_finish)


async def _cancel_racing_the_finish(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    outcomes = {"cancelled": 0, "succeeded": 0}
    for i in range(ROUNDS):
        lease = await _running(sessionmaker)
        result = File(id=new_id("file-"), organization_id="org-1", filename="step_metrics.csv",
                      purpose="fine-tune-results", bytes=1, created_at=now_s(), status="processed",
                      storage_key=f"files/org-1/r{i}")  # fmt: skip
        cancelled, succeeded = await _together(
            sessionmaker,
            lambda s, lease=lease: states.cancel(s, lease.job_id, "org-1"),
            lambda s, lease=lease, result=result: leases.succeed(
                s, lease, fine_tuned_model="ft:x", trained_tokens=1, result_file=result
            ),
        )
        assert cancelled != succeeded, "exactly one of cancel and finish wins"
        status, events = await _status_and_events(sessionmaker, lease.job_id)
        last = events[-1]
        if cancelled:
            assert status == "cancelled" and last == "Job cancelled"
            assert "The job has successfully completed" not in events
        else:
            assert status == "succeeded" and last == "The job has successfully completed"
            assert "Job cancelled" not in events
        outcomes[status] += 1
        async with sessionmaker() as session:
            numbers = list(await session.scalars(
                select(FineTuningJobEvent.job_seq).where(FineTuningJobEvent.job_id == lease.job_id)
                .order_by(FineTuningJobEvent.seq)
            ))  # fmt: skip
        assert numbers == list(range(1, len(events) + 1)), "each job numbers its events 1, 2, 3… as they commit"
        # A cancelled job is never claimed again.
        async with sessionmaker() as session:
            assert await leases.claim(session, Lease(lease.job_id, "worker-b", 30)) is None
    print(f"cancel won {outcomes['cancelled']}, finish won {outcomes['succeeded']} of {ROUNDS}")


def test_a_cancel_before_the_worker_reads_it_is_not_overwritten_by_a_requeue_or_a_pause_save(run) -> None:  # type: ignore[no-untyped-def]
    run(_cancel_then_stop)


async def _cancel_then_stop(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    for reason in ("requeue", "pause"):
        lease = await _running(sessionmaker)
        async with sessionmaker() as session:
            assert await states.cancel(session, lease.job_id, "org-1")
        async with sessionmaker() as session:
            stopped = await leases.stop(session, lease, reason=reason, step=3, total_steps=9, resume_prefix="p/")  # type: ignore[arg-type]
        assert stopped is False
        status, events = await _status_and_events(sessionmaker, lease.job_id)
        assert status == "cancelled" and events[-1] == "Job cancelled"


def test_a_lapsed_lease_lets_its_worker_write_nothing(run) -> None:  # type: ignore[no-untyped-def]
    run(_lapsed_lease)


async def _lapsed_lease(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    lease = await _running(sessionmaker)
    async with sessionmaker() as session:  # the lease lapses (on the database's clock)
        await session.execute(
            update(FineTuningJob).where(FineTuningJob.id == lease.job_id).values(lease_expires_at=now_s() - 5)
        )
        await session.commit()
    _, before = await _status_and_events(sessionmaker, lease.job_id)
    async with sessionmaker() as session:
        assert await leases.renew(session, lease) is None
    async with sessionmaker() as session:
        from service.fine_tuning.events import job_event

        assert not await leases.report(session, lease, [job_event(lease.job_id, "Step 5/9", type="metrics", step=5)])
    async with sessionmaker() as session:
        assert not await leases.fail(session, lease, {"code": "x", "message": "late", "param": None})
    status, after = await _status_and_events(sessionmaker, lease.job_id)
    assert after == before and status == "running"
    # The reconciler's transition takes it back; another worker claims it.
    async with sessionmaker() as session:
        assert await states.requeue_lapsed(session, lease.job_id, max_restarts=3)
    async with sessionmaker() as session:
        assert await leases.claim(session, Lease(lease.job_id, "worker-b", 30)) is not None


def test_a_job_that_keeps_losing_its_worker_fails_after_max_restarts_and_a_checkpoint_resets_the_count(run) -> None:  # type: ignore[no-untyped-def]
    run(_restart_cap)


async def _lapse(sessionmaker: async_sessionmaker[AsyncSession], job_id: str) -> bool:
    async with sessionmaker() as session:
        await session.execute(
            update(FineTuningJob).where(FineTuningJob.id == job_id).values(lease_expires_at=now_s() - 5)
        )
        await session.commit()
    async with sessionmaker() as session:
        return await states.requeue_lapsed(session, job_id, max_restarts=2)


async def _restart_cap(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    from service.db.models import FineTuningJobCheckpoint

    lease = await _running(sessionmaker)
    for worker in ("b", "c"):  # two lost workers: requeued each time
        assert await _lapse(sessionmaker, lease.job_id)
        status, _ = await _status_and_events(sessionmaker, lease.job_id)
        assert status == "queued"
        lease = Lease(lease.job_id, f"worker-{worker}", 30)
        async with sessionmaker() as session:
            assert await leases.claim(session, lease) is not None
    # A checkpoint is progress: the count starts again.
    checkpoint = FineTuningJobCheckpoint(
        id=new_id("ftckpt-"), job_id=lease.job_id, created_at=now_s(), step_number=4, metrics={},
        fine_tuned_model_checkpoint="ft:tiny-chat:acme::x:ckpt-step-4", storage_prefix="jobs/x/checkpoints/step-4/",
    )  # fmt: skip
    async with sessionmaker() as session:
        assert await leases.record_checkpoint(session, lease, checkpoint, keep=3) is not None
    for worker in ("d", "e"):
        assert await _lapse(sessionmaker, lease.job_id)
        lease = Lease(lease.job_id, f"worker-{worker}", 30)
        async with sessionmaker() as session:
            assert await leases.claim(session, lease) is not None
    # The third lapse without a checkpoint fails the job, and says why.
    assert await _lapse(sessionmaker, lease.job_id)
    status, events = await _status_and_events(sessionmaker, lease.job_id)
    assert status == "failed"
    assert "stopped responding 3 times" in events[-1]
    async with sessionmaker() as session:
        job = await session.scalar(select(FineTuningJob).where(FineTuningJob.id == lease.job_id))
        assert job is not None and job.error and job.error["code"] == "trainer_lost"
        assert job.worker_id is None and job.finished_at


def test_metrics_of_a_step_reported_again_replace_the_earlier_ones(run) -> None:  # type: ignore[no-untyped-def]
    run(_metrics_replaced)


async def _metrics_replaced(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    from service.fine_tuning.events import job_event

    lease = await _running(sessionmaker)
    for step in (1, 2, 3, 4):
        async with sessionmaker() as session:
            assert await leases.report(session, lease, [job_event(lease.job_id, f"Step {step}", type="metrics",
                                                                  step=step)])  # fmt: skip
    for step in (3, 4, 5):  # a resumed attempt, from the checkpoint at step 2
        async with sessionmaker() as session:
            assert await leases.report(session, lease, [job_event(lease.job_id, f"Step {step} again",
                                                                  type="metrics", step=step)])  # fmt: skip
    _, events = await _status_and_events(sessionmaker, lease.job_id)
    steps = [e for e in events if e.startswith("Step")]
    assert steps == ["Step 1", "Step 2", "Step 3 again", "Step 4 again", "Step 5 again"]


WRITERS = re.compile(
    r"update\(\s*FineTuningJob\b"  # an UPDATE of job rows
    r"|insert\(\s*FineTuningJob\b"  # an INSERT of job or event rows
    r"|(?<!class )FineTuningJobEvent\("  # an event row made by hand
    r"|\bjob\.(status|worker_id|lease_expires_at)\s*=[^=]"  # job state set on a loaded row
)


def test_only_the_state_machine_writes_job_state() -> None:
    """No module outside `service/fine_tuning/` updates job rows or creates event rows."""
    owner = ROOT / "service" / "fine_tuning"
    offenders = []
    for package in ("service", "trainer", "inference"):
        for path in (ROOT / package).rglob("*.py"):
            if owner in path.parents or "migrations" in path.parts:
                continue
            for number, line in enumerate(path.read_text().splitlines(), start=1):
                if WRITERS.search(line):
                    offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert offenders == []
    # ... and the check does find such a write where there is one.
    assert WRITERS.search("await session.execute(update(FineTuningJob).values(status='x'))")
    assert WRITERS.search("job.status = 'queued'") and not WRITERS.search("if job.status == 'queued':")


def test_validating_a_large_file_holds_no_lock_that_other_writers_wait_for(tmp_path: Path) -> None:
    """A ~200 MB file validating on SQLite beside 20 uploads' and 20 job creations' writes: none
    fails, and no write waits a second for the database's lock (timed by an engine hook around
    each write statement, where SQLite's lock wait happens)."""
    import json
    import time

    from sqlalchemy import event

    from service.storage import open_storage
    from service.validation import validate

    settings = Settings(data_dir=tmp_path)
    upgrade_database(settings)
    storage = open_storage((tmp_path / "objects").as_uri())
    line = json.dumps({"messages": [{"role": "user", "content": "What is 7?"},
                                    {"role": "assistant", "content": "It is seven."}]}).encode() + b"\n"  # fmt: skip
    lines = (200 * 1024 * 1024) // len(line)
    storage.put_stream("files/org-1/file-big", (line * 1000 for _ in range(lines // 1000)))

    class Queue:  # validation enqueues the job it moved; the queue itself is not under test here
        async def enqueue_job(self, *args: object, **kwargs: object) -> None:
            return None

    async def scenario() -> tuple[list[float], int, str]:
        engine = create_engine(settings)
        waits: list[float] = []

        @event.listens_for(engine.sync_engine, "before_cursor_execute")
        def started(conn, cursor, statement, parameters, context, executemany) -> None:  # type: ignore[no-untyped-def]
            conn.info["started"] = time.monotonic()

        @event.listens_for(engine.sync_engine, "after_cursor_execute")
        def finished(conn, cursor, statement, parameters, context, executemany) -> None:  # type: ignore[no-untyped-def]
            if statement.lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE")):
                waits.append(time.monotonic() - conn.info.pop("started"))

        maker = create_sessionmaker(engine)
        async with maker() as session:
            session.add(Organization(id="org-1", name="acme", created_at=now_s()))
            await session.commit()
            big = "files/org-1/file-big"
            session.add(File(id="file-big", organization_id="org-1", filename="big.jsonl", purpose="fine-tune",
                             bytes=1, created_at=now_s(), status="processed", storage_key=big))  # fmt: skip
            job = _job("validating_files")
            job.training_file = "file-big"
            await states.create(session, job)
        validation = asyncio.create_task(validate(maker, storage, Queue(), job.id))  # type: ignore[arg-type]

        async def upload() -> None:  # an upload's row, as the API writes it
            async with maker() as session:
                file_id = new_id("file-")
                key = f"files/org-1/{file_id}"
                session.add(File(id=file_id, organization_id="org-1", filename="u.jsonl", purpose="fine-tune",
                                 bytes=1, created_at=now_s(), status="processed", storage_key=key))  # fmt: skip
                await session.commit()

        async def create() -> None:
            async with maker() as session:
                await states.create(session, _job("validating_files"))

        done = 0
        while not validation.done():
            await asyncio.gather(upload(), create())
            done += 1
            await asyncio.sleep(0.1)
        await validation
        status, _ = await _status_and_events(maker, job.id)
        await engine.dispose()
        return waits, done, status

    waits, writes, status = asyncio.run(scenario())
    print(f"{writes} upload and job writes during validation; longest write {max(waits) * 1000:.0f} ms")
    assert status == "queued", "the file validated"
    assert writes >= 20, "the writes ran while the file was being validated"
    assert max(waits) < 1.0
