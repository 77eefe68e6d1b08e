"""Memory, episodic: the durable journal outbox on SQLite and PostgreSQL (issue 7).

The ``Outbox`` contract (``contracts/outbox.py``) on the outcome store's own
database, so a job can be written **in the same transaction as its outcome**:
the stores' writers insert job rows beside the outcome rows of each batch
(``SQLITE_JOBS_INSERT`` / ``PostgresOutbox.insert_sql``); the classes here
serve the delivery worker (claim, finish) and operators (stats, lists, requeue).

Table ``journal_jobs`` (one row per outcome, or incident, that should reach NetBox):

==================  =====================================================
``job_id``          the outcome id (primary key: one job per outcome), or
                    ``incident:<incident_id>`` (one job per incident)
``outcome``         the payload as JSON (``contracts.codec``): the outcome,
                    or for an incident job the incident (newest version); a
                    job never depends on the outcome row surviving retention
``state``           ``pending`` | ``delivered`` | ``dead`` | ``superseded``
``attempts``        attempts ended (``retry`` and ``dead`` count)
``created``         when the job was written (with its outcome)
``next_attempt``    earliest time it may be claimed again
``lease_until``     a claim holds the job until then (0/epoch: free)
``last_error``      why the last attempt failed
``entry_id``        the NetBox journal entry id once delivered
``finished``        when it was delivered, dead-lettered or superseded
==================  =====================================================

Incident jobs (issue 8): ``upsert_incident`` inserts the job or, when the
stored incident version (``json_extract`` / ``::jsonb`` on the payload's
``version``) is older, replaces the payload and makes the job pending again
(due now, lease cleared, attempts 0, no error, not finished), **keeping
``entry_id``** so the worker updates the same NetBox entry, and ``created``
while it was pending; a pending job without an entry keeps a later
``next_attempt`` (a timed-out POST may still land: searching for its marker
before then would write a second entry). ``delivered``/``retry``/``dead`` with a ``version`` act
only while the stored incident is that version (``delivered`` otherwise just
notes a missing ``entry_id``): an attempt on version N that ends after N+1 was
upserted never marks N+1 done. ``supersede`` moves pending outcome jobs to
``superseded`` (their outcome is part of an incident whose entry covers it).

Claiming is one transaction: SQLite ``BEGIN IMMEDIATE`` (one writer at a time
across processes on the file), PostgreSQL ``FOR UPDATE SKIP LOCKED`` (workers
skip each other's rows instead of waiting). A claim sets ``lease_until``; the
finishing calls release it. A worker that dies lets its leases expire, and the
jobs are claimed again — the marker check in NetBox keeps that from
duplicating an entry. Finishing calls only move ``pending`` jobs (``delivered``
also a dead one that was delivered after all), so a late answer from an expired
lease never resurrects or overwrites a finished job. A job whose stored outcome
no longer decodes (another schema version, a hand edit) is dead-lettered by
``claim`` with the reason and left out of listings: it never blocks the rest.
Finished jobs are deleted by the outcome store's retention
(``store.retention_days`` after they finished; ``SQLITE_JOBS_PRUNE`` /
``PostgresOutbox.prune_sql``), so delivered, dead and superseded jobs do not
pile up.

SQLite times are integer microseconds (like the outcome store); PostgreSQL
times are ``timestamptz``. Every driver error is mapped to ``StoreError``.

May import: ``contracts``, ``errors``, ``logs``, ``pg``.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final, TypeVar

import asyncpg
import structlog

from netcortex.contracts.codec import (
    decode_incident,
    decode_outcome,
    encode_incident,
    encode_outcome,
)
from netcortex.contracts.incidents import Incident
from netcortex.contracts.outbox import (
    INCIDENT_JOB_PREFIX,
    JobState,
    JournalJob,
    OutboxStats,
    incident_job_id,
)
from netcortex.contracts.reflex import ReflexOutcome
from netcortex.errors import DecodeError, StoreError
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
    "JOBS_MIGRATIONS",
    "SQLITE_JOBS_INSERT",
    "SQLITE_JOBS_PRUNE",
    "SQLITE_JOBS_SCHEMA",
    "JournalHook",
    "PostgresOutbox",
    "SqliteOutbox",
    "incident_job_row",
    "job_row",
]

log = structlog.get_logger(__name__)

_T = TypeVar("_T")
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MAX_ERROR: Final = 2000

#: The job table on SQLite (created by the outcome store's writer and by the outbox).
SQLITE_JOBS_SCHEMA: Final = (
    """CREATE TABLE IF NOT EXISTS journal_jobs (
        job_id          TEXT PRIMARY KEY,
        outcome         TEXT NOT NULL,
        state           TEXT NOT NULL DEFAULT 'pending',
        attempts        INTEGER NOT NULL DEFAULT 0,
        created_us      INTEGER NOT NULL,
        next_attempt_us INTEGER NOT NULL,
        lease_until_us  INTEGER NOT NULL DEFAULT 0,
        last_error      TEXT NOT NULL DEFAULT '',
        entry_id        INTEGER,
        finished_us     INTEGER
    )""",
    "CREATE INDEX IF NOT EXISTS journal_jobs_due ON journal_jobs (state, next_attempt_us)",
    "CREATE INDEX IF NOT EXISTS journal_jobs_created ON journal_jobs (state, created_us)",
)
#: One job, in the outcome writer's transaction: ``(job_id, outcome, created_us, next_attempt_us)``.
SQLITE_JOBS_INSERT: Final = (
    "INSERT OR IGNORE INTO journal_jobs (job_id, outcome, created_us, next_attempt_us) "
    "VALUES (?, ?, ?, ?)"
)
#: Retention (the outcome store's ``prune``): one batch of finished jobs — delivered
#: or dead — finished before a cutoff: ``(cutoff_us, batch)``. Pending jobs are never
#: pruned (``max_age_seconds`` dead-letters them first).
SQLITE_JOBS_PRUNE: Final = (
    "DELETE FROM journal_jobs WHERE job_id IN (SELECT job_id FROM journal_jobs "
    "WHERE state IN ('delivered', 'dead', 'superseded') AND finished_us < ? LIMIT ?)"
)

#: The job table on PostgreSQL (ledger ``journal_migrations``). Never edit a released
#: migration: add the next version.
JOBS_MIGRATIONS: Final[tuple[Migration, ...]] = (
    (
        1,
        (
            """CREATE TABLE {s}.journal_jobs (
                job_id          TEXT COLLATE "C" PRIMARY KEY,
                outcome         TEXT NOT NULL,
                state           TEXT NOT NULL DEFAULT 'pending',
                attempts        INTEGER NOT NULL DEFAULT 0,
                created         TIMESTAMPTZ NOT NULL,
                next_attempt    TIMESTAMPTZ NOT NULL,
                lease_until     TIMESTAMPTZ NOT NULL DEFAULT 'epoch',
                last_error      TEXT NOT NULL DEFAULT '',
                entry_id        BIGINT,
                finished        TIMESTAMPTZ
            )""",
            "CREATE INDEX journal_jobs_due ON {s}.journal_jobs (state, next_attempt)",
            "CREATE INDEX journal_jobs_created ON {s}.journal_jobs (state, created)",
        ),
    ),
)


@dataclass(frozen=True, slots=True)
class JournalHook:
    """What an outcome store needs to write journal jobs with its outcomes.

    Attributes:
        wants: the journal policy (``motor.policy.JournalPolicy.wants``): whether
            an outcome gets a job. Called by ``record`` on the event loop; must be
            fast and should not raise (if it does, the outcome is still stored,
            without a job, and ``journal_policy_failed`` is logged).
        committed: called on the event loop with the number of jobs a batch
            committed (the delivery worker's ``notify``), or ``None``.
        hold_seconds: a job is first due this long after it was written
            (``journal.incident_hold_seconds`` with association enabled: time for
            the correlator to fold the outcome into an incident and supersede
            its job); 0 = due at once.
    """

    wants: Callable[[ReflexOutcome], bool]
    committed: Callable[[int], None] | None = None
    hold_seconds: float = 0.0

    def job(self, outcome: ReflexOutcome) -> tuple[str, str, datetime, datetime] | None:
        """``(job_id, outcome JSON, created, next_attempt)`` when ``outcome`` gets a
        job (``next_attempt`` = ``created`` + ``hold_seconds``), else ``None``."""
        try:
            if not self.wants(outcome):
                return None
        except Exception as exc:  # noqa: BLE001 - a policy bug never costs the outcome
            log.error(
                "journal_policy_failed", outcome_id=outcome.outcome_id,
                error=str(exc), error_type=type(exc).__name__,
            )  # fmt: skip
            return None
        job_id, text = job_row(outcome)
        created = datetime.fromtimestamp(time.time(), UTC)
        hold = self.hold_seconds
        due = created + timedelta(seconds=hold) if hold > 0 else created
        return job_id, text, created, due


def _us(moment: datetime) -> int:
    if moment.tzinfo is None:
        raise StoreError(f"outbox times must be timezone-aware (UTC), got {moment!r}")
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _from_us(value: int | None) -> datetime | None:
    return None if value is None else _EPOCH + timedelta(microseconds=value)


def _aware(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise StoreError(f"outbox times must be timezone-aware (UTC), got {moment!r}")
    return moment


def job_row(outcome: ReflexOutcome) -> tuple[str, str]:
    """``(job_id, outcome JSON)`` of the job for ``outcome`` (the writers add the times)."""
    return outcome.outcome_id, encode_outcome(outcome).decode()


def incident_job_row(incident: Incident) -> tuple[str, str]:
    """``(job_id, incident JSON)`` of the job for ``incident``."""
    return incident_job_id(incident.incident_id), encode_incident(incident).decode()


def _job(
    job_id: str,
    outcome: str,
    state: str,
    attempts: int,
    created: datetime,
    next_attempt: datetime,
    last_error: str,
    entry_id: int | None,
    finished: datetime | None,
) -> JournalJob:
    decoded: ReflexOutcome | None = None
    incident: Incident | None = None
    try:
        if job_id.startswith(INCIDENT_JOB_PREFIX):
            incident = decode_incident(outcome)
        else:
            decoded = decode_outcome(outcome)
    except DecodeError as exc:
        raise StoreError(f"journal job {job_id}: stored payload does not decode: {exc}") from exc
    return JournalJob(
        job_id=job_id,
        outcome=decoded,
        incident=incident,
        state=JobState(state),
        attempts=attempts,
        created_at=created,
        next_attempt_at=next_attempt,
        last_error=last_error,
        entry_id=entry_id,
        finished_at=finished,
    )


def _clip(error: str) -> str:
    return error if len(error) <= _MAX_ERROR else error[: _MAX_ERROR - 1] + "…"


def _undecodable(job_id: str, error: StoreError, *, claimed: bool) -> str:
    """Log a job whose stored outcome does not decode; its dead-letter reason."""
    log.warning(
        "journal_job_undecodable", job_id=job_id, error=str(error),
        action="dead-lettered" if claimed else "skipped in listing",
    )  # fmt: skip
    return f"undecodable: {error}"


def _decoded(
    rows: Sequence[Any], build: Callable[[Any], JournalJob], *, claimed: bool
) -> tuple[list[JournalJob], list[tuple[str, str]]]:
    """The jobs of ``rows`` that decode, and ``(job_id, reason)`` of those that do not.

    A job written by another schema version (or edited by hand) must not stop the
    outbox: ``claim`` dead-letters it with the reason, listings leave it out.
    """
    jobs: list[JournalJob] = []
    bad: list[tuple[str, str]] = []
    for row in rows:
        try:
            jobs.append(build(row))
        except StoreError as exc:
            bad.append((str(row[0]), _undecodable(str(row[0]), exc, claimed=claimed)))
    return jobs, bad


# ------------------------------------------------------------------ SQLite


_SQLITE_JOB_COLUMNS: Final = (
    "job_id, outcome, state, attempts, created_us, next_attempt_us, last_error, entry_id, "
    "finished_us"
)


#: ``(version, version)``: ``None`` (outcome jobs) or the stored incident's version.
_SQLITE_SAME_VERSION: Final = (
    "(CASE WHEN ? IS NULL THEN 1 ELSE json_extract(outcome, '$.version') = ? END)"
)
#: ``(job_id, incident JSON, now_us, now_us)``: insert, or replace an older version.
#: Due now, except a pending job without an entry keeps a later retry: its last
#: POST may still land (a timed-out write waits a lease), and a search before that
#: would write a second entry.
_SQLITE_UPSERT: Final = (
    "INSERT INTO journal_jobs (job_id, outcome, created_us, next_attempt_us) "
    "VALUES (?, ?, ?, ?) ON CONFLICT (job_id) DO UPDATE SET outcome = excluded.outcome, "
    "created_us = CASE WHEN journal_jobs.state = 'pending' THEN journal_jobs.created_us "
    "ELSE excluded.created_us END, "
    "state = 'pending', next_attempt_us = CASE WHEN journal_jobs.state = 'pending' "
    "AND journal_jobs.entry_id IS NULL AND journal_jobs.next_attempt_us > excluded.next_attempt_us "
    "THEN journal_jobs.next_attempt_us ELSE excluded.next_attempt_us END, lease_until_us = 0, "
    "attempts = 0, last_error = '', finished_us = NULL "
    "WHERE json_extract(journal_jobs.outcome, '$.version') "
    "< json_extract(excluded.outcome, '$.version')"
)


class SqliteOutbox(SqliteSideStore):
    """The ``Outbox`` on the outcome store's SQLite file (its own connection and thread)."""

    what = "journal outbox"

    def _create(self, conn: sqlite3.Connection) -> None:
        for statement in SQLITE_JOBS_SCHEMA:
            conn.execute(statement)

    async def claim(self, limit: int, now: datetime, lease_seconds: float) -> list[JournalJob]:
        now_us = _us(now)
        until_us = now_us + int(lease_seconds * 1_000_000)

        def run(conn: sqlite3.Connection) -> list[JournalJob]:
            rows = conn.execute(
                f"SELECT {_SQLITE_JOB_COLUMNS} FROM journal_jobs "  # noqa: S608
                "WHERE state = 'pending' AND next_attempt_us <= ? AND lease_until_us <= ? "
                "ORDER BY next_attempt_us, job_id LIMIT ?",
                (now_us, now_us, max(0, limit)),
            ).fetchall()
            jobs, bad = _decoded(rows, self._job, claimed=True)
            conn.executemany(
                "UPDATE journal_jobs SET lease_until_us = ? WHERE job_id = ?",
                [(until_us, j.job_id) for j in jobs],
            )
            conn.executemany(
                "UPDATE journal_jobs SET state = 'dead', attempts = attempts + 1, "
                "last_error = ?, finished_us = ?, lease_until_us = 0 WHERE job_id = ?",
                [(_clip(reason), now_us, job_id) for job_id, reason in bad],
            )
            return jobs

        return await self._tx("claim", run)

    async def delivered(
        self, job_id: str, entry_id: int | None, now: datetime, *, version: int | None = None
    ) -> None:
        now_us = _us(now)

        def run(conn: sqlite3.Connection) -> None:
            done = conn.execute(
                "UPDATE journal_jobs SET state = 'delivered', entry_id = ?, finished_us = ?, "  # noqa: S608
                f"lease_until_us = 0, last_error = '' WHERE job_id = ? AND state != 'delivered' "
                f"AND {_SQLITE_SAME_VERSION}",
                (entry_id, now_us, job_id, version, version),
            ).rowcount
            if not done and version is not None and entry_id is not None:
                # A newer version was upserted meanwhile: it stays pending, and
                # updates the entry this attempt made.
                conn.execute(
                    "UPDATE journal_jobs SET entry_id = ? WHERE job_id = ? AND entry_id IS NULL",
                    (entry_id, job_id),
                )

        await self._tx("deliver", run)

    async def retry(
        self, job_id: str, next_attempt_at: datetime, error: str, *, version: int | None = None
    ) -> None:
        next_us = _us(next_attempt_at)
        await self._tx(
            "retry",
            lambda c: c.execute(
                "UPDATE journal_jobs SET attempts = attempts + 1, next_attempt_us = ?, "  # noqa: S608
                "last_error = ?, lease_until_us = 0 WHERE job_id = ? AND state = 'pending' "
                f"AND {_SQLITE_SAME_VERSION}",
                (next_us, _clip(error), job_id, version, version),
            ),
        )

    async def dead(
        self, job_id: str, reason: str, now: datetime, *, version: int | None = None
    ) -> None:
        now_us = _us(now)
        await self._tx(
            "dead-letter",
            lambda c: c.execute(
                "UPDATE journal_jobs SET state = 'dead', attempts = attempts + 1, "  # noqa: S608
                "last_error = ?, finished_us = ?, lease_until_us = 0 "
                f"WHERE job_id = ? AND state = 'pending' AND {_SQLITE_SAME_VERSION}",
                (_clip(reason), now_us, job_id, version, version),
            ),
        )

    async def upsert_incident(self, incident: Incident, now: datetime) -> bool:
        job_id, text = incident_job_row(incident)
        now_us = _us(now)
        return bool(
            await self._tx(
                "upsert",
                lambda c: c.execute(_SQLITE_UPSERT, (job_id, text, now_us, now_us)).rowcount,
            )
        )

    async def supersede(self, job_ids: Sequence[str], reason: str, now: datetime) -> int:
        now_us = _us(now)
        ids = [j for j in dict.fromkeys(job_ids) if not j.startswith(INCIDENT_JOB_PREFIX)]
        if not ids:
            return 0

        def run(conn: sqlite3.Connection) -> int:
            return sum(
                int(
                    conn.execute(
                        "UPDATE journal_jobs SET state = 'superseded', finished_us = ?, "
                        "last_error = ?, lease_until_us = 0 "
                        "WHERE job_id = ? AND state = 'pending'",
                        (now_us, _clip(reason), job_id),
                    ).rowcount
                )
                for job_id in ids
            )

        return int(await self._tx("supersede", run))

    async def jobs(self, state: JobState, limit: int = 100) -> list[JournalJob]:
        def run(conn: sqlite3.Connection) -> list[JournalJob]:
            rows = conn.execute(
                f"SELECT {_SQLITE_JOB_COLUMNS} FROM journal_jobs WHERE state = ? "  # noqa: S608
                "ORDER BY created_us, job_id LIMIT ?",
                (JobState(state).value, max(0, limit)),
            ).fetchall()
            return _decoded(rows, self._job, claimed=False)[0]

        return await self._call("read", run)

    async def stats(self) -> OutboxStats:
        def run(conn: sqlite3.Connection) -> OutboxStats:
            counts = dict(
                conn.execute("SELECT state, count(*) FROM journal_jobs GROUP BY state").fetchall()
            )
            oldest = conn.execute(
                "SELECT min(created_us) FROM journal_jobs WHERE state = 'pending'"
            ).fetchone()[0]
            return OutboxStats(
                pending=int(counts.get("pending", 0)),
                delivered=int(counts.get("delivered", 0)),
                dead=int(counts.get("dead", 0)),
                oldest_pending_at=_from_us(oldest),
                superseded=int(counts.get("superseded", 0)),
            )

        return await self._call("read", run)

    async def retry_dead(self, job_ids: Sequence[str] | None = None) -> int:
        now_us = _us(datetime.now(UTC))

        def run(conn: sqlite3.Connection) -> int:
            sql = (
                "UPDATE journal_jobs SET state = 'pending', next_attempt_us = ?, "
                "created_us = ?, lease_until_us = 0, finished_us = NULL WHERE state = 'dead'"
            )
            if job_ids is None:
                return int(conn.execute(sql, (now_us, now_us)).rowcount)
            return sum(
                int(conn.execute(sql + " AND job_id = ?", (now_us, now_us, j)).rowcount)
                for j in job_ids
            )

        return await self._tx("requeue", run)

    # ---------------------------------------------------------------- the thread

    @staticmethod
    def _job(row: Sequence[Any]) -> JournalJob:
        created = _from_us(row[4])
        next_attempt = _from_us(row[5])
        assert created is not None
        assert next_attempt is not None
        return _job(
            row[0], row[1], row[2], row[3], created, next_attempt, row[6], row[7], _from_us(row[8])
        )


# ------------------------------------------------------------------ PostgreSQL

_PG_JOB_COLUMNS: Final = (
    "job_id, outcome, state, attempts, created, next_attempt, last_error, entry_id, finished"
)


def _pg_same_version(n: int) -> str:
    """``$n`` is ``None`` (outcome jobs) or the version the stored incident must have."""
    return (
        f"(CASE WHEN ${n}::bigint IS NULL THEN true "
        f"ELSE (outcome::jsonb ->> 'version')::bigint = ${n}::bigint END)"
    )


class PostgresOutbox:
    """The ``Outbox`` in ``<schema>.journal_jobs`` on PostgreSQL (asyncpg pool)."""

    def __init__(self, dsn: str, schema: str, *, max_connections: int = 2) -> None:
        """Prepare (no I/O until ``start``).

        Raises:
            StoreError: ``schema`` is not a lower-case SQL identifier.
        """
        self._dsn = dsn
        self._schema = schema
        self._t = f"{quote_schema(schema)}.journal_jobs"
        self._max = max(1, max_connections)
        self.where = f"postgres {redact_dsn(dsn)} schema {schema}"
        self._pool: asyncpg.Pool | None = None

    @staticmethod
    def insert_sql(schema: str) -> str:
        """The writer's statement: ``$1`` job ids, ``$2`` outcome JSON, ``$3`` created,
        ``$4`` next attempt (``created`` plus the hold)."""
        table = f"{quote_schema(schema)}.journal_jobs"
        return (
            f"INSERT INTO {table} (job_id, outcome, created, next_attempt) "  # noqa: S608
            "SELECT j, o, c, n FROM unnest($1::text[], $2::text[], $3::timestamptz[], "
            "$4::timestamptz[]) AS u(j, o, c, n) "
            "ON CONFLICT (job_id) DO NOTHING"
        )

    @staticmethod
    def prune_sql(schema: str) -> str:
        """Retention (the outcome store's ``prune``): one batch of finished jobs
        finished before ``$1``, at most ``$2`` rows (pending jobs are never pruned)."""
        table = f"{quote_schema(schema)}.journal_jobs"
        return (
            f"DELETE FROM {table} WHERE job_id IN (SELECT job_id FROM {table} "  # noqa: S608
            "WHERE state IN ('delivered', 'dead', 'superseded') AND finished < $1 LIMIT $2)"
        )

    @staticmethod
    async def migrate(conn: Any, schema: str, where: str) -> None:
        """Create or upgrade the job table on ``conn`` (the outcome store calls this at start)."""
        await apply_migrations(
            conn, schema=schema, ledger="journal_migrations", migrations=JOBS_MIGRATIONS,
            what="journal outbox", where=where,
        )  # fmt: skip

    async def start(self) -> None:
        """Connect and create the job table when missing. Idempotent.

        Raises:
            StoreError: the server cannot be reached or a migration failed.
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
            async with pg_errors("close", self.where):
                await asyncio.wait_for(pool.close(), timeout=10)

    async def claim(self, limit: int, now: datetime, lease_seconds: float) -> list[JournalJob]:
        now = _aware(now)
        until = now + timedelta(seconds=lease_seconds)
        sql = (
            f"UPDATE {self._t} SET lease_until = $2 WHERE job_id IN ("  # noqa: S608
            f"SELECT job_id FROM {self._t} WHERE state = 'pending' AND next_attempt <= $1 "
            "AND lease_until <= $1 ORDER BY next_attempt, job_id LIMIT $3 "
            f"FOR UPDATE SKIP LOCKED) RETURNING {_PG_JOB_COLUMNS}"
        )
        rows = await self._fetch("claim", sql, now, until, max(0, limit))
        jobs, bad = _decoded(rows, self._job, claimed=True)
        for job_id, reason in bad:  # leased by this claim: nobody else touches them
            await self.dead(job_id, reason, now)
        jobs.sort(key=lambda j: (j.next_attempt_at, j.job_id))
        return jobs

    async def delivered(
        self, job_id: str, entry_id: int | None, now: datetime, *, version: int | None = None
    ) -> None:
        tag = await self._execute(
            "deliver",
            f"UPDATE {self._t} SET state = 'delivered', entry_id = $2, finished = $3, "  # noqa: S608
            "lease_until = 'epoch', last_error = '' WHERE job_id = $1 AND state != 'delivered' "
            f"AND {_pg_same_version(4)}",
            job_id,
            entry_id,
            _aware(now),
            version,
        )
        if int(tag.rsplit(" ", 1)[-1]) == 0 and version is not None and entry_id is not None:
            # A newer version was upserted meanwhile: it stays pending, and updates
            # the entry this attempt made.
            await self._execute(
                "deliver",
                f"UPDATE {self._t} SET entry_id = $2 "  # noqa: S608
                "WHERE job_id = $1 AND entry_id IS NULL",
                job_id,
                entry_id,
            )

    async def retry(
        self, job_id: str, next_attempt_at: datetime, error: str, *, version: int | None = None
    ) -> None:
        await self._execute(
            "retry",
            f"UPDATE {self._t} SET attempts = attempts + 1, next_attempt = $2, "  # noqa: S608
            "last_error = $3, lease_until = 'epoch' WHERE job_id = $1 AND state = 'pending' "
            f"AND {_pg_same_version(4)}",
            job_id,
            _aware(next_attempt_at),
            _clip(error),
            version,
        )

    async def dead(
        self, job_id: str, reason: str, now: datetime, *, version: int | None = None
    ) -> None:
        await self._execute(
            "dead-letter",
            f"UPDATE {self._t} SET state = 'dead', attempts = attempts + 1, "  # noqa: S608
            "last_error = $2, finished = $3, lease_until = 'epoch' "
            f"WHERE job_id = $1 AND state = 'pending' AND {_pg_same_version(4)}",
            job_id,
            _clip(reason),
            _aware(now),
            version,
        )

    async def upsert_incident(self, incident: Incident, now: datetime) -> bool:
        job_id, text = incident_job_row(incident)
        t = self._t
        tag = await self._execute(
            "upsert",
            f"INSERT INTO {t} AS j (job_id, outcome, created, next_attempt) "  # noqa: S608
            "VALUES ($1, $2, $3, $3) ON CONFLICT (job_id) DO UPDATE SET "
            "outcome = EXCLUDED.outcome, "
            "created = CASE WHEN j.state = 'pending' THEN j.created ELSE EXCLUDED.created END, "
            "state = 'pending', next_attempt = CASE WHEN j.state = 'pending' "
            "AND j.entry_id IS NULL AND j.next_attempt > EXCLUDED.next_attempt "
            "THEN j.next_attempt ELSE EXCLUDED.next_attempt END, lease_until = 'epoch', "
            "attempts = 0, last_error = '', finished = NULL "
            "WHERE (j.outcome::jsonb ->> 'version')::bigint "
            "< (EXCLUDED.outcome::jsonb ->> 'version')::bigint",
            job_id,
            text,
            _aware(now),
        )
        return int(tag.rsplit(" ", 1)[-1]) > 0

    async def supersede(self, job_ids: Sequence[str], reason: str, now: datetime) -> int:
        ids = [j for j in dict.fromkeys(job_ids) if not j.startswith(INCIDENT_JOB_PREFIX)]
        if not ids:
            return 0
        tag = await self._execute(
            "supersede",
            f"UPDATE {self._t} SET state = 'superseded', finished = $3, last_error = $2, "  # noqa: S608
            "lease_until = 'epoch' WHERE job_id = ANY($1::text[]) AND state = 'pending'",
            ids,
            _clip(reason),
            _aware(now),
        )
        return int(tag.rsplit(" ", 1)[-1])

    async def jobs(self, state: JobState, limit: int = 100) -> list[JournalJob]:
        rows = await self._fetch(
            "read",
            f"SELECT {_PG_JOB_COLUMNS} FROM {self._t} WHERE state = $1 "  # noqa: S608
            "ORDER BY created, job_id LIMIT $2",
            JobState(state).value,
            max(0, limit),
        )
        return _decoded(rows, self._job, claimed=False)[0]

    async def stats(self) -> OutboxStats:
        rows = await self._fetch(
            "read",
            f"SELECT state, count(*), min(created) FROM {self._t} GROUP BY state",  # noqa: S608
        )
        by_state = {r[0]: (int(r[1]), r[2]) for r in rows}
        return OutboxStats(
            pending=by_state.get("pending", (0, None))[0],
            delivered=by_state.get("delivered", (0, None))[0],
            dead=by_state.get("dead", (0, None))[0],
            oldest_pending_at=by_state.get("pending", (0, None))[1],
            superseded=by_state.get("superseded", (0, None))[0],
        )

    async def retry_dead(self, job_ids: Sequence[str] | None = None) -> int:
        sql = (
            f"UPDATE {self._t} SET state = 'pending', next_attempt = now(), "  # noqa: S608
            "created = now(), lease_until = 'epoch', finished = NULL WHERE state = 'dead'"
        )
        if job_ids is None:
            tag = await self._execute("requeue", sql)
        else:
            tag = await self._execute(
                "requeue", sql + " AND job_id = ANY($1::text[])", list(job_ids)
            )
        return int(tag.rsplit(" ", 1)[-1])

    # ---------------------------------------------------------------- helpers

    @staticmethod
    def _job(row: Any) -> JournalJob:
        return _job(row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7], row[8])

    def _require(self) -> asyncpg.Pool:
        if self._pool is None:
            raise StoreError("journal outbox is not open (call start() first, or it was closed)")
        return self._pool

    async def _fetch(self, action: str, sql: str, *args: Any) -> list[Any]:
        pool = self._require()
        async with pg_errors(action, self.where):
            return list(await pool.fetch(sql, *args))

    async def _execute(self, action: str, sql: str, *args: Any) -> str:
        pool = self._require()
        async with pg_errors(action, self.where):
            tag: str = await pool.execute(sql, *args)
        return tag
