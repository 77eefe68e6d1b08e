"""Reflex: the sinks every outcome goes through — log line, outcome store, bus.

Each sink is a small object with a ``name`` and ``async emit(outcome)`` (the
``contracts.reflex.Sink`` shape); ``reflex/pipeline.py`` puts them in order. A
sink raises on failure; the runner logs and counts it and still runs the
others. Sinks talk to backends only through ``contracts`` Protocols. May import:
``contracts``, ``thalamus.subjects``.
"""

from __future__ import annotations

import structlog

from netcortex.contracts.bus import EventBus
from netcortex.contracts.codec import encode_outcome
from netcortex.contracts.memory import OutcomeStore
from netcortex.reflex.protocol import ReflexOutcome
from netcortex.thalamus.subjects import outcome_subject

__all__ = ["BusSink", "LogSink", "StoreSink"]

log = structlog.get_logger(__name__)


class LogSink:
    """One INFO ``outcome_recorded`` line per outcome (severity, handler, kind, target, summary)."""

    name = "log"

    async def emit(self, outcome: ReflexOutcome) -> None:
        """Log ``outcome``; never blocks (the configured renderer writes synchronously)."""
        log.info(
            "outcome_recorded",
            severity=outcome.severity.value,
            handler_id=outcome.handler_id,
            kind=outcome.kind.value,
            target=outcome.target,
            summary=outcome.summary,
            outcome_id=outcome.outcome_id,
            event_id=outcome.event_id,
        )


class StoreSink:
    """Hands each outcome to the ``OutcomeStore`` (which batches; idempotent on outcome_id)."""

    name = "store"

    def __init__(self, store: OutcomeStore) -> None:
        """Write outcomes to ``store`` (started and closed by its owner, not by the sink)."""
        self._store = store

    async def emit(self, outcome: ReflexOutcome) -> None:
        """Queue ``outcome`` in the store. Raises ``StoreError`` when the store fails."""
        await self._store.record(outcome)


class BusSink:
    """Publishes each outcome on ``reflex.<handler_id>.<kind>.<target tokens...>``.

    The message id is the outcome id, so a re-delivered event's outcome is
    deduplicated by JetStream within its duplicate window.
    """

    name = "bus"

    def __init__(self, bus: EventBus) -> None:
        """Publish outcomes on ``bus`` (started and closed by its owner)."""
        self._bus = bus

    async def emit(self, outcome: ReflexOutcome) -> None:
        """Publish ``outcome`` as codec JSON. Raises ``BusError`` on failure."""
        subject = outcome_subject(
            outcome.handler_id, outcome.kind.value, *outcome.target.split("|")
        )
        await self._bus.publish(subject, encode_outcome(outcome), msg_id=outcome.outcome_id)
