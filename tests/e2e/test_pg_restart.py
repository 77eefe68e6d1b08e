"""End to end: PostgreSQL restarted mid-stream (issue 10, item 3, third bullet).

"PostgreSQL restarted mid-stream → workers pause and resume, nothing lost."
Real processes only, the fault tests' shape (``tests/e2e/fleet.py``):
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

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.fleet import (
    FleetProcess,
    fetch,
    fleet_bus,
    fleet_config,
    handled,
    outcome_count,
    outcome_rows,
    running_fleet,
    send_paced,
    wait_all_published,
    wait_for_rows,
    wait_until,
)
from tests.e2e.harness import v2c_link_down
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
#: How long the fleet may take to store everything after the last datagram.
SETTLE_TIMEOUT = 90.0
#: Seconds without a new stored outcome that mean the rest is lost (a redelivery
#: comes back after ``ACK_WAIT``; the runner's retry backs off to 5 s).
STALL = 3 * ACK_WAIT
#: Worker log events of the pause and the resumption (the reflex runner's), and the
#: outcome store's own failure and recovery lines.
PAUSED, RESUMED = "reflex_settle_failed", "reflex_settle_recovered"
STORE_FAILED, STORE_RECOVERED = "store_write_failed", "store_write_recovered"


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
    fetch(pg.dsn, f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


@pytest.fixture
def fleet(
    request: pytest.FixtureRequest, tmp_path: Path, pg: RestartablePostgres, schema: str
) -> Iterator[list[FleetProcess]]:
    """Two workers then one receiver (last), started side by side on one config;
    every process still alive is stopped cleanly at teardown."""
    config = fleet_config(fleet_bus(request, ack_wait=ACK_WAIT), pg.dsn, schema)
    with running_fleet(tmp_path, config, workers=2) as procs:
        yield procs
        if not pg.running:
            pg.start()  # a clean stop flushes into it


def test_postgres_restart_mid_stream_pauses_and_resumes_the_workers(
    pg: RestartablePostgres, schema: str, fleet: list[FleetProcess]
) -> None:
    """PostgreSQL stopped (fast shutdown) while distinct linkDowns flow, started again
    after a few seconds → every event has exactly one ``logged`` outcome (no event
    id or outcome id twice, none missing), both workers are alive and ready again,
    and their logs show the pause and the resumption."""
    *workers, receiver = fleet
    traps = [(SOURCE, v2c_link_down(1 + i, 1 + i)) for i in range(EVENTS)]
    first, second = EVENTS // 3, 2 * EVENTS // 3

    send_paced(receiver, traps[:first])
    wait_until(
        lambda: outcome_count(pg.dsn, schema) > 0,
        lambda: f"nothing stored; handled {[handled(w) for w in workers]}",
        timeout=30,
    )

    pg.stop()
    down_at = time.monotonic()
    send_paced(receiver, traps[first:second])

    def noticed() -> bool:
        return any(w.logs(PAUSED) or w.logs(STORE_FAILED) for w in workers)

    wait_until(
        lambda: noticed() and time.monotonic() - down_at >= DOWN_S,
        lambda: f"no worker noticed the outage; last lines {workers[0].lines[-5:]}",
        timeout=30,
    )
    assert all(w.alive for w in workers)
    pg.start()
    send_paced(receiver, traps[second:])

    wait_all_published(receiver, EVENTS)
    wait_for_rows(pg.dsn, schema, EVENTS, timeout=SETTLE_TIMEOUT, stall=STALL)
    rows = outcome_rows(pg.dsn, schema)
    assert len(rows) == EVENTS
    assert len({r["outcome_id"] for r in rows}) == EVENTS
    assert len({r["event_id"] for r in rows}) == EVENTS
    assert {r["kind"] for r in rows} == {"logged"}

    assert all(w.alive for w in workers)
    for worker in workers:
        wait_until(lambda w=worker: _ready(w), "a worker is not ready again", timeout=30)  # type: ignore[misc]
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
