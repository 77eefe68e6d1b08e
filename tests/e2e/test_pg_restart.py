"""End to end: PostgreSQL restarted mid-stream (issue 10, item 3, third bullet).

"PostgreSQL restarted mid-stream → workers pause and resume, nothing lost."
Real processes only, the fault tests' shape (``tests/e2e/test_scaleout_faults.py``):
one ``netcortex run --role receiver`` and two ``--role worker`` on a fresh NATS
namespace (the session's nats-server, JetStream file storage), dedup in the
JetStream bucket, outcomes and journal jobs in PostgreSQL — this module's own
``tests.pg_server.RestartablePostgres`` on a free TCP port, which the test stops
(a fast shutdown: the workers' connections are terminated by the administrator)
and starts again on the same port and data while traps keep flowing.

The timeline, each step waiting on a condition with a deadline:

1. the first third of ``EVENTS`` distinct linkDowns is sent and partly stored
   (the workers are busy);
2. PostgreSQL stops; the second third is sent (the receiver only publishes to
   JetStream, it needs no database); the server stays down until a worker has
   noticed (``reflex_settle_failed`` or ``store_write_failed``) and for at least
   ``DOWN_S`` seconds;
3. PostgreSQL starts; the last third is sent;
4. every event ends with exactly one outcome row (``OutcomesLost`` if the count
   stalls or runs out of time), both workers are alive and ``/readyz`` says
   ``ready`` again, and the workers' logs show the pause and the resumption.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tests.e2e.harness import bus_overrides, v2c_link_down
from tests.e2e.test_scaleout_faults import (
    FleetProcess,
    handled,
    send_paced,
    trap_intake,
)
from tests.pg_server import RestartablePostgres

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.nats,
    pytest.mark.slow,
    pytest.mark.xdist_group("e2e-scaleout-faults"),
]

#: Distinct linkDowns sent (a third before, during and after the outage).
EVENTS = 2000
#: The UDP source of the traps (the device).
SOURCE = "127.0.0.93"
#: Least seconds PostgreSQL stays down (traps flow meanwhile).
DOWN_S = 1.5
#: JetStream's ``ack_wait``: longer than the outage, so a paused worker's messages
#: wait for it; a longer outage would redeliver them (harmless: same outcome ids).
ACK_WAIT = 5.0
#: How long each process may take to start (all start at once on two cores).
START_TIMEOUT = 60.0
#: How long the fleet may take to store everything after the last datagram.
SETTLE_TIMEOUT = 90.0
#: Seconds without a new stored outcome that mean the rest is lost (a redelivery
#: comes back after ``ACK_WAIT``; the runner's retry backs off to 5 s).
STALL = 3 * ACK_WAIT
#: Worker log events of the pause and the resumption (the reflex runner's), and the
#: outcome store's own failure and recovery lines.
PAUSED, RESUMED = "reflex_settle_failed", "reflex_settle_recovered"
STORE_FAILED, STORE_RECOVERED = "store_write_failed", "store_write_recovered"


class OutcomesLost(AssertionError):
    """Stored outcomes stopped short of the events sent."""


def _fetch(dsn: str, sql: str) -> list[asyncpg.Record]:
    async def fetch() -> list[asyncpg.Record]:
        conn = await asyncpg.connect(dsn, timeout=10)
        try:
            return list(await conn.fetch(sql))
        finally:
            await conn.close()

    return asyncio.run(fetch())


def _wait_until(check: Callable[[], bool], what: Callable[[], str], timeout: float) -> None:
    """Poll ``check`` until true; ``TimeoutError`` naming ``what()`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"not within {timeout}s: {what()}")
        time.sleep(0.1)


def _count(dsn: str, schema: str) -> int:
    exists = _fetch(dsn, f"SELECT to_regclass('{schema}.outcomes') IS NOT NULL AS ok")[0]["ok"]
    if not exists:
        return 0
    rows = _fetch(
        dsn, f"SELECT count(*) AS n FROM {schema}.outcomes WHERE handler_id = 'link_down'"
    )
    return int(rows[0]["n"])


def _wait_for_rows(dsn: str, schema: str, want: int) -> None:
    """Wait for ``want`` ``link_down`` rows; ``OutcomesLost`` after ``SETTLE_TIMEOUT``
    s, or once the count has not moved for ``STALL`` s."""
    deadline = time.monotonic() + SETTLE_TIMEOUT
    last, moved = -1, time.monotonic()
    while (count := _count(dsn, schema)) < want:
        now = time.monotonic()
        if count != last:
            last, moved = count, now
        elif now - moved > STALL:
            raise OutcomesLost(f"stalled at {count}/{want} outcomes for {STALL}s")
        if now > deadline:
            raise OutcomesLost(f"{count}/{want} outcomes within {SETTLE_TIMEOUT}s")
        time.sleep(0.1)


def _ready(proc: FleetProcess) -> bool:
    try:
        answer = proc.http.get("/readyz", timeout=5)
    except Exception:
        return False
    return answer.status_code == 200


@pytest.fixture(scope="module")
def pg() -> Iterator[RestartablePostgres]:
    """This module's own PostgreSQL, which the test restarts (deleted after)."""
    with RestartablePostgres() as server:
        yield server


@pytest.fixture
def schema(pg: RestartablePostgres) -> Iterator[str]:
    name = "t_pgrestart_" + uuid.uuid4().hex[:12]
    yield name
    if not pg.running:
        pg.start()
    _fetch(pg.dsn, f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


@pytest.fixture
def fleet(
    request: pytest.FixtureRequest, tmp_path: Path, pg: RestartablePostgres, schema: str
) -> Iterator[list[FleetProcess]]:
    """Two workers then one receiver (last), started side by side on one config;
    every process still alive is stopped cleanly at teardown."""
    bus = bus_overrides("nats", request)
    bus.update(storage="file", ack_wait=ACK_WAIT)
    config: dict[str, Any] = {
        "bus": bus,
        "store": {"backend": "postgres", "postgres_dsn": pg.dsn, "postgres_schema": schema},
        "dedup": {"backend": "nats"},
        "trap": {"communities": ["public"]},
    }
    procs = [FleetProcess(tmp_path / f"worker-{i}", config, "worker") for i in range(2)]
    procs.append(FleetProcess(tmp_path / "rx", config, "receiver"))
    try:
        with ThreadPoolExecutor(max_workers=len(procs)) as pool:
            for started in pool.map(lambda p: p.start(timeout=START_TIMEOUT), procs):
                assert started.alive
        yield procs
        if not pg.running:
            pg.start()  # a clean stop flushes into it
        for proc in reversed(procs):
            if proc.alive:
                proc.stop_cleanly()
    finally:
        for proc in procs:
            proc.__exit__(None, None, None)


def test_postgres_restart_mid_stream_pauses_and_resumes_the_workers(
    pg: RestartablePostgres, schema: str, fleet: list[FleetProcess]
) -> None:
    """PostgreSQL stopped (fast shutdown) while distinct linkDowns flow, started again
    after a few seconds → every event has exactly one ``logged`` outcome (no event
    id or outcome id twice, none missing), both workers are alive and ready again,
    and their logs show the pause and the resumption."""
    *workers, receiver = fleet
    payloads = [v2c_link_down(1 + i, 1 + i) for i in range(EVENTS)]
    first, second = EVENTS // 3, 2 * EVENTS // 3

    send_paced(receiver, payloads[:first], SOURCE)
    _wait_until(
        lambda: _count(pg.dsn, schema) > 0,
        lambda: f"nothing stored; handled {[handled(w) for w in workers]}",
        timeout=30,
    )

    pg.stop()
    down_at = time.monotonic()
    send_paced(receiver, payloads[first:second], SOURCE)

    def noticed() -> bool:
        return any(w.logs(PAUSED) or w.logs(STORE_FAILED) for w in workers)

    _wait_until(
        lambda: noticed() and time.monotonic() - down_at >= DOWN_S,
        lambda: f"no worker noticed the outage; last lines {workers[0].lines[-5:]}",
        timeout=30,
    )
    assert all(w.alive for w in workers)
    pg.start()
    send_paced(receiver, payloads[second:], SOURCE)

    _wait_until(
        lambda: trap_intake(receiver)["published"] >= EVENTS,
        lambda: f"receiver accounting {trap_intake(receiver)}",
        timeout=30,
    )
    assert trap_intake(receiver) == {
        "received": EVENTS,
        "rejected": 0,
        "published": EVENTS,
        "publish_failed": 0,
        "in_flight": 0,
    }
    _wait_for_rows(pg.dsn, schema, EVENTS)
    rows = _fetch(
        pg.dsn,
        f"SELECT outcome_id, event_id, kind FROM {schema}.outcomes WHERE handler_id = 'link_down'",
    )
    assert len(rows) == EVENTS
    assert len({r["outcome_id"] for r in rows}) == EVENTS
    assert len({r["event_id"] for r in rows}) == EVENTS
    assert {r["kind"] for r in rows} == {"logged"}

    assert all(w.alive for w in workers)
    for worker in workers:
        _wait_until(lambda w=worker: _ready(w), lambda: "a worker is not ready again", 30)  # type: ignore[misc]
    # The pause and the resumption, in the workers' own words: the runner held its
    # acks and retried (and the store failed, then wrote again).
    logs = [line for w in workers for line in w.logs()]
    events = [line.get("event") for line in logs]
    assert PAUSED in events, "no worker paused (reflex_settle_failed)"
    assert RESUMED in events, "no worker resumed (reflex_settle_recovered)"
    assert STORE_FAILED in events
    assert STORE_RECOVERED in events
    # Rate-limited, not a line per failed batch or retry: the store's error once per
    # streak (then every 10 s), asyncpg's pool-floor warning once a minute.
    for worker in workers:
        assert len(worker.logs(STORE_FAILED)) <= 2, worker.logs(STORE_FAILED)
        floor = [
            line
            for line in worker.logs()
            if str(line.get("event", "")).startswith("Failed to restore the pool")
        ]
        assert len(floor) <= 1, floor
        assert all("exception" not in line for line in floor)
