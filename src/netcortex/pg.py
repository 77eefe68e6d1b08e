"""Shared PostgreSQL plumbing: one error mapping and one versioned-migration runner.

Every component that keeps state in PostgreSQL (the outcome store, the
maintenance calendar, the poll state) lives in the schema ``store.postgres_schema``
and versions its own tables in its own ledger table (``schema_migrations`` for
the outcome store, ``<component>_migrations`` for the others), so each can move
on without the others. ``apply_migrations`` runs the missing steps of one
component in one transaction under an advisory lock on the schema, so many
processes may start at once.

Importing it also rate-limits asyncpg's own "pool connection floor" warning
(``_PoolFloorWarnings``): during a server restart it would log a traceback per
pool and retry. ``is_transient`` tells an outage (worth retrying) from a refused
statement.

May import: ``errors``, ``logs`` (a leaf like them; regions import it).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any, Final
from urllib.parse import unquote_plus

import asyncpg
import structlog

from netcortex.errors import StoreError
from netcortex.logs import REDACTED

__all__ = [
    "Migration",
    "apply_migrations",
    "create_pool",
    "is_transient",
    "ledger_version",
    "pg_errors",
    "quote_schema",
    "redact_dsn",
    "refuse_newer",
]

log = structlog.get_logger(__name__)

#: Least seconds between two of asyncpg's "pool connection floor" warnings (process-wide).
POOL_FLOOR_WARN_INTERVAL_S = 60.0
_POOL_FLOOR_MESSAGE: Final = "Failed to restore the pool connection floor"


class _PoolFloorWarnings(logging.Filter):
    """Rate-limit asyncpg's ``Failed to restore the pool connection floor; retrying``.

    While the server is down (a restart), every pool's background task that keeps
    ``min_size`` connections open logs that warning with a full traceback at each
    retry (1 s doubling to 60 s): a dozen tracebacks a second outage on a worker
    with five pools, beside the components' own rate-limited lines
    (``store_write_failed``, ``reflex_settle_failed`` ...) that already say what
    failed. This keeps one line per ``POOL_FLOOR_WARN_INTERVAL_S`` for the whole
    process, with the error's type and message instead of the traceback, and the
    number of lines ``suppressed`` since the last one. Other asyncpg records pass.
    """

    def __init__(self) -> None:
        super().__init__()
        self.seen = 0  # floor warnings asyncpg logged, let through or not
        self._last = -float("inf")
        self._suppressed = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if not str(record.msg).startswith(_POOL_FLOOR_MESSAGE):
            return True
        self.seen += 1
        now = time.monotonic()
        if now - self._last < POOL_FLOOR_WARN_INTERVAL_S:
            self._suppressed += 1
            return False
        error = record.exc_info[1] if record.exc_info else None
        record.msg = "%s; retrying (%s: %s; %d such lines suppressed)"
        record.args = (_POOL_FLOOR_MESSAGE, type(error).__name__, error, self._suppressed)
        record.exc_info = None
        record.exc_text = None
        self._last = now
        self._suppressed = 0
        return True


logging.getLogger("asyncpg.pool").addFilter(_PoolFloorWarnings())

#: Longest one migration statement may run (seconds).
MIGRATION_TIMEOUT_S = 3600.0

#: ``(version, statements)``; ``{s}`` in a statement is the quoted schema name.
Migration = tuple[int, tuple[str, ...]]

_IDENT = re.compile(r"[a-z_][a-z0-9_]{0,62}")
#: DSN parameters whose value is a secret (libpq names; asyncpg reads ``password``).
_SECRET_PARAMS: Final = frozenset({"password", "sslpassword"})
#: ``password=...`` in a libpq key/value DSN (quoted or not).
_KEYWORD_SECRET: Final = re.compile(
    r"(\b(?:ssl)?password\s*=\s*)('(?:[^'\\]|\\.)*'?|\S*)", re.IGNORECASE
)
#: What asyncpg's DSN parsing raises besides its own errors (a bad port, say).
_DSN_ERRORS: Final = (ValueError, TypeError, OverflowError)


def quote_schema(schema: str) -> str:
    """``"schema"`` for SQL text; refuses anything but a lower-case identifier."""
    if not _IDENT.fullmatch(schema):
        raise StoreError(f"not a lower-case SQL identifier: {schema!r}")
    return f'"{schema}"'


def redact_dsn(dsn: str) -> str:
    """``dsn`` for messages and logs, never with a password.

    Redacts the user-info of a URL DSN (everything up to its last ``@``, so a
    password with an unencoded ``/``, ``?`` or ``#`` goes too), the values of
    ``password``/``sslpassword`` query parameters, and ``password=`` in a libpq
    key/value DSN (which asyncpg refuses, but which still reaches messages).
    """
    scheme, sep, rest = dsn.partition("://")
    if not sep:
        return _KEYWORD_SECRET.sub(lambda m: m.group(1) + REDACTED, dsn)
    at = rest.rfind("@")
    if at >= 0:
        rest = REDACTED + rest[at:]
    head, q, query = rest.partition("?")
    if q:
        pairs = []
        for pair in query.split("&"):
            key, eq, _value = pair.partition("=")
            secret = eq and unquote_plus(key).strip().lower() in _SECRET_PARAMS
            pairs.append(f"{key}={REDACTED}" if secret else pair)
        rest = head + q + "&".join(pairs)
    return f"{scheme}{sep}{rest}"


async def create_pool(dsn: str, *, where: str, **kwargs: Any) -> asyncpg.Pool:
    """``asyncpg.create_pool(dsn, **kwargs)`` with every failure a ``StoreError``.

    A DSN asyncpg cannot parse (a port that is not a number, say) is named by
    ``where`` only: the parser's message may quote part of the password.

    Raises:
        StoreError: the DSN does not parse, or the server cannot be reached or refuses.
    """
    try:
        async with pg_errors("connect", where):
            pool: asyncpg.Pool = await asyncpg.create_pool(dsn, **kwargs)
    except _DSN_ERRORS as exc:
        raise StoreError(
            f"postgres connect failed on {where}: the DSN does not parse "
            f"({type(exc).__name__}; expected postgresql://user:password@host:port/database)"
        ) from exc
    return pool


@asynccontextmanager
async def pg_errors(action: str, where: str) -> AsyncIterator[None]:
    """Map every asyncpg, socket and timeout error to ``StoreError`` (the one mapping).

    ``where`` names the server for the message and must already be redacted
    (``redact_dsn``): messages never carry a password.
    """
    try:
        yield
    except (
        asyncpg.PostgresError,
        asyncpg.InterfaceError,
        # ProtocolError, OutdatedSchemaCacheError (a column type edited by hand) ...
        asyncpg.InternalClientError,
        OSError,
        TimeoutError,
    ) as exc:
        raise StoreError(
            f"postgres {action} failed on {where}: {type(exc).__name__}: {exc}"
        ) from exc


#: SQLSTATE classes of a server that is (re)starting, shutting down, overloaded or
#: cut off: 08 connection exception, 53 insufficient resources (too many
#: connections), 57 operator intervention (admin shutdown, "the database system is
#: starting up", a cancelled statement).
_TRANSIENT_CLASSES: Final = frozenset({"08", "53", "57"})
#: A read-only transaction: a standby, for a moment, during a failover.
_READ_ONLY_SQLSTATE: Final = "25006"
#: Class 08 but the client's fault (a NUL in the statement text): it fails again.
_PROTOCOL_VIOLATION: Final = "08P01"


def is_transient(error: BaseException) -> bool:
    """Whether ``error`` (a ``StoreError`` from ``pg_errors``, or its cause) means the
    server could not be reached or was restarting — worth the same statement again
    later — rather than a statement or its data being refused (which would fail again).

    Transient: socket and timeout errors, asyncpg's client-side errors (a connection
    closed under it), SQLSTATE classes 08 (but 08P01, a protocol violation), 53 and
    57, and a read-only transaction.
    """
    cause: BaseException | None = error
    if isinstance(error, StoreError):
        cause = error.__cause__
    if cause is None:
        return False
    if isinstance(
        cause, (OSError, TimeoutError, asyncpg.InterfaceError, asyncpg.InternalClientError)
    ):
        return True
    if isinstance(cause, asyncpg.PostgresError):
        state = str(getattr(cause, "sqlstate", "") or "")
        if state == _PROTOCOL_VIOLATION:
            return False
        return state[:2] in _TRANSIENT_CLASSES or state == _READ_ONLY_SQLSTATE
    return False


def refuse_newer(found: int, newest: int, *, schema: str, what: str, where: str) -> None:
    """Raise ``StoreError`` when the database is at a newer ``what`` version than this code."""
    if found > newest:
        raise StoreError(
            f"schema {schema} on {where} has {what} schema version {found}; "
            f"this netcortex understands up to {newest} (upgrade netcortex)"
        )


async def ledger_version(conn: Any, *, schema: str, ledger: str) -> int | None:
    """The version in ``<schema>.<ledger>``, or ``None`` when the ledger does not exist
    (read-only: creates nothing)."""
    table = f"{quote_schema(schema)}.{ledger}"
    if await conn.fetchval("SELECT to_regclass($1)", table) is None:
        return None
    found: int = await conn.fetchval(f"SELECT coalesce(max(version), 0) FROM {table}")  # noqa: S608
    return found


async def apply_migrations(
    conn: Any,
    *,
    schema: str,
    ledger: str,
    migrations: Sequence[Migration],
    what: str,
    where: str,
) -> tuple[int, int]:
    """Apply the missing ``migrations`` of one component; return ``(found, now)``.

    Runs in one transaction on ``conn`` (an asyncpg connection), under
    ``pg_advisory_xact_lock`` on the schema name. Creates the schema and the
    ledger table ``<schema>.<ledger>`` when missing; runs no DDL when the ledger
    is already at the newest version (only reads it).

    Raises:
        StoreError: the database holds a newer version than ``migrations`` knows
            (``what`` names the component in the message), or a statement failed.
    """
    s = quote_schema(schema)
    if not _IDENT.fullmatch(ledger):
        raise StoreError(f"not a lower-case SQL identifier: {ledger!r}")
    newest = migrations[-1][0] if migrations else 0
    async with pg_errors("migrate", where), conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", schema)
        # Up to date: no DDL at all, so a role that may only use the tables (no CREATE
        # on the database or the schema; `netcortex db upgrade` run by the owner) starts.
        current = await ledger_version(conn, schema=schema, ledger=ledger)
        if current is not None and current >= newest:
            refuse_newer(current, newest, schema=schema, what=what, where=where)
            return current, newest
        await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {s}")
        await conn.execute(
            f"CREATE TABLE IF NOT EXISTS {s}.{ledger} ("
            "version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
        )
        found: int = await conn.fetchval(
            f"SELECT coalesce(max(version), 0) FROM {s}.{ledger}"  # noqa: S608
        )
        refuse_newer(found, newest, schema=schema, what=what, where=where)
        for version, statements in migrations:
            if version <= found:
                continue
            for statement in statements:
                # Not the pool's command_timeout: an index build on a big table (28 s
                # on 10M outcomes) may take longer, and a timeout would roll the
                # migration back on every start.
                await conn.execute(statement.format(s=s), timeout=MIGRATION_TIMEOUT_S)
            await conn.execute(
                f"INSERT INTO {s}.{ledger} (version) VALUES ($1)",  # noqa: S608
                version,
            )
    if found < newest:
        log.info("pg_migrated", what=what, schema=schema, from_version=found, to_version=newest)
    return found, newest
