"""Reflex: the sinks every outcome goes through — log line, outcome store, graph, bus.

Each sink is a small object with a ``name`` and ``async emit(outcome)`` (the
``contracts.reflex.Sink`` shape); ``reflex/pipeline.py`` puts them in order. A
sink raises on failure; the runner logs and counts it and still runs the
others. Sinks talk to backends only through ``contracts`` Protocols (the graph
sink through a plain ``submit`` callable). May import:
``contracts``, ``thalamus.subjects``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import structlog

from netcortex.contracts.bus import EventBus
from netcortex.contracts.codec import encode_outcome
from netcortex.contracts.memory import OutcomeStore
from netcortex.metrics import Registry
from netcortex.reflex.protocol import ReflexOutcome
from netcortex.thalamus.subjects import outcome_subject

__all__ = ["AssociationSink", "BusSink", "GraphSink", "LogSink", "StoreSink"]

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

    async def flush(self) -> None:
        """Nothing is buffered."""


class StoreSink:
    """Hands each outcome to the ``OutcomeStore`` (which batches; idempotent on outcome_id)."""

    name = "store"
    #: the runner acks a message only once this sink's ``flush`` succeeded, and
    #: hands the outcomes to it again when the flush failed (``reflex.settle``)
    durable = True

    def __init__(self, store: OutcomeStore) -> None:
        """Write outcomes to ``store`` (started and closed by its owner, not by the sink)."""
        self._store = store

    async def emit(self, outcome: ReflexOutcome) -> None:
        """Queue ``outcome`` in the store. Raises ``StoreError`` when the store fails."""
        await self._store.record(outcome)

    async def flush(self) -> None:
        """Return when every recorded outcome is durable (``OutcomeStore.flush``)."""
        await self._store.flush()


class BusSink:
    """Publishes each outcome on ``reflex.<handler_id>.<kind>.<target tokens...>``.

    The message id is the outcome id, so a re-delivered event's outcome is
    deduplicated by JetStream within its duplicate window.

    Publishes are pipelined: ``emit`` starts the publish and returns, with at
    most ``max_inflight`` publishes awaiting their acknowledgement at once
    (``emit`` waits for room beyond that). Awaiting each JetStream ack in the
    handler's task would cap a handler near one publish round trip per event
    (DESIGN.md "Speed by design"). Consequences: outcomes of one handler may
    reach ``reflex.>`` out of order, and a failed publish is logged
    (``outcome_publish_failed``) and counted in
    ``netcortex_reflex_sink_failures_total{sink="bus"}`` after ``emit`` returned;
    the outcome itself is still in the store.
    """

    name = "bus"

    def __init__(
        self, bus: EventBus, *, max_inflight: int = 256, metrics: Registry | None = None
    ) -> None:
        """Publish outcomes on ``bus`` (started and closed by its owner)."""
        if max_inflight < 1:
            raise ValueError("max_inflight must be at least 1")
        self._bus = bus
        self._room = asyncio.Semaphore(max_inflight)
        self._inflight: set[asyncio.Task[None]] = set()
        registry = metrics if metrics is not None else Registry()
        self._failures = registry.counter(
            "netcortex_reflex_sink_failures_total",
            "Outcomes a sink failed to take (logged; the other sinks still ran), by sink.",
            ("sink",),
        )

    async def emit(self, outcome: ReflexOutcome) -> None:
        """Start publishing ``outcome`` as codec JSON; wait only for room in the window.

        Raises:
            netcortex.errors.InvalidSubject: the outcome's ids cannot form a subject.
        """
        subject = outcome_subject(
            outcome.handler_id, outcome.kind.value, *outcome.target.split("|")
        )
        data = encode_outcome(outcome)
        await self._room.acquire()
        task = asyncio.create_task(self._publish(subject, data, outcome.outcome_id))
        self._inflight.add(task)
        # Released in a done-callback, not in the coroutine: a task cancelled
        # before it first runs never enters its ``finally`` but still calls back.
        task.add_done_callback(self._settled)

    def _settled(self, task: asyncio.Task[None]) -> None:
        self._inflight.discard(task)
        self._room.release()

    async def _publish(self, subject: str, data: bytes, outcome_id: str) -> None:
        try:
            await self._bus.publish(subject, data, msg_id=outcome_id)
        except Exception as exc:  # noqa: BLE001 - nothing awaits this task: count and log all
            self._failures.inc(sink=self.name)
            log.error(
                "outcome_publish_failed",
                outcome_id=outcome_id,
                subject=subject,
                error=f"{type(exc).__name__}: {exc}",
            )

    async def flush(self) -> None:
        """Return when every publish started before the call has finished (or failed)."""
        while self._inflight:
            await asyncio.gather(*list(self._inflight), return_exceptions=True)


class GraphSink:
    """Hands each outcome to the graph mirror's non-blocking ``submit`` (issue 6, item 2).

    The sink knows only a callable, so the reflex region stays blind to the
    mirror (``memory.episodic.graph.GraphMirror.submit`` in ``app.py``). It sits
    right after ``StoreSink``: every outcome the pipeline hands the store, of
    every kind, goes to the graph too. Delivery is asynchronous and best effort:
    the mirror batches, retries a failing graph with backoff and counts what it
    has to drop; ``flush`` does not wait for the graph (a graph that is down must
    not hold up the runner's stop), the mirror's own ``close`` writes what it can
    within its bound.
    """

    name = "graph"

    def __init__(self, submit: Callable[[ReflexOutcome], None]) -> None:
        """Give outcomes to ``submit``, which must return at once and never raise."""
        self._submit = submit

    async def emit(self, outcome: ReflexOutcome) -> None:
        """Queue ``outcome`` for the graph; no I/O, never waits."""
        self._submit(outcome)

    async def flush(self) -> None:
        """Nothing to wait for here: the mirror owns its backlog (see the class docstring)."""


class AssociationSink:
    """Hands each outcome to the correlator's non-blocking ``submit`` (issue 8, item 3).

    Like ``GraphSink`` it knows only a callable
    (``association.engine.IncidentWorker.submit`` in ``app.py``), so the reflex
    region stays blind to association. It sits right after ``StoreSink``: every
    outcome of every kind is offered (the correlator decides what counts). The
    worker queues (bounded; overflow is dropped and counted there) and correlates
    on its own task; ``flush`` does not wait for it, the engine drains it after
    the runner has stopped.
    """

    name = "association"

    def __init__(self, submit: Callable[[ReflexOutcome], None]) -> None:
        """Give outcomes to ``submit``, which must return at once and never raise."""
        self._submit = submit

    async def emit(self, outcome: ReflexOutcome) -> None:
        """Queue ``outcome`` for the correlator; no I/O, never waits."""
        self._submit(outcome)

    async def flush(self) -> None:
        """Nothing to wait for here: the worker owns its queue (see the class docstring)."""
