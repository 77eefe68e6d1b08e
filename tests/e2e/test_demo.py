"""End to end: ``netcortex demo`` against the real engine, and with its embedded one.

* The real ``netcortex run`` process (``EngineProcess``) on the examples'
  inventory (examples/inventory.yaml, the `make run` one) gets the demo from a
  ``python -m netcortex demo --config <that engine's config>`` subprocess: real
  SNMPv1 traps over UDP, a real webhook POST. The printed summary, the incident
  rules, exit 0, and the incidents in the engine's own store and API are checked.
* ``netcortex demo --embedded --json --record FILE`` with no engine: exit 0, the
  JSON's incidents and the recording (one event per line).

No net-snmp tools are needed (the demo encodes its own traps).
"""

from __future__ import annotations

import asyncio
import copy
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from netcortex.bridge.record import read_recording
from netcortex.memory.episodic.incidents import SqliteIncidentStore
from tests.conftest import REPO
from tests.e2e.harness import EngineProcess

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e-demo")]

#: 5 (reboot) + 6 (cable cut) + 8 (flap, flap_high 6) traps + 1 webhook
EVENTS = 20
RULES = {"device_root", "cable_pair", "flapping"}
SUMMARY = f"{EVENTS} events → {EVENTS} outcomes → 3 incidents"


def _demo(*args: str, cwd: Path, env: dict[str, str], timeout: float = 90.0) -> Any:
    return subprocess.run(
        [sys.executable, "-m", "netcortex", "demo", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=timeout,
        check=False,
    )


@pytest.mark.slow
def test_demo_against_the_running_engine(tmp_path: Path) -> None:
    inventory = {"backend": "file", "path": str(REPO / "examples" / "inventory.yaml")}
    with EngineProcess(tmp_path, {"inventory": inventory}) as engine:
        # the engine's config with the ports it bound (it asked for port 0)
        config = copy.deepcopy(engine.config_data)
        config["trap"]["port"] = engine.trap_port
        config["http"]["port"] = engine.http_port
        demo_config = tmp_path / "demo.yaml"
        demo_config.write_text(yaml.safe_dump(config), encoding="utf-8")
        done = engine.cli("demo", "--config", str(demo_config), timeout=90.0)
        assert done.returncode == 0, (done.stdout, done.stderr)
        out = done.stdout
        assert f"engine at {engine.base_url} answers" in out
        assert "embedded" not in out
        assert SUMMARY in out
        for rule in RULES:
            assert f"  {rule}  " in out, rule
        assert "[1/4] core switch reboot" in out
        assert "[4/4] Meraki IDS alert" in out

        # the engine's own API and store have them
        resp = engine.api("GET", "/api/v1/incidents", params={"limit": 100})
        assert resp.status_code == 200
        listed = {(i["rule"], i["root"], i["state"]) for i in resp.json()["items"]}
        assert ("device_root", "device:sw1-north", "open") in listed
        assert (
            "cable_pair",
            "cable:r1-north|GigabitEthernet0/0/0~r1-south|GigabitEthernet0/0/0",
            "resolved",
        ) in listed
        assert ("flapping", "bgp:r1-north|203.0.113.9", "open") in listed
        stored = asyncio.run(_open_in_store(engine.db_path))
        assert {"device_root", "flapping"} <= {i.rule for i in stored}
        outcomes = engine.outcomes()
        assert len(outcomes) == EVENTS
        assert {o.handler_id for o in outcomes} >= {
            "device_reboot",
            "link_down",
            "link_up",
            "bgp_drop",
            "bgp_established",
            "security_webhook",
        }

        # --record needs the engine to record itself: a clear usage error
        again = engine.cli("demo", "-c", str(demo_config), "--record", str(tmp_path / "x.jsonl"))
        assert again.returncode == 2, (again.stdout, again.stderr)
        assert "netcortex run --record FILE" in again.stderr
        assert not (tmp_path / "x.jsonl").exists()


async def _open_in_store(db: Path) -> list[Any]:
    async with SqliteIncidentStore(db) as store:
        return list(await store.open_incidents())


@pytest.mark.slow
def test_demo_embedded_json_and_record(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NETCORTEX_")}
    record = tmp_path / "demo.jsonl"
    done = _demo("--embedded", "--json", "--record", str(record), cwd=tmp_path, env=env)
    assert done.returncode == 0, (done.stdout, done.stderr)
    assert "started an embedded engine" in done.stderr
    report = json.loads(done.stdout)
    assert report["ok"] is True
    assert report["missing"] == []
    assert report["mode"] == "embedded"
    assert report["events"] == EVENTS
    assert report["outcome_count"] == EVENTS == len(report["outcomes"])
    incidents = {i["rule"]: i for i in report["incidents"]}
    assert set(incidents) == RULES
    device = incidents["device_root"]
    assert device["root"] == "device:sw1-north"
    assert device["state"] == "open"
    assert len(device["members"]) == 5
    assert len(device["inhibited"]) == 4
    cable = incidents["cable_pair"]
    assert cable["state"] == "resolved"
    assert "r1-north|203.0.113.1" in cable["members"]  # the BGP session joined the cable
    assert incidents["flapping"]["flapping"] is True
    handlers = {e["handler_id"] for e in device["evidence_outcomes"]}
    assert handlers == {"device_reboot", "link_down"}
    assert [a["title"] for a in report["acts"]] == [
        "core switch reboot",
        "cable cut",
        "BGP flap",
        "Meraki IDS alert",
    ]
    # the recording: every event the engine received, one encode_event per line
    recording = read_recording(record)
    assert recording.bad == []
    assert len(recording.events) == EVENTS == report["recorded_events"]
    assert all(e.received_at is not None for e in recording.events)
    assert {e.source for e in recording.events} == {"snmp.trap", "meraki.webhook"}


def test_demo_says_when_the_engine_lacks_the_demo_network(tmp_path: Path) -> None:
    with EngineProcess(tmp_path, {"inventory": {"backend": "none"}}) as engine:
        config = copy.deepcopy(engine.config_data)
        config["trap"]["port"] = engine.trap_port
        config["http"]["port"] = engine.http_port
        demo_config = tmp_path / "demo.yaml"
        demo_config.write_text(yaml.safe_dump(config), encoding="utf-8")
        done = engine.cli("demo", "-c", str(demo_config), "--timeout", "3")
        assert done.returncode == 1, (done.stdout, done.stderr)
        assert "stopping after act 1" in done.stdout
        assert "MISSING:" in done.stdout
        assert "does not know 192.0.2.11 (sw1-north)" in done.stdout
        assert "examples/inventory.yaml" in done.stderr
