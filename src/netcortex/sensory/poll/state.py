"""Sensory / poll: ``PollState`` and ``SqlitePollState``: the last known snapshot per device.

The poller diffs every new snapshot against the last one stored here, so a
restart neither re-fires a change it already reported (the stored snapshot is
the one after the change) nor misses one that happened while netcortex was
down (the first poll after start is diffed against the stored snapshot, not
taken as a new baseline). The reachability flag (``FailureTracker.down``) is
kept beside it for the same reason.

One table, one row per device: the snapshot as JSON, the time it was saved,
and the ``down`` flag. WAL journal, ``synchronous=NORMAL``. Every SQLite call
runs on one dedicated thread that owns the connection, never on the event
loop; every ``sqlite3`` and file-system error becomes ``StoreError``. A row
that cannot be read back (hand-edited, from a newer layout) is skipped with a
warning: that device is a baseline again, polling goes on.

``PollState`` is the seam ``PollReceiver`` talks to; ``SqlitePollState`` (here)
and ``PostgresPollState`` (``state_postgres``, picked by ``store.backend``, issue
6) implement it. It is defined here rather than in ``contracts/`` because only
this region uses it and its value type, ``DeviceSnapshot``, is the poller's own.

Imports: stdlib, structlog, netcortex.errors, sibling modules.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, Final, Protocol, TypeVar

import structlog

from netcortex.errors import StoreError
from netcortex.sensory.poll.diff import BgpPeerState, DeviceSnapshot, InterfaceState
from netcortex.sqlite_wal import connect_wal

__all__ = [
    "SCHEMA_VERSION",
    "PollState",
    "SqlitePollState",
    "snapshot_from_json",
    "snapshot_to_json",
    "snapshots_from_rows",
]

log = structlog.get_logger(__name__)

#: ``PRAGMA user_version`` of the file layout; ``format`` of the stored JSON.
SCHEMA_VERSION: Final = 1

_TABLE = """
CREATE TABLE IF NOT EXISTS poll_state (
    device    TEXT PRIMARY KEY,
    snapshot  TEXT,
    saved_us  INTEGER NOT NULL,
    down      INTEGER NOT NULL DEFAULT 0
)
"""
_SAVE = (
    "INSERT INTO poll_state (device, snapshot, saved_us) VALUES (?, ?, ?) "
    "ON CONFLICT (device) DO UPDATE SET snapshot = excluded.snapshot, saved_us = excluded.saved_us"
)
_SET_DOWN = (
    "INSERT INTO poll_state (device, snapshot, saved_us, down) VALUES (?, NULL, ?, ?) "
    "ON CONFLICT (device) DO UPDATE SET down = excluded.down"
)

_T = TypeVar("_T")


def snapshot_to_json(snapshot: DeviceSnapshot) -> str:
    """``snapshot`` as compact JSON (the stored form)."""
    doc: dict[str, Any] = {
        "format": SCHEMA_VERSION,
        "device": snapshot.device,
        "agent": snapshot.agent,
        "sys_uptime_ticks": snapshot.sys_uptime_ticks,
        "polled_at": snapshot.polled_at.isoformat(),
        "interfaces": [
            [i.if_index, i.name, i.descr, i.admin_status, i.oper_status, i.last_change]
            for i in snapshot.interfaces.values()
        ],
        "bgp": [[p.remote_addr, p.state] for p in snapshot.bgp.values()],
    }
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False)


def snapshots_from_rows(rows: Iterable[Sequence[Any]]) -> dict[str, DeviceSnapshot]:
    """``(device, snapshot JSON or None)`` rows → snapshots by device; a row that does
    not decode is skipped with a ``poll_state_row_unreadable`` warning (both backends)."""
    out: dict[str, DeviceSnapshot] = {}
    for device, text in rows:
        if text is None:
            continue
        try:
            out[device] = snapshot_from_json(text)
        except ValueError as exc:
            log.warning("poll_state_row_unreadable", device=device, error=str(exc))
    return out


def snapshot_from_json(text: str) -> DeviceSnapshot:
    """The snapshot ``snapshot_to_json`` wrote.

    Raises:
        ValueError: not JSON of that shape (wrong types, unknown format, naive time).
    """
    try:
        doc = json.loads(text)
        if doc["format"] != SCHEMA_VERSION:
            raise ValueError(f"unknown snapshot format {doc['format']!r}")
        interfaces = {}
        for row in doc["interfaces"]:
            idx, name, descr, admin, oper, last = row
            itf = InterfaceState(
                _int(idx), _opt_str(name), _opt_str(descr), _int(admin), _int(oper), _opt_int(last)
            )
            interfaces[itf.if_index] = itf
        bgp = {}
        for addr, state in doc["bgp"]:
            peer = BgpPeerState(_str(addr), _int(state))
            bgp[peer.remote_addr] = peer
        return DeviceSnapshot(
            device=_str(doc["device"]),
            agent=_str(doc["agent"]),
            sys_uptime_ticks=_int(doc["sys_uptime_ticks"]),
            interfaces=interfaces,
            bgp=bgp,
            polled_at=datetime.fromisoformat(_str(doc["polled_at"])),
        )
    except (KeyError, TypeError, json.JSONDecodeError) as exc:
        raise ValueError(f"not a stored snapshot: {exc}") from exc


def _int(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"expected an integer, got {value!r}")
    return value


def _opt_int(value: Any) -> int | None:
    return None if value is None else _int(value)


def _str(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {value!r}")
    return value


def _opt_str(value: Any) -> str | None:
    return None if value is None else _str(value)


class PollState(Protocol):
    """The poller's durable memory: the last known snapshot and the down flag per device.

    ``PollReceiver`` saves a device's snapshot only *after* publishing the
    events diffed from it, and its down flag only after publishing
    ``device_down`` / ``device_up``: a crash in between re-reports on restart
    rather than losing a report. After a restart the first poll is diffed
    against ``load_all()`` (never taken as a new baseline), so a change made
    while netcortex was down is reported exactly once.

    One row per device holds two independent columns: ``save`` writes only the
    snapshot, ``set_down`` only the flag, each as one atomic upsert (no
    read-modify-write), so neither loses the other's update and writes to
    different devices never interfere, also from several processes sharing one
    store (issue 10 shards devices across receivers). Two writers of *one*
    device: the last write of each column wins. Calls are safe from many tasks
    of one event loop. A call cancelled while in flight may or may not have
    been applied (the next ``save`` of that device decides).
    """

    async def start(self) -> None:
        """Open (creating or upgrading the layout when needed). Idempotent.

        Raises:
            StoreError: the store cannot be reached or opened, it holds a newer
                layout than this code understands, or it was closed.
        """
        ...

    async def close(self) -> None:
        """Release the store. Idempotent; safe without ``start``; no I/O after it."""
        ...

    async def load_all(self) -> dict[str, DeviceSnapshot]:
        """Every stored snapshot, by device (devices with only a flag are absent).

        A row that cannot be read back is skipped with a
        ``poll_state_row_unreadable`` warning (that device is a baseline again).

        Raises:
            StoreError: not started, closed, or the read failed.
        """
        ...

    async def load_down(self) -> frozenset[str]:
        """The devices stored as down (for ``FailureTracker(down=...)``).

        Raises:
            StoreError: not started, closed, or the read failed.
        """
        ...

    async def save(self, snapshot: DeviceSnapshot) -> None:
        """Store ``snapshot`` as its device's last known state; durable on return.

        Leaves the device's down flag as it is.

        Raises:
            StoreError: not started, closed, or the write failed.
        """
        ...

    async def set_down(self, device: str, down: bool) -> None:
        """Store whether ``device`` is down; durable on return.

        Leaves the device's snapshot as it is (a device never polled successfully
        has a flag and no snapshot).

        Raises:
            StoreError: not started, closed, or the write failed.
        """
        ...


@contextmanager
def _sqlite_errors(what: str, path: Path) -> Iterator[None]:
    try:
        yield
    except (sqlite3.Error, OSError) as exc:
        raise StoreError(f"poll state {path}: {what} failed: {exc}") from exc


class SqlitePollState:
    """``PollState`` in one SQLite file (the embedded default, ``poll.state_path``).

    Args:
        path: the database file (created with its directory when missing).
    """

    def __init__(self, path: str | Path) -> None:
        self._path = Path(path)
        self._executor: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None
        self._closed = False

    async def start(self) -> None:
        """Open (or create) the file and the table.

        Raises:
            StoreError: the file cannot be opened or is of a newer layout.
        """
        if self._executor is not None:
            return
        if self._closed:
            raise StoreError("poll state: closed")
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="poll-state")
        try:
            await self._run(self._open)
        except BaseException:
            self._executor.shutdown(wait=False)
            self._executor = None
            raise
        log.info("poll_state_opened", backend="sqlite", path=str(self._path))

    def _open(self) -> None:
        with _sqlite_errors("open", self._path):
            self._path.parent.mkdir(parents=True, exist_ok=True)
            conn = connect_wal(self._path)
            try:
                (version,) = conn.execute("PRAGMA user_version").fetchone()
                if version <= SCHEMA_VERSION:
                    conn.execute(_TABLE)
                    conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            except BaseException:
                conn.close()
                raise
        if version > SCHEMA_VERSION:
            conn.close()
            raise StoreError(
                f"poll state {self._path}: layout {version} is newer than "
                f"{SCHEMA_VERSION}; upgrade netcortex"
            )
        self._conn = conn

    async def close(self) -> None:
        """Close the file. Idempotent; safe without ``start``."""
        self._closed = True
        executor, self._executor = self._executor, None
        if executor is None:
            return
        try:
            await asyncio.get_running_loop().run_in_executor(executor, self._close_conn)
        finally:
            executor.shutdown(wait=False)

    def _close_conn(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    async def _run(self, fn: Callable[[], _T]) -> _T:
        executor = self._executor
        if executor is None:
            raise StoreError("poll state: closed" if self._closed else "poll state: not started")
        return await asyncio.get_running_loop().run_in_executor(executor, fn)

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError("poll state: not open")
        return self._conn

    async def load_all(self) -> dict[str, DeviceSnapshot]:
        """Every stored snapshot, by device.

        Raises:
            StoreError: not started, closed, or the read failed.
        """
        rows = await self._run(self._select("SELECT device, snapshot FROM poll_state"))
        return snapshots_from_rows(rows)

    async def load_down(self) -> frozenset[str]:
        """The devices stored as down (for ``FailureTracker(down=...)``).

        Raises:
            StoreError: not started, closed, or the read failed.
        """
        rows = await self._run(self._select("SELECT device FROM poll_state WHERE down != 0"))
        return frozenset(device for (device,) in rows)

    async def save(self, snapshot: DeviceSnapshot) -> None:
        """Store ``snapshot`` as its device's last known state (durable on return).

        Raises:
            StoreError: not started, closed, or the write failed.
        """
        params = (snapshot.device, snapshot_to_json(snapshot), time.time_ns() // 1000)
        await self._run(self._write(_SAVE, params))

    async def set_down(self, device: str, down: bool) -> None:
        """Store whether ``device`` is down (after ``device_down`` / ``device_up``).

        Raises:
            StoreError: not started, closed, or the write failed.
        """
        await self._run(self._write(_SET_DOWN, (device, time.time_ns() // 1000, int(down))))

    def _select(self, sql: str) -> Callable[[], list[tuple[Any, ...]]]:
        def run() -> list[tuple[Any, ...]]:
            with _sqlite_errors("read", self._path):
                return self._connection().execute(sql).fetchall()

        return run

    def _write(self, sql: str, params: tuple[Any, ...]) -> Callable[[], None]:
        def run() -> None:
            with _sqlite_errors("write", self._path):
                self._connection().execute(sql, params)

        return run
