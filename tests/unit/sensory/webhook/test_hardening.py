"""``MerakiWebhookReceiver`` against hostile or oversized input (second-pass review).

* the shared secret echoed anywhere in a body (``alertData.sharedSecret``, a
  custom template field) reaches neither the published event nor an outcome;
* idempotency keys: no collision across organizations, fixed size per key;
* an event larger than the bus can carry is refused (413) instead of accepted
  and lost — checked against the real session nats-server, where a message over
  ``max_payload`` (headers included) makes the server drop the connection;
* the bytes waiting to be published are bounded (503 beyond);
* ``close`` counts as lost only the alerts that were not published.

Real parts throughout: ``InMemoryEventBus`` / ``NatsEventBus`` (``bus_factory``),
real subscriptions, the real ``SecurityWebhookHandler``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import pytest
from structlog.testing import capture_logs

from netcortex.contracts.bus import Subscription
from netcortex.contracts.codec import encode_event
from netcortex.metrics import Registry
from netcortex.reflex.handlers.security_webhook import SecurityWebhookHandler
from netcortex.sensory.webhook import MerakiAlert, MerakiNormalizer, MerakiWebhookReceiver
from netcortex.sensory.webhook.normalize import REDACTED, scrub_secret
from netcortex.sensory.webhook.receiver import MAX_EVENT_BYTES
from netcortex.thalamus import InMemoryEventBus
from tests.conftest import BusFactory
from tests.unit.sensory.webhook._helpers import (
    SECRET,
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
#: NATS' default max_payload; the session nats-server runs with the default.
NATS_MAX_PAYLOAD = 1024 * 1024


class TestSecretScrubbing:
    def test_scrub_leaves_a_clean_body_untouched(self) -> None:
        """No secret inside: the very same object comes back (no copies on the hot path)."""
        body = fixture_body("security_ids_alert.json", sharedSecret=None)
        assert scrub_secret(body, SECRET) is body

    def test_scrub_drops_and_redacts_at_any_depth(self) -> None:
        """sharedSecret keys go at any depth; texts holding the secret become REDACTED."""
        value = {
            "a": [{"SharedSecret": SECRET, "keep": 1}, f"x{SECRET}y", 2],
            SECRET: "key is the secret",
            "ok": "fine",
        }
        assert scrub_secret(value, SECRET) == {
            "a": [{"keep": 1}, REDACTED, 2],
            REDACTED: "key is the secret",
            "ok": "fine",
        }

    async def test_echoed_secret_reaches_neither_event_nor_outcome(
        self, bus: InMemoryEventBus
    ) -> None:
        """A custom template echoing the secret (nested sharedSecret, an innocent-looking
        field, inside a text, in a list) publishes an event without it, and the
        security handler's outcome (which echoes body fields) has none either."""
        sub = await bus.subscribe(PATTERN)
        body = fixture_body(
            "security_ids_alert.json",
            alertData={
                "sharedSecret": SECRET,
                "signature": "1:2:3",
                "note": f"template says {SECRET}",
            },
            templateEcho=SECRET,
            tags=[SECRET, "west"],
        )
        with capture_logs() as logs:
            async with MerakiWebhookReceiver(meraki_config(), bus) as rx:
                resp = post(rx, body)
                assert resp.status == 202, resp.body
                (event,) = await take(sub, 1)
        outcome = await SecurityWebhookHandler().handle(event)
        published = encode_event(event).decode()
        assert SECRET not in published
        assert SECRET not in repr(outcome)
        assert SECRET not in repr(logs)
        # What is not secret is still there.
        assert event.payload["alertData"] == {"signature": "1:2:3", "note": REDACTED}
        assert event.payload["templateEcho"] == REDACTED
        assert event.payload["tags"] == [REDACTED, "west"]
        assert outcome.details["alertData.signature"] == "1:2:3"

    async def test_secret_in_target_or_alert_id_is_redacted(self, bus: InMemoryEventBus) -> None:
        """The secret as (part of) a device name or an alertId reaches neither the
        subject, target, device, the 202 body, nor a log line; a huge alertId is
        logged cut short."""
        sub = await bus.subscribe(PATTERN)
        named = fixture_body(
            "device_aps_went_down.json",
            deviceSerial="",
            deviceName=f"ap-{SECRET}",
            alertId=f"{SECRET}-1",
        )
        huge = fixture_body("device_aps_went_down.json", alertId="7" * 10_000)
        with capture_logs() as logs:
            async with MerakiWebhookReceiver(meraki_config(), bus) as rx:
                answers = [post(rx, named), post(rx, named), post(rx, huge)]
                events = await take(sub, 2)
        assert [a.status for a in answers] == [202, 200, 202]
        assert events[0].device == REDACTED
        assert events[0].target == REDACTED
        assert SECRET not in repr(answers) + repr(logs) + repr(events)
        logged_ids = [e["alert_id"] for e in logs if "alert_id" in e]
        assert REDACTED in logged_ids
        assert logged_ids
        assert max(len(i) for i in logged_ids if i) <= 64


class TestIdempotencyKeys:
    async def test_org_and_alert_id_do_not_collide(self, bus: InMemoryEventBus) -> None:
        """("1:2", "3") and ("1", "2:3") are different alerts: both are accepted."""
        sub = await bus.subscribe(PATTERN)
        first = fixture_body("device_aps_went_down.json", organizationId="1:2", alertId="3")
        second = fixture_body("device_aps_went_down.json", organizationId="1", alertId="2:3")
        async with MerakiWebhookReceiver(meraki_config(), bus) as rx:
            answers = [post(rx, first).status, post(rx, second).status]
            events = await take(sub, 2)
        assert answers == [202, 202]
        assert len({e.id for e in events}) == 2

    async def test_keys_have_a_fixed_size(self, bus: InMemoryEventBus) -> None:
        """A 200 000-character alertId is remembered in a fixed-size key (memory stays
        bounded by idempotency_max_keys), and its resend is still a duplicate."""
        body = fixture_body("device_aps_went_down.json", alertId="9" * 200_000)
        rx = MerakiWebhookReceiver(meraki_config(), bus)
        assert post(rx, body).status == 202
        assert post(rx, body).status == 200
        assert [len(key) for key in rx._seen] == [33]
        await rx.close()


def _event_size(body: dict[str, Any]) -> int:
    """How long ``body``'s event is as the receiver encodes it (arriving 1 s after sentAt)."""
    received = datetime.fromtimestamp(sent_at(body) + 1.0, UTC)
    event = MerakiNormalizer(meraki_config()).normalize(
        MerakiAlert.model_validate(body), agent="198.51.100.10", received_at=received
    )
    return len(encode_event(event))


def _sized_body(event_bytes: int) -> dict[str, Any]:
    """A valid alert whose event (as the receiver encodes it) is ``event_bytes`` long."""
    body = fixture_body("device_aps_went_down.json", alertId="sized", padding="")
    body["padding"] = "x" * (event_bytes - _event_size(body))
    assert _event_size(body) == event_bytes
    return body


class TestEventSize:
    async def test_event_over_the_limit_is_413_and_not_published(
        self, bus: InMemoryEventBus
    ) -> None:
        """A body whose event exceeds max_event_bytes is refused 413 too_large (counted);
        one at the limit is accepted."""
        registry = Registry()
        sub = await bus.subscribe(PATTERN)
        limit = 20_000
        async with MerakiWebhookReceiver(
            meraki_config(), bus, registry, max_event_bytes=limit
        ) as rx:
            over = post(rx, _sized_body(limit + 1))
            at = post(rx, _sized_body(limit))
            (event,) = await take(sub, 1)
        assert (over.status, over.body["reason"]) == (413, "too_large")
        assert str(limit) in over.body["detail"]
        assert at.status == 202
        assert event.id == at.body["event_id"]
        assert rejected(registry, "too_large") == 1

    async def test_a_small_body_that_grows_when_encoded_is_413(self, bus: InMemoryEventBus) -> None:
        """JSON numbers grow when re-encoded (1e15 → 1000000000000000.0): a 300 kB
        body becomes a 1.1 MB event, which is refused up front (not accepted and lost)."""
        body = fixture_body("device_aps_went_down.json", alertId="grow")
        body["samples"] = "@@"
        raw = (
            json.dumps(body).encode().replace(b'"@@"', b"[" + b",".join([b"1e15"] * 60_000) + b"]")
        )
        assert len(raw) < 400_000
        registry = Registry()
        rx = MerakiWebhookReceiver(meraki_config(), bus, registry)
        resp = post(rx, raw, received_at=sent_at(body) + 1)
        assert (resp.status, resp.body["reason"]) == (413, "too_large"), resp.body
        assert rx.queue_depth == 0
        await rx.close()

    @pytest.mark.nats
    @pytest.mark.parametrize(
        ("event_bytes", "status"),
        [
            # payload <= max_payload, but with the Nats-Msg-Id header it is over: the
            # server would drop the connection (and the retried publish would drop it
            # again, forever)
            (NATS_MAX_PAYLOAD - 20, 413),
            (NATS_MAX_PAYLOAD + 1, 413),  # nats-py refuses it: accepted, then lost
            (MAX_EVENT_BYTES, 202),  # the largest accepted event does fit
        ],
        ids=["header-overflow", "over-max-payload", "at-limit"],
    )
    async def test_against_nats_no_accepted_alert_is_too_big(
        self, bus_factory: BusFactory, event_bytes: int, status: int
    ) -> None:
        """On the real nats-server: an event the bus cannot carry is refused 413; what
        is accepted is published, and the bus stays connected for the next alert."""
        bus = await bus_factory("nats")
        sub = await bus.subscribe(PATTERN)
        registry = Registry()
        async with MerakiWebhookReceiver(meraki_config(), bus, registry) as rx:
            big = post(rx, _sized_body(event_bytes))
            normal = post(rx, fixture_body("settings_changed.json"))
            events = await take(sub, 2 if status == 202 else 1, within=10.0)
        assert big.status == status, big.body
        assert normal.status == 202
        assert events[-1].id == normal.body["event_id"]
        assert bus.connected
        assert (
            sum(
                counter(registry, "netcortex_webhook_publish_failed_total", error=e)
                for e in ("BusError", "lost_at_close")
            )
            == 0
        )


class TestQueuedBytes:
    async def test_queued_bytes_are_bounded(self, bus: InMemoryEventBus) -> None:
        """Past max_queued_bytes the receiver answers 503 overloaded; once the queue
        drained, the retry is accepted."""
        gated = GatedBus(bus, open_gate=False)
        sub = await bus.subscribe(PATTERN)
        bodies = [fixture_body("device_aps_went_down.json", alertId=f"b{i}") for i in range(3)]
        size = _event_size(bodies[0])
        assert all(_event_size(b) == size for b in bodies)
        rx = MerakiWebhookReceiver(
            meraki_config(), gated, publishers=1, max_queued_bytes=2 * size + size // 2
        )
        await rx.start()
        answers = [post(rx, b) for b in bodies]
        assert [a.status for a in answers] == [202, 202, 503]
        assert answers[2].body["reason"] == "overloaded"
        gated.gate.set()
        await take(sub, 2)
        # task_done() comes after each publish has freed its bytes: joined = freed.
        async with asyncio.timeout(5):
            await rx._queue.join()
        assert post(rx, bodies[2]).status == 202
        await take(sub, 1)
        await rx.close()


class _HangOne:
    """An ``EventBus`` seam: publishes go to a real memory bus, except ``hang``'s,
    which never finish (a publish stuck on a dead server)."""

    def __init__(self, inner: InMemoryEventBus, hang: str) -> None:
        self.inner, self.hang = inner, hang
        self.stuck = asyncio.Event()

    async def start(self) -> None:
        await self.inner.start()

    async def close(self) -> None:
        await self.inner.close()

    @property
    def connected(self) -> bool:
        return self.inner.connected

    async def publish(self, subject: str, data: bytes, *, msg_id: str | None = None) -> None:
        if msg_id == self.hang:
            self.stuck.set()
            await asyncio.Event().wait()
        await self.inner.publish(subject, data, msg_id=msg_id)

    async def subscribe(
        self, patterns: str | Sequence[str], *, durable: str | None = None
    ) -> Subscription:
        return await self.inner.subscribe(patterns, durable=durable)


class TestClose:
    async def test_only_unpublished_alerts_of_a_batch_are_lost(self, bus: InMemoryEventBus) -> None:
        """Two alerts in one batch: one publishes, one hangs. close() counts exactly one
        lost (the published one is not counted twice), and logs that one."""
        registry = Registry()
        sub = await bus.subscribe(PATTERN)
        first = fixture_body("device_aps_went_down.json", alertId="ok")
        second = fixture_body("device_aps_went_down.json", alertId="stuck")
        hanging = _HangOne(bus, hang="")
        rx = MerakiWebhookReceiver(
            meraki_config(), hanging, registry, publishers=1, drain_timeout=0.2
        )
        ok = post(rx, first)
        stuck = post(rx, second)
        hanging.hang = hang_id = str(stuck.body["event_id"])
        await rx.start()  # one publisher takes both in one batch
        (event,) = await take(sub, 1)
        async with asyncio.timeout(5):
            await hanging.stuck.wait()
        with capture_logs() as logs:
            await rx.close()
        assert event.id == ok.body["event_id"]
        lost = [e for e in logs if e["event"] == "webhook_lost"]
        assert [e["event_id"] for e in lost] == [hang_id]
        assert (
            counter(registry, "netcortex_webhook_publish_failed_total", error="lost_at_close") == 1
        )
        assert (
            counter(registry, "netcortex_webhook_published_total", event_class="device_down") == 1
        )
