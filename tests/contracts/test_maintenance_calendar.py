"""Contract suite for the stored maintenance calendar: every storage passes the same tests.

Backends are parameters of ``backend``: SQLite (a file in ``tmp_path``) and
PostgreSQL (a fresh schema per test on the session's server, see
``tests.conftest.postgres_dsn``). Each backend gives three things: a factory of
calendars on one shared location, a way to write a raw SQL statement to that
location behind the calendars' backs (an operator editing the table by hand), and
a factory of calendars on a location that cannot be opened. The tests themselves
contain no backend branches.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import pytest
from structlog.testing import capture_logs

from netcortex.contracts.memory import MaintenanceCalendar, MaintenanceWindow
from netcortex.errors import StoreError
from netcortex.memory.semantic.maintenance import (
    PostgresMaintenanceCalendar,
    SqliteMaintenanceCalendar,
    StoredMaintenanceCalendar,
)
from netcortex.metrics import Registry
from tests.servers import free_port

T0 = datetime(2025, 6, 1, 10, 0, tzinfo=UTC)
FAST = 0.02  # reload interval for these tests (seconds)
DEADLINE = 5.0

NewCalendar = Callable[..., StoredMaintenanceCalendar]


@dataclass
class Backend:
    """One storage under test."""

    #: ``new(windows=..., reload_interval=..., metrics=...)``: a calendar on the shared location
    new: NewCalendar
    #: ``await raw(sql)``: one statement on the shared location, outside any calendar
    raw: Callable[[str], Awaitable[None]]
    #: a calendar on a location that cannot be opened; its message must name it
    broken: Callable[[], StoredMaintenanceCalendar]
    #: what the broken location's error message must contain
    broken_words: str


def _sqlite(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    path = tmp_path / "nc.db"

    async def raw(sql: str) -> None:
        def run() -> None:
            with sqlite3.connect(path) as conn:
                conn.execute(sql)

        await asyncio.to_thread(run)

    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    return Backend(
        new=lambda **kw: SqliteMaintenanceCalendar(path, **kw),
        raw=raw,
        broken=lambda: SqliteMaintenanceCalendar(blocker / "nc.db"),
        broken_words=str(blocker),
    )


def _postgres(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    dsn: str = request.getfixturevalue("postgres_dsn")
    schema: str = request.getfixturevalue("postgres_schema")

    async def raw(sql: str) -> None:
        conn = await asyncpg.connect(dsn, timeout=10)
        try:
            await conn.execute(f'SET search_path TO "{schema}"; {sql}')
        finally:
            await conn.close()

    # A closed port, with a password in the DSN that must never reach a message.
    dead = f"postgresql://netcortex:hunter2secret@127.0.0.1:{free_port()}/test"
    return Backend(
        new=lambda **kw: PostgresMaintenanceCalendar(dsn, schema, **kw),
        raw=raw,
        broken=lambda: PostgresMaintenanceCalendar(dead, schema),
        broken_words="127.0.0.1",
    )


@pytest.fixture(params=[pytest.param(_sqlite, id="sqlite"), pytest.param(_postgres, id="postgres")])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    """The storage under test."""
    factory: Callable[[pytest.FixtureRequest, Path], Backend] = request.param
    return factory(request, tmp_path)


def _window(window_id: str = "w1", target: str = "sw1", **kw: Any) -> MaintenanceWindow:
    fields: dict[str, Any] = {
        "id": window_id,
        "scope": "device",
        "target": target,
        "start": T0,
        "end": T0 + timedelta(hours=2),
    }
    fields.update(kw)
    return MaintenanceWindow(**fields)


async def _eventually(cond: Callable[[], bool], what: str, deadline: float = DEADLINE) -> None:
    """Poll ``cond`` until it holds; fail after ``deadline`` seconds."""
    loop = asyncio.get_running_loop()
    until = loop.time() + deadline
    while not cond():
        if loop.time() > until:
            pytest.fail(f"not within {deadline} s: {what}")
        await asyncio.sleep(0.01)


def _active_id(cal: StoredMaintenanceCalendar, device: str = "sw1") -> str | None:
    found = cal.active(T0 + timedelta(minutes=1), device=device)
    return found.id if found is not None else None


# ------------------------------------------------------------------ durability


def test_calendar_satisfies_the_protocol(backend: Backend) -> None:
    """Every stored calendar type-checks as a ``MaintenanceCalendar`` (mypy) and
    answers lookups before ``start`` from config windows alone."""
    cal: MaintenanceCalendar = backend.new(windows=[_window("cfg")])
    assert [w.id for w in cal.windows()] == ["cfg"]
    assert cal.active(T0, device="sw1") is not None


async def test_added_window_survives_reopen_and_remove_is_durable(backend: Backend) -> None:
    """What ``add`` stores a new calendar on the same location finds; ``remove`` sticks."""
    async with backend.new(reload_interval=0) as cal:
        await cal.add(_window("w1", reason="swap PSU"))
    async with backend.new(reload_interval=0) as cal:
        assert [w.id for w in cal.windows()] == ["w1"]
        assert cal.windows()[0].reason == "swap PSU"
        assert _active_id(cal) == "w1"
        assert await cal.remove("w1") is True
        assert await cal.remove("w1") is False
    async with backend.new(reload_interval=0) as cal:
        assert cal.windows() == []


async def test_recurring_window_round_trips_exactly(backend: Backend) -> None:
    """Rule, zone and local start survive storage: a DST-crossing weekly window still
    starts at 02:00 local on both sides of the change."""
    start = datetime(2025, 3, 23, 2, 0, tzinfo=ZoneInfo("Europe/Amsterdam"))
    window = _window(
        "weekly",
        start=start,
        end=start + timedelta(hours=1),
        rrule="FREQ=WEEKLY;BYDAY=SU",
        timezone="Europe/Amsterdam",
    )
    async with backend.new(reload_interval=0) as cal:
        await cal.add(window)
    async with backend.new(reload_interval=0) as cal:
        (stored,) = cal.windows()
        assert (stored.rrule, stored.timezone) == ("FREQ=WEEKLY;BYDAY=SU", "Europe/Amsterdam")
        assert stored.start == window.start
        assert stored.end == window.end
        # 2025-03-30 is the spring-forward Sunday: 03:00 local is 01:00 UTC.
        before = datetime(2025, 3, 30, 1, 30, tzinfo=UTC)  # 03:30 CEST: inside
        assert cal.active(before, device="sw1") is not None
        assert cal.active(datetime(2025, 3, 30, 0, 30, tzinfo=UTC), device="sw1") is None


async def test_add_replaces_by_id(backend: Backend) -> None:
    """Adding an existing id replaces it in the index and in storage."""
    async with backend.new(reload_interval=0) as cal:
        await cal.add(_window("w1", target="sw1"))
        await cal.add(_window("w1", target="sw2"))
        assert (_active_id(cal, "sw1"), _active_id(cal, "sw2")) == (None, "w1")
    async with backend.new(reload_interval=0) as cal:
        assert [(w.id, w.target) for w in cal.windows()] == [("w1", "sw2")]


async def test_concurrent_adds_from_many_tasks_all_land(backend: Backend) -> None:
    """Fifty tasks adding at once: every window is indexed and stored."""
    async with backend.new(reload_interval=0) as cal:
        await asyncio.gather(*(cal.add(_window(f"w{i:02d}", target=f"sw{i}")) for i in range(50)))
        assert len(cal.windows()) == 50
    async with backend.new(reload_interval=0) as cal:
        assert sorted(w.id for w in cal.windows()) == [f"w{i:02d}" for i in range(50)]


async def test_add_and_remove_need_an_open_calendar(backend: Backend) -> None:
    """Before ``start`` and after ``close`` writes are a ``StoreError``; lookups still answer."""
    cal = backend.new(windows=[_window("cfg", target="core1")], reload_interval=0)
    with pytest.raises(StoreError, match="not open"):
        await cal.add(_window("w1"))
    await cal.start()
    await cal.add(_window("w1"))
    await cal.close()
    await cal.close()  # idempotent
    with pytest.raises(StoreError, match="not open"):
        await cal.remove("w1")
    assert _active_id(cal, "core1") == "cfg"
    assert _active_id(cal) == "w1"


async def test_config_windows_are_not_writable_and_shadow_stored_ones(backend: Backend) -> None:
    """A config window cannot be replaced or removed at run time, and a stored window
    with its id is shadowed by it (with a warning)."""
    async with backend.new(reload_interval=0) as cal:
        await cal.add(_window("cfg", target="sw9"))
    cfg = _window("cfg", target="core1")
    with capture_logs() as logs:
        async with backend.new(windows=[cfg], reload_interval=0) as cal:
            assert _active_id(cal, "core1") == "cfg"
            assert _active_id(cal, "sw9") is None
            with pytest.raises(StoreError, match="config file"):
                await cal.add(_window("cfg", target="sw1"))
            with pytest.raises(StoreError, match="config file"):
                await cal.remove("cfg")
    assert any(e["event"] == "maintenance_window_shadowed" for e in logs)


async def test_start_on_a_broken_location_is_a_store_error(backend: Backend) -> None:
    """A location that cannot be opened fails ``start`` with ``StoreError`` naming it,
    never a password; the calendar stays closed and can be closed."""
    cal = backend.broken()
    with pytest.raises(StoreError) as info:
        await cal.start()
    message = str(info.value)
    assert backend.broken_words in message
    assert "hunter2secret" not in message
    with pytest.raises(StoreError, match="not open"):
        await cal.add(_window("w1"))
    await cal.close()


# ------------------------------------------------------------------ live reload


async def test_window_added_and_removed_by_another_calendar_is_seen(backend: Backend) -> None:
    """A started calendar sees a window another calendar adds, and then removes."""
    async with backend.new(reload_interval=FAST) as a, backend.new(reload_interval=0) as b:
        assert _active_id(a) is None
        await b.add(_window("w1"))
        await _eventually(lambda: _active_id(a) == "w1", "A sees the added window")
        assert [w.id for w in a.windows()] == ["w1"]
        assert await b.remove("w1") is True
        await _eventually(lambda: _active_id(a) is None, "A drops the removed window")
        assert a.windows() == []


async def test_replacement_by_another_connection_moves_the_window(backend: Backend) -> None:
    """A window replaced by id elsewhere is re-indexed under its new target."""
    async with backend.new(reload_interval=FAST) as a, backend.new(reload_interval=0) as b:
        await b.add(_window("w1", target="sw1"))
        await _eventually(lambda: _active_id(a, "sw1") == "w1", "A sees w1 on sw1")
        await b.add(_window("w1", target="sw2"))
        await _eventually(lambda: _active_id(a, "sw2") == "w1", "A sees w1 moved to sw2")
        assert _active_id(a, "sw1") is None


async def test_reload_keeps_config_windows_and_own_additions(backend: Backend) -> None:
    """Reloading never drops config windows or windows the calendar added itself."""
    cfg = _window("cfg", target="core1")
    async with (
        backend.new(windows=[cfg], reload_interval=FAST) as a,
        backend.new(reload_interval=0) as b,
    ):
        await a.add(_window("own", target="sw1"))
        await b.add(_window("other", target="sw2"))
        await _eventually(lambda: _active_id(a, "sw2") == "other", "A sees B's window")
        assert _active_id(a, "sw1") == "own"
        assert _active_id(a, "core1") == "cfg"
        assert sorted(w.id for w in a.windows()) == ["cfg", "other", "own"]


async def test_hand_edits_are_reloaded_and_invalid_rows_warned_once(backend: Backend) -> None:
    """A row an operator edits by hand is picked up; one that no longer compiles is
    dropped with one warning, not one per poll."""
    with capture_logs() as logs:
        async with backend.new(reload_interval=FAST) as a, backend.new(reload_interval=0) as b:
            await b.add(_window("w1", target="sw2"))
            await _eventually(lambda: _active_id(a, "sw2") == "w1", "A sees the window")
            await backend.raw("UPDATE maintenance_windows SET target = 'sw3'")
            await _eventually(lambda: _active_id(a, "sw3") == "w1", "A follows the hand edit")
            await backend.raw("UPDATE maintenance_windows SET timezone = 'Mars/Olympus'")
            await _eventually(lambda: _active_id(a, "sw3") is None, "A drops the bad row")
            # More commits elsewhere: the unchanged bad row is not warned about again.
            await b.add(_window("ok", target="sw4"))
            await _eventually(lambda: _active_id(a, "sw4") == "ok", "A sees the next window")
    warned = [e for e in logs if e["event"] == "maintenance_window_invalid"]
    assert [e["window_id"] for e in warned] == ["w1"]


async def test_idle_storage_does_not_rebuild_the_index(backend: Backend) -> None:
    """With nothing changing, polls rebuild nothing: the compiled entry stays the same
    object and no reload is logged."""
    registry = Registry()
    with capture_logs() as logs:
        async with backend.new(reload_interval=FAST, metrics=registry) as a:
            await a.add(_window("w1"))
            first = a.active(T0, device="sw1")
            async with backend.new(reload_interval=0) as b:
                await b.add(_window("w2", target="sw9"))
            await _eventually(lambda: _active_id(a, "sw9") == "w2", "A sees w2")
            assert a.active(T0, device="sw1") is first
    reloads = [e for e in logs if e["event"] == "maintenance_windows_reloaded"]
    assert [(e["added"], e["changed"], e["removed"]) for e in reloads] == [(1, 0, 0)]


async def test_close_stops_reloading(backend: Backend) -> None:
    """After ``close`` the calendar keeps its last index and no longer follows storage;
    started again it reads storage at once."""
    a = backend.new(reload_interval=FAST)
    await a.start()
    async with backend.new(reload_interval=0) as b:
        await b.add(_window("w1"))
        await _eventually(lambda: _active_id(a) == "w1", "A sees w1")
        await a.close()
        await b.remove("w1")
        assert _active_id(a) == "w1"
        await a.start()
        assert _active_id(a) is None
        await a.close()


# ------------------------------------------------------------------ review findings

_T0_S = int(T0.timestamp())


def _insert(table: str, window_id: str, start_s: int, end_s: int, timezone: str = "UTC") -> str:
    """A hand-written INSERT of one row (the columns both storages share)."""
    return (
        f"INSERT INTO {table} (id, scope, target, start_s, end_s, rrule, timezone, reason, "
        f"updated_s) VALUES ('{window_id}', 'device', 'sw1', {start_s}, {end_s}, NULL, "
        f"'{timezone}', 'by hand', 0)"
    )


async def test_rows_with_out_of_range_times_are_skipped_not_fatal(backend: Backend) -> None:
    """A hand-edited row whose times no clock can show (an epoch in microseconds, a
    year past 9999) is skipped with one warning: it neither stops the running
    calendar's reloading nor makes the next ``start`` fail."""
    with capture_logs() as logs:
        async with backend.new(reload_interval=FAST) as a, backend.new(reload_interval=0) as b:
            await b.add(_window("ok1", target="sw1"))
            await _eventually(lambda: _active_id(a, "sw1") == "ok1", "A sees ok1")
            await backend.raw(_insert("maintenance_windows", "huge", 10**17, 10**17 + 7200))
            await backend.raw(_insert("maintenance_windows", "past", -(10**12), 0))
            await asyncio.sleep(10 * FAST)
            await b.add(_window("ok2", target="sw2"))
            await _eventually(lambda: _active_id(a, "sw2") == "ok2", "A keeps reloading")
        async with backend.new(reload_interval=0) as c:
            assert sorted(w.id for w in c.windows()) == ["ok1", "ok2"]
    warned = sorted(e["window_id"] for e in logs if e["event"] == "maintenance_window_invalid")
    assert warned == ["huge", "huge", "past", "past"]  # once by A, once by C's start


async def test_window_ending_at_the_end_of_time_survives_reopen(backend: Backend) -> None:
    """A window ending at 9999-12-31T23:59:59Z in a zone east of UTC (its local end
    is past the last representable date) is stored, and a calendar opened later
    loads it instead of failing ``start``."""
    end = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)
    async with backend.new(reload_interval=0) as cal:
        await cal.add(_window("forever", end=end, timezone="Asia/Tokyo"))
    async with backend.new(reload_interval=0) as cal:
        (stored,) = cal.windows()
        assert (stored.id, stored.end, stored.timezone) == ("forever", end, "Asia/Tokyo")
        assert _active_id(cal) == "forever"


async def test_a_change_whose_reload_failed_is_reloaded_later(backend: Backend) -> None:
    """A change committed while the table cannot be read (a reload fails after the
    change counter was read) is picked up once the table is readable again, even
    when nothing else changes in between."""
    with capture_logs() as logs:
        async with backend.new(reload_interval=FAST) as a:
            await backend.raw("ALTER TABLE maintenance_windows RENAME TO maintenance_hidden")
            await backend.raw(_insert("maintenance_hidden", "w1", _T0_S, _T0_S + 7200))
            await _eventually(
                lambda: any(e["event"] == "maintenance_reload_failed" for e in logs),
                "A's reload fails",
            )
            await asyncio.sleep(10 * FAST)  # more polls fail after the insert
            await backend.raw("ALTER TABLE maintenance_hidden RENAME TO maintenance_windows")
            await _eventually(lambda: _active_id(a) == "w1", "A sees w1 after the failure")
