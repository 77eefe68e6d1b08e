"""Unit tests for the snapshot index: name normalisation, canonical forms, peers."""

from __future__ import annotations

from typing import Any

import pytest

from netcortex.memory.semantic import (
    build_snapshot,
    canonical_address,
    canonical_mac,
    normalise_interface_name,
)


@pytest.mark.parametrize(
    ("short", "full"),
    [
        ("Gi1/0/3", "GigabitEthernet1/0/3"),
        ("gi1/0/3", "GigabitEthernet1/0/3"),
        ("Gig1/0/3", "GigabitEthernet1/0/3"),
        ("Te1/1/1", "TenGigabitEthernet1/1/1"),
        ("Fa0/1", "FastEthernet0/1"),
        ("Eth1/1", "Ethernet1/1"),
        ("Et1/1", "Ethernet1/1"),
        ("Po10", "Port-channel10"),
        ("Lo0", "Loopback0"),
        ("Vl100", "Vlan100"),
        ("Hu0/0/0/1", "HundredGigE0/0/0/1"),
        ("Tu1", "Tunnel1"),
        ("Gi0/0/0.100", "GigabitEthernet0/0/0.100"),
        ("port 1", "Port 1"),
        ("mgmt0", "Management0"),
    ],
)
def test_short_and_full_names_normalise_alike(short: str, full: str) -> None:
    """The common short form and the full name give the same normalised key."""
    assert normalise_interface_name(short) == normalise_interface_name(full)


def test_different_interfaces_stay_different() -> None:
    """Normalisation does not merge distinct interfaces (Gi vs Te, different numbers)."""
    keys = {normalise_interface_name(n) for n in ("Gi1/0/1", "Te1/0/1", "Gi1/0/10", "Fa1/0/1")}
    assert len(keys) == 4


@pytest.mark.parametrize(
    ("raw", "canon"),
    [
        ("192.0.2.1", "192.0.2.1"),
        ("192.0.2.1/24", "192.0.2.1"),
        (" 192.0.2.1 ", "192.0.2.1"),
        ("2001:DB8:0:0:0:0:0:1/64", "2001:db8::1"),
        ("fe80::1%eth0", "fe80::1"),
        ("::ffff:192.0.2.1", "192.0.2.1"),
        ("host.example", None),
        ("", None),
    ],
)
def test_canonical_address(raw: str, canon: str | None) -> None:
    """Addresses are canonicalised (prefix, zone, case, mapped v4) or rejected with None."""
    assert canonical_address(raw) == canon


@pytest.mark.parametrize(
    ("raw", "canon"),
    [
        ("00:1B:54:AA:00:08", "00:1b:54:aa:00:08"),
        ("00-1b-54-aa-00-08", "00:1b:54:aa:00:08"),
        ("001b.54aa.0008", "00:1b:54:aa:00:08"),
        ("001B54AA0008", "00:1b:54:aa:00:08"),
        ("00:1b:54:aa:00", None),
        ("zz:1b:54:aa:00:08", None),
    ],
)
def test_canonical_mac(raw: str, canon: str | None) -> None:
    """MACs in any common spelling become lower-case colon form; invalid ones None."""
    assert canonical_mac(raw) == canon


def _iface(i: int, device: str, name: str, **kw: Any) -> dict[str, Any]:
    return {"id": i, "name": name, "device": {"name": device}, **kw}


def test_exact_name_wins_over_normalised_collision() -> None:
    """When two names normalise alike, an exact name still finds its own interface."""
    snap = build_snapshot(
        {
            "devices": [{"id": 1, "name": "d"}],
            "interfaces": [_iface(1, "d", "Gi1"), _iface(2, "d", "GigabitEthernet1")],
        },
        source="test",
    )
    assert snap.interface("d", name="Gi1").inventory_id == 1  # type: ignore[union-attr]
    assert snap.interface("d", name="GigabitEthernet1").inventory_id == 2  # type: ignore[union-attr]


def test_ifindex_miss_falls_back_to_name() -> None:
    """Given both ifIndex and name, an unknown ifIndex falls back to the name."""
    snap = build_snapshot(
        {
            "devices": [{"id": 1, "name": "d"}],
            "interfaces": [_iface(1, "d", "Ethernet1", custom_fields={"snmp_ifindex": 7})],
        },
        source="test",
    )
    assert snap.interface("d", if_index=7).name == "Ethernet1"  # type: ignore[union-attr]
    assert snap.interface("d", if_index=99, name="Eth1").name == "Ethernet1"  # type: ignore[union-attr]
    assert snap.interface("d", if_index=99) is None


def test_cable_list_gives_peers_without_link_peers() -> None:
    """Without ``link_peers`` on the interfaces, the cables list gives both directions."""
    end = {"object_type": "dcim.interface"}
    cable = {
        "id": 1,
        "a_terminations": [{**end, "object": {"id": 1, "name": "Gi1", "device": {"name": "a"}}}],
        "b_terminations": [{**end, "object": {"id": 2, "name": "Gi2", "device": {"name": "b"}}}],
    }
    snap = build_snapshot(
        {
            "devices": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}],
            "interfaces": [_iface(1, "a", "Gi1"), _iface(2, "b", "Gi2")],
            "cables": [cable],
        },
        source="test",
    )
    assert snap.cable_peer("a", "Gi1").device == "b"  # type: ignore[union-attr]
    assert snap.cable_peer("b", "GigabitEthernet2").name == "Gi1"  # type: ignore[union-attr]


def test_duplicate_device_and_interface_are_skipped() -> None:
    """A second device or interface with the same name is skipped, the first kept."""
    snap = build_snapshot(
        {
            "devices": [{"id": 1, "name": "d"}, {"id": 2, "name": "d"}],
            "interfaces": [_iface(1, "d", "Gi1"), _iface(2, "d", "Gi1")],
        },
        source="test",
    )
    assert snap.by_name["d"].inventory_id == 1
    assert snap.skipped == {"devices": 1, "interfaces": 1}
