"""A PostgreSQL restart while netcortex runs: the maintenance calendar's reloader, its
writes and the poll state fail with ``StoreError`` while the server is down and work
again once it is back, without a restart of netcortex (asyncpg pools reconnect).

The server is this module's own throwaway ``tests.pg_server.RestartablePostgres``
(the session's shared one must not be stopped).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from structlog.testing import capture_logs

from netcortex.contracts.memory import MaintenanceWindow
from netcortex.errors import StoreError
from netcortex.memory.semantic.maintenance import PostgresMaintenanceCalendar
from netcortex.sensory.poll.diff import DeviceSnapshot
from netcortex.sensory.poll.state_postgres import PostgresPollState
from tests.pg_server import RestartablePostgres

pytestmark = pytest.mark.slow

T0 = datetime(2025, 6, 1, 10, 0, tzinfo=UTC)
FAST = 0.05


@dataclass
class Restartable:
    """A PostgreSQL server this module may stop and start."""

    dsn: str
    stop: Callable[[], None]
    start: Callable[[], None]


@pytest.fixture(scope="module")
def restartable() -> Iterator[Restartable]:
    """A server of this module's own (``tests.pg_server``: its data directory is out of
    ``/tmp/pytest-of-root``, which another pytest session may lock down meanwhile;
    deleted after)."""
    with RestartablePostgres() as server:
        yield Restartable(server.dsn, server.stop, server.start)


def _window(window_id: str) -> MaintenanceWindow:
    return MaintenanceWindow(
        id=window_id, scope="device", target=window_id, start=T0, end=T0 + timedelta(hours=2)
    )


def _covers(cal: PostgresMaintenanceCalendar, device: str) -> bool:
    return cal.active(T0 + timedelta(minutes=1), device=device) is not None


async def _eventually(cond: Callable[[], bool], what: str, deadline: float = 15.0) -> None:
    loop = asyncio.get_running_loop()
    until = loop.time() + deadline
    while not cond():
        if loop.time() > until:
            pytest.fail(f"not within {deadline} s: {what}")
        await asyncio.sleep(0.02)


async def _until_ok(call: Callable[[], Awaitable[object]], deadline: float = 15.0) -> None:
    """Retry ``call`` on ``StoreError`` (the pool reconnecting) until it succeeds."""
    loop = asyncio.get_running_loop()
    until = loop.time() + deadline
    while True:
        try:
            await call()
        except StoreError:
            if loop.time() > until:
                raise
            await asyncio.sleep(0.1)
        else:
            return


async def test_calendar_and_poll_state_recover_from_a_server_restart(
    restartable: Restartable,
) -> None:
    """Down: writes and reads are ``StoreError``, the reloader warns once and keeps the
    index. Back up: writes land again and the reloader follows them (``recovered``)."""
    dsn = restartable.dsn
    watcher = PostgresMaintenanceCalendar(dsn, "restart", reload_interval=FAST)
    writer = PostgresMaintenanceCalendar(dsn, "restart", reload_interval=0)
    state = PostgresPollState(dsn, "restart", connect_timeout=3)
    snapshot = DeviceSnapshot(device="sw1", agent="192.0.2.1", sys_uptime_ticks=1, polled_at=T0)
    with capture_logs() as logs:
        async with watcher, writer:
            await state.start()
            try:
                await writer.add(_window("before"))
                await _eventually(lambda: _covers(watcher, "before"), "the watcher sees it")

                await asyncio.to_thread(restartable.stop)
                with pytest.raises(StoreError):
                    await writer.add(_window("while-down"))
                with pytest.raises(StoreError):
                    await state.save(snapshot)
                await _eventually(
                    lambda: any(e["event"] == "maintenance_reload_failed" for e in logs),
                    "the reloader notices",
                )
                assert _covers(watcher, "before")  # the index stays

                await asyncio.to_thread(restartable.start)
                await _until_ok(lambda: writer.add(_window("after")))
                await _until_ok(lambda: state.save(snapshot))
                await _eventually(lambda: _covers(watcher, "after"), "the watcher follows again")
                assert await state.load_all() == {"sw1": snapshot}
                assert any(e["event"] == "maintenance_reload_recovered" for e in logs)
            finally:
                await state.close()
    failed = [e for e in logs if e["event"] == "maintenance_reload_failed"]
    assert len(failed) == 1  # once per failure streak
