"""``IncidentWorker``: outcomes in, incidents saved and published (issue 8, item 3).

A real ``SqliteIncidentStore`` in ``tmp_path`` and the in-memory bus; the
correlator's clock is a fake one moved by the test, so nothing sleeps on windows.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from netcortex.app import Engine
from netcortex.association import Correlator
from netcortex.association.engine import IncidentWorker
from netcortex.config import AssociationConfig, Config
from netcortex.contracts.bus import EventBus, Subscription
from netcortex.contracts.events import Severity
from netcortex.contracts.incidents import Incident, IncidentState
from netcortex.contracts.memory import SemanticMemory
from netcortex.contracts.reflex import OutcomeKind, ReflexOutcome
from netcortex.errors import InvalidSubject, StoreError
from netcortex.memory.episodic.incidents import SqliteIncidentStore
from netcortex.metrics import Counter, Registry
from netcortex.reflex.sinks import AssociationSink
from netcortex.thalamus.subjects import incident_subject
from tests.unit.association.conftest import R1N_SW, SW1N_UP, T0

BusFactory = Callable[..., Awaitable[Any]]


class Clock:
    """A settable clock for the correlator."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def outcome(n: int, handler: str, target: str, at: datetime) -> ReflexOutcome:
    """A logged outcome of ``handler`` about ``target``."""
    return ReflexOutcome(
        outcome_id=f"o{n}-{handler}-{target}",
        handler_id=handler,
        event_id=f"e{n}",
        subject=f"reflex.{handler}.logged",
        kind=OutcomeKind.LOGGED,
        severity=Severity.HIGH if handler.endswith("down") else Severity.INFO,
        target=target,
        device=target.partition("|")[0],
        occurred_at=at,
        recorded_at=at,
    )


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteIncidentStore]:
    s = SqliteIncidentStore(tmp_path / "outcomes.db")
    await s.start()
    yield s
    await s.close()


@pytest.fixture
async def bus(bus_factory: BusFactory) -> EventBus:
    bus: EventBus = await bus_factory("memory")
    return bus


def make_worker(
    memory: SemanticMemory,
    store: Any,
    bus: EventBus,
    clock: Clock,
    metrics: Registry | None = None,
    **kw: Any,
) -> IncidentWorker:
    return IncidentWorker(
        Correlator(memory, AssociationConfig()),
        store,
        bus,
        subject=incident_subject,
        metrics=metrics,
        clock=clock,
        **kw,
    )


async def next_message(sub: Subscription) -> tuple[str, dict[str, Any]]:
    msg = await sub.next(timeout=2.0)
    await msg.ack()
    return msg.subject, json.loads(msg.data)


async def cable_cut(worker: IncidentWorker, clock: Clock) -> None:
    sink = AssociationSink(worker.submit)
    await sink.emit(outcome(1, "link_down", R1N_SW, clock.now))
    clock.advance(2)
    await sink.emit(outcome(2, "link_down", SW1N_UP, clock.now))
    async with asyncio.timeout(5):
        await worker.idle()


async def test_cable_cut_opens_one_incident_saved_and_published(
    memory: SemanticMemory, store: SqliteIncidentStore, bus: EventBus
) -> None:
    clock = Clock()
    metrics = Registry()
    sub = await bus.subscribe("incident.>")
    worker = make_worker(memory, store, bus, clock, metrics)
    assert await worker.start() == 0
    try:
        await cable_cut(worker, clock)
        (saved,) = await store.open_incidents()
        assert saved.rule == "cable_pair"
        assert set(saved.members) == {R1N_SW, SW1N_UP}
        subject, payload = await next_message(sub)
        assert subject == f"incident.opened.{saved.incident_id}"
        assert payload["incident_id"] == saved.incident_id
        assert payload["state"] == "open"
        assert payload["rule"] == "cable_pair"
        assert payload["version"] == saved.version
        transitions = metrics.get("netcortex_incidents_transitions_total")
        assert isinstance(transitions, Counter)
        assert transitions.value(rule="cable_pair", kind="opened") == 1
        assert "netcortex_incidents_open 1" in metrics.render()

        # Both ends come back: resolved, saved and published.
        sink = AssociationSink(worker.submit)
        clock.advance(30)
        await sink.emit(outcome(3, "link_up", R1N_SW, clock.now))
        await sink.emit(outcome(4, "link_up", SW1N_UP, clock.now))
        async with asyncio.timeout(5):
            await worker.idle()
        got = await store.get(saved.incident_id)
        assert got is not None
        assert got.state == IncidentState.RESOLVED
        assert await store.open_incidents() == []
        kinds = []
        for _ in range(5):
            subject, payload = await next_message(sub)
            kinds.append(subject.split(".")[1])
            if subject.startswith("incident.resolved."):
                break
        assert kinds[-1] == "resolved"
        assert subject == f"incident.resolved.{saved.incident_id}"
        assert payload["state"] == "resolved"
        assert payload["resolved_at"] is not None
        assert "netcortex_incidents_open 0" in metrics.render()
    finally:
        await worker.stop()
        await sub.close()


async def test_restart_restores_open_incidents(
    memory: SemanticMemory, tmp_path: Path, bus: EventBus
) -> None:
    clock = Clock()
    path = tmp_path / "outcomes.db"
    async with SqliteIncidentStore(path) as first_store:
        first = make_worker(memory, first_store, bus, clock)
        await first.start()
        await cable_cut(first, clock)
        await first.stop()
        (opened,) = await first_store.open_incidents()

    async with SqliteIncidentStore(path) as second_store:
        second = make_worker(memory, second_store, bus, clock)
        assert await second.start() == 1
        try:
            assert [i.incident_id for i in second.correlator.open_incidents()] == [
                opened.incident_id
            ]
            clock.advance(60)
            second.submit(outcome(3, "link_up", R1N_SW, clock.now))
            second.submit(outcome(4, "link_up", SW1N_UP, clock.now))
            async with asyncio.timeout(5):
                await second.idle()
            got = await second_store.get(opened.incident_id)
            assert got is not None
            assert got.state == IncidentState.RESOLVED
        finally:
            await second.stop()


class FailingStore:
    """An incident store whose saves always fail."""

    def __init__(self) -> None:
        self.saves = 0

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def save(self, incident: Incident) -> bool:
        self.saves += 1
        raise StoreError("disk full")

    async def get(self, incident_id: str) -> Incident | None:
        return None

    async def query(self, query: object) -> list[Incident]:
        return []

    async def open_incidents(self) -> list[Incident]:
        return []


class FailingBus:
    """A bus whose publishes always fail."""

    async def publish(self, subject: str, data: bytes, *, msg_id: str | None = None) -> None:
        raise ConnectionError("bus down")


async def test_failing_store_and_bus_are_logged_counted_and_survived(
    memory: SemanticMemory,
) -> None:
    clock = Clock()
    metrics = Registry()
    store = FailingStore()
    worker = make_worker(memory, store, FailingBus(), clock, metrics)  # type: ignore[arg-type]
    await worker.start()
    try:
        await cable_cut(worker, clock)
        sink = AssociationSink(worker.submit)
        clock.advance(30)
        await sink.emit(outcome(3, "link_up", R1N_SW, clock.now))
        await sink.emit(outcome(4, "link_up", SW1N_UP, clock.now))
        async with asyncio.timeout(5):
            await worker.idle()
        assert worker.running
        failures = metrics.get("netcortex_incidents_failures_total")
        assert isinstance(failures, Counter)
        assert failures.value(op="save") == store.saves >= 2
        assert failures.value(op="publish") >= store.saves
        assert worker.correlator.open_incidents() == []
    finally:
        await worker.stop()


async def test_full_queue_drops_and_counts_without_blocking(
    memory: SemanticMemory, store: SqliteIncidentStore, bus: EventBus
) -> None:
    clock = Clock()
    metrics = Registry()
    worker = make_worker(memory, store, bus, clock, metrics, queue_size=1)
    worker.submit(outcome(0, "link_down", R1N_SW, clock.now))  # not started: ignored
    await worker.start()
    try:
        # No await in between: the worker's task cannot take any of them yet.
        for n in range(1, 4):
            worker.submit(outcome(n, "link_down", R1N_SW, clock.now))
        dropped = metrics.get("netcortex_incidents_dropped_total")
        assert isinstance(dropped, Counter)
        assert dropped.total() == 2
        async with asyncio.timeout(5):
            await worker.idle()
    finally:
        await worker.stop()
    assert not worker.running


async def test_stop_drains_what_is_queued(
    memory: SemanticMemory, store: SqliteIncidentStore, bus: EventBus
) -> None:
    clock = Clock()
    worker = make_worker(memory, store, bus, clock)
    await worker.start()
    worker.submit(outcome(1, "link_down", R1N_SW, clock.now))
    worker.submit(outcome(2, "link_down", SW1N_UP, clock.now))
    await worker.stop(timeout=5)
    assert len(await store.open_incidents()) == 1
    # After stop nothing is taken.
    worker.submit(outcome(3, "link_up", R1N_SW, clock.now))
    assert worker.pending == 0


def test_incident_subject_is_one_token_per_part() -> None:
    assert incident_subject("opened", "ab12") == "incident.opened.ab12"
    for state, incident_id in (("opened", "a.b"), ("", "ab"), ("re solved", "ab")):
        with pytest.raises(InvalidSubject):
            incident_subject(state, incident_id)


@pytest.mark.parametrize(
    ("graph", "sinks"),
    [
        (False, ["log", "store", "association", "bus"]),
        (True, ["log", "store", "graph", "association", "bus"]),
    ],
)
def test_engine_offers_every_stored_outcome_to_the_correlator(
    tmp_path: Path, graph: bool, sinks: list[str]
) -> None:
    """``association.enabled`` (the default): a sink after the store (and the graph
    mirror) feeds the worker, and the incident store exists; disabled, neither."""
    base: dict[str, Any] = {
        "store": {"sqlite_path": str(tmp_path / "o.db")},
        "trap": {"enabled": False},
        "http": {"enabled": False},
        "graph": {"enabled": graph},
    }
    on = Engine(Config.model_validate(base))
    assert [s.name for s in on.pipeline.sinks] == sinks
    assert isinstance(on.incidents, IncidentWorker)
    assert isinstance(on.incident_store, SqliteIncidentStore)
    off = Engine(Config.model_validate({**base, "association": {"enabled": False}}))
    assert "association" not in [s.name for s in off.pipeline.sinks]
    assert off.incidents is None
    assert off.incident_store is None


async def test_restore_of_naive_fact_times_keeps_ticking(
    memory: SemanticMemory, store: SqliteIncidentStore, bus: EventBus
) -> None:
    # A stored fact time without an offset (hand-edited or older row) must not make
    # every later tick fail comparing naive and aware datetimes.
    clock = Clock()
    first = make_worker(memory, store, bus, clock)
    await first.start()
    await cable_cut(first, clock)
    await first.stop()
    (opened,) = await store.open_incidents()
    facts = {
        member: {**fact, "at": datetime.fromisoformat(fact["at"]).replace(tzinfo=None).isoformat()}
        for member, fact in opened.details["facts"].items()
    }
    naive = dataclasses.replace(opened, details={**opened.details, "facts": facts})
    correlator = Correlator(memory, AssociationConfig())
    correlator.restore([naive])
    for step in range(0, 3600, 30):
        correlator.tick(clock.now + timedelta(seconds=step))
