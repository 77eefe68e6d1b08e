"""Fixtures for the motor (NetBox journal) tests: outbox, enqueue, fake NetBox, outcomes.

The worker tests use only ``outbox`` (an ``Outbox``) and ``enqueue`` (write jobs
as a store's ``record`` would), so each runs on every outbox: the test-only
``MemoryOutbox``, ``SqliteOutbox`` on a file under ``tmp_path`` and
``PostgresOutbox`` in the test's own schema. ``enqueue(outcomes, created_at=None)``
leaves one pending job per new outcome, due at ``created_at`` (default: now),
and answers how many were new; on SQLite and PostgreSQL it runs the outcome
stores' own job insert (``SQLITE_JOBS_INSERT``, ``PostgresOutbox.insert_sql``) in
one transaction on a connection of its own, as the store's writer does.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from netcortex.contracts.events import Severity
from netcortex.contracts.incidents import Incident, IncidentState
from netcortex.contracts.outbox import Outbox
from netcortex.contracts.reflex import OutcomeKind, ReflexOutcome, outcome_id_for
from netcortex.memory.episodic.outbox import (
    SQLITE_JOBS_INSERT,
    PostgresOutbox,
    SqliteOutbox,
    job_row,
)
from netcortex.testing import make_event
from tests.fake_netbox import FakeNetbox, running_fake_netbox
from tests.unit.motor.memory_outbox import MemoryOutbox

Enqueue = Callable[..., Awaitable[int]]

#: The outbox backends every ``outbox``/``enqueue`` test runs on.
OUTBOX_BACKENDS = ("memory", "sqlite", "postgres")


@dataclass
class _Backend:
    """One outbox under test and the writer-side insert for it."""

    outbox: Any
    enqueue: Enqueue
    close: Callable[[], Awaitable[None]]


def _us(moment: datetime) -> int:
    return (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)


@dataclass(frozen=True)
class _Place:
    """Where one test's outbox lives: its backend and location."""

    backend: str
    path: Path
    dsn: str = ""
    schema: str = ""


async def _memory(place: _Place) -> _Backend:
    box = MemoryOutbox()

    async def add(outcomes: Iterable[ReflexOutcome], created_at: datetime | None = None) -> int:
        return box.add_all(outcomes, created_at)

    async def close() -> None:
        return None

    return _Backend(box, add, close)


async def _sqlite(place: _Place) -> _Backend:
    path = place.path
    box = SqliteOutbox(path)
    await box.start()  # creates the file and the job table, as the store's writer does

    def insert(outcomes: list[ReflexOutcome], created_us: int) -> int:
        conn = sqlite3.connect(path, timeout=5.0)
        try:
            with conn:
                cursor = conn.executemany(
                    SQLITE_JOBS_INSERT,
                    [(*job_row(o), created_us, created_us) for o in outcomes],
                )
                return max(0, cursor.rowcount)
        finally:
            conn.close()

    async def add(outcomes: Iterable[ReflexOutcome], created_at: datetime | None = None) -> int:
        created = _us(created_at or datetime.now(UTC))
        return await asyncio.to_thread(insert, list(outcomes), created)

    return _Backend(box, add, box.close)


async def _postgres(place: _Place) -> _Backend:
    dsn, schema = place.dsn, place.schema
    box = PostgresOutbox(dsn, schema)
    await box.start()  # migrates the job table into the fresh schema
    insert_sql = PostgresOutbox.insert_sql(schema)

    async def add(outcomes: Iterable[ReflexOutcome], created_at: datetime | None = None) -> int:
        rows = [job_row(o) for o in outcomes]
        created = created_at or datetime.now(UTC)
        conn = await asyncpg.connect(dsn, timeout=10)
        try:
            async with conn.transaction():
                tag: str = await conn.execute(
                    insert_sql,
                    [r[0] for r in rows],
                    [r[1] for r in rows],
                    [created] * len(rows),
                    [created] * len(rows),
                )
        finally:
            await conn.close()
        return int(tag.rsplit(" ", 1)[-1])

    return _Backend(box, add, box.close)


_FACTORIES: dict[str, Callable[[_Place], Awaitable[_Backend]]] = {
    "memory": _memory,
    "sqlite": _sqlite,
    "postgres": _postgres,
}


@pytest.fixture(params=OUTBOX_BACKENDS)
def outbox_place(request: pytest.FixtureRequest, tmp_path: Path) -> _Place:
    """The backend and location of the test's outbox (PostgreSQL: the session server
    and a fresh schema; resolved here, outside the event loop, as those fixtures need)."""
    backend: str = request.param
    if backend == "postgres":
        return _Place(
            backend,
            tmp_path,
            request.getfixturevalue("postgres_dsn"),
            request.getfixturevalue("postgres_schema"),
        )
    return _Place(backend, tmp_path / "outcomes.db")


@pytest.fixture
async def outbox_backend(outbox_place: _Place) -> AsyncIterator[_Backend]:
    """A started outbox of the test's backend (closed at teardown) with its ``enqueue``."""
    backend = await _FACTORIES[outbox_place.backend](outbox_place)
    try:
        yield backend
    finally:
        await backend.close()


@pytest.fixture
def outbox(outbox_backend: _Backend) -> Outbox:
    """A fresh, started outbox: memory, SQLite (a file under ``tmp_path``), PostgreSQL
    (the test's own schema)."""
    box: Outbox = outbox_backend.outbox
    return box


@pytest.fixture
def enqueue(outbox_backend: _Backend) -> Enqueue:
    """Write the jobs of ``outcomes`` into ``outbox`` as a store would; how many were new."""
    return outbox_backend.enqueue


@pytest.fixture
def netbox() -> Iterator[FakeNetbox]:
    """A started fake NetBox (schema-validating; must see no invalid request)."""
    with running_fake_netbox() as fake:
        yield fake


def outcome(
    n: int = 0,
    *,
    handler_id: str = "link_down",
    event_class: str = "link_down",
    device: str | None = "sw1-north",
    interface: str | None = "GigabitEthernet1/0/3",
    severity: Severity = Severity.HIGH,
    kind: OutcomeKind = OutcomeKind.LOGGED,
    summary: str | None = None,
    site: str | None = "dc-north",
    trace: dict[str, object] | None = None,
    recorded_at: datetime | None = None,
) -> ReflexOutcome:
    """The ``n``-th distinct outcome of ``handler_id`` about ``device``/``interface``."""
    event = make_event(
        event_class, device=device, interface=interface, event_id=f"01TESTEVENT{n:015d}"
    )
    where = " ".join(p for p in (device, interface) if p)
    made = ReflexOutcome.for_event(
        handler_id,
        event,
        severity=severity,
        summary=summary if summary is not None else f"Link down on {where}",
        kind=kind,
        site=site,
        trace=trace if trace is not None else {"corroboration": 1, "interface": interface},
    )
    assert made.outcome_id == outcome_id_for(handler_id, event.id)
    if recorded_at is not None:
        made = replace(made, recorded_at=recorded_at)
    return made


#: When the incidents of ``incident()`` opened.
INCIDENT_T0 = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)


def incident(
    version: int = 1,
    *,
    incident_id: str = "0f1e2d3c4b5a69788796a5b4c3d2e1f0",
    rule: str = "cable_pair",
    root: str = "cable:sw1-north|GigabitEthernet1/0/3~sw2-north|GigabitEthernet1/0/3",
    state: IncidentState = IncidentState.OPEN,
    severity: Severity = Severity.HIGH,
    summary: str = "Cable sw1-north GigabitEthernet1/0/3 ⇄ sw2-north GigabitEthernet1/0/3 down",
    members: tuple[str, ...] = (
        "sw1-north|GigabitEthernet1/0/3",
        "sw2-north|GigabitEthernet1/0/3",
    ),
    evidence: tuple[str, ...] = ("a" * 32, "b" * 32),
    inhibited: tuple[str, ...] = (),
    site: str | None = "dc-north",
    flapping: bool | None = None,
) -> Incident:
    """An incident (default: the fixture cable cut, open, high) as of ``version``."""
    updated = INCIDENT_T0 + timedelta(seconds=version - 1)
    return Incident(
        incident_id=incident_id,
        rule=rule,
        root=root,
        state=state,
        severity=severity,
        summary=summary,
        members=members,
        evidence=evidence,
        inhibited=inhibited,
        opened_at=INCIDENT_T0,
        updated_at=updated,
        resolved_at=updated if state is IncidentState.RESOLVED else None,
        site=site,
        flapping=flapping,
        version=version,
        details={"facts": {}, "n": version},
    )
