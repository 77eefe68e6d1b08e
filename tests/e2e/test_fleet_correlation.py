"""End to end: one correlator for the whole fleet, surviving the leader's death
(issue 10, item 2; ``association.fleet``).

Real processes: one ``netcortex run --role receiver`` and two ``--role worker`` on
one NATS namespace and one PostgreSQL schema, all reading one config file, the
fixture inventory (cable sw1-north Gi1/0/3 ⇄ sw2-north Gi1/0/3) and a short
correlator lease (``association.lease_ttl``). worker-a starts first and takes
the lease; worker-b then only contends.

1. Both ends' linkDown traps (the catalog's v1 linkDown from 192.0.2.11 and
   192.0.2.12) go to the receiver; the two workers share the handling, whoever
   gets which end, and the leader correlates both outcomes from ``reflex.>``:
   exactly one ``cable_pair`` incident with both members in PostgreSQL; the
   non-leader emitted no transition.
2. worker-a is SIGKILLed; worker-b takes the lease over once it lapsed (within
   the lease TTL plus a bound), restores the open incident and replays the
   recent outcomes from the store.
3. Both ends' linkUp traps → the same incident id is resolved; still exactly one
   incident in the store.
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import shared_fixture
from tests.e2e.fleet import FleetProcess, counter, fetch, handled, wait_until
from tests.e2e.harness import bus_overrides, catalog_command, send_traps, snmptrap_argv

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.snmp,
    pytest.mark.nats,
    pytest.mark.slow,
    pytest.mark.xdist_group("e2e-fleet-correlation"),
]

SW1_GI3 = "sw1-north|GigabitEthernet1/0/3"
SW2_GI3 = "sw2-north|GigabitEthernet1/0/3"
AGENTS = ("192.0.2.11", "192.0.2.12")
#: the correlator lease in this test (seconds); production default is 10
TTL = 2.0
#: how long after the lease lapsed a take-over may take: one poll (ttl / 3), the
#: subscription, the store reads and the replay, on a loaded 2-core machine
TAKEOVER_BOUND = 5.0


def _incidents(dsn: str, schema: str) -> list[dict[str, Any]]:
    """Every stored incident (id, rule, state, members) straight from PostgreSQL."""
    table = f'"{schema}".incidents'
    if fetch(dsn, f"SELECT to_regclass('{table}') IS NULL AS none")[0]["none"]:
        return []
    return [dict(r) for r in fetch(dsn, f"SELECT * FROM {table}")]


def _link_traps(catalog: dict[str, Any], key: str, port: int) -> list[list[str]]:
    """The catalog's v1 ``key`` trap (ifIndex 3) from both ends of the fixture cable."""
    command = catalog_command(catalog, key, "v1")
    return [snmptrap_argv(command, port, replace={"192.0.2.11": agent}) for agent in AGENTS]


def _members(row: dict[str, Any]) -> set[str]:
    raw = row.get("members")
    if isinstance(raw, str):
        raw = json.loads(raw)
    return set(raw or [])


def test_one_incident_across_workers_and_takeover_after_sigkill(
    tmp_path: Path,
    request: pytest.FixtureRequest,
    postgres_dsn: str,
    postgres_schema: str,
    snmp_catalog: dict[str, Any],
) -> None:
    """Both ends' linkDowns handled by a two-worker fleet → one cable_pair incident with
    both members, correlated by the lease holder only; SIGKILL of the holder → the other
    worker takes over within the lease TTL plus a bound; both linkUps → the same incident
    id resolved, still the only incident."""
    config = {
        "bus": bus_overrides("nats", request),
        "store": {
            "backend": "postgres",
            "postgres_dsn": postgres_dsn,
            "postgres_schema": postgres_schema,
            "flush_interval": 0.01,
        },
        "dedup": {"backend": "nats"},
        "trap": {"communities": ["public"]},
        "inventory": {
            "backend": "file",
            "path": str(shared_fixture("netbox", "inventory.json")),
        },
        "association": {"lease_ttl": TTL},
    }
    procs: list[FleetProcess] = []
    try:
        worker_a = FleetProcess(tmp_path / "worker-a", config, "worker").start()
        procs.append(worker_a)
        acquired = worker_a.wait_for_log("association_leader_acquired", timeout=15)
        assert acquired["restored"] == 0
        worker_b = FleetProcess(tmp_path / "worker-b", config, "worker").start()
        procs.append(worker_b)
        receiver = FleetProcess(tmp_path / "rx", config, "receiver").start()
        procs.append(receiver)
        assert counter(worker_a, "netcortex_association_leader") == 1
        assert counter(worker_b, "netcortex_association_leader") == 0

        # 1. The cable cut: one incident, whichever worker handled which end.
        send_traps(_link_traps(snmp_catalog, "linkDown", receiver.trap_port))
        opened = worker_a.wait_for_log("incident_opened", rule="cable_pair", timeout=20)
        assert opened["members"] == 2

        def one_open_with_both() -> bool:
            rows = _incidents(postgres_dsn, postgres_schema)
            return len(rows) == 1 and _members(rows[0]) == {SW1_GI3, SW2_GI3}

        wait_until(one_open_with_both, "one stored incident with both ends", 20, interval=0.05)
        (row,) = _incidents(postgres_dsn, postgres_schema)
        assert row["incident_id"] == opened["incident_id"]
        assert row["rule"] == "cable_pair"
        assert row["state"] == "open"
        shares = {"worker-a": handled(worker_a), "worker-b": handled(worker_b)}
        assert sum(shares.values()) == 2, shares  # each end once, by either worker
        # Only the lease holder correlates: the other has no AssociationSink at all.
        assert not worker_b.logs("incident_opened")
        assert counter(worker_b, "netcortex_incidents_transitions_total") == 0

        # 2. SIGKILL the leader: worker-b takes over once the lease lapsed.
        assert worker_a.proc is not None
        killed = time.monotonic()
        worker_a.proc.send_signal(signal.SIGKILL)
        assert worker_a.proc.wait(timeout=10) == -signal.SIGKILL
        took = worker_b.wait_for_log(
            "association_leader_acquired", timeout=TTL + TAKEOVER_BOUND + 5
        )
        elapsed = time.monotonic() - killed
        assert elapsed <= TTL + TAKEOVER_BOUND, elapsed
        assert took["restored"] == 1
        assert took["replayed"] >= 2  # both linkDowns, from the outcome store
        assert counter(worker_b, "netcortex_association_leader") == 1

        # 3. Recovery of both ends resolves the same incident.
        send_traps(_link_traps(snmp_catalog, "linkUp", receiver.trap_port))
        resolved = worker_b.wait_for_log("incident_resolved", rule="cable_pair", timeout=20)
        assert resolved["incident_id"] == opened["incident_id"]

        def resolved_in_store() -> bool:
            rows = _incidents(postgres_dsn, postgres_schema)
            return len(rows) == 1 and rows[0]["state"] == "resolved"

        wait_until(resolved_in_store, "the incident resolved in the store", 20, interval=0.05)
        (row,) = _incidents(postgres_dsn, postgres_schema)
        assert row["incident_id"] == opened["incident_id"]
        # Nothing was correlated twice: no transition opened a second incident.
        assert not worker_b.logs("incident_opened")

        for proc in (receiver, worker_b):
            proc.stop_cleanly()
        lost = worker_b.logs("association_leader_lost")
        assert [line["reason"] for line in lost] == ["stopped"]
    finally:
        for proc in procs:
            proc.__exit__(None, None, None)
