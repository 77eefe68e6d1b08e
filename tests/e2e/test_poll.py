"""End to end: the real ``netcortex run`` polling a real ``snmpd`` whose state the test sets.

The agent is ``tests.servers.ScriptedSnmpAgent`` (net-snmp's ``snmpd`` serving
sysUpTime, IF-MIB and BGP4-MIB from a JSON file through ``pass_persist``); the
engine polls it every 0.3 s as ``poll.targets`` device ``lab-sw9``, with a tiny
inventory that puts ``lab-sw9`` at 127.0.0.1 (so a trap sent from 127.0.0.1 and the
poll of the agent canonicalise to the same ``lab-sw9|GigabitEthernet1/0/3``).
Outcomes are read through ``GET /api/v1/outcomes``.

Synchronisation without sleeps: ``netcortex_received_total{source="snmp.poll"}``
counts successful polls, and a device's next poll starts only after the previous
one's report is published and saved, so a change made once n polls have
succeeded is diffed against a stored snapshot. A claim that something was *not*
reported is checked by then causing a change and asserting that its outcome is
the only new one.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import yaml

from tests.e2e.harness import EngineProcess, catalog_command, send_traps, snmptrap_argv
from tests.servers import AgentBgpPeer, AgentInterface, ScriptedSnmpAgent, running_agent

# Each scenario starts its own engine (and agent); one group keeps them off each other's cores.
pytestmark = [pytest.mark.e2e, pytest.mark.snmp, pytest.mark.xdist_group("e2e-poll")]

SYS_UPTIME = "1.3.6.1.2.1.1.3.0"
DEVICE = "lab-sw9"
GI3 = f"{DEVICE}|GigabitEthernet1/0/3"
GI4 = f"{DEVICE}|GigabitEthernet1/0/4"
PEER = "192.0.2.1"

INTERFACES = (
    AgentInterface(3, "Gi1/0/3", "GigabitEthernet1/0/3"),
    AgentInterface(4, "Gi1/0/4", "GigabitEthernet1/0/4"),
)


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[ScriptedSnmpAgent]:
    """A running scripted agent: Gi1/0/3 and Gi1/0/4 up, BGP peer 192.0.2.1 established."""
    with running_agent(tmp_path / "agent", INTERFACES, [AgentBgpPeer(PEER)]) as server:
        yield server


def write_inventory(path: Path) -> Path:
    """A NetBox-shaped inventory: ``lab-sw9`` at 127.0.0.1 with ifIndex 3 and 4."""
    inventory = {
        "/api/dcim/sites/": {"results": [{"id": 1, "name": "Lab", "slug": "lab"}]},
        "/api/dcim/devices/": {
            "results": [
                {
                    "id": 9,
                    "name": DEVICE,
                    "site": {"id": 1, "name": "Lab", "slug": "lab"},
                    "role": {"id": 2, "name": "Switch", "slug": "switch"},
                    "primary_ip4": {"id": 9, "address": "127.0.0.1/8"},
                }
            ]
        },
        "/api/dcim/interfaces/": {
            "results": [
                {
                    "id": 90 + i,
                    "device": {"id": 9, "name": DEVICE},
                    "name": f"GigabitEthernet1/0/{i}",
                    "custom_fields": {"snmp_ifindex": i},
                }
                for i in (3, 4)
            ]
        },
    }
    path.write_text(yaml.safe_dump(inventory, sort_keys=False), encoding="utf-8")
    return path


def overrides(agent: ScriptedSnmpAgent, tmp_path: Path) -> dict[str, dict[str, Any]]:
    """Poll ``agent`` as ``lab-sw9`` every 0.3 s; traps with community ``public``."""
    return {
        "poll": {
            "enabled": True,
            "interval_seconds": 0.3,
            "inventory": False,
            "state_path": str(tmp_path / "poll_state.db"),
            "targets": [{"device": DEVICE, "host": agent.host, "port": agent.port}],
        },
        "inventory": {"backend": "file", "path": str(write_inventory(tmp_path / "inv.yaml"))},
        "trap": {"communities": ["public"]},
    }


def polls(engine: EngineProcess) -> int:
    """Successful polls so far (``netcortex_received_total{source="snmp.poll"}``)."""
    return int(engine.metric("netcortex_received_total", source="snmp.poll"))


def wait_polls(engine: EngineProcess, count: int, timeout: float = 15.0) -> int:
    """Wait until ``count`` polls have succeeded in total; return the total."""
    deadline = time.monotonic() + timeout
    while (done := polls(engine)) < count:
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"{done}/{count} successful polls within {timeout}s; "
                f"last lines: {engine.lines[-10:]}"
            )
        assert engine.alive, f"engine died; last lines: {engine.lines[-10:]}"
        time.sleep(0.02)
    return done


def handler(name: str, target: str | None = None) -> Callable[[dict[str, Any]], bool]:
    """A predicate on API outcomes: handler id (and target)."""
    return lambda o: o["handler_id"] == name and (target is None or o["target"] == target)


def assert_from_poll(outcome: dict[str, Any], event_class: str) -> None:
    """The outcome was caused by a poll event of ``event_class``."""
    assert outcome["subject"].startswith(f"sensory.snmp.poll.{event_class}."), outcome["subject"]


# ------------------------------------------------------------- a. link down / up


def test_oper_status_flips_become_link_outcomes(agent: ScriptedSnmpAgent, tmp_path: Path) -> None:
    """Unchanged polls report nothing; ifOperStatus 1→2 is one link_down (admin_down
    false), 2→1 one link_up, and an operator shut (admin and oper down) a link_down
    flagged admin_down — each on the inventory's names, caused by a poll event."""
    with EngineProcess(tmp_path, overrides(agent, tmp_path)) as engine:
        engine.wait_for_log("poll_started", targets=1)
        wait_polls(engine, 3)  # a baseline and two unchanged diffs

        agent.set_interface(3, oper=2)
        (down,) = engine.wait_for_api_outcomes(handler("link_down", GI3))
        assert (down["kind"], down["severity"], down["device"]) == ("logged", "high", DEVICE)
        assert_from_poll(down, "link_down")
        assert down["details"]["admin_down"] is False
        assert down["details"]["if_oper_status"] == 2
        # the baseline and the unchanged polls reported nothing: the down is all there is
        assert [o["outcome_id"] for o in engine.api_outcomes()] == [down["outcome_id"]]

        agent.set_interface(3, oper=1)
        (up,) = engine.wait_for_api_outcomes(handler("link_up", GI3))
        assert (up["kind"], up["severity"]) == ("logged", "info")
        assert_from_poll(up, "link_up")
        assert up["details"]["if_oper_status"] == 1

        agent.set_interface(4, admin=2, oper=2)
        (shut,) = engine.wait_for_api_outcomes(handler("link_down", GI4))
        assert shut["kind"] == "logged"
        assert shut["details"]["admin_down"] is True
        assert shut["details"]["if_admin_status"] == 2

        wait_polls(engine, polls(engine) + 2)  # nothing more comes
        listed = sorted((o["handler_id"], o["target"]) for o in engine.api_outcomes())
        assert listed == [("link_down", GI3), ("link_down", GI4), ("link_up", GI3)]
        engine.stop_cleanly()
    assert engine.logs("poll_stopped")


# ------------------------------------------------------------------- b. BGP drop


def test_bgp_session_drop_becomes_bgp_drop(agent: ScriptedSnmpAgent, tmp_path: Path) -> None:
    """bgpPeerState established(6) → idle(1) is one high bgp_drop on lab-sw9's peer."""
    with EngineProcess(tmp_path, overrides(agent, tmp_path)) as engine:
        wait_polls(engine, 2)
        agent.set_bgp_peer(PEER, 1)
        (drop,) = engine.wait_for_api_outcomes(handler("bgp_drop"))
        assert (drop["kind"], drop["severity"], drop["device"]) == ("logged", "high", DEVICE)
        assert drop["target"] == f"{DEVICE}|{PEER}"
        assert_from_poll(drop, "bgp_backward_transition")
        assert [o["outcome_id"] for o in engine.api_outcomes()] == [drop["outcome_id"]]
        engine.stop_cleanly()


# ------------------------------------------------------ c. trap + poll corroborate


def test_trap_and_poll_of_one_link_down_are_one_fact(
    agent: ScriptedSnmpAgent, tmp_path: Path, snmp_catalog: dict[str, Any]
) -> None:
    """A real linkDown trap from 127.0.0.1 (ifIndex 3) and the poll seeing Gi1/0/3 go
    down are the same fact lab-sw9|GigabitEthernet1/0/3: one logged, one skipped."""
    with EngineProcess(tmp_path, overrides(agent, tmp_path)) as engine:
        wait_polls(engine, 2)
        send_traps(
            [
                snmptrap_argv(
                    catalog_command(snmp_catalog, "linkDown", "v2c"),
                    engine.trap_port,
                    clientaddr="127.0.0.1",
                )
            ]
        )
        (first,) = engine.wait_for_api_outcomes(handler("link_down", GI3))
        assert first["kind"] == "logged"
        assert first["subject"].startswith("sensory.snmp.trap.link_down.")

        agent.set_interface(3, oper=2)
        both = engine.wait_for_api_outcomes(handler("link_down", GI3), count=2)
        wait_polls(engine, polls(engine) + 2)  # later polls see it still down: nothing new
        listed = list(engine.api_outcomes())
        assert sorted(o["outcome_id"] for o in listed) == sorted(o["outcome_id"] for o in both)
        (second,) = [o for o in both if o["outcome_id"] != first["outcome_id"]]
        assert second["kind"] == "skipped"
        assert_from_poll(second, "link_down")
        assert second["fact_key"] == first["fact_key"] == f"link_down|{GI3}"
        assert second["trace"]["corroboration"] == 2
        engine.stop_cleanly()


# ----------------------------------------------------------------- d. restart


@pytest.mark.slow
def test_restart_reports_a_change_made_while_down_once(
    agent: ScriptedSnmpAgent, tmp_path: Path
) -> None:
    """A link that went down while the engine was stopped is reported once after the
    restart (diffed against the stored state, not re-baselined); restarting again with
    nothing changed reports nothing."""
    config = overrides(agent, tmp_path)
    with EngineProcess(tmp_path, config) as engine:
        wait_polls(engine, 2)
        engine.stop_cleanly()
        assert list(engine.outcomes()) == []

    agent.set_interface(3, oper=2)  # while nothing polls

    with EngineProcess(tmp_path, config) as engine:
        assert engine.wait_for_log("poll_started")["known_states"] == 1
        (down,) = engine.wait_for_api_outcomes(handler("link_down", GI3))
        assert_from_poll(down, "link_down")
        wait_polls(engine, polls(engine) + 3)  # still down: no repeat
        agent.set_interface(4, oper=2)
        engine.wait_for_api_outcomes(handler("link_down", GI4))
        listed = sorted((o["handler_id"], o["target"]) for o in engine.api_outcomes())
        assert listed == [("link_down", GI3), ("link_down", GI4)]
        engine.stop_cleanly()

    with EngineProcess(tmp_path, config) as engine:
        wait_polls(engine, 3)  # unchanged since the last run
        agent.set_interface(4, oper=1)
        (up,) = engine.wait_for_api_outcomes(handler("link_up", GI4))
        listed = sorted((o["handler_id"], o["target"]) for o in engine.api_outcomes())
        assert listed == [("link_down", GI3), ("link_down", GI4), ("link_up", GI4)]
        assert up["details"]["if_oper_status"] == 1
        engine.stop_cleanly()


# ------------------------------------------------------ e. state in PostgreSQL


def _poll_state_rows(dsn: str, schema: str) -> dict[str, bool]:
    """``device → down`` of every row in ``<schema>.poll_state`` (read beside the engine)."""

    async def read() -> dict[str, bool]:
        conn = await asyncpg.connect(dsn, timeout=10)
        try:
            rows = await conn.fetch(
                f'SELECT device, down FROM "{schema}".poll_state WHERE snapshot IS NOT NULL'
            )
        finally:
            await conn.close()
        return {r["device"]: r["down"] for r in rows}

    return asyncio.run(read())


@pytest.mark.slow
def test_poll_state_follows_the_postgres_store(
    agent: ScriptedSnmpAgent, tmp_path: Path, postgres_dsn: str, postgres_schema: str
) -> None:
    """With store.backend postgres the poller's state lands in store.postgres_schema
    (no SQLite file): a change made while the engine was stopped is reported once
    after a restart, and a further restart re-fires nothing."""
    config = overrides(agent, tmp_path)
    config["store"] = {
        "backend": "postgres",
        "postgres_dsn": postgres_dsn,
        "postgres_schema": postgres_schema,
    }
    with EngineProcess(tmp_path, config) as engine:
        assert engine.wait_for_log("poll_state_opened")["backend"] == "postgres"
        wait_polls(engine, 2)
        engine.stop_cleanly()
    assert _poll_state_rows(postgres_dsn, postgres_schema) == {DEVICE: False}
    assert not (tmp_path / "poll_state.db").exists()

    agent.set_interface(3, oper=2)  # while nothing polls

    with EngineProcess(tmp_path, config) as engine:
        assert engine.wait_for_log("poll_started")["known_states"] == 1
        (down,) = engine.wait_for_api_outcomes(handler("link_down", GI3))
        assert_from_poll(down, "link_down")
        wait_polls(engine, polls(engine) + 3)  # still down: no repeat
        assert [o["outcome_id"] for o in engine.api_outcomes()] == [down["outcome_id"]]
        engine.stop_cleanly()

    with EngineProcess(tmp_path, config) as engine:
        wait_polls(engine, 3)  # unchanged since the last run: nothing re-fires
        agent.set_interface(3, oper=1)
        (up,) = engine.wait_for_api_outcomes(handler("link_up", GI3))
        listed = sorted((o["handler_id"], o["target"]) for o in engine.api_outcomes())
        assert listed == [("link_down", GI3), ("link_up", GI3)]
        assert up["details"]["if_oper_status"] == 1
        engine.stop_cleanly()
