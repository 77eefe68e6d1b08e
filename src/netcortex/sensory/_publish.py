"""Sensory: publish one accepted event with bounded retries (trap and poll receivers).

A retry is safe: the message id is the event id, so JetStream drops a copy that
did land. Transient refusals (``BusUnavailable``, ``PublishTimeout``) are retried
after each of ``RETRY_DELAYS``; past the last one, or on any other error, the
event is counted in ``failed{error}`` and logged as ``<what>_publish_failed`` —
never dropped silently, and the caller's publisher task never dies.

Imports: stdlib, structlog, netcortex.contracts/errors/metrics.
"""

from __future__ import annotations

import asyncio
from typing import Final

import structlog

from netcortex.contracts.bus import EventBus
from netcortex.contracts.codec import encode_event
from netcortex.contracts.events import SensoryEvent
from netcortex.errors import BusError, BusUnavailable, PublishTimeout
from netcortex.metrics import Counter

__all__ = ["RETRY_DELAYS", "publish_event"]

#: Pauses before re-publishing an event the bus refused (a NATS restart, a full queue).
RETRY_DELAYS: Final = (0.1, 0.5, 1.0)


async def publish_event(
    bus: EventBus,
    event: SensoryEvent,
    *,
    what: str,
    published: Counter,
    failed: Counter,
    logger: structlog.typing.FilteringBoundLogger,
) -> bool:
    """Publish ``event``; ``True`` once the bus took it (``published{event_class}``).

    ``what`` names the log events (``trap`` → ``trap_publish_retry`` /
    ``trap_publish_failed``); ``logger`` is the caller's, so lines keep its name.
    """
    data = encode_event(event)
    for attempt, delay in enumerate((*RETRY_DELAYS, None), start=1):
        try:
            await bus.publish(event.subject, data, msg_id=event.id)
        except (BusUnavailable, PublishTimeout) as exc:
            if delay is None:
                failed.inc(error=type(exc).__name__)
                logger.error(
                    f"{what}_publish_failed",
                    event_id=event.id,
                    subject=event.subject,
                    attempts=attempt,
                    error=str(exc),
                )
                return False
            logger.warning(
                f"{what}_publish_retry", event_id=event.id, attempt=attempt, error=str(exc)
            )
            await asyncio.sleep(delay)
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
            published.inc(event_class=event.event_class)
            return True
    return False  # not reached: the last delay is None
