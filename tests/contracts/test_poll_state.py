"""Contract suite for ``PollState`` (the poller's durable memory): every backend, one suite.

Backends are parameters of ``backend``: SQLite (a file in ``tmp_path``) and
PostgreSQL (a fresh schema per test on the session's server, see
``tests.conftest.postgres_dsn``). Each parameter is a ``Backend``: a factory of
new, unstarted instances on the test's own location plus the few things only
the backend itself can do to that location (claim a newer layout, hold an
unreadable row, be unreachable). The tests use only the ``PollState`` methods
and contain no backend branches.
"""

from __future__ import annotations

import asyncio
import socket
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import asyncpg
import pytest
from structlog.testing import capture_logs

from netcortex.errors import StoreError
from netcortex.logs import redact_url
from netcortex.sensory.poll.diff import (
    BgpPeerState,
    DeviceSnapshot,
    FailureTracker,
    InterfaceState,
    diff,
)
from netcortex.sensory.poll.state import PollState, SqlitePollState
from netcortex.sensory.poll.state_postgres import LEDGER, PostgresPollState

T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
#: A password that must never show in an error (the unreachable backend's DSN has it).
PASSWORD = "p0ll-s3cret-pw"


@dataclass(frozen=True, slots=True)
class Backend:
    """One ``PollState`` backend on the test's own location.

    Attributes:
        new: a new, unstarted instance on the location (many may share it).
        unreachable: an unstarted instance whose ``start`` cannot succeed.
        unreachable_where: what the ``unreachable`` error names (path or redacted URL).
        mark_newer: make the location claim a layout newer than the code knows.
        put_unreadable: store a row for ``device`` that cannot be read back.
    """

    new: Callable[[], PollState]
    unreachable: Callable[[], PollState]
    unreachable_where: str
    mark_newer: Callable[[], Awaitable[None]]
    put_unreadable: Callable[[str], Awaitable[None]]


def _sqlite(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    path = tmp_path / "state" / "poll.db"

    async def mark_newer() -> None:
        with sqlite3.connect(path) as conn:
            conn.execute("PRAGMA user_version=99")
        conn.close()

    async def put_unreadable(device: str) -> None:
        with sqlite3.connect(path) as conn:
            conn.execute(
                "INSERT INTO poll_state (device, snapshot, saved_us) VALUES (?, '{', 0)", (device,)
            )
        conn.close()

    return Backend(
        new=lambda: SqlitePollState(path),
        unreachable=lambda: SqlitePollState(tmp_path),  # a directory
        unreachable_where=str(tmp_path),
        mark_newer=mark_newer,
        put_unreadable=put_unreadable,
    )


def _closed_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def _postgres(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    """A fresh schema per test on the session's PostgreSQL (``tests.conftest``)."""
    dsn: str = request.getfixturevalue("postgres_dsn")
    schema: str = request.getfixturevalue("postgres_schema")
    dead = f"postgresql://netcortex:{PASSWORD}@127.0.0.1:{_closed_port()}/netcortex"

    async def sql(statement: str, *args: object) -> None:
        conn = await asyncpg.connect(dsn, timeout=10)
        try:
            await conn.execute(statement, *args)
        finally:
            await conn.close()

    async def mark_newer() -> None:
        await sql(f'INSERT INTO "{schema}".{LEDGER} (version) VALUES (99)')

    async def put_unreadable(device: str) -> None:
        await sql(
            f"INSERT INTO \"{schema}\".poll_state (device, snapshot) VALUES ($1, '{{')",
            device,
        )

    return Backend(
        new=lambda: PostgresPollState(dsn, schema),
        unreachable=lambda: PostgresPollState(dead, schema, connect_timeout=5),
        unreachable_where=redact_url(dead),
        mark_newer=mark_newer,
        put_unreadable=put_unreadable,
    )


POLL_STATE_BACKENDS = [
    pytest.param(_sqlite, id="sqlite"),
    pytest.param(_postgres, id="postgres"),
]


@pytest.fixture(params=POLL_STATE_BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    """The ``PollState`` backend under test, on this test's own location."""
    factory: Callable[[pytest.FixtureRequest, Path], Backend] = request.param
    return factory(request, tmp_path)


@pytest.fixture
async def state(backend: Backend) -> AsyncIterator[PollState]:
    """A started state of the backend under test, closed after the test."""
    s = backend.new()
    await s.start()
    try:
        yield s
    finally:
        await s.close()


@pytest.fixture
async def opened(backend: Backend) -> AsyncIterator[Callable[[], Awaitable[PollState]]]:
    """``await opened()``: another started instance on the same location (closed after)."""
    made: list[PollState] = []

    async def make() -> PollState:
        s = backend.new()
        made.append(s)
        await s.start()
        return s

    yield make
    for s in made:
        await s.close()


def snapshot(
    oper: int = 1, *, device: str = "sw1", uptime: int = 100_000, at: datetime = T0
) -> DeviceSnapshot:
    """A switch with an up port, a shut unnamed port and two BGP peers (v4 up, v6 active)."""
    return DeviceSnapshot(
        device=device,
        agent="192.0.2.11",
        sys_uptime_ticks=uptime,
        interfaces={
            3: InterfaceState(3, "Gi1/0/3", "GigabitEthernet1/0/3", 1, oper, 4200),
            4: InterfaceState(4, None, "Ünïcode port ✓", 2, 2, None),
        },
        bgp={
            "10.0.0.2": BgpPeerState("10.0.0.2", 6),
            "2001:db8::2": BgpPeerState("2001:db8::2", 3),
        },
        polled_at=at,
    )


class TestRoundTrip:
    async def test_save_and_load(self, state: PollState) -> None:
        """Saved snapshots of two devices come back equal in every field, by device."""
        a, b = snapshot(device="sw1"), snapshot(device="sw2", uptime=7)
        await state.save(a)
        await state.save(b)
        assert await state.load_all() == {"sw1": a, "sw2": b}

    async def test_edge_values_round_trip(self, state: PollState) -> None:
        """sysUpTime at 2**32-1, an empty device (no interfaces, no peers), a NUL and
        quotes in a description, a non-UTC offset and microseconds all come back exact."""
        odd = DeviceSnapshot(
            device="edge.example.net",
            agent="2001:db8::11",
            sys_uptime_ticks=2**32 - 1,
            interfaces={
                2**31 - 1: InterfaceState(2**31 - 1, "x\x00y", "'\"\\ {}", 1, 7, 0),
            },
            bgp={"fe80::1%eth0": BgpPeerState("fe80::1%eth0", 1)},
            polled_at=datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=timezone(timedelta(hours=-5))),
        )
        empty = replace(odd, device="bare", interfaces={}, bgp={})
        await state.save(odd)
        await state.save(empty)
        loaded = await state.load_all()
        assert loaded == {"edge.example.net": odd, "bare": empty}
        assert loaded["edge.example.net"].polled_at.utcoffset() == timedelta(hours=-5)

    async def test_save_replaces_the_last_known_state(self, state: PollState) -> None:
        """A second save of a device replaces its snapshot (one row per device)."""
        await state.save(snapshot(1))
        newer = snapshot(2, at=T0 + timedelta(minutes=1))
        await state.save(newer)
        assert await state.load_all() == {"sw1": newer}

    async def test_empty_store_loads_nothing(self, state: PollState) -> None:
        """A new store has no snapshots and no down devices."""
        assert await state.load_all() == {}
        assert await state.load_down() == frozenset()

    async def test_many_concurrent_saves(self, state: PollState) -> None:
        """200 devices saved from 200 tasks at once are all stored."""
        snaps = [snapshot(device=f"sw{n}", uptime=n) for n in range(200)]
        await asyncio.gather(*(state.save(s) for s in snaps))
        assert await state.load_all() == {s.device: s for s in snaps}


class TestDownFlags:
    async def test_flags_are_independent_of_snapshots(self, state: PollState) -> None:
        """set_down keeps the snapshot, save keeps the flag; a flag alone is no snapshot."""
        await state.save(snapshot())
        await state.set_down("sw1", True)
        await state.set_down("sw9", True)  # never polled successfully: no snapshot
        newer = snapshot(at=T0 + timedelta(minutes=1))
        await state.save(newer)  # keeps the flag as set
        assert await state.load_down() == frozenset({"sw1", "sw9"})
        assert await state.load_all() == {"sw1": newer}
        await state.set_down("sw1", False)
        await state.set_down("sw1", False)  # idempotent
        assert await state.load_down() == frozenset({"sw9"})
        assert await state.load_all() == {"sw1": newer}


class TestSharing:
    async def test_two_instances_see_each_others_writes(
        self, opened: Callable[[], Awaitable[PollState]]
    ) -> None:
        """Two instances on one store (two processes sharing it): each reads what the
        other committed, as soon as the write returned."""
        a, b = await opened(), await opened()
        one, two = snapshot(device="sw1"), snapshot(device="sw2")
        await a.save(one)
        await b.save(two)
        await b.set_down("sw1", True)
        for s in (a, b):
            assert await s.load_all() == {"sw1": one, "sw2": two}
            assert await s.load_down() == frozenset({"sw1"})

    async def test_concurrent_writers_lose_no_update(
        self, opened: Callable[[], Awaitable[PollState]]
    ) -> None:
        """One instance saving snapshots while another flips the same devices' flags, all
        at once: every snapshot and every flag is stored (no read-modify-write)."""
        a, b = await opened(), await opened()
        snaps = [snapshot(device=f"d{n}", uptime=n) for n in range(40)]
        await asyncio.gather(
            *(a.save(s) for s in snaps),
            *(b.set_down(s.device, n % 2 == 0) for n, s in enumerate(snaps)),
        )
        assert await a.load_all() == {s.device: s for s in snaps}
        assert await b.load_down() == frozenset(s.device for s in snaps[::2])

    async def test_instances_starting_together_on_a_new_store(self, backend: Backend) -> None:
        """Several instances starting at once on a store nobody created yet all open it
        (the layout is created once) and share it."""
        states = [backend.new() for _ in range(4)]
        try:
            await asyncio.gather(*(s.start() for s in states))
            await states[0].save(snapshot())
            for s in states:
                assert set(await s.load_all()) == {"sw1"}
        finally:
            for s in states:
                await s.close()


class TestRestart:
    async def test_a_change_while_down_is_reported_once(self, backend: Backend) -> None:
        """Saved up, restarted, polled down: one link_down; restarted again: nothing more."""
        before = snapshot(1)
        first = backend.new()
        await first.start()
        assert diff((await first.load_all()).get("sw1"), before, memory=None) == []  # baseline
        await first.save(before)
        await first.close()

        second = backend.new()
        await second.start()
        after = snapshot(2, uptime=500_000, at=T0 + timedelta(hours=1))
        events = diff((await second.load_all())["sw1"], after, memory=None)
        assert [(e.event_class, e.target) for e in events] == [("link_down", "192.0.2.11|Gi1/0/3")]
        await second.save(after)
        await second.close()

        third = backend.new()
        await third.start()
        again = snapshot(2, uptime=506_000, at=T0 + timedelta(hours=1, minutes=1))
        assert diff((await third.load_all())["sw1"], again, memory=None) == []
        await third.close()

    async def test_down_devices_survive_a_restart(self, backend: Backend) -> None:
        """device_down before a restart is neither repeated nor forgotten after it."""
        store = backend.new()
        await store.start()
        await store.save(snapshot())
        tracker = FailureTracker(1)
        assert tracker.failure("sw1", "192.0.2.11", T0) is not None
        await store.set_down("sw1", True)
        await store.close()

        store = backend.new()
        await store.start()
        down = await store.load_down()
        assert down == frozenset({"sw1"})
        tracker = FailureTracker(1, down=down)
        assert tracker.failure("sw1", "192.0.2.11", T0) is None  # not repeated
        up = tracker.success("sw1", "192.0.2.11", T0)
        assert up is not None
        assert up.event_class == "device_up"  # not forgotten
        await store.set_down("sw1", False)
        await store.close()

        store = backend.new()
        await store.start()
        assert await store.load_down() == frozenset()
        await store.close()


class TestErrors:
    async def test_unreachable_store_is_a_store_error(self, backend: Backend) -> None:
        """A store that cannot be opened: StoreError naming where and what failed, with
        the underlying error chained and no password in the message."""
        store = backend.unreachable()
        with pytest.raises(StoreError) as caught:
            await store.start()
        message = str(caught.value)
        assert backend.unreachable_where in message
        assert "failed" in message
        assert PASSWORD not in message
        assert caught.value.__cause__ is not None
        await store.close()

    async def test_newer_layout_is_refused(self, backend: Backend) -> None:
        """A store written by a newer netcortex is refused at start, asking for an upgrade."""
        first = backend.new()
        await first.start()
        await first.save(snapshot())
        await first.close()
        await backend.mark_newer()
        store = backend.new()
        with pytest.raises(StoreError, match="upgrade netcortex"):
            await store.start()
        await store.close()

    async def test_unreadable_row_is_skipped_with_a_warning(
        self, backend: Backend, state: PollState
    ) -> None:
        """A row that cannot be read back is skipped with a warning; the others load."""
        await state.save(snapshot(device="good"))
        await backend.put_unreadable("bad")
        with capture_logs() as logs:
            loaded = await state.load_all()
        assert set(loaded) == {"good"}
        [entry] = [e for e in logs if e["event"] == "poll_state_row_unreadable"]
        assert entry["device"] == "bad"
        assert entry["log_level"] == "warning"


class TestLifecycle:
    async def test_use_before_start_and_after_close_is_a_store_error(
        self, backend: Backend
    ) -> None:
        """Calls before start say "not started", after close "closed"; start and close
        are idempotent; a closed state does not start again."""
        store = backend.new()
        for call in (store.load_all(), store.load_down(), store.save(snapshot())):
            with pytest.raises(StoreError, match="not started"):
                await call
        await store.start()
        await store.start()  # idempotent
        await store.close()
        await store.close()  # idempotent
        for call in (store.load_all(), store.save(snapshot()), store.set_down("x", True)):
            with pytest.raises(StoreError, match="closed"):
                await call
        with pytest.raises(StoreError, match="closed"):
            await store.start()

    async def test_close_without_start(self, backend: Backend) -> None:
        """close on a never-started state is a no-op."""
        await backend.new().close()

    async def test_start_logs_the_backend(self, backend: Backend) -> None:
        """start logs poll_state_opened with the backend's name."""
        store = backend.new()
        with capture_logs() as logs:
            await store.start()
        await store.close()
        [opened] = [e for e in logs if e["event"] == "poll_state_opened"]
        assert opened["backend"] in {"sqlite", "postgres"}
