"""The scale-out fleet of the end-to-end fault tests (issue 10): its processes, its
config, paced traps and what the tests read back.

A fleet is ``netcortex run --role worker`` processes and one ``--role receiver``
(``FleetProcess``) on one config (``fleet_config``): a NATS namespace with
JetStream **file** storage and a short ``ack_wait`` (``fleet_bus``), one
PostgreSQL schema for the outcomes, dedup in the JetStream key-value bucket — the
deployment guide's shape. ``running_fleet`` starts them side by side and stops
them cleanly after. ``send_paced`` sends raw trap datagrams over loopback UDP at
the pace the receiver and JetStream set (no sleep); ``trap_intake``, ``counter``
and ``handled`` read a process's counters (``wait_all_published`` asserts the
receiver's accounting), ``outcome_rows``, ``outcome_count`` and
``wait_for_rows`` the schema. Every wait is on a condition with a deadline
(``wait_until``). Plain functions and classes: each test module keeps its own
fixtures and builds them from these.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tests.e2e.harness import EngineProcess, Samples, bus_overrides

__all__ = [
    "ACK_WAIT",
    "BATCH",
    "FAULT_EVENTS",
    "FAULT_STORM",
    "IN_FLIGHT",
    "SETTLE_TIMEOUT",
    "STALL",
    "START_TIMEOUT",
    "FleetProcess",
    "OutcomesLost",
    "counter",
    "fetch",
    "fleet_bus",
    "fleet_config",
    "handled",
    "outcome_count",
    "outcome_rows",
    "running_fleet",
    "send_paced",
    "trap_intake",
    "wait_all_published",
    "wait_for_rows",
    "wait_until",
]

#: The issue's fault sizes: 20,000 distinct linkDowns (the kill test) and 10,000
#: identical ones (the storm); ``NETCORTEX_FAULT_EVENTS`` and
#: ``NETCORTEX_FAULT_STORM`` change them (smaller for a quick run by hand).
FAULT_EVENTS = int(os.environ.get("NETCORTEX_FAULT_EVENTS", "20000"))
FAULT_STORM = int(os.environ.get("NETCORTEX_FAULT_STORM", "10000"))
#: Datagrams sent before waiting for the receiver to have them all.
BATCH = 250
#: Datagrams the receiver may hold unpublished before the next batch is sent (its
#: publish queue holds 10,000; see ``send_paced``).
IN_FLIGHT = 2_000
#: Seconds before JetStream hands a killed worker's unacked messages to the others.
ACK_WAIT = 3.0
#: How long each process may take to start (all start at once on two cores).
START_TIMEOUT = 60.0
#: How long the fleet may take to finish after the last datagram: it stores
#: ~150-500 outcomes/s here, so the issue's full figures need more than 90 s.
SETTLE_TIMEOUT = 90.0 + max(FAULT_EVENTS, FAULT_STORM) / 100
#: Seconds without a new stored outcome that mean the rest is lost (a redelivered
#: message comes back after ``ACK_WAIT``).
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


def fleet_bus(request: pytest.FixtureRequest, ack_wait: float = ACK_WAIT) -> dict[str, Any]:
    """The ``bus`` section of a fleet on the session's nats-server: a fresh namespace,
    JetStream file storage and a short ``ack_wait`` (a dead worker's messages come
    back in seconds)."""
    bus = bus_overrides("nats", request)
    bus.update(storage="file", ack_wait=ack_wait)
    return bus


def fleet_config(
    bus: dict[str, Any], dsn: str, schema: str, **sections: dict[str, Any]
) -> dict[str, Any]:
    """The one config of a fleet: ``bus``, outcomes in PostgreSQL ``schema``, dedup in
    the JetStream bucket, community ``public``; ``sections`` add or replace sections."""
    return {
        "bus": bus,
        "store": {"backend": "postgres", "postgres_dsn": dsn, "postgres_schema": schema},
        "dedup": {"backend": "nats"},
        "trap": {"communities": ["public"]},
        **sections,
    }


@contextmanager
def running_fleet(
    tmp_path: Path, config: dict[str, Any], workers: int
) -> Iterator[list[FleetProcess]]:
    """``workers`` workers then one receiver (last in the list) on ``config``, started;
    on the way out every process still alive is stopped cleanly (exit code 0 and an
    ``engine_stopped`` line asserted), or after an error inside the block only stopped."""
    procs = [FleetProcess(tmp_path / f"worker-{i}", config, "worker") for i in range(workers)]
    procs.append(FleetProcess(tmp_path / "rx", config, "receiver"))
    try:
        # Started side by side (each start() waits for its own engine_started): start-up
        # is mostly interpreter imports, and five in a row cost ~15 s on a loaded machine.
        with ThreadPoolExecutor(max_workers=len(procs)) as pool:
            for started in pool.map(lambda p: p.start(timeout=START_TIMEOUT), procs):
                assert started.alive
        yield procs
        for proc in reversed(procs):
            if proc.alive:
                proc.stop_cleanly()
    finally:
        for proc in procs:
            proc.__exit__(None, None, None)


def wait_until(
    check: Callable[[], object],
    what: str | Callable[[], str],
    timeout: float,
    *,
    engine: EngineProcess | None = None,
    interval: float = 0.1,
) -> float:
    """Poll ``check`` every ``interval`` s until it returns something true; the seconds
    that took.

    Raises:
        TimeoutError: not within ``timeout`` s (the message names ``what``, called
            then if it is a function).
        RuntimeError: ``engine`` died meanwhile.
    """
    started = time.monotonic()
    while not check():
        if engine is not None and not engine.alive:
            raise RuntimeError(f"engine died waiting for {_say(what)}: {engine.lines[-10:]}")
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"not within {timeout}s: {_say(what)}")
        time.sleep(interval)
    return time.monotonic() - started


def _say(what: str | Callable[[], str]) -> str:
    return what if isinstance(what, str) else what()


def fetch(dsn: str, sql: str) -> list[asyncpg.Record]:
    """The rows of one statement on ``dsn`` (a connection of its own, on a private loop)."""

    async def run() -> list[asyncpg.Record]:
        conn = await asyncpg.connect(dsn, timeout=10)
        try:
            return list(await conn.fetch(sql))
        finally:
            await conn.close()

    return asyncio.run(run())


def _total(samples: Samples, name: str, labels: dict[str, str]) -> int:
    wanted = set(labels.items())
    return int(sum(v for (n, pairs), v in samples.items() if n == name and wanted <= set(pairs)))


def counter(proc: EngineProcess, name: str, **labels: str) -> int:
    """The sum of ``name``'s samples (``/api/v1/metrics``) whose labels include ``labels``."""
    return _total(proc.metrics(), name, labels)


def handled(proc: EngineProcess) -> int:
    """``link_down`` outcomes ``proc`` produced (``netcortex_reflex_outcomes_total``)."""
    return counter(proc, "netcortex_reflex_outcomes_total", handler="link_down")


def trap_intake(receiver: EngineProcess) -> dict[str, int]:
    """The receiver's trap accounting, from the counters ``/api/v1/accounting`` reads
    (a receiver serves no accounting route, only ``/metrics``): received, rejected,
    published, publish_failed and in_flight (its ``trap_publish`` queue)."""
    samples = receiver.metrics()
    return {
        "received": _total(samples, "netcortex_received_total", {"source": "snmp.trap"}),
        "rejected": _total(samples, "netcortex_rejected_total", {"source": "snmp.trap"}),
        "published": _total(samples, "netcortex_trap_published_total", {}),
        "publish_failed": _total(samples, "netcortex_trap_publish_failed_total", {}),
        "in_flight": _total(samples, "netcortex_queue_depth", {"queue": "trap_publish"}),
    }


def send_paced(
    receiver: EngineProcess,
    traps: Sequence[tuple[str, bytes]],
    *,
    in_flight: int | None = IN_FLIGHT,
) -> None:
    """Send each ``(source address, datagram)`` from its source in ``BATCH``es, each
    once the receiver has received everything before it and published all but
    ``in_flight`` of it (``None``: no bound) — a steady rate the receiver and JetStream
    set, no sleep. It counts from the receiver's total before the first datagram, so
    it can be called again mid-stream; a bus outage test raises ``in_flight`` to send
    while nothing can be published.

    Pacing on ``received`` alone let a loaded CI machine's receiver take datagrams
    faster than it could publish them: its publish queue (``trap.queue_size``,
    10,000) filled and 808 of 20,000 traps were rejected as ``overloaded`` — counted,
    as designed, but these tests are about the workers, not about shedding."""
    before = trap_intake(receiver)["received"]
    socks: dict[str, socket.socket] = {}
    try:
        for start in range(0, len(traps), BATCH):
            for source, payload in traps[start : start + BATCH]:
                sock = socks.get(source)
                if sock is None:
                    sock = socks[source] = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                    sock.bind((source, 0))
                sock.sendto(payload, ("127.0.0.1", receiver.trap_port))
            want = before + min(start + BATCH, len(traps))

            def caught_up(want: int = want) -> bool:
                intake = trap_intake(receiver)
                return intake["received"] >= want and (
                    in_flight is None or intake["published"] >= want - in_flight
                )

            def behind(want: int = want) -> str:
                return f"receiver got {trap_intake(receiver)} of {want} sent"

            wait_until(caught_up, behind, timeout=60)
    finally:
        for sock in socks.values():
            sock.close()


def wait_all_published(receiver: EngineProcess, events: int, timeout: float = 30.0) -> None:
    """Wait until the receiver has published ``events`` traps, then assert its whole
    accounting: every trap received and published, none rejected, failed or queued."""
    wait_until(
        lambda: trap_intake(receiver)["published"] >= events,
        lambda: f"receiver accounting {trap_intake(receiver)}",
        timeout=timeout,
    )
    assert trap_intake(receiver) == {
        "received": events,
        "rejected": 0,
        "published": events,
        "publish_failed": 0,
        "in_flight": 0,
    }


class OutcomesLost(AssertionError):
    """Stored outcomes stopped short of the events JetStream accepted."""


def outcome_rows(dsn: str, schema: str) -> list[asyncpg.Record]:
    """Every ``link_down`` outcome row of the fleet's schema."""
    return fetch(
        dsn,
        f"SELECT outcome_id, event_id, kind FROM {schema}.outcomes WHERE handler_id = 'link_down'",
    )


def outcome_count(dsn: str, schema: str) -> int:
    """How many ``link_down`` outcome rows the schema holds (0 before the table exists)."""
    exists = fetch(dsn, f"SELECT to_regclass('{schema}.outcomes') IS NOT NULL AS ok")[0]["ok"]
    if not exists:
        return 0
    rows = fetch(dsn, f"SELECT count(*) AS n FROM {schema}.outcomes WHERE handler_id = 'link_down'")
    return int(rows[0]["n"])


def wait_for_rows(
    dsn: str, schema: str, want: int, *, timeout: float = SETTLE_TIMEOUT, stall: float = STALL
) -> None:
    """Wait until the schema holds ``want`` ``link_down`` rows; ``OutcomesLost`` after
    ``timeout`` s, or sooner once the count has not moved for ``stall`` s (a
    redelivered message comes back after ``ack_wait``, so a longer stall is a loss)."""
    deadline = time.monotonic() + timeout
    last, moved = -1, time.monotonic()
    while (count := outcome_count(dsn, schema)) < want:
        now = time.monotonic()
        if count != last:
            last, moved = count, now
        elif now - moved > stall:
            raise OutcomesLost(f"stalled at {count}/{want} outcomes for {stall}s")
        if now > deadline:
            raise OutcomesLost(f"{count}/{want} outcomes within {timeout}s")
        time.sleep(0.1)
