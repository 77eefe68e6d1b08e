"""Public test helpers: event factories and a recording sink (any region may import this).

Used by netcortex's own tests and by anyone writing a handler::

    event = make_event("link_down", device="r1", interface="Gi1/0/3")
    outcome = await MyHandler().handle(event)
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from netcortex.contracts.events import SensoryEvent, new_event_id
from netcortex.contracts.reflex import ReflexOutcome
from netcortex.thalamus.subjects import sensory_subject

__all__ = ["RecordingSink", "make_event"]


def make_event(
    event_class: str = "link_down",
    *,
    source: str = "snmp.trap",
    device: str | None = "r1",
    interface: str | None = None,
    peer: str | None = None,
    agent: str | None = "192.0.2.1",
    payload: Mapping[str, Any] | None = None,
    event_id: str | None = None,
    observed_at: datetime | None = None,
) -> SensoryEvent:
    """Build a valid ``SensoryEvent`` with subject and target derived from its parts."""
    second = interface if interface is not None else peer
    parts = [p for p in (device, second) if p is not None] or [agent or "unknown"]
    now = datetime.now(UTC)
    return SensoryEvent(
        id=event_id or new_event_id(),
        subject=sensory_subject(source, event_class, *parts),
        event_class=event_class,
        source=source,
        target="|".join(parts),
        device=device,
        interface=interface,
        peer=peer,
        agent=agent,
        observed_at=observed_at or now,
        received_at=now,
        payload=payload or {},
    )


class RecordingSink:
    """A ``Sink`` that keeps every outcome in memory and lets a test wait for them."""

    name = "recording"

    def __init__(self) -> None:
        self.outcomes: list[ReflexOutcome] = []
        self._changed = asyncio.Event()

    async def emit(self, outcome: ReflexOutcome) -> None:
        """Remember ``outcome`` and wake waiters."""
        self.outcomes.append(outcome)
        self._changed.set()

    async def flush(self) -> None:
        """Nothing is buffered."""

    async def wait_for(self, count: int, timeout: float = 5.0) -> list[ReflexOutcome]:
        """Return once at least ``count`` outcomes arrived; ``TimeoutError`` otherwise."""
        async with asyncio.timeout(timeout):
            while len(self.outcomes) < count:
                self._changed.clear()
                await self._changed.wait()
        return list(self.outcomes)
