"""Memory, semantic: where run-time maintenance windows are kept (SQLite or PostgreSQL).

The calendar (``maintenance.py``) indexes windows in memory and answers lookups
without I/O; this module only moves rows. A row is the tuple
``(id, scope, target, start_s, end_s, rrule, timezone, reason, updated_s)`` —
times in whole UTC seconds — identical on both backends, so the calendar can
compare a re-read row with the one it compiled and keep unchanged windows.

Both storages answer ``poll()`` cheaply when nothing changed, so the calendar can
ask every second:

* **SQLite** (``SqliteWindowStorage``): one connection owned by one thread; WAL,
  busy timeout; ``PRAGMA data_version`` moves only when *another* connection
  committed, so an idle file costs one pragma per poll.
* **PostgreSQL** (``PostgresWindowStorage``): table ``maintenance_windows`` in
  ``store.postgres_schema`` beside the outcomes, versioned in its own ledger
  ``maintenance_migrations``. A statement-level trigger bumps a one-row change
  counter (``maintenance_changes``) in the same transaction as any insert,
  update, delete or truncate — also when an operator edits the table by hand —
  so an idle table costs one single-row read per poll, from any number of
  engines sharing the schema.

Every driver error is mapped to ``StoreError`` (``_sqlite_errors`` /
``netcortex.pg.pg_errors``); PostgreSQL messages name the server without its
password.

May import: ``errors``, ``logs``, ``pg``.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final, Protocol, TypeVar

import asyncpg

from netcortex.errors import StoreError
from netcortex.pg import (
    Migration,
    apply_migrations,
    create_pool,
    pg_errors,
    quote_schema,
    redact_dsn,
)
from netcortex.sqlite_wal import connect_wal

__all__ = ["PostgresWindowStorage", "Row", "SqliteWindowStorage", "WindowStorage"]

#: ``(id, scope, target, start_s, end_s, rrule, timezone, reason, updated_s)``
Row = tuple[Any, ...]
_T = TypeVar("_T")

_COLUMNS: Final = "id, scope, target, start_s, end_s, rrule, timezone, reason, updated_s"
_BUSY_TIMEOUT_S: Final = 5.0
_CLOSE_TIMEOUT_S: Final = 10.0


class WindowStorage(Protocol):
    """Durable rows of run-time maintenance windows (see the module docstring)."""

    #: where the rows live, for messages (never a password)
    where: str

    async def open(self) -> list[Row]:
        """Connect, create what is missing, return every row (ordered by id)."""
        ...

    async def poll(self) -> list[Row] | None:
        """Every row if another writer changed the table since the last read, else ``None``."""
        ...

    async def upsert(self, row: Row) -> None:
        """Insert ``row`` or replace the row with its id, in one transaction."""
        ...

    async def delete(self, window_id: str) -> int:
        """Delete the row with ``window_id``; rows deleted (0 or 1)."""
        ...

    async def close(self) -> None:
        """Release the connection. Idempotent."""
        ...


# ------------------------------------------------------------------ SQLite

_SQLITE_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS maintenance_windows (
    id          TEXT PRIMARY KEY,
    scope       TEXT NOT NULL,
    target      TEXT NOT NULL,
    start_s     INTEGER NOT NULL,
    end_s       INTEGER NOT NULL,
    rrule       TEXT,
    timezone    TEXT NOT NULL,
    reason      TEXT NOT NULL,
    updated_s   INTEGER NOT NULL
)
"""
_SQLITE_UPSERT: Final = (
    f"INSERT OR REPLACE INTO maintenance_windows ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"  # noqa: S608
)
_SQLITE_SELECT: Final = f"SELECT {_COLUMNS} FROM maintenance_windows ORDER BY id"  # noqa: S608
_SQLITE_DELETE: Final = "DELETE FROM maintenance_windows WHERE id = ?"


@contextmanager
def _sqlite_errors(action: str, path: Path) -> Iterator[None]:
    """Map every ``sqlite3`` and file-system error to ``StoreError`` (the one mapping)."""
    try:
        yield
    except (sqlite3.Error, sqlite3.Warning, OSError) as exc:
        raise StoreError(f"maintenance calendar: sqlite {action} failed on {path}: {exc}") from exc


class SqliteWindowStorage:
    """Windows in a ``maintenance_windows`` table of a SQLite file (the outcome
    store's file is fine: separate table, own connection)."""

    def __init__(self, path: Path | str) -> None:
        self._path = Path(path)
        self.where = f"sqlite {self._path}"
        self._executor: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None
        # The connection's PRAGMA data_version when the table was last read.
        self._data_version: int | None = None

    async def open(self) -> list[Row]:
        if str(self._path) == ":memory:":
            # Windows must outlive the process and be shared with `netcortex maintenance`.
            raise StoreError("maintenance calendar path must be a file, not ':memory:'")
        if self._executor is not None:
            raise StoreError(f"maintenance storage {self.where} is already open")
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="netcortex-maint")
        self._executor = executor
        try:
            return await self._run(self._open)
        except BaseException:
            await self.close()
            raise

    async def poll(self) -> list[Row] | None:
        if self._executor is None:
            return None
        return await self._run(self._poll)

    async def upsert(self, row: Row) -> None:
        await self._run(lambda: self._write(_SQLITE_UPSERT, row))

    async def delete(self, window_id: str) -> int:
        return await self._run(lambda: self._write(_SQLITE_DELETE, (window_id,)))

    async def close(self) -> None:
        executor, self._executor = self._executor, None
        if executor is None:
            return
        try:
            await asyncio.get_running_loop().run_in_executor(executor, self._close_conn)
        finally:
            executor.shutdown(wait=True)

    # ---------------------------------------------------------------- the thread

    async def _run(self, fn: Callable[[], _T]) -> _T:
        executor = self._executor
        if executor is None:
            raise StoreError("maintenance calendar is not open")
        return await asyncio.get_running_loop().run_in_executor(executor, fn)

    def _open(self) -> list[Row]:
        """On the thread: open (WAL, busy timeout), create the table, read every row."""
        with _sqlite_errors("open", self._path):
            self._path.parent.mkdir(parents=True, exist_ok=True)
            conn = connect_wal(self._path, timeout=_BUSY_TIMEOUT_S)
            self._conn = conn
            conn.execute(_SQLITE_SCHEMA)
            self._data_version = int(conn.execute("PRAGMA data_version").fetchone()[0])
            rows: list[Row] = conn.execute(_SQLITE_SELECT).fetchall()
            return rows

    def _poll(self) -> list[Row] | None:
        conn = self._conn
        if conn is None:
            return None
        with _sqlite_errors("reload", self._path):
            version = int(conn.execute("PRAGMA data_version").fetchone()[0])
            if version == self._data_version:
                return None
            rows: list[Row] = conn.execute(_SQLITE_SELECT).fetchall()
            # Read the version first: a commit between the two reads is seen next time.
            self._data_version = version
            return rows

    def _write(self, sql: str, params: tuple[Any, ...]) -> int:
        """On the thread: one statement in its own transaction; rows changed."""
        conn = self._conn
        if conn is None:
            raise StoreError("maintenance calendar is not open")
        with _sqlite_errors("write", self._path):
            with conn:  # BEGIN ... COMMIT, ROLLBACK on error
                conn.execute("BEGIN IMMEDIATE")
                changed = conn.execute(sql, params).rowcount
            return int(changed)

    def _close_conn(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with _sqlite_errors("close", self._path):
                conn.close()


# ------------------------------------------------------------------ PostgreSQL

#: Versioned migrations of the maintenance tables (ledger ``maintenance_migrations``).
#: Never edit a released one: add the next version.
MIGRATIONS: Final[tuple[Migration, ...]] = (
    (
        1,
        (
            """CREATE TABLE {s}.maintenance_windows (
                id          TEXT COLLATE "C" PRIMARY KEY,
                scope       TEXT NOT NULL,
                target      TEXT NOT NULL,
                start_s     BIGINT NOT NULL,
                end_s       BIGINT NOT NULL,
                rrule       TEXT,
                timezone    TEXT NOT NULL,
                reason      TEXT NOT NULL,
                updated_s   BIGINT NOT NULL
            )""",
            """CREATE TABLE {s}.maintenance_changes (
                singleton   BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (singleton),
                version     BIGINT NOT NULL
            )""",
            "INSERT INTO {s}.maintenance_changes (singleton, version) VALUES (TRUE, 0)",
            """CREATE FUNCTION {s}.maintenance_changed() RETURNS trigger
               LANGUAGE plpgsql AS $$
               BEGIN
                   UPDATE {s}.maintenance_changes SET version = version + 1;
                   RETURN NULL;
               END $$""",
            """CREATE TRIGGER maintenance_windows_changed
               AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON {s}.maintenance_windows
               FOR EACH STATEMENT EXECUTE FUNCTION {s}.maintenance_changed()""",
        ),
    ),
)


class PostgresWindowStorage:
    """Windows in ``<schema>.maintenance_windows`` on PostgreSQL (asyncpg)."""

    def __init__(
        self,
        dsn: str,
        schema: str,
        *,
        connect_timeout: float = 10.0,
        close_timeout: float = _CLOSE_TIMEOUT_S,
    ) -> None:
        """Prepare (no I/O until ``open``); ``close`` waits ``close_timeout`` s at most.

        Raises:
            StoreError: ``schema`` is not a lower-case SQL identifier.
        """
        self._dsn = dsn
        self._schema = schema
        self._s = quote_schema(schema)
        self._timeout = connect_timeout
        self._close_timeout = close_timeout
        self.where = f"postgres {redact_dsn(dsn)} schema {schema}"
        self._pool: asyncpg.Pool | None = None
        self._version: int | None = None
        self._upsert = (
            f"INSERT INTO {self._s}.maintenance_windows ({_COLUMNS}) "  # noqa: S608
            "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (id) DO UPDATE SET "
            + ", ".join(f"{c} = EXCLUDED.{c}" for c in _COLUMNS.split(", ")[1:])
        )
        self._select = f"SELECT {_COLUMNS} FROM {self._s}.maintenance_windows ORDER BY id"  # noqa: S608
        self._changes = f"SELECT version FROM {self._s}.maintenance_changes"  # noqa: S608

    async def open(self) -> list[Row]:
        if self._pool is not None:
            raise StoreError(f"maintenance storage {self.where} is already open")
        pool = await create_pool(
            self._dsn,
            where=self.where,
            min_size=1,
            max_size=2,
            timeout=self._timeout,
            command_timeout=30,
        )
        try:
            async with pg_errors("open", self.where), pool.acquire() as conn:
                await apply_migrations(
                    conn, schema=self._schema, ledger="maintenance_migrations",
                    migrations=MIGRATIONS, what="maintenance", where=self.where,
                )  # fmt: skip
                rows = await self._read(conn)
        except BaseException:
            # Not pool.close(): it would wait forever for a server that stopped answering.
            pool.terminate()
            raise
        self._pool = pool
        return rows

    async def poll(self) -> list[Row] | None:
        pool = self._pool
        if pool is None:
            return None
        async with pg_errors("reload", self.where), pool.acquire() as conn:
            version = await conn.fetchval(self._changes)
            # None: the counter row was deleted by hand and no longer moves; read the
            # table every time rather than never again.
            if version is not None and version == self._version:
                return None
            return await self._read(conn)

    async def _read(self, conn: Any) -> list[Row]:
        # Version first: a commit between the two reads is seen by the next poll. It is
        # remembered only once the rows are in hand: a failed read is retried by the
        # next poll, never taken for "seen".
        version = await conn.fetchval(self._changes)
        rows = [tuple(r) for r in await conn.fetch(self._select)]
        self._version = version
        return rows

    async def upsert(self, row: Row) -> None:
        pool = self._require()
        async with pg_errors("write", self.where):
            await pool.execute(self._upsert, *row)

    async def delete(self, window_id: str) -> int:
        pool = self._require()
        async with pg_errors("write", self.where):
            tag: str = await pool.execute(
                f"DELETE FROM {self._s}.maintenance_windows WHERE id = $1",  # noqa: S608
                window_id,
            )
        return int(tag.rsplit(" ", 1)[-1])

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is None:
            return
        try:
            async with pg_errors("close", self.where):
                await asyncio.wait_for(pool.close(), timeout=self._close_timeout)
        except StoreError:
            # A server that stopped answering: drop the connections rather than leak them.
            pool.terminate()
            raise

    def _require(self) -> asyncpg.Pool:
        if self._pool is None:
            raise StoreError("maintenance calendar is not open")
        return self._pool
