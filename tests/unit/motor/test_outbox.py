"""The ``Outbox`` Protocol's semantics, written against the ``outbox``/``enqueue`` fixtures.

Runs on the test-only ``MemoryOutbox`` and on the stores' outboxes (SQLite,
PostgreSQL): the fixtures are parametrized over all three (``conftest.py``),
so the test double is held to the real backends' behaviour. Every time is
passed in (``now``), so nothing here depends on the wall clock.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from netcortex.contracts.outbox import JobState, Outbox
from tests.unit.motor.conftest import Enqueue, outcome

T0 = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    """``T0`` plus ``seconds``."""
    return T0 + timedelta(seconds=seconds)


class TestOutboxSemantics:
    async def test_one_job_per_outcome(self, outbox: Outbox, enqueue: Enqueue) -> None:
        """Writing the same outcome twice leaves one job (job id = outcome id)."""
        made = outcome()
        assert await enqueue([made], created_at=T0) == 1
        assert await enqueue([made], created_at=T0) == 0
        (job,) = await outbox.jobs(JobState.PENDING)
        assert (job.job_id, job.attempts, job.outcome) == (made.outcome_id, 0, made)

    async def test_claim_leases_due_jobs_oldest_first(
        self, outbox: Outbox, enqueue: Enqueue
    ) -> None:
        """Claim hands out due jobs oldest first, up to the limit, and not again while leased."""
        first, second, third = outcome(1), outcome(2), outcome(3)
        await enqueue([second], created_at=at(1))
        await enqueue([first], created_at=at(0))
        await enqueue([third], created_at=at(100))  # not due before t=100
        claimed = await outbox.claim(5, at(10), 30)
        assert [j.job_id for j in claimed] == [first.outcome_id, second.outcome_id]
        assert await outbox.claim(5, at(20), 30) == []  # leased until t=40
        again = await outbox.claim(1, at(41), 30)  # lease over: claimable again
        assert [j.job_id for j in again] == [first.outcome_id]

    async def test_retry_releases_and_reschedules(self, outbox: Outbox, enqueue: Enqueue) -> None:
        """``retry`` counts the attempt, keeps the error, and the job is due at the new time."""
        made = outcome()
        await enqueue([made], created_at=T0)
        await outbox.claim(1, at(0), 60)
        await outbox.retry(made.outcome_id, at(5), "HTTP 503")
        assert await outbox.claim(1, at(4), 60) == []
        (job,) = await outbox.claim(1, at(5), 60)
        assert (job.attempts, job.last_error, job.state) == (1, "HTTP 503", JobState.PENDING)

    async def test_delivered_and_dead_are_final(self, outbox: Outbox, enqueue: Enqueue) -> None:
        """A delivered or dead job is never claimed; a late retry or dead changes nothing."""
        ok, bad = outcome(1), outcome(2)
        await enqueue([ok, bad], created_at=T0)
        await outbox.claim(2, at(0), 60)
        await outbox.delivered(ok.outcome_id, 17, at(1))
        await outbox.delivered(ok.outcome_id, 17, at(2))  # idempotent
        await outbox.dead(bad.outcome_id, "device 'x' not in NetBox", at(1))
        # A worker whose lease ran out finishing late must not undo the result.
        await outbox.retry(ok.outcome_id, at(3), "late")
        await outbox.dead(ok.outcome_id, "late", at(3))
        await outbox.retry(bad.outcome_id, at(3), "late")
        assert await outbox.claim(5, at(1000), 60) == []
        (done,) = await outbox.jobs(JobState.DELIVERED)
        assert (done.job_id, done.entry_id, done.finished_at) == (ok.outcome_id, 17, at(1))
        (dead,) = await outbox.jobs(JobState.DEAD)
        assert (dead.job_id, dead.last_error) == (bad.outcome_id, "device 'x' not in NetBox")

    async def test_stats_and_retry_dead(self, outbox: Outbox, enqueue: Enqueue) -> None:
        """Stats count by state with the oldest pending time; ``retry_dead`` requeues."""
        a, b, c = outcome(1), outcome(2), outcome(3)
        await enqueue([a], created_at=at(0))
        await enqueue([b], created_at=at(1))
        await enqueue([c], created_at=at(2))
        await outbox.claim(3, at(3), 60)
        await outbox.delivered(a.outcome_id, 1, at(4))
        await outbox.dead(b.outcome_id, "HTTP 400", at(4))
        await outbox.retry(c.outcome_id, at(5), "HTTP 503")
        stats = await outbox.stats()
        assert (stats.pending, stats.delivered, stats.dead) == (1, 1, 1)
        assert stats.oldest_pending_at == at(2)
        assert await outbox.retry_dead() == 1
        assert (await outbox.stats()).dead == 0
        requeued = await outbox.claim(5, datetime.now(UTC) + timedelta(seconds=1), 60)
        assert b.outcome_id in {j.job_id for j in requeued}
        assert await outbox.retry_dead(["nope"]) == 0
