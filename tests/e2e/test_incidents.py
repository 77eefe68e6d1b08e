"""End to end: a cable cut becomes one incident in ``netcortex run`` (issue 8, item 3).

The real engine process on the shared fixture inventory gets net-snmp linkDown
traps for both ends of the fixture cable sw1-north Gi1/0/3 ⇄ sw2-north Gi1/0/3
(the catalog's v1 linkDown: agent-addr 192.0.2.11 is sw1-north, ifIndex 3; the
same trap from 192.0.2.12 is sw2-north). The incident must appear in the SQLite
incident store beside the outcomes, and ``incident_opened`` in the log.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from netcortex.contracts.incidents import Incident
from netcortex.memory.episodic.incidents import SqliteIncidentStore
from tests.conftest import shared_fixture
from tests.e2e.harness import EngineProcess, catalog_command, send_traps, snmptrap_argv

pytestmark = [pytest.mark.e2e, pytest.mark.snmp, pytest.mark.xdist_group("e2e-incidents")]

SW1_GI3 = "sw1-north|GigabitEthernet1/0/3"
SW2_GI3 = "sw2-north|GigabitEthernet1/0/3"


def link_down_from(catalog: dict[str, Any], port: int, agent: str) -> list[str]:
    """The catalog's v1 linkDown (ifIndex 3) with agent-addr ``agent``."""
    command = catalog_command(catalog, "linkDown", "v1")
    return snmptrap_argv(command, port, replace={"192.0.2.11": agent})


async def _open_incidents(db: Path) -> list[Incident]:
    async with SqliteIncidentStore(db) as store:
        return list(await store.open_incidents())


def wait_for_incidents(db: Path, timeout: float = 10.0) -> list[Incident]:
    """The open incidents in the engine's store file, once there is one (or fail)."""
    deadline = time.monotonic() + timeout
    while True:
        found = asyncio.run(_open_incidents(db))
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def test_cable_cut_is_one_incident_in_the_store(
    tmp_path: Path, snmp_catalog: dict[str, Any]
) -> None:
    inventory = {"backend": "file", "path": str(shared_fixture("netbox", "inventory.json"))}
    with EngineProcess(tmp_path, {"inventory": inventory}) as engine:
        started = engine.wait_for_log("engine_started")
        assert started["association"] is True
        port = engine.trap_port
        send_traps(
            [
                link_down_from(snmp_catalog, port, "192.0.2.11"),
                link_down_from(snmp_catalog, port, "192.0.2.12"),
            ]
        )
        line = engine.wait_for_log("incident_opened", rule="cable_pair", timeout=10.0)
        assert line["members"] == 2
        assert line["severity"] == "high"

        (incident,) = wait_for_incidents(engine.db_path)
        assert incident.incident_id == line["incident_id"]
        assert incident.rule == "cable_pair"
        assert set(incident.members) == {SW1_GI3, SW2_GI3}
        assert len(incident.evidence) == 2
        engine.stop_cleanly()
