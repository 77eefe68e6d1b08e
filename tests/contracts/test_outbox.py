"""Contract suite for the journal ``Outbox``: SQLite and PostgreSQL pass the same tests.

Each backend gives a factory of outbox instances on one shared location and an
``enqueue`` that writes job rows the way the outcome store's writer does (the
same SQL, in one transaction). The tests contain no backend branches.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from netcortex.config import StoreConfig
from netcortex.contracts.events import Severity
from netcortex.contracts.incidents import IncidentState
from netcortex.contracts.outbox import JobState, Outbox, incident_job_id
from netcortex.contracts.reflex import ReflexOutcome
from netcortex.errors import StoreError
from netcortex.memory.episodic.outbox import (
    SQLITE_JOBS_INSERT,
    SQLITE_JOBS_SCHEMA,
    JournalHook,
    PostgresOutbox,
    SqliteOutbox,
    job_row,
)
from netcortex.memory.episodic.postgres import PostgresOutcomeStore
from netcortex.memory.episodic.sqlite import SqliteOutcomeStore
from netcortex.testing import make_event
from tests.unit.motor.conftest import incident

T0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
LEASE = 30.0


@dataclass
class Backend:
    """One database under test: outboxes and outcome stores on one location."""

    new: Callable[[], Any]
    enqueue: Callable[[Sequence[ReflexOutcome], datetime], Awaitable[None]]
    #: ``new_store(journal, retention_days=0)``: an unstarted outcome store on the
    #: same location
    new_store: Callable[..., Any]
    #: ``await raw(sql)``: one statement on the location, behind everyone's back
    raw: Callable[[str], Awaitable[None]]


def _us(moment: datetime) -> int:
    return int((moment - datetime(1970, 1, 1, tzinfo=UTC)) / timedelta(microseconds=1))


def _sqlite(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    path = tmp_path / "nc.db"

    async def enqueue(outcomes: Sequence[ReflexOutcome], created: datetime) -> None:
        def run() -> None:
            with sqlite3.connect(path) as conn:
                for statement in SQLITE_JOBS_SCHEMA:
                    conn.execute(statement)
                conn.executemany(
                    SQLITE_JOBS_INSERT,
                    [(*job_row(o), _us(created), _us(created)) for o in outcomes],
                )

        await asyncio.to_thread(run)

    async def raw(sql: str) -> None:
        def run() -> None:
            with sqlite3.connect(path) as conn:
                conn.execute(sql)

        await asyncio.to_thread(run)

    config = StoreConfig(sqlite_path=path, flush_interval=0.005)
    return Backend(
        new=lambda: SqliteOutbox(path),
        enqueue=enqueue,
        new_store=lambda journal, retention_days=0: SqliteOutcomeStore(
            config.model_copy(update={"retention_days": retention_days}), journal=journal
        ),
        raw=raw,
    )


def _postgres(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    dsn: str = request.getfixturevalue("postgres_dsn")
    schema: str = request.getfixturevalue("postgres_schema")

    async def enqueue(outcomes: Sequence[ReflexOutcome], created: datetime) -> None:
        conn = await asyncpg.connect(dsn, timeout=10)
        try:
            async with conn.transaction():
                await PostgresOutbox.migrate(conn, schema, "test")
                rows = [job_row(o) for o in outcomes]
                await conn.execute(
                    PostgresOutbox.insert_sql(schema),
                    [r[0] for r in rows],
                    [r[1] for r in rows],
                    [created] * len(rows),
                    [created] * len(rows),
                )
        finally:
            await conn.close()

    async def raw(sql: str) -> None:
        conn = await asyncpg.connect(dsn, timeout=10)
        try:
            await conn.execute(f'SET search_path TO "{schema}"; {sql}')
        finally:
            await conn.close()

    config = StoreConfig(
        backend="postgres", postgres_dsn=dsn, postgres_schema=schema, flush_interval=0.005
    )
    return Backend(
        new=lambda: PostgresOutbox(dsn, schema),
        enqueue=enqueue,
        new_store=lambda journal, retention_days=0: PostgresOutcomeStore(
            config.model_copy(update={"retention_days": retention_days}), journal=journal
        ),
        raw=raw,
    )


@pytest.fixture(params=[pytest.param(_sqlite, id="sqlite"), pytest.param(_postgres, id="postgres")])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    factory: Callable[[pytest.FixtureRequest, Path], Backend] = request.param
    return factory(request, tmp_path)


@pytest.fixture
async def outbox(backend: Backend) -> Any:
    box = backend.new()
    await box.start()
    yield box
    await box.close()


def _outcomes(n: int, prefix: str = "sw") -> list[ReflexOutcome]:
    made = []
    for i in range(n):
        event = make_event("link_down", device=f"{prefix}{i}", interface="Gi1/0/1")
        outcome = ReflexOutcome.for_event(
            "link_down", event, severity=Severity.HIGH, summary=f"Gi1/0/1 on {prefix}{i} down"
        )
        made.append(replace(outcome, recorded_at=T0))
    return made


def test_both_outboxes_satisfy_the_protocol(backend: Backend) -> None:
    """Type-checked by mypy; at run time: every Protocol method is present."""
    box: Outbox = backend.new()
    for name in (
        "claim",
        "delivered",
        "retry",
        "dead",
        "jobs",
        "stats",
        "retry_dead",
        "upsert_incident",
        "supersede",
    ):
        assert callable(getattr(box, name))


async def test_claim_leases_due_jobs_once_until_the_lease_ends(
    backend: Backend, outbox: Any
) -> None:
    """Claimed jobs are not claimed again while leased; after the lease they are."""
    made = _outcomes(3)
    await backend.enqueue(made, T0)
    first = await outbox.claim(10, T0, LEASE)
    assert sorted(j.job_id for j in first) == sorted(o.outcome_id for o in made)
    assert all(j.state is JobState.PENDING and j.attempts == 0 for j in first)
    assert {j.job_id: j.outcome for j in first} == {o.outcome_id: o for o in made}
    assert await outbox.claim(10, T0 + timedelta(seconds=LEASE - 1), LEASE) == []
    again = await outbox.claim(10, T0 + timedelta(seconds=LEASE), LEASE)
    assert len(again) == 3


async def test_claim_honours_limit_and_next_attempt(backend: Backend, outbox: Any) -> None:
    """``limit`` caps a claim; a retried job waits for its ``next_attempt_at``."""
    made = _outcomes(5)
    await backend.enqueue(made, T0)
    two = await outbox.claim(2, T0, LEASE)
    assert len(two) == 2
    later = T0 + timedelta(minutes=5)
    await outbox.retry(two[0].job_id, later, "HTTP 503 from NetBox")
    rest = await outbox.claim(10, T0, LEASE)
    assert {j.job_id for j in rest} == {o.outcome_id for o in made} - {j.job_id for j in two}
    for job in [two[1], *rest]:
        await outbox.delivered(job.job_id, None, T0)
    assert await outbox.claim(10, later - timedelta(seconds=1), LEASE) == []
    (retried,) = await outbox.claim(10, later, LEASE)
    assert retried.job_id == two[0].job_id
    assert retried.attempts == 1
    assert retried.last_error == "HTTP 503 from NetBox"
    assert retried.next_attempt_at == later


async def test_enqueueing_a_job_twice_keeps_one(backend: Backend, outbox: Any) -> None:
    """The job id is the outcome id: a re-recorded outcome makes no second job."""
    made = _outcomes(2)
    await backend.enqueue(made, T0)
    await backend.enqueue(made, T0 + timedelta(seconds=1))
    assert (await outbox.stats()).pending == 2


async def test_delivered_and_dead_are_final_and_counted(backend: Backend, outbox: Any) -> None:
    """Delivered keeps the entry id; dead keeps the reason; late retries change nothing."""
    a, b, c = _outcomes(3)
    await backend.enqueue([a, b, c], T0)
    await outbox.claim(10, T0, LEASE)
    done = T0 + timedelta(seconds=2)
    await outbox.delivered(a.outcome_id, 4711, done)
    await outbox.delivered(a.outcome_id, 4711, done)  # idempotent
    await outbox.dead(b.outcome_id, "HTTP 400: device sw1 not in NetBox", done)
    await outbox.retry(a.outcome_id, done, "late answer of an expired lease")
    await outbox.retry(b.outcome_id, done, "late answer of an expired lease")
    stats = await outbox.stats()
    assert (stats.pending, stats.delivered, stats.dead) == (1, 1, 1)
    assert stats.oldest_pending_at == T0
    (delivered,) = await outbox.jobs(JobState.DELIVERED)
    assert (delivered.job_id, delivered.entry_id, delivered.finished_at) == (
        a.outcome_id,
        4711,
        done,
    )
    (dead,) = await outbox.jobs(JobState.DEAD)
    assert dead.job_id == b.outcome_id
    assert dead.last_error == "HTTP 400: device sw1 not in NetBox"
    assert dead.attempts == 1
    (left,) = await outbox.claim(10, done + timedelta(hours=1), LEASE)
    assert left.job_id == c.outcome_id


async def test_retry_dead_requeues_all_or_the_named(backend: Backend, outbox: Any) -> None:
    """``retry_dead`` moves dead jobs back to pending, due now."""
    made = _outcomes(3)
    await backend.enqueue(made, T0)
    for o in made:
        await outbox.dead(o.outcome_id, "HTTP 404", T0)
    assert await outbox.retry_dead([made[0].outcome_id, "no-such-job"]) == 1
    assert (await outbox.stats()).dead == 2
    assert await outbox.retry_dead() == 2
    stats = await outbox.stats()
    assert (stats.pending, stats.dead) == (3, 0)
    # The age restarts: a requeued job is not "too old" at once.
    assert stats.oldest_pending_at is not None
    assert stats.oldest_pending_at > datetime.now(UTC) - timedelta(minutes=1)
    claimed = await outbox.claim(10, datetime.now(UTC) + timedelta(seconds=1), LEASE)
    assert len(claimed) == 3


async def test_no_pending_means_no_oldest(outbox: Any) -> None:
    """An empty outbox has zero counts and no oldest pending job."""
    stats = await outbox.stats()
    assert (stats.pending, stats.delivered, stats.dead, stats.oldest_pending_at) == (0, 0, 0, None)


async def test_two_workers_never_claim_the_same_job(backend: Backend, outbox: Any) -> None:
    """Two outbox instances claiming concurrently split the jobs with no overlap."""
    made = _outcomes(120)
    await backend.enqueue(made, T0)
    other = backend.new()
    await other.start()
    try:
        seen: list[list[str]] = [[], []]

        async def drain(box: Any, into: list[str]) -> None:
            while batch := await box.claim(7, T0, LEASE):
                into.extend(j.job_id for j in batch)
                await asyncio.sleep(0)

        await asyncio.gather(drain(outbox, seen[0]), drain(other, seen[1]))
    finally:
        await other.close()
    assert not set(seen[0]) & set(seen[1])
    assert sorted(seen[0] + seen[1]) == sorted(o.outcome_id for o in made)


async def test_long_errors_are_clipped(backend: Backend, outbox: Any) -> None:
    """A huge error text (a whole HTML error page) is stored clipped."""
    (o,) = _outcomes(1)
    await backend.enqueue([o], T0)
    await outbox.retry(o.outcome_id, T0, "x" * 100_000)
    (job,) = await outbox.jobs(JobState.PENDING)
    assert 0 < len(job.last_error) <= 2000


async def test_naive_times_and_closed_outbox_are_store_errors(backend: Backend) -> None:
    """Naive datetimes and calls before start / after close raise ``StoreError``."""
    box = backend.new()
    with pytest.raises(StoreError, match="not open"):
        await box.stats()
    await box.start()
    with pytest.raises(StoreError, match="timezone-aware"):
        await box.claim(1, datetime(2026, 5, 1, 12, 0), LEASE)
    await box.close()
    await box.close()
    with pytest.raises(StoreError, match="not open"):
        await box.claim(1, T0, LEASE)


# ------------------------------------------------------------------ with the store


def _wants_even(outcome: ReflexOutcome) -> bool:
    return outcome.target.startswith(("sw0", "sw2", "sw4", "sw6", "sw8"))


async def test_the_store_writes_jobs_with_their_outcomes(backend: Backend, outbox: Any) -> None:
    """Outcomes the policy wants get a job (the outcome itself, exactly); the others
    none; re-recording makes no second job; ``committed`` hears each committed job."""
    heard: list[int] = []
    store = backend.new_store(JournalHook(wants=_wants_even, committed=heard.append))
    made = _outcomes(6)
    await store.start()
    try:
        for outcome in made:
            await store.record(outcome)
        await store.flush()
        for outcome in made:  # redelivery
            await store.record(outcome)
        await store.flush()
        assert await store.get(made[1].outcome_id) == made[1]
    finally:
        await store.close()
    wanted = {o.outcome_id: o for o in made if _wants_even(o)}
    assert len(wanted) == 3
    jobs = await outbox.claim(10, datetime.now(UTC) + timedelta(seconds=1), LEASE)
    assert {j.job_id: j.outcome for j in jobs} == wanted
    assert sum(heard) >= 3
    assert (await outbox.stats()).pending == 3


async def test_a_failing_policy_costs_the_job_never_the_outcome(
    backend: Backend, outbox: Any
) -> None:
    """A policy that raises: the outcome is stored without a job."""

    def broken(outcome: ReflexOutcome) -> bool:
        raise RuntimeError("policy bug")

    store = backend.new_store(JournalHook(wants=broken))
    (outcome,) = _outcomes(1)
    await store.start()
    try:
        await store.record(outcome)
        await store.flush()
        assert await store.get(outcome.outcome_id) == outcome
    finally:
        await store.close()
    assert (await outbox.stats()).pending == 0


async def test_outcome_and_job_commit_together_or_not_at_all(backend: Backend, outbox: Any) -> None:
    """When the job cannot be written, its outcome is not written either (one
    transaction): the batch fails as a whole and ``flush`` says so."""
    store = backend.new_store(JournalHook(wants=lambda o: True))
    (outcome,) = _outcomes(1)
    await store.start()
    try:
        await backend.raw("DROP TABLE journal_jobs")
        await store.record(outcome)
        with pytest.raises(StoreError):
            await store.flush()
        assert await store.get(outcome.outcome_id) is None
    finally:
        await store.close()


async def test_store_retention_prunes_finished_jobs_and_keeps_pending_ones(
    backend: Backend, outbox: Any
) -> None:
    """The store's ``prune`` also deletes delivered and dead jobs finished before its
    cutoff (the outbox does not grow forever); pending and newer ones stay."""
    made = _outcomes(5)
    await backend.enqueue(made, T0)
    early = T0 + timedelta(seconds=1)
    assert len(await outbox.claim(10, early, LEASE)) == 5
    await outbox.delivered(made[0].outcome_id, 1, early)
    await outbox.dead(made[1].outcome_id, "HTTP 404", early)
    await outbox.delivered(made[2].outcome_id, 3, T0 + timedelta(days=9))
    await outbox.dead(made[3].outcome_id, "too old", T0 + timedelta(days=9))
    store = backend.new_store(None, retention_days=7)
    await store.start()
    try:
        await store.prune(now=T0 + timedelta(days=10))
    finally:
        await store.close()
    stats = await outbox.stats()
    assert (stats.pending, stats.delivered, stats.dead) == (1, 1, 1)
    assert [j.job_id for j in await outbox.jobs(JobState.DELIVERED)] == [made[2].outcome_id]


async def test_an_undecodable_job_is_dead_lettered_and_blocks_nothing(
    backend: Backend, outbox: Any
) -> None:
    """A job whose stored outcome no longer decodes (another schema version, a hand
    edit) is dead-lettered with the reason by ``claim``; the other jobs are claimed,
    and listings skip it instead of failing."""
    made = _outcomes(3)
    await backend.enqueue(made, T0)
    bad = made[1].outcome_id
    await backend.raw(
        "UPDATE journal_jobs SET outcome = replace(outcome, '\"schema_version\":1', "
        f"'\"schema_version\":999') WHERE job_id = '{bad}'"
    )
    jobs = await outbox.claim(10, T0 + timedelta(seconds=1), LEASE)
    assert sorted(j.job_id for j in jobs) == sorted(
        o.outcome_id for o in made if o.outcome_id != bad
    )
    stats = await outbox.stats()
    assert (stats.pending, stats.dead) == (2, 1)
    assert await outbox.jobs(JobState.DEAD) == []
    assert len(await outbox.jobs(JobState.PENDING)) == 2


# ------------------------------------------------------------- incident jobs (issue 8)


async def test_upsert_incident_inserts_then_replaces_only_older_versions(
    backend: Backend, outbox: Any
) -> None:
    """The first version makes ``incident:<id>`` (due now); a newer version replaces
    the payload; an equal or older one changes nothing."""
    v1, v2 = incident(1), incident(2, evidence=("a" * 32, "b" * 32, "c" * 32))
    job_id = incident_job_id(v1.incident_id)
    assert ":" not in _outcomes(1)[0].outcome_id  # outcome ids never look like one
    assert await outbox.upsert_incident(v1, T0) is True
    assert await outbox.upsert_incident(v2, T0 + timedelta(seconds=1)) is True
    assert await outbox.upsert_incident(v2, T0 + timedelta(seconds=2)) is False
    assert await outbox.upsert_incident(v1, T0 + timedelta(seconds=3)) is False
    (job,) = await outbox.claim(10, T0 + timedelta(seconds=1), LEASE)
    assert job.job_id == job_id
    assert job.outcome is None
    assert job.incident == v2
    assert (job.state, job.attempts, job.created_at) == (JobState.PENDING, 0, T0)
    assert job.next_attempt_at == T0 + timedelta(seconds=1)
    assert (await outbox.stats()).pending == 1


async def test_a_new_version_requeues_a_finished_job_and_keeps_its_entry(
    backend: Backend, outbox: Any
) -> None:
    """Delivered (or dead) incident job + a newer version → pending again, due now,
    attempts 0, no error, not finished, ``entry_id`` kept, ``created`` restarted."""
    await outbox.upsert_incident(incident(1), T0)
    job_id = incident_job_id(incident(1).incident_id)
    assert len(await outbox.claim(10, T0, LEASE)) == 1
    await outbox.retry(job_id, T0, "HTTP 503", version=1)
    await outbox.claim(10, T0, LEASE)
    await outbox.delivered(job_id, 4711, T0 + timedelta(seconds=2), version=1)
    (done,) = await outbox.jobs(JobState.DELIVERED)
    assert (done.entry_id, done.attempts) == (4711, 1)

    later = T0 + timedelta(minutes=5)
    resolved = incident(2, state=IncidentState.RESOLVED)
    assert await outbox.upsert_incident(resolved, later) is True
    (again,) = await outbox.jobs(JobState.PENDING)
    assert again.incident == resolved
    assert (again.entry_id, again.attempts, again.last_error) == (4711, 0, "")
    assert (again.created_at, again.next_attempt_at, again.finished_at) == (later, later, None)
    (claimed,) = await outbox.claim(10, later, LEASE)
    assert claimed.entry_id == 4711

    # Dead, then a newer version: pending again too.
    await outbox.dead(job_id, "HTTP 400", later, version=2)
    assert (await outbox.stats()).dead == 1
    assert await outbox.upsert_incident(incident(3), later) is True
    stats = await outbox.stats()
    assert (stats.pending, stats.dead) == (1, 0)


async def test_a_pending_job_keeps_its_created_time_across_versions(
    backend: Backend, outbox: Any
) -> None:
    """While pending, ``created`` (what ``max_age_seconds`` measures) stays the first
    version's; the lease is cleared so the new version is claimable at once."""
    await outbox.upsert_incident(incident(1), T0)
    assert len(await outbox.claim(10, T0, LEASE)) == 1
    assert await outbox.claim(10, T0, LEASE) == []  # leased
    await outbox.upsert_incident(incident(2), T0 + timedelta(seconds=5))
    (job,) = await outbox.claim(10, T0 + timedelta(seconds=5), LEASE)
    assert job.incident is not None
    assert job.incident.version == 2
    assert job.created_at == T0


async def test_an_attempt_on_an_older_version_never_finishes_the_newer_one(
    backend: Backend, outbox: Any
) -> None:
    """The race: version 1 is claimed and written; version 2 is upserted before the
    attempt ends. ``delivered(version=1)`` must not mark version 2 delivered (it only
    notes the entry id, so version 2 updates that entry); a late ``retry`` or
    ``dead`` of version 1 changes nothing either. Version 2's own attempt then
    finishes the job."""
    job_id = incident_job_id(incident(1).incident_id)
    await outbox.upsert_incident(incident(1), T0)
    (first,) = await outbox.claim(10, T0, LEASE)
    assert first.incident is not None
    assert first.incident.version == 1
    await outbox.upsert_incident(incident(2), T0 + timedelta(seconds=1))
    # version 1's attempt ends now, after the upsert
    await outbox.delivered(job_id, 77, T0 + timedelta(seconds=2), version=1)
    await outbox.retry(job_id, T0 + timedelta(hours=1), "late retry of v1", version=1)
    await outbox.dead(job_id, "late dead of v1", T0 + timedelta(seconds=2), version=1)
    stats = await outbox.stats()
    assert (stats.pending, stats.delivered, stats.dead) == (1, 0, 0)
    (second,) = await outbox.claim(10, T0 + timedelta(seconds=2), LEASE)
    assert second.incident is not None
    assert second.incident.version == 2
    assert (second.entry_id, second.attempts, second.last_error) == (77, 0, "")
    await outbox.delivered(job_id, 77, T0 + timedelta(seconds=3), version=2)
    (done,) = await outbox.jobs(JobState.DELIVERED)
    assert (done.job_id, done.entry_id) == (job_id, 77)
    assert done.incident is not None
    assert done.incident.version == 2


async def test_supersede_moves_only_pending_outcome_jobs(backend: Backend, outbox: Any) -> None:
    """Pending outcome jobs become ``superseded`` (finished, with the reason); delivered,
    dead, incident and unknown jobs are left alone; the count is what moved."""
    a, b, c, d = _outcomes(4)
    await backend.enqueue([a, b, c, d], T0)
    await outbox.upsert_incident(incident(1), T0)
    await outbox.claim(10, T0, LEASE)
    await outbox.delivered(c.outcome_id, 5, T0)
    await outbox.dead(d.outcome_id, "HTTP 404", T0)
    at = T0 + timedelta(seconds=3)
    reason = f"part of incident {incident(1).incident_id}"
    moved = await outbox.supersede(
        [
            a.outcome_id,
            b.outcome_id,
            b.outcome_id,
            c.outcome_id,
            d.outcome_id,
            incident_job_id(incident(1).incident_id),
            "no-such-job",
        ],
        reason,
        at,
    )
    assert moved == 2
    assert await outbox.supersede([a.outcome_id], reason, at) == 0
    assert await outbox.supersede([], reason, at) == 0
    stats = await outbox.stats()
    assert (stats.pending, stats.delivered, stats.dead, stats.superseded) == (1, 1, 1, 2)
    gone = await outbox.jobs(JobState.SUPERSEDED)
    assert sorted(j.job_id for j in gone) == sorted([a.outcome_id, b.outcome_id])
    assert {(j.last_error, j.finished_at) for j in gone} == {(reason, at)}
    # Superseded jobs are never claimed again.
    (left,) = await outbox.claim(10, T0 + timedelta(hours=1), LEASE)
    assert left.job_id == incident_job_id(incident(1).incident_id)


async def test_store_retention_prunes_superseded_jobs(backend: Backend, outbox: Any) -> None:
    """Superseded jobs are pruned like delivered and dead ones."""
    old, new = _outcomes(2)
    await backend.enqueue([old, new], T0)
    await outbox.supersede([old.outcome_id], "part of incident x", T0 + timedelta(seconds=1))
    await outbox.supersede([new.outcome_id], "part of incident x", T0 + timedelta(days=9))
    store = backend.new_store(None, retention_days=7)
    await store.start()
    try:
        await store.prune(now=T0 + timedelta(days=10))
    finally:
        await store.close()
    assert [j.job_id for j in await outbox.jobs(JobState.SUPERSEDED)] == [new.outcome_id]


async def test_the_store_holds_outcome_jobs_for_the_incident_hold(
    backend: Backend, outbox: Any
) -> None:
    """``JournalHook(hold_seconds=…)``: the job is written with its outcome but first
    due ``hold_seconds`` after it was written (the correlator's head start)."""
    store = backend.new_store(JournalHook(wants=lambda o: True, hold_seconds=600.0))
    (outcome,) = _outcomes(1)
    await store.start()
    try:
        await store.record(outcome)
        await store.flush()
    finally:
        await store.close()
    (job,) = await outbox.jobs(JobState.PENDING)
    assert job.next_attempt_at - job.created_at == timedelta(seconds=600)
    assert await outbox.claim(10, datetime.now(UTC) + timedelta(seconds=1), LEASE) == []
    (held,) = await outbox.claim(10, job.created_at + timedelta(seconds=600), LEASE)
    assert held.job_id == outcome.outcome_id


async def test_a_new_version_keeps_the_settle_delay_of_a_job_without_an_entry(
    backend: Backend, outbox: Any
) -> None:
    """A pending job without an entry whose retry is later than now (its POST timed
    out and may still land) keeps that retry when a newer version is upserted:
    searching before then would write a second entry. With an entry (a PATCH is
    idempotent) the newer version is due now."""
    job_id = incident_job_id(incident(1).incident_id)
    await outbox.upsert_incident(incident(1), T0)
    await outbox.claim(10, T0, LEASE)
    settle = T0 + timedelta(seconds=LEASE)
    await outbox.retry(job_id, settle, "timeout (the POST may still land)", version=1)
    assert await outbox.upsert_incident(incident(2), T0 + timedelta(seconds=1)) is True
    assert await outbox.claim(10, T0 + timedelta(seconds=1), LEASE) == []
    (job,) = await outbox.claim(10, settle, LEASE)
    assert job.incident is not None
    assert (job.incident.version, job.next_attempt_at) == (2, settle)

    await outbox.delivered(job_id, 5, settle, version=2)
    await outbox.upsert_incident(incident(3), settle)
    await outbox.claim(10, settle, LEASE)
    later = settle + timedelta(seconds=LEASE)
    await outbox.retry(job_id, later, "HTTP 503", version=3)
    at = settle + timedelta(seconds=1)
    assert await outbox.upsert_incident(incident(4), at) is True
    (due,) = await outbox.claim(10, at, LEASE)
    assert (due.entry_id, due.next_attempt_at) == (5, at)
