"""Contract suite for the ``IncidentStore``: SQLite and PostgreSQL pass the same tests.

Each backend gives a factory of unstarted stores on one shared location (the
outcome store's SQLite file, or one PostgreSQL schema) and a factory of stores on
a location that cannot work. The tests contain no backend branches.
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from netcortex.app import make_incident_store, make_store
from netcortex.config import StoreConfig
from netcortex.contracts.events import Severity
from netcortex.contracts.incidents import (
    Incident,
    IncidentCursor,
    IncidentQuery,
    IncidentState,
    IncidentStore,
)
from netcortex.contracts.reflex import ReflexOutcome
from netcortex.errors import StoreError
from netcortex.memory.episodic.incidents import PostgresIncidentStore, SqliteIncidentStore
from netcortex.metrics import Registry
from netcortex.testing import make_event

T0 = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)
PASSWORD = "s3cr3t-hunter2"


@dataclass
class Backend:
    """One database under test."""

    #: an unstarted store on the shared location
    new: Callable[[], Any]
    #: an unstarted store on a location that cannot be opened (the DSN carries ``PASSWORD``)
    broken: Callable[[], Any]
    #: the ``store`` section of the outcome store on the same location
    store_config: StoreConfig
    #: ``await raw(sql)``: one statement on the location, behind the store's back
    raw: Callable[[str], Any] = lambda sql: None


def _sqlite(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    path = tmp_path / "var" / "nc.db"
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory\n", encoding="utf-8")

    async def raw(sql: str) -> None:
        def run() -> None:
            with sqlite3.connect(path) as conn:
                conn.execute(sql)

        await asyncio.to_thread(run)

    return Backend(
        new=lambda: SqliteIncidentStore(path),
        broken=lambda: SqliteIncidentStore(blocker / "nc.db"),
        store_config=StoreConfig(sqlite_path=path, flush_interval=0.005),
        raw=raw,
    )


def _postgres(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    dsn: str = request.getfixturevalue("postgres_dsn")
    schema: str = request.getfixturevalue("postgres_schema")
    refused = f"postgresql://netcortex:{PASSWORD}@127.0.0.1:1/x?connect_timeout=2"

    async def raw(sql: str) -> None:
        conn = await asyncpg.connect(dsn, timeout=10)
        try:
            await conn.execute(f'SET search_path TO "{schema}"; {sql}')
        finally:
            await conn.close()

    return Backend(
        new=lambda: PostgresIncidentStore(dsn, schema),
        broken=lambda: PostgresIncidentStore(refused, schema),
        raw=raw,
        store_config=StoreConfig(
            backend="postgres", postgres_dsn=dsn, postgres_schema=schema, flush_interval=0.005
        ),
    )


@pytest.fixture(params=[pytest.param(_sqlite, id="sqlite"), pytest.param(_postgres, id="postgres")])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    factory: Callable[[pytest.FixtureRequest, Path], Backend] = request.param
    return factory(request, tmp_path)


@pytest.fixture
async def store(backend: Backend) -> AsyncIterator[Any]:
    made = backend.new()
    await made.start()
    yield made
    await made.close()


def _incident(n: int = 0, **changes: Any) -> Incident:
    base = Incident(
        incident_id=f"inc-{n:04d}",
        rule="cable_pair",
        root=f"cable:sw{n}|Gi1/0/1~core{n}|Te1/1/1",
        state=IncidentState.OPEN,
        severity=Severity.HIGH,
        summary=f"cable sw{n} Gi1/0/1 <-> core{n} Te1/1/1 down",
        members=(f"core{n}|Te1/1/1", f"sw{n}|Gi1/0/1"),
        evidence=(f"o-{n}-a", f"o-{n}-b"),
        opened_at=T0,
        updated_at=T0,
        site="ams1",
    )
    return replace(base, **changes)


def test_both_stores_satisfy_the_protocol(backend: Backend) -> None:
    """Type-checked by mypy; at run time: every Protocol method is present."""
    made: IncidentStore = backend.new()
    for name in ("start", "close", "save", "get", "query", "open_incidents"):
        assert callable(getattr(made, name))


async def test_every_field_round_trips_exactly(store: Any) -> None:
    """What is saved reads back equal, enums as enums, times as aware UTC, JSON details."""
    full = _incident(
        1,
        rule="flapping",
        root="interface:sw1|Gi1/0/7",
        state=IncidentState.RESOLVED,
        severity=Severity.CRITICAL,
        summary="Gi1/0/7 on sw1 flapping — 12 changes in 60 s ✓",
        members=("sw1|Gi1/0/7",),
        evidence=("o-3", "o-1", "o-2"),  # join order, not sorted
        inhibited=("o-2",),
        opened_at=T0,
        updated_at=T0 + timedelta(seconds=90, microseconds=123_457),
        resolved_at=T0 + timedelta(minutes=5, microseconds=1),
        site=None,
        flapping=False,
        version=7,
        details={"changes": 12, "window_s": 60.5, "peers": ["a", "b"], "high": None, "ok": True},
    )
    assert await store.save(full) is True
    got = await store.get(full.incident_id)
    assert got == full
    assert got is not None
    assert type(got.state) is IncidentState
    assert type(got.severity) is Severity
    assert isinstance(got.members, tuple)
    assert got.evidence == ("o-3", "o-1", "o-2")
    assert got.updated_at.utcoffset() == timedelta(0)
    minimal = _incident(2, site=None, flapping=True)
    assert await store.save(minimal)
    assert await store.get(minimal.incident_id) == minimal
    assert await store.get("no-such-incident") is None


async def test_another_time_zone_is_the_same_instant(store: Any) -> None:
    """An aware time in another zone is stored as its instant (read back in UTC)."""
    plus2 = timezone(timedelta(hours=2))
    incident = _incident(3, opened_at=T0.astimezone(plus2), updated_at=T0.astimezone(plus2))
    await store.save(incident)
    got = await store.get(incident.incident_id)
    assert got is not None
    assert got.opened_at == T0
    assert got.opened_at.utcoffset() == timedelta(0)


async def test_only_a_newer_version_replaces(store: Any) -> None:
    """An older or equal version is ignored (``False``); a newer one replaces it."""
    v2 = _incident(1, version=2, summary="v2")
    assert await store.save(v2) is True
    assert await store.save(replace(v2, version=1, summary="v1")) is False
    assert await store.save(replace(v2, summary="v2 again")) is False
    assert await store.get(v2.incident_id) == v2
    v3 = replace(
        v2, version=3, summary="v3", state=IncidentState.RESOLVED, resolved_at=T0 + timedelta(1)
    )
    assert await store.save(v3) is True
    assert await store.get(v2.incident_id) == v3


async def test_concurrent_saves_end_at_the_newest_version(store: Any) -> None:
    """Versions 1..50 saved concurrently in random order from many tasks: version 50
    is stored, with version 50's members."""
    versions = list(range(1, 51))
    random.Random(8).shuffle(versions)

    def version(v: int) -> Incident:
        return _incident(
            1,
            version=v,
            summary=f"v{v}",
            members=(f"sw-v{v}|Gi1/0/1",),
            updated_at=T0 + timedelta(seconds=v),
        )

    written = await asyncio.gather(*(store.save(version(v)) for v in versions))
    assert any(written)
    assert await store.get("inc-0001") == version(50)
    assert [i.incident_id for i in await store.query(IncidentQuery(device="sw-v50"))] == [
        "inc-0001"
    ]
    assert await store.query(IncidentQuery(device="sw-v49")) == []


async def test_concurrent_saves_from_two_instances_end_at_the_newest(
    backend: Backend, store: Any
) -> None:
    """Two stores on one location racing versions 1..30: the newest wins."""
    other = backend.new()
    await other.start()
    try:
        saves = [
            (store if v % 2 else other).save(_incident(1, version=v, summary=f"v{v}"))
            for v in range(1, 31)
        ]
        await asyncio.gather(*saves)
        got = await other.get("inc-0001")
        assert got is not None
        assert got.version == 30
    finally:
        await other.close()


async def test_filters_by_state_rule_site_and_since(store: Any) -> None:
    """``state``, ``rule``, ``site`` match exactly; ``since`` keeps changes at or after it."""
    a = _incident(1, updated_at=T0 + timedelta(minutes=1))
    b = _incident(2, rule="site_outage", root="site:fra2", site="fra2",
                  updated_at=T0 + timedelta(minutes=2))  # fmt: skip
    c = _incident(3, state=IncidentState.RESOLVED, resolved_at=T0 + timedelta(minutes=3),
                  updated_at=T0 + timedelta(minutes=3))  # fmt: skip
    for incident in (a, b, c):
        await store.save(incident)

    async def ids(**filters: Any) -> list[str]:
        return [i.incident_id for i in await store.query(IncidentQuery(**filters))]

    assert await ids() == [c.incident_id, b.incident_id, a.incident_id]
    assert await ids(state=IncidentState.OPEN) == [b.incident_id, a.incident_id]
    assert await ids(state=IncidentState.RESOLVED) == [c.incident_id]
    assert await ids(rule="site_outage") == [b.incident_id]
    assert await ids(site="ams1") == [c.incident_id, a.incident_id]
    assert await ids(site="ams1", state=IncidentState.OPEN) == [a.incident_id]
    assert await ids(since=T0 + timedelta(minutes=2)) == [c.incident_id, b.incident_id]
    assert await ids(limit=1) == [c.incident_id]
    assert await ids(limit=0) == []
    assert await ids(rule="no-such-rule") == []


async def test_device_filter_uses_members_and_root(store: Any) -> None:
    """``device`` finds incidents with that device among the members or as the root,
    and follows the newest members when an incident changes."""
    cable = _incident(1, updated_at=T0 + timedelta(seconds=1))  # members sw1, core1
    rooted = _incident(2, rule="device_root", root="device:core1", members=("sw9|Gi1/0/2",),
                       updated_at=T0 + timedelta(seconds=2))  # fmt: skip
    bgp = _incident(3, rule="bgp_over_link", root="bgp:edge1|192.0.2.1", members=(),
                    updated_at=T0 + timedelta(seconds=3))  # fmt: skip
    site = _incident(4, rule="site_outage", root="site:ams1", members=("sw4", "sw5"),
                     updated_at=T0 + timedelta(seconds=4))  # fmt: skip
    for incident in (cable, rooted, bgp, site):
        await store.save(incident)

    async def ids(device: str, **filters: Any) -> list[str]:
        found = await store.query(IncidentQuery(device=device, **filters))
        return [i.incident_id for i in found]

    assert await ids("core1") == [rooted.incident_id, cable.incident_id]
    assert await ids("sw1") == [cable.incident_id]
    assert await ids("sw9") == [rooted.incident_id]
    assert await ids("edge1") == [bgp.incident_id]
    assert await ids("sw5") == [site.incident_id]
    assert await ids("ams1") == []
    assert await ids("Gi1/0/1") == []
    assert await ids("core1", rule="cable_pair") == [cable.incident_id]
    assert await ids("core1", since=T0 + timedelta(seconds=2)) == [rooted.incident_id]
    # A newer version with other members: the old devices no longer find it.
    await store.save(replace(cable, version=2, members=("sw7|Gi1/0/1",), root="device:sw7",
                             updated_at=T0 + timedelta(seconds=9)))  # fmt: skip
    assert await ids("sw1") == []
    assert await ids("core1") == [rooted.incident_id]
    assert await ids("sw7") == [cable.incident_id]


@pytest.mark.parametrize("device", [None, "shared"])
async def test_cursor_pages_newest_first_without_gaps_or_duplicates(
    store: Any, device: str | None
) -> None:
    """Walking pages with ``before`` = the last incident of the previous page visits
    every incident exactly once, in (updated_at, incident_id) descending order,
    even when many share one ``updated_at``."""
    made = []
    for n in range(57):
        at = T0 + timedelta(seconds=n // 20)  # groups of 20 sharing one time
        made.append(_incident(n, updated_at=at, members=("shared|Gi1/0/1", f"sw{n}")))
    random.Random(8).shuffle(made)
    for incident in made:
        await store.save(incident)
    expected = sorted(made, key=lambda i: (i.updated_at, i.incident_id), reverse=True)
    seen: list[Incident] = []
    before: IncidentCursor | None = None
    while page := await store.query(IncidentQuery(device=device, before=before, limit=7)):
        assert len(page) <= 7
        seen.extend(page)
        before = IncidentCursor(page[-1].updated_at, page[-1].incident_id)
    assert [i.incident_id for i in seen] == [i.incident_id for i in expected]
    assert seen == expected


async def test_ids_order_bytewise(store: Any) -> None:
    """Ties on ``updated_at`` order ids by their bytes (upper case before lower case,
    ASCII before non-ASCII) on every backend."""
    ids = ["inc-a", "inc-B", "inc-é", "inc-Z", "inc-_"]
    for incident_id in ids:
        await store.save(_incident(1, incident_id=incident_id))
    found = [i.incident_id for i in await store.query(IncidentQuery())]
    assert found == sorted(ids, key=lambda s: s.encode(), reverse=True)


async def test_open_incidents_lists_every_open_one(store: Any) -> None:
    """``open_incidents`` returns all open incidents (no limit), none resolved."""
    for n in range(130):
        state = IncidentState.RESOLVED if n % 3 == 0 else IncidentState.OPEN
        await store.save(_incident(n, state=state, updated_at=T0 + timedelta(seconds=n)))
    found = await store.open_incidents()
    assert len(found) == 130 - 44
    assert all(i.state is IncidentState.OPEN for i in found)
    assert [i.incident_id for i in found] == [f"inc-{n:04d}" for n in range(129, -1, -1) if n % 3]
    # Resolving one takes it out.
    await store.save(replace(found[0], version=2, state=IncidentState.RESOLVED,
                             resolved_at=T0 + timedelta(hours=1)))  # fmt: skip
    assert found[0].incident_id not in {i.incident_id for i in await store.open_incidents()}


async def test_two_instances_on_one_location_see_each_other(backend: Backend, store: Any) -> None:
    """What one store instance saves, another on the same location reads (and the
    version guard holds across them)."""
    other = backend.new()
    await other.start()
    try:
        await store.save(_incident(1, version=3))
        got = await other.get("inc-0001")
        assert got is not None
        assert got.version == 3
        assert await other.save(_incident(1, version=2)) is False
        assert await other.save(_incident(1, version=4, summary="from the other")) is True
        mine = await store.get("inc-0001")
        assert mine is not None
        assert mine.summary == "from the other"
        assert [i.incident_id for i in await store.open_incidents()] == ["inc-0001"]
    finally:
        await other.close()


async def test_start_and_close_are_idempotent_and_data_survives(backend: Backend) -> None:
    """``start``/``close`` may be repeated; a reopened store reads what was saved."""
    first = backend.new()
    await first.start()
    await first.start()
    await first.save(_incident(1))
    await first.close()
    await first.close()
    async with backend.new() as again:
        assert await again.get("inc-0001") == _incident(1)


async def test_a_broken_location_is_a_store_error_without_the_password(backend: Backend) -> None:
    """A location that cannot be opened raises ``StoreError`` at start; the message
    never carries the password."""
    broken = backend.broken()
    with pytest.raises(StoreError) as info:
        await broken.start()
    assert PASSWORD not in str(info.value)
    with pytest.raises(StoreError, match="not open"):
        await broken.get("inc-0001")


async def test_closed_or_unstarted_store_is_a_store_error(backend: Backend) -> None:
    """Every call before ``start`` or after ``close`` raises ``StoreError``."""
    made = backend.new()
    with pytest.raises(StoreError, match="not open"):
        await made.save(_incident(1))
    await made.start()
    await made.close()
    for call in (
        made.save(_incident(1)),
        made.get("inc-0001"),
        made.query(IncidentQuery()),
        made.open_incidents(),
    ):
        with pytest.raises(StoreError, match="not open"):
            await call


@pytest.mark.parametrize("field", ["opened_at", "updated_at", "resolved_at"])
async def test_naive_times_are_refused(store: Any, field: str) -> None:
    """A naive datetime in an incident is refused with ``StoreError``; nothing is stored."""
    naive = datetime(2026, 11, 28, 9, 0)
    with pytest.raises(StoreError, match="timezone-aware"):
        await store.save(_incident(1, **{field: naive}))
    assert await store.get("inc-0001") is None


async def test_naive_query_times_are_refused(store: Any) -> None:
    """A naive ``since`` or cursor time is refused with ``StoreError``."""
    naive = datetime(2026, 11, 28, 9, 0)
    with pytest.raises(StoreError, match="timezone-aware"):
        await store.query(IncidentQuery(since=naive))
    with pytest.raises(StoreError, match="timezone-aware"):
        await store.query(IncidentQuery(before=IncidentCursor(naive, "inc-0001")))


async def test_details_that_are_not_json_are_refused(store: Any) -> None:
    """Details that are not JSON-able raise ``StoreError``; nothing is stored."""
    with pytest.raises(StoreError, match="JSON"):
        await store.save(_incident(1, details={"at": T0}))
    with pytest.raises(StoreError, match="JSON"):
        await store.save(_incident(1, details={"ratio": float("nan")}))
    assert await store.get("inc-0001") is None


async def test_incidents_live_beside_the_outcomes(backend: Backend) -> None:
    """``app.make_incident_store`` on the ``store`` section opens the outcome store's
    own location; outcomes and incidents share it, either started first."""
    incidents = make_incident_store(backend.store_config)
    await incidents.start()
    outcomes = make_store(backend.store_config, Registry())
    await outcomes.start()
    try:
        event = make_event("link_down", device="sw1", interface="Gi1/0/1")
        outcome = ReflexOutcome.for_event("link_down", event, severity=Severity.HIGH, summary="s")
        await outcomes.record(outcome)
        await outcomes.flush()
        await incidents.save(_incident(1, evidence=(outcome.outcome_id,)))
        assert await outcomes.get(outcome.outcome_id) == outcome
    finally:
        await outcomes.close()
        await incidents.close()
    async with backend.new() as again:
        got = await again.get("inc-0001")
        assert got is not None
        assert got.evidence == (outcome.outcome_id,)


async def test_an_undecodable_open_incident_is_skipped_on_restore(
    backend: Backend, store: Any
) -> None:
    """One hand-broken open row must not cost a restart: ``open_incidents`` skips
    it (with a warning) and returns the others."""
    good, bad = _incident(1), _incident(2)
    assert await store.save(good)
    assert await store.save(bad)
    await backend.raw(
        f"UPDATE incidents SET severity = 'bogus' WHERE incident_id = '{bad.incident_id}'"
    )
    assert [i.incident_id for i in await store.open_incidents()] == [good.incident_id]
