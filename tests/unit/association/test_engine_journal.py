"""``IncidentWorker`` with a journal: one NetBox journal job per incident (issue 8).

A real ``SqliteIncidentStore``, the in-memory bus and the test-only
``MemoryOutbox`` (faithful to the ``Outbox`` contract); the outcomes' own jobs
are put in the outbox first, as the outcome store would have written them.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from netcortex.app import Engine
from netcortex.association.engine import IncidentJournal, IncidentWorker
from netcortex.config import Config
from netcortex.contracts.bus import EventBus
from netcortex.contracts.incidents import Incident, IncidentState
from netcortex.contracts.memory import SemanticMemory
from netcortex.contracts.outbox import JobState, incident_job_id
from netcortex.errors import StoreError
from netcortex.memory.episodic.incidents import SqliteIncidentStore
from netcortex.metrics import Counter, Registry
from netcortex.motor.policy import JournalPolicy
from netcortex.reflex.sinks import AssociationSink
from tests.unit.association.conftest import R1N_SW, SW1N_UP
from tests.unit.association.test_engine_wiring import Clock, make_worker, outcome
from tests.unit.motor.memory_outbox import MemoryOutbox
from tests.unit.motor.test_delivery import wait_until

BusFactory = Callable[..., Awaitable[Any]]


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteIncidentStore]:
    s = SqliteIncidentStore(tmp_path / "outcomes.db")
    await s.start()
    yield s
    await s.close()


@pytest.fixture
async def bus(bus_factory: BusFactory) -> EventBus:
    made: EventBus = await bus_factory("memory")
    return made


class Recorder:
    """Counts ``notify`` and ``flush`` calls."""

    def __init__(self) -> None:
        self.notified = 0
        self.flushed = 0

    def notify(self) -> None:
        self.notified += 1

    async def flush(self) -> None:
        self.flushed += 1


def journal_for(
    box: Any, rec: Recorder, wants: Callable[[Incident], bool] | None = None
) -> IncidentJournal:
    return IncidentJournal(
        wants=wants or JournalPolicy().wants_incident,
        outbox=box,
        notify=rec.notify,
        flush=rec.flush,
    )


async def run(worker: IncidentWorker, clock: Clock, *steps: tuple[int, str, str]) -> None:
    """Emit ``(n, handler, target)`` outcomes 1 s apart and wait until handled."""
    sink = AssociationSink(worker.submit)
    for n, handler, target in steps:
        await sink.emit(outcome(n, handler, target, clock.now))
        clock.advance(1)
    async with asyncio.timeout(5):
        await worker.idle()


async def test_cable_cut_gets_one_incident_job_and_its_outcome_jobs_are_superseded(
    memory: SemanticMemory, store: SqliteIncidentStore, bus: EventBus
) -> None:
    """Both link-downs' jobs are superseded (the reason names the incident), the
    incident's job is written, the store flushed first and the delivery worker woken.
    Both link-ups later: the same job carries the resolved version and the recovery
    jobs are superseded too."""
    clock, box, rec = Clock(), MemoryOutbox(), Recorder()
    steps = [(1, "link_down", R1N_SW), (2, "link_down", SW1N_UP)]
    box.add_all(outcome(n, h, t, clock.now) for n, h, t in steps)
    worker = make_worker(memory, store, bus, clock, journal=journal_for(box, rec))
    await worker.start()
    try:
        await run(worker, clock, *steps)
        (opened,) = await store.open_incidents()
        job_id = incident_job_id(opened.incident_id)
        assert box.job(job_id).incident == opened
        gone = await box.jobs(JobState.SUPERSEDED)
        assert {j.job_id for j in gone} == set(opened.evidence)
        assert {j.last_error for j in gone} == {f"part of incident {opened.incident_id}"}
        assert rec.flushed >= 1
        assert rec.notified >= 1

        ups = [(3, "link_up", R1N_SW), (4, "link_up", SW1N_UP)]
        clock.advance(30)
        box.add_all(outcome(n, h, t, clock.now) for n, h, t in ups)
        await run(worker, clock, *ups)
        resolved = await store.get(opened.incident_id)
        assert resolved is not None
        assert resolved.state is IncidentState.RESOLVED
        job = box.job(job_id)
        assert job.incident == resolved
        assert job.state is JobState.PENDING
        stats = await box.stats()
        assert (stats.pending, stats.superseded) == (1, 4)
    finally:
        await worker.stop()


async def test_an_incident_below_the_threshold_gets_no_job(
    memory: SemanticMemory, store: SqliteIncidentStore, bus: EventBus
) -> None:
    """``min_severity: critical``: a high cable cut is not journaled and its outcome
    jobs are left alone (the policy decided about them on their own)."""
    clock, box, rec = Clock(), MemoryOutbox(), Recorder()
    steps = [(1, "link_down", R1N_SW), (2, "link_down", SW1N_UP)]
    box.add_all(outcome(n, h, t, clock.now) for n, h, t in steps)
    policy = JournalPolicy(min_severity="critical")
    worker = make_worker(
        memory, store, bus, clock, journal=journal_for(box, rec, policy.wants_incident)
    )
    await worker.start()
    try:
        await run(worker, clock, *steps)
    finally:
        await worker.stop()
    assert len(await store.open_incidents()) == 1
    assert (await box.stats()).pending == 2
    assert rec.notified == 0


async def test_a_journaled_incident_keeps_being_updated(
    memory: SemanticMemory, store: SqliteIncidentStore, bus: EventBus
) -> None:
    """Once an incident has a job, every later version updates it, whatever the
    policy says of that version."""
    clock, box, rec = Clock(), MemoryOutbox(), Recorder()
    asked: list[int] = []

    def only_first(incident: Incident) -> bool:
        asked.append(incident.version)
        return incident.version == 1

    worker = make_worker(memory, store, bus, clock, journal=journal_for(box, rec, only_first))
    await worker.start()
    try:
        await run(worker, clock, (1, "link_down", R1N_SW), (2, "link_down", SW1N_UP))
        await run(worker, clock, (3, "link_up", R1N_SW), (4, "link_up", SW1N_UP))
    finally:
        await worker.stop()
    (job,) = await box.jobs(JobState.PENDING)
    assert job.incident is not None
    assert job.incident.state is IncidentState.RESOLVED
    assert asked == [1]


class BrokenOutbox(MemoryOutbox):
    """An outbox whose incident writes fail."""

    async def upsert_incident(self, incident: Incident, now: datetime) -> bool:
        raise StoreError("database is locked")


async def test_a_failing_outbox_is_logged_counted_and_survived(
    memory: SemanticMemory, store: SqliteIncidentStore, bus: EventBus
) -> None:
    """The incident is still saved and published; the failure is counted as
    ``op="journal"``; the worker goes on."""
    clock, rec, metrics = Clock(), Recorder(), Registry()
    worker = make_worker(
        memory, store, bus, clock, metrics, journal=journal_for(BrokenOutbox(), rec)
    )
    await worker.start()
    try:
        await run(worker, clock, (1, "link_down", R1N_SW), (2, "link_down", SW1N_UP))
        assert worker.running
        assert len(await store.open_incidents()) == 1
    finally:
        await worker.stop()
    failures = metrics.get("netcortex_incidents_failures_total")
    assert isinstance(failures, Counter)
    assert failures.value(op="journal") >= 1
    assert rec.notified == 0


class FlakyOutbox(MemoryOutbox):
    """An outbox whose next ``failures`` incident writes fail."""

    def __init__(self) -> None:
        super().__init__()
        self.failures = 0

    async def upsert_incident(self, incident: Incident, now: datetime) -> bool:
        if self.failures > 0:
            self.failures -= 1
            raise StoreError("database is locked")
        return await super().upsert_incident(incident, now)


async def test_a_failed_journal_write_of_the_resolve_is_tried_again(
    memory: SemanticMemory, store: SqliteIncidentStore, bus: EventBus
) -> None:
    """The resolved version's write fails: nothing else will ever change the
    incident, so the worker tries it again (on a later tick) instead of leaving the
    entry saying "open" for good; the recovery jobs are superseded then too."""
    clock, box, rec = Clock(), FlakyOutbox(), Recorder()
    worker = make_worker(
        memory, store, bus, clock, journal=journal_for(box, rec), tick_interval=0.05,
        journal_retry=0.3,
    )  # fmt: skip
    await worker.start()
    try:
        await run(worker, clock, (1, "link_down", R1N_SW), (2, "link_down", SW1N_UP))
        (opened,) = await store.open_incidents()
        job_id = incident_job_id(opened.incident_id)
        ups = [(3, "link_up", R1N_SW), (4, "link_up", SW1N_UP)]
        box.add_all(outcome(n, h, t, clock.now) for n, h, t in ups)
        box.failures = 2  # the resolve's write fails, and its first retry
        await run(worker, clock, *ups)

        def resolved_written() -> bool:
            written = box.job(job_id).incident
            return written is not None and written.state is IncidentState.RESOLVED

        await wait_until(resolved_written, timeout=10, what="the resolve written")
        assert box.failures == 0
        assert box.job(job_id).incident == await store.get(opened.incident_id)
        assert (await box.stats()).superseded == 2  # the link-ups' jobs
    finally:
        await worker.stop()


@pytest.mark.parametrize(("association", "hold"), [(True, 12.5), (False, 0.0)])
def test_the_hold_applies_only_with_association(
    tmp_path: Path, association: bool, hold: float
) -> None:
    """``journal.incident_hold_seconds`` delays outcome jobs only when association is
    on (an incident may supersede them); without it outcome entries are not held,
    and the worker gets no journal."""
    engine = Engine(
        Config.model_validate(
            {
                "store": {"sqlite_path": str(tmp_path / "o.db")},
                "trap": {"enabled": False},
                "http": {"enabled": False},
                "association": {"enabled": association},
                "journal": {
                    "enabled": True,
                    "netbox_url": "http://127.0.0.1:9",
                    "netbox_token": "0123456789abcdef0123456789abcdef01234567",
                    "incident_hold_seconds": 12.5,
                },
            }
        )
    )
    hook = engine.store._journal  # type: ignore[attr-defined]
    assert hook is not None
    assert hook.hold_seconds == hold
    assert (engine.incidents is not None) is association
    if engine.incidents is not None:
        assert engine.incidents._journal is not None
        assert engine.incidents._journal.outbox is engine.outbox
