"""End to end, fault tests of the scale-out deployment (issue 10, item 3, first two bullets).

Real processes only: one ``netcortex run --role receiver`` and several
``--role worker`` on one NATS namespace (JetStream **file** storage in the
session test server's temporary directory, ``Nats-Msg-Id`` dedup), one fresh
PostgreSQL schema and dedup in the JetStream key-value bucket — the deployment
guide's shape, all processes reading one config file.

Traps are raw v2c linkDown datagrams (``harness.v2c_link_down``) sent over
loopback UDP in batches: each batch is sent once the receiver's counters show
the previous one received, so the rate is steady, the kernel buffer never
overflows and nothing sleeps. Every wait is on a condition with a deadline.
A receiver serves no ``/api/v1/accounting`` (only ``/metrics``), so its trap
accounting is read from the counters that endpoint is built from.

The kill test found a real defect (fixed, ``reflex.settle``): the runner used to
ack a message once the store had *queued* its outcome, so a SIGKILL inside the
store's flush interval lost those acked outcomes (seen: 2,992/3,000 stored, with
all 3,000 published). Now the ack waits for the commit.

Sizes: the issue's figures, 20,000 traps (kill test) and 10,000 identical
linkDowns (storm test). On the quiet 2-core VM the fleet stores ~1,000
outcomes/s, so they take ~30 s and ~40 s; under load (parallel jobs, load
average 5-10) several times that, hence the per-test timeout of 600 s and a
settle deadline that grows with the size. ``NETCORTEX_FAULT_EVENTS`` and
``NETCORTEX_FAULT_STORM`` change them (smaller for a quick run by hand).
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tests.e2e.harness import EngineProcess, bus_overrides, v2c_link_down

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.nats,
    pytest.mark.slow,
    pytest.mark.xdist_group("e2e-scaleout-faults"),
]

#: Distinct linkDowns in the kill test (the issue's 20,000, see the docstring).
EVENTS = int(os.environ.get("NETCORTEX_FAULT_EVENTS", "20000"))
#: Identical linkDowns in the storm test (the issue's 10,000).
STORM = int(os.environ.get("NETCORTEX_FAULT_STORM", "10000"))
#: Datagrams sent before waiting for the receiver to have them all.
BATCH = 250
#: Datagrams the receiver may hold unpublished before the next batch is sent (its
#: publish queue holds 10,000; see ``send_paced``).
IN_FLIGHT = 2_000
#: The UDP source of the kill test's traps (the device) and of the storm's.
SOURCE, STORM_SOURCE = "127.0.0.91", "127.0.0.92"
#: Seconds before JetStream hands a killed worker's unacked messages to the others.
ACK_WAIT = 3.0
#: How long each process may take to start (all start at once on two cores).
START_TIMEOUT = 60.0
#: How long the fleet may take to finish after the last datagram.
#: (the fleet stores ~150-500 outcomes/s here, so the full figures need more)
SETTLE_TIMEOUT = 90.0 + max(EVENTS, STORM) / 100
#: Seconds without a new stored outcome that mean the rest is lost.
STALL = 4 * ACK_WAIT


class FleetProcess(EngineProcess):
    """``netcortex run --role ROLE`` on the fleet's shared config (a worker binds no
    trap socket, so ``start()`` does not wait for one)."""

    def __init__(self, tmp_path: Path, overrides: dict[str, Any], role: str) -> None:
        tmp_path.mkdir(parents=True, exist_ok=True)
        super().__init__(tmp_path, overrides, args=["--role", role])
        self.role = role

    def _enabled(self, section: str) -> bool:
        if section == "trap" and self.role == "worker":
            return False
        return super()._enabled(section)


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


def counter(proc: EngineProcess, name: str, **labels: str) -> int:
    """The sum of ``name``'s samples (``/api/v1/metrics``) whose labels include ``labels``."""
    wanted = set(labels.items())
    return int(
        sum(
            value
            for (sample, pairs), value in proc.metrics().items()
            if sample == name and wanted <= set(pairs)
        )
    )


def trap_intake(receiver: EngineProcess) -> dict[str, int]:
    """The receiver's trap accounting, from the counters ``/api/v1/accounting`` reads
    (a receiver serves no accounting route, only ``/metrics``): received, rejected,
    published, publish_failed and in_flight (its ``trap_publish`` queue)."""
    samples = receiver.metrics()

    def total(name: str, **labels: str) -> int:
        wanted = set(labels.items())
        return int(
            sum(v for (n, pairs), v in samples.items() if n == name and wanted <= set(pairs))
        )

    return {
        "received": total("netcortex_received_total", source="snmp.trap"),
        "rejected": total("netcortex_rejected_total", source="snmp.trap"),
        "published": total("netcortex_trap_published_total"),
        "publish_failed": total("netcortex_trap_publish_failed_total"),
        "in_flight": total("netcortex_queue_depth", queue="trap_publish"),
    }


def send_paced(
    receiver: EngineProcess, payloads: Sequence[bytes], source: str, in_flight: int = IN_FLIGHT
) -> None:
    """Send ``payloads`` from ``source`` in ``BATCH``es, each once the receiver has
    received everything before it and published all but ``in_flight`` of it (a steady
    rate the receiver and JetStream set, no sleep; a bus outage test raises
    ``in_flight`` to send while nothing can be published).

    Pacing on ``received`` alone let a loaded CI machine's receiver take datagrams
    faster than it could publish them: its publish queue (``trap.queue_size``,
    10,000) filled and 808 of 20,000 traps were rejected as ``overloaded`` — counted,
    as designed, but these tests are about the workers, not about shedding."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((source, 0))
        for start in range(0, len(payloads), BATCH):
            for payload in payloads[start : start + BATCH]:
                sock.sendto(payload, ("127.0.0.1", receiver.trap_port))
            sent = min(start + BATCH, len(payloads))

            def caught_up(sent: int = sent) -> bool:
                intake = trap_intake(receiver)
                return intake["received"] >= sent and intake["published"] >= sent - in_flight

            _wait_until(
                caught_up,
                lambda: f"receiver got {trap_intake(receiver)} of {len(payloads)} sent",
                timeout=60,
            )


class OutcomesLost(AssertionError):
    """Stored outcomes stopped short of the events JetStream accepted."""


def wait_for_rows(dsn: str, schema: str, want: int) -> None:
    """Wait until the schema holds ``want`` ``link_down`` rows; ``OutcomesLost`` after
    ``SETTLE_TIMEOUT`` s, or sooner once the count has not moved for ``STALL`` s (a
    redelivered message comes back after ``ACK_WAIT``, so a longer stall is a loss)."""
    deadline = time.monotonic() + SETTLE_TIMEOUT
    last, moved = -1, time.monotonic()
    while (count := outcome_count(dsn, schema)) < want:
        now = time.monotonic()
        if count != last:
            last, moved = count, now
        elif now - moved > STALL:
            raise OutcomesLost(f"stalled at {count}/{want} outcomes for {STALL}s")
        if now > deadline:
            raise OutcomesLost(f"{count}/{want} outcomes within {SETTLE_TIMEOUT}s")
        time.sleep(0.1)


def outcome_rows(dsn: str, schema: str) -> list[asyncpg.Record]:
    """Every ``link_down`` outcome row of the fleet's schema."""
    return _fetch(
        dsn,
        f"SELECT outcome_id, event_id, kind FROM {schema}.outcomes WHERE handler_id = 'link_down'",
    )


def outcome_count(dsn: str, schema: str) -> int:
    """How many ``link_down`` outcome rows the schema holds (0 before the table exists)."""
    exists = _fetch(dsn, f"SELECT to_regclass('{schema}.outcomes') IS NOT NULL AS ok")[0]["ok"]
    if not exists:
        return 0
    rows = _fetch(
        dsn, f"SELECT count(*) AS n FROM {schema}.outcomes WHERE handler_id = 'link_down'"
    )
    return int(rows[0]["n"])


def handled(proc: EngineProcess) -> int:
    """``link_down`` outcomes ``proc`` produced (``netcortex_reflex_outcomes_total``)."""
    return counter(proc, "netcortex_reflex_outcomes_total", handler="link_down")


@pytest.fixture
def fleet_schema(postgres_dsn: str) -> Iterator[str]:
    """A fresh PostgreSQL schema for one test's fleet, dropped after."""
    schema = "t_faults_" + uuid.uuid4().hex[:12]
    yield schema
    _fetch(postgres_dsn, f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture
def fleet_config(
    request: pytest.FixtureRequest, postgres_dsn: str, fleet_schema: str
) -> dict[str, Any]:
    """The one config of a fleet: a fresh NATS namespace with JetStream file storage and
    a short ``ack_wait`` (a dead worker's messages come back in seconds), a fresh
    PostgreSQL schema, dedup in the JetStream bucket."""
    bus = bus_overrides("nats", request)
    bus.update(storage="file", ack_wait=ACK_WAIT)
    return {
        "bus": bus,
        "store": {
            "backend": "postgres",
            "postgres_dsn": postgres_dsn,
            "postgres_schema": fleet_schema,
        },
        # The storm's one fact must stay one however long a loaded machine takes for
        # 10,000 events: link_down's own 60 s window ran out mid-storm once in CI.
        "dedup": {"backend": "nats", "windows": {"link_down": 3600}},
        "trap": {"communities": ["public"]},
    }


@pytest.fixture
def make_fleet(
    tmp_path: Path, fleet_config: dict[str, Any]
) -> Iterator[Callable[[int], list[FleetProcess]]]:
    """``make_fleet(n)``: ``n`` workers then one receiver (last in the list), all
    started; every process still alive is stopped cleanly at teardown."""
    procs: list[FleetProcess] = []

    def make(workers: int) -> list[FleetProcess]:
        procs.extend(
            FleetProcess(tmp_path / f"worker-{i}", fleet_config, "worker") for i in range(workers)
        )
        procs.append(FleetProcess(tmp_path / "rx", fleet_config, "receiver"))
        # Started side by side (each start() waits for its own engine_started): start-up
        # is mostly interpreter imports, and five in a row cost ~15 s on a loaded machine.
        with ThreadPoolExecutor(max_workers=len(procs)) as pool:
            for started in pool.map(lambda p: p.start(timeout=START_TIMEOUT), procs):
                assert started.alive
        return list(procs)

    try:
        yield make
        for proc in reversed(procs):
            if proc.alive:
                proc.stop_cleanly()
    finally:
        for proc in procs:
            proc.__exit__(None, None, None)


@pytest.mark.timeout(600)
def test_kill_one_of_three_workers_mid_stream(
    make_fleet: Callable[[int], list[FleetProcess]], postgres_dsn: str, fleet_schema: str
) -> None:
    """SIGKILL of one of three workers while distinct linkDowns flow → the two survivors
    finish: every event has exactly one ``logged`` outcome in PostgreSQL (no outcome id
    or event id twice), and the receiver received and published every trap."""
    *workers, receiver = make_fleet(3)
    victim, survivors = workers[0], workers[1:]
    payloads = [v2c_link_down(1 + i, 1 + i) for i in range(EVENTS)]
    half = EVENTS // 2

    send_paced(receiver, payloads[:half], SOURCE)
    # Mid-stream: the victim is busy (it has handled some events) when it dies.
    _wait_until(lambda: handled(victim) > 0, lambda: "the victim never handled", timeout=30)
    assert victim.proc is not None
    victim.proc.send_signal(signal.SIGKILL)
    assert victim.proc.wait(timeout=10) == -signal.SIGKILL
    send_paced(receiver, payloads[half:], SOURCE)

    # JetStream holds every event first: a row missing later was lost downstream of it.
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
    wait_for_rows(postgres_dsn, fleet_schema, EVENTS)
    rows = outcome_rows(postgres_dsn, fleet_schema)
    assert len(rows) == EVENTS
    assert len({r["outcome_id"] for r in rows}) == EVENTS
    assert len({r["event_id"] for r in rows}) == EVENTS
    assert {r["kind"] for r in rows} == {"logged"}
    assert all(w.alive for w in survivors)


@pytest.mark.timeout(600)
def test_identical_storm_over_four_workers_logs_once(
    make_fleet: Callable[[int], list[FleetProcess]], postgres_dsn: str, fleet_schema: str
) -> None:
    """The same linkDown ``STORM`` times, spread over four workers sharing the JetStream
    dedup bucket → exactly one ``logged`` outcome, every other event ``skipped``, each
    event one row, and at least two of the workers took a share."""
    *workers, receiver = make_fleet(4)
    datagram = v2c_link_down(4242, 7)
    send_paced(receiver, [datagram] * STORM, STORM_SOURCE)

    wait_for_rows(postgres_dsn, fleet_schema, STORM)
    rows = outcome_rows(postgres_dsn, fleet_schema)
    assert len(rows) == STORM
    assert len({r["event_id"] for r in rows}) == STORM
    kinds = [r["kind"] for r in rows]
    assert kinds.count("logged") == 1, {k: kinds.count(k) for k in set(kinds)}
    assert kinds.count("skipped") == STORM - 1
    intake = trap_intake(receiver)
    assert (intake["received"], intake["published"], intake["rejected"]) == (STORM, STORM, 0)
    per_worker = [handled(w) for w in workers]
    assert sum(per_worker) >= STORM, per_worker  # a redelivery past ack_wait re-handles
    assert sum(1 for n in per_worker if n > 0) >= 2, per_worker  # the work was shared
