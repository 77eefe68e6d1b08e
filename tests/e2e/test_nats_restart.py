"""End to end: nats-server restarted mid-stream (issue 10, item 3, second bullet).

Real processes only: one ``netcortex run --role receiver`` and two ``--role
worker`` on a nats-server of this test's own (JetStream **file** storage in a
temporary directory, a fixed port, so the restarted server has the same streams,
consumers and dedup bucket), one fresh PostgreSQL schema, dedup in the JetStream
key-value bucket.

Distinct linkDowns are sent over loopback UDP in paced batches
(``tests.e2e.fleet.send_paced``). After the first third, nats-server is
stopped (SIGTERM — a clean shutdown — or SIGKILL — a crash: JetStream's file
store keeps every message it acked, the kernel's page cache survives a killed
process); the second third is sent while it is down, so the receiver must hold
those events (``bus.outage_buffer_seconds``, see ``sensory/_publish.py``) and the
workers lose their connection; the server stays down ``OUTAGE`` seconds (longer
than the receivers' old fixed retries, after the receiver's ``trap_publish_retry``
line shows it riding the outage out), then starts again on the same port and
store, and the last third is sent. Then, to the message:

* the receiver: received == published (== sent), nothing rejected, failed or
  still held;
* PostgreSQL: one ``logged`` outcome row per event (distinct event ids and
  outcome ids == sent);
* the workers: outcome rows they stored (``netcortex_store_rows_total``, an
  outcome re-stored after a redelivery counts as a store duplicate, not a row)
  == published, and both still run (they reconnected on their own).

Every wait is on a condition with a deadline (the outage's length is the
scenario, not a wait for a result).

The last check — every outcome ``logged`` — found a defect (fixed): a worker
handling an event while NATS was away got a ``StoreError`` from the JetStream
dedup bucket and the runner recorded an ``errored`` outcome (seen: 12 of 3,000)
instead of retrying the event; now a gate whose backend is unavailable is
retried in place (``reflex_gate_unavailable``).
"""

from __future__ import annotations

import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.fleet import (
    FleetProcess,
    counter,
    fetch,
    fleet_config,
    outcome_rows,
    running_fleet,
    send_paced,
    trap_intake,
    wait_all_published,
    wait_for_rows,
)
from tests.e2e.harness import v2c_link_down
from tests.servers import NatsServer

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.nats,
    pytest.mark.slow,
    pytest.mark.xdist_group("e2e-scaleout-faults"),
]

#: Distinct linkDowns sent (a third before, during and after the outage).
EVENTS = 3000
#: The UDP source of the traps (the device).
SOURCE = "127.0.0.93"
#: Seconds before JetStream redelivers a message a worker could not ack in the outage.
ACK_WAIT = 3.0
#: Seconds a publish waits for JetStream's ack (short, so the receiver's retry path runs).
PUBLISH_TIMEOUT = 2.0
#: Seconds nats-server stays down: longer than the receivers' old fixed retries
#: (4 attempts of ``PUBLISH_TIMEOUT`` plus 0.1 + 0.5 + 1.0 s of pauses = 9.6 s, after
#: which an accepted trap was lost), so this test fails without the outage buffer.
OUTAGE = 12.0
#: ``bus.outage_buffer_seconds`` (the default).
OUTAGE_BUFFER = 120.0
#: Longest wait for the receiver to have published everything once the server is back.
PUBLISH_WITHIN = 60.0


def _stop(server: NatsServer, how: signal.Signals) -> None:
    """Stop ``server`` with ``how`` (SIGTERM: ``NatsServer.stop``; SIGKILL: a crash)."""
    if how is signal.SIGTERM:
        server.stop()
    else:
        assert server.kill() == -how


@pytest.fixture
def nats(tmp_path: Path) -> Iterator[NatsServer]:
    """This test's own nats-server (fixed port, JetStream store under ``tmp_path``)."""
    server = NatsServer(store_dir=tmp_path / "nats")
    server.store_dir.mkdir()
    server.start()
    try:
        yield server
    finally:
        server.cleanup()


@pytest.fixture
def fleet(
    tmp_path: Path, nats: NatsServer, postgres_dsn: str, postgres_schema: str
) -> Iterator[tuple[list[FleetProcess], FleetProcess]]:
    """Two workers and one receiver on ``nats`` and a fresh schema, all started;
    every process still alive is stopped cleanly at teardown."""
    bus = {
        "backend": "nats",
        "nats_url": nats.url,
        "namespace": f"rst{uuid.uuid4().hex[:10]}",
        "storage": "file",
        "ack_wait": ACK_WAIT,
        "publish_timeout": PUBLISH_TIMEOUT,
        "outage_buffer_seconds": OUTAGE_BUFFER,
    }
    config = fleet_config(bus, postgres_dsn, postgres_schema)
    with running_fleet(tmp_path, config, workers=2) as procs:
        *workers, receiver = procs
        yield workers, receiver


class OutcomesErrored(AssertionError):
    """Events in flight in the outage were recorded as ``errored``, not handled."""


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_nats_restart_mid_stream_loses_nothing(
    fleet: tuple[list[FleetProcess], FleetProcess],
    nats: NatsServer,
    postgres_dsn: str,
    postgres_schema: str,
    how: signal.Signals,
) -> None:
    """nats-server stopped (SIGTERM or SIGKILL) after a third of the traps and started
    again on the same port and store after the receiver had to retry → the receiver
    held what arrived meanwhile and published it: received == published == sent, none
    rejected or failed; every event has exactly one ``logged`` outcome row; the
    workers reconnected on their own and stored exactly ``published`` rows."""
    workers, receiver = fleet
    traps = [(SOURCE, v2c_link_down(1 + i, 1 + i)) for i in range(EVENTS)]
    first, second = EVENTS // 3, 2 * EVENTS // 3

    send_paced(receiver, traps[:first])
    _stop(nats, how)
    stopped = time.monotonic()
    send_paced(receiver, traps[first:second], in_flight=None)  # nothing publishes
    # Publishes failed and the receiver is riding it out, holding what it accepted.
    receiver.wait_for_log("trap_publish_retry", timeout=30)
    held = trap_intake(receiver)
    assert held["in_flight"] > 0, held
    assert held["published"] < second, held
    # The outage itself (a scenario input, not a wait for a result): OUTAGE seconds.
    time.sleep(max(0.0, stopped + OUTAGE - time.monotonic()))
    held = trap_intake(receiver)
    assert held["publish_failed"] == 0, held
    assert held["in_flight"] + held["published"] == second, held
    nats.start()
    send_paced(receiver, traps[second:])

    wait_all_published(receiver, EVENTS, timeout=PUBLISH_WITHIN)
    receiver.wait_for_log("trap_bus_recovered", timeout=10)

    wait_for_rows(postgres_dsn, postgres_schema, EVENTS)
    rows = outcome_rows(postgres_dsn, postgres_schema)
    assert len(rows) == EVENTS
    assert len({r["outcome_id"] for r in rows}) == EVENTS
    assert len({r["event_id"] for r in rows}) == EVENTS
    assert all(w.alive for w in workers)
    stored = [counter(w, "netcortex_store_rows_total") for w in workers]
    assert sum(stored) == EVENTS, stored
    not_logged = fetch(
        postgres_dsn,
        f"SELECT kind, summary FROM {postgres_schema}.outcomes WHERE kind <> 'logged' LIMIT 3",
    )
    if not_logged:
        raise OutcomesErrored(
            f"{sum(r['kind'] != 'logged' for r in rows)} of {EVENTS} outcomes are not "
            f"'logged', e.g. {[dict(r) for r in not_logged]}"
        )
