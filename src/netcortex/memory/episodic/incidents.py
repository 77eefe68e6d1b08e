"""Memory, episodic: the incident store on SQLite and PostgreSQL (issue 8, item 3).

The ``IncidentStore`` contract (``contracts/incidents.py``) beside the outcomes:
the same SQLite file (``store.sqlite_path``) or PostgreSQL schema
(``store.postgres_schema``). The correlator saves a snapshot of an incident on
every change; the API, the CLI and a restarting correlator read them back.

Table ``incidents`` (one row per incident, the newest version saved):

=================  ==========================================================
``incident_id``    primary key (``COLLATE "C"`` on PostgreSQL: ids compare
                   bytewise, so the newest-first order matches SQLite's)
``members``,       JSON arrays (order kept)
``evidence``,
``inhibited``
``details``        JSON object
``flapping``       ``NULL`` / false / true
``version``        ``save`` replaces a row only with a greater version
=================  ==========================================================

Table ``incident_members(incident_id, device, updated)``: one row per device an
incident involves (its members' devices and its root's), rewritten with the
incident in the same transaction, so "incidents of device X" walks the index
``(device, updated, incident_id)`` in page order instead of scanning the JSON.

``save`` is one upsert guarded by the version (``ON CONFLICT (incident_id) DO
UPDATE ... WHERE excluded.version > incidents.version``) followed, when it
wrote, by the member rows, in one transaction: a concurrent older save never
overwrites a newer one, and members always belong to the version stored
(PostgreSQL: the upsert holds the row lock until commit, which serialises the
member rewrite per incident; SQLite: ``BEGIN IMMEDIATE``).

Reads are newest change first, ``updated DESC, incident_id DESC`` (a total
order); the page cursor is a row-value bound ``(updated, incident_id) < (?, ?)``
on the same indexes. ``IncidentQuery.since`` bounds ``updated_at`` (inclusive):
"incidents that changed since".

SQLite times are integer microseconds since the epoch (like the outcome store);
PostgreSQL times are ``timestamptz``. Naive datetimes are refused. Every driver
error is mapped to ``StoreError``; messages never carry a password.

May import: ``contracts``, ``errors``, ``pg``.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, Final, TypeVar

import asyncpg
import structlog

from netcortex.contracts.events import Severity
from netcortex.contracts.incidents import Incident, IncidentQuery, IncidentState
from netcortex.errors import StoreError
from netcortex.memory.episodic._sqlite_side import SqliteSideStore
from netcortex.pg import (
    Migration,
    apply_migrations,
    create_pool,
    pg_errors,
    quote_schema,
    redact_dsn,
)

__all__ = [
    "INCIDENT_MIGRATIONS",
    "SQLITE_INCIDENT_SCHEMA",
    "PostgresIncidentStore",
    "SqliteIncidentStore",
]

log = structlog.get_logger(__name__)

_T = TypeVar("_T")
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_US: Final = timedelta(microseconds=1)
_CLOSE_TIMEOUT_S: Final = 10.0
_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode

#: The incident tables on SQLite (created by ``SqliteIncidentStore.start``).
SQLITE_INCIDENT_SCHEMA: Final = (
    """CREATE TABLE IF NOT EXISTS incidents (
        incident_id  TEXT PRIMARY KEY,
        rule         TEXT NOT NULL,
        root         TEXT NOT NULL,
        state        TEXT NOT NULL,
        severity     TEXT NOT NULL,
        summary      TEXT NOT NULL,
        members      TEXT NOT NULL,
        evidence     TEXT NOT NULL,
        inhibited    TEXT NOT NULL,
        opened_us    INTEGER NOT NULL,
        updated_us   INTEGER NOT NULL,
        resolved_us  INTEGER,
        site         TEXT,
        flapping     INTEGER,
        version      INTEGER NOT NULL,
        details      TEXT NOT NULL
    )""",
    # the newest-first order itself (and the page cursor's range), then one per filter
    # with the id last, so ties on the time are ordered by the index too
    "CREATE INDEX IF NOT EXISTS incidents_updated ON incidents (updated_us, incident_id)",
    "CREATE INDEX IF NOT EXISTS incidents_state ON incidents (state, updated_us, incident_id)",
    "CREATE INDEX IF NOT EXISTS incidents_rule ON incidents (rule, updated_us, incident_id)",
    "CREATE INDEX IF NOT EXISTS incidents_site ON incidents (site, updated_us, incident_id)",
    """CREATE TABLE IF NOT EXISTS incident_members (
        incident_id  TEXT NOT NULL REFERENCES incidents (incident_id) ON DELETE CASCADE,
        device       TEXT NOT NULL,
        updated_us   INTEGER NOT NULL,
        PRIMARY KEY (incident_id, device)
    )""",
    "CREATE INDEX IF NOT EXISTS incident_members_device "
    "ON incident_members (device, updated_us, incident_id)",
)

#: The incident tables on PostgreSQL (ledger ``incident_migrations``). Never edit a
#: released migration: add the next version.
INCIDENT_MIGRATIONS: Final[tuple[Migration, ...]] = (
    (
        1,
        (
            """CREATE TABLE {s}.incidents (
                incident_id  TEXT COLLATE "C" PRIMARY KEY,
                rule         TEXT NOT NULL,
                root         TEXT NOT NULL,
                state        TEXT NOT NULL,
                severity     TEXT NOT NULL,
                summary      TEXT NOT NULL,
                members      TEXT NOT NULL,
                evidence     TEXT NOT NULL,
                inhibited    TEXT NOT NULL,
                opened_at    TIMESTAMPTZ NOT NULL,
                updated_at   TIMESTAMPTZ NOT NULL,
                resolved_at  TIMESTAMPTZ,
                site         TEXT,
                flapping     BOOLEAN,
                version      BIGINT NOT NULL,
                details      TEXT NOT NULL
            )""",
            "CREATE INDEX incidents_updated ON {s}.incidents (updated_at, incident_id)",
            "CREATE INDEX incidents_state ON {s}.incidents (state, updated_at, incident_id)",
            "CREATE INDEX incidents_rule ON {s}.incidents (rule, updated_at, incident_id)",
            "CREATE INDEX incidents_site ON {s}.incidents (site, updated_at, incident_id)",
            """CREATE TABLE {s}.incident_members (
                incident_id  TEXT COLLATE "C" NOT NULL
                             REFERENCES {s}.incidents (incident_id) ON DELETE CASCADE,
                device       TEXT NOT NULL,
                updated_at   TIMESTAMPTZ NOT NULL,
                PRIMARY KEY (incident_id, device)
            )""",
            "CREATE INDEX incident_members_device"
            " ON {s}.incident_members (device, updated_at, incident_id)",
        ),
    ),
)

_NAMES: Final = (
    "incident_id", "rule", "root", "state", "severity", "summary", "members", "evidence",
    "inhibited", "opened", "updated", "resolved", "site", "flapping", "version", "details",
)  # fmt: skip
_SQLITE_COLUMNS: Final = tuple(
    f"{n}_us" if n in ("opened", "updated", "resolved") else n for n in _NAMES
)
_PG_COLUMNS: Final = tuple(
    f"{n}_at" if n in ("opened", "updated", "resolved") else n for n in _NAMES
)


# ------------------------------------------------------------------ rows


def _aware(value: datetime, what: str) -> datetime:
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise StoreError(f"{what} must be a timezone-aware datetime (UTC), got {value!r}")
    return value


def _to_us(value: datetime, what: str) -> int:
    return (_aware(value, what) - _EPOCH) // _ONE_US


def _from_us(value: int) -> datetime:
    return _EPOCH + timedelta(microseconds=value)


def _strings(values: Sequence[str], incident_id: str, what: str) -> str:
    if isinstance(values, str) or not all(isinstance(v, str) for v in values):
        raise StoreError(f"incident {incident_id}: {what} must be a sequence of strings")
    return _dumps(list(values))


def _details(incident: Incident) -> str:
    try:
        return _dumps(dict(incident.details))
    except (TypeError, ValueError) as exc:
        raise StoreError(
            f"incident {incident.incident_id}: details are not JSON-serialisable: {exc}"
        ) from exc


def _devices(incident: Incident) -> list[str]:
    """The devices ``incident`` involves: its members' and its root's (distinct).

    Members are ``device`` or ``device|interface``; roots are typed keys
    (``device:``, ``interface:<device>|<if>``, ``cable:<end>~<end>``,
    ``bgp:<device>|<peer>``; a ``site:`` root names no device).
    """
    found: list[str] = [m.split("|", 1)[0] for m in incident.members]
    kind, _, rest = incident.root.partition(":")
    if kind == "device":
        found.append(rest)
    elif kind in ("interface", "bgp"):
        found.append(rest.split("|", 1)[0])
    elif kind == "cable":
        found.extend(end.split("|", 1)[0] for end in rest.split("~"))
    return [d for d in dict.fromkeys(found) if d]


def _fields(incident: Incident) -> tuple[Any, ...]:
    """The row of ``incident`` with times as given (checked aware), in ``_NAMES`` order."""
    if not isinstance(incident, Incident):
        raise StoreError(f"not an Incident: {type(incident).__name__}")
    iid = incident.incident_id
    if not isinstance(incident.version, int) or isinstance(incident.version, bool):
        raise StoreError(f"incident {iid}: version must be an integer")
    try:
        state = IncidentState(incident.state).value
        severity = Severity(incident.severity).value
    except ValueError as exc:
        raise StoreError(f"incident {iid}: {exc}") from exc
    resolved = incident.resolved_at
    return (
        iid,
        incident.rule,
        incident.root,
        state,
        severity,
        incident.summary,
        _strings(incident.members, iid, "members"),
        _strings(incident.evidence, iid, "evidence"),
        _strings(incident.inhibited, iid, "inhibited"),
        _aware(incident.opened_at, "opened_at"),
        _aware(incident.updated_at, "updated_at"),
        None if resolved is None else _aware(resolved, "resolved_at"),
        incident.site,
        incident.flapping,
        incident.version,
        _details(incident),
    )


def _decodable(rows: Sequence[Any], decode: Callable[[Any], Incident]) -> list[Incident]:
    """Decode ``rows`` for ``open_incidents``, skipping (with a warning) any that do not
    decode: one hand-broken row must not stop an engine from restoring the others."""
    out: list[Incident] = []
    for row in rows:
        try:
            out.append(decode(row))
        except StoreError as exc:
            log.warning("incident_row_undecodable", incident_id=str(row[0]), error=str(exc))
    return out


def _incident(row: Sequence[Any], times: Callable[[Any], datetime]) -> Incident:
    """An ``Incident`` from a stored row (``_NAMES`` order); ``times`` decodes a time."""
    try:
        return Incident(
            incident_id=row[0],
            rule=row[1],
            root=row[2],
            state=IncidentState(row[3]),
            severity=Severity(row[4]),
            summary=row[5],
            members=tuple(json.loads(row[6])),
            evidence=tuple(json.loads(row[7])),
            inhibited=tuple(json.loads(row[8])),
            opened_at=times(row[9]),
            updated_at=times(row[10]),
            resolved_at=None if row[11] is None else times(row[11]),
            site=row[12],
            flapping=None if row[13] is None else bool(row[13]),
            version=int(row[14]),
            details=dict(json.loads(row[15])),
        )
    except (ValueError, TypeError) as exc:  # JSONDecodeError is a ValueError
        raise StoreError(f"incident {row[0]}: stored row does not decode: {exc}") from exc


class _Built:
    """A query's SQL text and parameters, built for one backend's placeholders."""

    def __init__(self, placeholder: Callable[[int], str]) -> None:
        self.params: list[Any] = []
        self._placeholder = placeholder

    def __call__(self, value: Any) -> str:
        self.params.append(value)
        return self._placeholder(len(self.params))


def _select(
    query: IncidentQuery,
    *,
    columns: Sequence[str],
    incidents: str,
    members: str,
    updated: str,
    time: Callable[[datetime, str], Any],
    placeholder: Callable[[int], str],
) -> tuple[str, list[Any]]:
    """The SQL of ``query`` on either backend (the column names differ in ``updated``).

    With a device the walk starts from the member index ``(device, updated,
    incident_id)``, already in page order, and joins the incident by its key;
    without one it is the incident table and the filter's index.
    """
    p = _Built(placeholder)
    where: list[str] = []
    if query.device is not None:
        source = f"{members} m JOIN {incidents} i ON i.incident_id = m.incident_id"
        where.append(f"m.device = {p(str(query.device))}")
        key = "m"  # order and bound on the member index
    else:
        source = f"{incidents} i"
        key = "i"
    for column, exact in (
        ("state", query.state),  # a StrEnum: str() is its value
        ("rule", query.rule),
        ("site", query.site),
    ):
        if exact is not None:
            where.append(f"i.{column} = {p(str(exact))}")
    if query.since is not None:
        where.append(f"{key}.{updated} >= {p(time(query.since, 'since'))}")
    if query.before is not None:
        at = time(query.before.updated_at, "before.updated_at")
        where.append(
            f"({key}.{updated}, {key}.incident_id) < ({p(at)}, {p(str(query.before.incident_id))})"
        )
    clause = f" WHERE {' AND '.join(where)}" if where else ""
    sql = (
        f"SELECT {', '.join('i.' + c for c in columns)} FROM {source}{clause} "  # noqa: S608
        f"ORDER BY {key}.{updated} DESC, {key}.incident_id DESC LIMIT {p(query.limit)}"
    )
    return sql, p.params


# ------------------------------------------------------------------ SQLite


_SQLITE_SELECT: Final = f"SELECT {', '.join(_SQLITE_COLUMNS)} FROM incidents"  # noqa: S608
_SQLITE_UPSERT: Final = (
    f"INSERT INTO incidents ({', '.join(_SQLITE_COLUMNS)}) "  # noqa: S608
    f"VALUES ({', '.join('?' * len(_SQLITE_COLUMNS))}) "
    "ON CONFLICT (incident_id) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in _SQLITE_COLUMNS[1:])
    + " WHERE excluded.version > incidents.version"
)


def _sqlite_select(query: IncidentQuery) -> tuple[str, list[Any]]:
    """The SQLite SQL and parameters of ``query``."""
    return _select(
        query, columns=_SQLITE_COLUMNS, incidents="incidents", members="incident_members",
        updated="updated_us", time=_to_us, placeholder=lambda _: "?",
    )  # fmt: skip


class SqliteIncidentStore(SqliteSideStore):
    """The ``IncidentStore`` in the outcome store's SQLite file (its own connection
    and thread). Safe to use from many tasks of one loop (calls run one at a time
    on the thread) and from many processes on one file (WAL, ``BEGIN IMMEDIATE``)."""

    what = "incident store"

    def _create(self, conn: sqlite3.Connection) -> None:
        conn.execute("PRAGMA foreign_keys=ON")
        with conn:
            conn.execute("BEGIN IMMEDIATE")
            for statement in SQLITE_INCIDENT_SCHEMA:
                conn.execute(statement)

    async def save(self, incident: Incident) -> bool:
        """Store ``incident`` unless the stored version is equal or newer.

        Returns:
            ``True`` when written.

        Raises:
            StoreError: not open, naive times, details that are not JSON, or the
                write failed (nothing of it is stored).
        """
        fields = _fields(incident)
        row = (
            *fields[:9],
            _to_us(fields[9], "opened_at"),
            _to_us(fields[10], "updated_at"),
            None if fields[11] is None else _to_us(fields[11], "resolved_at"),
            fields[12],
            None if fields[13] is None else int(fields[13]),
            *fields[14:],
        )
        devices = _devices(incident)

        def run(conn: sqlite3.Connection) -> bool:
            if conn.execute(_SQLITE_UPSERT, row).rowcount != 1:
                return False
            conn.execute("DELETE FROM incident_members WHERE incident_id = ?", (row[0],))
            conn.executemany(
                "INSERT INTO incident_members (incident_id, device, updated_us) VALUES (?, ?, ?)",
                [(row[0], d, row[10]) for d in devices],
            )
            return True

        return await self._tx("save", run)

    async def get(self, incident_id: str) -> Incident | None:
        """One incident by id, or ``None``.

        Raises:
            StoreError: not open, or the read failed.
        """
        rows = await self._call(
            "read",
            lambda c: c.execute(
                f"{_SQLITE_SELECT} WHERE incident_id = ?", (incident_id,)
            ).fetchall(),
        )
        return _incident(rows[0], _from_us) if rows else None

    async def query(self, query: IncidentQuery) -> list[Incident]:
        """Incidents matching ``query``, newest change first (``updated_at`` desc, then
        ``incident_id`` desc); ``before`` continues after a page's last incident;
        ``limit < 1`` returns nothing.

        Raises:
            StoreError: not open, a naive time, or the read failed.
        """
        if query.limit < 1:
            return []
        sql, params = _sqlite_select(query)
        rows = await self._call("read", lambda c: c.execute(sql, params).fetchall())
        return [_incident(r, _from_us) for r in rows]

    async def open_incidents(self) -> list[Incident]:
        """Every open incident, newest change first; a row that does not decode is
        skipped with an ``incident_row_undecodable`` warning (the restore goes on).

        Raises:
            StoreError: not open, or the read failed.
        """
        sql = f"{_SQLITE_SELECT} WHERE state = ? ORDER BY updated_us DESC, incident_id DESC"
        rows = await self._call(
            "read", lambda c: c.execute(sql, (IncidentState.OPEN.value,)).fetchall()
        )
        return _decodable(rows, lambda r: _incident(r, _from_us))


# ------------------------------------------------------------------ PostgreSQL


def _pg_incident(row: Sequence[Any]) -> Incident:
    return _incident(row, _aware_from_db)


def _aware_from_db(value: Any) -> datetime:
    if not isinstance(value, datetime):
        raise TypeError(f"expected a timestamptz, got {type(value).__name__}")
    return value


class PostgresIncidentStore:
    """The ``IncidentStore`` in ``<schema>.incidents`` on PostgreSQL (asyncpg pool).

    Safe to use from many tasks and processes at once (the version guard and the
    member rewrite run in one transaction under the incident's row lock).
    """

    def __init__(self, dsn: str, schema: str, *, max_connections: int = 4) -> None:
        """Prepare (no I/O until ``start``).

        Raises:
            StoreError: ``schema`` is not a lower-case SQL identifier.
        """
        self._dsn = dsn
        self._schema = schema
        s = quote_schema(schema)
        self._t = f"{s}.incidents"
        self._m = f"{s}.incident_members"
        self._max = max(1, max_connections)
        self.where = f"postgres {redact_dsn(dsn)} schema {schema}"
        self._pool: asyncpg.Pool | None = None
        self._select = f"SELECT {', '.join(_PG_COLUMNS)} FROM {self._t}"  # noqa: S608
        self._upsert = (
            f"INSERT INTO {self._t} AS cur ({', '.join(_PG_COLUMNS)}) "  # noqa: S608
            f"VALUES ({', '.join(f'${i + 1}' for i in range(len(_PG_COLUMNS)))}) "
            "ON CONFLICT (incident_id) DO UPDATE SET "
            + ", ".join(f"{c} = excluded.{c}" for c in _PG_COLUMNS[1:])
            + " WHERE excluded.version > cur.version RETURNING incident_id"
        )

    async def __aenter__(self) -> PostgresIncidentStore:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @staticmethod
    async def migrate(conn: Any, schema: str, where: str) -> None:
        """Create or upgrade the incident tables on ``conn`` (ledger ``incident_migrations``)."""
        await apply_migrations(
            conn, schema=schema, ledger="incident_migrations", migrations=INCIDENT_MIGRATIONS,
            what="incident", where=where,
        )  # fmt: skip

    async def start(self) -> None:
        """Connect and create the incident tables when missing. Idempotent.

        Raises:
            StoreError: the server cannot be reached or refuses, a migration failed,
                or the schema is newer than this code understands.
        """
        if self._pool is not None:
            return
        pool = await create_pool(
            self._dsn, where=self.where, min_size=1, max_size=self._max, timeout=10,
            command_timeout=30,
        )  # fmt: skip
        try:
            async with pg_errors("open", self.where), pool.acquire() as conn:
                await self.migrate(conn, self._schema, self.where)
        except BaseException:
            pool.terminate()  # not close(): it waits on a server that stopped answering
            raise
        self._pool = pool

    async def close(self) -> None:
        """Close the pool. Idempotent."""
        pool, self._pool = self._pool, None
        if pool is not None:
            try:
                async with pg_errors("close", self.where):
                    await asyncio.wait_for(pool.close(), timeout=_CLOSE_TIMEOUT_S)
            except StoreError:
                pool.terminate()
                raise

    async def save(self, incident: Incident) -> bool:
        """Store ``incident`` unless the stored version is equal or newer.

        Returns:
            ``True`` when written.

        Raises:
            StoreError: not open, naive times, details that are not JSON, or the
                write failed (nothing of it is stored).
        """
        row = _fields(incident)
        devices = _devices(incident)
        pool = self._require()
        async with pg_errors("save", self.where), pool.acquire() as conn, conn.transaction():
            if await conn.fetchval(self._upsert, *row) is None:
                return False
            await conn.execute(f"DELETE FROM {self._m} WHERE incident_id = $1", row[0])  # noqa: S608
            await conn.execute(
                f"INSERT INTO {self._m} (incident_id, device, updated_at) "  # noqa: S608
                "SELECT $1, d, $3 FROM unnest($2::text[]) AS d",
                row[0],
                devices,
                row[10],
            )
        return True

    async def get(self, incident_id: str) -> Incident | None:
        """One incident by id, or ``None``.

        Raises:
            StoreError: not open, or the read failed.
        """
        rows = await self._fetch(f"{self._select} WHERE incident_id = $1", [incident_id])
        return _pg_incident(rows[0]) if rows else None

    async def query(self, query: IncidentQuery) -> list[Incident]:
        """Incidents matching ``query``, newest change first (``updated_at`` desc, then
        ``incident_id`` desc, bytewise); ``before`` continues after a page's last
        incident; ``limit < 1`` returns nothing.

        Raises:
            StoreError: not open, a naive time, or the read failed.
        """
        if query.limit < 1:
            return []
        sql, params = _select(
            query, columns=_PG_COLUMNS, incidents=self._t, members=self._m,
            updated="updated_at", time=_aware, placeholder=lambda n: f"${n}",
        )  # fmt: skip
        return [_pg_incident(r) for r in await self._fetch(sql, params)]

    async def open_incidents(self) -> list[Incident]:
        """Every open incident, newest change first; a row that does not decode is
        skipped with an ``incident_row_undecodable`` warning (the restore goes on).

        Raises:
            StoreError: not open, or the read failed.
        """
        sql = f"{self._select} WHERE state = $1 ORDER BY updated_at DESC, incident_id DESC"
        return _decodable(await self._fetch(sql, [IncidentState.OPEN.value]), _pg_incident)

    # ---------------------------------------------------------------- helpers

    def _require(self) -> asyncpg.Pool:
        if self._pool is None:
            raise StoreError("incident store is not open (call start() first, or it was closed)")
        return self._pool

    async def _fetch(self, sql: str, params: Sequence[Any]) -> list[Any]:
        pool = self._require()
        async with pg_errors("read", self.where):
            return list(await pool.fetch(sql, *params))
