"""Every notification of the shared SNMP catalog, sent with the real ``snmptrap``.

Each (notification, version) pair is one test: a real ``TrapReceiver`` on a free
port, the fixture's command line with only the port rewritten, and assertions on
the published event's class, target parts and key payload fields.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.conftest import load_json_fixture
from tests.unit.sensory.trap._helpers import (
    HAVE_SNMPTRAP,
    rewrite,
    run_tool,
    running_receiver,
    snmp_env,
)

pytestmark = [
    pytest.mark.snmp,
    pytest.mark.skipif(not HAVE_SNMPTRAP, reason="net-snmp tools not installed"),
]

_CATALOG: dict[str, Any] = load_json_fixture("snmp", "catalog.json")
_CASES = [
    pytest.param(note, version, id=f"{note['key']}-{version}")
    for note in _CATALOG["notifications"]
    for version in note["commands"]
]

#: catalog key → expected event class
_CLASSES = {
    "coldStart": "device_reboot",
    "warmStart": "device_reboot",
    "authenticationFailure": "auth_failure",
    "linkDown": "link_down",
    "linkUp": "link_up",
    "linkDown_cisco_legacy": "link_down",
    "bgpEstablished": "bgp_established",
    "bgpBackwardTransition": "bgp_backward_transition",
    "bgpEstablishedNotification": "bgp_established",
    "bgpBackwardTransNotification": "bgp_backward_transition",
    "cbgpPeer2EstablishedNotification": "bgp_established",
    "cbgpPeer2BackwardTransNotification": "bgp_backward_transition",
    "cbgpPeer2BackwardTransition": "bgp_backward_transition",
    "cbgpBackwardTransition": "bgp_backward_transition",
    "linkDown_relayed": "link_down",
}

#: catalog key → (peer address, bgp_state, bgp_last_error)
_BGP = {
    "bgpEstablished": ("203.0.113.1", 6, "0000"),
    "bgpBackwardTransition": ("203.0.113.1", 1, "0400"),
    "bgpEstablishedNotification": ("203.0.113.1", 6, "0000"),
    "bgpBackwardTransNotification": ("203.0.113.1", 1, "0602"),
    "cbgpPeer2EstablishedNotification": ("203.0.113.9", 6, "0000"),
    "cbgpPeer2BackwardTransNotification": ("2001:db8:0:9::1", 3, "0400"),
    "cbgpPeer2BackwardTransition": ("203.0.113.9", 1, "0602"),
    "cbgpBackwardTransition": ("203.0.113.9", 1, "0400"),
}


def test_catalog_covers_every_notification() -> None:
    """Every catalog entry has an expected event class in this test."""
    assert {n["key"] for n in _CATALOG["notifications"]} == set(_CLASSES)


@pytest.mark.parametrize(("note", "version"), _CASES)
async def test_catalog_notification(note: dict[str, Any], version: str, tmp_path: Path) -> None:
    """The fixture command yields one event with the right class, target and payload."""
    async with running_receiver() as (receiver, bus, _registry):
        argv = rewrite(note["commands"][version], receiver.bound_address[1])
        assert await run_tool(argv, snmp_env(tmp_path)) == 0
        (event,) = await bus.wait_for(1)

    key = note["key"]
    event_class = _CLASSES[key]
    payload = event.payload
    # The agent: v1 agent-addr, snmpTrapAddress.0 when relayed, else the UDP source.
    agent = note["agent"] if version == "v1" or key == "linkDown_relayed" else "127.0.0.1"
    assert event.event_class == event_class
    assert event.source == "snmp.trap"
    assert event.agent == agent
    assert event.device == agent
    assert event.subject.startswith(f"sensory.snmp.trap.{event_class}.")
    assert payload["version"] == version
    assert payload["uptime"] == note["uptime"]
    assert payload["udp_source"] == "127.0.0.1"
    if version == "v1":
        v1 = note["v1"]
        assert payload["trap_oid"] == v1["translated_trap_oid"]
        assert payload["enterprise"] == v1["enterprise"]
        assert payload["agent_addr"] == v1["agent_addr"]
        assert payload["generic_trap"] == v1["generic_trap"]
        assert payload["specific_trap"] == v1["specific_trap"]
    else:
        assert payload["trap_oid"] == note["trap_oid"]
    if version == "v3":
        assert payload["user"] == _CATALOG["v3"]["user"]
        assert payload["engine_id"] == _CATALOG["v3"]["engine_id"]
        assert payload["security_level"] == "authPriv"

    # Every varbind of the catalog is in the payload, numerically, in order.
    expected_vbs = [(vb["oid"], vb["value"]) for vb in note["varbinds"]]
    got_vbs = [(vb["oid"], str(vb["value"])) for vb in payload["varbinds"]]
    assert got_vbs == expected_vbs

    if event_class in ("link_down", "link_up"):
        names = {vb["name"].split(".")[0]: vb["value"] for vb in note["varbinds"]}
        interface = names.get("ifName") or names.get("ifDescr")
        assert event.interface == interface
        assert event.target == f"{agent}|{interface}"
        assert event.peer is None
        assert payload["if_index"] == 3
        assert payload["if_descr"] == "GigabitEthernet1/0/3"
        if "ifOperStatus" in names:
            assert payload["if_oper_status"] == int(names["ifOperStatus"])
            assert payload["if_admin_status"] == 1
            assert payload["if_name"] == "Gi1/0/3"
        else:  # Cisco legacy varbinds
            assert payload["if_reason"] == "administratively down"
            assert payload["if_type"] == 6
    elif event_class.startswith("bgp_"):
        peer, state, last_error = _BGP[key]
        assert event.peer == peer
        assert event.interface is None
        assert event.target == f"{agent}|{peer}"
        assert payload["bgp_peer"] == peer
        assert payload["bgp_state"] == state
        assert payload["bgp_last_error"] == last_error
        assert payload["bgp_error_code"] == int(last_error[:2], 16)
    else:
        assert event.target == agent
        assert event.interface is None
        assert event.peer is None
    assert "public" not in repr(dict(payload))  # the community never reaches an event
