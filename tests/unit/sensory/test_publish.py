"""``sensory._publish``: the outage state (``BusOutage``) and ``publish_event``'s bounds.

The restart behaviour against a real nats-server is in ``test_publish_outage.py``;
here a bus that refuses on demand (a fake at the ``EventBus`` seam) and a manual
clock pin down the budget arithmetic and the log bounds.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest
import structlog
from structlog.testing import capture_logs

from netcortex.contracts.bus import Subscription
from netcortex.errors import BusUnavailable, PublishTimeout
from netcortex.metrics import Registry
from netcortex.sensory._publish import (
    BUS_OUTAGE,
    LOGGED_FAILURES,
    BusOutage,
    publish_event,
)
from netcortex.testing import make_event

log = structlog.get_logger("test")


class RefusingBus:
    """An ``EventBus`` whose publishes raise ``BusUnavailable`` while ``refuse`` is set."""

    def __init__(self) -> None:
        self.refuse = True
        self.connected = False
        self.published: list[str | None] = []

    async def start(self) -> None:
        """Nothing to connect."""

    async def close(self) -> None:
        """Nothing to release."""

    async def publish(self, subject: str, data: bytes, *, msg_id: str | None = None) -> None:
        """Refuse, or record the message id."""
        if self.refuse:
            raise BusUnavailable("nats-server is gone")
        self.published.append(msg_id)

    async def subscribe(
        self, patterns: str | Sequence[str], *, durable: str | None = None
    ) -> Subscription:
        """Not used."""
        raise NotImplementedError


class TestBusOutage:
    def test_budget_arithmetic(self) -> None:
        """Down at t=10 with a 5 s budget: 5 s remain, over budget from t=15, shedding
        only while the bus is not connected; a success ends the outage."""
        now = [10.0]
        connected = [False]
        outage = BusOutage(
            5.0, what="t", logger=log, connected=lambda: connected[0], clock=lambda: now[0]
        )
        assert not outage.down
        assert outage.remaining() == 5.0
        assert outage.mark_down() is True
        assert outage.mark_down() is False  # the same outage
        now[0] = 12.0
        assert outage.remaining() == 3.0
        assert not outage.over_budget()
        now[0] = 15.0
        assert outage.over_budget()
        assert outage.shedding()
        connected[0] = True
        assert not outage.shedding()
        with capture_logs() as logs:
            outage.mark_up()
        assert not outage.down
        assert [(e["event"], e["down_seconds"]) for e in logs] == [("t_bus_recovered", 5.0)]

    def test_budget_must_be_positive(self) -> None:
        """A budget of 0 is refused."""
        with pytest.raises(ValueError, match="budget"):
            BusOutage(0, what="t", logger=log)


class TestPublishEvent:
    async def test_outage_past_the_budget_is_counted_and_its_log_bounded(self) -> None:
        """Events held through an outage longer than the budget are each counted
        ``bus_outage``; only the first ``LOGGED_FAILURES`` are logged one by one, the
        total is in ``<what>_bus_recovered``; the next event publishes once."""
        bus = RefusingBus()
        registry = Registry()
        published = registry.counter("p", "", ["event_class"])
        failed = registry.counter("f", "", ["error"])
        outage = BusOutage(0.05, what="t", logger=log, connected=lambda: bus.connected)
        events = [make_event(device=f"sw{i}") for i in range(LOGGED_FAILURES + 3)]
        with capture_logs() as logs:
            for event in events:
                ok = await publish_event(
                    bus,
                    event,
                    what="t",
                    published=published,
                    failed=failed,
                    logger=log,
                    outage=outage,
                )
                assert ok is False
            bus.refuse, bus.connected = False, True
            last = make_event(device="sw-last")
            assert await publish_event(
                bus,
                last,
                what="t",
                published=published,
                failed=failed,
                logger=log,
                outage=outage,
            )
        assert failed.value(error=BUS_OUTAGE) == len(events)
        assert published.total() == 1
        assert bus.published == [last.id]
        errors = [e for e in logs if e["event"] == "t_publish_failed"]
        assert len(errors) == LOGGED_FAILURES
        assert {e["error"] for e in errors} == {BUS_OUTAGE}
        (recovered,) = [e for e in logs if e["event"] == "t_bus_recovered"]
        assert recovered["failed"] == len(events)
        warnings = [e for e in logs if e["log_level"] == "warning"]
        assert [e["event"] for e in warnings] == ["t_publish_retry"]  # one per outage

    async def test_without_an_outage_object_the_retries_are_short(self) -> None:
        """A caller with no ``BusOutage`` (the poller) gets a short private budget."""
        bus = RefusingBus()
        registry = Registry()
        failed = registry.counter("f", "", ["error"])
        ok = await publish_event(
            bus,
            make_event(),
            what="t",
            published=registry.counter("p", "", ["event_class"]),
            failed=failed,
            logger=log,
        )
        assert ok is False
        assert failed.value(error=BUS_OUTAGE) == 1

    async def test_publish_timeout_is_transient_too(self) -> None:
        """``PublishTimeout`` (no ack in time: the connection is gone) is retried."""

        class Flaky(RefusingBus):
            async def publish(
                self, subject: str, data: bytes, *, msg_id: str | None = None
            ) -> None:
                if self.refuse:
                    self.refuse = False
                    raise PublishTimeout("no ack")
                self.published.append(msg_id)

        bus = Flaky()
        registry = Registry()
        event = make_event()
        assert await publish_event(
            bus,
            event,
            what="t",
            published=registry.counter("p", "", ["event_class"]),
            failed=registry.counter("f", "", ["error"]),
            logger=log,
        )
        assert bus.published == [event.id]
