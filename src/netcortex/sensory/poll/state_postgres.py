"""Sensory / poll: ``PostgresPollState`` — the poller's ``PollState`` in PostgreSQL (asyncpg).

Issue 6: with ``store.backend: postgres`` the last known snapshot and down flag
of every device live beside the outcomes, in the schema ``store.postgres_schema``,
so a poller moved to another machine (or one of several sharing the devices,
issue 10) starts from the same memory. Same semantics as ``SqlitePollState``
(the ``PollState`` docstring is the contract; ``tests/contracts/test_poll_state.py``
holds both to it):

* one row per device in ``<schema>.poll_state``: the snapshot as the same JSON
  text ``snapshot_to_json`` writes (``text``, not ``jsonb``: ``jsonb`` refuses the
  ``\\u0000`` an interface description may carry), ``saved_at`` and ``down``;
* ``save`` and ``set_down`` are each one ``INSERT ... ON CONFLICT (device) DO
  UPDATE`` of their own column, in autocommit (durable on return): atomic, no
  read-modify-write, so processes sharing the schema lose no update;
* the table is versioned in its own ledger, ``<schema>.poll_migrations``,
  through ``netcortex.pg.apply_migrations`` (one transaction under an advisory
  lock; a newer ledger than this code knows is refused);
* every asyncpg, socket and timeout error becomes ``StoreError`` through
  ``netcortex.pg.pg_errors``; messages name the server by ``pg.redact_dsn`` (never
  the password).

May import: stdlib, asyncpg, structlog, netcortex.errors/logs/pg, sibling modules.
"""

from __future__ import annotations

import asyncio
from typing import Any, Final

import asyncpg
import structlog

from netcortex.errors import StoreError
from netcortex.pg import (
    Migration,
    apply_migrations,
    create_pool,
    pg_errors,
    quote_schema,
    redact_dsn,
)
from netcortex.sensory.poll.diff import DeviceSnapshot
from netcortex.sensory.poll.state import snapshot_to_json, snapshots_from_rows

__all__ = ["LEDGER", "MIGRATIONS", "PostgresPollState"]

log = structlog.get_logger(__name__)

_BACKEND: Final = "postgres"
#: The ledger table of this component's migrations (in the configured schema).
LEDGER: Final = "poll_migrations"

#: Versioned migrations, in order; ``{s}`` is the quoted schema name. Never edit a
#: released one: add the next version.
MIGRATIONS: Final[tuple[Migration, ...]] = (
    (
        1,
        (
            """CREATE TABLE {s}.poll_state (
                device    TEXT COLLATE "C" PRIMARY KEY,
                snapshot  TEXT,
                saved_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
                down      BOOLEAN NOT NULL DEFAULT false
            )""",
        ),
    ),
)
_CLOSE_TIMEOUT_S: Final = 10.0


class PostgresPollState:
    """``PollState`` in a (shared) PostgreSQL schema: a small pool, one statement per call.

    Args:
        dsn: ``postgresql://user:password@host:5432/db`` (never logged nor in messages).
        schema: the PostgreSQL schema (``store.postgres_schema``; created at start).
        pool_size: connections at most (the poller writes one report per device
            at a time; a few connections keep slow devices off each other).
        connect_timeout: seconds to wait for a connection.
        command_timeout: seconds any one statement may take.

    Raises:
        StoreError: ``schema`` is not a lower-case SQL identifier.
    """

    def __init__(
        self,
        dsn: str,
        schema: str,
        *,
        pool_size: int = 4,
        connect_timeout: float = 10.0,
        command_timeout: float = 30.0,
    ) -> None:
        self._dsn = dsn
        self._where = redact_dsn(dsn)
        self._schema = schema
        table = f"{quote_schema(schema)}.poll_state"
        self._load_all = f"SELECT device, snapshot FROM {table} WHERE snapshot IS NOT NULL"  # noqa: S608
        self._load_down = f"SELECT device FROM {table} WHERE down"  # noqa: S608
        self._save = (
            f"INSERT INTO {table} (device, snapshot, saved_at) VALUES ($1, $2, now()) "  # noqa: S608
            "ON CONFLICT (device) DO UPDATE SET snapshot = excluded.snapshot, saved_at = now()"
        )
        self._set_down = (
            f"INSERT INTO {table} (device, down) VALUES ($1, $2) "  # noqa: S608
            "ON CONFLICT (device) DO UPDATE SET down = excluded.down"
        )
        self._pool_size = max(1, pool_size)
        self._connect_timeout = connect_timeout
        self._command_timeout = command_timeout
        self._pool: asyncpg.Pool | None = None
        self._lifecycle = asyncio.Lock()
        self._closed = False

    async def start(self) -> None:
        """Connect and apply the missing migrations. Idempotent.

        Raises:
            StoreError: closed, the server cannot be reached or refuses, a
                migration failed, or the schema holds a newer poll state layout.
        """
        async with self._lifecycle:
            if self._pool is not None:
                return
            if self._closed:
                raise StoreError("poll state: closed")
            pool = await create_pool(
                self._dsn,
                where=self._where,
                min_size=1,
                max_size=self._pool_size,
                timeout=self._connect_timeout,
                command_timeout=self._command_timeout,
            )
            try:
                async with pg_errors("migrate", self._where), pool.acquire() as conn:
                    await apply_migrations(
                        conn, schema=self._schema, ledger=LEDGER, migrations=MIGRATIONS,
                        what="poll state", where=self._where,
                    )  # fmt: skip
            except BaseException:
                pool.terminate()
                raise
            self._pool = pool
        log.info("poll_state_opened", backend=_BACKEND, dsn=self._where, schema=self._schema)

    async def close(self) -> None:
        """Close the pool. Idempotent; safe without ``start``."""
        async with self._lifecycle:
            self._closed = True
            pool, self._pool = self._pool, None
            if pool is None:
                return
            try:
                async with pg_errors("close", self._where):
                    await asyncio.wait_for(pool.close(), _CLOSE_TIMEOUT_S)
            except StoreError as exc:
                log.warning("poll_state_close_failed", backend=_BACKEND, error=str(exc))
                pool.terminate()

    def _open_pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise StoreError("poll state: closed" if self._closed else "poll state: not started")
        return self._pool

    async def load_all(self) -> dict[str, DeviceSnapshot]:
        """Every stored snapshot, by device (see ``PollState.load_all``).

        Raises:
            StoreError: not started, closed, or the read failed.
        """
        return snapshots_from_rows(await self._fetch(self._load_all))

    async def load_down(self) -> frozenset[str]:
        """The devices stored as down.

        Raises:
            StoreError: not started, closed, or the read failed.
        """
        return frozenset(device for (device,) in await self._fetch(self._load_down))

    async def save(self, snapshot: DeviceSnapshot) -> None:
        """Store ``snapshot`` as its device's last known state (committed on return).

        Raises:
            StoreError: not started, closed, or the write failed.
        """
        await self._execute(self._save, snapshot.device, snapshot_to_json(snapshot))

    async def set_down(self, device: str, down: bool) -> None:
        """Store whether ``device`` is down (committed on return).

        Raises:
            StoreError: not started, closed, or the write failed.
        """
        await self._execute(self._set_down, device, down)

    async def _fetch(self, sql: str) -> list[Any]:
        pool = self._open_pool()
        async with pg_errors("read", self._where), pool.acquire() as conn:
            rows: list[Any] = await conn.fetch(sql)
        return rows

    async def _execute(self, sql: str, *args: Any) -> None:
        pool = self._open_pool()
        async with pg_errors("write", self._where), pool.acquire() as conn:
            await conn.execute(sql, *args)
