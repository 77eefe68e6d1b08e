"""Live reload of ``SqliteMaintenanceCalendar``: windows written by another connection
(another calendar, ``netcortex maintenance add|remove``) reach a started calendar's
index without a restart."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from netcortex.config import StoreConfig
from netcortex.contracts.events import Severity
from netcortex.contracts.memory import MaintenanceWindow
from netcortex.contracts.reflex import ReflexOutcome
from netcortex.memory.episodic.sqlite import SqliteOutcomeStore
from netcortex.memory.semantic.maintenance import SqliteMaintenanceCalendar
from netcortex.metrics import Registry
from netcortex.testing import make_event

T0 = datetime(2025, 6, 1, 10, 0, tzinfo=UTC)
FAST = 0.02  # reload interval for these tests (seconds)
DEADLINE = 5.0


def _window(window_id: str = "w1", target: str = "sw1", **kw: object) -> MaintenanceWindow:
    fields: dict[str, object] = {
        "id": window_id,
        "scope": "device",
        "target": target,
        "start": T0,
        "end": T0 + timedelta(hours=2),
    }
    fields.update(kw)
    return MaintenanceWindow(**fields)  # type: ignore[arg-type]


async def _eventually(cond: Callable[[], bool], what: str, deadline: float = DEADLINE) -> None:
    """Poll ``cond`` until it holds; fail after ``deadline`` seconds."""
    loop = asyncio.get_running_loop()
    until = loop.time() + deadline
    while not cond():
        if loop.time() > until:
            pytest.fail(f"not within {deadline} s: {what}")
        await asyncio.sleep(0.01)


def _active_id(cal: SqliteMaintenanceCalendar, device: str = "sw1") -> str | None:
    found = cal.active(T0 + timedelta(minutes=1), device=device)
    return found.id if found is not None else None


async def test_window_added_and_removed_by_another_calendar_is_seen(tmp_path: Path) -> None:
    """A started calendar sees a window another calendar adds, and then removes, on its file."""
    path = tmp_path / "nc.db"
    async with (
        SqliteMaintenanceCalendar(path, reload_interval=FAST) as a,
        SqliteMaintenanceCalendar(path, reload_interval=0) as b,
    ):
        assert _active_id(a) is None
        await b.add(_window("w1"))
        await _eventually(lambda: _active_id(a) == "w1", "A sees the added window")
        assert [w.id for w in a.windows()] == ["w1"]
        assert await b.remove("w1") is True
        await _eventually(lambda: _active_id(a) is None, "A drops the removed window")
        assert a.windows() == []


async def test_replacement_by_another_connection_moves_the_window(tmp_path: Path) -> None:
    """A window replaced by id elsewhere is re-indexed under its new target."""
    path = tmp_path / "nc.db"
    async with (
        SqliteMaintenanceCalendar(path, reload_interval=FAST) as a,
        SqliteMaintenanceCalendar(path, reload_interval=0) as b,
    ):
        await b.add(_window("w1", target="sw1"))
        await _eventually(lambda: _active_id(a, "sw1") == "w1", "A sees w1 on sw1")
        await b.add(_window("w1", target="sw2"))
        await _eventually(lambda: _active_id(a, "sw2") == "w1", "A sees w1 moved to sw2")
        assert _active_id(a, "sw1") is None


async def test_reload_keeps_config_windows_and_own_additions(tmp_path: Path) -> None:
    """Reloading never drops config windows or windows the calendar added itself."""
    path = tmp_path / "nc.db"
    cfg = _window("cfg", target="core1")
    async with (
        SqliteMaintenanceCalendar(path, windows=[cfg], reload_interval=FAST) as a,
        SqliteMaintenanceCalendar(path, reload_interval=0) as b,
    ):
        await a.add(_window("own", target="sw1"))
        await b.add(_window("other", target="sw2"))
        await _eventually(lambda: _active_id(a, "sw2") == "other", "A sees B's window")
        assert _active_id(a, "sw1") == "own"
        assert _active_id(a, "core1") == "cfg"
        assert sorted(w.id for w in a.windows()) == ["cfg", "other", "own"]


async def test_outcome_writes_to_the_shared_file_leave_the_index_alone(tmp_path: Path) -> None:
    """Outcome-store commits bump the file's version but do not rebuild unchanged windows."""
    path = tmp_path / "nc.db"
    registry = Registry()
    with capture_logs() as logs:
        async with (
            SqliteOutcomeStore(StoreConfig(sqlite_path=path)) as store,
            SqliteMaintenanceCalendar(path, reload_interval=FAST, metrics=registry) as a,
            SqliteMaintenanceCalendar(path, reload_interval=0) as b,
        ):
            await b.add(_window("w1"))
            await _eventually(lambda: _active_id(a) == "w1", "A sees w1")
            first = a.active(T0, device="sw1")
            for i in range(3):
                event = make_event("link_down")
                await store.record(
                    ReflexOutcome.for_event(
                        "link_down", event, severity=Severity.INFO, summary=f"x{i}"
                    )
                )
                await store.flush()
            # A later change proves the reloader ran past the outcome commits.
            await b.add(_window("w2", target="sw9"))
            await _eventually(lambda: _active_id(a, "sw9") == "w2", "A sees w2")
            assert a.active(T0, device="sw1") is first
    reloads = [e for e in logs if e["event"] == "maintenance_windows_reloaded"]
    assert [(e["added"], e["changed"], e["removed"]) for e in reloads] == [(1, 0, 0), (1, 0, 0)]


async def test_invalid_row_from_another_connection_is_warned_once(tmp_path: Path) -> None:
    """A stored row that does not compile is skipped with one warning, not one per poll."""
    path = tmp_path / "nc.db"
    with capture_logs() as logs:
        async with (
            SqliteMaintenanceCalendar(path, reload_interval=FAST) as a,
            SqliteMaintenanceCalendar(path, reload_interval=0) as b,
        ):
            await b.add(_window("bad", target="sw2"))
            await _eventually(lambda: _active_id(a, "sw2") == "bad", "A sees the window")
            with sqlite3.connect(path) as conn:
                conn.execute("UPDATE maintenance_windows SET timezone = 'Mars/Olympus'")
            await _eventually(lambda: _active_id(a, "sw2") is None, "A drops the bad row")
            # More commits elsewhere: the unchanged bad row is not warned about again.
            await b.add(_window("ok", target="sw3"))
            await _eventually(lambda: _active_id(a, "sw3") == "ok", "A sees the next window")
    warned = [e for e in logs if e["event"] == "maintenance_window_invalid"]
    assert [e["window_id"] for e in warned] == ["bad"]


async def test_close_stops_reloading(tmp_path: Path) -> None:
    """After ``close`` the calendar keeps its last index and no longer follows the file."""
    path = tmp_path / "nc.db"
    a = SqliteMaintenanceCalendar(path, reload_interval=FAST)
    await a.start()
    async with SqliteMaintenanceCalendar(path, reload_interval=0) as b:
        await b.add(_window("w1"))
        await _eventually(lambda: _active_id(a) == "w1", "A sees w1")
        await a.close()
        await b.remove("w1")
        # Started again, the calendar reads the file (the removal) at once.
        assert _active_id(a) == "w1"
        await a.start()
        assert _active_id(a) is None
        await a.close()


def test_negative_reload_interval_is_refused(tmp_path: Path) -> None:
    """A negative reload interval is a ``ValueError`` at construction."""
    with pytest.raises(ValueError, match="reload_interval"):
        SqliteMaintenanceCalendar(tmp_path / "nc.db", reload_interval=-1)
