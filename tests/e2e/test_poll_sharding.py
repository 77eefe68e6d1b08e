"""End to end: two ``netcortex run --role receiver`` share the poll targets (issue 10).

Real processes only: two receivers on one NATS namespace and one PostgreSQL
schema (the shared poll state), both configured with the same twelve
``poll.targets`` — twelve device names for one real ``snmpd``
(``tests.servers.ScriptedSnmpAgent``). ``poll.sharding`` is ``auto`` (on for a
receiver on NATS); the membership heartbeat is 0.5 s (TTL 2 s).

Who polled what comes from each receiver's own words: its debug ``poll_done``
line per successful poll (device name), its ``netcortex_poll_shard_owned_targets``
gauge and ``netcortex_poll_shard_members`` on ``/metrics``. Every wait is on a
condition with a deadline.

1. Once both see two members and their owned gauges add up to twelve, every
   device is polled (at least twice) in a window and by exactly one receiver.
2. The receiver with the larger share is stopped (SIGTERM: it leaves at once;
   SIGKILL: its key expires after the TTL); the other then owns all twelve and
   polls each of the stopped one's devices within a bound, and reports no
   event while doing so (the agent did not change; the takeover diffs against
   the shared state).
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.fleet import START_TIMEOUT, FleetProcess, counter, wait_until
from tests.e2e.harness import bus_overrides
from tests.servers import ScriptedSnmpAgent, running_agent

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.nats,
    pytest.mark.snmp,
    pytest.mark.slow,
    pytest.mark.xdist_group("e2e-poll-sharding"),
]

DEVICES = [f"shard-sw{i:02d}" for i in range(12)]
INTERVAL = 0.5
HEARTBEAT = 0.5
TTL = 2  # 3 heartbeats, whole seconds rounded up


class Receiver(FleetProcess):
    """``netcortex run --role receiver`` (traps on port 0, HTTP with ``/metrics``)."""

    def __init__(self, tmp_path: Path, overrides: dict[str, Any]) -> None:
        super().__init__(tmp_path, overrides, "receiver")

    def polled(self, since: int = 0) -> list[str]:
        """The devices of this receiver's ``poll_done`` lines after line ``since``."""
        return [
            str(line["device"]) for line in self.lines[since:] if line.get("event") == "poll_done"
        ]

    def gauge(self, name: str) -> int:
        return int(self.metric(name))


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[ScriptedSnmpAgent]:
    with running_agent(tmp_path / "agent") as server:
        yield server


@pytest.fixture
def config(
    request: pytest.FixtureRequest,
    agent: ScriptedSnmpAgent,
    postgres_dsn: str,
    postgres_schema: str,
) -> dict[str, Any]:
    """The receivers' one config: NATS, the shared poll state in PostgreSQL, twelve
    targets on the one agent, debug logs (``poll_done``)."""
    return {
        "bus": bus_overrides("nats", request),
        "store": {
            "backend": "postgres",
            "postgres_dsn": postgres_dsn,
            "postgres_schema": postgres_schema,
        },
        "poll": {
            "enabled": True,
            "interval_seconds": INTERVAL,
            "timeout_seconds": 1.0,
            "inventory": False,
            "bgp": False,
            "membership_heartbeat_seconds": HEARTBEAT,
            "targets": [{"device": d, "host": agent.host, "port": agent.port} for d in DEVICES],
        },
        "log": {"level": "debug", "format": "json"},
    }


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGKILL], ids=["leave", "kill"])
def test_each_target_polled_by_one_receiver_and_taken_over(
    tmp_path: Path, config: dict[str, Any], stop: signal.Signals
) -> None:
    """Every target is polled by exactly one of two receivers; when one stops (or is
    killed) the other polls all of them within a bound, without false events."""
    rx = [Receiver(tmp_path / f"rx{i}", config) for i in range(2)]
    try:
        with ThreadPoolExecutor(max_workers=2) as pool:
            for started in pool.map(lambda r: r.start(timeout=START_TIMEOUT), rx):
                assert started.alive

        def state() -> str:
            return ", ".join(
                f"rx{i}: members={r.gauge('netcortex_poll_shard_members')} "
                f"owned={r.gauge('netcortex_poll_shard_owned_targets')}"
                for i, r in enumerate(rx)
            )

        def converged() -> bool:
            return all(r.gauge("netcortex_poll_shard_members") == 2 for r in rx) and sum(
                r.gauge("netcortex_poll_shard_owned_targets") for r in rx
            ) == len(DEVICES)

        wait_until(converged, state, timeout=15, interval=0.05)

        # 1. a window in which every device is polled at least twice: one poller each
        marks = [len(r.lines) for r in rx]

        def window() -> list[list[str]]:
            return [r.polled(m) for r, m in zip(rx, marks, strict=True)]

        def each_polled_twice() -> bool:
            seen = [d for polled in window() for d in polled]
            return all(seen.count(d) >= 2 for d in DEVICES)

        wait_until(each_polled_twice, lambda: f"polled: {window()}", timeout=20, interval=0.05)
        shares = [set(polled) for polled in window()]
        assert not shares[0] & shares[1], f"polled by both: {shares[0] & shares[1]}"
        assert shares[0] | shares[1] == set(DEVICES)
        for r, share in zip(rx, shares, strict=True):
            assert r.gauge("netcortex_poll_shard_owned_targets") == len(share)

        # 2. stop the receiver with the larger share; the other takes it over
        big = 0 if len(shares[0]) >= len(shares[1]) else 1
        stopped, survivor = rx[big], rx[1 - big]
        taken = shares[big]
        mark = len(survivor.lines)
        stopped.stop(stop)
        took = wait_until(
            lambda: taken <= set(survivor.polled(mark)),
            lambda: f"survivor polled {sorted(set(survivor.polled(mark)))} of {sorted(taken)}",
            timeout=20,
            interval=0.05,
        )
        # leave: heard at once; kill: the TTL plus a heartbeat. Then the first poll
        # of a device taken over waits two heartbeats (the handover: the previous
        # owner's reports land in the state) and a random part of an interval
        # (+ jitter), on a loaded 2-core machine (+ slack).
        detect = 0 if stop == signal.SIGTERM else TTL + HEARTBEAT
        bound = detect + 2 * HEARTBEAT + INTERVAL * 1.1 + 5.0
        assert took < bound, f"takeover took {took:.1f}s (bound {bound:.1f}s)"
        assert survivor.gauge("netcortex_poll_shard_owned_targets") == len(DEVICES)
        assert survivor.gauge("netcortex_poll_shard_members") == 1
        changed = survivor.logs("poll_shard_changed")[-1]
        assert (changed["owned"], changed["acquired"]) == (len(DEVICES), len(taken))
        # the agent never changed and the takeover diffs against the shared state
        assert counter(survivor, "netcortex_poll_published_total") == 0
        survivor.stop_cleanly()
        if stop == signal.SIGTERM:
            assert stopped.returncode == 0
            assert stopped.logs("poll_shard_left")
    finally:
        for r in rx:
            r.__exit__(None, None, None)
