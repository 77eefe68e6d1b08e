"""Unit tests for the webhook-era handlers ``device_down``, ``device_up`` and ``config_change``.

Events carry the real Meraki fixture bodies (without ``sharedSecret``, as the
webhook receiver publishes them) and the device as the receiver canonicalises it.
"""

from __future__ import annotations

from typing import Any

import pytest

from netcortex.contracts.events import Severity
from netcortex.contracts.reflex import OutcomeKind, outcome_id_for
from netcortex.memory.episodic import InMemoryDedupStore
from netcortex.reflex.gates import DedupGate
from netcortex.reflex.handlers import ConfigChangeHandler, DeviceDownHandler, DeviceUpHandler
from netcortex.reflex.handlers.config_change import change_labels
from netcortex.reflex.registry import builtin_registry
from netcortex.testing import make_event
from netcortex.thalamus.subjects import matches
from tests.unit.sensory.webhook._helpers import PEER, SECRET, fixture_body


def _body(name: str, **changes: Any) -> dict[str, Any]:
    """A fixture body as the receiver puts it in the payload (no sharedSecret)."""
    return fixture_body(name, **{"sharedSecret": None, **changes})


def _event(event_class: str, body: dict[str, Any], device: str | None) -> Any:
    return make_event(
        event_class,
        source="meraki.webhook",
        device=device,
        agent=PEER,
        payload=body,
    )


class TestDeviceDown:
    async def test_fixture_is_critical_on_the_device(self) -> None:
        """ "APs went down" at Meraki level critical is a critical outcome on mr-west."""
        event = _event("device_down", _body("device_aps_went_down.json"), "mr-west")
        outcome = await DeviceDownHandler().handle(event)
        assert outcome.kind is OutcomeKind.LOGGED
        assert outcome.severity is Severity.CRITICAL
        assert outcome.handler_id == "device_down"
        assert outcome.outcome_id == outcome_id_for("device_down", event.id)
        assert outcome.target == "mr-west"
        assert outcome.device == "mr-west"
        assert outcome.fact_key == "device_down|mr-west"
        assert outcome.summary == "Device down: mr-west (APs went down)"
        assert outcome.details["alertTypeId"] == "stopped_reporting"
        assert outcome.details["deviceSerial"] == "Q2ZZ-0003-MRW1"

    @pytest.mark.parametrize(
        ("level", "severity"),
        [
            (None, Severity.HIGH),
            ("informational", Severity.INFO),
            (" WARNING ", Severity.WARN),
            ("high", Severity.HIGH),
            ("bogus", Severity.HIGH),
            (3, Severity.HIGH),
        ],
    )
    async def test_severity_follows_a_known_meraki_level(
        self, level: object, severity: Severity
    ) -> None:
        """A known alertLevel sets the severity; none, or an unknown one, keeps ``high``."""
        body = _body("device_aps_went_down.json", alertLevel=level)
        outcome = await DeviceDownHandler().handle(_event("device_down", body, "mr-west"))
        assert outcome.severity is severity

    async def test_without_device_the_target_is_the_events(self) -> None:
        """No device: target and summary fall back to the event's raw target."""
        body = _body("device_aps_went_down.json", alertType=None)
        event = make_event(
            "device_down", source="meraki.webhook", device=None, agent="Branch West", payload=body
        )
        outcome = await DeviceDownHandler().handle(event)
        assert outcome.target == "Branch West"
        assert outcome.device is None
        assert outcome.summary == "Device down: Branch West"

    async def test_secret_looking_keys_are_not_echoed(self) -> None:
        """A payload that still carried sharedSecret would not have it echoed into details."""
        body = _body("device_aps_went_down.json", sharedSecret=SECRET)
        outcome = await DeviceDownHandler().handle(_event("device_down", body, "mr-west"))
        assert SECRET not in repr(outcome)


class TestDeviceUp:
    async def test_fixture_is_info_on_the_device(self) -> None:
        """ "APs came up" is an info outcome on mr-west whatever Meraki's level."""
        event = _event(
            "device_up", _body("device_aps_came_up.json", alertLevel="critical"), "mr-west"
        )
        outcome = await DeviceUpHandler().handle(event)
        assert outcome.severity is Severity.INFO
        assert outcome.target == "mr-west"
        assert outcome.fact_key == "device_up|mr-west"
        assert outcome.summary == "Device up: mr-west (APs came up)"

    async def test_summary_without_alert_type(self) -> None:
        """Without alertType the summary is just the device."""
        outcome = await DeviceUpHandler().handle(make_event("device_up", device="r1"))
        assert outcome.summary == "Device up: r1"


class TestConfigChange:
    async def test_fixture_summary_names_page_and_change(self) -> None:
        """Settings changed: the page name and the change label, on the network."""
        body = _body("settings_changed.json")
        event = make_event(
            "config_change", source="meraki.webhook", device=None, agent="Branch West", payload=body
        )
        outcome = await ConfigChangeHandler().handle(event)
        assert outcome.severity is Severity.INFO
        assert outcome.target == "Branch West"
        assert outcome.summary == (
            "Configuration changed on Branch West: Addressing & VLANs — Changed VLAN 20 subnet"
        )
        assert outcome.details["alertData.name"] == "Addressing & VLANs"
        assert outcome.details["alertData.changes.vlanSubnet.changedBy"] == "ops-admin@example.com"

    async def test_many_changes_are_counted(self) -> None:
        """Beyond three labels the summary says how many more there were."""
        changes = {f"c{i}": {"label": f"change {i}"} for i in range(5)}
        body = {"alertType": "Settings changed", "alertData": {"changes": changes}}
        outcome = await ConfigChangeHandler().handle(
            make_event("config_change", device="mx-west", payload=body)
        )
        assert outcome.summary == (
            "Configuration changed on mx-west — change 0; change 1; change 2 (+2 more)"
        )

    async def test_no_alert_data(self) -> None:
        """Without alertData (or with junk in it) the summary is the bare fact."""
        for data in (None, "junk", {"changes": ["not", "a", "map"], "name": " "}):
            outcome = await ConfigChangeHandler().handle(
                make_event("config_change", device="r1", payload={"alertData": data})
            )
            assert outcome.summary == "Configuration changed on r1"

    def test_change_labels_skips_entries_without_text(self) -> None:
        """Only non-blank string labels of mapping entries are taken, in order."""
        data = {
            "changes": {"a": {"label": "one"}, "b": {"label": ""}, "c": 5, "d": {"label": "two"}}
        }
        assert change_labels(data) == ["one", "two"]

    async def test_every_change_passes_dedup(self) -> None:
        """Window 0: two changes of the same target both pass the real dedup gate."""
        store = InMemoryDedupStore()
        await store.start()
        gate = DedupGate(store)
        handler = ConfigChangeHandler()
        first = make_event("config_change", device="mx-west")
        second = make_event("config_change", device="mx-west")
        assert await gate(handler, first, {}) is first
        assert await gate(handler, second, {}) is second
        down = DeviceDownHandler()
        a, b = (
            make_event("device_down", device="mx-west"),
            make_event("device_down", device="mx-west"),
        )
        assert await gate(down, a, {}) is a
        assert await gate(down, b, {}) is OutcomeKind.SKIPPED
        await store.close()


class TestRegistration:
    def test_windows_and_severities(self) -> None:
        """Windows: device_down 300 s, device_up 60 s, config_change 0 (every change logged)."""
        assert (DeviceDownHandler.dedup_window, DeviceDownHandler.severity) == (
            300.0,
            Severity.HIGH,
        )
        assert (DeviceUpHandler.dedup_window, DeviceUpHandler.severity) == (60.0, Severity.INFO)
        assert (ConfigChangeHandler.dedup_window, ConfigChangeHandler.severity) == (
            0.0,
            Severity.INFO,
        )

    @pytest.mark.parametrize(
        ("handler_id", "subject"),
        [
            ("device_down", "sensory.meraki.webhook.device_down.mr-west"),
            ("device_down", "sensory.snmp.poll.device_down.r1"),
            ("device_up", "sensory.meraki.webhook.device_up.mr-west"),
            ("config_change", "sensory.meraki.webhook.config_change.Branch%20West"),
        ],
    )
    def test_builtin_registry_routes_each_class_to_one_handler(
        self, handler_id: str, subject: str
    ) -> None:
        """The built-in registry has each handler, and only it matches its class's subjects."""
        reg = builtin_registry()
        hits = [h.id for h in reg.all_handlers() if any(matches(p, subject) for p in h.patterns)]
        assert hits == [handler_id]
