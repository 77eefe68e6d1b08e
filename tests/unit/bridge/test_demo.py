"""``netcortex demo``: the scenario's traps decode as meant, and its network exists.

* the trap encoder round-trips through the project's own decoder and normalizer
  (SNMPv1, agent-addr → inventory device, ifIndex → interface, BGP peer);
* drift guard: every device, interface, cable, address and BGP session the
  scenario names is in BOTH examples/inventory.yaml (the `make run` engine's)
  and the embedded demo network (package data);
* the Meraki IDS alert gets a fresh alertId per run, and matches the shared fixture.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from netcortex.bridge.cli import build_parser
from netcortex.bridge.demo.runner import (
    ActResult,
    Report,
    demo_network_text,
    render_report,
    report_dict,
)
from netcortex.bridge.demo.scenario import (
    DEVICES,
    INTERFACES,
    MERAKI_DEVICES,
    Trap,
    Webhook,
    build_scenario,
    encode_trap,
    ids_alert,
)
from netcortex.config import TrapConfig
from netcortex.memory.semantic import FileInventory
from netcortex.sensory.trap.decode import TrapDecoder
from netcortex.sensory.trap.normalize import Normalizer
from tests.conftest import REPO, load_json_fixture

EXAMPLES_INVENTORY = REPO / "examples" / "inventory.yaml"

_CLASSES = {
    "cold_start": "device_reboot",
    "link_down": "link_down",
    "link_up": "link_up",
    "bgp_down": "bgp_backward_transition",
    "bgp_up": "bgp_established",
}


def _traps() -> list[Trap]:
    return [s for act in build_scenario() for s in act.sends if isinstance(s, Trap)]


@pytest.fixture(params=["examples", "embedded"])
async def inventory(request: pytest.FixtureRequest, tmp_path: Path) -> FileInventory:
    if request.param == "examples":
        path = EXAMPLES_INVENTORY
    else:
        path = tmp_path / "demo-network.yaml"
        path.write_text(demo_network_text(), encoding="utf-8")
    inv = FileInventory(path)
    await inv.start()
    return inv


def test_scenario_has_the_four_acts_and_the_expected_rules() -> None:
    acts = build_scenario(flap_high=6)
    assert [a.title for a in acts] == [
        "core switch reboot",
        "cable cut",
        "BGP flap",
        "Meraki IDS alert",
    ]
    rules = [i.rule for a in acts for i in a.incidents]
    assert rules == ["device_root", "cable_pair", "flapping"]
    flap = [s for s in acts[2].sends if isinstance(s, Trap)]
    assert len(flap) >= 6 + 2  # more than flap_high state changes
    assert len(list(build_scenario(flap_high=9)[2].sends)) >= 11


def test_trap_encoder_round_trips_through_the_decoder() -> None:
    decoder = TrapDecoder(TrapConfig(communities=[SecretStr("demo-community")]))
    for trap in _traps():
        note = decoder.decode(encode_trap(trap, "demo-community"))
        assert note.version == "v1"
        assert note.agent_addr == DEVICES[trap.device]
        event = Normalizer().normalize(note, "127.0.0.1")
        assert event.event_class == _CLASSES[trap.what], trap
        assert event.device == DEVICES[trap.device]  # no inventory: the agent address
        if trap.interface is not None:
            assert event.payload["if_descr"] == trap.interface
            assert event.interface == event.payload["if_name"]  # ifName (Gi…) without inventory
            assert event.payload["if_index"] == INTERFACES[(trap.device, trap.interface)]
            assert event.payload["if_oper_status"] == (2 if trap.what == "link_down" else 1)
        if trap.peer is not None:
            assert event.peer == trap.peer


def test_trap_with_a_wrong_community_is_refused() -> None:
    decoder = TrapDecoder(TrapConfig(communities=[SecretStr("public")]))
    with pytest.raises(Exception, match="community"):
        decoder.decode(encode_trap(_traps()[0], "not-public"))


async def test_traps_map_to_inventory_names(inventory: FileInventory) -> None:
    decoder = TrapDecoder(TrapConfig())
    normalizer = Normalizer(memory=inventory)
    for trap in _traps():
        event = normalizer.normalize(decoder.decode(encode_trap(trap, "public")), "127.0.0.1")
        assert event.target == trap.target, trap
        assert event.payload["inventory"] in ("device", "device+interface")


async def test_scenario_network_exists(inventory: FileInventory) -> None:
    """Drift guard: what the scenario names is in both inventories."""
    for name, address in DEVICES.items():
        device = inventory.device_by_address(address)
        assert device is not None, (name, address)
        assert device.name == name
    for name, serial in MERAKI_DEVICES.items():
        device = inventory.device_by_serial(serial)
        assert device is not None
        assert device.name == name
    for (device_name, if_name), index in INTERFACES.items():
        itf = inventory.interface(device_name, if_index=index)
        assert itf is not None, (device_name, if_name)
        assert itf.name == if_name
    for act in build_scenario():
        for want in act.incidents:
            for member in want.members:
                device_name, _, rest = member.partition("|")
                assert inventory.device_by_name(device_name) is not None, member
                if rest and rest[0].isdigit():  # a BGP session: device|peer address
                    assert inventory.bgp_session(device_name, rest) is not None, member
    # the cables the rules follow
    pairs = [
        ("sw1-north", "GigabitEthernet1/0/1", "r1-north", "GigabitEthernet0/0/1"),
        ("sw1-north", "GigabitEthernet1/0/3", "sw2-north", "GigabitEthernet1/0/3"),
        ("r1-north", "GigabitEthernet0/0/0", "r1-south", "GigabitEthernet0/0/0"),
    ]
    for dev, itf, peer_dev, peer_itf in pairs:
        peer = inventory.cable_peer(dev, itf)
        assert peer is not None
        assert (peer.device, peer.name) == (peer_dev, peer_itf)
    # the iBGP peer is r1-south (the session runs over the WAN cable); transit is unknown
    peer = inventory.device_by_address("203.0.113.1")
    assert peer is not None
    assert peer.name == "r1-south"
    assert inventory.device_by_address("203.0.113.9") is None


def test_ids_alert_is_the_fixture_with_a_fresh_id() -> None:
    fixture = load_json_fixture("meraki", "security_ids_alert.json")
    first, second = ids_alert(), ids_alert()
    assert first["alertId"] != second["alertId"]
    assert len(first["alertId"]) == 18
    assert first["alertId"].isdigit()
    for key in ("alertId", "sentAt", "occurredAt", "sharedSecret"):
        fixture.pop(key)
        first.pop(key, None)
    assert first == fixture
    webhook = build_scenario()[3].sends[0]
    assert isinstance(webhook, Webhook)
    assert webhook.device == "mx-west"


def test_help_says_what_where_and_what_it_prints(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["demo", "--help"])
    text = capsys.readouterr().out
    for needle in ("SNMPv1 traps", "/healthz", "--embedded", "N events → M outcomes", "--record"):
        assert needle in text, needle
    assert "netcortex run --record FILE" in " ".join(text.split())


def _report() -> Report:
    outcomes = [
        {"outcome_id": "a" * 32, "handler_id": "link_down", "kind": "logged", "target": "x|Gi1"},
        {"outcome_id": "b" * 32, "handler_id": "link_down", "kind": "logged", "target": "y|Gi2"},
    ]
    incident = {
        "id": "c" * 32,
        "rule": "cable_pair",
        "root": "cable:x|Gi1~y|Gi2",
        "state": "open",
        "severity": "high",
        "summary": "Cable down",
        "members": ["x|Gi1", "y|Gi2"],
        "evidence": ["a" * 32, "b" * 32, "d" * 32],
        "inhibited": ["b" * 32],
        "opened_at": "2026-01-01T00:00:00+00:00",
        "flapping": None,
        "details": {"why": "both ends"},
    }
    act = ActResult("cable cut", "story", traps=2, outcomes=outcomes, incidents=["c" * 32])
    return Report(
        mode="embedded",
        base_url="http://127.0.0.1:1",
        trap_address="udp 127.0.0.1:2",
        source="test",
        started_at=datetime(2026, 1, 1, tzinfo=UTC),
        acts=[act],
        outcomes=outcomes,
        incidents=[incident],
        evidence={o["outcome_id"]: o for o in outcomes},
    )


def test_report_text_lists_each_incident_with_its_evidence() -> None:
    text = render_report(_report())
    lines = text.splitlines()
    assert lines[0] == "2 events → 2 outcomes → 1 incident"
    assert "incident cccccccccccc  cable_pair  open  high" in lines
    assert "  members  x|Gi1" in lines
    assert "           y|Gi2" in lines
    evidence = [line for line in lines if line.startswith("    ") and line.strip()[0] in "abd"]
    assert evidence[0].split() == ["aaaaaaaaaaaa", "link_down", "logged", "x|Gi1"]
    assert evidence[1].split() == ["bbbbbbbbbbbb", "link_down", "logged", "y|Gi2", "inhibited"]
    assert evidence[2].split() == ["dddddddddddd", "?", "?", "?"]  # not found: still listed
    assert "MISSING" not in text


def test_report_json_names_handler_and_target_of_the_evidence() -> None:
    report = _report()
    report.missing.append("incident flapping rooted at bgp:x|1.2.3.4, open")
    data = report_dict(report)
    assert data["ok"] is False
    assert (data["events"], data["outcome_count"], data["incident_count"]) == (2, 2, 1)
    first, second, third = data["incidents"][0]["evidence_outcomes"]
    assert first == {
        "outcome_id": "a" * 32,
        "handler_id": "link_down",
        "kind": "logged",
        "target": "x|Gi1",
        "inhibited": False,
    }
    assert second["inhibited"] is True
    assert third["handler_id"] is None
    assert data["acts"][0]["outcomes"] == ["a" * 32, "b" * 32]
    assert "MISSING:" in render_report(report)


@pytest.mark.usefixtures("restore_logging")  # the command configures logging
@pytest.mark.parametrize("timeout", ["0", "-1", "nan", "inf"])
def test_a_timeout_without_a_deadline_is_a_usage_error(
    timeout: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--timeout nan`` or ``inf`` would make every wait endless: refused (exit 2) before
    anything is sent or started."""
    from netcortex.bridge.cli import main

    assert main(["demo", "--embedded", "--timeout", timeout]) == 2
    assert "--timeout must be a positive number" in capsys.readouterr().err


async def test_embedded_record_holds_only_this_runs_events(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``demo --embedded --record FILE`` starts FILE afresh: each run is a fresh engine,
    so an older run's events in the file would be replayed as if one engine saw both."""
    import io

    from netcortex.bridge.demo import runner
    from netcortex.bridge.record import encode_line, read_recording
    from netcortex.contracts.codec import encode_event
    from netcortex.testing import make_event

    record = tmp_path / "demo.jsonl"
    record.write_bytes(encode_line(make_event("link_down", interface="Gi9/9")))  # a past run
    fresh = make_event("link_up", interface="Gi1/0/1")

    async def play(target: runner.Target, **kwargs: object) -> Report:
        bus = engine_bus[0]
        await bus.publish(fresh.subject, encode_event(fresh), msg_id=fresh.id)
        return _report()

    engine_bus: list[Any] = []
    from netcortex.app import Engine

    original_start = Engine.start

    async def start(self: Engine, *args: Any, **kwargs: Any) -> None:
        await original_start(self, *args, **kwargs)
        engine_bus.append(self.bus)

    monkeypatch.setattr(Engine, "start", start)
    monkeypatch.setattr(runner, "play", play)
    report = await runner.play_embedded(timeout=5.0, progress=io.StringIO(), record=record)
    assert read_recording(record).events == [fresh]
    assert report.recorded_events == 1
