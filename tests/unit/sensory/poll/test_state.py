"""Unit tests: the durable last-known poll state (SQLite), and restarts diffed correctly."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from netcortex.errors import StoreError
from netcortex.sensory.poll.diff import (
    BgpPeerState,
    DeviceSnapshot,
    FailureTracker,
    InterfaceState,
    diff,
)
from netcortex.sensory.poll.state import SqlitePollState, snapshot_from_json, snapshot_to_json

T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def snapshot(
    oper: int = 1, *, device: str = "sw1", uptime: int = 100_000, at: datetime = T0
) -> DeviceSnapshot:
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


@pytest.fixture
async def state(tmp_path: Path) -> AsyncIterator[SqlitePollState]:
    store = SqlitePollState(tmp_path / "poll.db")
    await store.start()
    yield store
    await store.close()


class TestRoundTrip:
    def test_json_round_trip_is_exact(self) -> None:
        s = snapshot()
        assert snapshot_from_json(snapshot_to_json(s)) == s

    @pytest.mark.parametrize(
        "text",
        [
            "not json",
            "[]",
            '{"format": 99}',
            '{"format": 1, "device": "d"}',
            '{"format":1,"device":"d","agent":"a","sys_uptime_ticks":"1",'
            '"polled_at":"2026-01-01T00:00:00+00:00","interfaces":[],"bgp":[]}',
            '{"format":1,"device":"d","agent":"a","sys_uptime_ticks":1,'
            '"polled_at":"2026-01-01T00:00:00","interfaces":[],"bgp":[]}',
            '{"format":1,"device":"d","agent":"a","sys_uptime_ticks":1,'
            '"polled_at":"2026-01-01T00:00:00+00:00","interfaces":[[1,2]],"bgp":[]}',
        ],
    )
    def test_malformed_json_is_a_value_error(self, text: str) -> None:
        with pytest.raises(ValueError, match=r"snapshot|naive|timezone|unpack|format"):
            snapshot_from_json(text)

    async def test_save_and_load(self, state: SqlitePollState) -> None:
        a, b = snapshot(device="sw1"), snapshot(device="sw2", uptime=7)
        await state.save(a)
        await state.save(b)
        assert await state.load_all() == {"sw1": a, "sw2": b}

    async def test_save_replaces_the_last_known_state(self, state: SqlitePollState) -> None:
        await state.save(snapshot(1))
        newer = snapshot(2, at=T0 + timedelta(minutes=1))
        await state.save(newer)
        assert await state.load_all() == {"sw1": newer}

    async def test_empty_store_loads_nothing(self, state: SqlitePollState) -> None:
        assert await state.load_all() == {}
        assert await state.load_down() == frozenset()


class TestRestart:
    async def test_a_change_while_down_is_reported_once(self, tmp_path: Path) -> None:
        """Saved up, restarted, polled down: one link_down; restarted again: nothing more."""
        path = tmp_path / "poll.db"
        before = snapshot(1)
        first = SqlitePollState(path)
        await first.start()
        assert diff((await first.load_all()).get("sw1"), before, memory=None) == []  # baseline
        await first.save(before)
        await first.close()

        second = SqlitePollState(path)
        await second.start()
        after = snapshot(2, uptime=500_000, at=T0 + timedelta(hours=1))
        events = diff((await second.load_all())["sw1"], after, memory=None)
        assert [(e.event_class, e.target) for e in events] == [("link_down", "192.0.2.11|Gi1/0/3")]
        await second.save(after)
        await second.close()

        third = SqlitePollState(path)
        await third.start()
        again = snapshot(2, uptime=506_000, at=T0 + timedelta(hours=1, minutes=1))
        assert diff((await third.load_all())["sw1"], again, memory=None) == []
        await third.close()

    async def test_down_devices_survive_a_restart(self, tmp_path: Path) -> None:
        """device_down before a restart is neither repeated nor forgotten after it."""
        path = tmp_path / "poll.db"
        store = SqlitePollState(path)
        await store.start()
        await store.save(snapshot())
        tracker = FailureTracker(1)
        assert tracker.failure("sw1", "192.0.2.11", T0) is not None
        await store.set_down("sw1", True)
        await store.set_down("sw9", True)  # never polled successfully: no snapshot
        await store.close()

        store = SqlitePollState(path)
        await store.start()
        down = await store.load_down()
        assert down == frozenset({"sw1", "sw9"})
        assert set(await store.load_all()) == {"sw1"}  # the flag row holds no snapshot
        tracker = FailureTracker(1, down=down)
        assert tracker.failure("sw1", "192.0.2.11", T0) is None
        up = tracker.success("sw1", "192.0.2.11", T0)
        assert up is not None
        assert up.event_class == "device_up"
        await store.set_down("sw1", False)
        await store.save(snapshot(at=T0 + timedelta(minutes=1)))  # keeps the flag as set
        assert await store.load_down() == frozenset({"sw9"})
        await store.close()


class TestFile:
    async def test_wal_and_created_directory(self, tmp_path: Path) -> None:
        path = tmp_path / "a" / "b" / "poll.db"
        store = SqlitePollState(path)
        await store.start()
        await store.save(snapshot())
        await store.close()
        with sqlite3.connect(path) as conn:
            assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
            assert conn.execute("PRAGMA user_version").fetchone() == (1,)
        conn.close()

    async def test_unreadable_row_is_skipped_with_a_warning(self, tmp_path: Path) -> None:
        path = tmp_path / "poll.db"
        store = SqlitePollState(path)
        await store.start()
        await store.save(snapshot(device="good"))
        await store.close()
        with sqlite3.connect(path) as conn:
            conn.execute(
                "INSERT INTO poll_state (device, snapshot, saved_us) VALUES ('bad', '{', 0)"
            )
        conn.close()

        store = SqlitePollState(path)
        await store.start()
        with capture_logs() as logs:
            loaded = await store.load_all()
        await store.close()
        assert set(loaded) == {"good"}
        [entry] = [e for e in logs if e["event"] == "poll_state_row_unreadable"]
        assert entry["device"] == "bad"
        assert entry["log_level"] == "warning"

    async def test_newer_layout_is_refused(self, tmp_path: Path) -> None:
        path = tmp_path / "poll.db"
        with sqlite3.connect(path) as conn:
            conn.execute("PRAGMA user_version=99")
        conn.close()
        store = SqlitePollState(path)
        with pytest.raises(StoreError, match="newer"):
            await store.start()
        await store.close()

    async def test_unopenable_path_is_a_store_error(self, tmp_path: Path) -> None:
        store = SqlitePollState(tmp_path)  # a directory
        with pytest.raises(StoreError, match="open"):
            await store.start()
        await store.close()


class TestLifecycle:
    async def test_use_before_start_and_after_close_is_a_store_error(self, tmp_path: Path) -> None:
        store = SqlitePollState(tmp_path / "poll.db")
        with pytest.raises(StoreError, match="not started"):
            await store.load_all()
        await store.start()
        await store.start()  # idempotent
        await store.close()
        await store.close()  # idempotent
        for call in (store.load_all(), store.save(snapshot()), store.set_down("x", True)):
            with pytest.raises(StoreError, match="closed"):
                await call
        with pytest.raises(StoreError, match="closed"):
            await store.start()

    async def test_close_without_start(self, tmp_path: Path) -> None:
        store = SqlitePollState(tmp_path / "poll.db")
        await store.close()
        assert not (tmp_path / "poll.db").exists()
