"""Sensory: publish one accepted event, riding out a bus outage (trap and poll receivers;
the webhook receiver keeps its own retry loop but shares ``BusOutage``).

A retry is safe: the message id is the event id, so JetStream drops a copy that
did land (within ``bus.duplicate_window``). A transient refusal
(``BusUnavailable``, ``PublishTimeout``: nats-server restarting, unreachable, a
full in-flight window) starts — or continues — the receiver's ``BusOutage``,
and the event is retried with back-off (``FIRST_RETRY`` doubling to
``MAX_RETRY`` seconds) until the bus takes it. Accepted events wait meanwhile:
the one each publisher holds, the rest in the receiver's bounded queue, so the
oldest go out first once the bus is back (nats-py also keeps publishes made
while it reconnects in its reconnect buffer and sends them as soon as it is
back; within one publisher the order is kept, across concurrent publishers
there was never any).

The outage is bounded by ``BusOutage.budget`` seconds (``bus.outage_buffer_seconds``).
Past it, an event whose retry fails is given up; while the bus is also still
not connected the receiver sheds (``BusOutage.shedding``): every held or queued
event is given up without another attempt and the receiver refuses new input
(``bus_unavailable``) until the client is connected again. Given-up events are
counted in ``failed{error="bus_outage"}``; any other error in
``failed{error=<type>}`` with no retry. Every loss is counted and logged as
``<what>_publish_failed`` (the first ``LOGGED_FAILURES`` per outage one by one,
the number in the ``<what>_bus_recovered`` line) — never silent — and the
caller's publisher task never dies.

Imports: stdlib, structlog, netcortex.contracts/errors/metrics.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Final

import structlog

from netcortex.contracts.bus import EventBus
from netcortex.contracts.codec import encode_event
from netcortex.contracts.events import SensoryEvent
from netcortex.errors import BusError, BusUnavailable, PublishTimeout
from netcortex.metrics import Counter

__all__ = [
    "BUS_OUTAGE",
    "DEFAULT_BUDGET",
    "FIRST_RETRY",
    "LOGGED_FAILURES",
    "MAX_RETRY",
    "BusOutage",
    "publish_event",
]

#: First pause before re-publishing an event the bus refused; doubled per retry.
FIRST_RETRY: Final = 0.1
#: Longest pause between retries (a publish to a disconnected NATS client itself
#: waits up to ``bus.publish_timeout`` for the ack).
MAX_RETRY: Final = 2.0
#: Outage budget of a caller that brings no ``BusOutage`` (seconds): about the old
#: fixed retries (0.1 + 0.5 + 1.0 s).
DEFAULT_BUDGET: Final = 1.6
#: ``<what>_publish_failed`` lines logged one by one per outage; the rest are counted
#: and summed into the ``<what>_bus_recovered`` line.
LOGGED_FAILURES: Final = 10
#: The ``failed{error}`` label of events given up because the outage outlasted the budget.
BUS_OUTAGE: Final = "bus_outage"


class BusOutage:
    """One receiver's view of a bus outage, shared by all its publisher tasks.

    The outage starts at the first transient refusal (``mark_down``; that event's
    ``<what>_publish_retry`` warning is its first line) and ends at the next
    publish the bus takes (``mark_up``, logged once as ``<what>_bus_recovered``
    with the seconds down, the events retried and those given up).

    Args:
        budget: seconds an outage is ridden out (``bus.outage_buffer_seconds``).
        what: the log-event prefix (``trap``, ``webhook``, ``poll``).
        logger: the receiver's logger, so lines keep its name.
        connected: whether the bus is connected right now (``EventBus.connected``);
            an outage past its budget sheds only while this is false.
        clock: monotonic seconds.

    Raises:
        ValueError: ``budget`` is not > 0.
    """

    __slots__ = (
        "_clock",
        "_connected",
        "_failed",
        "_log",
        "_retried",
        "_what",
        "budget",
        "down_since",
    )

    def __init__(
        self,
        budget: float,
        *,
        what: str,
        logger: structlog.typing.FilteringBoundLogger,
        connected: Callable[[], bool] = lambda: False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not budget > 0:
            raise ValueError("the outage budget must be > 0 seconds")
        self.budget = budget
        self.down_since: float | None = None  # clock() of the first refusal, None: up
        self._what = what
        self._log = logger
        self._connected = connected
        self._clock = clock
        self._retried = 0  # events retried in this outage
        self._failed = 0  # events given up in this outage

    @property
    def down(self) -> bool:
        """True from the first transient refusal until a publish succeeds again."""
        return self.down_since is not None

    def over_budget(self) -> bool:
        """True when the outage is older than ``budget``: a held event gets at most one
        more attempt, and only while the bus is connected again."""
        since = self.down_since
        return since is not None and self._clock() - since >= self.budget

    def shedding(self) -> bool:
        """True when the outage is over budget and the bus is still not connected:
        held events are given up without an attempt and new input is refused."""
        return self.over_budget() and not self._connected()

    def remaining(self) -> float:
        """Seconds left of the budget in this outage (``budget`` when up)."""
        since = self.down_since
        return self.budget if since is None else max(0.0, since + self.budget - self._clock())

    def mark_down(self) -> bool:
        """Record a transient refusal; ``True`` when it started the outage (the
        caller's ``<what>_publish_retry`` warning is then the outage's first line)."""
        if self.down_since is not None:
            return False
        self.down_since = self._clock()
        self._retried = self._failed = 0
        return True

    def mark_up(self) -> None:
        """Record a publish the bus took; ends (and logs) an outage."""
        since = self.down_since
        if since is None:
            return
        self.down_since = None
        self._log.info(
            f"{self._what}_bus_recovered",
            down_seconds=round(self._clock() - since, 3),
            retried=self._retried,
            failed=self._failed,
        )

    def count_retry(self) -> None:
        """One more event had to be retried in this outage."""
        self._retried += 1

    def count_failure(self) -> bool:
        """One more event given up in this outage; ``True`` while it should be
        logged one by one (the first ``LOGGED_FAILURES``)."""
        self._failed += 1
        return self._failed <= LOGGED_FAILURES


async def publish_event(
    bus: EventBus,
    event: SensoryEvent,
    *,
    what: str,
    published: Counter,
    failed: Counter,
    logger: structlog.typing.FilteringBoundLogger,
    outage: BusOutage | None = None,
) -> bool:
    """Publish ``event``; ``True`` once the bus took it (``published{event_class}``, once).

    ``what`` names the log events (``trap`` → ``trap_publish_retry`` /
    ``trap_publish_failed``); ``logger`` is the caller's, so lines keep its name.
    ``outage`` is the receiver's shared outage state; without one the event gets
    a private one with a ``DEFAULT_BUDGET`` of retries.
    """
    if outage is None:
        outage = BusOutage(DEFAULT_BUDGET, what=what, logger=logger)
    data = encode_event(event)
    delay = FIRST_RETRY
    attempt = 0
    while True:
        if outage.down_since is not None and outage.shedding():
            _give_up(event, what, failed, logger, outage, attempt)
            return False
        attempt += 1
        try:
            if outage.down:
                # A publish to a disconnected NATS client waits the whole
                # publish_timeout for its ack; no attempt may outlast the budget.
                async with asyncio.timeout(max(outage.remaining(), FIRST_RETRY)):
                    await bus.publish(event.subject, data, msg_id=event.id)
            else:
                await bus.publish(event.subject, data, msg_id=event.id)
        except (BusUnavailable, PublishTimeout, TimeoutError) as exc:
            started = outage.mark_down()
            if attempt == 1:
                outage.count_retry()
            if outage.over_budget():
                _give_up(event, what, failed, logger, outage, attempt)
                return False
            # One warning, from the event that found the outage (with the budget);
            # the others' retries are debug: 32 publishers must not flood the log.
            (logger.warning if started else logger.debug)(
                f"{what}_publish_retry",
                event_id=event.id,
                attempt=attempt,
                delay=delay,
                error=str(exc) or type(exc).__name__,
                **({"outage_budget_seconds": outage.budget} if started else {}),
            )
            await asyncio.sleep(min(delay, max(outage.remaining(), 0.01)))
            delay = min(delay * 2, MAX_RETRY)
        except BusError as exc:  # not transient (e.g. an invalid subject): no retry
            failed.inc(error=type(exc).__name__)
            logger.error(
                f"{what}_publish_failed", event_id=event.id, subject=event.subject, error=str(exc)
            )
            return False
        except Exception as exc:  # keep the caller's publisher alive whatever the bus does
            failed.inc(error=type(exc).__name__)
            logger.exception(f"{what}_publish_failed", event_id=event.id, subject=event.subject)
            return False
        else:
            outage.mark_up()
            published.inc(event_class=event.event_class)
            return True


def _give_up(
    event: SensoryEvent,
    what: str,
    failed: Counter,
    logger: structlog.typing.FilteringBoundLogger,
    outage: BusOutage,
    attempts: int,
) -> None:
    """Count (and, for the first few per outage, log) an event the outage cost."""
    failed.inc(error=BUS_OUTAGE)
    if outage.count_failure():
        logger.error(
            f"{what}_publish_failed",
            event_id=event.id,
            subject=event.subject,
            attempts=attempts,
            error=BUS_OUTAGE,
            reason=f"the bus has been unavailable for more than {outage.budget:g} s",
        )
