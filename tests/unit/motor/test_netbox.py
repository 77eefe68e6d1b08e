"""Unit tests for ``netcortex.motor.netbox``: the journal client against the real fake NetBox."""

from __future__ import annotations

import asyncio
import copy
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from netcortex.metrics import Registry
from netcortex.motor.netbox import (
    DEVICE_TYPE,
    INTERFACE_TYPE,
    AssignedObject,
    Assignment,
    DeadlinePassed,
    JournalRequestError,
    NetboxJournalClient,
    TokenBucket,
    map_transport_errors,
    parse_retry_after,
)
from tests.fake_netbox import (
    DEFAULT_TOKEN,
    FakeNetbox,
    fixture_inventory,
    running_fake_netbox,
    self_signed_tls,
)

V2_TOKEN = "nbt_abcdefgh1234.0123456789abcdef0123456789abcdef01234567"
SW1 = AssignedObject(DEVICE_TYPE, 2, "sw1-north")
GI3 = AssignedObject(INTERFACE_TYPE, 8, "sw1-north GigabitEthernet1/0/3")


def client_for(fake: FakeNetbox, token: str = DEFAULT_TOKEN, **kw: object) -> NetboxJournalClient:
    """A journal client for ``fake`` (fast rate, short timeout unless given)."""
    kw.setdefault("rate_per_second", 1000.0)
    kw.setdefault("timeout", 2.0)
    return NetboxJournalClient(fake.url, SecretStr(token), **kw)  # type: ignore[arg-type]


@pytest.fixture
async def client(netbox: FakeNetbox) -> AsyncIterator[NetboxJournalClient]:
    """A started client for the ``netbox`` fake (v1 token)."""
    async with client_for(netbox) as c:
        yield c


async def failure(coro: object) -> JournalRequestError:
    """The ``JournalRequestError`` awaiting ``coro`` raises."""
    with pytest.raises(JournalRequestError) as info:
        await coro  # type: ignore[misc]
    return info.value


class TestTokens:
    @pytest.mark.parametrize(
        ("token", "header"),
        [(DEFAULT_TOKEN, f"Token {DEFAULT_TOKEN}"), (V2_TOKEN, f"Bearer {V2_TOKEN}")],
    )
    async def test_v1_and_v2_tokens(self, token: str, header: str) -> None:
        """A v1 token is sent as ``Token``, a v2 ``nbt_`` token as ``Bearer``; both work."""
        with running_fake_netbox(token=token) as fake:
            async with client_for(fake, token) as c:
                assignment = await c.resolve("sw1-north")
            assert assignment.target == SW1
            assert {r.authorization for r in fake.requests} == {header}

    async def test_token_never_in_repr_or_errors(self, netbox: FakeNetbox) -> None:
        """The token appears neither in the client's repr nor in an error message."""
        c = client_for(netbox, token="wrong-token-value-0123456789")
        assert "wrong-token-value" not in repr(c)
        async with c:
            err = await failure(c.resolve("sw1-north"))
        assert "wrong-token-value" not in str(err)
        assert (err.status, err.label, err.retryable) == (403, "auth", True)


class TestResolve:
    async def test_interface_then_device_fallback(self, client: NetboxJournalClient) -> None:
        """A known interface is the target; an unknown one falls back to its device."""
        known = await client.resolve("sw1-north", "GigabitEthernet1/0/3")
        assert known == Assignment(GI3, SW1)
        assert known.objects == (GI3, SW1)
        unknown = await client.resolve("sw1-north", "TenGigabitEthernet9/9")
        assert unknown == Assignment(SW1, SW1)
        assert unknown.objects == (SW1,)

    async def test_unknown_device_is_permanent(self, client: NetboxJournalClient) -> None:
        """A device NetBox does not know is a permanent failure naming the device."""
        err = await failure(client.resolve("ghost-router", "Gi0/1"))
        assert not err.retryable
        assert err.label == "unknown_device"
        assert "device 'ghost-router' not in NetBox" in str(err)
        none = await failure(client.resolve(None))
        assert (none.retryable, none.label) == (False, "no_device")

    async def test_same_name_in_two_sites_prefers_the_outcome_site(self) -> None:
        """Device names are unique per site: the outcome's site picks among namesakes."""
        inventory = fixture_inventory()
        devices = inventory["/api/dcim/devices/"]["results"]
        twin = copy.deepcopy(next(d for d in devices if d["name"] == "sw1-north"))
        twin["id"] = 99
        twin["site"] = {**twin["site"], "id": 99, "slug": "annex", "name": "Annex"}
        devices.insert(0, twin)
        with running_fake_netbox(inventory=inventory) as fake:
            async with client_for(fake) as c:
                assert (await c.resolve("sw1-north", site="dc-north")).device.id == 2
                assert (await c.resolve("sw1-north", site="annex")).device.id == 99
                assert (await c.resolve("sw1-north")).device.id == 99  # NetBox's first

    async def test_lookups_are_cached(
        self, client: NetboxJournalClient, netbox: FakeNetbox
    ) -> None:
        """A second resolve of the same names (unknown devices too) makes no request."""
        await client.resolve("sw1-north", "GigabitEthernet1/0/3")
        await failure(client.resolve("ghost-router"))
        before = len(netbox.requests)
        await client.resolve("sw1-north", "GigabitEthernet1/0/3")
        await failure(client.resolve("ghost-router"))
        assert len(netbox.requests) == before


class TestEntries:
    async def test_create_then_find_by_marker(
        self, client: NetboxJournalClient, netbox: FakeNetbox
    ) -> None:
        """An entry created with a marker is found by it (on the interface or its device)."""
        assignment = Assignment(GI3, SW1)
        mark = "netcortex-outcome: 0123abcd"
        assert await client.find_entry(mark, assignment) is None
        entry_id = await client.create_entry(assignment, "danger", f"Link down\n\n{mark}")
        assert await client.find_entry(mark, assignment) == entry_id
        # The same outcome resolved to the device only still finds the interface's entry.
        assert await client.find_entry(mark, Assignment(SW1, SW1)) is None  # other type
        assert await client.find_entry(mark, Assignment(GI3, GI3)) == entry_id
        assert netbox.journal_count(mark) == 1
        (stored,) = netbox.journal
        assert (stored["assigned_object_type"], stored["assigned_object_id"]) == (
            INTERFACE_TYPE,
            8,
        )
        assert stored["kind"]["value"] == "danger"

    async def test_marker_must_be_a_whole_line(self, client: NetboxJournalClient) -> None:
        """``q`` is a substring search; only an exact marker line counts as found."""
        assignment = Assignment(SW1, SW1)
        await client.create_entry(assignment, "info", "netcortex-outcome: 0123abcdEXTRA")
        assert await client.find_entry("netcortex-outcome: 0123abcd", assignment) is None

    async def test_fake_answers_validate_against_the_schema(self, netbox: FakeNetbox) -> None:
        """The fake's stored entries and list bodies are schema-valid NetBox answers."""
        body = netbox.store_journal(
            {"assigned_object_type": DEVICE_TYPE, "assigned_object_id": 2, "comments": "x"}
        )
        validator = netbox.validator
        assert validator.check_response("POST", "/api/extras/journal-entries/", body) == []
        page = netbox.journal_page([("q", "x")])
        assert validator.check_response("GET", "/api/extras/journal-entries/", page) == []


class TestClassification:
    @pytest.mark.parametrize(
        ("status", "label", "retryable"),
        [
            (500, "server_error", True),
            (502, "server_error", True),
            (503, "server_error", True),
            (400, "rejected", False),
            (404, "rejected", False),
            (409, "rejected", False),
            (401, "auth", True),
        ],
    )
    async def test_status_classes(
        self,
        client: NetboxJournalClient,
        netbox: FakeNetbox,
        status: int,
        label: str,
        retryable: bool,
    ) -> None:
        """5xx and 401/403 are retried; other 4xx are permanent (dead-letter)."""
        netbox.inject(status=status)
        err = await failure(client.resolve("sw1-north"))
        assert (err.status, err.label, err.retryable) == (status, label, retryable)
        assert str(status) in str(err)

    async def test_429_retry_after_is_read_and_pauses_every_request(
        self, client: NetboxJournalClient, netbox: FakeNetbox
    ) -> None:
        """429 with ``Retry-After`` is retryable, carries the seconds and holds the bucket."""
        netbox.inject(status=429, retry_after=0.3)
        err = await failure(client.resolve("sw1-north"))
        assert (err.status, err.label, err.retryable) == (429, "rate_limited", True)
        assert err.retry_after == pytest.approx(0.3)
        started = time.monotonic()
        await client.resolve("r1-north")
        assert time.monotonic() - started >= 0.25

    async def test_503_retry_after_http_date(
        self, client: NetboxJournalClient, netbox: FakeNetbox
    ) -> None:
        """An HTTP-date ``Retry-After`` on a 503 becomes seconds from now."""
        when = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
        netbox.inject(status=503, retry_after=when)
        err = await failure(client.resolve("sw1-north"))
        assert err.retry_after is not None
        assert 25 <= err.retry_after <= 31

    async def test_timeout(self, netbox: FakeNetbox) -> None:
        """A request slower than ``timeout`` is a retryable timeout."""
        netbox.inject(delay=5.0)
        async with client_for(netbox, timeout=0.2) as c:
            err = await failure(c.resolve("sw1-north"))
        assert (err.label, err.retryable) == ("timeout", True)

    async def test_refused(self, netbox: FakeNetbox) -> None:
        """A stopped NetBox refuses (retryable ``unavailable``), then returns on the same port."""
        url = netbox.url
        async with client_for(netbox) as c:
            netbox.stop()
            err = await failure(c.resolve("sw1-north"))
            assert (err.label, err.retryable) == ("unavailable", True)
            netbox.start()
            assert netbox.url == url
            assert (await c.resolve("sw1-north")).target == SW1

    async def test_lost_response_is_retryable_and_the_entry_exists(
        self, client: NetboxJournalClient, netbox: FakeNetbox
    ) -> None:
        """A POST stored but unanswered is a retryable ``disconnected``; the marker finds it."""
        netbox.inject(lose_response=True, method="POST")
        mark = "netcortex-outcome: lost"
        assignment = Assignment(SW1, SW1)
        err = await failure(client.create_entry(assignment, "danger", mark))
        assert (err.label, err.retryable) == ("disconnected", True)
        assert netbox.journal_count(mark) == 1
        assert await client.find_entry(mark, assignment) == netbox.journal[0]["id"]

    async def test_tls_failure(self, tmp_path: Path) -> None:
        """An untrusted certificate is a retryable ``tls`` failure (verify on by default)."""
        with running_fake_netbox(tls=self_signed_tls(tmp_path)) as fake:
            async with client_for(fake) as c:
                err = await failure(c.resolve("sw1-north"))
            assert (err.label, err.retryable) == ("tls", True)
            async with client_for(fake, verify_tls=False) as insecure:
                assert (await insecure.resolve("sw1-north")).target == SW1

    @pytest.mark.parametrize(
        "exc_type",
        sorted(
            {
                cls
                for cls in vars(httpx).values()
                if isinstance(cls, type) and issubclass(cls, httpx.TransportError)
            },
            key=lambda c: c.__name__,
        ),
    )
    def test_every_transport_error_is_mapped(self, exc_type: type[Exception]) -> None:
        """Every httpx transport exception becomes a retryable ``JournalRequestError``."""
        with pytest.raises(JournalRequestError) as info, map_transport_errors("GET /x"):
            raise exc_type("boom")
        assert info.value.retryable
        assert isinstance(info.value.__cause__, exc_type)

    async def test_request_latency_is_measured(self, netbox: FakeNetbox) -> None:
        """Each request is timed by operation and result."""
        registry = Registry()
        async with client_for(netbox, metrics=registry) as c:
            await c.resolve("sw1-north", "GigabitEthernet1/0/3")
        hist = registry.get("netcortex_journal_request_seconds")
        assert hist is not None
        assert hist.count(op="device", result="200") == 1  # type: ignore[union-attr]
        assert hist.count(op="interface", result="200") == 1  # type: ignore[union-attr]


class TestRetryAfter:
    @pytest.mark.parametrize(
        ("value", "seconds"),
        [("7", 7.0), ("1.5", 1.5), (" 0 ", 0.0), ("-3", 0.0), ("", None), (None, None),
         ("soon", None), ("inf", None), ("nan", None)],
    )  # fmt: skip
    def test_delta_seconds(self, value: str | None, seconds: float | None) -> None:
        """Delta-seconds parse; negatives clamp to 0; junk and non-finite numbers are None."""
        assert parse_retry_after(value) == seconds

    def test_http_date(self) -> None:
        """An HTTP date is seconds from ``now``; a date in the past is 0."""
        now = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)
        assert parse_retry_after("Sat, 28 Nov 2026 09:01:00 GMT", now) == 60.0
        assert parse_retry_after("Sat, 28 Nov 2026 08:00:00 GMT", now) == 0.0


class TestTokenBucket:
    async def test_rate_is_held(self) -> None:
        """With burst 1, n acquisitions take at least (n - 1) / rate seconds."""
        bucket = TokenBucket(50.0, burst=1.0)
        started = time.monotonic()
        for _ in range(11):
            await bucket.acquire()
        assert time.monotonic() - started >= 0.9 * 10 / 50.0

    async def test_pause_holds_everyone(self) -> None:
        """``pause`` holds the next acquisition back for that long."""
        bucket = TokenBucket(1000.0)
        bucket.pause(0.2)
        started = time.monotonic()
        await asyncio.wait_for(bucket.acquire(), timeout=5)
        assert time.monotonic() - started >= 0.18

    def test_rate_must_be_positive(self) -> None:
        """A zero rate is refused."""
        with pytest.raises(ValueError, match="rate"):
            TokenBucket(0.0)


class TestReviewFindings:
    """Issue 7 review: bounds and NetBox behaviours the first version missed."""

    @pytest.mark.parametrize("form", ["seconds", "http-date"])
    async def test_huge_retry_after_pauses_no_longer_than_max_pause(
        self, netbox: FakeNetbox, form: str
    ) -> None:
        """A 429 asking for a year (seconds or an HTTP date) holds requests back
        ``max_pause`` seconds at most."""
        year = timedelta(days=365)
        retry_after = (
            str(int(year.total_seconds()))
            if form == "seconds"
            else format_datetime(datetime.now(UTC) + year, usegmt=True)
        )
        netbox.inject(status=429, retry_after=retry_after)
        async with client_for(netbox, max_pause=0.3) as c:
            err = await failure(c.resolve("sw1-north"))
            assert err.retry_after is not None
            assert err.retry_after > 86_400
            started = time.monotonic()
            await asyncio.wait_for(c.resolve("r1-north"), timeout=5)
            assert time.monotonic() - started < 2.0

    async def test_a_request_is_bounded_in_total_by_timeout(self) -> None:
        """An answer that never completes ends as a ``timeout`` within ``timeout`` seconds.

        httpx's timeouts are per phase (a read timeout restarts with every chunk),
        so a NetBox trickling its answer could hold a job past its lease.
        """

        async def hang(request: httpx.Request) -> httpx.Response:
            await asyncio.sleep(3600)
            raise AssertionError("unreachable")

        c = NetboxJournalClient(
            "http://netbox.invalid", SecretStr("t0ken"), timeout=0.2,
            rate_per_second=1000.0, transport=httpx.MockTransport(hang),
        )  # fmt: skip
        async with c:
            started = time.monotonic()
            err = await failure(asyncio.wait_for(c.resolve("sw1-north"), timeout=5))
        assert (err.label, err.retryable) == ("timeout", True)
        assert time.monotonic() - started < 1.5

    async def test_marker_search_finds_a_device_entry_on_netbox_with_single_type_filter(
        self,
    ) -> None:
        """The marker is found on the interface's device too on NetBox versions whose
        ``assigned_object_type`` filter keeps only the last value given (≤ 4.2)."""
        entry = {
            "id": 41, "assigned_object_type": DEVICE_TYPE, "assigned_object_id": SW1.id,
            "comments": "Link down\n\nnetcortex-outcome: 0123abcd",
        }  # fmt: skip

        def old_netbox(request: httpx.Request) -> httpx.Response:
            params = request.url.params
            types = params.get_list("assigned_object_type")
            ids = {int(v) for v in params.get_list("assigned_object_id")}
            q = params.get("q", "").lower()
            hits = [
                e
                for e in [entry]
                if q in str(e["comments"]).lower()
                and (not types or e["assigned_object_type"] == types[-1])
                and (not ids or e["assigned_object_id"] in ids)
            ]
            return httpx.Response(200, json={"count": len(hits), "results": hits})

        c = NetboxJournalClient(
            "http://netbox.invalid", SecretStr("t0ken"), rate_per_second=1000.0,
            transport=httpx.MockTransport(old_netbox),
        )  # fmt: skip
        async with c:
            found = await c.find_entry("netcortex-outcome: 0123abcd", Assignment(GI3, SW1))
        assert found == 41

    async def test_lookups_and_the_search_respect_the_deadline(self, netbox: FakeNetbox) -> None:
        """With less than ``timeout`` left before the deadline (the job's lease), no
        look-up and no marker search is sent either (so a failure ends within the lease)."""
        async with client_for(netbox, timeout=1.0) as c:
            soon = time.monotonic() + 0.5
            with pytest.raises(DeadlinePassed):
                await c.resolve("sw1-north", "GigabitEthernet1/0/3", deadline=soon)
            with pytest.raises(DeadlinePassed):
                await c.find_entry("netcortex-outcome: 0123", Assignment(SW1, SW1), deadline=soon)
            later = time.monotonic() + 30
            assert (await c.resolve("sw1-north", deadline=later)).target == SW1
        assert len(netbox.requests) == 1
