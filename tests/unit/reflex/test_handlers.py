"""Unit tests for the built-in reflex handlers, on ``make_event`` and the real Meraki fixtures."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest

from netcortex.contracts.events import Severity
from netcortex.contracts.reflex import OutcomeKind, outcome_id_for
from netcortex.reflex.handlers import (
    BgpDropHandler,
    BgpEstablishedHandler,
    DeviceRebootHandler,
    LinkDownHandler,
    LinkUpHandler,
    SecurityWebhookHandler,
)
from netcortex.reflex.handlers._common import MAX_DETAILS, MAX_VALUE_CHARS, echo_details
from netcortex.reflex.handlers.security_webhook import meraki_severity
from netcortex.testing import make_event
from tests.conftest import load_json_fixture

SECURITY_FIXTURES = [
    "security_ids_alert.json",
    "security_malware_detected.json",
    "security_rogue_ap.json",
]
# The fixture README's table: file → alertLevel as Meraki sent it.
FIXTURE_LEVELS = {
    "security_ids_alert.json": "warning",
    "security_malware_detected.json": "warning",
    "security_rogue_ap.json": "warning",
    "device_aps_went_down.json": "critical",
    "device_aps_came_up.json": "informational",
    "port_switch_port_disconnected.json": "warning",
    "uplink_status_changed.json": "warning",
    "settings_changed.json": "informational",
}


def _meraki_event(body: dict[str, Any], *, nested: bool = False) -> Any:
    payload = {"body": body} if nested else body
    return make_event(
        "security",
        source="meraki.webhook",
        device=body.get("deviceSerial") or "unknown",
        agent="198.51.100.10",
        payload=payload,
    )


class TestLinkDown:
    async def test_high_outcome_on_device_interface(self) -> None:
        """A link down with device and interface is a high logged outcome on device|interface."""
        event = make_event("link_down", device="r1", interface="Gi1/0/3")
        outcome = await LinkDownHandler().handle(event)
        assert outcome.kind is OutcomeKind.LOGGED
        assert outcome.severity is Severity.HIGH
        assert outcome.handler_id == "link_down"
        assert outcome.target == "r1|Gi1/0/3"
        assert outcome.device == "r1"
        assert outcome.summary == "Link down on r1 Gi1/0/3"
        assert outcome.fact_key == "link_down|r1|Gi1/0/3"
        assert outcome.outcome_id == outcome_id_for("link_down", event.id)
        assert outcome.occurred_at == event.observed_at

    @pytest.mark.parametrize(
        ("payload", "interface"),
        [
            ({"if_name": "Gi1/0/9", "if_descr": "GigabitEthernet1/0/9", "if_index": 9}, "Gi1/0/9"),
            ({"if_descr": "GigabitEthernet1/0/9", "if_index": 9}, "GigabitEthernet1/0/9"),
            ({"if_index": 9}, "ifIndex=9"),
        ],
    )
    async def test_interface_falls_back_to_payload(
        self, payload: dict[str, Any], interface: str
    ) -> None:
        """Without event.interface the target takes ifName, then ifDescr, then ``ifIndex=N``."""
        event = make_event("link_down", device="r1", interface=None, payload=payload)
        outcome = await LinkDownHandler().handle(event)
        assert outcome.target == f"r1|{interface}"
        assert outcome.summary == f"Link down on r1 {interface}"

    async def test_device_falls_back_to_agent_and_target_to_raw(self) -> None:
        """Without a device the agent is used; with nothing known the event's raw target stays."""
        event = make_event("link_down", device=None, interface="Gi1", agent="192.0.2.9")
        assert (await LinkDownHandler().handle(event)).target == "192.0.2.9|Gi1"
        bare = replace(make_event("link_down", device=None, agent="192.0.2.9"), agent=None)
        outcome = await LinkDownHandler().handle(bare)
        assert outcome.target == bare.target == "192.0.2.9"

    async def test_details_echo_at_most_16_scalar_fields_in_order(self) -> None:
        """Details hold at most 16 scalar payload fields: IF-MIB names first, then by name."""
        payload: dict[str, Any] = {f"z{i:02d}": i for i in range(30)}
        payload |= {"if_oper_status": 2, "if_index": 3, "if_name": "Gi1/0/3", "nested": {"a": 1}}
        payload |= {"list": [1, 2], "a_none": None, "nan": float("nan")}
        outcome = await LinkDownHandler().handle(make_event(payload=payload))
        keys = list(outcome.details)
        assert len(keys) == MAX_DETAILS
        assert keys[:4] == ["if_name", "if_index", "if_oper_status", "a_none"]
        assert keys[4:] == [f"z{i:02d}" for i in range(12)]
        assert "nested" not in outcome.details
        assert "list" not in outcome.details

    async def test_details_are_deterministic(self) -> None:
        """The same payload in another insertion order echoes the same fields in the same order."""
        items = [(f"k{i}", i) for i in range(40)]
        one = await LinkDownHandler().handle(make_event(payload=dict(items)))
        two = await LinkDownHandler().handle(make_event(payload=dict(reversed(items))))
        assert list(one.details.items()) == list(two.details.items())

    async def test_details_are_json_and_long_strings_are_cut(self) -> None:
        """Echoed details are JSON-serialisable and long strings are cut to the limit."""
        outcome = await LinkDownHandler().handle(
            make_event(payload={"ifAlias": "x" * 5000, "community": "public"})
        )
        assert len(outcome.details["ifAlias"]) == MAX_VALUE_CHARS
        assert "community" not in outcome.details
        json.dumps(dict(outcome.details))


class TestLinkUp:
    async def test_info_outcome_on_same_target_as_link_down(self) -> None:
        """A link up is an ``info`` outcome with the same target a link down would have."""
        event = make_event("link_up", device="r1", interface="Gi1/0/3")
        outcome = await LinkUpHandler().handle(event)
        assert outcome.severity is Severity.INFO
        assert outcome.target == "r1|Gi1/0/3"
        assert outcome.summary == "Link up on r1 Gi1/0/3"


class TestBgp:
    async def test_drop_is_high_on_device_peer(self) -> None:
        """A BGP backward transition is a high outcome on device|peer."""
        event = make_event("bgp_backward_transition", device="r1", peer="192.0.2.2")
        outcome = await BgpDropHandler().handle(event)
        assert outcome.severity is Severity.HIGH
        assert outcome.target == "r1|192.0.2.2"
        assert outcome.summary == "BGP session down on r1 with peer 192.0.2.2"

    async def test_drop_falls_back_to_device_only(self) -> None:
        """With no peer known anywhere the target is the device alone."""
        event = make_event("bgp_backward_transition", device="r1", peer=None)
        outcome = await BgpDropHandler().handle(event)
        assert outcome.target == "r1"
        assert outcome.summary == "BGP session down on r1"

    async def test_drop_falls_back_to_peer_only(self) -> None:
        """With no device or agent the target is the peer alone."""
        event = make_event("bgp_backward_transition", device=None, peer="2001:db8::2", agent=None)
        outcome = await BgpDropHandler().handle(event)
        assert outcome.target == "2001:db8::2"
        assert outcome.summary == "BGP session down on peer 2001:db8::2"

    async def test_drop_takes_peer_from_payload(self) -> None:
        """A peer address only present in the payload (bgpPeerRemoteAddr) completes the target."""
        event = make_event(
            "bgp_backward_transition",
            device="r1",
            payload={"bgp_remote_addr": "192.0.2.7", "bgp_state": 1},
        )
        outcome = await BgpDropHandler().handle(event)
        assert outcome.target == "r1|192.0.2.7"
        assert list(outcome.details) == ["bgp_remote_addr", "bgp_state"]

    async def test_established_is_info(self) -> None:
        """A BGP session reaching Established is an ``info`` outcome on device|peer."""
        event = make_event("bgp_established", device="r1", peer="192.0.2.2")
        outcome = await BgpEstablishedHandler().handle(event)
        assert outcome.severity is Severity.INFO
        assert outcome.target == "r1|192.0.2.2"
        assert outcome.summary == "BGP session established on r1 with peer 192.0.2.2"


class TestDeviceReboot:
    async def test_warn_on_device(self) -> None:
        """A restart is a ``warn`` outcome targeting the device."""
        outcome = await DeviceRebootHandler().handle(make_event("device_reboot", device="r1"))
        assert outcome.severity is Severity.WARN
        assert outcome.target == "r1"
        assert outcome.summary == "Device r1 restarted"

    async def test_falls_back_to_agent(self) -> None:
        """Without a device the sending agent is the target."""
        event = make_event("device_reboot", device=None, agent="192.0.2.11")
        outcome = await DeviceRebootHandler().handle(event)
        assert outcome.target == "192.0.2.11"
        assert outcome.device == "192.0.2.11"


class TestSecurityWebhook:
    @pytest.mark.parametrize("name", SECURITY_FIXTURES)
    async def test_real_fixture_level_and_summary(self, name: str) -> None:
        """Each real Meraki security fixture maps its top-level alertLevel and names the alert."""
        body = load_json_fixture("meraki", name)
        outcome = await SecurityWebhookHandler().handle(_meraki_event(body))
        assert body["alertLevel"] == "warning"
        assert outcome.severity is Severity.WARN
        assert outcome.summary == f"{body['alertType']} on {body['deviceName']} (Branch West)"
        assert outcome.details["alertLevel"] == "warning"
        assert outcome.details["alertTypeId"] == body["alertTypeId"]
        assert len(outcome.details) <= MAX_DETAILS

    @pytest.mark.parametrize("name", SECURITY_FIXTURES)
    async def test_shared_secret_never_echoed(self, name: str) -> None:
        """The webhook's sharedSecret never reaches the outcome, even if left in the payload."""
        body = load_json_fixture("meraki", name)
        outcome = await SecurityWebhookHandler().handle(_meraki_event(body))
        text = json.dumps(dict(outcome.details)) + outcome.summary
        assert "sharedSecret" not in outcome.details
        assert body["sharedSecret"] not in text

    async def test_ids_alert_data_is_echoed_first(self) -> None:
        """The IDS fixture's alertData message, signature and addresses are echoed."""
        body = load_json_fixture("meraki", "security_ids_alert.json")
        outcome = await SecurityWebhookHandler().handle(_meraki_event(body))
        data = body["alertData"]
        assert outcome.details["alertData.message"] == data["message"]
        assert outcome.details["alertData.signature"] == data["signature"]
        assert outcome.details["alertData.srcIp"] == data["srcIp"]
        assert outcome.details["alertData.blocked"] is True

    @pytest.mark.parametrize("name", SECURITY_FIXTURES)
    async def test_body_nested_under_body_key_is_accepted(self, name: str) -> None:
        """A receiver that wraps the Meraki body as payload['body'] gets the same outcome."""
        body = load_json_fixture("meraki", name)
        flat = await SecurityWebhookHandler().handle(_meraki_event(body))
        nested = await SecurityWebhookHandler().handle(_meraki_event(body, nested=True))
        assert (nested.severity, nested.summary) == (flat.severity, flat.summary)
        assert dict(nested.details) == dict(flat.details)

    @pytest.mark.parametrize(("name", "level"), sorted(FIXTURE_LEVELS.items()))
    async def test_every_fixture_level_maps_as_documented(self, name: str, level: str) -> None:
        """Every Meraki fixture's alertLevel (from its top level) maps per the documented table."""
        body = load_json_fixture("meraki", name)
        assert body["alertLevel"] == level
        expected = {
            "informational": Severity.INFO,
            "warning": Severity.WARN,
            "high": Severity.HIGH,
            "critical": Severity.CRITICAL,
        }[level]
        outcome = await SecurityWebhookHandler().handle(_meraki_event(body))
        assert outcome.severity is expected

    @pytest.mark.parametrize(
        ("level", "severity"),
        [
            ("informational", Severity.INFO),
            ("warning", Severity.WARN),
            ("high", Severity.HIGH),
            ("critical", Severity.CRITICAL),
            (" Critical ", Severity.CRITICAL),
            ("HIGH", Severity.HIGH),
            ("info", Severity.WARN),
            ("emergency", Severity.WARN),
            ("", Severity.WARN),
            (None, Severity.WARN),
            (3, Severity.WARN),
        ],
    )
    def test_level_mapping(self, level: object, severity: Severity) -> None:
        """informational/warning/high/critical map one to one; anything else is warn."""
        assert meraki_severity(level) is severity

    async def test_missing_level_is_warn(self) -> None:
        """A body without alertLevel (top level or nested) yields a warn outcome."""
        body = load_json_fixture("meraki", "security_rogue_ap.json")
        del body["alertLevel"]
        outcome = await SecurityWebhookHandler().handle(_meraki_event(body))
        assert outcome.severity is Severity.WARN

    async def test_level_inside_alert_data_is_not_used(self) -> None:
        """Only Meraki's top-level alertLevel counts, not a same-named key inside alertData."""
        body = load_json_fixture("meraki", "security_rogue_ap.json")
        body["alertData"]["alertLevel"] = "critical"
        outcome = await SecurityWebhookHandler().handle(_meraki_event(body))
        assert outcome.severity is Severity.WARN


class TestEchoDetails:
    def test_limit_zero_echoes_nothing(self) -> None:
        """A limit of zero echoes no field."""
        assert echo_details({"a": 1}, limit=0) == {}

    def test_secret_looking_keys_are_skipped(self) -> None:
        """Keys that look like secrets (token, password, sharedSecret ...) are never echoed."""
        payload = {"api_token": "t", "Password": "p", "sharedSecret": "s", "ok": 1}
        assert echo_details(payload) == {"ok": 1}


class TestDedupWindows:
    def test_default_windows_are_the_issue_3_ones(self) -> None:
        """Default dedup windows: link_down 60 s, bgp_drop 60 s, security_webhook 300 s."""
        from netcortex.reflex.handlers import (
            BgpDropHandler,
            LinkDownHandler,
            SecurityWebhookHandler,
        )

        assert LinkDownHandler().dedup_window == 60.0
        assert BgpDropHandler().dedup_window == 60.0
        assert SecurityWebhookHandler().dedup_window == 300.0
