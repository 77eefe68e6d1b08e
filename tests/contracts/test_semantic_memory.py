"""Contract suite for ``SemanticMemory``: every backend answers the same lookups.

``file`` loads the scenario inventory from a JSON file; ``netbox`` syncs it from
the real-HTTP ``FakeNetbox`` (schema-validated requests; any invalid request
fails the test at teardown). The data is the shared fixture
``netbox/inventory.json`` plus one MAC and one IPv6 address
(``scenario_inventory``).
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from netcortex.contracts.memory import BgpSession, Device, Interface, SemanticMemory
from netcortex.memory.semantic import FileInventory, NetboxInventory
from tests.fake_netbox import (
    DEFAULT_TOKEN,
    SCENARIO_IPV6,
    SCENARIO_MAC,
    running_fake_netbox,
    scenario_inventory,
)

BACKENDS = ["file", "netbox"]


def _make(backend: str, tmp_path: Path, url: str = "") -> FileInventory | NetboxInventory:
    if backend == "file":
        path = tmp_path / "inventory.json"
        path.write_text(json.dumps(scenario_inventory()), encoding="utf-8")
        return FileInventory(path)
    return NetboxInventory(url, SecretStr(DEFAULT_TOKEN), page_size=7)


@pytest.fixture(params=BACKENDS)
async def memory(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SemanticMemory]:
    """A started inventory of the backend under test, loaded with the scenario."""
    if request.param == "file":
        inv = _make("file", tmp_path)
        await inv.start()
        yield inv
        await inv.close()
        return
    with running_fake_netbox(inventory=scenario_inventory()) as fake:
        inv = _make("netbox", tmp_path, fake.url)
        await inv.start()
        yield inv
        await inv.close()


@pytest.mark.parametrize("backend", BACKENDS)
async def test_snapshot_age_is_infinite_before_start(backend: str, tmp_path: Path) -> None:
    """Before the first load there is no snapshot: its age is infinite."""
    inv = _make(backend, tmp_path, "http://127.0.0.1:9")
    assert math.isinf(inv.snapshot_age())
    assert inv.device_by_name("sw1-north") is None
    await inv.close()  # safe without start


async def test_devices_lists_every_device(memory: SemanticMemory) -> None:
    """``devices()`` lists every device of the snapshot once, each the same value the
    name lookup gives (primary IP included)."""
    devices = memory.devices()
    names = [d.name for d in devices]
    assert sorted(names) == sorted(
        [
            "r1-north",
            "sw1-north",
            "sw2-north",
            "r1-south",
            "sw1-south",
            "mx-west",
            "ms-west",
            "mr-west",
        ]
    )
    for dev in devices:
        assert isinstance(dev, Device)
        assert memory.device_by_name(dev.name) == dev
    by_name = {d.name: d for d in devices}
    assert by_name["sw1-north"].primary_ip == "192.0.2.11"
    assert by_name["r1-south"].primary_ip == "198.51.100.1"


@pytest.mark.parametrize("backend", BACKENDS)
async def test_devices_is_empty_before_start(backend: str, tmp_path: Path) -> None:
    """Before the first load the list is empty (never an error)."""
    inv = _make(backend, tmp_path, "http://127.0.0.1:9")
    assert list(inv.devices()) == []
    await inv.close()


async def test_device_by_address_v4(memory: SemanticMemory) -> None:
    """Any assigned IPv4 address names its device, in any prefix-length spelling."""
    dev = memory.device_by_address("192.0.2.11")
    assert isinstance(dev, Device)
    assert (dev.name, dev.site, dev.role) == ("sw1-north", "dc-north", "switch")
    assert dev.primary_ip == "192.0.2.11"
    assert memory.device_by_address("192.0.2.11/24") == dev
    # A non-primary address (WAN link) also names the router.
    r1 = memory.device_by_address("203.0.113.0")
    assert r1 is not None
    assert r1.name == "r1-north"
    assert set(r1.addresses) >= {"192.0.2.1", "203.0.113.0", "203.0.113.8", SCENARIO_IPV6}


async def test_device_by_address_v6_any_spelling(memory: SemanticMemory) -> None:
    """IPv6 addresses compare in canonical form (case, zero runs, prefix length)."""
    for spelling in (SCENARIO_IPV6, "2001:DB8:0:0::1", "2001:0db8::0001/128"):
        dev = memory.device_by_address(spelling)
        assert dev is not None, spelling
        assert dev.name == "r1-north", spelling


async def test_device_by_name_and_serial(memory: SemanticMemory) -> None:
    """Devices are found by exact name and by serial number."""
    ms = memory.device_by_serial("Q2ZZ-0002-MSW1")
    assert ms is not None
    assert ms.name == "ms-west"
    assert ms.site == "branch-west"
    assert memory.device_by_name("ms-west") == ms
    assert memory.device_by_name("MS-WEST") is None


async def test_device_by_mac_any_spelling(memory: SemanticMemory) -> None:
    """A MAC in colon, dash, Cisco-dot or bare form names the device of its interface."""
    spellings = (SCENARIO_MAC, "00-1B-54-AA-00-08", "001b.54aa.0008", "001B54AA0008")
    for spelling in spellings:
        dev = memory.device_by_mac(spelling)
        assert dev is not None, spelling
        assert dev.name == "sw1-north", spelling
    iface = memory.interface("sw1-north", name="GigabitEthernet1/0/3")
    assert iface is not None
    assert iface.mac == SCENARIO_MAC


async def test_interface_by_ifindex_and_names(memory: SemanticMemory) -> None:
    """ifIndex 3 on sw1-north is GigabitEthernet1/0/3, also found by full and short name."""
    by_index = memory.interface("sw1-north", if_index=3)
    assert isinstance(by_index, Interface)
    assert (by_index.device, by_index.name, by_index.if_index) == (
        "sw1-north",
        "GigabitEthernet1/0/3",
        3,
    )
    assert memory.interface("sw1-north", name="GigabitEthernet1/0/3") == by_index
    assert memory.interface("sw1-north", name="Gi1/0/3") == by_index
    assert memory.interface("sw1-north", name="gi1/0/3") == by_index
    lo = memory.interface("r1-north", name="Lo0")
    assert lo is not None
    assert lo.name == "Loopback0"
    assert lo.if_index == 10
    vlan = memory.interface("sw1-north", name="Vl100")
    assert vlan is not None
    assert vlan.name == "Vlan100"
    port = memory.interface("ms-west", name="Port 1")
    assert port is not None
    assert port.if_index is None


async def test_cable_peer(memory: SemanticMemory) -> None:
    """sw1-north Gi1/0/3 is cabled to sw2-north GigabitEthernet1/0/3 (both ends, any name form)."""
    peer = memory.cable_peer("sw1-north", "GigabitEthernet1/0/3")
    assert peer is not None
    assert (peer.device, peer.name, peer.if_index) == ("sw2-north", "GigabitEthernet1/0/3", 3)
    assert memory.cable_peer("sw1-north", "Gi1/0/3") == peer
    back = memory.cable_peer("sw2-north", "GigabitEthernet1/0/3")
    assert back is not None
    assert (back.device, back.name) == ("sw1-north", "GigabitEthernet1/0/3")
    meraki = memory.cable_peer("ms-west", "Port 1")
    assert meraki is not None
    assert (meraki.device, meraki.name) == ("mx-west", "Port 3")
    # Transit port: marked connected, no cable.
    assert memory.cable_peer("r1-north", "GigabitEthernet0/0/3") is None


async def test_bgp_session(memory: SemanticMemory) -> None:
    """r1-north towards 203.0.113.1 is session 1; towards 203.0.113.9 session 3."""
    s1 = memory.bgp_session("r1-north", "203.0.113.1")
    assert isinstance(s1, BgpSession)
    assert (s1.inventory_id, s1.local_address, s1.local_asn, s1.remote_asn) == (
        1,
        "203.0.113.0",
        64500,
        64500,
    )
    s3 = memory.bgp_session("r1-north", "203.0.113.9/31")
    assert s3 is not None
    assert s3.inventory_id == 3
    assert s3.remote_asn == 64510
    assert memory.bgp_session("r1-south", "203.0.113.1") is None


async def test_unknown_lookups_are_none(memory: SemanticMemory) -> None:
    """Unknown addresses, names, serials, MACs, interfaces and garbage give ``None``."""
    assert memory.device_by_address("10.99.99.99") is None
    assert memory.device_by_address("not-an-ip") is None
    assert memory.device_by_name("nope") is None
    assert memory.device_by_serial("NOPE-0000") is None
    assert memory.device_by_mac("00:00:00:00:00:01") is None
    assert memory.device_by_mac("zz") is None
    assert memory.interface("sw1-north", if_index=999) is None
    assert memory.interface("sw1-north", name="Gi9/9/9") is None
    assert memory.interface("nope", if_index=3) is None
    assert memory.interface("sw1-north") is None
    assert memory.cable_peer("nope", "Gi1/0/3") is None
    assert memory.bgp_session("r1-north", "198.18.0.1") is None
    assert memory.bgp_session("r1-north", "garbage") is None


async def test_snapshot_age_grows(memory: SemanticMemory) -> None:
    """The snapshot age is small after start and grows while no refresh happens."""
    first = memory.snapshot_age()
    assert 0.0 <= first < 60.0
    await asyncio.sleep(0.02)  # elapsed time is the thing under test
    assert memory.snapshot_age() >= first + 0.02


async def test_odd_input_finds_nothing_and_never_raises(memory: SemanticMemory) -> None:
    """Lookups given ``None``, numbers, booleans or lists (a webhook payload's odd values)
    return ``None`` instead of raising; an IPv6 zone id or IPv4-mapped form still matches."""
    odd: list[object] = [None, 3, 3.0, True, ["192.0.2.11"], {"a": 1}, b"192.0.2.11"]
    for value in odd:
        v: object = value
        assert memory.device_by_address(v) is None, v  # type: ignore[arg-type]
        assert memory.device_by_name(v) is None, v  # type: ignore[arg-type]
        assert memory.device_by_serial(v) is None, v  # type: ignore[arg-type]
        assert memory.device_by_mac(v) is None, v  # type: ignore[arg-type]
        assert memory.interface(v, if_index=3) is None, v  # type: ignore[arg-type]
        assert memory.interface("sw1-north", name=v) is None, v  # type: ignore[arg-type]
        assert memory.cable_peer("sw1-north", v) is None, v  # type: ignore[arg-type]
        assert memory.cable_peer(v, "Gi1/0/3") is None, v  # type: ignore[arg-type]
        assert memory.bgp_session("r1-north", v) is None, v  # type: ignore[arg-type]
    # A boolean is not an ifIndex (True == 1 must not find ifIndex 1).
    assert memory.interface("sw1-north", if_index=True) is None
    sw1 = memory.device_by_address("192.0.2.11")
    assert sw1 is not None
    assert memory.device_by_address("192.0.2.11%eth0") == sw1
    assert memory.device_by_address("::ffff:192.0.2.11") == sw1
    r1 = memory.device_by_address(f"{SCENARIO_IPV6}%ge-0/0/0.0")
    assert r1 is not None
    assert r1.name == "r1-north"
