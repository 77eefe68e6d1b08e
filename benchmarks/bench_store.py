"""Outcome stores: operator query latency on a big data set, and batched write throughput.

Goal (issue 6, item 4): with 10 million outcomes in PostgreSQL and 1 million in
SQLite the three operator queries answer in < 100 ms — the last hour of one
device, the last day of one site at one severity, one outcome by id — and each
store writes >= 5,000 outcomes/s batched.

    .venv/bin/python benchmarks/bench_store.py [--pg-rows 10000000] [--sqlite-rows 1000000]
        [--writes 100000] [--batch-size 500] [--repeat 300] [--explain] [--reuse] [--keep]
        [--dsn postgresql://postgres@127.0.0.1:5432/test] [--skip-pg] [--skip-sqlite]

The data set: ``--devices`` devices (default 2,000; the first 5 % "noisy", taking
a fifth of all outcomes) on ``--sites`` sites (50), targets
``device|GigabitEthernet1/0/N``, handlers / kinds / severities skewed like a real
network (70 % info, 20 % warn, 8 % high, 2 % critical; 85 % logged), one
outcome every 30 days / rows, in time order (the order a store is written in),
ending at the build time (the "now" of every query). PostgreSQL: the schema
``--schema`` (``bench_store``) is created by the real store's ``start()``
(its migrations); its indexes (the primary key too) are dropped, the rows loaded
server-side with ``INSERT ... SELECT ... generate_series`` in chunks, the indexes
rebuilt from their saved definitions, then ``VACUUM ANALYZE``. SQLite: a file made by the store's
``start()``, filled with ``executemany`` in one transaction per 100k rows, the
secondary indexes rebuilt likewise (no ``ANALYZE``: the store never runs it).
``--reuse`` uses a data set of the right size kept by an earlier ``--keep`` run
(its ``start()`` applies any newer migration, timed: an upgrade of a big store).

Queries go through the store API (``query(OutcomeQuery(...))``, ``get``) with
random devices, sites and ids, ``--repeat`` times each, limit = the API's default
page size (100), also with the next page through the cursor; p50 / p99 / max in
ms. ``--explain`` prints PostgreSQL's ``EXPLAIN (ANALYZE, BUFFERS)`` of each, with
the custom and the generic plan (asyncpg prepares statements).
The baseline in the same run is one trivial round trip (``SELECT 1`` on the same
pool / in a worker thread on the same file): the floor any query pays.

Writes: ``--writes`` outcomes through ``record()`` (yielding to the loop every
``batch_size`` or ``--yield-every``) + ``flush()``, with ``--batch-size`` (default:
``store.batch_size``'s), into an empty store and into the big one; the baseline is
the backend's fastest raw path for the same rows (``COPY`` via asyncpg,
``executemany`` in one transaction for SQLite) into the same table. Written rows
are deleted again so ``--reuse`` finds the data set unchanged.

The schema and the file are dropped at the end unless ``--keep``. Prints one line
per measurement as it goes, then them all again as a summary.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import logging
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import structlog

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from netcortex.config import HttpConfig, StoreConfig
from netcortex.contracts.events import Severity
from netcortex.contracts.memory import OutcomeCursor, OutcomeQuery, OutcomeStore
from netcortex.contracts.reflex import OutcomeKind, ReflexOutcome
from netcortex.memory.episodic.postgres import PostgresOutcomeStore
from netcortex.memory.episodic.postgres import _build_query as pg_build_query
from netcortex.memory.episodic.sqlite import SqliteOutcomeStore

GOAL_MS = 100.0
GOAL_WRITES = 5000.0
SPAN = timedelta(days=30)
PAGE = HttpConfig().page_size  # what GET /api/v1/outcomes returns without ?limit
NOISY_SHARE = 0.2  # of all outcomes, on the first 5 % of devices
CHUNK = 1_000_000  # PostgreSQL rows per INSERT ... SELECT
DEFAULT_BATCH = StoreConfig().batch_size

HANDLERS = (
    ("link_down", 0.30),
    ("link_up", 0.30),
    ("device_down", 0.05),
    ("device_up", 0.05),
    ("bgp_drop", 0.06),
    ("bgp_established", 0.06),
    ("config_change", 0.12),
    ("security_webhook", 0.05),
    ("device_reboot", 0.01),
)
KINDS = (("logged", 0.85), ("skipped", 0.10), ("suppressed", 0.04), ("errored", 0.01))
SEVERITIES = (("info", 0.70), ("warn", 0.20), ("high", 0.08), ("critical", 0.02))
TRACE = '{"decided_by":"handler","inventory":"device+interface","snapshot_age_s":12.5}'


@dataclass(frozen=True, slots=True)
class Shape:
    """The data set's dimensions (shared by both stores and the write phases)."""

    devices: int
    sites: int

    def device(self, n: int) -> str:
        return f"sw-{n % self.sites:02d}-{n:04d}"

    def site(self, n: int) -> str:
        return f"site-{n % self.sites:02d}"


def _oid(prefix: str, n: int) -> str:
    """The id of row ``n``: 32 hex digits, like ``outcome_id_for`` (md5, reproducible in SQL)."""
    return hashlib.md5(f"{prefix}{n}".encode(), usedforsecurity=False).hexdigest()


def _pick(rng: random.Random, table: Sequence[tuple[str, float]]) -> str:
    r = rng.random()
    for value, weight in table:
        if r < weight:
            return value
        r -= weight
    return table[-1][0]


def _case(var: str, table: Sequence[tuple[str, float]]) -> str:
    """A SQL ``CASE`` picking a value of ``table`` by the uniform random ``var``."""
    parts, edge = [], 0.0
    for value, weight in table[:-1]:
        edge += weight
        parts.append(f"WHEN {var} < {edge:.4f} THEN '{value}'")
    return f"CASE {' '.join(parts)} ELSE '{table[-1][0]}' END"


def make_outcome(
    rng: random.Random, shape: Shape, oid: str, recorded_at: datetime
) -> ReflexOutcome:
    """One realistic outcome (the Python twin of the SQL generator)."""
    noisy = max(1, shape.devices // 20)
    n = rng.randrange(noisy) if rng.random() < NOISY_SHARE else rng.randrange(shape.devices)
    device = shape.device(n)
    port = rng.randint(1, 48)
    handler = _pick(rng, HANDLERS)
    target = f"{device}|GigabitEthernet1/0/{port}"
    return ReflexOutcome(
        outcome_id=oid,
        handler_id=handler,
        event_id="ev" + oid[:30],
        subject=f"sensory.snmp.{handler}.{device}",
        kind=OutcomeKind(_pick(rng, KINDS)),
        severity=Severity(_pick(rng, SEVERITIES)),
        target=target,
        device=device,
        site=shape.site(n),
        summary=f"{handler} on {target}",
        fact_key=f"{handler}|{target}",
        occurred_at=recorded_at - timedelta(milliseconds=3),
        recorded_at=recorded_at,
        details={"ifIndex": port, "ifOperStatus": "down", "agent": f"10.{n // 250}.{n % 250}.1"},
        role="switch",
        trace={"decided_by": "handler", "inventory": "device+interface", "snapshot_age_s": 12.5},
    )


def _pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@dataclass(slots=True)
class Timing:
    name: str
    ms: list[float]
    rows: list[int]

    def line(self, store: str) -> str:
        flag = "ok" if _pct(self.ms, 0.99) < GOAL_MS else "MISSES 100 ms"
        return (
            f"{store:<8} {self.name:<34} p50 {statistics.median(self.ms):7.2f} ms  "
            f"p99 {_pct(self.ms, 0.99):7.2f} ms  max {max(self.ms):7.2f} ms  "
            f"rows/answer {statistics.median(self.rows):6.0f}  {flag}"
        )


async def _timed(name: str, repeat: int, call: Callable[[int], Awaitable[int]]) -> Timing:
    ms: list[float] = []
    rows: list[int] = []
    for i in range(repeat):
        started = time.perf_counter()
        rows.append(await call(i))
        ms.append((time.perf_counter() - started) * 1000)
    return Timing(name, ms, rows)


async def measure_queries(
    store: OutcomeStore,
    shape: Shape,
    anchor: datetime,
    ids: Callable[[random.Random], str],
    repeat: int,
    floor: Callable[[], Awaitable[object]],
) -> list[Timing]:
    """The operator queries through the store API, random arguments, ``repeat`` each."""
    rng = random.Random(7)
    hour, day = anchor - timedelta(hours=1), anchor - timedelta(days=1)
    devices = [shape.device(rng.randrange(shape.devices)) for _ in range(repeat)]
    sites = [shape.site(rng.randrange(shape.sites)) for _ in range(repeat)]
    wanted = [ids(rng) for _ in range(repeat)]
    severe = [Severity.WARN, Severity.HIGH, Severity.CRITICAL]

    async def one_page(q: OutcomeQuery, second: bool) -> int:
        page = await store.query(q)
        if second and len(page) == q.limit:
            q = OutcomeQuery(
                device=q.device, site=q.site, severity=q.severity, since=q.since,
                before=OutcomeCursor.after(page[-1]), limit=q.limit,
            )  # fmt: skip
            page = await store.query(q)
        return len(page)

    def device_hour(i: int) -> OutcomeQuery:
        return OutcomeQuery(device=devices[i], since=hour, limit=PAGE)

    def site_day(i: int, sev: Sequence[Severity]) -> OutcomeQuery:
        return OutcomeQuery(site=sites[i], severity=sev, since=day, limit=PAGE)

    async def by_id(i: int) -> int:
        return int(await store.get(wanted[i]) is not None)

    async def nothing(_: int) -> int:
        await floor()
        return 0

    # one untimed pass warms the connections and the caches
    for i in range(min(20, repeat)):
        await store.query(device_hour(i))
    return [
        await _timed("round trip (baseline, SELECT 1)", repeat, nothing),
        await _timed("device, last hour", repeat, lambda i: one_page(device_hour(i), False)),
        await _timed(
            "device, last day",
            repeat,
            lambda i: one_page(OutcomeQuery(device=devices[i], since=day, limit=PAGE), False),
        ),
        await _timed(
            "site + high, last day",
            repeat,
            lambda i: one_page(site_day(i, [Severity.HIGH]), False),
        ),
        await _timed(
            "site + high, last day, pages 1+2",
            repeat,
            lambda i: one_page(site_day(i, [Severity.HIGH]), True),
        ),
        await _timed(
            "site + critical, last day",
            repeat,
            lambda i: one_page(site_day(i, [Severity.CRITICAL]), False),
        ),
        await _timed(
            "site + warn|high|crit, last day",
            repeat,
            lambda i: one_page(site_day(i, severe), False),
        ),
        await _timed(
            "site + warn|high|crit, pages 1+2",
            repeat,
            lambda i: one_page(site_day(i, severe), True),
        ),
        await _timed("get by id", repeat, by_id),
    ]


def write_set(shape: Shape, prefix: str, count: int, anchor: datetime) -> list[ReflexOutcome]:
    rng = random.Random(prefix)
    return [
        make_outcome(rng, shape, _oid(prefix, i), anchor + timedelta(microseconds=100 * i))
        for i in range(count)
    ]


async def store_writes(store: OutcomeStore, outcomes: list[ReflexOutcome], batch: int) -> float:
    """Outcomes/s through ``record`` (yielding every ``batch``) + ``flush``."""
    started = time.perf_counter()
    for i, outcome in enumerate(outcomes, 1):
        await store.record(outcome)
        if i % batch == 0:
            await asyncio.sleep(0)
    await store.flush()
    return len(outcomes) / (time.perf_counter() - started)


def _pg_record(o: ReflexOutcome) -> tuple[Any, ...]:
    return (
        o.outcome_id, o.handler_id, o.event_id, o.subject, o.kind.value, o.severity.value,
        o.target, o.device, o.site, o.summary, o.diagnostic, o.fact_key, o.occurred_at,
        o.recorded_at, '{"ifIndex":1}', o.schema_version, o.role, TRACE,
    )  # fmt: skip


def _sqlite_record(o: ReflexOutcome) -> tuple[Any, ...]:
    us = timedelta(microseconds=1)
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    return (
        *_pg_record(o)[:12], (o.occurred_at - epoch) // us, (o.recorded_at - epoch) // us,
        '{"ifIndex":1}', o.schema_version, o.role, TRACE,
    )  # fmt: skip


PG_COLUMNS = [
    "outcome_id", "handler_id", "event_id", "subject", "kind", "severity", "target",
    "device", "site", "summary", "diagnostic", "fact_key", "occurred_at", "recorded_at",
    "details", "schema_version", "role", "trace",
]  # fmt: skip


# ------------------------------------------------------------------------ PostgreSQL


def _pg_insert_sql(table: str, shape: Shape, total: int, lo: int, hi: int) -> str:
    """``INSERT ... SELECT`` of rows ``lo..hi`` of ``total``; ``$1`` is the anchor time."""
    noisy = max(1, shape.devices // 20)
    span_us = SPAN // timedelta(microseconds=1)
    dev = f"sw-' || lpad((d % {shape.sites})::text, 2, '0') || '-' || lpad(d::text, 4, '0') || '"
    return f"""
    INSERT INTO {table} ({", ".join(PG_COLUMNS)})
    SELECT md5('nc' || g), handler, 'ev' || left(md5('nc' || g), 30),
           'sensory.snmp.' || handler || '.{dev}', {_case("rk", KINDS)},
           {_case("rs", SEVERITIES)}, '{dev}|GigabitEthernet1/0/' || port,
           '{dev}', 'site-' || lpad((d % {shape.sites})::text, 2, '0'),
           handler || ' on {dev}|GigabitEthernet1/0/' || port, '',
           handler || '|{dev}|GigabitEthernet1/0/' || port,
           at - interval '3 ms', at,
           '{{"ifIndex":' || port || ',"ifOperStatus":"down","agent":"10.' || (d / 250)
             || '.' || (d % 250) || '.1"}}',
           1, 'switch', '{TRACE}'
    FROM (
        SELECT g, {_case("rh", HANDLERS)} AS handler, rk, rs, port, d,
               $1::timestamptz - make_interval(secs => ({total} - g)::float8 * {span_us}
                                              / {total} / 1e6) AS at
        FROM (
            SELECT g, random() AS rh, random() AS rk, random() AS rs,
                   1 + (random() * 47)::int AS port,
                   CASE WHEN random() < {NOISY_SHARE} THEN (random() * {noisy - 1})::int
                        ELSE (random() * {shape.devices - 1})::int END AS d
            FROM generate_series({lo}, {hi - 1}) AS g
        ) r
    ) x
    """


async def pg_build(args: argparse.Namespace, shape: Shape) -> datetime:
    """Create (or reuse) the big schema; return its anchor ("now" of the data set)."""
    config = _pg_config(args, args.schema)
    table = f'"{args.schema}".outcomes'
    conn = await asyncpg.connect(args.dsn)
    try:
        meta = await conn.fetchval(
            "SELECT to_regclass($1) IS NOT NULL", f'"{args.schema}".bench_meta'
        )
        if args.reuse and meta:
            rows, anchor = await conn.fetchrow(
                f'SELECT rows, anchor FROM "{args.schema}".bench_meta'
            )
            if rows == args.pg_rows:
                started = time.perf_counter()
                async with PostgresOutcomeStore(config):  # applies any newer migration
                    pass
                took = time.perf_counter() - started
                print(f"postgres reusing {rows:,} rows in schema {args.schema} "
                      f"(start() incl. migrations: {took:.1f} s)")  # fmt: skip
                await conn.execute(f"ANALYZE {table}")
                return anchor  # type: ignore[no-any-return]
            print(f"postgres schema {args.schema} holds {rows:,} rows, want {args.pg_rows:,}")
        await conn.execute(f'DROP SCHEMA IF EXISTS "{args.schema}" CASCADE')
        async with PostgresOutcomeStore(config):  # the real migrations make the schema
            pass
        defs = await conn.fetch(
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = $1 "
            "AND tablename = 'outcomes' AND indexname <> 'outcomes_pkey'",
            args.schema,
        )
        for d in defs:
            await conn.execute(f'DROP INDEX "{args.schema}"."{d["indexname"]}"')
        # the primary key too (random ids: the costliest index to fill row by row)
        pkey = await conn.fetchval(
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE conrelid = $1::regclass AND conname = 'outcomes_pkey'",
            table,
        )
        await conn.execute(f"ALTER TABLE {table} DROP CONSTRAINT outcomes_pkey")
        anchor = datetime.now(UTC).replace(microsecond=0)
        started = time.perf_counter()
        for lo in range(0, args.pg_rows, CHUNK):
            hi = min(lo + CHUNK, args.pg_rows)
            await conn.execute(_pg_insert_sql(table, shape, args.pg_rows, lo, hi), anchor)
            rate = hi / (time.perf_counter() - started)
            print(f"  postgres loaded {hi:>11,} rows  {rate:>9,.0f} rows/s", flush=True)
        loaded = time.perf_counter() - started
        await conn.execute("SET maintenance_work_mem = '1GB'")
        t = time.perf_counter()
        await conn.execute(f"ALTER TABLE {table} ADD CONSTRAINT outcomes_pkey {pkey}")
        print(f"  postgres index {'outcomes_pkey':<24} {time.perf_counter() - t:6.1f} s")
        for d in defs:
            t = time.perf_counter()
            await conn.execute(d["indexdef"])
            print(f"  postgres index {d['indexname']:<24} {time.perf_counter() - t:6.1f} s")
        await conn.execute(f"VACUUM ANALYZE {table}")
        total = time.perf_counter() - started
        await conn.execute(
            f'CREATE TABLE "{args.schema}".bench_meta (rows bigint, anchor timestamptz)'
        )
        await conn.execute(
            f'INSERT INTO "{args.schema}".bench_meta VALUES ($1, $2)',
            args.pg_rows, anchor,
        )  # fmt: skip
        size = await conn.fetchval(
            "SELECT pg_size_pretty(pg_total_relation_size($1::regclass))", table
        )
        print(
            f"postgres built {args.pg_rows:,} rows: load {loaded:.1f} s "
            f"({args.pg_rows / loaded:,.0f} rows/s), + indexes + VACUUM ANALYZE = {total:.1f} s "
            f"({args.pg_rows / total:,.0f} rows/s overall), {size} with indexes"
        )
        return anchor
    finally:
        await conn.close()


def _pg_config(args: argparse.Namespace, schema: str) -> StoreConfig:
    return StoreConfig(
        backend="postgres",
        postgres_dsn=args.dsn,
        postgres_schema=schema,
        batch_size=args.batch_size,
        retention_days=0,
    )


async def pg_explain(args: argparse.Namespace, shape: Shape, anchor: datetime) -> None:
    table = f'"{args.schema}".outcomes'
    hour, day = anchor - timedelta(hours=1), anchor - timedelta(days=1)
    queries = {
        "device, last hour": OutcomeQuery(device=shape.device(1234 % shape.devices), since=hour),
        "site + high, last day": OutcomeQuery(
            site=shape.site(7), severity=[Severity.HIGH], since=day
        ),
        "site + critical, last day": OutcomeQuery(
            site=shape.site(7), severity=[Severity.CRITICAL], since=day
        ),
        "site + warn|high|crit, last day": OutcomeQuery(
            site=shape.site(7),
            severity=[Severity.WARN, Severity.HIGH, Severity.CRITICAL],
            since=day,
        ),
    }
    conn = await asyncpg.connect(args.dsn)
    try:
        for name, q in queries.items():
            built = pg_build_query(table, q)
            assert built is not None
            sql, params = built
            # asyncpg prepares the store's statements, and after five runs PostgreSQL may
            # switch to a generic plan (no parameter values): explain that one too
            for mode in ("auto", "force_generic_plan"):
                await conn.execute(f"SET plan_cache_mode = {mode}")
                plan = await conn.fetch(f"EXPLAIN (ANALYZE, BUFFERS) {sql}", *params)
                print(f"--- EXPLAIN (ANALYZE, BUFFERS) {name}, plan_cache_mode={mode}")
                for row in plan:
                    print("   ", row[0])
        await conn.execute("RESET plan_cache_mode")
        plan = await conn.fetch(
            f"EXPLAIN (ANALYZE, BUFFERS) SELECT * FROM {table} WHERE outcome_id = $1",
            _oid("nc", 12345),
        )
        print("--- EXPLAIN (ANALYZE, BUFFERS) get by id")
        for row in plan:
            print("   ", row[0])
    finally:
        await conn.close()


async def pg_writes(
    args: argparse.Namespace, shape: Shape, schema: str, anchor: datetime, label: str
) -> tuple[float, float]:
    """(store outcomes/s, COPY rows/s) into ``schema``; the written rows are deleted after."""
    ours = write_set(shape, f"w-{label}-", args.writes, anchor)
    raw = write_set(shape, f"c-{label}-", args.writes, anchor)
    table = f'"{schema}".outcomes'
    config = _pg_config(args, schema)
    conn = await asyncpg.connect(args.dsn)
    try:
        async with PostgresOutcomeStore(config) as store:
            rate = await store_writes(store, ours, args.yield_every or config.batch_size)
        records = [_pg_record(o) for o in raw]
        started = time.perf_counter()
        await conn.copy_records_to_table(
            "outcomes", schema_name=schema, columns=PG_COLUMNS, records=records
        )
        base = len(records) / (time.perf_counter() - started)
        await conn.execute(
            f"DELETE FROM {table} WHERE outcome_id = ANY($1::text[])",
            [o.outcome_id for o in ours + raw],
        )
        if args.keep:  # leave no dead rows behind for the next --reuse
            await conn.execute(f"VACUUM {table}")
    finally:
        await conn.close()
    return rate, base


async def pg_phase(args: argparse.Namespace, shape: Shape) -> list[str]:
    out: list[str] = []
    try:
        conn = await asyncpg.connect(args.dsn)
        await conn.close()
    except (OSError, asyncpg.PostgresError) as exc:
        print(f"postgres skipped: {args.dsn} does not answer ({exc})")
        return out
    empty = f"{args.schema}_w"
    conn = await asyncpg.connect(args.dsn)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{empty}" CASCADE')
        rate, base = await pg_writes(args, shape, empty, datetime.now(UTC), "empty")
        await conn.execute(f'DROP SCHEMA IF EXISTS "{empty}" CASCADE')
    finally:
        await conn.close()
    out.append(_write_line("postgres", "empty table", args.writes, rate, base, "COPY"))
    print(out[-1], flush=True)
    anchor = await pg_build(args, shape)
    try:
        if args.explain:
            await pg_explain(args, shape, anchor)
        async with PostgresOutcomeStore(_pg_config(args, args.schema)) as store:
            pool = store._pool
            assert pool is not None

            async def floor() -> object:
                return await pool.fetchval("SELECT 1")

            def some_id(rng: random.Random) -> str:
                return _oid("nc", rng.randrange(args.pg_rows))

            for t in await measure_queries(store, shape, anchor, some_id, args.repeat, floor):
                out.append(t.line("postgres"))
                print(out[-1], flush=True)
        rate, base = await pg_writes(args, shape, args.schema, anchor, "full")
        out.append(
            _write_line("postgres", _rows_label(args.pg_rows), args.writes, rate, base, "COPY")
        )
        print(out[-1], flush=True)
    finally:
        if not args.keep:
            conn = await asyncpg.connect(args.dsn)
            try:
                await conn.execute(f'DROP SCHEMA IF EXISTS "{args.schema}" CASCADE')
            finally:
                await conn.close()
            print(f"postgres schema {args.schema} dropped")
    return out


def _rows_label(rows: int) -> str:
    return f"{rows // 1_000_000}M rows" if rows >= 1_000_000 else f"{rows:,} rows"


def _write_line(store: str, table: str, n: int, rate: float, base: float, how: str) -> str:
    flag = "ok" if rate >= GOAL_WRITES else "MISSES 5,000/s"
    return (
        f"{store:<8} write {n:,} into {table:<12} record+flush {rate:>9,.0f} outcomes/s  "
        f"raw {how} {base:>9,.0f} rows/s  ratio {rate / base:.2f}  {flag}"
    )


# ------------------------------------------------------------------------ SQLite


def _sqlite_config(path: Path, batch_size: int = DEFAULT_BATCH) -> StoreConfig:
    return StoreConfig(backend="sqlite", sqlite_path=path, batch_size=batch_size, retention_days=0)


def _sqlite_meta(path: Path) -> tuple[int, int] | None:
    """``(rows, anchor_us)`` of a data set kept by an earlier run, or ``None``."""
    if not path.is_file():
        return None
    conn = sqlite3.connect(path)
    try:
        if not conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'bench_meta'").fetchone():
            return None
        rows, anchor_us = conn.execute("SELECT rows, anchor_us FROM bench_meta").fetchone()
        return int(rows), int(anchor_us)
    finally:
        conn.close()


def _sqlite_fill(path: Path, shape: Shape, n: int, anchor: datetime) -> None:
    """Load ``n`` rows into the store's (empty) file: indexes dropped, rows, indexes rebuilt."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        defs = conn.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'index' "
            "AND tbl_name = 'outcomes' AND sql IS NOT NULL"
        ).fetchall()
        for name, _ in defs:
            conn.execute(f"DROP INDEX {name}")
        rng = random.Random(1)
        step = SPAN / n
        insert = f"INSERT INTO outcomes VALUES ({', '.join('?' * 18)})"
        started = time.perf_counter()
        for lo in range(0, n, 100_000):
            hi = min(lo + 100_000, n)
            rows = [
                _sqlite_full(make_outcome(rng, shape, _oid("nc", g), anchor - step * (n - g)))
                for g in range(lo, hi)
            ]
            conn.execute("BEGIN")
            conn.executemany(insert, rows)
            conn.execute("COMMIT")
        loaded = time.perf_counter() - started
        for name, sql in defs:
            t = time.perf_counter()
            conn.execute(sql)
            print(f"  sqlite   index {name:<24} {time.perf_counter() - t:6.1f} s")
        total = time.perf_counter() - started
        conn.execute("CREATE TABLE bench_meta (rows INTEGER, anchor_us INTEGER)")
        conn.execute(
            "INSERT INTO bench_meta VALUES (?, ?)",
            (n, (anchor - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)),
        )
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    size = path.stat().st_size / 2**20
    print(
        f"sqlite   built {n:,} rows: generate + load {loaded:.1f} s ({n / loaded:,.0f} rows/s), "
        f"+ indexes = {total:.1f} s ({n / total:,.0f} rows/s overall), {size:,.0f} MiB"
    )


def _sqlite_delete(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


async def sqlite_build(args: argparse.Namespace, shape: Shape, path: Path) -> datetime:
    """Create (or reuse) the big file; return its anchor ("now" of the data set)."""
    meta = _sqlite_meta(path) if args.reuse else None
    if meta is not None and meta[0] == args.sqlite_rows:
        started = time.perf_counter()
        async with SqliteOutcomeStore(_sqlite_config(path)):  # applies a newer version
            pass
        took = time.perf_counter() - started
        print(f"sqlite   reusing {meta[0]:,} rows in {path} (start(): {took:.1f} s)")
        return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=meta[1])
    _sqlite_delete(path)
    async with SqliteOutcomeStore(_sqlite_config(path)):  # the real schema
        pass
    anchor = datetime.now(UTC).replace(microsecond=0)
    _sqlite_fill(path, shape, args.sqlite_rows, anchor)
    return anchor


def _sqlite_full(o: ReflexOutcome) -> tuple[Any, ...]:
    row = list(_sqlite_record(o))
    row[14] = '{"ifIndex":%d,"ifOperStatus":"down"}' % o.details["ifIndex"]  # noqa: UP031
    return tuple(row)


async def sqlite_writes(
    args: argparse.Namespace, shape: Shape, path: Path, anchor: datetime, label: str
) -> tuple[float, float]:
    ours = write_set(shape, f"w-{label}-", args.writes, anchor)
    raw = write_set(shape, f"c-{label}-", args.writes, anchor)
    config = _sqlite_config(path, args.batch_size)
    async with SqliteOutcomeStore(config) as store:
        rate = await store_writes(store, ours, args.yield_every or config.batch_size)
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        records = [_sqlite_record(o) for o in raw]
        insert = f"INSERT INTO outcomes VALUES ({', '.join('?' * 18)})"
        started = time.perf_counter()
        conn.execute("BEGIN")
        conn.executemany(insert, records)
        conn.execute("COMMIT")
        base = len(records) / (time.perf_counter() - started)
        conn.execute("BEGIN")
        conn.executemany(
            "DELETE FROM outcomes WHERE outcome_id = ?", [(o.outcome_id,) for o in ours + raw]
        )
        conn.execute("COMMIT")
    finally:
        conn.close()
    return rate, base


async def sqlite_phase(args: argparse.Namespace, shape: Shape) -> list[str]:
    out: list[str] = []
    with tempfile.TemporaryDirectory(prefix="bench_store_") as tmp:
        rate, base = await sqlite_writes(
            args, shape, Path(tmp) / "empty.db", datetime.now(UTC), "empty"
        )
    out.append(_write_line("sqlite", "empty file", args.writes, rate, base, "executemany"))
    print(out[-1], flush=True)
    path = Path(args.sqlite_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        anchor = await sqlite_build(args, shape, path)
        async with SqliteOutcomeStore(_sqlite_config(path), read_only=True) as store:
            reader = sqlite3.connect(path, check_same_thread=False)

            async def floor() -> object:
                return await asyncio.to_thread(lambda: reader.execute("SELECT 1").fetchall())

            def some_id(rng: random.Random) -> str:
                return _oid("nc", rng.randrange(args.sqlite_rows))

            try:
                for t in await measure_queries(store, shape, anchor, some_id, args.repeat, floor):
                    out.append(t.line("sqlite"))
                    print(out[-1], flush=True)
            finally:
                reader.close()
        rate, base = await sqlite_writes(args, shape, path, anchor, "full")
        out.append(
            _write_line(
                "sqlite", _rows_label(args.sqlite_rows), args.writes, rate, base, "executemany"
            )
        )
        print(out[-1], flush=True)
    finally:
        if not args.keep:
            _sqlite_delete(path)
            print(f"sqlite   {path} deleted")
    return out


async def main(args: argparse.Namespace) -> None:
    shape = Shape(args.devices, args.sites)
    lines: list[str] = []
    if not args.skip_sqlite:
        lines += await sqlite_phase(args, shape)
    if not args.skip_pg:
        lines += await pg_phase(args, shape)
    print("\nsummary (goal: p99 < 100 ms per query, >= 5,000 outcomes/s written):")
    for line in lines:
        print(line)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pg-rows", type=int, default=200_000)
    parser.add_argument("--sqlite-rows", type=int, default=100_000)
    parser.add_argument("--writes", type=int, default=20_000, help="outcomes per write phase")
    parser.add_argument("--repeat", type=int, default=200, help="calls per query")
    parser.add_argument(
        "--batch-size", type=int, default=DEFAULT_BATCH, help="store.batch_size for writes"
    )
    parser.add_argument(
        "--yield-every",
        type=int,
        default=0,
        help="writes: yield to the loop every N records (default: batch size; 1 = a paced runner)",
    )
    parser.add_argument("--devices", type=int, default=2000)
    parser.add_argument("--sites", type=int, default=50)
    parser.add_argument("--dsn", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--schema", default="bench_store")
    parser.add_argument(
        "--sqlite-path", default=str(Path(tempfile.gettempdir()) / "netcortex_bench_store.db")
    )
    parser.add_argument("--explain", action="store_true", help="print PostgreSQL plans")
    parser.add_argument("--reuse", action="store_true", help="reuse a kept data set")
    parser.add_argument("--keep", action="store_true", help="keep the data sets")
    parser.add_argument("--skip-pg", action="store_true")
    parser.add_argument("--skip-sqlite", action="store_true")
    parser.add_argument("--no-uvloop", action="store_true")
    ns = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    print(
        f"outcome store benchmark: postgres {ns.pg_rows:,} rows, sqlite {ns.sqlite_rows:,} rows, "
        f"{ns.devices} devices / {ns.sites} sites, page {PAGE}, writes {ns.writes:,} "
        f"(batch_size {ns.batch_size}), "
        f"repeat {ns.repeat}, loop {'asyncio' if ns.no_uvloop else 'uvloop'}"
    )
    if ns.no_uvloop:
        asyncio.run(main(ns))
    else:
        import uvloop

        uvloop.run(main(ns))
