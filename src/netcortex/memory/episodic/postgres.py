"""Memory, episodic: ``PostgresOutcomeStore`` — outcomes in a shared PostgreSQL (asyncpg).

Design (issue 6, item 1; LIMITS.md "Storage": batching decides everything):

* ``record`` turns the outcome into a row and appends it to the pending batch on
  the event loop (no I/O). The batch is handed to the writer task when it reaches
  ``batch_size`` rows or ``flush_interval`` seconds after its first row.
* **One writer task** writes each batch as **one statement**,
  ``INSERT ... SELECT * FROM unnest($1, ...) ON CONFLICT (outcome_id) DO NOTHING``:
  one round trip, one transaction, idempotent on ``outcome_id`` (duplicates
  inside a batch too), and the command tag gives the rows really written.
* ``flush`` hands over the pending batch, then a marker, on the same FIFO queue;
  the writer answers the marker after everything before it is committed.
* The schema lives in its own PostgreSQL schema (``store.postgres_schema``) and
  is versioned in ``schema_migrations``: ``start`` applies the missing
  migrations in one transaction under an advisory lock (many processes may
  start at once); a database newer than this code is refused.
* Every asyncpg (and socket) error is mapped to ``StoreError`` in one context
  manager, ``_pg_errors``; messages never carry the DSN (it may hold a password).

Outages (issue 10, a PostgreSQL restart): a batch that fails is counted
(``netcortex_store_write_failures_total``). When the failure is transient
(``pg.is_transient``: connection refused, ``terminating connection due to
administrator command``, "the database system is starting up" ...) its rows and
jobs are **held** by id and written again with the next batch or ``flush``;
``flush`` succeeds only once everything before it, held rows included, is
committed, and raises ``StoreError`` until then. So a caller's flush never
reports rows that another caller's flush saw fail as committed, and a caller
that records them again (the reflex runner, before it acks) adds nothing
(``outcome_id``; at most ``_HELD_LIMIT`` rows are held). A batch refused for
another reason is written again row by row (``_salvage``): a row refused on its
own is dropped, counted (``netcortex_store_rows_refused_total``) and logged
(``store_row_refused``) — one bad row must not block the store, nor cost the
others — and the flush succeeds; when every row fails (a dropped table) the
next ``flush`` raises the batch's error. NUL characters in text columns are
replaced by U+FFFD (PostgreSQL text cannot hold them). ``record`` keeps accepting
throughout. The pool needs no repair: asyncpg drops a connection the server
closed and the next batch connects afresh. Logging is per failure *streak*:
``store_write_failed`` at the first failed batch, then at most every
``warn_interval`` seconds (with the batches ``suppressed`` since the previous
line), and one ``store_write_recovered`` when a batch commits again.

Retention (issue 6, item 3): with ``store.retention_days > 0`` a background task
calls ``prune`` every ``retention_interval`` seconds; ``prune`` deletes outcomes
recorded before the cutoff in batches of ``retention_batch`` rows
(``DELETE ... WHERE outcome_id IN (SELECT ... LIMIT n)``), each batch one
statement (its own transaction) on a pool connection other than the writer's.

Times are ``timestamptz`` (microseconds, like Python); ``outcome_id`` is
``COLLATE "C"`` so the newest-first order (``recorded_at DESC, outcome_id DESC``)
and the page cursor compare ids bytewise, exactly like the SQLite store.

May import: ``contracts``, ``aio``, ``errors``, ``config``, ``metrics``, ``logs``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import asyncpg
import structlog

from netcortex.aio import stop_task
from netcortex.config import StoreConfig
from netcortex.contracts.memory import OutcomeQuery
from netcortex.contracts.reflex import ReflexOutcome
from netcortex.errors import StoreError
from netcortex.memory.episodic._metrics import StoreMetrics
from netcortex.memory.episodic.outbox import JournalHook, PostgresOutbox
from netcortex.metrics import Registry
from netcortex.pg import (
    Migration,
    apply_migrations,
    create_pool,
    is_transient,
    ledger_version,
    pg_errors,
    redact_dsn,
    refuse_newer,
)

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "PostgresOutcomeStore"]

log = structlog.get_logger(__name__)

_BACKEND: Final = "postgres"

#: Versioned migrations, in order; ``{s}`` is the quoted schema name. Never edit a
#: released one: add the next version.
MIGRATIONS: Final[tuple[Migration, ...]] = (
    (
        1,
        (
            """CREATE TABLE {s}.outcomes (
                outcome_id      TEXT COLLATE "C" PRIMARY KEY,
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
                occurred_at     TIMESTAMPTZ NOT NULL,
                recorded_at     TIMESTAMPTZ NOT NULL,
                details         TEXT NOT NULL,
                schema_version  INTEGER NOT NULL,
                role            TEXT,
                trace           TEXT NOT NULL DEFAULT '{{}}'
            )""",
            "CREATE INDEX outcomes_recorded_id ON {s}.outcomes (recorded_at, outcome_id)",
            "CREATE INDEX outcomes_handler ON {s}.outcomes (handler_id, recorded_at)",
            "CREATE INDEX outcomes_severity ON {s}.outcomes (severity, recorded_at)",
            "CREATE INDEX outcomes_kind ON {s}.outcomes (kind, recorded_at)",
            "CREATE INDEX outcomes_device ON {s}.outcomes (device, recorded_at)",
            "CREATE INDEX outcomes_site ON {s}.outcomes (site, recorded_at)",
        ),
    ),
    # Issue 6, item 4 (benchmarks/bench_store.py, docs/PERFORMANCE.md): "the last day
    # of one site at one severity" walked (site, recorded_at) or (severity,
    # recorded_at) and fetched every heap row of the site (or severity) for the day
    # to keep the few that match: 1.3k-5.5k rows from 4.7k-8.3k pages for a page of
    # 100 out of 10M outcomes (42-83 ms on a first touch, from the OS cache). With both
    # columns in the index it fetches only the rows it returns (~100 pages, ~1 ms).
    # A plain CREATE INDEX (migrations run in one transaction): upgrading a big store
    # blocks writes while it builds (28 s on 10M rows). IF NOT EXISTS lets an operator
    # build it beforehand with CREATE INDEX CONCURRENTLY (docs/PERFORMANCE.md).
    (
        2,
        (
            "CREATE INDEX IF NOT EXISTS outcomes_site_severity"
            " ON {s}.outcomes (site, severity, recorded_at)",
        ),
    ),
)
#: The newest schema version this module writes.
SCHEMA_VERSION: Final = MIGRATIONS[-1][0]

_COLUMNS = (
    "outcome_id, handler_id, event_id, subject, kind, severity, target, device, site, "
    "summary, diagnostic, fact_key, occurred_at, recorded_at, details, schema_version, "
    "role, trace"
)
#: The PostgreSQL array type of each column, in ``_COLUMNS`` order (for ``unnest``).
_TYPES = (
    *("text",) * 12,
    "timestamptz",
    "timestamptz",
    "text",
    "int4",
    "text",
    "text",
)
_ORDER = "ORDER BY recorded_at DESC, outcome_id DESC"
_CLOSE_TIMEOUT_S = 10.0
#: Seconds between two background ``prune`` runs (the default).
_RETENTION_INTERVAL_S = 300.0
#: Rows deleted per statement (each its own transaction).
_RETENTION_BATCH = 5000
#: Least seconds between two ``store_write_failed`` lines while batches keep failing.
_WARN_INTERVAL_S = 10.0
_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode

_Row = tuple[Any, ...]
#: A journal job: ``(job_id, outcome JSON, created, next attempt)``.
_Job = tuple[str, str, datetime, datetime]
#: Rows of failed batches held for the next attempt at most (beyond: the oldest are lost).
_HELD_LIMIT = 100_000


_pg_errors = pg_errors


def _aware(value: datetime, what: str) -> datetime:
    if value.tzinfo is None:
        raise StoreError(f"{what} must be a timezone-aware datetime (UTC), got {value!r}")
    return value


def _json(value: Any, outcome_id: str, what: str) -> str:
    try:
        text: str = _dumps(dict(value))
    except (TypeError, ValueError) as exc:
        raise StoreError(f"outcome {outcome_id}: {what} are not JSON-serialisable: {exc}") from exc
    if "\x00" in text:
        raise StoreError(f"outcome {outcome_id}: {what} contain a NUL character")
    return text


def _text(value: str | None) -> str | None:
    """``value`` with NUL characters replaced (PostgreSQL text cannot hold them; an
    interface description from a device may carry one)."""
    return value.replace("\x00", "\ufffd") if value and "\x00" in value else value


def _row(outcome: ReflexOutcome) -> _Row:
    return (
        outcome.outcome_id,
        outcome.handler_id,
        outcome.event_id,
        _text(outcome.subject),
        outcome.kind.value,
        outcome.severity.value,
        _text(outcome.target),
        _text(outcome.device),
        _text(outcome.site),
        _text(outcome.summary),
        _text(outcome.diagnostic),
        _text(outcome.fact_key),
        _aware(outcome.occurred_at, "occurred_at"),
        _aware(outcome.recorded_at, "recorded_at"),
        _json(outcome.details, outcome.outcome_id, "details"),
        outcome.schema_version,
        outcome.role,
        _json(outcome.trace, outcome.outcome_id, "trace"),
    )


def _outcome(row: Any) -> ReflexOutcome:
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
        occurred_at=row[12],
        recorded_at=row[13],
        details=json.loads(row[14]),
        schema_version=row[15],
        role=row[16],
        trace=json.loads(row[17]) if row[17] else {},
    )


def _values(wanted: Sequence[str]) -> list[str]:
    """The distinct values of a severity/kind filter (a bare string is one value)."""
    values = [str(wanted)] if isinstance(wanted, str) else [str(v) for v in wanted]
    return list(dict.fromkeys(values))


def _build_query(table: str, query: OutcomeQuery) -> tuple[str, list[Any]] | None:
    """The SQL and parameters of ``query`` (``None``: it matches nothing)."""
    clauses: list[str] = []
    params: list[Any] = []

    def param(value: Any) -> str:
        params.append(value)
        return f"${len(params)}"

    if query.since is not None:
        clauses.append(f"recorded_at >= {param(_aware(query.since, 'since'))}")
    if query.until is not None:
        clauses.append(f"recorded_at < {param(_aware(query.until, 'until'))}")
    for column, exact in (
        ("handler_id", query.handler_id),
        ("device", query.device),
        ("site", query.site),
    ):
        if exact is not None:
            clauses.append(f"{column} = {param(exact)}")
    if query.before is not None:
        at = _aware(query.before.recorded_at, "before.recorded_at")
        clauses.append(
            f"(recorded_at, outcome_id) < ({param(at)}, {param(str(query.before.outcome_id))})"
        )
    for column, wanted in (("severity", query.severity), ("kind", query.kind)):
        if wanted is None:
            continue
        values = _values(wanted)
        if not values:
            return None
        if len(values) == 1:
            clauses.append(f"{column} = {param(values[0])}")
        else:
            clauses.append(f"{column} = ANY({param(values)}::text[])")
    where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
    sql = f"SELECT {_COLUMNS} FROM {table}{where} {_ORDER} LIMIT {param(query.limit)}"  # noqa: S608
    return sql, params


async def _light_reset(conn: asyncpg.Connection) -> None:
    """Before a connection goes back to the pool: roll back a transaction left open
    (none should be), nothing else.

    asyncpg's default reset (``pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *;
    RESET ALL``) is a round trip per release, i.e. per batch the writer commits;
    this pool never holds session state — no session advisory locks (migrations
    take ``pg_advisory_xact_lock``), cursors outside transactions, ``LISTEN`` or
    ``SET`` — so there is nothing for it to undo.
    """
    if conn.is_in_transaction():
        await conn.execute("ROLLBACK")


@dataclass(slots=True)
class _Flush:
    """A marker on the write queue: answered once everything before it is committed."""

    future: asyncio.Future[None]
    stop: bool = False  # the writer exits after answering


@dataclass(slots=True)
class _Batch:
    """Outcome rows and the journal jobs ``(job_id, outcome JSON, created, next
    attempt)`` of some (next attempt: created plus the journal hold)."""

    rows: list[_Row] = field(default_factory=list)
    jobs: list[tuple[str, str, datetime, datetime]] = field(default_factory=list)


class PostgresOutcomeStore:
    """``OutcomeStore`` on PostgreSQL: a connection pool, one batching writer task.

    ``record`` is cheap and does no I/O; ``flush`` makes what was recorded durable;
    ``query``/``get`` read committed rows from any process using the same schema.
    Safe to use from many tasks of one event loop. Supports ``async with``.
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
        warn_interval: float = _WARN_INTERVAL_S,
    ) -> None:
        """Prepare the store (no I/O until ``start``).

        Args:
            config: the ``store`` section (``postgres_dsn``, ``postgres_schema``,
                ``batch_size``, ``flush_interval``).
            metrics: where to count; a private registry when ``None``.
            read_only: for readers such as ``netcortex outcomes``: ``start`` only
                opens an existing schema (creates and migrates nothing, starts no
                writer and no retention) and ``record`` raises ``StoreError``.
            journal: with it, an outcome the journal policy wants gets a job in
                ``journal_jobs`` written in the same transaction as the outcome
                (``memory/episodic/outbox.py``); without it no job is written.
            retention_interval: seconds between background ``prune`` runs.
            retention_batch: rows deleted per statement by ``prune``.
            warn_interval: least seconds between two ``store_write_failed`` lines
                while batches keep failing (the first failure is always logged).

        Raises:
            StoreError: ``store.postgres_dsn`` is not set.
        """
        if config.postgres_dsn is None:
            raise StoreError("store.postgres_dsn is required for the postgres outcome store")
        self._dsn = config.postgres_dsn.get_secret_value()
        self._read_only = read_only
        self._where = redact_dsn(self._dsn)
        self._schema = config.postgres_schema
        self._table = f'"{self._schema}".outcomes'
        self._batch_size = config.batch_size
        self._interval = config.flush_interval
        self._retention_days = config.retention_days
        self._retention_interval = retention_interval
        self._retention_batch = max(1, retention_batch)
        self._retention_task: asyncio.Task[None] | None = None
        self._metrics = StoreMetrics(metrics if metrics is not None else Registry(), _BACKEND)
        self._insert = (
            f"INSERT INTO {self._table} ({_COLUMNS}) SELECT * FROM unnest("  # noqa: S608
            + ", ".join(f"${i + 1}::{t}[]" for i, t in enumerate(_TYPES))
            + ") ON CONFLICT (outcome_id) DO NOTHING"
        )
        self._pool: asyncpg.Pool | None = None
        self._queue: asyncio.Queue[_Batch | _Flush] = asyncio.Queue()
        self._pending: list[_Row] = []
        self._journal = journal
        self._pending_jobs: list[tuple[str, str, datetime, datetime]] = []
        self._insert_jobs = PostgresOutbox.insert_sql(self._schema)
        self._timer: asyncio.TimerHandle | None = None
        self._writer: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lifecycle = asyncio.Lock()
        self._open = False
        self._closed = False
        # The current failure streak (``None``: the last batch committed).
        self._warn_interval = warn_interval
        self._failing_since: float | None = None
        self._failed_batches = 0  # in the streak
        self._suppressed = 0  # failed batches not logged since the last line
        self._warned_at = -float("inf")
        # Rows (and journal jobs) of batches that failed transiently, by id, written
        # again with the next batch or flush (the writer task's own).
        self._held: dict[str, _Row] = {}
        self._held_jobs: dict[str, _Job] = {}

    async def __aenter__(self) -> PostgresOutcomeStore:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ---------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Connect, apply the missing migrations, start the writer. Idempotent.

        Raises:
            StoreError: the server cannot be reached or refuses, a migration
                failed, or the schema is newer than this code understands.
        """
        async with self._lifecycle:
            if self._open:
                return
            pool = await create_pool(
                self._dsn,
                where=self._where,
                min_size=1,
                max_size=4,
                command_timeout=60,
                reset=_light_reset,
            )
            try:
                if self._read_only:
                    await self._check_readable(pool)
                else:
                    await self._migrate(pool)
            except BaseException:
                # Not pool.close(): it would wait forever for a server that stopped answering.
                pool.terminate()
                raise
            self._pool = pool
            self._loop = asyncio.get_running_loop()
            self._queue = asyncio.Queue()
            self._open = True
            self._closed = False
            if self._read_only:
                return
            self._writer = asyncio.create_task(self._write_loop(), name="postgres-outcome-writer")
            if self._retention_days > 0:
                self._retention_task = asyncio.create_task(
                    self._retention_loop(), name="postgres-outcome-retention"
                )
            log.info("store_opened", backend=_BACKEND, dsn=self._where, schema=self._schema)

    async def _check_readable(self, pool: asyncpg.Pool) -> None:
        """Read-only start: the schema must exist at a version this code reads."""
        async with _pg_errors("open read-only", self._where), pool.acquire() as conn:
            found = await ledger_version(conn, schema=self._schema, ledger="schema_migrations")
        if found is None:
            raise StoreError(
                f"no outcome store in schema {self._schema} on {self._where} "
                "(run the engine or 'netcortex db upgrade' first)"
            )
        refuse_newer(found, SCHEMA_VERSION, schema=self._schema, what="outcome", where=self._where)

    async def _migrate(self, pool: asyncpg.Pool) -> None:
        async with _pg_errors("migrate", self._where), pool.acquire() as conn:
            found, newest = await apply_migrations(
                conn, schema=self._schema, ledger="schema_migrations", migrations=MIGRATIONS,
                what="outcome", where=self._where,
            )  # fmt: skip
            # The journal outbox lives beside the outcomes (written in one transaction).
            await PostgresOutbox.migrate(conn, self._schema, self._where)
        if found < newest:
            log.info(
                "store_migrated", backend=_BACKEND, schema=self._schema,
                from_version=found, to_version=newest,
            )  # fmt: skip

    async def close(self) -> None:
        """Flush, stop the writer, close the pool. Idempotent; safe without ``start``.

        Raises:
            StoreError: the final flush failed (the store is closed anyway).
        """
        async with self._lifecycle:
            if not self._open or self._loop is None:
                return
            self._open = False  # record() refuses from here on
            self._closed = True
            if self._read_only:
                pool, self._pool = self._pool, None
                if pool is not None:
                    try:
                        async with _pg_errors("close", self._where):
                            await asyncio.wait_for(pool.close(), _CLOSE_TIMEOUT_S)
                    except StoreError as exc:
                        # Nothing was written: what was read stands. Drop, don't leak.
                        log.warning("store_close_failed", backend=_BACKEND, error=str(exc))
                        pool.terminate()
                return
            await self._stop_retention()
            self._hand_over()
            done: asyncio.Future[None] = self._loop.create_future()
            self._queue.put_nowait(_Flush(done, stop=True))
            error: StoreError | None = None
            try:
                await self._await_writer(done)
            except StoreError as exc:
                error = exc
            finally:
                writer, self._writer = self._writer, None
                if writer is not None and not writer.done():
                    await stop_task(
                        writer, timeout=_CLOSE_TIMEOUT_S, what="outcome writer", logger=log
                    )
                pool, self._pool = self._pool, None
                if pool is not None:
                    try:
                        async with _pg_errors("close", self._where):
                            await asyncio.wait_for(pool.close(), _CLOSE_TIMEOUT_S)
                    except StoreError as exc:
                        log.warning("store_close_failed", backend=_BACKEND, error=str(exc))
                        pool.terminate()
            log.info("store_closed", backend=_BACKEND, schema=self._schema)
            if error is not None:
                raise error

    # ---------------------------------------------------------------- writes

    async def record(self, outcome: ReflexOutcome) -> None:
        """Queue ``outcome``; it is committed within ``flush_interval`` (or on ``flush``).

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
                self._pending_jobs.append(job)
        if len(pending) >= self._batch_size:
            self._hand_over()
        elif self._timer is None:
            self._timer = self._loop.call_later(self._interval, self._hand_over)

    def _hand_over(self) -> None:
        """Give the pending batch to the writer task."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._pending:
            batch = _Batch(self._pending, self._pending_jobs)
            self._pending, self._pending_jobs = [], []
            self._queue.put_nowait(batch)

    async def flush(self) -> None:
        """Return when every outcome recorded before the call is committed.

        Rows of batches that failed transiently (the server unreachable or
        restarting) are held and written again first, so a flush succeeds only
        once they are committed too; recording them again meanwhile is harmless.

        Raises:
            StoreError: the store is not open; the held rows still cannot be
                written (they stay held: call ``flush`` again later); or a batch
                written since the last flush was refused for another reason (its
                rows are lost; the error says why).
        """
        if not self._open or self._loop is None:
            raise StoreError("outcome store is not open")
        if self._read_only:
            return
        self._hand_over()
        done: asyncio.Future[None] = self._loop.create_future()
        self._queue.put_nowait(_Flush(done))
        await self._await_writer(done)

    async def _await_writer(self, done: asyncio.Future[None]) -> None:
        """Wait for the writer's answer to a marker; fail rather than hang if it died."""
        writer = self._writer
        if writer is None or writer.done():
            done.cancel()
            raise StoreError(f"outcome store {self._where}: the writer task is not running")
        finished, _ = await asyncio.wait({done, writer}, return_when=asyncio.FIRST_COMPLETED)
        if done not in finished:
            done.cancel()
            raise StoreError(f"outcome store {self._where}: the writer task is not running")
        done.result()

    async def _write_loop(self) -> None:
        """The writer task: batches into single-statement transactions, answer markers.

        A marker first writes the rows held from failed batches (if any): it is
        answered with success only once they are committed too.
        """
        refused: StoreError | None = None  # a batch was refused (rows lost) since the last marker
        while True:
            item = await self._queue.get()
            if isinstance(item, _Flush):
                error = refused
                if self._held:
                    error = await self._write(_Batch()) or error
                if item.stop and self._held:
                    log.error(
                        "store_rows_lost", backend=_BACKEND, rows=len(self._held),
                        reason="closed while the server still failed",
                    )  # fmt: skip
                if not item.future.done():
                    if error is None:
                        item.future.set_result(None)
                    else:
                        item.future.set_exception(error)
                refused = None
                if item.stop:
                    return
            else:
                error = await self._write(item)
                if error is not None and not self._held:
                    refused = error

    async def _write(self, batch: _Batch) -> StoreError | None:
        """Write the held rows and ``batch`` in one statement (plus one for the journal
        jobs, in the same transaction); return the error instead of raising.

        On a transient failure (``pg.is_transient``: the server is unreachable or
        restarting) the rows are held, by ``outcome_id``, for the next batch or
        marker; on any other (the statement or a row was refused) they are dropped,
        held ones included: one bad row must not block the store for good.
        """
        assert self._pool is not None
        rows = [*self._held.values(), *batch.rows] if self._held else batch.rows
        jobs = [*self._held_jobs.values(), *batch.jobs] if self._held_jobs else batch.jobs
        if not rows:
            return None
        started = time.perf_counter()
        columns = [list(column) for column in zip(*rows, strict=True)]
        try:
            async with _pg_errors("write", self._where), self._pool.acquire() as conn:
                if jobs:
                    job_columns = [list(column) for column in zip(*jobs, strict=True)]
                    async with conn.transaction():
                        status: str = await conn.execute(self._insert, *columns)
                        await conn.execute(self._insert_jobs, *job_columns)
                else:
                    status = await conn.execute(self._insert, *columns)
            written = int(status.rsplit(" ", 1)[-1])
        except Exception as exc:  # noqa: BLE001 - the writer task must outlive any batch
            error = (
                exc
                if isinstance(exc, StoreError)
                else StoreError(f"postgres write failed: {type(exc).__name__}: {exc}")
            )
            self._metrics.failure()
            if is_transient(error):
                self._hold(rows, jobs)
                self._write_failed(len(rows), error)
                return error
            self._held, self._held_jobs = {}, {}
            self._write_failed(len(rows), error)
            if len(rows) > 1 and await self._salvage(rows, jobs):
                return None  # the good rows are stored; the bad ones counted and logged
            return error
        self._held, self._held_jobs = {}, {}
        self._metrics.batch(len(rows), written, time.perf_counter() - started)
        if self._failing_since is not None:
            log.warning(
                "store_write_recovered", backend=_BACKEND,
                failed_batches=self._failed_batches,
                down_s=round(time.monotonic() - self._failing_since, 3),
            )  # fmt: skip
            self._failing_since = None
            self._failed_batches = self._suppressed = 0
            self._warned_at = -float("inf")
        hook = self._journal
        if jobs and hook is not None and hook.committed:
            hook.committed(len(jobs))
        return None

    async def _salvage(self, rows: list[_Row], jobs: list[_Job]) -> bool:
        """After a batch was refused for its data: write its rows one by one (each with
        its journal job), so one bad row costs only itself. A row refused on its own is
        counted (``netcortex_store_rows_refused_total``) and logged
        (``store_row_refused``, with its outcome id). ``True`` when at least one row
        was stored — the refusal was the rows', not the statement's; ``False`` when
        every row failed (a dropped table, say): the batch's error stands."""
        assert self._pool is not None
        by_id = {job[0]: job for job in jobs}
        stored = 0
        for row in rows:
            job = by_id.get(row[0])
            started = time.perf_counter()
            try:
                async with (
                    _pg_errors("write", self._where),
                    self._pool.acquire() as conn,
                    conn.transaction(),
                ):
                    status: str = await conn.execute(self._insert, *[[value] for value in row])
                    if job is not None:
                        await conn.execute(self._insert_jobs, *[[value] for value in job])
            except Exception as exc:  # noqa: BLE001 - one row's refusal is counted, not raised
                if is_transient(exc):
                    return False  # the server went away meanwhile: the batch's error stands
                self._metrics.refused.inc(backend=_BACKEND)
                log.error(
                    "store_row_refused", backend=_BACKEND, outcome_id=row[0],
                    error=f"{type(exc).__name__}: {exc}",
                )  # fmt: skip
                continue
            stored += 1
            self._metrics.batch(1, int(status.rsplit(" ", 1)[-1]), time.perf_counter() - started)
            hook = self._journal
            if job is not None and hook is not None and hook.committed:
                hook.committed(1)
        return stored > 0

    def _hold(self, rows: list[_Row], jobs: list[_Job]) -> None:
        """Keep the rows (and jobs) of a batch that failed transiently for the next
        attempt: one per id (a caller recording them again adds nothing), the oldest
        dropped beyond ``_HELD_LIMIT`` (logged: those outcomes are lost)."""
        held: dict[str, _Row] = {}
        for row in rows:
            held.setdefault(row[0], row)
        held_jobs: dict[str, _Job] = {}
        for job in jobs:
            held_jobs.setdefault(job[0], job)
        excess = len(held) - _HELD_LIMIT
        if excess > 0:
            for outcome_id in list(held)[:excess]:
                del held[outcome_id]
                held_jobs.pop(outcome_id, None)
            log.error(
                "store_rows_lost", backend=_BACKEND, rows=excess,
                reason=f"more than {_HELD_LIMIT} rows held while the server failed",
            )  # fmt: skip
        self._held, self._held_jobs = held, held_jobs

    def _write_failed(self, rows: int, error: StoreError) -> None:
        """Log a failed batch: the first of a streak, then at most every ``warn_interval``."""
        now = time.monotonic()
        if self._failing_since is None:
            self._failing_since = now
        self._failed_batches += 1
        if now - self._warned_at < self._warn_interval:
            self._suppressed += 1
            return
        log.error(
            "store_write_failed", backend=_BACKEND, rows=rows, error=str(error),
            transient=is_transient(error), held=len(self._held),
            failed_batches=self._failed_batches, suppressed=self._suppressed,
            failing_s=round(now - self._failing_since, 3),
        )  # fmt: skip
        self._warned_at = now
        self._suppressed = 0

    async def ping(self) -> None:
        """Return when the store is open and the server accepts writes (readiness).

        Raises:
            StoreError: not started, closed, the writer task is not running, the
                server does not answer, or the session is read-only (a standby).
        """
        if not self._open or self._pool is None:
            state = "closed" if self._closed else "not started"
            raise StoreError(f"outcome store {self._where} is {state}")
        if self._writer is None or self._writer.done():
            raise StoreError(f"outcome store {self._where}: the writer task is not running")
        async with _pg_errors("ping", self._where), self._pool.acquire() as conn:
            read_only = await conn.fetchval("SHOW transaction_read_only")
            await conn.execute(f"SELECT 1 FROM {self._table} LIMIT 0")  # noqa: S608
        if read_only == "on":
            raise StoreError(f"outcome store {self._where} is read-only (a standby?)")

    # ---------------------------------------------------------------- retention

    async def prune(self, now: datetime | None = None) -> int:
        """Delete the outcomes recorded more than ``store.retention_days`` before ``now``.

        Deletes in batches of ``retention_batch`` rows, one statement (its own
        transaction) each, on a pool connection other than the writer's.
        Journal jobs delivered or dead-lettered before the same cutoff go too
        (pending ones never). ``retention_days == 0`` keeps everything.

        Args:
            now: the reference time (timezone-aware); the current time when ``None``.

        Returns:
            The number of outcomes deleted.

        Raises:
            StoreError: the store is not open, ``now`` is naive, or a delete failed
                (batches committed before stay deleted).
        """
        pool = self._pool
        if not self._open or pool is None:
            raise StoreError("outcome store is not open (call start() first, or it was closed)")
        if self._read_only:
            raise StoreError("outcome store was opened read-only")
        if self._retention_days == 0:
            return 0
        moment = datetime.now(UTC) if now is None else _aware(now, "now")
        cutoff = moment - timedelta(days=self._retention_days)
        sql = (
            f"DELETE FROM {self._table} WHERE outcome_id IN "  # noqa: S608
            f"(SELECT outcome_id FROM {self._table} WHERE recorded_at < $1 LIMIT $2)"
        )
        deleted = 0
        while True:
            async with _pg_errors("prune", self._where), pool.acquire() as conn:
                status: str = await conn.execute(sql, cutoff, self._retention_batch)
            rows = int(status.rsplit(" ", 1)[-1])
            deleted += rows
            if rows:
                self._metrics.pruned(rows)
            if rows < self._retention_batch:
                break
        jobs = 0
        prune_jobs = PostgresOutbox.prune_sql(self._schema)
        while True:
            async with _pg_errors("prune", self._where), pool.acquire() as conn:
                status = await conn.execute(prune_jobs, cutoff, self._retention_batch)
            rows = int(status.rsplit(" ", 1)[-1])
            jobs += rows
            if rows < self._retention_batch:
                break
        log.info(
            "store_retention", backend=_BACKEND, deleted=deleted, journal_jobs_deleted=jobs,
            schema=self._schema,
        )  # fmt: skip
        return deleted

    async def _retention_loop(self) -> None:
        """Background task: ``prune`` every ``retention_interval`` seconds until closed."""
        while True:
            await asyncio.sleep(self._retention_interval)
            try:
                await self.prune()
            except StoreError as exc:
                log.warning("store_retention_failed", backend=_BACKEND, error=str(exc))

    async def _stop_retention(self) -> None:
        task, self._retention_task = self._retention_task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # ---------------------------------------------------------------- reads

    async def query(self, query: OutcomeQuery) -> list[ReflexOutcome]:
        """Committed outcomes matching ``query``, newest first (see ``OutcomeQuery``).

        Raises:
            StoreError: the store is not open, a time is naive, or the read failed.
        """
        if query.limit < 1:
            return []
        built = _build_query(self._table, query)
        if built is None:
            return []
        rows = await self._fetch(*built)
        return [_outcome(r) for r in rows]

    async def get(self, outcome_id: str) -> ReflexOutcome | None:
        """The committed outcome with ``outcome_id``, or ``None``.

        Raises:
            StoreError: the store is not open or the read failed.
        """
        sql = f"SELECT {_COLUMNS} FROM {self._table} WHERE outcome_id = $1"  # noqa: S608
        rows = await self._fetch(sql, [outcome_id])
        return _outcome(rows[0]) if rows else None

    async def _fetch(self, sql: str, params: Sequence[Any]) -> list[Any]:
        pool = self._pool
        if not self._open or pool is None:
            raise StoreError("outcome store is not open (call start() first, or it was closed)")
        async with _pg_errors("read", self._where), pool.acquire() as conn:
            rows: list[Any] = await conn.fetch(sql, *params)
        return rows
