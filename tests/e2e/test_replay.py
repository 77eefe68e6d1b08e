"""End to end: ``netcortex run --record F`` then ``netcortex replay F`` (issue 8, item 5).

The real engine process on the shared fixture inventory records every sensory
event while it gets real net-snmp traps: both ends of the fixture cable
sw1-north Gi1/0/3 ⇄ sw2-north Gi1/0/3 down (one ``cable_pair`` incident), the
first one again inside link_down's dedup window (``skipped``), a warmStart from
sw1-north (``device_reboot``), a BGP drop and sw1-north's end coming back up.
After a clean stop, ``netcortex replay F --json`` (its own process, the same
config) must reproduce exactly the outcome ids and kinds the engine stored, and
the same incident ids and rules.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from netcortex.bridge.record import read_recording
from netcortex.contracts.incidents import Incident, IncidentQuery
from netcortex.contracts.memory import OutcomeQuery
from netcortex.memory.episodic.incidents import SqliteIncidentStore
from tests.conftest import shared_fixture
from tests.e2e.harness import (
    BACKENDS,
    EngineProcess,
    bus_overrides,
    catalog_command,
    send_traps,
    snmptrap_argv,
)

pytestmark = [pytest.mark.e2e, pytest.mark.snmp]


def _trap(catalog: dict[str, Any], key: str, port: int, agent: str | None = None) -> list[str]:
    """The catalog's v1 ``key`` trap, from ``agent`` instead of 192.0.2.11 if given."""
    command = catalog_command(catalog, key, "v1")
    return snmptrap_argv(command, port, replace={"192.0.2.11": agent} if agent else None)


async def _incidents(db: Path) -> list[Incident]:
    async with SqliteIncidentStore(db) as store:
        return list(await store.query(IncidentQuery(limit=1000)))


@pytest.mark.parametrize("backend", BACKENDS)
def test_replay_reproduces_the_live_run(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path, snmp_catalog: dict[str, Any]
) -> None:
    """On either bus: the recorder's plain subscription sees every sensory event."""
    recording = tmp_path / "events.jsonl"
    inventory = {"backend": "file", "path": str(shared_fixture("netbox", "inventory.json"))}
    overrides = {"inventory": inventory, "bus": bus_overrides(backend, request)}
    with EngineProcess(tmp_path, overrides, args=["--record", str(recording)]) as engine:
        port = engine.trap_port
        send_traps([_trap(snmp_catalog, "linkDown", port, "192.0.2.11")])
        send_traps([_trap(snmp_catalog, "linkDown", port, "192.0.2.12")])
        engine.wait_for_log("incident_opened", rule="cable_pair", timeout=10.0)
        # the same fact again, inside link_down's 60 s window: skipped
        send_traps([_trap(snmp_catalog, "linkDown", port, "192.0.2.11")])
        engine.wait_for_outcomes(lambda o: o.kind.value == "skipped", timeout=10.0)
        # One at a time: the correlator sees the outcomes in receive order, as replay does
        # (live, different handlers' outcomes of back-to-back events may overtake).
        for key, agent, handler in (
            ("warmStart", None, "device_reboot"),
            ("bgpBackwardTransition", None, "bgp_drop"),
            ("linkUp", "192.0.2.11", "link_up"),
        ):
            send_traps([_trap(snmp_catalog, key, port, agent)])
            engine.wait_for_outcomes(lambda o, h=handler: o.handler_id == h, timeout=10.0)
        stopped = engine.stop_cleanly()
        assert engine.logs("recorder_stopped")[0]["dropped"] == 0

    live = {o.outcome_id: o.kind.value for o in engine.outcomes(OutcomeQuery(limit=1000))}
    live_incidents = {i.incident_id: i.rule for i in asyncio.run(_incidents(engine.db_path))}
    assert "skipped" in live.values()
    assert "cable_pair" in live_incidents.values()

    recorded = read_recording(recording)
    assert recorded.bad == []
    assert len(recorded.events) == stopped["events"] == 6

    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "netcortex",
            "replay",
            str(recording),
            "--config",
            str(engine.config_path),
            "--json",
        ],
        capture_output=True,
        text=True,
        env=engine.env,
        cwd=tmp_path,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["events"] == 6
    assert {o["outcome_id"]: o["kind"] for o in doc["outcomes"]} == live
    assert {i["id"]: i["rule"] for i in doc["incidents"]} == live_incidents
    assert doc["by_kind"]["skipped"] >= 1
