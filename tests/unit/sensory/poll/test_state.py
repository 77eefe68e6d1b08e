"""Unit tests: the snapshot JSON codec and what only the SQLite poll state has (the file).

The ``PollState`` behaviour both backends share (round trips, down flags,
restarts, sharing, errors, lifecycle) is in ``tests/contracts/test_poll_state.py``.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from netcortex.errors import StoreError
from netcortex.sensory.poll.diff import BgpPeerState, DeviceSnapshot, InterfaceState
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


class TestRoundTrip:
    def test_json_round_trip_is_exact(self) -> None:
        """snapshot_from_json(snapshot_to_json(s)) == s, unicode and None fields included."""
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
        """Anything but the stored shape (types, format, naive time) is a ValueError."""
        with pytest.raises(ValueError, match=r"snapshot|naive|timezone|unpack|format"):
            snapshot_from_json(text)


class TestFile:
    async def test_wal_and_created_directory(self, tmp_path: Path) -> None:
        """start creates missing directories; the file is in WAL mode at layout 1."""
        path = tmp_path / "a" / "b" / "poll.db"
        store = SqlitePollState(path)
        await store.start()
        await store.save(snapshot())
        await store.close()
        with sqlite3.connect(path) as conn:
            assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
            assert conn.execute("PRAGMA user_version").fetchone() == (1,)
        conn.close()

    async def test_unopenable_path_is_a_store_error(self, tmp_path: Path) -> None:
        """A path that is a directory: StoreError naming the path and the failed open."""
        store = SqlitePollState(tmp_path)  # a directory
        with pytest.raises(StoreError, match="open failed") as caught:
            await store.start()
        assert str(tmp_path) in str(caught.value)
        await store.close()


class TestLifecycle:
    async def test_close_without_start(self, tmp_path: Path) -> None:
        """close without start creates no file."""
        store = SqlitePollState(tmp_path / "poll.db")
        await store.close()
        assert not (tmp_path / "poll.db").exists()
