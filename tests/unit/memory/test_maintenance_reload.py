"""Live reload of ``SqliteMaintenanceCalendar``, the SQLite-only parts: outcome
commits to the shared file move ``data_version`` without rebuilding windows.
Reload behaviour common to every storage is in
``tests/contracts/test_maintenance_calendar.py``."""

from __future__ import annotations

import asyncio
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


def test_negative_reload_interval_is_refused(tmp_path: Path) -> None:
    """A negative reload interval is a ``ValueError`` at construction."""
    with pytest.raises(ValueError, match="reload_interval"):
        SqliteMaintenanceCalendar(tmp_path / "nc.db", reload_interval=-1)
