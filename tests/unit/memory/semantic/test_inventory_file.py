"""Unit tests for ``FileInventory``: formats, errors naming the file, reload, bad entries.

Lookups every backend shares are in ``tests/contracts/test_semantic_memory.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from structlog.testing import capture_logs

from netcortex.errors import StoreError
from netcortex.memory.semantic import FileInventory
from netcortex.metrics import Registry
from tests.conftest import shared_fixture
from tests.fake_netbox import fixture_inventory


async def test_shared_fixture_loads_as_is() -> None:
    """``netbox/inventory.json`` loads unchanged, every list fully indexed, nothing skipped."""
    async with FileInventory(shared_fixture("netbox", "inventory.json")) as inv:
        assert inv.snapshot.counts == {
            "sites": 3,
            "devices": 8,
            "interfaces": 24,
            "cables": 6,
            "ip_addresses": 14,
            "bgp_sessions": 4,
        }
        assert inv.snapshot.skipped == {}
        assert inv.device_by_address("192.0.2.11").name == "sw1-north"  # type: ignore[union-attr]


@pytest.mark.parametrize("suffix", [".yaml", ".yml", ".inventory"])
async def test_yaml_file_loads(tmp_path: Path, suffix: str) -> None:
    """The same document written as YAML (any non-.json suffix) loads the same inventory."""
    path = tmp_path / f"inv{suffix}"
    path.write_text(yaml.safe_dump(fixture_inventory()), encoding="utf-8")
    async with FileInventory(path) as inv:
        assert inv.snapshot.counts["interfaces"] == 24
        assert inv.cable_peer("sw1-north", "Gi1/0/3").name == "GigabitEthernet1/0/3"  # type: ignore[union-attr]


async def test_bare_lists_are_accepted(tmp_path: Path) -> None:
    """A list path may map to a bare list of objects instead of a list body."""
    doc = {k: v["results"] for k, v in fixture_inventory().items() if k.startswith("/api/")}
    path = tmp_path / "bare.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    async with FileInventory(path) as inv:
        assert inv.device_by_serial("Q2ZZ-0001-MXW1").name == "mx-west"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (None, "cannot read"),
        ("{not json", "cannot read"),
        ("[1, 2]", "top level must be a mapping"),
        ('{"_comment": "nothing"}', "none of the API list paths"),
        ('{"/api/dcim/devices/": {"results": 3}}', "no 'results' list"),
    ],
    ids=["missing", "bad-json", "not-mapping", "no-lists", "bad-results"],
)
async def test_unreadable_file_raises_naming_it(
    tmp_path: Path, content: str | None, match: str
) -> None:
    """A missing or malformed file makes ``start`` raise ``StoreError`` naming the file."""
    path = tmp_path / "inventory.json"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    reg = Registry()
    inv = FileInventory(path, metrics=reg)
    with pytest.raises(StoreError, match=match) as info:
        await inv.start()
    assert str(path) in str(info.value)
    assert reg.get("netcortex_inventory_sync_failures_total").total() == 1  # type: ignore[union-attr]


async def test_reload_swaps_and_keeps_on_failure(tmp_path: Path) -> None:
    """``reload`` picks up a changed file; a broken file keeps the old snapshot and raises."""
    path = tmp_path / "inventory.json"
    doc = fixture_inventory()
    path.write_text(json.dumps(doc), encoding="utf-8")
    async with FileInventory(path) as inv:
        first = inv.snapshot
        doc["/api/dcim/devices/"]["results"][0]["name"] = "r1-north-renamed"
        path.write_text(json.dumps(doc), encoding="utf-8")
        await inv.reload()
        assert inv.device_by_name("r1-north-renamed") is not None
        assert inv.device_by_name("r1-north") is None
        assert inv.snapshot is not first
        current = inv.snapshot
        path.write_text("{broken", encoding="utf-8")
        with capture_logs() as logs, pytest.raises(StoreError):
            await inv.reload()
        assert inv.snapshot is current
        assert inv.device_by_name("r1-north-renamed") is not None
        assert [e["event"] for e in logs] == ["inventory_reload_failed"]


async def test_malformed_entries_are_skipped_counted_logged(tmp_path: Path) -> None:
    """Bad entries are skipped with a counted, logged warning; the rest still loads."""
    doc = fixture_inventory()
    doc["/api/dcim/devices/"]["results"] += ["junk", {"id": 99, "name": None}]
    doc["/api/dcim/interfaces/"]["results"] += [
        {
            "id": 98,
            "name": "Gi9",
            "device": {"name": "sw1-north"},
            "custom_fields": {"snmp_ifindex": "x"},
        },
        {"id": 97, "name": "Gi8", "device": {"name": "ghost"}},
    ]
    doc["/api/ipam/ip-addresses/"]["results"].append({"id": 96, "address": "999.1.1.1/24"})
    doc["/api/plugins/bgp/bgpsession/"]["results"].append({"id": 95, "device": {"name": "r1"}})
    path = tmp_path / "inventory.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    reg = Registry()
    with capture_logs() as logs:
        async with FileInventory(path, metrics=reg) as inv:
            assert inv.snapshot.skipped == {
                "devices": 2,
                "interfaces": 2,
                "ip_addresses": 1,
                "bgp_sessions": 1,
            }
            assert inv.snapshot.counts["devices"] == 8
            assert inv.interface("sw1-north", if_index=3) is not None
    skipped = reg.get("netcortex_inventory_skipped_total")
    assert skipped is not None
    assert skipped.by_label("kind")["devices"] == 2
    warned = [e for e in logs if e["event"] == "inventory_entry_skipped"]
    assert len(warned) == 6
    assert all(e["log_level"] == "warning" for e in warned)
    assert any(e["event"] == "inventory_entries_skipped" for e in logs)


async def test_metrics_after_load(tmp_path: Path) -> None:
    """A load sets the object gauges, the snapshot timestamp and one sync duration."""
    reg = Registry()
    async with FileInventory(shared_fixture("netbox", "inventory.json"), metrics=reg) as inv:
        inv.snapshot_age()
    objects = reg.get("netcortex_inventory_objects")
    assert objects is not None
    assert objects.value(backend="file", kind="interfaces") == 24
    hist = reg.get("netcortex_inventory_sync_seconds")
    assert hist is not None
    assert hist.count(backend="file") == 1
    assert "netcortex_inventory_snapshot_age_seconds" in reg.render()
