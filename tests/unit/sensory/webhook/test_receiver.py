"""``MerakiWebhookReceiver``: every answer of ``ingest``, idempotency, back-pressure, publishing.

A real ``InMemoryEventBus`` (through ``GatedBus`` where a test needs to hold or
fail publishes) and a real subscription show what was published.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from structlog.testing import capture_logs

import netcortex.sensory.webhook as webhook_pkg
from netcortex.config import BusConfig
from netcortex.contracts.codec import decode_event
from netcortex.errors import BusUnavailable, InvalidSubject, PublishTimeout
from netcortex.memory.semantic import FileInventory
from netcortex.metrics import Registry
from netcortex.sensory.webhook import MerakiWebhookReceiver
from netcortex.sensory.webhook.receiver import SOURCE
from netcortex.thalamus import InMemoryEventBus
from tests.unit.sensory.webhook._helpers import (
    FIXTURES,
    PEER,
    SECRET,
    STATUSES,
    GatedBus,
    counter,
    fixture_body,
    meraki_config,
    post,
    rejected,
    sent_at,
    take,
)

PATTERN = "sensory.meraki.webhook.>"


def test_public_surface() -> None:
    """The webhook package exports exactly its documented names."""
    assert set(webhook_pkg.__all__) == {
        "SOURCE",
        "MerakiAlert",
        "MerakiNormalizer",
        "MerakiWebhookReceiver",
        "SharedSecretAuth",
        "WebhookResponse",
    }
    assert SOURCE == MerakiWebhookReceiver.source == "meraki.webhook"


class TestAccepted:
    async def test_every_fixture_is_published(
        self, bus: InMemoryEventBus, inventory: FileInventory
    ) -> None:
        """Each fixture is answered 202 with its event id/class/subject, then published."""
        sub = await bus.subscribe(PATTERN)
        registry = Registry()
        async with MerakiWebhookReceiver(meraki_config(), bus, registry, memory=inventory) as rx:
            answers = [post(rx, fixture_body(name)) for name in FIXTURES]
            events = {e.id: e for e in await take(sub, len(FIXTURES))}
        for resp in answers:
            assert resp.status == 202
            assert resp.headers == {}
            assert resp.body["status"] == "accepted"
            event = events[resp.body["event_id"]]
            assert resp.body["event_class"] == event.event_class
            assert resp.body["subject"] == event.subject
            assert event.agent == PEER
            assert "sharedSecret" not in event.payload
        classes = sorted(e.event_class for e in events.values())
        assert classes == [
            "config_change",
            "device_down",
            "device_up",
            "link_down",
            "link_down",
            "security",
            "security",
            "security",
        ]
        assert counter(registry, "netcortex_received_total", source=SOURCE) == 8
        assert counter(registry, "netcortex_webhook_accepted_total", event_class="security") == 3
        assert counter(registry, "netcortex_webhook_published_total", event_class="link_down") == 2
        latency = registry.get("netcortex_webhook_publish_latency_seconds")
        ingest = registry.get("netcortex_webhook_ingest_seconds")
        assert latency is not None
        assert latency.count() == 8  # type: ignore[union-attr]
        assert ingest is not None
        assert ingest.count() == 8  # type: ignore[union-attr]

    async def test_message_id_and_received_at(self, bus: InMemoryEventBus) -> None:
        """The bus message id is the event id; received_at is the request's arrival time."""
        sub = await bus.subscribe(PATTERN)
        body = fixture_body("security_rogue_ap.json")
        arrived = sent_at(body) + 2.5
        async with MerakiWebhookReceiver(meraki_config(), bus) as rx:
            resp = post(rx, body, received_at=arrived)
            msg = await sub.next(timeout=5)
        event = decode_event(msg.data)
        assert msg.msg_id == event.id == resp.body["event_id"]
        assert event.received_at.timestamp() == pytest.approx(arrived)

    @pytest.mark.parametrize(
        "content_type",
        [
            None,
            "",
            "application/json",
            "Application/JSON; charset=utf-8",
            "application/vnd.meraki+json",
        ],
    )
    async def test_json_content_types(
        self, bus: InMemoryEventBus, content_type: str | None
    ) -> None:
        """JSON media types (any case, with parameters, +json) or none at all are accepted."""
        rx = MerakiWebhookReceiver(meraki_config(), bus)
        assert (
            post(rx, fixture_body("security_rogue_ap.json"), content_type=content_type).status
            == 202
        )
        await rx.close()

    async def test_bearer_header_authenticates(self, bus: InMemoryEventBus) -> None:
        """A custom template may send the secret as a bearer token instead of in the body."""
        rx = MerakiWebhookReceiver(meraki_config(), bus)
        no_secret = fixture_body("security_rogue_ap.json", sharedSecret=None)
        assert post(rx, no_secret, authorization=f"Bearer {SECRET}").status == 202
        wrong = fixture_body("device_aps_came_up.json", sharedSecret="wrong")
        assert post(rx, wrong, authorization=f"bearer {SECRET}").status == 202
        await rx.close()

    async def test_utf8_bom_is_tolerated(self, bus: InMemoryEventBus) -> None:
        """A UTF-8 byte-order mark before the JSON does not make it malformed."""
        body = fixture_body("security_rogue_ap.json")
        rx = MerakiWebhookReceiver(meraki_config(), bus)
        resp = rx.ingest(
            b"\xef\xbb\xbf" + json.dumps(body).encode(),
            content_type="application/json",
            authorization=None,
            peer=PEER,
            received_at=sent_at(body),
        )
        assert resp.status == 202
        await rx.close()


_BODY = json.dumps(fixture_body("device_aps_went_down.json")).encode()
_FORM = "application/x-www-form-urlencoded"
_NO_SECRET = {"sharedSecret": None}


# (name, raw body or fixture changes, kwargs for post, config overrides, status, reason)
REJECTIONS: list[tuple[str, Any, dict[str, Any], dict[str, Any], int, str]] = [
    ("no secret", b"not even json", {}, {"shared_secret": None}, 403, "no_secret_configured"),
    ("text/plain", _BODY, {"content_type": "text/plain"}, {}, 415, "bad_content_type"),
    ("form", _BODY, {"content_type": _FORM}, {}, 415, "bad_content_type"),
    ("text/json", _BODY, {"content_type": "text/json"}, {}, 415, "bad_content_type"),
    ("empty", b"", {}, {}, 400, "malformed"),
    ("not utf-8", b'{"a": "\xff"}', {}, {}, 400, "malformed"),
    ("invalid json", b'{"sentAt": ', {}, {}, 400, "malformed"),
    ("NaN", b'{"a": NaN}', {}, {}, 400, "malformed"),
    ("huge int", b'{"a": ' + b"9" * 5000 + b"}", {}, {}, 400, "malformed"),
    ("too deep", b'{"a":' * 40 + b"1" + b"}" * 40, {}, {}, 400, "malformed"),
    ("recursion", b"[" * 100_000, {}, {}, 400, "malformed"),
    ("array", b"[1, 2]", {}, {}, 422, "schema"),
    ("string", b'"sharedSecret"', {}, {}, 422, "schema"),
    ("null", b"null", {}, {}, 422, "schema"),
    ("secret missing", {"sharedSecret": None}, {}, {}, 401, "bad_secret"),
    ("secret wrong", {"sharedSecret": "guess"}, {}, {}, 401, "bad_secret"),
    ("secret prefix", {"sharedSecret": SECRET[:-1]}, {}, {}, 401, "bad_secret"),
    ("secret not text", {"sharedSecret": 1}, {}, {}, 401, "bad_secret"),
    ("bearer wrong", _NO_SECRET, {"authorization": "Bearer guess"}, {}, 401, "bad_secret"),
    ("basic auth", _NO_SECRET, {"authorization": f"Basic {SECRET}"}, {}, 401, "bad_secret"),
    ("no sentAt", {"sentAt": None}, {"received_at": time.time()}, {}, 422, "schema"),
    ("bad sentAt", {"sentAt": "14/03/2026"}, {"received_at": time.time()}, {}, 422, "schema"),
    ("no org", {"organizationId": None}, {}, {}, 422, "schema"),
    ("no alert type", {"alertTypeId": "", "alertType": None}, {}, {}, 422, "schema"),
    ("alertData list", {"alertData": [1]}, {}, {}, 422, "schema"),
    ("tags not list", {"networkTags": "branch"}, {}, {}, 422, "schema"),
]  # fmt: skip


class TestRejected:
    @pytest.mark.parametrize(
        ("raw", "kwargs", "overrides", "status", "reason"),
        [r[1:] for r in REJECTIONS],
        ids=[r[0] for r in REJECTIONS],
    )
    async def test_rejection(
        self,
        bus: InMemoryEventBus,
        raw: Any,
        kwargs: dict[str, Any],
        overrides: dict[str, Any],
        status: int,
        reason: str,
    ) -> None:
        """Each bad request gets its status and reason, is counted, and publishes nothing."""
        registry = Registry()
        sub = await bus.subscribe(PATTERN)
        rx = MerakiWebhookReceiver(meraki_config(**overrides), bus, registry)
        await rx.start()
        body = raw if isinstance(raw, bytes) else fixture_body("device_aps_went_down.json", **raw)
        resp = post(rx, body, **kwargs)
        await rx.close()
        assert (resp.status, resp.body["status"], resp.body["reason"]) == (
            status,
            "rejected",
            reason,
        )
        assert resp.body["detail"]
        assert SECRET not in json.dumps(dict(resp.body))
        assert rejected(registry, reason) == 1
        assert counter(registry, "netcortex_received_total", source=SOURCE) == 1
        assert counter(registry, "netcortex_webhook_accepted_total", event_class="device_down") == 0
        with pytest.raises(TimeoutError):
            await sub.next(timeout=0.02)

    async def test_no_secret_is_checked_before_anything_else(self, bus: InMemoryEventBus) -> None:
        """Without a configured secret even a perfect alert (or a bearer token) is refused."""
        rx = MerakiWebhookReceiver(meraki_config(shared_secret=None), bus)
        body = fixture_body("security_rogue_ap.json")
        assert post(rx, body, authorization=f"Bearer {SECRET}").status == 403
        assert post(rx, body, content_type="text/plain").status == 403

    async def test_schema_detail_names_the_field_not_the_value(self, bus: InMemoryEventBus) -> None:
        """A schema error says which field and why, never the value sent."""
        rx = MerakiWebhookReceiver(meraki_config(), bus)
        body = fixture_body("device_aps_went_down.json", sentAt="never-PRIVATE")
        resp = post(rx, body, received_at=time.time())
        assert resp.body["detail"] == "sentAt: invalid datetime"
        assert "PRIVATE" not in json.dumps(dict(resp.body))

    @pytest.mark.parametrize(("offset", "word"), [(-301.0, "old"), (301.0, "future")])
    async def test_stale_and_future_sent_at(
        self, bus: InMemoryEventBus, offset: float, word: str
    ) -> None:
        """sentAt further than the replay window from now, either way, is ``stale``."""
        registry = Registry()
        rx = MerakiWebhookReceiver(meraki_config(replay_window_seconds=300), bus, registry)
        body = fixture_body("device_aps_went_down.json")
        resp = post(rx, body, received_at=sent_at(body) - offset)
        assert (resp.status, resp.body["reason"]) == (400, "stale")
        assert word in resp.body["detail"]
        assert "300 s" in resp.body["detail"]
        assert rejected(registry, "stale") == 1
        inside = post(rx, body, received_at=sent_at(body) - offset * 0.99)
        assert inside.status == 202

    async def test_replay_window_zero_turns_the_check_off(self, bus: InMemoryEventBus) -> None:
        """With ``replay_window_seconds: 0`` a years-old sentAt is accepted."""
        rx = MerakiWebhookReceiver(meraki_config(replay_window_seconds=0), bus)
        body = fixture_body("device_aps_went_down.json", sentAt="2019-01-01T00:00:00Z")
        assert post(rx, body, received_at=time.time()).status == 202

    async def test_default_arrival_is_the_clock(self, bus: InMemoryEventBus) -> None:
        """Without received_at the injected clock is "now" for the replay window."""
        body = fixture_body("device_aps_went_down.json")
        now = [sent_at(body) + 10]
        rx = MerakiWebhookReceiver(meraki_config(), bus, clock=lambda: now[0])
        raw = json.dumps(body).encode()
        kw: dict[str, Any] = {"content_type": None, "authorization": None, "peer": PEER}
        now[0] += 1000
        assert rx.ingest(raw, **kw).body["reason"] == "stale"
        now[0] -= 1000
        assert rx.ingest(raw, **kw).status == 202

    def test_too_large(self, bus: InMemoryEventBus) -> None:
        """too_large answers 413, counted as received and rejected ``too_large``."""
        registry = Registry()
        rx = MerakiWebhookReceiver(meraki_config(), bus, registry)
        resp = rx.too_large(peer=PEER, size=2_000_000)
        assert (resp.status, resp.body["reason"]) == (413, "too_large")
        assert "2000000 bytes" in resp.body["detail"]
        assert rx.too_large(peer=PEER, size=None).status == 413
        assert rejected(registry, "too_large") == 2
        assert counter(registry, "netcortex_received_total", source=SOURCE) == 2


class TestIdempotency:
    async def test_duplicate_alert_id_publishes_once(self, bus: InMemoryEventBus) -> None:
        """A redelivered alertId gets 200 with the first event id; one event is published."""
        registry = Registry()
        sub = await bus.subscribe(PATTERN)
        body = fixture_body("device_aps_went_down.json")
        async with MerakiWebhookReceiver(meraki_config(), bus, registry) as rx:
            first = post(rx, body)
            again = post(rx, fixture_body("device_aps_went_down.json", sentAt=body["sentAt"]))
            (event,) = await take(sub, 1)
        assert first.status == 202
        assert (again.status, dict(again.body)) == (
            200,
            {"status": "duplicate", "event_id": first.body["event_id"]},
        )
        assert event.id == first.body["event_id"]
        assert counter(registry, "netcortex_webhook_duplicates_total") == 1
        assert (
            counter(registry, "netcortex_webhook_published_total", event_class="device_down") == 1
        )
        with pytest.raises(TimeoutError):
            await sub.next(timeout=0.02)

    async def test_same_alert_id_in_another_org_is_new(self, bus: InMemoryEventBus) -> None:
        """The key is the pair (organizationId, alertId)."""
        rx = MerakiWebhookReceiver(meraki_config(), bus)
        assert post(rx, fixture_body("device_aps_went_down.json")).status == 202
        other = fixture_body("device_aps_went_down.json", organizationId="7654321")
        assert post(rx, other).status == 202

    async def test_body_hash_without_alert_id(self, bus: InMemoryEventBus) -> None:
        """Without alertId the body (minus sentAt and sharedSecret) is the key."""
        rx = MerakiWebhookReceiver(meraki_config(replay_window_seconds=0), bus)
        body = fixture_body("security_rogue_ap.json", alertId=None)
        assert post(rx, body).status == 202
        resent = dict(body, sentAt="2026-03-14T11:41:00Z", sharedSecret=None)
        del resent["sharedSecret"]
        assert post(rx, resent, authorization=f"Bearer {SECRET}").status == 200
        changed = dict(body, alertData={"rssi": "39"})
        assert post(rx, changed).status == 202

    async def test_window_expiry(self, bus: InMemoryEventBus) -> None:
        """After idempotency_window_seconds the same alertId is accepted again."""
        rx = MerakiWebhookReceiver(
            meraki_config(replay_window_seconds=0, idempotency_window_seconds=10), bus
        )
        body = fixture_body("device_aps_went_down.json")
        t0 = sent_at(body)
        assert post(rx, body, received_at=t0).status == 202
        assert post(rx, body, received_at=t0 + 10).status == 200
        assert post(rx, body, received_at=t0 + 10.5).status == 202

    async def test_bounded_oldest_forgotten(self, bus: InMemoryEventBus) -> None:
        """Beyond idempotency_max_keys the oldest key is forgotten first."""
        rx = MerakiWebhookReceiver(meraki_config(idempotency_max_keys=2), bus)
        bodies = [fixture_body("device_aps_went_down.json", alertId=f"a{i}") for i in range(3)]
        assert [post(rx, b).status for b in bodies] == [202, 202, 202]
        assert post(rx, bodies[2]).status == 200
        assert post(rx, bodies[1]).status == 200
        assert post(rx, bodies[0]).status == 202  # forgotten, so new again


class TestBackPressure:
    async def test_full_queue_is_503_and_the_retry_is_accepted(self, bus: InMemoryEventBus) -> None:
        """A full queue answers 503 overloaded (Retry-After); drained, the retry is accepted."""
        registry = Registry()
        gated = GatedBus(bus, open_gate=False)
        sub = await bus.subscribe(PATTERN)
        rx = MerakiWebhookReceiver(meraki_config(queue_size=2), gated, registry, publishers=1)
        await rx.start()
        bodies = [fixture_body("device_aps_went_down.json", alertId=f"q{i}") for i in range(3)]
        answers = [post(rx, b) for b in bodies]
        assert [a.status for a in answers] == [202, 202, 503]
        assert answers[2].body["reason"] == "overloaded"
        assert answers[2].headers == {"Retry-After": "1"}
        assert rejected(registry, "overloaded") == 1
        assert rx.queue_depth == 2
        registry.collect()
        gauge = registry.get("netcortex_queue_depth")
        assert gauge is not None
        assert gauge.value(queue="webhook_publish") == 2  # type: ignore[union-attr]
        gated.gate.set()
        await take(sub, 2)
        retry = post(rx, bodies[2])
        assert retry.status == 202  # not "duplicate": the 503'd alert was never remembered
        await take(sub, 1)
        await rx.close()
        assert rx.queue_depth == 0

    async def test_closing_answers_503(self, bus: InMemoryEventBus) -> None:
        """While and after closing, alerts are refused with 503 ``closing`` and Retry-After."""
        registry = Registry()
        gated = GatedBus(bus, open_gate=False)
        rx = MerakiWebhookReceiver(meraki_config(), gated, registry)
        await rx.start()
        assert post(rx, fixture_body("device_aps_went_down.json")).status == 202
        closing = asyncio.create_task(rx.close())
        await asyncio.sleep(0)  # let close() start waiting for the drain
        during = post(rx, fixture_body("device_aps_came_up.json"))
        gated.gate.set()
        await closing
        after = post(rx, fixture_body("security_rogue_ap.json"))
        for resp in (during, after):
            assert (resp.status, resp.body["reason"]) == (503, "closing")
            assert resp.headers == {"Retry-After": "1"}
        assert rejected(registry, "closing") == 2
        assert (
            counter(registry, "netcortex_webhook_published_total", event_class="device_down") == 1
        )
        with pytest.raises(RuntimeError):
            await rx.start()


class TestPublishing:
    @pytest.mark.parametrize("error", [BusUnavailable, PublishTimeout])
    async def test_transient_failures_are_retried(
        self, bus: InMemoryEventBus, error: type[Exception]
    ) -> None:
        """A bus failing transiently twice then recovering gets the event once; retries counted."""
        registry = Registry()
        gated = GatedBus(bus, fail=2, error=error)  # type: ignore[arg-type]
        sub = await bus.subscribe(PATTERN)
        with capture_logs() as logs:
            async with MerakiWebhookReceiver(meraki_config(), gated, registry) as rx:
                resp = post(rx, fixture_body("device_aps_went_down.json"))
                (event,) = await take(sub, 1)
        assert event.id == resp.body["event_id"]
        assert gated.attempts == 3
        assert counter(registry, "netcortex_webhook_publish_retries_total") == 2
        assert (
            counter(registry, "netcortex_webhook_publish_failed_total", error=error.__name__) == 0
        )
        retries = [e for e in logs if e["event"] == "webhook_publish_retry"]
        assert [e["attempt"] for e in retries] == [1, 2]
        assert [e["delay"] for e in retries] == [0.1, 0.25]
        assert retries[0]["error"] == error.__name__

    async def test_other_bus_errors_are_not_retried(self, bus: InMemoryEventBus) -> None:
        """A non-transient bus error is counted and logged once, not retried."""
        registry = Registry()
        gated = GatedBus(bus, fail=1, error=InvalidSubject)
        with capture_logs() as logs:
            async with MerakiWebhookReceiver(meraki_config(), gated, registry) as rx:
                post(rx, fixture_body("device_aps_went_down.json"))
        assert gated.attempts == 1
        assert (
            counter(registry, "netcortex_webhook_publish_failed_total", error="InvalidSubject") == 1
        )
        assert counter(registry, "netcortex_webhook_publish_retries_total") == 0
        assert [e["event"] for e in logs].count("webhook_publish_failed") == 1

    async def test_close_drains_accepted_alerts(self, bus: InMemoryEventBus) -> None:
        """Alerts accepted before close are all published by close()."""
        registry = Registry()
        gated = GatedBus(bus, open_gate=False)
        sub = await bus.subscribe(PATTERN)
        rx = MerakiWebhookReceiver(meraki_config(), gated, registry, publishers=3)
        await rx.start()
        ids = {
            post(rx, fixture_body("device_aps_went_down.json", alertId=f"d{i}")).body["event_id"]
            for i in range(40)
        }
        closing = asyncio.create_task(rx.close())
        await asyncio.sleep(0)
        gated.gate.set()
        await closing
        assert {e.id for e in await take(sub, 40)} == ids
        assert (
            counter(registry, "netcortex_webhook_published_total", event_class="device_down") == 40
        )
        assert (
            counter(registry, "netcortex_webhook_publish_failed_total", error="lost_at_close") == 0
        )

    async def test_unpublished_at_close_are_counted_and_logged(self, bus: InMemoryEventBus) -> None:
        """Past drain_timeout each unpublished alert is counted and logged ``webhook_lost``."""
        registry = Registry()
        gated = GatedBus(bus, fail=-1)  # the bus refuses for ever
        rx = MerakiWebhookReceiver(
            meraki_config(), gated, registry, publishers=2, drain_timeout=0.2
        )
        await rx.start()
        ids = {
            post(rx, fixture_body("device_aps_went_down.json", alertId=f"l{i}")).body["event_id"]
            for i in range(5)
        }
        with capture_logs() as logs:
            await rx.close()
        lost = [e for e in logs if e["event"] == "webhook_lost"]
        assert {e["event_id"] for e in lost} == ids
        assert all(e["log_level"] == "error" for e in lost)
        assert (
            counter(registry, "netcortex_webhook_publish_failed_total", error="lost_at_close") == 5
        )
        assert counter(registry, "netcortex_webhook_publish_retries_total") >= 1
        assert rx.queue_depth == 0

    async def test_close_without_start_counts_queued_alerts(self, bus: InMemoryEventBus) -> None:
        """Alerts accepted but never started are lost at close, and said so."""
        registry = Registry()
        rx = MerakiWebhookReceiver(meraki_config(), bus, registry)
        post(rx, fixture_body("device_aps_went_down.json"))
        await rx.close()
        await rx.close()  # idempotent
        assert (
            counter(registry, "netcortex_webhook_publish_failed_total", error="lost_at_close") == 1
        )

    async def test_start_is_idempotent(self, bus: InMemoryEventBus) -> None:
        """A second start() starts no more publishers; alerts accepted before start are sent."""
        sub = await bus.subscribe(PATTERN)
        rx = MerakiWebhookReceiver(meraki_config(), bus, publishers=2)
        resp = post(rx, fixture_body("device_aps_went_down.json"))
        with capture_logs() as logs:
            await rx.start()
            await rx.start()
        assert [e["event"] for e in logs].count("webhook_receiver_started") == 1
        (event,) = await take(sub, 1)
        assert event.id == resp.body["event_id"]
        await rx.close()

    def test_constructor_validates(self, bus: InMemoryEventBus) -> None:
        """publishers < 1 or a negative drain_timeout are refused."""
        with pytest.raises(ValueError, match="publishers"):
            MerakiWebhookReceiver(meraki_config(), bus, publishers=0)
        with pytest.raises(ValueError, match="drain_timeout"):
            MerakiWebhookReceiver(meraki_config(), bus, drain_timeout=-1)


class TestLogs:
    async def test_secret_never_logged_published_or_answered(self, bus: InMemoryEventBus) -> None:
        """The shared secret (and wrong guesses at it) appear in no log, event or response."""
        guess = SECRET[:-1] + "X"
        sub = await bus.subscribe(PATTERN)
        responses = []
        with capture_logs() as logs:
            async with MerakiWebhookReceiver(meraki_config(), bus) as rx:
                for name in FIXTURES:
                    responses.append(post(rx, fixture_body(name)))
                responses.append(post(rx, fixture_body(FIXTURES[0])))  # duplicate
                responses.append(post(rx, fixture_body(FIXTURES[1], sharedSecret=guess)))
                responses.append(
                    post(
                        rx,
                        fixture_body(FIXTURES[2], sharedSecret=None),
                        authorization=f"Bearer {guess}",
                    )
                )
                responses.append(post(rx, fixture_body(FIXTURES[3], sentAt=SECRET)))
                responses.append(post(rx, fixture_body(FIXTURES[4], alertData=SECRET)))
                responses.append(post(rx, json.dumps([SECRET]).encode()))
                responses.append(post(rx, b'{"sharedSecret": "' + SECRET.encode() + b'",'))
                responses.append(post(rx, fixture_body(FIXTURES[5]), content_type=f"text/{SECRET}"))
                responses.append(post(rx, fixture_body(FIXTURES[6], sentAt="2000-01-01T00:00:00Z")))
                published = [msg.data for msg in [await sub.next(timeout=5) for _ in FIXTURES]]
        text = repr(logs) + repr(responses) + repr(published)
        assert SECRET not in text
        assert guess not in text
        assert any(e["event"] == "webhook_rejected" for e in logs)
        assert any(e["event"] == "webhook_accepted" for e in logs)

    async def test_rejections_are_rate_limited_per_peer_and_reason(
        self, bus: InMemoryEventBus
    ) -> None:
        """Repeats of one (peer, reason) log once per interval; other pairs log on their own."""
        rx = MerakiWebhookReceiver(meraki_config(), bus)
        with capture_logs() as logs:
            for _ in range(5):
                post(rx, b"{", peer="192.0.2.1")
            post(rx, b"{", peer="192.0.2.2")
            post(rx, b"[]", peer="192.0.2.1")
        lines = [(e["peer"], e["reason"]) for e in logs if e["event"] == "webhook_rejected"]
        assert lines == [
            ("192.0.2.1", "malformed"),
            ("192.0.2.2", "malformed"),
            ("192.0.2.1", "schema"),
        ]
        assert logs[0]["detail"].startswith("invalid JSON")

    async def test_a_flood_of_peers_is_summed(self, bus: InMemoryEventBus) -> None:
        """Beyond 100 new (peer, reason) pairs per interval one ``peer="*"`` line sums the rest."""
        registry = Registry()
        rx = MerakiWebhookReceiver(meraki_config(), bus, registry)
        with capture_logs() as logs:
            for i in range(130):
                post(rx, b"", peer=f"10.0.{i // 256}.{i % 256}")
            await rx.close()
        lines = [e for e in logs if e["event"] == "webhook_rejected"]
        assert len(lines) == 101
        assert (lines[-1]["peer"], lines[-1]["suppressed"]) == ("*", 30)
        assert rejected(registry, "malformed") == 130


# ---------------------------------------------------------------------------- fuzzing

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
_FIELDS = sorted(fixture_body("security_ids_alert.json"))


def _fuzz_receiver() -> MerakiWebhookReceiver:
    bus = InMemoryEventBus(BusConfig(backend="memory"))  # never started: nothing is published
    return MerakiWebhookReceiver(meraki_config(replay_window_seconds=0, queue_size=100_000), bus)


_RX = _fuzz_receiver()


def _check(resp: Any) -> None:
    assert resp.status in STATUSES, resp
    json.dumps(dict(resp.body))
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in resp.headers.items())


@given(
    body=st.binary(max_size=300),
    content_type=st.sampled_from([None, "application/json", "text/plain", ""]),
    authorization=st.sampled_from([None, f"Bearer {SECRET}", "Bearer x", "junk"]),
)
def test_ingest_never_raises_on_bytes(
    body: bytes, content_type: str | None, authorization: str | None
) -> None:
    """Arbitrary bytes get one of the documented statuses, never an exception or a 500."""
    _check(_RX.ingest(body, content_type=content_type, authorization=authorization, peer=None))


@given(
    name=st.sampled_from(FIXTURES),
    drop=st.sets(st.sampled_from(_FIELDS), max_size=3),
    replace=st.dictionaries(st.sampled_from(_FIELDS), _json, max_size=3),
    extra=st.dictionaries(st.text(max_size=8), _json, max_size=3),
    bearer=st.booleans(),
)
def test_ingest_never_raises_on_mutated_alerts(
    name: str,
    drop: set[str],
    replace: dict[str, Any],
    extra: dict[str, Any],
    bearer: bool,
) -> None:
    """Fixture alerts with fields dropped, replaced by any JSON, or added: a documented status."""
    body = fixture_body(name)
    body.update(extra)
    for key in drop:
        body.pop(key, None)
    body.update(replace)
    resp = _RX.ingest(
        json.dumps(body).encode(),
        content_type="application/json",
        authorization=f"Bearer {SECRET}" if bearer else None,
        peer=PEER,
    )
    _check(resp)
    if resp.status == 202:
        assert resp.body["event_class"] in {
            "link_down", "link_up", "device_down", "device_up", "security",
            "config_change", "other",
        }  # fmt: skip


@given(obj=st.dictionaries(st.text(max_size=12), _json, max_size=6))
def test_ingest_never_raises_on_json_objects(obj: dict[str, Any]) -> None:
    """Arbitrary JSON objects (with the right secret) get a documented status."""
    obj["sharedSecret"] = SECRET
    _check(_RX.ingest(json.dumps(obj).encode(), content_type=None, authorization=None, peer=PEER))
