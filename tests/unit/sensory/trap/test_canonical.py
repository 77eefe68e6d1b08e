"""Unit tests: the trap normaliser canonicalises targets with semantic memory."""

from __future__ import annotations

from datetime import UTC, datetime

from netcortex.memory.semantic import FileInventory
from netcortex.sensory.trap import Normalizer
from netcortex.sensory.trap.ber import VarBind
from netcortex.sensory.trap.decode import Notification


def _note(if_index: int, if_name: str | None) -> Notification:
    """A decoded v2c linkDown about ``if_index`` (with ifName when given)."""
    varbinds = [VarBind(f"1.3.6.1.2.1.2.2.1.1.{if_index}", "INTEGER", if_index)]
    if if_name is not None:
        varbinds.append(
            VarBind(f"1.3.6.1.2.1.31.1.1.1.1.{if_index}", "OCTET STRING", if_name.encode())
        )
    return Notification(
        version="v2c",
        pdu_type="snmpv2_trap",
        request_id=1,
        trap_oid="1.3.6.1.6.3.1.1.5.3",
        uptime=360000,
        varbinds=tuple(varbinds),
    )


class TestCanonicalTargets:
    def test_address_and_ifindex_become_inventory_names(self, inventory: FileInventory) -> None:
        """192.0.2.11 + ifIndex 3 is published as sw1-north|GigabitEthernet1/0/3, flagged known."""
        event = Normalizer(memory=inventory).normalize(
            _note(3, "Gi1/0/3"), "192.0.2.11", datetime.now(UTC)
        )
        assert (event.device, event.interface) == ("sw1-north", "GigabitEthernet1/0/3")
        assert event.target == "sw1-north|GigabitEthernet1/0/3"
        assert event.subject.endswith(".sw1-north.GigabitEthernet1/0/3")
        assert event.payload["inventory"] == "device+interface"
        assert event.agent == "192.0.2.11"  # the raw sender stays on the event

    def test_short_name_is_used_when_the_index_is_unknown(self, inventory: FileInventory) -> None:
        """An ifIndex the inventory lacks falls back to the ifName (short form)."""
        event = Normalizer(memory=inventory).normalize(
            _note(999, "Gi1/0/3"), "192.0.2.11", datetime.now(UTC)
        )
        assert event.interface == "GigabitEthernet1/0/3"

    def test_unknown_interface_keeps_the_device_name(self, inventory: FileInventory) -> None:
        """A known device with an unknown interface keeps the raw interface, flagged device."""
        event = Normalizer(memory=inventory).normalize(
            _note(999, None), "192.0.2.11", datetime.now(UTC)
        )
        assert (event.device, event.interface) == ("sw1-north", "ifIndex=999")
        assert event.payload["inventory"] == "device"

    def test_unknown_sender_stays_raw_and_flagged(self, inventory: FileInventory) -> None:
        """An address the inventory does not know stays raw and is flagged, never dropped."""
        event = Normalizer(memory=inventory).normalize(
            _note(3, "Gi1/0/3"), "127.0.0.99", datetime.now(UTC)
        )
        assert event.target == "127.0.0.99|Gi1/0/3"
        assert event.payload["inventory"] == "unknown"

    def test_without_memory_nothing_is_flagged(self) -> None:
        """With no inventory configured the target is the raw address and no flag is added."""
        event = Normalizer().normalize(_note(3, "Gi1/0/3"), "192.0.2.11", datetime.now(UTC))
        assert event.target == "192.0.2.11|Gi1/0/3"
        assert "inventory" not in event.payload
