"""End to end: a cable cut becomes one incident in ``netcortex run`` (issue 8, item 3).

The real engine process on the shared fixture inventory gets net-snmp linkDown
traps for both ends of the fixture cable sw1-north Gi1/0/3 ⇄ sw2-north Gi1/0/3
(the catalog's v1 linkDown: agent-addr 192.0.2.11 is sw1-north, ifIndex 3; the
same trap from 192.0.2.12 is sw2-north). The incident must appear in the SQLite
incident store beside the outcomes, and ``incident_opened`` in the log.
"""

from __future__ import annotations

import asyncio
import json
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from netcortex.app import Engine
from netcortex.config import Config
from netcortex.contracts.bus import Subscription
from netcortex.contracts.incidents import Incident, IncidentState
from netcortex.memory.episodic.incidents import SqliteIncidentStore
from netcortex.thalamus.nats import NatsEventBus
from tests.conftest import shared_fixture
from tests.e2e.harness import (
    BACKENDS,
    EngineProcess,
    bus_overrides,
    catalog_command,
    send_traps,
    snmptrap_argv,
)

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


# ---------------------------------------------------------------- on the bus, both backends


def _link_trap(catalog: dict[str, Any], key: str, port: int, agent: str) -> list[str]:
    """The catalog's v1 ``key`` trap (``linkDown``/``linkUp``, ifIndex 3) from ``agent``."""
    return snmptrap_argv(catalog_command(catalog, key, "v1"), port, replace={"192.0.2.11": agent})


async def _snmptrap(argv: list[str]) -> None:
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    _, err = await proc.communicate()
    assert proc.returncode == 0, err


async def _next_transition(sub: Subscription, within: float = 10.0) -> tuple[str, dict[str, Any]]:
    """The next ``incident.<state>.<id>`` message as ``(state, incident dict)``."""
    message = await sub.next(timeout=within)
    await message.ack()
    _root, state, incident_id = message.subject.split(".", 2)
    body: dict[str, Any] = json.loads(message.data)
    assert body["incident_id"] == incident_id
    return state, body


@pytest.mark.parametrize("backend", BACKENDS)
async def test_cable_incident_lifecycle_on_the_bus(
    backend: str,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    snmp_catalog: dict[str, Any],
) -> None:
    """Issue 8, items 2-3 over the real bus: both ends of the fixture cable go down →
    ``incident.opened.<id>`` (one cable_pair incident, opened within 1 s of the second
    outcome, by the engine's own clock), both come back → ``incident.resolved.<id>``
    for the same id; the store holds it resolved with all four outcomes as evidence.
    On NATS the subscriber is a separate client on the engine's namespace (the wire,
    not the engine's own object)."""
    bus = bus_overrides(backend, request)
    inventory = {"backend": "file", "path": str(shared_fixture("netbox", "inventory.json"))}
    config = Config.model_validate(
        {
            "bus": bus,
            "inventory": inventory,
            "store": {"sqlite_path": str(tmp_path / "outcomes.db"), "flush_interval": 0.005},
            "trap": {"host": "127.0.0.1", "port": 0},
            "http": {"enabled": False},
        }
    )
    async with Engine(config) as engine:
        if backend == "nats":
            watcher: Any = NatsEventBus(config.bus)
            await watcher.start()
        else:
            watcher = engine.bus
        try:
            sub = await watcher.subscribe("incident.>")
            port = engine.bound_addresses["trap"][1]
            await _snmptrap(_link_trap(snmp_catalog, "linkDown", port, "192.0.2.11"))
            await _snmptrap(_link_trap(snmp_catalog, "linkDown", port, "192.0.2.12"))
            state, opened = await _next_transition(sub)
            assert state == "opened"
            assert opened["rule"] == "cable_pair"
            assert set(opened["members"]) == {SW1_GI3, SW2_GI3}
            assert len(opened["evidence"]) == 2

            await engine.store.flush()
            downs = [await engine.store.get(o) for o in opened["evidence"]]
            assert all(d is not None for d in downs)
            second = max(d.recorded_at for d in downs if d is not None)
            lag = (datetime.fromisoformat(opened["opened_at"]) - second).total_seconds()
            assert lag < 1.0, f"incident opened {lag:.3f} s after the second outcome"

            await _snmptrap(_link_trap(snmp_catalog, "linkUp", port, "192.0.2.11"))
            state, updated = await _next_transition(sub)
            assert (state, updated["state"]) == ("updated", "open")  # one end is back
            await _snmptrap(_link_trap(snmp_catalog, "linkUp", port, "192.0.2.12"))
            state, resolved = await _next_transition(sub)
            assert state == "resolved"
            assert resolved["incident_id"] == opened["incident_id"]
            assert resolved["state"] == "resolved"
            assert resolved["version"] > updated["version"] > opened["version"]
            await sub.close()
        finally:
            if backend == "nats":
                await watcher.close()
        assert engine.incident_store is not None
        assert engine.incidents is not None
        await engine.incidents.idle()
        stored = await engine.incident_store.get(opened["incident_id"])
        assert stored is not None
        assert stored.state is IncidentState.RESOLVED
        assert len(stored.evidence) == 4
