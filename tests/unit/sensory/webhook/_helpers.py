"""Test helpers for the Meraki webhook receiver: fixture bodies, config, a gated bus.

``GatedBus`` wraps a real ``InMemoryEventBus`` at the ``EventBus`` seam: its
publishes wait for a gate the test opens, and can fail a given number of times
with a given bus error before going through. It is a seam fake, not a mock of
the receiver's internals; tests read what was published from a real
subscription on the inner bus.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pydantic import SecretStr

from netcortex.config import MerakiConfig
from netcortex.contracts.bus import Subscription
from netcortex.contracts.codec import decode_event
from netcortex.contracts.events import SensoryEvent
from netcortex.errors import BusError, BusUnavailable
from netcortex.metrics import Registry
from netcortex.sensory.webhook import MerakiWebhookReceiver, WebhookResponse
from netcortex.thalamus import InMemoryEventBus
from tests.conftest import load_json_fixture

SECRET = "fixture-shared-secret-0001"
PEER = "198.51.100.10"
FIXTURES = (
    "device_aps_came_up.json",
    "device_aps_went_down.json",
    "port_switch_port_disconnected.json",
    "security_ids_alert.json",
    "security_malware_detected.json",
    "security_rogue_ap.json",
    "settings_changed.json",
    "uplink_status_changed.json",
)
#: Statuses ``ingest``/``too_large`` may answer with (500 would be a receiver bug).
STATUSES = frozenset({200, 202, 400, 401, 403, 413, 415, 422, 503})


def fixture_body(name: str, **changes: Any) -> dict[str, Any]:
    """A shared Meraki fixture body; ``None`` in ``changes`` removes that field."""
    body: dict[str, Any] = load_json_fixture("meraki", name)
    for key, value in changes.items():
        if value is None:
            body.pop(key, None)
        else:
            body[key] = value
    return body


def meraki_config(**overrides: Any) -> MerakiConfig:
    """The ``meraki`` section with the fixture secret (overrides win)."""
    values: dict[str, Any] = {"shared_secret": SecretStr(SECRET)}
    values.update(overrides)
    return MerakiConfig(**values)


def sent_at(body: dict[str, Any]) -> float:
    """The body's ``sentAt`` as a ``time.time()`` float."""
    return datetime.fromisoformat(body["sentAt"]).timestamp()


def post(
    receiver: MerakiWebhookReceiver,
    body: dict[str, Any] | bytes,
    *,
    content_type: str | None = "application/json",
    authorization: str | None = None,
    peer: str | None = PEER,
    received_at: float | None = None,
) -> WebhookResponse:
    """``receiver.ingest`` one body; by default it "arrives" one second after its sentAt."""
    if isinstance(body, dict):
        if received_at is None:
            try:
                received_at = sent_at(body) + 1.0
            except (KeyError, TypeError, ValueError):
                received_at = None
        raw = json.dumps(body).encode()
    else:
        raw = body
    return receiver.ingest(
        raw,
        content_type=content_type,
        authorization=authorization,
        peer=peer,
        received_at=received_at,
    )


def rejected(registry: Registry, reason: str) -> float:
    """``netcortex_rejected_total{source="meraki.webhook", reason}``."""
    return registry.counter(
        "netcortex_rejected_total", "inputs rejected by a receiver", ["source", "reason"]
    ).value(source="meraki.webhook", reason=reason)


def counter(registry: Registry, name: str, **labels: str) -> float:
    """The value of a counter the receiver registered (0 when never incremented)."""
    metric = registry.get(name)
    assert metric is not None, name
    return metric.value(**labels)  # type: ignore[union-attr]


async def take(sub: Subscription, count: int, within: float = 5.0) -> list[SensoryEvent]:
    """The next ``count`` events published (decoded with the real codec)."""
    events = []
    async with asyncio.timeout(within):
        for _ in range(count):
            msg = await sub.next()
            await msg.ack()
            events.append(decode_event(msg.data))
    return events


class GatedBus:
    """An ``EventBus`` wrapper: publishes wait for ``gate``, the first ``fail`` raise ``error``."""

    def __init__(
        self,
        inner: InMemoryEventBus,
        *,
        fail: int = 0,
        error: type[BusError] = BusUnavailable,
        open_gate: bool = True,
    ) -> None:
        self.inner = inner
        self.gate = asyncio.Event()
        if open_gate:
            self.gate.set()
        self.fail = fail
        self.error = error
        self.attempts = 0

    async def start(self) -> None:
        """Start the inner bus."""
        await self.inner.start()

    async def close(self) -> None:
        """Close the inner bus."""
        await self.inner.close()

    @property
    def connected(self) -> bool:
        """The inner bus's state."""
        return self.inner.connected

    async def publish(self, subject: str, data: bytes, *, msg_id: str | None = None) -> None:
        """Wait for the gate, fail while ``fail`` lasts (-1: forever), then publish."""
        self.attempts += 1
        await self.gate.wait()
        if self.fail:
            self.fail -= 1
            raise self.error("injected by the test")
        await self.inner.publish(subject, data, msg_id=msg_id)

    async def subscribe(
        self, patterns: str | Sequence[str], *, durable: str | None = None
    ) -> Subscription:
        """Subscribe on the inner bus."""
        return await self.inner.subscribe(patterns, durable=durable)
