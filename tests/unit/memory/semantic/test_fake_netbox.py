"""Tests of the test double: the fake NetBox validates requests and its fixture data."""

from __future__ import annotations

import httpx
import pytest

from tests.fake_netbox import DEFAULT_TOKEN, openapi_validator, scenario_inventory
from tests.unit.memory.semantic.conftest import MakeFake

AUTH = {"Authorization": f"Token {DEFAULT_TOKEN}"}
CORE_LISTS = (
    "/api/dcim/sites/",
    "/api/dcim/devices/",
    "/api/dcim/interfaces/",
    "/api/dcim/cables/",
    "/api/ipam/ip-addresses/",
    "/api/ipam/asns/",
)
JOURNAL = "/api/extras/journal-entries/"
GOOD_JOURNAL = {
    "assigned_object_type": "dcim.interface",
    "assigned_object_id": 8,
    "kind": "danger",
    "comments": "linkDown on sw1-north GigabitEthernet1/0/3",
}


@pytest.mark.parametrize("path", CORE_LISTS)
def test_fixture_responses_validate_against_schema(path: str) -> None:
    """Every core list body of the (scenario) fixture validates, quirks applied."""
    body = scenario_inventory()[path]
    assert openapi_validator().check_response("GET", path, body) == []


def test_response_validation_is_not_vacuous() -> None:
    """A wrongly typed field in a response body is reported."""
    body = scenario_inventory()["/api/dcim/devices/"]
    body["results"][0]["name"] = 12
    body["results"][1]["status"] = {"value": "exploded", "label": "Exploded"}
    problems = openapi_validator().check_response("GET", "/api/dcim/devices/", body)
    assert len(problems) >= 2


async def test_invalid_requests_get_400_and_are_recorded(fake_netbox: MakeFake) -> None:
    """Undeclared or mistyped query parameters and unknown paths get 400 and land in ``errors``."""
    fake = fake_netbox()
    async with httpx.AsyncClient(base_url=fake.url, headers=AUTH) as client:
        assert (await client.get("/api/dcim/devices/", params={"bogus": "1"})).status_code == 400
        assert (await client.get("/api/dcim/devices/", params={"limit": "x"})).status_code == 400
        assert (await client.get("/api/dcim/nothing-here/")).status_code == 400
        ok = await client.get("/api/dcim/interfaces/", params={"device": "sw1-north"})
        assert ok.status_code == 200
    assert len(fake.errors) == 3
    fake.errors.clear()  # expected here; the fixture fails a test on any left over


async def test_request_bodies_are_validated(fake_netbox: MakeFake) -> None:
    """Journal entries: valid one and bulk bodies pass; a bad kind or missing comments give 400."""
    fake = fake_netbox()
    async with httpx.AsyncClient(base_url=fake.url, headers=AUTH) as client:
        assert (await client.post(JOURNAL, json=GOOD_JOURNAL)).status_code == 201
        assert (await client.post(JOURNAL, json=[GOOD_JOURNAL, GOOD_JOURNAL])).status_code == 201
        bad_kind = {**GOOD_JOURNAL, "kind": "critical"}
        no_comments = {k: v for k, v in GOOD_JOURNAL.items() if k != "comments"}
        assert (await client.post(JOURNAL, json=bad_kind)).status_code == 400
        assert (await client.post(JOURNAL, json=no_comments)).status_code == 400
        patch = await client.patch("/api/dcim/interfaces/8/", json={"description": "x"})
        assert patch.status_code == 200
    assert len(fake.writes) == 3
    assert len(fake.errors) == 2
    fake.errors.clear()


async def test_auth_and_plugin_paths(fake_netbox: MakeFake) -> None:
    """Requests without the token get 403; the BGP plugin path is served, or 404 when absent."""
    with_plugin, without = fake_netbox(), fake_netbox(bgp_plugin=False)
    async with httpx.AsyncClient() as client:
        assert (await client.get(with_plugin.url + "/api/dcim/sites/")).status_code == 403
        bgp = await client.get(with_plugin.url + "/api/plugins/bgp/bgpsession/", headers=AUTH)
        assert bgp.status_code == 200
        assert bgp.json()["count"] == 4
        gone = await client.get(without.url + "/api/plugins/bgp/bgpsession/", headers=AUTH)
        assert gone.status_code == 404


async def test_pagination_links(fake_netbox: MakeFake) -> None:
    """``limit``/``offset`` slice the list and ``next``/``previous`` link the pages."""
    fake = fake_netbox()
    async with httpx.AsyncClient(headers=AUTH) as client:
        first = (await client.get(fake.url + "/api/dcim/interfaces/?limit=10")).json()
        assert first["count"] == 24
        assert len(first["results"]) == 10
        assert first["previous"] is None
        second = (await client.get(first["next"])).json()
        assert [r["id"] for r in second["results"]] == list(range(11, 21))
        last = (await client.get(second["next"])).json()
        assert len(last["results"]) == 4
        assert last["next"] is None
        assert last["previous"].startswith(fake.url)
