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
  Batches that queued up while it was writing (a burst, a slow disk) are merged
  into one transaction of up to ``_MERGE_ROWS`` rows, so a writer that fell
  behind catches up with fewer, larger commits; a flush marker ends a merge.
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

Reads are index-driven (issue 4; the plans are pinned by
``tests/unit/memory/episodic/test_sqlite.py``): the order is ``recorded_us DESC,
outcome_id DESC`` (a total order), walked on ``(recorded_us, outcome_id)`` or on a
``(column, recorded_us)`` index for an equality filter (handler, device, site,
one severity, one kind; SQLite then sorts only rows sharing one ``recorded_us``).
The page cursor is a row-value bound, ``(recorded_us, outcome_id) < (?, ?)``, a
range on the same index. Several severities (or kinds) become one
``UNION ALL`` branch per value, each index-ordered and limited, so a page never
sorts every matching row.

Retention (issue 6, item 3): with ``store.retention_days > 0`` a background task
calls ``prune`` every ``retention_interval`` seconds. ``prune`` deletes outcomes
recorded before the cutoff in batches of ``retention_batch`` rows
(``DELETE ... WHERE outcome_id IN (SELECT ... LIMIT n)`` on the
``(recorded_us, outcome_id)`` index), each batch its own short transaction on a
connection of its own in a worker thread, so the writer gets the lock between
batches and ``record`` is never held up.

Schema versions (``PRAGMA user_version``): 1 (issue 2), 2 (issue 3: ``role``
and ``trace``, the decision trace as JSON), 3 (issue 4: indexes
``(recorded_us, outcome_id)`` replacing ``(recorded_us)``, and
``(site, recorded_us)``), 4 (issue 6: index ``(site, severity, recorded_us)``).
The writer brings an older file up to date with
``ALTER TABLE`` / ``CREATE INDEX`` in one transaction at ``start``; rows written
before read back with ``role=None`` and an empty ``trace``. A read-only opener
never migrates and reads an old file as it is (correctly, with the old indexes).
A newer file is refused.

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
from netcortex.contracts.memory import OutcomeCursor, OutcomeQuery
from netcortex.contracts.reflex import ReflexOutcome
from netcortex.errors import StoreError
from netcortex.memory.episodic._metrics import StoreMetrics
from netcortex.memory.episodic.outbox import (
    SQLITE_JOBS_INSERT,
    SQLITE_JOBS_PRUNE,
    SQLITE_JOBS_SCHEMA,
    JournalHook,
)
from netcortex.metrics import Registry

__all__ = ["SCHEMA_VERSION", "SqliteOutcomeStore"]

log = structlog.get_logger(__name__)

#: ``PRAGMA user_version`` of the file layout this module writes.
#: 1: issue 2. 2: issue 3 added ``role`` and ``trace`` (the decision trace, JSON).
#: 3: issue 4 added the paging index ``(recorded_us, outcome_id)`` (replacing
#: ``(recorded_us)``) and ``(site, recorded_us)``. 4: issue 6 added
#: ``(site, severity, recorded_us)`` (the "site at one severity" query).
SCHEMA_VERSION: Final = 4

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
    # the newest-first order itself (and the page cursor's range): a total order
    "CREATE INDEX IF NOT EXISTS outcomes_recorded_id ON outcomes (recorded_us, outcome_id)",
    "CREATE INDEX IF NOT EXISTS outcomes_handler ON outcomes (handler_id, recorded_us)",
    "CREATE INDEX IF NOT EXISTS outcomes_severity ON outcomes (severity, recorded_us)",
    "CREATE INDEX IF NOT EXISTS outcomes_kind ON outcomes (kind, recorded_us)",
    "CREATE INDEX IF NOT EXISTS outcomes_device ON outcomes (device, recorded_us)",
    "CREATE INDEX IF NOT EXISTS outcomes_site ON outcomes (site, recorded_us)",
    # version 4 (issue 6, item 4; benchmarks/bench_store.py): "the last day of one site
    # at one severity" fetched every row of the site for the day to keep the few that
    # match; with both columns in the index it reads only the rows it returns
    "CREATE INDEX IF NOT EXISTS outcomes_site_severity ON outcomes (site, severity, recorded_us)",
)
#: Indexes of older versions that a newer one covers (dropped by the migration:
#: every index costs each insert).
_DROPPED_INDEXES = ("outcomes_recorded",)

#: At most this many ``UNION ALL`` branches (severities and kinds are small closed sets;
#: an odd query with more values is filtered with ``IN`` instead).
_MAX_BRANCHES = 16

#: The newest-first order of ``OutcomeQuery`` (a total order: see ``OutcomeCursor``).
_ORDER = " ORDER BY recorded_us DESC, outcome_id DESC LIMIT ?"

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
#: At most this many rows per transaction when queued batches are merged (or
#: ``store.batch_size`` when larger).
_MERGE_ROWS = 5000
#: How long ``ping`` waits for the write lock: a readiness probe answers within
#: seconds, yet a writer committing a large batch on a loaded machine (it holds the
#: lock meanwhile, which is "writable", not "stuck") does not fail it. Merged
#: batches (up to ``_MERGE_ROWS`` rows) hold the lock longer than one batch.
_PING_TIMEOUT_S = 3.0
#: How often a waiting ``flush``/``close`` checks that the writer thread still runs.
_WRITER_CHECK_S = 0.5
#: Seconds between two background ``prune`` runs (the default).
_RETENTION_INTERVAL_S = 300.0
#: Rows deleted per statement (each its own transaction).
_RETENTION_BATCH = 5000
_PRUNE = (
    "DELETE FROM outcomes WHERE outcome_id IN "
    "(SELECT outcome_id FROM outcomes WHERE recorded_us < ? LIMIT ?)"
)
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
            for name in _DROPPED_INDEXES:
                conn.execute(f"DROP INDEX IF EXISTS {name}")
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


def _values(wanted: Sequence[str]) -> list[str]:
    """The distinct values of a severity/kind filter (a bare string is one value)."""
    values = [str(wanted)] if isinstance(wanted, str) else [str(v) for v in wanted]
    return list(dict.fromkeys(values))


def _build_query(select: str, query: OutcomeQuery) -> tuple[str, tuple[Any, ...]] | None:
    """The SQL and parameters of ``query`` (``None``: it matches nothing).

    Equality filters and time bounds become ``WHERE`` terms the indexes serve;
    the cursor a row-value range on ``(recorded_us, outcome_id)``. Several
    severities (or kinds) with no handler/device/site filter become one
    ``UNION ALL`` branch per value — each walks ``(severity, recorded_us)`` in
    order and stops at ``limit`` — so SQLite sorts at most ``values x limit``
    rows instead of every match. Other multi-value lists are written ``+col IN``
    (a filter, not an index choice: an ``IN`` on a low-cardinality index would
    make SQLite sort every matching row).
    """
    clauses: list[str] = []
    params: list[Any] = []
    if query.since is not None:
        clauses.append("recorded_us >= ?")
        params.append(_to_us(query.since, "since"))
    if query.until is not None:
        clauses.append("recorded_us < ?")
        params.append(_to_us(query.until, "until"))
    for column, exact in (
        ("handler_id", query.handler_id),
        ("device", query.device),
        ("site", query.site),
    ):
        if exact is not None:
            clauses.append(f"{column} = ?")
            params.append(exact)
    if query.before is not None:
        cursor: OutcomeCursor = query.before
        clauses.append("(recorded_us, outcome_id) < (?, ?)")
        params.extend((_to_us(cursor.recorded_at, "before.recorded_at"), str(cursor.outcome_id)))
    narrowed = query.handler_id is not None or query.device is not None or query.site is not None
    branch: tuple[str, list[str]] | None = None  # the column split into UNION ALL branches
    for column, wanted in (("severity", query.severity), ("kind", query.kind)):
        if wanted is None:
            continue
        values = _values(wanted)
        if not values:
            return None
        if len(values) == 1:
            clauses.append(f"{column} = ?")
            params.append(values[0])
        elif branch is None and not narrowed and len(values) <= _MAX_BRANCHES:
            branch = (column, values)
        else:
            clauses.append(f"+{column} IN ({', '.join('?' * len(values))})")
            params.extend(values)
    if branch is None:
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        return f"{select}{where}{_ORDER}", (*params, query.limit)
    column, values = branch
    where = " WHERE " + " AND ".join([*clauses, f"{column} = ?"])
    parts = [f"SELECT * FROM ({select}{where}{_ORDER})"] * len(values)  # noqa: S608
    all_params: list[Any] = []
    for value in values:
        all_params.extend((*params, value, query.limit))
    return " UNION ALL ".join(parts) + _ORDER, (*all_params, query.limit)


#: ``(job_id, outcome JSON, created_us, next_attempt_us)`` (``SQLITE_JOBS_INSERT``)
_JobRow = tuple[str, str, int, int]


@dataclass(slots=True)
class _Batch:
    """Outcome rows and the journal jobs of some of them: one transaction."""

    rows: list[_Row]
    jobs: list[_JobRow]


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
        self,
        config: StoreConfig,
        metrics: Registry | None = None,
        *,
        read_only: bool = False,
        journal: JournalHook | None = None,
        retention_interval: float = _RETENTION_INTERVAL_S,
        retention_batch: int = _RETENTION_BATCH,
    ) -> None:
        """Prepare the store (no I/O until ``start``).

        Args:
            config: the ``store`` section (``sqlite_path``, ``batch_size``,
                ``flush_interval``).
            metrics: where to count; a private registry when ``None``.
            read_only: for readers such as ``netcortex outcomes``: ``start`` only
                opens an existing store (never creates a file, directory or
                schema, starts no writer) and ``record`` raises ``StoreError``.
            journal: with it, an outcome the journal policy wants gets a job in
                ``journal_jobs`` written in the same transaction as the outcome
                (``memory/episodic/outbox.py``); without it no job is written.
            retention_interval: seconds between background ``prune`` runs.
            retention_batch: rows deleted per statement by ``prune``.
        """
        self._read_only = read_only
        self._path = Path(config.sqlite_path)
        self._batch_size = config.batch_size
        #: rows one transaction may take when handed-over batches queue up
        self._merge_rows = max(config.batch_size, _MERGE_ROWS)
        self._interval = config.flush_interval
        self._retention_days = config.retention_days
        self._retention_interval = retention_interval
        self._retention_batch = max(1, retention_batch)
        self._retention_task: asyncio.Task[None] | None = None
        self._metrics = StoreMetrics(metrics if metrics is not None else Registry(), "sqlite")
        self._journal = journal
        self._queue: queue.SimpleQueue[_Batch | _Flush] = queue.SimpleQueue()
        self._pending: list[_Row] = []
        self._pending_jobs: list[_JobRow] = []
        self._handed = 0  # rows handed to the writer and not yet written (or failed)
        self._timer: asyncio.TimerHandle | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._reader: sqlite3.Connection | None = None
        self._reader_lock = threading.Lock()
        self._lifecycle = asyncio.Lock()
        self._open = False
        self._closed = False  # closed after a start (for ping's reason)
        self._select = _SELECT
        if not read_only:
            self._metrics.registry.queue_depth("store_pending", self.pending_rows)

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
            self._handed = 0
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
            self._closed = False
            if self._retention_days > 0:
                self._retention_task = asyncio.create_task(
                    self._retention_loop(), name="sqlite-outcome-retention"
                )
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
            self._closed = True
            await self._stop_retention()
            self._hand_over()
            done: asyncio.Future[None] = self._loop.create_future()
            self._queue.put(_Flush(self._loop, done, stop=True))
            error: StoreError | None = None
            try:
                await self._await_writer(done)
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
        if self._journal is not None:
            job = self._journal.job(outcome)
            if job is not None:
                created = _to_us(job[2], "job created")
                due = _to_us(job[3], "job next attempt")  # created + journal hold
                self._pending_jobs.append((job[0], job[1], created, due))
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
            batch = _Batch(self._pending, self._pending_jobs)
            self._pending, self._pending_jobs = [], []
            self._handed += len(batch.rows)
            self._queue.put(batch)

    def pending_rows(self) -> int:
        """Rows recorded and not yet committed (or failed): ``queue="store_pending"``."""
        return len(self._pending) + self._handed

    def _batch_done(self, rows: int, jobs: int) -> None:
        """On the loop: the writer finished a batch of ``rows`` (committed or failed)
        holding ``jobs`` committed journal jobs."""
        self._handed = max(0, self._handed - rows)
        if jobs and self._journal is not None and self._journal.committed is not None:
            self._journal.committed(jobs)

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
        await self._await_writer(done)

    async def _await_writer(self, done: asyncio.Future[None]) -> None:
        """Wait for the writer's answer to a marker; fail rather than hang if it died.

        Raises:
            StoreError: the writer reported a failed batch, or it is not running.
        """
        thread = self._thread
        dead = False
        try:
            while not done.done():
                await asyncio.wait({done}, timeout=_WRITER_CHECK_S)
                if not done.done() and (thread is None or not thread.is_alive()):
                    await asyncio.sleep(0)  # an answer sent just before the thread ended
                    dead = not done.done()
                    if dead:
                        break
        except BaseException:
            done.cancel()  # nobody waits for it any more (a late answer is dropped)
            raise
        if dead:
            done.cancel()
            raise StoreError(f"outcome store {self._path}: the writer thread is not running")
        done.result()

    async def ping(self) -> None:
        """Return when the store is open and the file accepts a write lock (readiness).

        Takes and releases the write lock on a short-lived connection of its own
        (``BEGIN IMMEDIATE; ROLLBACK``, waiting at most ``_PING_TIMEOUT_S``) in a
        worker thread: it writes nothing, so the writer is delayed by microseconds
        at most and never sees its snapshot change. The file is opened without
        being created (a deleted store file is an error, not a new empty store).

        Raises:
            StoreError: opened read-only, not started, closed, the writer thread is
                not running, or the file is missing, locked, or has no outcome table
                (the message says which).
        """
        if self._read_only:
            raise StoreError(f"outcome store {self._path} is open read-only")
        if not self._open:
            state = "closed" if self._closed else "not started"
            raise StoreError(f"outcome store {self._path} is {state}")
        thread = self._thread
        if thread is None or not thread.is_alive():
            raise StoreError(f"outcome store {self._path}: the writer thread is not running")
        await asyncio.to_thread(self._probe_write_lock)

    # ---------------------------------------------------------------- retention

    async def prune(self, now: datetime | None = None) -> int:
        """Delete the outcomes recorded more than ``store.retention_days`` before ``now``.

        Deletes in batches of ``retention_batch`` rows, each its own short
        transaction on a connection of its own (in a worker thread), so the
        writer takes the lock between batches. Journal jobs delivered or
        dead-lettered before the same cutoff go too (pending ones never).
        ``retention_days == 0`` keeps everything.

        Args:
            now: the reference time (timezone-aware); the current time when ``None``.

        Returns:
            The number of outcomes deleted.

        Raises:
            StoreError: the store is not open, opened read-only, ``now`` is naive,
                or a delete failed (batches committed before stay deleted).
        """
        if self._read_only:
            raise StoreError(f"outcome store {self._path} was opened read-only")
        if not self._open:
            raise StoreError("outcome store is not open (call start() first, or it was closed)")
        if self._retention_days == 0:
            return 0
        moment = datetime.now(UTC) if now is None else now
        cutoff = _to_us(moment - timedelta(days=self._retention_days), "now")
        deleted = 0
        while True:
            rows = await asyncio.to_thread(self._prune_batch, cutoff)
            deleted += rows
            if rows:
                self._metrics.pruned(rows)
            if rows < self._retention_batch:
                break
        jobs = 0
        while True:
            rows = await asyncio.to_thread(self._prune_batch, cutoff, SQLITE_JOBS_PRUNE)
            jobs += rows
            if rows < self._retention_batch:
                break
        log.info(
            "store_retention", backend="sqlite", deleted=deleted, journal_jobs_deleted=jobs,
            path=str(self._path),
        )  # fmt: skip
        return deleted

    def _prune_batch(self, cutoff_us: int, sql: str = _PRUNE) -> int:
        """Worker thread: delete one batch older than ``cutoff_us`` in its own transaction."""
        with _sqlite_errors("prune", self._path):
            conn = self._connect(read_only=False)
            try:
                changed: int = conn.execute(sql, (cutoff_us, self._retention_batch)).rowcount
            finally:
                conn.close()
        return changed

    async def _retention_loop(self) -> None:
        """Background task: ``prune`` every ``retention_interval`` seconds until closed."""
        while True:
            await asyncio.sleep(self._retention_interval)
            try:
                await self.prune()
            except StoreError as exc:
                log.warning("store_retention_failed", backend="sqlite", error=str(exc))

    async def _stop_retention(self) -> None:
        task, self._retention_task = self._retention_task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # ---------------------------------------------------------------- reads

    async def query(self, query: OutcomeQuery) -> list[ReflexOutcome]:
        """Committed outcomes matching ``query``, newest first.

        The order is ``recorded_at`` descending, then ``outcome_id`` descending (a
        total order); ``before`` keeps the outcomes strictly after that cursor in
        it, so pages walked with ``OutcomeCursor.after(last)`` never skip or repeat.
        ``since`` is inclusive, ``until`` exclusive; ``severity``/``kind`` match any
        of the given values (an empty sequence matches nothing); ``limit < 1``
        returns nothing.

        Raises:
            StoreError: the store is not open, a time is naive, or the read failed.
        """
        if query.limit < 1:
            return []
        built = _build_query(self._select, query)
        if built is None:
            return []
        rows = await asyncio.to_thread(self._read, *built)
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
                # The journal outbox lives beside the outcomes (written in one transaction).
                for statement in SQLITE_JOBS_SCHEMA:
                    conn.execute(statement)
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
        held: _Batch | _Flush | None = None  # taken from the queue, not handled yet
        try:
            while True:
                item = held if held is not None else q.get()
                held = None
                if isinstance(item, _Flush):
                    item.answer(failed)
                    failed = None
                    if item.stop:
                        return
                else:
                    # Batches that queued up while the last one was being written go
                    # into the same transaction (up to ``merge_rows``): a writer that
                    # fell behind catches up with fewer, larger commits instead of
                    # staying behind. A flush marker ends the merge (order is kept).
                    while len(item.rows) < self._merge_rows:
                        try:
                            following = q.get_nowait()
                        except queue.Empty:
                            break
                        if isinstance(following, _Flush):
                            held = following
                            break
                        item = _Batch(item.rows + following.rows, item.jobs + following.jobs)
                    error = self._write(conn, item)
                    failed = error or failed
                    jobs = len(item.jobs) if error is None else 0
                    self._from_thread(self._batch_done, len(item.rows), jobs)
        finally:
            try:
                with _sqlite_errors("close", self._path):
                    conn.close()
            except StoreError as exc:
                log.warning("store_close_failed", backend="sqlite", error=str(exc))

    def _write(self, conn: sqlite3.Connection, batch: _Batch) -> StoreError | None:
        """Write one batch (outcomes and their journal jobs) in one transaction;
        return the error instead of raising."""
        rows = batch.rows
        started = time.perf_counter()
        try:
            with _sqlite_errors("write", self._path):
                try:
                    conn.execute("BEGIN")
                    before = conn.total_changes
                    conn.executemany(_INSERT, rows)
                    written = conn.total_changes - before
                    if batch.jobs:
                        conn.executemany(SQLITE_JOBS_INSERT, batch.jobs)
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

    def _probe_write_lock(self) -> None:
        """Worker thread: take the write lock on a fresh connection, then roll back."""
        uri = self._path.absolute().as_uri() + "?mode=rw"  # never creates the file
        with _sqlite_errors("ping", self._path):
            conn = sqlite3.connect(uri, uri=True, timeout=_PING_TIMEOUT_S, isolation_level=None)
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    conn.execute("SELECT 1 FROM outcomes LIMIT 0").fetchall()
                finally:
                    conn.execute("ROLLBACK")
            finally:
                conn.close()

    def _close_reader(self) -> None:
        with self._reader_lock:
            reader, self._reader = self._reader, None
            if reader is not None:
                try:
                    with _sqlite_errors("close", self._path):
                        reader.close()
                except StoreError as exc:
                    log.warning("store_close_failed", backend="sqlite", error=str(exc))
