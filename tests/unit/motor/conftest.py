"""Fixtures for the motor (NetBox journal) tests: outbox, enqueue, fake NetBox, outcomes.

The worker tests use only ``outbox`` (an ``Outbox``) and ``enqueue`` (write jobs
as a store's ``record`` would). Both are fixtures so the outcome stores' outboxes
(SQLite, PostgreSQL) can be plugged in later by parametrizing them, without
touching the tests: ``enqueue(outcomes, created_at=None)`` must leave one
pending job per new outcome, due at ``created_at`` (default: now).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import replace
from datetime import datetime

import pytest

from netcortex.contracts.events import Severity
from netcortex.contracts.reflex import OutcomeKind, ReflexOutcome, outcome_id_for
from netcortex.testing import make_event
from tests.fake_netbox import FakeNetbox, running_fake_netbox
from tests.unit.motor.memory_outbox import MemoryOutbox

Enqueue = Callable[..., Awaitable[int]]


@pytest.fixture
def outbox() -> MemoryOutbox:
    """A fresh in-memory outbox (the stores' outboxes are to be parametrized in here)."""
    return MemoryOutbox()


@pytest.fixture
def enqueue(outbox: MemoryOutbox) -> Enqueue:
    """Write the jobs of ``outcomes`` into ``outbox``; how many were new."""

    async def add(outcomes: Iterable[ReflexOutcome], created_at: datetime | None = None) -> int:
        return outbox.add_all(outcomes, created_at)

    return add


@pytest.fixture
def netbox() -> Iterator[FakeNetbox]:
    """A started fake NetBox (schema-validating; must see no invalid request)."""
    with running_fake_netbox() as fake:
        yield fake


def outcome(
    n: int = 0,
    *,
    handler_id: str = "link_down",
    event_class: str = "link_down",
    device: str | None = "sw1-north",
    interface: str | None = "GigabitEthernet1/0/3",
    severity: Severity = Severity.HIGH,
    kind: OutcomeKind = OutcomeKind.LOGGED,
    summary: str | None = None,
    site: str | None = "dc-north",
    trace: dict[str, object] | None = None,
    recorded_at: datetime | None = None,
) -> ReflexOutcome:
    """The ``n``-th distinct outcome of ``handler_id`` about ``device``/``interface``."""
    event = make_event(
        event_class, device=device, interface=interface, event_id=f"01TESTEVENT{n:015d}"
    )
    where = " ".join(p for p in (device, interface) if p)
    made = ReflexOutcome.for_event(
        handler_id,
        event,
        severity=severity,
        summary=summary if summary is not None else f"Link down on {where}",
        kind=kind,
        site=site,
        trace=trace if trace is not None else {"corroboration": 1, "interface": interface},
    )
    assert made.outcome_id == outcome_id_for(handler_id, event.id)
    if recorded_at is not None:
        made = replace(made, recorded_at=recorded_at)
    return made
