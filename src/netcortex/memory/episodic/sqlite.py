"""Memory, episodic: ``SqliteOutcomeStore`` — outcomes in one SQLite file (the embedded default).

Design (issue 2, item 8; LIMITS.md "Storage": batching decides everything):

* ``record`` turns the outcome into a row and appends it to the pending batch,
  on the event loop — no I/O, no lock, no await on the disk. The batch is handed
  to the writer when it reaches ``batch_size`` rows or ``flush_interval``
  seconds after its first row, whichever comes first (a timer on the loop).
* **One writer thread** owns the only writing connection and writes each batch
  in **one transaction** with ``INSERT OR IGNORE`` — idempotent on
  ``outcome_id``, so a re-delivered event never makes a second row. It wakes
  once per batch, not per row, so it hardly competes with the loop for the GIL.
* ``flush`` hands over the pending batch, then a marker, on the same FIFO queue;
  the writer answers the marker after committing everything before it, so
  ``flush`` returns when everything recorded before it is committed.
* **WAL** journal, ``synchronous=NORMAL``: a committed batch survives a crash of
  the process (not necessarily a power cut), and readers — ``query``/``get`` on a
  separate read-only connection, or ``netcortex outcomes`` in another process —
  never block the writer and never see half a batch.
* Every ``sqlite3`` (and file-system) error is mapped to ``StoreError`` in one
  context manager, ``_sqlite_errors``.

Times are stored as integer microseconds since the epoch (UTC), so range
filters and ordering are integer comparisons on indexed columns.

Schema versions (``PRAGMA user_version``): 1 (issue 2), 2 (issue 3: ``role``
and ``trace``, the decision trace as JSON). The writer brings an older file up
to date with ``ALTER TABLE`` in one transaction at ``start``; rows written before
read back with ``role=None`` and an empty ``trace``. A read-only opener never
migrates and reads an old file as it is. A newer file is refused.

May import: ``contracts``, ``errors``, ``config``, ``metrics``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import queue
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, Final

import structlog

from netcortex.config import StoreConfig
from netcortex.contracts.memory import OutcomeQuery
from netcortex.contracts.reflex import ReflexOutcome
from netcortex.errors import StoreError
from netcortex.metrics import Registry

__all__ = ["SCHEMA_VERSION", "SqliteOutcomeStore"]

log = structlog.get_logger(__name__)

#: ``PRAGMA user_version`` of the file layout this module writes.
#: 1: issue 2. 2: issue 3 added ``role`` and ``trace`` (the decision trace, JSON).
SCHEMA_VERSION: Final = 2

_TABLE = """
CREATE TABLE IF NOT EXISTS outcomes (
    outcome_id      TEXT PRIMARY KEY,
    handler_id      TEXT NOT NULL,
    event_id        TEXT NOT NULL,
    subject         TEXT NOT NULL,
    kind            TEXT NOT NULL,
    severity        TEXT NOT NULL,
    target          TEXT NOT NULL,
    device          TEXT,
    site            TEXT,
    summary         TEXT NOT NULL,
    diagnostic      TEXT NOT NULL,
    fact_key        TEXT NOT NULL,
    occurred_us     INTEGER NOT NULL,
    recorded_us     INTEGER NOT NULL,
    details         TEXT NOT NULL,
    schema_version  INTEGER NOT NULL,
    role            TEXT,
    trace           TEXT NOT NULL DEFAULT '{}'
)
"""

#: Columns added after version 1, in order: ``ALTER TABLE`` brings an older file
#: up to date (rows written before get NULL / ``'{}'``).
_ADDED_COLUMNS: tuple[tuple[str, str], ...] = (
    ("role", "TEXT"),
    ("trace", "TEXT NOT NULL DEFAULT '{}'"),
)

_INDEXES = (
    "CREATE INDEX IF NOT EXISTS outcomes_recorded ON outcomes (recorded_us)",
    "CREATE INDEX IF NOT EXISTS outcomes_handler ON outcomes (handler_id, recorded_us)",
    "CREATE INDEX IF NOT EXISTS outcomes_severity ON outcomes (severity, recorded_us)",
    "CREATE INDEX IF NOT EXISTS outcomes_kind ON outcomes (kind, recorded_us)",
    "CREATE INDEX IF NOT EXISTS outcomes_device ON outcomes (device, recorded_us)",
)

_COLUMNS = (
    "outcome_id, handler_id, event_id, subject, kind, severity, target, device, site, "
    "summary, diagnostic, fact_key, occurred_us, recorded_us, details, schema_version, "
    "role, trace"
)
_INSERT = f"INSERT OR IGNORE INTO outcomes ({_COLUMNS}) VALUES ({', '.join('?' * 18)})"  # noqa: S608
_SELECT = f"SELECT {_COLUMNS} FROM outcomes"  # noqa: S608 - constant column list
# A read-only reader of a version-1 file (not migrated yet: only a writer
# migrates) reads the added columns as their defaults.
_SELECT_V1 = (
    "SELECT outcome_id, handler_id, event_id, subject, kind, severity, target, device, "
    "site, summary, diagnostic, fact_key, occurred_us, recorded_us, details, "
    "schema_version, NULL, '{}' FROM outcomes"
)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_US = timedelta(microseconds=1)
_BUSY_TIMEOUT_S = 5.0
_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode

_Row = tuple[Any, ...]


@contextmanager
def _sqlite_errors(action: str, path: Path) -> Iterator[None]:
    """Map every ``sqlite3`` and file-system error to ``StoreError`` (the one mapping)."""
    try:
        yield
    except (sqlite3.Error, sqlite3.Warning, OSError) as exc:
        raise StoreError(f"sqlite {action} failed on {path}: {exc}") from exc


def _to_us(value: datetime, what: str) -> int:
    if value.tzinfo is None:
        raise StoreError(f"{what} must be a timezone-aware datetime (UTC), got {value!r}")
    return (value - _EPOCH) // _ONE_US


def _from_us(value: int) -> datetime:
    return _EPOCH + timedelta(microseconds=value)


def _row(outcome: ReflexOutcome) -> _Row:
    try:
        details = _dumps(dict(outcome.details))
    except (TypeError, ValueError) as exc:
        raise StoreError(
            f"outcome {outcome.outcome_id}: details are not JSON-serialisable: {exc}"
        ) from exc
    try:
        trace = _dumps(dict(outcome.trace))
    except (TypeError, ValueError) as exc:
        raise StoreError(
            f"outcome {outcome.outcome_id}: trace is not JSON-serialisable: {exc}"
        ) from exc
    return (
        outcome.outcome_id,
        outcome.handler_id,
        outcome.event_id,
        outcome.subject,
        outcome.kind.value,
        outcome.severity.value,
        outcome.target,
        outcome.device,
        outcome.site,
        outcome.summary,
        outcome.diagnostic,
        outcome.fact_key,
        _to_us(outcome.occurred_at, "occurred_at"),
        _to_us(outcome.recorded_at, "recorded_at"),
        details,
        outcome.schema_version,
        outcome.role,
        trace,
    )


def _outcome(row: _Row) -> ReflexOutcome:
    return ReflexOutcome(
        outcome_id=row[0],
        handler_id=row[1],
        event_id=row[2],
        subject=row[3],
        kind=row[4],
        severity=row[5],
        target=row[6],
        device=row[7],
        site=row[8],
        summary=row[9],
        diagnostic=row[10],
        fact_key=row[11],
        occurred_at=_from_us(row[12]),
        recorded_at=_from_us(row[13]),
        details=json.loads(row[14]),
        schema_version=row[15],
        role=row[16],
        trace=json.loads(row[17]) if row[17] else {},
    )


def _migrate(conn: sqlite3.Connection) -> int:
    """Create the schema, or bring an older file up to ``SCHEMA_VERSION``; one transaction.

    ``BEGIN IMMEDIATE`` serialises two processes opening the same old file: the
    second sees the new version and changes nothing. Returns the version found
    (0 for a new file); a newer version is left untouched for the caller to refuse.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        version: int = conn.execute("PRAGMA user_version").fetchone()[0]
        if version <= SCHEMA_VERSION:
            conn.execute(_TABLE)
            have = {row[1] for row in conn.execute("PRAGMA table_info(outcomes)")}
            for name, decl in _ADDED_COLUMNS:
                if name not in have:
                    conn.execute(f"ALTER TABLE outcomes ADD COLUMN {name} {decl}")
            for statement in _INDEXES:
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return version


def _select_for(conn: sqlite3.Connection) -> str:
    """The SELECT that reads this file: a version-1 layout lacks ``role``/``trace``."""
    have = {row[1] for row in conn.execute("PRAGMA table_info(outcomes)")}
    return _SELECT if "trace" in have else _SELECT_V1


@dataclass(slots=True)
class _Flush:
    """A marker on the write queue: answered once everything before it is committed."""

    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[None]
    stop: bool = False  # the writer exits after answering

    def answer(self, error: StoreError | None) -> None:
        with contextlib.suppress(RuntimeError):  # loop closed: nobody is waiting any more
            self.loop.call_soon_threadsafe(_settle, self.future, error)


def _settle(future: asyncio.Future[None], error: StoreError | None) -> None:
    if future.done():
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)


class _Metrics:
    """The store's metrics, declared in one place (labelled by backend)."""

    def __init__(self, registry: Registry) -> None:
        self.rows = registry.counter(
            "netcortex_store_rows_total", "Outcome rows written, by backend.", ("backend",)
        )
        self.duplicates = registry.counter(
            "netcortex_store_duplicates_total",
            "Rows ignored because their outcome_id was already stored, by backend.",
            ("backend",),
        )
        self.failures = registry.counter(
            "netcortex_store_write_failures_total",
            "Batches that failed to commit (their rows are lost), by backend.",
            ("backend",),
        )
        self.batch_seconds = registry.histogram(
            "netcortex_store_batch_seconds", "Time to write one batch, by backend.", ("backend",)
        )

    def batch(self, rows: int, written: int, seconds: float) -> None:
        self.rows.inc(written, backend="sqlite")
        if rows > written:
            self.duplicates.inc(rows - written, backend="sqlite")
        self.batch_seconds.observe(seconds, backend="sqlite")

    def failure(self) -> None:
        self.failures.inc(backend="sqlite")


class SqliteOutcomeStore:
    """``OutcomeStore`` on one SQLite file: WAL, one batching writer thread, idempotent rows.

    ``record`` is cheap and never touches the disk; ``flush`` makes what was
    recorded durable; ``query``/``get`` read committed rows (call ``flush`` first
    to read your own writes). Safe to use from many tasks of one event loop.
    ``store.sqlite_path`` must be a file path (its parent directory is created);
    ``:memory:`` is refused because reader and writer would see different
    databases. Supports ``async with``.
    """

    def __init__(
        self, config: StoreConfig, metrics: Registry | None = None, *, read_only: bool = False
    ) -> None:
        """Prepare the store (no I/O until ``start``).

        Args:
            config: the ``store`` section (``sqlite_path``, ``batch_size``,
                ``flush_interval``).
            metrics: where to count; a private registry when ``None``.
            read_only: for readers such as ``netcortex outcomes``: ``start`` only
                opens an existing store (never creates a file, directory or
                schema, starts no writer) and ``record`` raises ``StoreError``.
        """
        self._read_only = read_only
        self._path = Path(config.sqlite_path)
        self._batch_size = config.batch_size
        self._interval = config.flush_interval
        self._metrics = _Metrics(metrics if metrics is not None else Registry())
        self._queue: queue.SimpleQueue[list[_Row] | _Flush] = queue.SimpleQueue()
        self._pending: list[_Row] = []
        self._timer: asyncio.TimerHandle | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._reader: sqlite3.Connection | None = None
        self._reader_lock = threading.Lock()
        self._lifecycle = asyncio.Lock()
        self._open = False
        self._select = _SELECT

    # ---------------------------------------------------------------- lifecycle

    async def __aenter__(self) -> SqliteOutcomeStore:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def start(self) -> None:
        """Create the parent directory and the schema, start the writer. Idempotent.

        Raises:
            StoreError: the file cannot be created or opened, is not a netcortex
                outcome store, or was written by a newer schema version.
        """
        async with self._lifecycle:
            if self._open:
                return
            if str(self._path) == ":memory:":
                raise StoreError("store.sqlite_path must be a file, not ':memory:'")
            if self._read_only:
                await self._start_read_only()
                return
            loop = asyncio.get_running_loop()
            ready: asyncio.Future[None] = loop.create_future()
            self._queue = queue.SimpleQueue()
            self._loop = loop
            thread = threading.Thread(
                target=self._writer,
                args=(_Flush(loop, ready),),
                name=f"netcortex-sqlite-writer:{self._path.name}",
                daemon=True,  # never keep a dying process alive; close() is what makes rows durable
            )
            thread.start()
            try:
                await ready
            except BaseException:
                # Cancelled (or failed) while the writer opened the file: a writer that
                # did open is now waiting for work, so tell it to stop before joining it.
                self._queue.put(_Flush(loop, loop.create_future(), stop=True))
                await asyncio.to_thread(thread.join)
                raise
            self._thread = thread
            self._open = True
            log.info("store_opened", backend="sqlite", path=str(self._path))

    async def _start_read_only(self) -> None:
        """Open the reader on an existing store; nothing is created."""
        if not self._path.is_file():
            raise StoreError(f"no outcome store at {self._path}")
        with self._reader_lock, _sqlite_errors("open read-only", self._path):
            self._reader = self._connect(read_only=True)
            self._select = _select_for(self._reader)
        self._loop = asyncio.get_running_loop()
        self._open = True

    async def close(self) -> None:
        """Flush, stop the writer, close the connections. Idempotent; safe without ``start``.

        Raises:
            StoreError: the final flush failed (the store is closed anyway).
        """
        async with self._lifecycle:
            if self._read_only:
                self._open = False
                await asyncio.to_thread(self._close_reader)
                return
            if not self._open or self._loop is None or self._thread is None:
                return
            self._open = False  # record() refuses from here on
            self._hand_over()
            done: asyncio.Future[None] = self._loop.create_future()
            self._queue.put(_Flush(self._loop, done, stop=True))
            error: StoreError | None = None
            try:
                await done
            except StoreError as exc:
                error = exc
            finally:
                await asyncio.to_thread(self._thread.join)
                self._thread = None
                await asyncio.to_thread(self._close_reader)
            log.info("store_closed", backend="sqlite", path=str(self._path))
            if error is not None:
                raise error

    # ---------------------------------------------------------------- writes

    async def record(self, outcome: ReflexOutcome) -> None:
        """Queue ``outcome``; it is committed within ``flush_interval`` (or on ``flush``).

        Idempotent on ``outcome_id``: recording the same outcome twice stores one row.

        Raises:
            StoreError: the store is not open, or the outcome cannot be stored
                (naive datetimes, details that are not JSON).
        """
        if not self._open or self._loop is None:
            raise StoreError("outcome store is not open (call start() first, or it was closed)")
        if self._read_only:
            raise StoreError("outcome store was opened read-only")
        pending = self._pending
        pending.append(_row(outcome))
        if len(pending) >= self._batch_size:
            self._hand_over()
        elif self._timer is None:
            self._timer = self._loop.call_later(self._interval, self._hand_over)

    def _hand_over(self) -> None:
        """Give the pending batch to the writer (on the loop: from record, the timer, flush)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._pending:
            batch, self._pending = self._pending, []
            self._queue.put(batch)

    async def flush(self) -> None:
        """Return when every outcome recorded before the call is committed.

        Raises:
            StoreError: the store is not open, or a batch written since the last
                flush failed (its rows are lost; the error says why).
        """
        if not self._open or self._loop is None:
            raise StoreError("outcome store is not open")
        if self._read_only:
            return  # nothing can have been recorded
        self._hand_over()
        done: asyncio.Future[None] = self._loop.create_future()
        self._queue.put(_Flush(self._loop, done))
        await done

    # ---------------------------------------------------------------- reads

    async def query(self, query: OutcomeQuery) -> list[ReflexOutcome]:
        """Committed outcomes matching ``query``, newest ``recorded_at`` first.

        ``since`` is inclusive, ``until`` exclusive; ``severity``/``kind`` match any
        of the given values (an empty sequence matches nothing); ``limit < 1``
        returns nothing. Ties in ``recorded_at`` come newest-written first.

        Raises:
            StoreError: the store is not open, a time is naive, or the read failed.
        """
        clauses: list[str] = []
        params: list[Any] = []
        if query.since is not None:
            clauses.append("recorded_us >= ?")
            params.append(_to_us(query.since, "since"))
        if query.until is not None:
            clauses.append("recorded_us < ?")
            params.append(_to_us(query.until, "until"))
        if query.handler_id is not None:
            clauses.append("handler_id = ?")
            params.append(query.handler_id)
        if query.device is not None:
            clauses.append("device = ?")
            params.append(query.device)
        for column, wanted in (("severity", query.severity), ("kind", query.kind)):
            if wanted is None:
                continue
            # a bare value (not a sequence of them) is taken as a one-element sequence
            values = [str(wanted)] if isinstance(wanted, str) else [str(v) for v in wanted]
            if not values:
                return []
            clauses.append(f"{column} IN ({', '.join('?' * len(values))})")
            params.extend(values)
        if query.limit < 1:
            return []
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        sql = f"{self._select}{where} ORDER BY recorded_us DESC, rowid DESC LIMIT ?"
        params.append(query.limit)
        rows = await asyncio.to_thread(self._read, sql, tuple(params))
        return [_outcome(r) for r in rows]

    async def get(self, outcome_id: str) -> ReflexOutcome | None:
        """The committed outcome with ``outcome_id``, or ``None``.

        Raises:
            StoreError: the store is not open or the read failed.
        """
        rows = await asyncio.to_thread(
            self._read, f"{self._select} WHERE outcome_id = ?", (outcome_id,)
        )
        return _outcome(rows[0]) if rows else None

    # ---------------------------------------------------------------- threads

    def _connect(self, *, read_only: bool) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self._path,
            timeout=_BUSY_TIMEOUT_S,
            isolation_level=None,  # explicit BEGIN/COMMIT below
            check_same_thread=not read_only,  # the reader moves between executor threads
        )
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            if read_only:
                conn.execute("PRAGMA query_only=ON")
        except BaseException:
            conn.close()
            raise
        return conn

    def _open_writer(self) -> sqlite3.Connection:
        with _sqlite_errors("open", self._path):
            self._path.parent.mkdir(parents=True, exist_ok=True)
            conn = self._connect(read_only=False)
            try:
                version = _migrate(conn)
            except BaseException:
                conn.close()
                raise
        if 0 < version < SCHEMA_VERSION:
            log.info(
                "store_migrated", backend="sqlite", path=str(self._path),
                from_version=version, to_version=SCHEMA_VERSION,
            )  # fmt: skip
        if version > SCHEMA_VERSION:
            conn.close()
            raise StoreError(
                f"{self._path} has outcome schema version {version}; this netcortex "
                f"understands up to {SCHEMA_VERSION} (upgrade netcortex)"
            )
        return conn

    def _writer(self, ready: _Flush) -> None:
        """The writer thread: open, then batch rows into transactions until told to stop."""
        try:
            conn = self._open_writer()
        except StoreError as exc:
            ready.answer(exc)
            return
        ready.answer(None)
        q = self._queue
        failed: StoreError | None = None  # a batch failed since the last flush marker
        try:
            while True:
                item = q.get()
                if isinstance(item, _Flush):
                    item.answer(failed)
                    failed = None
                    if item.stop:
                        return
                else:
                    failed = self._write(conn, item) or failed
        finally:
            try:
                with _sqlite_errors("close", self._path):
                    conn.close()
            except StoreError as exc:
                log.warning("store_close_failed", backend="sqlite", error=str(exc))

    def _write(self, conn: sqlite3.Connection, rows: list[_Row]) -> StoreError | None:
        """Write one batch in one transaction; return the error instead of raising."""
        started = time.perf_counter()
        try:
            with _sqlite_errors("write", self._path):
                try:
                    conn.execute("BEGIN")
                    before = conn.total_changes
                    conn.executemany(_INSERT, rows)
                    written = conn.total_changes - before
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
        except Exception as exc:  # noqa: BLE001 - the writer thread must outlive any batch
            # Not only sqlite3 errors: a value SQLite cannot bind (an int beyond 64 bits
            # raises OverflowError) would otherwise kill the writer and hang every flush.
            error = (
                exc
                if isinstance(exc, StoreError)
                else StoreError(f"sqlite write failed on {self._path}: {type(exc).__name__}: {exc}")
            )
            # One line per failed batch; the StoreError carries the sqlite message.
            log.error("store_write_failed", backend="sqlite", rows=len(rows), error=str(error))
            self._from_thread(self._metrics.failure)
            return error
        self._from_thread(self._metrics.batch, len(rows), written, time.perf_counter() - started)
        return None

    def _from_thread(self, fn: Any, *args: Any) -> None:
        """Run ``fn(*args)`` on the event loop (metrics are updated only there)."""
        loop = self._loop
        if loop is None:
            return
        with contextlib.suppress(RuntimeError):  # loop closed
            loop.call_soon_threadsafe(fn, *args)

    def _read(self, sql: str, params: Sequence[Any]) -> list[_Row]:
        with self._reader_lock:
            if not self._open:
                raise StoreError("outcome store is not open (call start() first, or it was closed)")
            with _sqlite_errors("read", self._path):
                if self._reader is None:
                    self._reader = self._connect(read_only=True)
                rows: list[_Row] = self._reader.execute(sql, params).fetchall()
                return rows

    def _close_reader(self) -> None:
        with self._reader_lock:
            reader, self._reader = self._reader, None
            if reader is not None:
                try:
                    with _sqlite_errors("close", self._path):
                        reader.close()
                except StoreError as exc:
                    log.warning("store_close_failed", backend="sqlite", error=str(exc))
