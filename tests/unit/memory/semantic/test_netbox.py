"""Unit tests for ``NetboxInventory`` specifics: pagination, tokens, plugin, refresh, TLS.

Lookups every backend shares are in ``tests/contracts/test_semantic_memory.py``.
Every test talks real HTTP to ``FakeNetbox`` (schema-validated requests).
"""

from __future__ import annotations

import asyncio
import traceback
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr
from structlog.testing import capture_logs

from netcortex.errors import StoreError
from netcortex.memory.semantic import NetboxInventory, authorization_header
from netcortex.metrics import Registry
from tests.fake_netbox import DEFAULT_TOKEN, FakeNetbox, fixture_inventory, self_signed_tls
from tests.unit.memory.semantic.conftest import MakeFake

V2_TOKEN = "nbt_AbCdEf012345.s3cr3tV2t0kenPart0123456789"
WAIT = 10.0


def _inv(fake: FakeNetbox, token: str = DEFAULT_TOKEN, **kw: object) -> NetboxInventory:
    return NetboxInventory(fake.url, SecretStr(token), **kw)  # type: ignore[arg-type]


def _gets(fake: FakeNetbox, path: str) -> list[dict[str, str]]:
    return [dict(r.query) for r in fake.requests if r.path == path]


async def test_pagination_follows_next_with_small_pages(fake_netbox: MakeFake) -> None:
    """With ``page_size=5`` every list is fetched page by page (limit/offset via ``next``)."""
    fake = fake_netbox()
    async with _inv(fake, page_size=5) as inv:
        assert inv.snapshot.counts["interfaces"] == 24
        assert inv.snapshot.counts["devices"] == 8
        assert inv.interface("mr-west", name="Ethernet 0") is not None  # on the last page
    pages = _gets(fake, "/api/dcim/interfaces/")
    assert [(p["limit"], p["offset"]) for p in pages] == [
        ("5", "0"),
        ("5", "5"),
        ("5", "10"),
        ("5", "15"),
        ("5", "20"),
    ]


async def test_server_page_cap_is_followed(fake_netbox: MakeFake) -> None:
    """When NetBox caps the page (MAX_PAGE_SIZE) below ``page_size``, ``next`` still gets all."""
    fake = fake_netbox(max_page_size=10)
    async with _inv(fake, page_size=1000) as inv:
        assert inv.snapshot.counts["interfaces"] == 24
    assert len(_gets(fake, "/api/dcim/interfaces/")) == 3


@pytest.mark.parametrize(
    ("token", "scheme"), [(DEFAULT_TOKEN, "Token"), (V2_TOKEN, "Bearer")], ids=["v1", "v2"]
)
async def test_token_header_v1_and_v2(fake_netbox: MakeFake, token: str, scheme: str) -> None:
    """v1 tokens are sent as ``Token <t>``, v2 ``nbt_`` tokens as ``Bearer <t>``."""
    assert authorization_header(SecretStr(token)) == f"{scheme} {token}"
    fake = fake_netbox(token=token)
    async with _inv(fake, token) as inv:
        assert inv.device_by_name("r1-north") is not None
    assert {r.authorization for r in fake.requests} == {f"{scheme} {token}"}


async def test_refused_token_fails_start_without_leaking(fake_netbox: MakeFake) -> None:
    """A refused token makes ``start`` raise ``StoreError`` (403) that never shows the token."""
    fake = fake_netbox(token=DEFAULT_TOKEN)
    wrong = "ffffffffffffffffffffffffffffffffdeadbeef"
    inv = _inv(fake, wrong)
    with capture_logs() as logs, pytest.raises(StoreError, match="403") as info:
        await inv.start()
    text = "".join(traceback.format_exception(info.value)) + repr(logs) + repr(inv)
    assert wrong not in text
    assert inv.snapshot_age() == float("inf")


async def test_plugin_absent_means_no_sessions(fake_netbox: MakeFake) -> None:
    """A 404 on the netbox-bgp path is "plugin absent": no sessions, everything else loads."""
    fake = fake_netbox(bgp_plugin=False)
    with capture_logs() as logs:
        async with _inv(fake) as inv:
            assert inv.bgp_session("r1-north", "203.0.113.1") is None
            assert inv.device_by_address("192.0.2.11") is not None
            assert inv.snapshot.counts["bgp_sessions"] == 0
    assert any(e["event"] == "netbox_bgp_plugin_absent" for e in logs)
    assert inv.metrics.get("netcortex_inventory_sync_failures_total").total() == 0  # type: ignore[union-attr]


async def test_refresh_picks_up_changes(fake_netbox: MakeFake) -> None:
    """The background refresh swaps in a new snapshot when NetBox changes."""
    fake = fake_netbox(inventory=fixture_inventory())
    async with _inv(fake, refresh_seconds=0.05) as inv:
        assert inv.device_by_name("mr-west") is not None
        devices = fake.inventory["/api/dcim/devices/"]
        devices["results"] = [d for d in devices["results"] if d["name"] != "mr-west"]
        devices["count"] = len(devices["results"])
        await asyncio.wait_for(inv.wait_attempts(inv.attempts + 2), WAIT)
        assert inv.device_by_name("mr-west") is None
        assert inv.device_by_name("ms-west") is not None


async def test_failed_refresh_keeps_old_snapshot(fake_netbox: MakeFake) -> None:
    """NetBox gone: refreshes fail, are logged and counted; lookups keep answering (stale)."""
    fake = fake_netbox(token=V2_TOKEN)
    reg = Registry()
    inv = _inv(fake, V2_TOKEN, refresh_seconds=0.05, metrics=reg)
    await inv.start()
    try:
        fake.stop()
        with capture_logs() as logs:
            await asyncio.wait_for(inv.wait_attempts(inv.attempts + 2), WAIT)
            # Lookups answer from the old snapshot, without waiting on NetBox.
            assert inv.device_by_address("192.0.2.11").name == "sw1-north"  # type: ignore[union-attr]
            assert inv.interface("sw1-north", if_index=3).name == "GigabitEthernet1/0/3"  # type: ignore[union-attr]
            assert inv.bgp_session("r1-north", "203.0.113.1") is not None
        failures = reg.get("netcortex_inventory_sync_failures_total")
        assert failures is not None
        assert failures.value(backend="netbox") >= 2
        warned = [e for e in logs if e["event"] == "netbox_refresh_failed"]
        assert warned
        assert all(e["log_level"] == "warning" for e in warned)
        assert inv.snapshot_age() > 0.1  # two refresh periods passed without a new snapshot
        assert V2_TOKEN not in repr(logs)
        with pytest.raises(StoreError) as info:
            await inv.refresh()
        assert V2_TOKEN not in "".join(traceback.format_exception(info.value))
        assert fake.url in str(info.value)
    finally:
        await inv.close()


async def test_token_never_in_repr_or_logs(fake_netbox: MakeFake) -> None:
    """The token appears in no repr, log event or metric, only on the wire."""
    fake = fake_netbox(token=V2_TOKEN)
    reg = Registry()
    with capture_logs() as logs:
        inv = _inv(fake, V2_TOKEN, metrics=reg)
        async with inv:
            await inv.refresh()
            text = repr(inv) + str(inv) + repr(logs) + reg.render()
    assert V2_TOKEN not in text
    assert "netbox_synced" in {e["event"] for e in logs}


async def test_unreachable_netbox_fails_start(tmp_path: Path) -> None:
    """Nothing listening: ``start`` raises ``StoreError`` naming the URL."""
    fake = FakeNetbox().start()
    url = fake.url
    fake.stop()  # the port now refuses connections
    inv = NetboxInventory(url, SecretStr(DEFAULT_TOKEN), timeout=2.0)
    with pytest.raises(StoreError, match=r"127\.0\.0\.1"):
        await inv.start()
    await inv.close()


async def test_tls_verification_is_on_by_default(tmp_path: Path, fake_netbox: MakeFake) -> None:
    """A self-signed NetBox is refused by default and accepted with ``verify_tls=False``."""
    fake = fake_netbox(tls=self_signed_tls(tmp_path))
    assert fake.url.startswith("https://")
    strict = _inv(fake)
    assert strict.verify_tls is True
    with pytest.raises(StoreError, match="ConnectError"):
        await strict.start()
    async with _inv(fake, verify_tls=False) as lax:
        assert lax.device_by_name("sw1-north") is not None


async def test_non_netbox_answer_is_a_store_error() -> None:
    """An answer that is not a NetBox list body (seen through a custom transport) fails the sync."""

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"unexpected": True})

    inv = NetboxInventory(
        "https://netbox.invalid",
        SecretStr(DEFAULT_TOKEN),
        transport=httpx.MockTransport(handler),
    )
    with pytest.raises(StoreError, match="not a NetBox list body"):
        await inv.start()


async def test_next_link_to_another_origin_is_rerooted() -> None:
    """A ``next`` naming another host is followed on the configured host (token stays home)."""
    hosts: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        hosts.append(request.url.host)
        offset = int(request.url.params.get("offset", "0"))
        if request.url.path.endswith("/dcim/devices/") and offset == 0:
            nxt = "http://internal-name:8080/api/dcim/devices/?limit=1&offset=1"
            return httpx.Response(200, json={"count": 2, "next": nxt, "results": []})
        return httpx.Response(200, json={"count": 0, "next": None, "results": []})

    inv = NetboxInventory(
        "https://netbox.example.com",
        SecretStr(DEFAULT_TOKEN),
        transport=httpx.MockTransport(handler),
    )
    async with inv:
        pass
    assert set(hosts) == {"netbox.example.com"}
    assert len(hosts) == 7


def test_constructor_rejects_nonsense() -> None:
    """Non-positive refresh, timeout or page size are refused at construction."""
    for kw in ({"refresh_seconds": 0}, {"timeout": -1}, {"page_size": 0}):
        with pytest.raises(ValueError, match="must be"):
            NetboxInventory("http://x", SecretStr("t"), **kw)  # type: ignore[arg-type]


def _lists_handler(
    devices: Callable[[httpx.Request, int], httpx.Response] | None = None,
) -> tuple[Callable[[httpx.Request], httpx.Response], list[str]]:
    """A NetBox stand-in: every list empty, except that ``devices(request, n)`` (n = the
    how-many-th devices request, from 1) answers the devices path when given."""
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.path)
        if devices is not None and request.url.path.endswith("/dcim/devices/"):
            return devices(request, seen.count(request.url.path))
        return httpx.Response(200, json={"count": 0, "next": None, "results": []})

    return handler, seen


_EMPTY: dict[str, object] = {"count": 0, "next": None, "results": []}


async def test_malformed_next_link_is_a_store_error() -> None:
    """A ``next`` that is not a URL fails ``start`` with ``StoreError`` (not a raw httpx error)."""

    def devices(request: httpx.Request, n: int) -> httpx.Response:
        bad = {"count": 2, "next": "http://netbox.invalid:port/api/dcim/devices/", "results": []}
        return httpx.Response(200, json=bad)

    handler, _ = _lists_handler(devices)
    inv = NetboxInventory(
        "https://netbox.invalid", SecretStr(DEFAULT_TOKEN), transport=httpx.MockTransport(handler)
    )
    with pytest.raises(StoreError, match="bad 'next' link"):
        await inv.start()
    await inv.close()


async def test_refresh_task_survives_unforeseen_failures() -> None:
    """Refreshes that fail in an unforeseen way are counted and logged, and the refresh task
    keeps running (it does not die silently after the first one)."""

    def devices(request: httpx.Request, n: int) -> httpx.Response:
        if n == 1:
            return httpx.Response(200, json=_EMPTY)
        bad = {"count": 2, "next": "http://netbox.invalid:port/api/dcim/devices/", "results": []}
        return httpx.Response(200, json=bad)

    handler, _ = _lists_handler(devices)
    reg = Registry()
    inv = NetboxInventory(
        "https://netbox.invalid",
        SecretStr(DEFAULT_TOKEN),
        refresh_seconds=0.01,
        metrics=reg,
        transport=httpx.MockTransport(handler),
    )
    with capture_logs() as logs:
        async with inv:
            await asyncio.wait_for(inv.wait_attempts(inv.attempts + 3), WAIT)
    failures = reg.get("netcortex_inventory_sync_failures_total")
    assert failures is not None
    assert failures.value(backend="netbox") >= 3
    assert [e for e in logs if e["event"] == "netbox_refresh_failed"]


@pytest.mark.parametrize(
    "transient",
    [
        httpx.Response(429, headers={"Retry-After": "0"}),
        httpx.Response(503),
        httpx.RemoteProtocolError("Server disconnected without sending a response."),
    ],
    ids=["429", "503", "dropped"],
)
async def test_transient_failures_are_retried(transient: httpx.Response | Exception) -> None:
    """A 429 (with Retry-After), a 503 or a dropped connection is retried with backoff, so one
    hiccup does not fail the sync."""

    def devices(request: httpx.Request, n: int) -> httpx.Response:
        if n <= 2:
            if isinstance(transient, Exception):
                raise transient
            return transient
        body = {"count": 1, "next": None, "results": [{"id": 1, "name": "d1"}]}
        return httpx.Response(200, json=body)

    handler, seen = _lists_handler(devices)
    inv = NetboxInventory(
        "https://netbox.invalid",
        SecretStr(DEFAULT_TOKEN),
        backoff=0.001,
        transport=httpx.MockTransport(handler),
    )
    with capture_logs() as logs:
        async with inv:
            assert inv.device_by_name("d1") is not None
    assert seen.count("/api/dcim/devices/") == 3
    assert [e["attempt"] for e in logs if e["event"] == "netbox_retry"] == [1, 2]


async def test_retries_are_bounded() -> None:
    """A NetBox answering 503 forever fails the sync after ``retries`` retries per request."""

    def devices(request: httpx.Request, n: int) -> httpx.Response:
        return httpx.Response(503, headers={"Retry-After": "3600"})  # capped by max_backoff

    handler, seen = _lists_handler(devices)
    inv = NetboxInventory(
        "https://netbox.invalid",
        SecretStr(DEFAULT_TOKEN),
        retries=2,
        backoff=0.001,
        max_backoff=0.001,
        transport=httpx.MockTransport(handler),
    )
    with pytest.raises(StoreError, match="HTTP 503"):
        await inv.start()
    assert seen.count("/api/dcim/devices/") == 3
    await inv.close()
