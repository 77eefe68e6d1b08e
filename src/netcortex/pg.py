"""Shared PostgreSQL plumbing: one error mapping and one versioned-migration runner.

Every component that keeps state in PostgreSQL (the outcome store, the
maintenance calendar, the poll state) lives in the schema ``store.postgres_schema``
and versions its own tables in its own ledger table (``schema_migrations`` for
the outcome store, ``<component>_migrations`` for the others), so each can move
on without the others. ``apply_migrations`` runs the missing steps of one
component in one transaction under an advisory lock on the schema, so many
processes may start at once.

May import: ``errors``, ``logs`` (a leaf like them; regions import it).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import structlog

from netcortex.errors import StoreError

__all__ = [
    "Migration",
    "apply_migrations",
    "ledger_version",
    "pg_errors",
    "quote_schema",
    "refuse_newer",
]

log = structlog.get_logger(__name__)

#: ``(version, statements)``; ``{s}`` in a statement is the quoted schema name.
Migration = tuple[int, tuple[str, ...]]

_IDENT = re.compile(r"[a-z_][a-z0-9_]{0,62}")


def quote_schema(schema: str) -> str:
    """``"schema"`` for SQL text; refuses anything but a lower-case identifier."""
    if not _IDENT.fullmatch(schema):
        raise StoreError(f"not a lower-case SQL identifier: {schema!r}")
    return f'"{schema}"'


@asynccontextmanager
async def pg_errors(action: str, where: str) -> AsyncIterator[None]:
    """Map every asyncpg, socket and timeout error to ``StoreError`` (the one mapping).

    ``where`` names the server for the message and must already be redacted
    (``logs.redact_url``): messages never carry a password.
    """
    try:
        yield
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError) as exc:
        raise StoreError(
            f"postgres {action} failed on {where}: {type(exc).__name__}: {exc}"
        ) from exc


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
    ledger table ``<schema>.<ledger>`` when missing.

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
                await conn.execute(statement.format(s=s))
            await conn.execute(
                f"INSERT INTO {s}.{ledger} (version) VALUES ($1)",  # noqa: S608
                version,
            )
    if found < newest:
        log.info("pg_migrated", what=what, schema=schema, from_version=found, to_version=newest)
    return found, newest
