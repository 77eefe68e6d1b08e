"""Unit tests for ``MerakiNormalizer``: classification order, targets, devices, payload."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from netcortex.contracts.events import EVENT_CLASSES
from netcortex.memory.semantic import FileInventory
from netcortex.sensory.webhook.normalize import (
    ALERT_TEXT_RULES,
    ALERT_TYPE_CLASSES,
    SOURCE,
    MerakiNormalizer,
)
from netcortex.sensory.webhook.schema import MerakiAlert
from netcortex.thalamus.subjects import validate_subject
from tests.fake_netbox import fixture_inventory
from tests.unit.sensory.webhook._helpers import PEER, SECRET, fixture_body, meraki_config

RECEIVED = datetime(2026, 3, 14, 15, 0, tzinfo=UTC)

# file → (event class, target with the inventory, device, interface, target without it)
EXPECTED: dict[str, tuple[str, str, str | None, str | None, str]] = {
    "device_aps_came_up.json": ("device_up", "mr-west", "mr-west", None, "mr-west"),
    "device_aps_went_down.json": ("device_down", "mr-west", "mr-west", None, "mr-west"),
    "port_switch_port_disconnected.json": (
        "link_down",
        "ms-west|Port 1",
        "ms-west",
        "Port 1",
        "ms-west|Port 1",
    ),
    "security_ids_alert.json": (
        "security",
        "Branch West|00:00:5e:00:53:aa",
        "mx-west",
        None,
        "Branch West|00:00:5e:00:53:aa",
    ),
    "security_malware_detected.json": (
        "security",
        "Branch West|mx-west",
        "mx-west",
        None,
        "Branch West|mx-west",
    ),
    "security_rogue_ap.json": (
        "security",
        "Branch West|mr-west",
        "mr-west",
        None,
        "Branch West|mr-west",
    ),
    "settings_changed.json": ("config_change", "Branch West", None, None, "Branch West"),
    "uplink_status_changed.json": (
        "link_down",
        "mx-west|Internet 1",
        "mx-west",
        "Internet 1",
        "mx-west|wan1",
    ),
}


def _alert(name: str, **changes: Any) -> MerakiAlert:
    return MerakiAlert.model_validate(fixture_body(name, **changes))


def _normalize(normalizer: MerakiNormalizer, alert: MerakiAlert) -> Any:
    return normalizer.normalize(alert, agent=PEER, received_at=RECEIVED)


class TestFixtures:
    @pytest.mark.parametrize("name", sorted(EXPECTED))
    def test_with_inventory(self, name: str, inventory: FileInventory) -> None:
        """Each fixture gets its class, canonical target, device and interface."""
        event_class, target, device, interface, _ = EXPECTED[name]
        event = _normalize(MerakiNormalizer(meraki_config(), inventory), _alert(name))
        assert (event.event_class, event.target, event.device, event.interface) == (
            event_class,
            target,
            device,
            interface,
        )
        assert event.source == SOURCE
        assert event.subject == validate_subject(event.subject)
        assert event.subject.startswith(f"sensory.meraki.webhook.{event_class}.")
        assert event.payload["inventory"] == ("unknown" if device is None else "device")

    @pytest.mark.parametrize("name", sorted(EXPECTED))
    def test_without_inventory(self, name: str) -> None:
        """Without memory the same classes; names as Meraki sent them, uplink ``wan1``."""
        event_class, _, device, _, target = EXPECTED[name]
        event = _normalize(MerakiNormalizer(meraki_config()), _alert(name))
        assert (event.event_class, event.target, event.device) == (event_class, target, device)
        assert "inventory" not in event.payload

    def test_subject_tokens_are_encoded(self, inventory: FileInventory) -> None:
        """Spaces and dots in target parts are percent-encoded, one token each."""
        event = _normalize(
            MerakiNormalizer(meraki_config(), inventory), _alert("security_ids_alert.json")
        )
        assert event.subject == "sensory.meraki.webhook.security.Branch%20West.00:00:5e:00:53:aa"

    @pytest.mark.parametrize("name", sorted(EXPECTED))
    def test_payload_is_the_body_without_secret(self, name: str) -> None:
        """The payload is the body at top level minus sharedSecret, plus classified_by."""
        body = fixture_body(name)
        event = _normalize(MerakiNormalizer(meraki_config()), MerakiAlert.model_validate(body))
        assert "sharedSecret" not in event.payload
        assert SECRET not in json.dumps(dict(event.payload))
        for key, value in body.items():
            if key != "sharedSecret":
                assert event.payload[key] == value
        assert event.payload["classified_by"]

    def test_times_and_agent(self) -> None:
        """observed_at is occurredAt (else sentAt); received_at as given; agent = the peer."""
        normalizer = MerakiNormalizer(meraki_config())
        event = _normalize(normalizer, _alert("device_aps_went_down.json"))
        assert event.observed_at == datetime(2026, 3, 14, 12, 10, 2, tzinfo=UTC)
        assert event.received_at == RECEIVED
        assert event.agent == PEER
        no_occurred = _normalize(normalizer, _alert("device_aps_went_down.json", occurredAt=""))
        assert no_occurred.observed_at == datetime(2026, 3, 14, 12, 15, 7, 903322, tzinfo=UTC)


_PORT_DOWN, _DOWN, _UP = (ALERT_TEXT_RULES[i][0] for i in (5, 7, 8))


class TestClassify:
    normalizer = MerakiNormalizer(meraki_config())

    @pytest.mark.parametrize(
        ("type_id", "text", "data", "expected"),
        [
            ("stopped_reporting", "x", {}, ("device_down", "alertTypeId:stopped_reporting")),
            ("port_disconnected", None, {}, ("link_down", "alertTypeId:port_disconnected")),
            ("port_connected", None, {}, ("link_up", "alertTypeId:port_connected")),
            ("failover_event", None, {"uplink": "1"}, ("link_down", "alertTypeId:failover_event")),
            ("failover_event", None, {"uplink": "0"}, ("link_up", "alertTypeId:failover_event")),
            ("failover_event", None, {"uplink": 0}, ("link_up", "alertTypeId:failover_event")),
            ("failover_event", None, {}, ("link_down", "alertTypeId:failover_event")),
            ("settings_changed", None, {}, ("config_change", "alertTypeId:settings_changed")),
            ("amp_malware_blocked", None, {}, ("security", "alertTypeId:amp_malware_blocked")),
            ("ids_alerted", "IDS alert", {}, ("security", r"pattern:\bIDS\b")),
            (None, "Air Marshal - Rogue AP detected", {}, ("security", "pattern:rogue")),
            (None, "Switches went down", {}, ("device_down", f"pattern:{_DOWN}")),
            (None, "Cellular came up", {}, ("device_up", f"pattern:{_UP}")),
            ("x", "Switch port went down", {}, ("link_down", f"pattern:{_PORT_DOWN}")),
            (None, "Network usage alert", {}, ("other", "default")),
            ("usage_alert", None, {}, ("other", "default")),
            (None, None, {}, ("other", "default")),
            ("", "", {}, ("other", "default")),
            ("sides", "Guides updated", {}, ("other", "default")),  # "ids" inside words is not IDS
        ],
    )  # fmt: skip
    def test_builtin_rules(
        self, type_id: str | None, text: str | None, data: dict[str, Any], expected: tuple[str, str]
    ) -> None:
        """Built-in ids first, then the built-in text rules, else ``other``."""
        assert self.normalizer.classify(type_id, text, data) == expected

    def test_ids_alerted_is_not_a_builtin_id(self) -> None:
        """``ids_alerted`` is undocumented: no built-in id entry, the text rule decides."""
        assert "ids_alerted" not in ALERT_TYPE_CLASSES
        assert self.normalizer.classify("ids_alerted", None, {}) == ("other", "default")

    def test_config_alert_types_win(self) -> None:
        """``meraki.alert_types`` beats both the built-in id table and the text rules."""
        normalizer = MerakiNormalizer(
            meraki_config(alert_types={"ids_alerted": "other", "stopped_reporting": "other"})
        )
        assert normalizer.classify("ids_alerted", "IDS alert", {}) == (
            "other",
            "config:alert_types",
        )
        assert normalizer.classify("stopped_reporting", "APs went down", {})[0] == "other"
        event = _normalize(normalizer, _alert("security_ids_alert.json"))
        assert event.event_class == "other"
        assert event.payload["classified_by"] == "config:alert_types"
        assert event.target == "mx-west"  # other: the device

    def test_config_patterns_come_before_builtin_patterns(self) -> None:
        """``meraki.alert_type_patterns`` beat the built-in text rules, not the id table."""
        normalizer = MerakiNormalizer(
            meraki_config(
                alert_type_patterns=[
                    {"pattern": "went DOWN", "event_class": "security"},
                    {"pattern": "usage", "event_class": "config_change"},
                ]
            )
        )
        assert normalizer.classify("new_id", "APs went down", {}) == (
            "security",
            "config:alert_type_patterns:went DOWN",
        )
        assert normalizer.classify(None, "Network usage alert", {})[0] == "config_change"
        assert normalizer.classify("stopped_reporting", "APs went down", {})[0] == "device_down"

    def test_builtin_rules_use_known_classes(self) -> None:
        """Every built-in id and text rule names a class in the closed vocabulary."""
        assert set(ALERT_TYPE_CLASSES.values()) <= EVENT_CLASSES
        assert {cls for _, cls in ALERT_TEXT_RULES} <= EVENT_CLASSES

    @given(
        type_id=st.none() | st.text(max_size=40),
        text=st.none() | st.text(max_size=80),
        data=st.dictionaries(
            st.text(max_size=10),
            st.none() | st.booleans() | st.integers() | st.text(max_size=10),
            max_size=4,
        ),
    )
    def test_classify_never_raises(
        self, type_id: str | None, text: str | None, data: dict[str, Any]
    ) -> None:
        """Any id, text and alertData give a known class and a rule."""
        normalizer = MerakiNormalizer(
            meraki_config(alert_type_patterns=[{"pattern": "x+y", "event_class": "security"}])
        )
        event_class, rule = normalizer.classify(type_id, text, data)
        assert event_class in EVENT_CLASSES
        assert rule


class TestTargets:
    def test_device_canonicalised_by_serial(self, inventory: FileInventory) -> None:
        """The inventory's name wins over deviceName when the serial is known."""
        alert = _alert("device_aps_went_down.json", deviceName="AP lobby")
        assert _normalize(MerakiNormalizer(meraki_config(), inventory), alert).device == "mr-west"
        assert _normalize(MerakiNormalizer(meraki_config()), alert).device == "AP lobby"

    def test_device_by_name_when_the_serial_is_unknown(self, inventory: FileInventory) -> None:
        """An unknown serial with a deviceName the inventory knows is still canonical."""
        alert = _alert("port_switch_port_disconnected.json", deviceSerial="Q2ZZ-9999-XXXX")
        event = _normalize(MerakiNormalizer(meraki_config(), inventory), alert)
        assert (event.device, event.payload["inventory"]) == ("ms-west", "device")

    @pytest.mark.parametrize(
        ("changes", "device"),
        [
            ({"deviceName": "", "deviceSerial": "Q2ZZ-8888-UNKN"}, "Q2ZZ-8888-UNKN"),
            ({"deviceName": "ghost", "deviceSerial": "Q2ZZ-8888-UNKN"}, "ghost"),
            ({"deviceName": None, "deviceSerial": None}, "Branch West"),
            ({"deviceName": None, "deviceSerial": None, "networkName": ""}, "L_100000000000000001"),
            ({"deviceName": None, "deviceSerial": None, "networkName": None, "networkId": None},
             "unknown"),
        ],
    )  # fmt: skip
    def test_device_fallbacks(
        self, changes: dict[str, Any], device: str, inventory: FileInventory
    ) -> None:
        """deviceName, else the serial; with neither the network name, its id, ``unknown``."""
        alert = _alert("device_aps_went_down.json", **changes)
        event = _normalize(MerakiNormalizer(meraki_config(), inventory), alert)
        assert event.target == device
        assert event.payload["inventory"] == "unknown"

    def test_port_fields(self, inventory: FileInventory) -> None:
        """A port alert's payload carries if_name, port_num, status and prev_status."""
        event = _normalize(
            MerakiNormalizer(meraki_config(), inventory),
            _alert("port_switch_port_disconnected.json"),
        )
        assert {k: event.payload[k] for k in ("if_name", "port_num", "status", "prev_status")} == {
            "if_name": "Port 1",
            "port_num": 1,
            "status": "down",
            "prev_status": "1 Gbps",
        }

    def test_port_unknown_to_the_inventory(self, inventory: FileInventory) -> None:
        """A port the inventory does not list keeps Meraki's ``Port <n>`` name."""
        data = {"portNum": "9", "status": "down", "prevStatus": "1 Gbps"}
        alert = _alert("port_switch_port_disconnected.json", alertData=data)
        event = _normalize(MerakiNormalizer(meraki_config(), inventory), alert)
        assert event.target == "ms-west|Port 9"

    def test_port_connected_is_link_up(self, inventory: FileInventory) -> None:
        """port_connected is link_up on the same target as the disconnect."""
        alert = _alert(
            "port_switch_port_disconnected.json",
            alertTypeId="port_connected",
            alertType="Switch port connected",
        )
        event = _normalize(MerakiNormalizer(meraki_config(), inventory), alert)
        assert (event.event_class, event.target) == ("link_up", "ms-west|Port 1")

    def test_uplink_back_on_primary(self, inventory: FileInventory) -> None:
        """``uplink: "0"`` is link_up of the primary uplink; the payload says which is active."""
        alert = _alert("uplink_status_changed.json", alertData={"uplink": "0"})
        event = _normalize(MerakiNormalizer(meraki_config(), inventory), alert)
        assert (event.event_class, event.target) == ("link_up", "mx-west|Internet 1")
        assert (event.payload["if_name"], event.payload["active_uplink"]) == ("Internet 1", "0")

    async def test_uplink_named_wan_1(self, tmp_path: Path) -> None:
        """An inventory naming the primary uplink ``WAN 1`` gives that name."""
        path = tmp_path / "inventory.json"
        path.write_text(json.dumps(fixture_inventory()).replace("Internet 1", "WAN 1"))
        async with FileInventory(path) as inv:
            event = _normalize(
                MerakiNormalizer(meraki_config(), inv), _alert("uplink_status_changed.json")
            )
        assert event.target == "mx-west|WAN 1"

    @pytest.mark.parametrize(
        ("data", "client"),
        [
            ({"clientMac": "00:00:5E:00:53:AB", "clientIp": "192.0.2.9"}, "00:00:5e:00:53:ab"),
            ({"clientIp": "192.0.2.9", "srcIp": "198.51.100.77:1"}, "192.0.2.9"),
            ({"srcIp": "198.51.100.77:51515"}, "198.51.100.77"),
            ({"srcIp": "198.51.100.77"}, "198.51.100.77"),
            ({"srcIp": "[2001:db8::7]:443"}, "2001:db8::7"),
            ({"srcIp": "2001:db8::7"}, "2001:db8::7"),
            ({"clientMac": "", "srcIp": None}, "mx-west"),
        ],
    )
    def test_security_client_fallbacks(self, data: dict[str, Any], client: str) -> None:
        """client = clientMac (lower) → clientIp → host of srcIp → the device."""
        event = _normalize(
            MerakiNormalizer(meraki_config()), _alert("security_ids_alert.json", alertData=data)
        )
        assert event.target == f"Branch West|{client}"
        assert event.device == "mx-west"

    def test_security_without_network_or_device(self) -> None:
        """No network and no device: ``unknown|unknown``."""
        alert = _alert(
            "security_malware_detected.json",
            networkName=None,
            networkId=None,
            deviceName=None,
            deviceSerial=None,
        )
        assert _normalize(MerakiNormalizer(meraki_config()), alert).target == "unknown|unknown"

    def test_huge_parts_are_bounded(self) -> None:
        """Long names are shortened with a digest so the subject stays valid and distinct."""
        normalizer = MerakiNormalizer(meraki_config())
        events = [
            _normalize(
                normalizer,
                _alert("security_ids_alert.json", networkName="net." * 400 + tail),
            )
            for tail in ("a", "b")
        ]
        for event in events:
            assert validate_subject(event.subject)
            assert len(event.subject) <= 1024
            assert "~" in event.target
        assert events[0].target != events[1].target
