"""The PostgreSQL stores across a real server restart (issue 10, item 3, third bullet).

A worker's outcome store (with its journal jobs), journal outbox, incident store
and poll state each keep an asyncpg pool. When PostgreSQL restarts, the open
connections die (``terminating connection due to administrator command``) and
new ones are refused until it is back. Each store must then fail the operation
with ``StoreError`` (never another exception, never a hang), and work again as
soon as the server answers — with the same objects, no restart of netcortex.
The outcome store also holds the rows of batches that failed that way and
commits them once the server is back, so ``flush`` only succeeds when they are
stored.

The server is this module's own ``tests.pg_server.RestartablePostgres`` (TCP on
a free port, fast shutdown like ``systemctl restart``); the session's shared
one is never stopped. ``stop``/``start`` run in a thread so the event loop goes
on (the pools see their connections close as they would in production).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from pydantic import SecretStr
from structlog.testing import capture_logs

from netcortex.config import StoreConfig
from netcortex.contracts.events import Severity
from netcortex.contracts.incidents import Incident, IncidentState
from netcortex.contracts.reflex import ReflexOutcome
from netcortex.errors import StoreError
from netcortex.memory.episodic.incidents import PostgresIncidentStore
from netcortex.memory.episodic.outbox import JournalHook, PostgresOutbox
from netcortex.memory.episodic.postgres import PostgresOutcomeStore
from netcortex.metrics import Registry
from netcortex.pg import _PoolFloorWarnings, is_transient, pg_errors
from netcortex.sensory.poll.diff import DeviceSnapshot
from netcortex.sensory.poll.state_postgres import PostgresPollState
from netcortex.testing import make_event
from tests.pg_server import RestartablePostgres

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("pg-restart")]

T0 = datetime(2025, 6, 1, 10, 0, tzinfo=UTC)
#: Longest any store may take to work again once the server is back (seconds).
RECOVERY = 15.0


@pytest.fixture(scope="module")
def server() -> Iterator[RestartablePostgres]:
    """This module's own PostgreSQL (deleted after)."""
    with RestartablePostgres() as pg:
        yield pg


@pytest.fixture
def pg(server: RestartablePostgres) -> Iterator[RestartablePostgres]:
    """The server, running at the start and the end of every test (a failed test may
    have left it stopped)."""
    if not server.running:
        server.start()
    yield server
    if not server.running:
        server.start()


@pytest.fixture
def schema() -> str:
    return "t_" + uuid.uuid4().hex[:16]


async def _stop(pg: RestartablePostgres) -> None:
    await asyncio.to_thread(pg.stop)


async def _start(pg: RestartablePostgres) -> None:
    await asyncio.to_thread(pg.start)


def _outcome(n: int) -> ReflexOutcome:
    event = make_event("link_down", device=f"sw{n}", interface=f"Gi{n}")
    return ReflexOutcome.for_event("link_down", event, severity=Severity.HIGH, summary=f"o{n}")


def _incident(n: int, version: int = 1) -> Incident:
    return Incident(
        incident_id=f"inc-{n:04d}",
        rule="cable_pair",
        root=f"cable:sw{n}|Gi1/0/1~core{n}|Te1/1/1",
        state=IncidentState.OPEN,
        severity=Severity.HIGH,
        summary=f"cable sw{n} down",
        members=(f"core{n}|Te1/1/1", f"sw{n}|Gi1/0/1"),
        evidence=(f"o-{n}-a",),
        opened_at=T0,
        updated_at=T0 + timedelta(seconds=version),
        site="ams1",
        version=version,
    )


async def _until_ok(call: Callable[[], Awaitable[Any]], what: str) -> Any:
    """``await call()`` until it stops raising ``StoreError`` (the pool reconnecting);
    fail after ``RECOVERY`` seconds. Anything but ``StoreError`` propagates."""
    loop = asyncio.get_running_loop()
    until = loop.time() + RECOVERY
    while True:
        try:
            return await call()
        except StoreError as exc:
            if loop.time() > until:
                pytest.fail(f"{what}: still failing {RECOVERY} s after the restart: {exc}")
            await asyncio.sleep(0.05)


async def _rows(dsn: str, sql: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        return list(await conn.fetch(sql))
    finally:
        await conn.close()


def _failures(metrics: Registry) -> float:
    counter = metrics.counter("netcortex_store_write_failures_total", "", ("backend",))
    return counter.value(backend="postgres")


@pytest.fixture
async def outcome_store(
    pg: RestartablePostgres, schema: str
) -> AsyncIterator[tuple[PostgresOutcomeStore, Registry, list[int]]]:
    """An outcome store writing a journal job per outcome, its metrics, and the job
    counts its ``committed`` hook saw."""
    metrics = Registry()
    committed: list[int] = []
    store = PostgresOutcomeStore(
        StoreConfig(backend="postgres", postgres_dsn=SecretStr(pg.dsn), postgres_schema=schema),
        metrics,
        journal=JournalHook(wants=lambda _o: True, committed=committed.append),
        warn_interval=3600,
    )
    await store.start()
    try:
        yield store, metrics, committed
    finally:
        await store.close()


class TestOutcomeStore:
    async def test_flush_fails_while_down_and_the_held_rows_land_after(
        self,
        pg: RestartablePostgres,
        schema: str,
        outcome_store: tuple[PostgresOutcomeStore, Registry, list[int]],
    ) -> None:
        """Down: ``record`` keeps accepting, ``flush`` raises ``StoreError`` (counted,
        ``store_write_failed`` logged once for the streak), ``ping`` fails. Back up:
        with the same store, ``flush`` succeeds and every outcome recorded while down
        is stored with its journal job — without recording it again — and one
        ``store_write_recovered`` is logged."""
        store, metrics, committed = outcome_store
        for n in range(10):
            await store.record(_outcome(n))
        await store.flush()
        with capture_logs() as logs:
            await _stop(pg)
            for n in range(10, 40):
                await store.record(_outcome(n))  # accepted while down
            for _ in range(3):
                with pytest.raises(StoreError, match="postgres write failed"):
                    await store.flush()
            with pytest.raises(StoreError):
                await store.ping()
            assert _failures(metrics) >= 3
            await _start(pg)
            await _until_ok(store.flush, "outcome store flush")
            await _until_ok(store.ping, "outcome store ping")
        rows = await _rows(pg.dsn, f'SELECT outcome_id FROM "{schema}".outcomes')
        assert len(rows) == 40
        jobs = await _rows(pg.dsn, f'SELECT job_id FROM "{schema}".journal_jobs')
        assert {r["job_id"] for r in jobs} == {r["outcome_id"] for r in rows}
        assert sum(committed) == 40  # the delivery worker heard of every job
        events = [e["event"] for e in logs]
        assert events.count("store_write_failed") == 1  # rate-limited: once per streak
        assert events.count("store_write_recovered") == 1
        failed = next(e for e in logs if e["event"] == "store_write_failed")
        assert failed["transient"] is True

    async def test_recording_again_after_a_failed_flush_stores_each_once(
        self,
        pg: RestartablePostgres,
        schema: str,
        outcome_store: tuple[PostgresOutcomeStore, Registry, list[int]],
    ) -> None:
        """What the reflex runner does: after a failed flush it records the same
        outcomes again and flushes until that succeeds → each outcome once."""
        store, _, _ = outcome_store
        await _stop(pg)
        held = [_outcome(n) for n in range(25)]

        async def record_and_flush() -> None:
            for outcome in held:
                await store.record(outcome)
            await store.flush()

        with pytest.raises(StoreError):
            await record_and_flush()
        with pytest.raises(StoreError):
            await record_and_flush()
        await _start(pg)
        await _until_ok(record_and_flush, "record again and flush")
        rows = await _rows(
            pg.dsn, f'SELECT outcome_id, count(*) AS n FROM "{schema}".outcomes GROUP BY 1'
        )
        assert len(rows) == 25
        assert all(r["n"] == 1 for r in rows)

    async def test_a_batch_failed_under_one_flush_fails_the_others_until_stored(
        self,
        pg: RestartablePostgres,
        schema: str,
        outcome_store: tuple[PostgresOutcomeStore, Registry, list[int]],
    ) -> None:
        """Two callers share the store: A's outcome goes out with the flush interval
        and fails; B's flush reports it. A's own flush must not then succeed before
        A's outcome is stored (it would ack a message whose outcome is lost)."""
        store, metrics, _ = outcome_store
        await _stop(pg)
        mine = _outcome(1)
        await store.record(mine)  # caller A; written by the flush_interval timer
        loop = asyncio.get_running_loop()
        until = loop.time() + 10
        while _failures(metrics) < 1:
            assert loop.time() < until, "the timer's batch never failed"
            await asyncio.sleep(0.01)
        with pytest.raises(StoreError):
            await store.flush()  # caller B sees the failure
        with pytest.raises(StoreError):
            await store.flush()  # caller A too: its outcome is not stored
        await _start(pg)
        await _until_ok(store.flush, "flush after the restart")
        rows = await _rows(pg.dsn, f'SELECT outcome_id FROM "{schema}".outcomes')
        assert [r["outcome_id"] for r in rows] == [mine.outcome_id]

    async def test_a_refused_row_costs_only_itself(
        self, pg: RestartablePostgres, schema: str
    ) -> None:
        """A batch refused for one row's data (text that cannot be encoded: a lone
        surrogate) is not transient and not held: its rows are written one by one, the
        good ones stored, the bad one counted and logged, and the flush succeeds (the
        runner acks: retrying would refuse it again). A lone bad row's flush raises."""
        metrics = Registry()
        store = PostgresOutcomeStore(
            StoreConfig(backend="postgres", postgres_dsn=SecretStr(pg.dsn), postgres_schema=schema),
            metrics,
            warn_interval=3600,
        )
        await store.start()
        try:
            await self._refused_row_costs_only_itself(pg, schema, store, metrics)
        finally:
            await store.close()

    async def _refused_row_costs_only_itself(
        self, pg: RestartablePostgres, schema: str, store: PostgresOutcomeStore, metrics: Registry
    ) -> None:
        good, bad, other = _outcome(1), replace(_outcome(2), summary="bad \ud800"), _outcome(3)
        with capture_logs() as logs:
            for outcome in (good, bad, other):
                await store.record(outcome)
            await store.flush()
        rows = await _rows(pg.dsn, f'SELECT outcome_id FROM "{schema}".outcomes')
        assert sorted(r["outcome_id"] for r in rows) == sorted([good.outcome_id, other.outcome_id])
        refused = [e for e in logs if e["event"] == "store_row_refused"]
        assert [e["outcome_id"] for e in refused] == [bad.outcome_id]
        assert 'netcortex_store_rows_refused_total{backend="postgres"} 1' in metrics.render()
        await store.record(replace(_outcome(4), summary="alone \ud800"))
        with pytest.raises(StoreError) as info:
            await store.flush()
        assert not is_transient(info.value)
        await store.record(_outcome(5))
        await store.flush()  # nothing held: the store goes on

    async def test_nul_in_text_is_replaced_not_refused(
        self,
        pg: RestartablePostgres,
        schema: str,
        outcome_store: tuple[PostgresOutcomeStore, Registry, list[int]],
    ) -> None:
        """A NUL in a text column (an interface description from a device may carry one)
        is stored as U+FFFD instead of making PostgreSQL refuse the batch."""
        store, _, _ = outcome_store
        outcome = replace(_outcome(1), summary="bad\x00summary")
        await store.record(outcome)
        await store.flush()
        rows = await _rows(pg.dsn, f'SELECT summary FROM "{schema}".outcomes')
        assert [r["summary"] for r in rows] == ["bad\ufffdsummary"]


class TestSideStores:
    async def test_outbox_incidents_and_poll_state_fail_then_recover(
        self, pg: RestartablePostgres, schema: str, outcome_store: Any
    ) -> None:
        """Down: every call of the outbox, the incident store and the poll state is a
        ``StoreError`` (never another exception). Back up: the same objects work
        again, and what they wrote before the restart is still there."""
        outbox = PostgresOutbox(pg.dsn, schema)
        incidents = PostgresIncidentStore(pg.dsn, schema)
        poll = PostgresPollState(pg.dsn, schema, connect_timeout=3)
        await outbox.start()
        await incidents.start()
        await poll.start()
        snapshot = DeviceSnapshot(device="sw1", agent="192.0.2.1", sys_uptime_ticks=1, polled_at=T0)
        now = datetime.now(UTC)
        calls: dict[str, Callable[[], Awaitable[Any]]] = {
            "outbox.claim": lambda: outbox.claim(10, now, 30.0),
            "outbox.stats": outbox.stats,
            "outbox.upsert_incident": lambda: outbox.upsert_incident(_incident(1), now),
            "incidents.save": lambda: incidents.save(_incident(2)),
            "incidents.open_incidents": incidents.open_incidents,
            "poll.save": lambda: poll.save(snapshot),
            "poll.set_down": lambda: poll.set_down("sw2", True),
            "poll.load_all": poll.load_all,
        }
        try:
            for call in calls.values():
                await call()
            await _stop(pg)
            for call in calls.values():
                with pytest.raises(StoreError):
                    await asyncio.wait_for(call(), 30)
            await _start(pg)
            for name, call in calls.items():
                await _until_ok(call, name)
            assert [i.incident_id for i in await incidents.open_incidents()] == ["inc-0002"]
            assert await poll.load_all() == {"sw1": snapshot}
            assert await poll.load_down() == frozenset({"sw2"})
            assert (await outbox.stats()).pending == 1
        finally:
            await outbox.close()
            await incidents.close()
            await poll.close()

    async def test_a_restart_while_idle_costs_at_most_one_failed_call(
        self, pg: RestartablePostgres, schema: str
    ) -> None:
        """The server restarts while nobody calls: the pools' connections are dead
        when next used. The first call may fail (``StoreError``), the next works."""
        incidents = PostgresIncidentStore(pg.dsn, schema)
        poll = PostgresPollState(pg.dsn, schema)
        await incidents.start()
        await poll.start()
        try:
            await incidents.save(_incident(1))
            await poll.set_down("sw1", True)
            await _stop(pg)
            await _start(pg)
            for call in (lambda: incidents.save(_incident(1, version=2)), poll.load_down):
                try:
                    await call()
                except StoreError:
                    await call()
        finally:
            await incidents.close()
            await poll.close()


class TestPoolFloorWarnings:
    async def test_asyncpg_floor_warnings_are_rate_limited_without_traceback(
        self, pg: RestartablePostgres, schema: str, caplog: pytest.LogCaptureFixture
    ) -> None:
        """While the server is down, asyncpg retries each pool's ``min_size`` floor and
        logs a warning with a traceback each time; ``netcortex.pg`` lets at most one
        through per ``POOL_FLOOR_WARN_INTERVAL_S`` for the process, without the
        traceback (several pools, several retries → at most one line here)."""
        floor = next(
            f
            for f in logging.getLogger("asyncpg.pool").filters
            if isinstance(f, _PoolFloorWarnings)
        )
        incidents = PostgresIncidentStore(pg.dsn, schema)
        outbox = PostgresOutbox(pg.dsn, schema)
        await incidents.start()
        await outbox.start()
        seen = floor.seen

        def lines() -> list[logging.LogRecord]:
            return [r for r in caplog.records if r.name == "asyncpg.pool"]

        try:
            with caplog.at_level(logging.WARNING, logger="asyncpg.pool"):
                await _stop(pg)
                # A dead connection each: both pools fall below their min_size.
                with pytest.raises(StoreError):
                    await incidents.open_incidents()
                with pytest.raises(StoreError):
                    await outbox.stats()
                loop = asyncio.get_running_loop()
                until = loop.time() + 15
                while floor.seen - seen < 3:  # both pools, and a retry
                    assert loop.time() < until, "asyncpg never retried the floor"
                    await asyncio.sleep(0.05)
        finally:
            await _start(pg)
            await incidents.close()
            await outbox.close()
        assert len(lines()) <= 1
        assert all(r.exc_info is None for r in lines())


class TestIsTransient:
    async def test_unreachable_and_restarting_are_transient_refused_data_is_not(
        self, pg: RestartablePostgres
    ) -> None:
        """``is_transient``: a refused connection and an administrator shutdown are;
        a statement the server refuses is not."""
        conn = await asyncpg.connect(pg.dsn)
        try:
            with pytest.raises(StoreError) as refused_sql:
                async with pg_errors("write", "test"):
                    await conn.execute("SELECT 1 / 0")
            with pytest.raises(StoreError) as protocol:
                async with pg_errors("write", "test"):
                    await conn.execute("SELECT 'a\x00b'")  # 08P01: class 08, not transient
            await _stop(pg)
            with pytest.raises(StoreError) as terminated:
                async with pg_errors("write", "test"):
                    await conn.execute("SELECT 1")
            with pytest.raises(StoreError) as unreachable:
                async with pg_errors("connect", "test"):
                    await asyncpg.connect(pg.dsn, timeout=5)
        finally:
            conn.terminate()
            await _start(pg)
        assert is_transient(terminated.value)
        assert is_transient(unreachable.value)
        assert not is_transient(refused_sql.value)
        assert not is_transient(protocol.value)
        assert not is_transient(StoreError("no cause"))
