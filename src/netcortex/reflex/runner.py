"""Reflex: the runner — one asyncio task per handler, failures turned into data.

For each handler the runner opens one durable subscription
(``durable="reflex-<handler id>"``, so JetStream workers share the work) on the
handler's patterns and, per message::

    decode → gates (each passes the event on or stops it with a terminal kind,
                    and adds to the event's decision trace)
      → handler.handle(event) → outcome (None: nothing recorded)
      → trace, site and role put on the outcome
      → every sink in order → held by the settler → ack once durable

A ``suppressed`` stop (maintenance) still runs the handler: the outcome is a
shadow — what would have fired, with kind ``suppressed``. A ``skipped`` stop
(dedup) does not; its outcome has the handler's nominal severity. Every outcome
carries ``trace["decided_by"]``: the gate that stopped the event, or
``handler``.

A message that does not decode is logged, counted as rejected and acked (it
would fail again on redelivery). A raising handler (or gate) becomes an
``errored`` outcome with a truncated traceback, and the task goes on. A failing
sink is logged and counted; the other sinks still run and the message is still
acked (a redelivery would repeat every other sink, and a sink that stays down
would multiply the load by the bus's max deliveries). Anything unexpected in
that path is logged with its traceback and the message is left unacked for the
bus to redeliver; the task never dies of it.

Per event the runner does no I/O of its own besides the sinks and the ack.

Durability (``reflex.settle``): a processed message is not acked by its handler
task but handed to the runner's one ``AckSettler``, which acks in batches only
after the sinks flushed — the outcome store committed the rows (and their
journal jobs). A process killed at any moment leaves unacked the messages whose
outcomes may not be stored, and the bus redelivers them (same outcome ids, which
the store ignores when it has them). While the store refuses writes the settler
retries with back-off and the handler tasks pause before their next message; the
messages it holds are kept in progress (``BusMessage.in_progress``, every third
of ``ack_wait``) so the bus neither redelivers nor drops them meanwhile.
Re-evaluated outcomes (a maintenance window ended) have no message; the settler
holds them as well, so a failed flush records them again.

May import: ``aio``, ``contracts``, ``errors``, ``metrics`` (no concrete bus or store).
"""

from __future__ import annotations

import asyncio
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import structlog

from netcortex.aio import stop_tasks
from netcortex.contracts.bus import BusMessage, EventBus, Subscription
from netcortex.contracts.codec import decode_event
from netcortex.contracts.memory import MaintenanceCalendar
from netcortex.errors import BusError, BusUnavailable, DecodeError, StoreError
from netcortex.metrics import Registry
from netcortex.reflex.facts import FactTracker, HeldFact
from netcortex.reflex.pipeline import Pipeline
from netcortex.reflex.protocol import (
    Gate,
    OutcomeKind,
    ReflexHandler,
    ReflexOutcome,
    SensoryEvent,
    Severity,
    outcome_id_for,
)
from netcortex.reflex.registry import HandlerRegistry
from netcortex.reflex.settle import ACK_WAIT, CANCEL_GRACE, MAX_HELD, AckSettler
from netcortex.thalamus.subjects import compile_patterns

__all__ = ["DIAGNOSTIC_LIMIT", "ReflexRunner", "truncate_traceback"]

log = structlog.get_logger(__name__)

#: Longest ``diagnostic`` (characters) an ``errored`` outcome carries.
DIAGNOSTIC_LIMIT = 2048
_SUMMARY_LIMIT = 200
_TRUNCATED = "\n  … (traceback truncated) …\n"
# After a transient receive error, wait this long before asking again (no hot loop).
_RECEIVE_RETRY_DELAY = 0.1
#: longest sleep of the window watcher (windows added at run time are seen within it)
_WINDOW_POLL = 5.0
#: wake this long after a window's end so ``active`` no longer reports it
_WINDOW_SLACK = 0.05
#: after a failure of the window watcher, wait this long before trying again
_WATCH_RETRY_DELAY = 1.0
#: trace keys of the maintenance decision, dropped from a re-evaluated fact's trace
_WINDOW_TRACE_KEYS = frozenset({"window_id", "decided_by"})
_RESUBSCRIBE_MAX_DELAY = 5.0
#: the stop's last flush gets at least this long, even when the drain used the budget
_FINAL_FLUSH_FLOOR = 0.5
#: ``sink_flush_failed`` at most this often per sink while its flushes keep failing
_FLUSH_LOG_INTERVAL = 10.0
#: A gate whose backend is unavailable: retry the event in place after this
#: delay (doubling to the max), for at most the budget, then leave it to the bus.
_GATE_RETRY_DELAY = 0.1
_GATE_RETRY_MAX_DELAY = 2.0
_GATE_RETRY_BUDGET = 20.0  # below bus.ack_wait's default (30 s): no second worker meanwhile
#: gate failures that mean "its backend is away", not "this event is bad"
_UNAVAILABLE = (StoreError, BusError)


class _GateUnavailable(Exception):
    """A gate failed because its backend is unavailable (``_UNAVAILABLE``)."""

    def __init__(self, gate: str, error: Exception) -> None:
        super().__init__(f"gate {gate!r} unavailable: {error}")
        self.gate = gate
        self.error = error


def truncate_traceback(exc: BaseException, limit: int = DIAGNOSTIC_LIMIT) -> str:
    """The formatted traceback of ``exc``, at most ``limit`` characters.

    Keeps the first line and the tail — the innermost frames and the exception
    message, which are what a reader needs — with a marker where it was cut.
    """
    text = "".join(traceback.format_exception(exc))
    if len(text) <= limit:
        return text
    head, _, _ = text.partition("\n")
    head = head[: limit // 4]
    room = limit - len(head) - len(_TRUNCATED)
    return head + _TRUNCATED + text[len(text) - room :]


class _Metrics:
    """The runner's metrics, declared in one place."""

    def __init__(self, registry: Registry) -> None:
        self.outcomes = registry.counter(
            "netcortex_reflex_outcomes_total",
            "Outcomes produced, by handler, kind and severity.",
            ("handler", "kind", "severity"),
        )
        self.handled = registry.counter(
            "netcortex_reflex_handled_total",
            "Bus messages a handler took and decoded (each yields at most one outcome), "
            "by handler.",
            ("handler",),
        )
        self.errors = registry.counter(
            "netcortex_reflex_handler_errors_total",
            "Handler (or gate) exceptions turned into errored outcomes.",
            ("handler",),
        )
        self.gate_unavailable = registry.counter(
            "netcortex_reflex_gate_unavailable_total",
            "Gate calls that failed because the gate's backend was unavailable (the "
            "event is retried, not recorded as errored), by gate.",
            ("gate",),
        )
        self.gate_gave_up = registry.counter(
            "netcortex_reflex_gate_gave_up_total",
            "Events handed back to the bus after a gate's backend stayed unavailable for "
            "the whole in-place retry budget, by gate.",
            ("gate",),
        )
        self.stopped = registry.counter(
            "netcortex_reflex_stopped_total",
            "Events a gate stopped before the handler, by handler and gate.",
            ("handler", "reason"),
        )
        self.sink_failures = registry.counter(
            "netcortex_reflex_sink_failures_total",
            "Sink emits that raised, by sink.",
            ("sink",),
        )
        self.rejected = registry.counter(
            "netcortex_rejected_total",
            "Input rejected at a boundary, by source and reason.",
            ("source", "reason"),
        )
        self.ack_failures = registry.counter(
            "netcortex_reflex_ack_failures_total",
            "Acks the bus refused (the message will be redelivered), by handler.",
            ("handler",),
        )
        self.handler_seconds = registry.histogram(
            "netcortex_reflex_handler_seconds",
            "Time spent in handler.handle, by handler.",
            ("handler",),
        )
        self.gate_seconds = registry.histogram(
            "netcortex_reflex_gate_seconds",
            "Time spent in one gate's call (enrich, maintenance, dedup), by gate.",
            ("gate",),
        )
        self.e2e_seconds = registry.histogram(
            "netcortex_reflex_event_to_outcome_seconds",
            "From the event's received_at to its outcome having passed every sink.",
            ("handler",),
        )


class _Worker:
    """One handler's subscription, task and in-flight flag."""

    __slots__ = ("busy", "handler", "subscription", "task")

    def __init__(self, handler: ReflexHandler, subscription: Subscription) -> None:
        self.handler = handler
        self.subscription = subscription
        self.task: asyncio.Task[None] | None = None
        self.busy = False


class ReflexRunner:
    """Runs every registered handler on its own task, fed by the bus.

    Attributes:
        ready_event: set once every handler's subscription is open (at the end of
            ``start``); cleared by ``stop``.
    """

    def __init__(
        self,
        registry: HandlerRegistry,
        bus: EventBus,
        pipeline: Pipeline,
        metrics: Registry | None = None,
        *,
        drain_timeout: float = 5.0,
        clock: Callable[[], datetime] | None = None,
        max_unacked: int = MAX_HELD,
        ack_wait: float = ACK_WAIT,
    ) -> None:
        """Prepare (no I/O): handlers are read from ``registry`` at ``start``.

        Args:
            registry: the handlers to run.
            bus: an ``EventBus`` the caller starts before ``start`` and closes after
                ``stop``.
            pipeline: gates and sinks (``reflex.pipeline.build_pipeline``).
            metrics: where to count; a private registry when ``None``.
            drain_timeout: how long ``stop`` lets in-flight events finish before
                cancelling them (seconds).
            clock: "now" (timezone-aware UTC) for the window watcher, re-evaluated
                outcomes and the event-to-outcome latency; wall-clock time when
                ``None``. ``netcortex replay`` passes its virtual clock.
            max_unacked: processed messages held for the ack at most; the handlers
                wait beyond it (a slow store flush).
            ack_wait: the bus's ``bus.ack_wait`` (seconds): a message held for its
                ack longer than a third of it is kept in progress (``reflex.settle``).
        """
        self._clock: Callable[[], datetime] = clock if clock is not None else _utc_now
        # An injected clock also stamps recorded_at, so a replay's outcomes are the
        # same on every run (the wall-clock default is set when they are built).
        self._stamp = clock is not None
        self._registry = registry
        self._bus = bus
        self._gates = pipeline.gates
        self._sinks = pipeline.sinks
        self._calendar = pipeline.calendar
        # Facts suppressed by a window, handed to their handler again when it ends.
        self._facts = FactTracker()
        self._watcher: asyncio.Task[None] | None = None
        self._reevaluating = False  # the watcher is emitting re-evaluated outcomes
        registry_ = metrics if metrics is not None else Registry()
        self._metrics = _Metrics(registry_)
        self._drain_timeout = drain_timeout
        self._workers: list[_Worker] = []
        self._durable = tuple(s for s in self._sinks if getattr(s, "durable", False))
        # sink name -> (when its failure was last logged, failures not logged since)
        self._flush_failing: dict[str, tuple[float, int]] = {}
        self._settler = AckSettler(
            self._flush_sinks, self._rerecord, registry_, max_held=max_unacked, ack_wait=ack_wait
        )
        self._lock = asyncio.Lock()
        self._running = False
        self._stopping = False
        self.ready_event = asyncio.Event()

    async def start(self) -> None:
        """Open one durable subscription per handler and start its task. Idempotent.

        Returns once every subscription is open (``ready_event`` is then set), so an
        event published afterwards reaches every matching handler.

        Raises:
            netcortex.errors.BusError: a subscription could not be opened; the ones
                already opened are closed again and the runner stays stopped.
        """
        async with self._lock:
            if self._running:
                return
            workers: list[_Worker] = []
            try:
                for handler in self._registry.all_handlers():
                    sub = await self._bus.subscribe(
                        handler.patterns, durable=f"reflex-{handler.id}"
                    )
                    workers.append(_Worker(handler, sub))
            except BaseException:
                for worker in workers:
                    await _close_quietly(worker.subscription)
                raise
            self._stopping = False
            for worker in workers:
                worker.task = asyncio.create_task(
                    self._consume(worker), name=f"reflex-{worker.handler.id}"
                )
            self._workers = workers
            self._running = True
            self._settler.start()
            if self._calendar is not None:
                self._watcher = asyncio.create_task(
                    self._watch_windows(self._calendar), name="reflex-window-watch"
                )
            self.ready_event.set()
            log.info("reflex_started", handlers=[w.handler.id for w in workers])

    async def stop(self) -> None:
        """Let in-flight events finish (up to ``drain_timeout``), then close subscriptions.

        Idempotent, and safe without ``start``. Idle handler tasks are cancelled at
        once; a task in the middle of an event finishes it (sinks and ack
        included) unless the drain timeout passes first, in which case it is
        cancelled and its unacked message is left to the bus to redeliver. Then
        every message already delivered to a subscription is processed (see
        ``_sweep``), all within ``drain_timeout`` in total. The window watcher is
        cancelled first, or, when it is re-evaluating facts, allowed to finish
        (within the same budget), so no outcome is emitted after the sinks are
        flushed and none is cut off half-way through the sinks. The settler acks
        what it can make durable by the deadline; the outcomes it could not are
        handed to the durable sinks again and flushed once more (the only flush
        here: none when everything was settled). Waits for cancelled tasks are
        bounded (``CANCEL_GRACE`` each).
        """
        async with self._lock:
            if not self._running:
                return
            self._stopping = True
            self.ready_event.clear()
            deadline = asyncio.get_running_loop().time() + self._drain_timeout
            watcher, self._watcher = self._watcher, None
            if watcher is not None:
                # A re-evaluation in progress finishes (its outcomes reach every sink
                # before the flush below); a sleeping watcher is cancelled at once.
                if self._reevaluating:
                    await asyncio.wait({watcher}, timeout=self._drain_timeout)
                watcher.cancel()
                await _wait_cancelled([watcher])
            tasks = [w.task for w in self._workers if w.task is not None]
            for worker in self._workers:
                if not worker.busy and worker.task is not None:
                    worker.task.cancel()
            if tasks:
                remaining = max(deadline - asyncio.get_running_loop().time(), 0.0)
                _, pending = await asyncio.wait(tasks, timeout=remaining)
                for task in pending:
                    log.warning("reflex_drain_timeout", task=task.get_name())
                    task.cancel()
                await _wait_cancelled(tasks)
            for worker in self._workers:
                await self._sweep(worker, deadline)
            # Ack what was processed once it is durable (the settler flushes every
            # outcome, re-evaluations included). What it could not make durable (the
            # store down, or its back-off cut by the deadline) may have been dropped
            # with a failed batch — and a re-evaluation has no message the bus would
            # redeliver — so record it again and flush once more (bounded) before
            # the store's own close tries again.
            unsettled = await self._settler.close(
                max(deadline - asyncio.get_running_loop().time(), 0.0)
            )
            if unsettled:
                remaining = max(deadline - asyncio.get_running_loop().time(), _FINAL_FLUSH_FLOOR)
                try:
                    async with asyncio.timeout(remaining):
                        await self._rerecord(unsettled)
                        await self._flush_sinks()
                except TimeoutError:
                    # The store's own close flushes again; the runner's stop stays bounded.
                    log.warning("reflex_final_flush_timeout", seconds=round(remaining, 3))
            for worker in self._workers:
                await _close_quietly(worker.subscription)
            self._workers = []
            self._running = False
            log.info("reflex_stopped")

    async def _flush_sinks(self) -> bool:
        """Let buffering sinks deliver what they hold; a failing one is logged and counted.

        Returns ``True`` when every durable sink (the store) flushed: what the
        settler needs before it acks.
        """
        ok = True
        for sink in self._sinks:
            try:
                await sink.flush()
            except Exception as exc:  # noqa: BLE001 - one sink must not stop the others' flush
                self._metrics.sink_failures.inc(sink=sink.name)
                self._log_flush_failure(sink.name, exc)
                if sink in self._durable:
                    ok = False
            else:
                self._flush_failing.pop(sink.name, None)
        return ok

    def _log_flush_failure(self, sink: str, exc: Exception) -> None:
        """``sink_flush_failed`` at the first failure of a streak, then at most every
        ``_FLUSH_LOG_INTERVAL`` s with the number of failures not logged (an outage
        retried by the settler must not write a line per retry)."""
        now = time.monotonic()
        streak = self._flush_failing.get(sink)
        if streak is not None and now - streak[0] < _FLUSH_LOG_INTERVAL:
            self._flush_failing[sink] = (streak[0], streak[1] + 1)
            return
        suppressed = 0 if streak is None else streak[1]
        self._flush_failing[sink] = (now, 0)
        log.error(
            "sink_flush_failed",
            sink=sink,
            error=f"{type(exc).__name__}: {exc}",
            suppressed=suppressed,
        )

    async def _rerecord(self, outcomes: Sequence[ReflexOutcome]) -> None:
        """Hand ``outcomes`` to the durable sinks again (their flush failed: the rows
        may be lost); a sink that still refuses is logged, the next flush tells."""
        for sink in self._durable:
            for outcome in outcomes:
                try:
                    await sink.emit(outcome)
                except Exception as exc:  # noqa: BLE001 - the settler retries the flush anyway
                    self._metrics.sink_failures.inc(sink=sink.name)
                    log.warning(
                        "sink_rerecord_failed", sink=sink.name, error=f"{type(exc).__name__}: {exc}"
                    )
                    break

    async def _sweep(self, worker: _Worker, deadline: float) -> None:
        """Process what the subscription already holds locally, until empty or ``deadline``.

        Receivers are closed before the runner stops, so every event they accepted
        is already in a subscription: on the memory bus this is what makes a
        graceful stop lose nothing; on JetStream it leaves nothing to redeliver.
        A cancelled ``next`` loses nothing (bus contract), so the idle tasks
        cancelled above left their messages here.
        """
        loop = asyncio.get_running_loop()
        swept = 0
        timed_out = False
        # Runs in stop()'s caller's context, not the handler task's: bind handler_id as
        # the task does, and unbind it and the subject afterwards so that neither leaks
        # into the caller's later log lines (engine_stopped ...).
        with structlog.contextvars.bound_contextvars(handler_id=worker.handler.id, subject=None):
            while loop.time() < deadline:
                try:
                    msg = await worker.subscription.next(timeout=0)
                except (TimeoutError, BusError):
                    break
                try:
                    await self._process(worker.handler, msg)
                except Exception:  # the sweep must reach every message (logged with traceback)
                    self._metrics.errors.inc(handler=worker.handler.id)
                    log.exception("reflex_message_failed", msg_id=msg.msg_id)
                swept += 1
            else:
                timed_out = True
        if timed_out:
            log.warning("reflex_drain_timeout", handler_id=worker.handler.id, swept=swept)
        if swept:
            log.info("reflex_drained", handler_id=worker.handler.id, events=swept)

    async def run_event(self, event: SensoryEvent) -> int:
        """Run ``event`` through every registered handler whose patterns match its
        subject, one after the other in registry order, without the bus.

        The same gates, handler and sinks as a delivered message (and the same
        fact tracking for maintenance re-evaluation); for ``netcortex replay``,
        which feeds events in ``received_at`` order on a virtual clock. Needs no
        ``start``. Returns how many outcomes were emitted.
        """
        emitted = 0
        for handler in self._registry.all_handlers():
            if not _handler_matches(handler, event.subject):
                continue
            outcome = await self._outcome(handler, event)
            if outcome is not None:
                await self._emit(outcome)
                emitted += 1
        return emitted

    def next_window_change(self) -> datetime | None:
        """When the calendar next starts or ends a window after the clock's now
        (``None`` without a calendar, or when no change is scheduled) — when
        ``release_held`` has something to do at the earliest (replay)."""
        if self._calendar is None or not len(self._facts):
            return None
        return self._calendar.next_change(self._clock())

    async def release_held(self) -> None:
        """Re-evaluate the facts held by maintenance that no window covers at the
        clock's now (what the window watcher does when a window ends); for replay."""
        if self._calendar is not None and len(self._facts):
            await self._reevaluate(self._calendar)

    async def _consume(self, worker: _Worker) -> None:
        handler = worker.handler
        sub = worker.subscription
        structlog.contextvars.bind_contextvars(handler_id=handler.id)
        while not self._stopping:
            if not self._settler.healthy:
                # The store refuses writes: take no new message until it is back.
                await self._settler.wait_healthy()
                continue
            if not self._settler.has_room:
                # A flush is slow (not failed yet): hold no more than the settler's bound.
                await self._settler.wait_room()
                continue
            try:
                msg = await sub.next()
            except BusUnavailable:
                if self._stopping:
                    break  # closed by stop()
                # Lost while running (closed under us, or the bus went away): a
                # handler must not stay deaf, so subscribe again with backoff.
                resubscribed = await self._resubscribe(worker)
                if resubscribed is None:
                    break  # stopping
                sub = resubscribed
                continue
            except BusError as exc:
                log.warning("reflex_receive_failed", error=str(exc))
                await asyncio.sleep(_RECEIVE_RETRY_DELAY)
                continue
            worker.busy = True
            try:
                await self._process(handler, msg)
            except Exception:  # the task must outlive any one message (logged with traceback)
                self._metrics.errors.inc(handler=handler.id)
                log.exception("reflex_message_failed", msg_id=msg.msg_id)
            finally:
                worker.busy = False

    async def _resubscribe(self, worker: _Worker) -> Subscription | None:
        """Open the handler's subscription again, retrying with backoff until it works.

        Returns the new subscription (also stored on ``worker``), or ``None`` once
        the runner is stopping. ``stop()`` cancels this wait like any idle wait; the
        loop also ends on the stopping flag (the bus client may lose a cancel:
        ``asyncio.wait_for`` on Python 3.11).
        """
        handler = worker.handler
        log.error("reflex_subscription_lost")
        await _close_quietly(worker.subscription)
        delay = _RECEIVE_RETRY_DELAY
        attempt = 0
        while not self._stopping:
            attempt += 1
            try:
                sub = await self._bus.subscribe(handler.patterns, durable=f"reflex-{handler.id}")
            except BusError as exc:
                log.warning("reflex_resubscribe_failed", attempt=attempt, error=str(exc))
                await asyncio.sleep(delay)
                delay = min(delay * 2, _RESUBSCRIBE_MAX_DELAY)
                continue
            worker.subscription = sub
            log.info("reflex_resubscribed", attempt=attempt)
            return sub
        return None

    async def _process(self, handler: ReflexHandler, msg: BusMessage) -> None:
        """Run one message through decode → gates → handler → sinks → ack."""
        hid = handler.id
        taken = time.monotonic()  # its ack timer runs from about now (kept in progress)
        structlog.contextvars.bind_contextvars(subject=msg.subject)
        try:
            event = decode_event(msg.data)
        except DecodeError as exc:
            self._metrics.rejected.inc(source="reflex", reason=exc.reason)
            log.warning("event_rejected", reason=exc.reason, error=str(exc), msg_id=msg.msg_id)
            await self._ack(hid, msg)
            return
        self._metrics.handled.inc(handler=hid)
        settle, outcome = await self._outcome_retrying(handler, event, msg)
        if not settle:
            return  # left unacked: the bus redelivers it (see _outcome_retrying)
        if outcome is not None:
            outcome = await self._emit(outcome)
            elapsed = (self._clock() - event.received_at).total_seconds()
            self._metrics.e2e_seconds.observe(max(elapsed, 0.0), handler=hid)
        self._settler.hold(hid, msg, outcome, since=taken)

    async def _outcome_retrying(
        self, handler: ReflexHandler, event: SensoryEvent, msg: BusMessage
    ) -> tuple[bool, ReflexOutcome | None]:
        """``_outcome``, retried in place while a gate's backend is unavailable;
        ``(settle, outcome)``.

        A dedup bucket on a NATS server that is restarting fails the dedup gate
        with ``StoreError``; recording that as an ``errored`` outcome (and acking
        it) would make a lost fact out of an outage. Instead the same event is
        tried again after 0.1 s doubling to 2 s, for up to ``_GATE_RETRY_BUDGET``
        seconds (order kept, no delivery attempt used): the handler task waits,
        like the settler's pause. Past the budget, or when the runner stops, the
        message is nak'ed (``settle`` false) for the bus to redeliver.
        A first attempt that timed out may have been applied; dedup recognises the
        retry of its own first event (``first_event_id``).
        """
        hid = handler.id
        delay = _GATE_RETRY_DELAY
        started = time.monotonic()
        failures = 0
        while True:
            try:
                outcome = await self._outcome(handler, event, retry_unavailable=True)
            except _GateUnavailable as exc:
                failures += 1
                self._metrics.gate_unavailable.inc(gate=exc.gate)
                if failures == 1:
                    log.warning(
                        "reflex_gate_unavailable",
                        gate=exc.gate,
                        event_id=event.id,
                        error=f"{type(exc.error).__name__}: {exc.error}",
                    )
                if self._stopping or time.monotonic() - started > _GATE_RETRY_BUDGET:
                    self._metrics.gate_gave_up.inc(gate=exc.gate)
                    log.error(
                        "reflex_gate_gave_up",
                        gate=exc.gate,
                        event_id=event.id,
                        msg_id=msg.msg_id,
                        attempts=failures,
                        hint="handed back to the bus for redelivery",
                    )
                    try:
                        await msg.nak(delay=_GATE_RETRY_MAX_DELAY)
                    except BusError as nak_error:  # NATS away: redelivered after ack_wait
                        log.warning("reflex_nak_failed", error=str(nak_error))
                    return False, None
                await asyncio.sleep(delay)
                delay = min(delay * 2, _GATE_RETRY_MAX_DELAY)
                continue
            if failures:
                log.info("reflex_gate_recovered", handler_id=hid, attempts=failures + 1)
            return True, outcome

    async def _emit(self, outcome: ReflexOutcome) -> ReflexOutcome:
        """Count ``outcome`` and hand it to every sink; a failing sink is logged and counted.

        Returns the outcome as the sinks got it (stamped with the clock on replay)."""
        metrics = self._metrics
        if self._stamp:
            outcome = replace(outcome, recorded_at=self._clock())
        metrics.outcomes.inc(
            handler=outcome.handler_id, kind=outcome.kind.value, severity=outcome.severity.value
        )
        for sink in self._sinks:
            try:
                await sink.emit(outcome)
            except Exception as exc:  # noqa: BLE001 - a failing sink must not stop the others
                metrics.sink_failures.inc(sink=sink.name)
                # One line per failure; a traceback would repeat for every event.
                log.error(
                    "sink_failed",
                    sink=sink.name,
                    outcome_id=outcome.outcome_id,
                    error=f"{type(exc).__name__}: {exc}",
                )
        return outcome

    async def _watch_windows(self, calendar: MaintenanceCalendar) -> None:
        """Wake when a window starts or ends (or every ``_WINDOW_POLL`` s, to see
        windows added meanwhile) and re-evaluate the facts no window covers any more.

        Outlives any failure: an exception from the calendar or a re-evaluation is
        logged with its traceback (``window_watch_failed``) and the watcher tries
        again after ``_WATCH_RETRY_DELAY`` s (facts not yet released stay held).
        ``stop`` cancels it while it sleeps, and lets a re-evaluation in progress
        finish first (its outcomes pass every sink before the sinks are flushed).
        """
        failed = False
        while not self._stopping:
            delay = _WINDOW_POLL
            try:
                now = self._clock()
                nxt = calendar.next_change(now)
                if nxt is not None:
                    delay = min(max((nxt - now).total_seconds(), 0.0) + _WINDOW_SLACK, _WINDOW_POLL)
            except Exception:  # the watcher must outlive any one failure (logged)
                log.exception("window_watch_failed", stage="next_change")
                delay = _WATCH_RETRY_DELAY
            if failed:  # no hot loop when re-evaluating keeps failing
                delay = max(delay, _WATCH_RETRY_DELAY)
                failed = False
            await asyncio.sleep(delay)
            if self._stopping or not len(self._facts):
                continue
            self._reevaluating = True
            try:
                await self._reevaluate(calendar)
            except Exception:  # the watcher must outlive any one failure (logged)
                log.exception("window_watch_failed", stage="reevaluate")
                failed = True
            finally:
                self._reevaluating = False

    async def _reevaluate(self, calendar: MaintenanceCalendar) -> None:
        """Give the held facts whose target no window covers now their normal outcome.

        The event it was suppressed for (enriched) goes through the gates after
        the maintenance gate (dedup ...), then its handler: a fact reported many
        times in the window gives one outcome, and it is ``skipped`` (with its
        corroboration) when the same fact was already logged since the window
        ended (by a live event, or by another worker sharing the dedup state).
        The outcome gets its own id (``<event id>/after/<window id>``: the
        suppressed shadow keeps its row) and ``trace.reevaluated_after``;
        ``trace.decided_by`` is ``maintenance_end`` when the handler decided, else
        the gate that stopped it.
        """
        now = self._clock()

        def uncovered(fact: HeldFact) -> bool:
            t = fact.trace
            tags = t.get("tags")
            return (
                calendar.active(
                    now,
                    device=fact.event.device,
                    interface=fact.event.interface,
                    site=t.get("site") if isinstance(t.get("site"), str) else None,
                    role=t.get("role") if isinstance(t.get("role"), str) else None,
                    tags=tuple(tags) if isinstance(tags, list | tuple) else (),
                )
                is None
            )

        after = self._gates_after_maintenance()
        for fact in self._facts.release(uncovered):
            handler = self._registry.get_handler(fact.handler_id)
            if handler is None:
                continue
            trace = {k: v for k, v in fact.trace.items() if k not in _WINDOW_TRACE_KEYS}
            trace["reevaluated_after"] = fact.window_id
            outcome = await self._outcome(
                handler, fact.event, gates=after, trace=trace, track=False
            )
            if outcome is None:
                continue
            if outcome.trace.get("decided_by") == "handler":
                outcome = _with_trace(outcome, {**outcome.trace, "decided_by": "maintenance_end"})
            outcome = replace(
                outcome,
                outcome_id=outcome_id_for(handler.id, f"{fact.event.id}/after/{fact.window_id}"),
                recorded_at=now,
            )
            log.info(
                "fact_reevaluated",
                handler_id=handler.id,
                target=fact.event.target,
                window_id=fact.window_id,
                kind=outcome.kind.value,
            )
            outcome = await self._emit(outcome)
            if self._running:
                # No message to redeliver it: the settler flushes it, and records it
                # again when that flush fails, like a message's outcome.
                self._settler.hold(handler.id, None, outcome)

    def _gates_after_maintenance(self) -> tuple[Gate, ...]:
        """The gates that follow the maintenance gate (those a re-evaluated fact passes)."""
        for i, gate in enumerate(self._gates):
            if gate.name == "maintenance":
                return self._gates[i + 1 :]
        return ()

    async def _outcome(
        self,
        handler: ReflexHandler,
        event: SensoryEvent,
        *,
        gates: tuple[Gate, ...] | None = None,
        trace: dict[str, Any] | None = None,
        track: bool = True,
        retry_unavailable: bool = False,
    ) -> ReflexOutcome | None:
        """Gates then the handler; any exception becomes an ``errored`` outcome.

        The decision trace starts empty per (handler, event) (or as ``trace``);
        each gate adds to it, the runner adds ``decided_by`` and puts it on the
        outcome. ``gates`` defaults to the pipeline's; ``track`` lets the fact
        tracker see the event (off when re-evaluating a held fact).
        ``retry_unavailable``: a gate failing with ``StoreError`` or ``BusError``
        (its backend is unreachable) raises ``_GateUnavailable`` instead.
        """
        trace = {} if trace is None else trace
        stage = "gate"
        decided_by = "handler"
        stopped: OutcomeKind | None = None
        metrics = self._metrics
        try:
            for gate in self._gates if gates is None else gates:
                decided_by = gate.name  # names a raising gate too
                started = time.perf_counter()
                try:
                    result = await gate(handler, event, trace)
                finally:
                    metrics.gate_seconds.observe(time.perf_counter() - started, gate=gate.name)
                if isinstance(result, OutcomeKind):
                    metrics.stopped.inc(handler=handler.id, reason=gate.name)
                    stopped = result
                    break
                if not isinstance(result, SensoryEvent):
                    raise TypeError(  # noqa: TRY301 - a broken gate is a failure like any other
                        f"gate {gate.name!r} returned {type(result).__name__}, "
                        "expected a SensoryEvent or an OutcomeKind"
                    )
                event = result
            else:
                decided_by = "handler"
            if track and self._calendar is not None:
                self._facts.observe(event)  # a recovery forgets facts held back
                if stopped is OutcomeKind.SUPPRESSED and "window_id" in trace:
                    self._facts.hold(handler.id, event, str(trace["window_id"]), trace)
            if stopped is not None and stopped not in _SHADOW_KINDS:
                trace["decided_by"] = decided_by
                return _with_trace(
                    ReflexOutcome.for_event(
                        handler.id,
                        event,
                        kind=stopped,
                        severity=_nominal_severity(handler),
                        summary=f"{stopped.value} by {decided_by}: {event.target}",
                        diagnostic=decided_by,
                    ),
                    trace,
                )
            stage = "handler"
            outcome = await self._handle(handler, event)
        except Exception as exc:  # failure is data: an errored outcome (or a retry, below)
            if retry_unavailable and stage == "gate" and isinstance(exc, _UNAVAILABLE):
                # The gate's backend (the dedup bucket on NATS) is away, not the
                # event at fault: the caller retries it instead of recording it errored.
                raise _GateUnavailable(decided_by, exc) from exc
            trace["decided_by"] = decided_by if stage == "gate" else "handler"
            return _with_trace(self._errored(handler, event, stage, exc), trace)
        if outcome is None:
            return None
        trace["decided_by"] = decided_by
        if stopped is not None:
            # A shadow outcome: what the handler would have fired, marked as stopped.
            outcome = outcome.with_kind(stopped, diagnostic=decided_by)
        return _with_trace(outcome, trace)

    async def _handle(self, handler: ReflexHandler, event: SensoryEvent) -> ReflexOutcome | None:
        """``handler.handle(event)``, timed and type-checked."""
        started = time.perf_counter()
        try:
            outcome = await handler.handle(event)
        finally:
            self._metrics.handler_seconds.observe(time.perf_counter() - started, handler=handler.id)
        if outcome is not None and not isinstance(outcome, ReflexOutcome):
            raise TypeError(
                f"handle() returned {type(outcome).__name__}, expected ReflexOutcome or None"
            )
        return outcome

    def _errored(
        self, handler: ReflexHandler, event: SensoryEvent, stage: str, exc: Exception
    ) -> ReflexOutcome:
        self._metrics.errors.inc(handler=handler.id)
        error = f"{type(exc).__name__}: {exc}"
        log.warning("handler_failed", stage=stage, event_id=event.id, error=error[:_SUMMARY_LIMIT])
        summary = f"{handler.id} {stage} raised {error}"
        if len(summary) > _SUMMARY_LIMIT:
            summary = summary[: _SUMMARY_LIMIT - 1] + "…"
        return ReflexOutcome.for_event(
            handler.id,
            event,
            kind=OutcomeKind.ERRORED,
            severity=Severity.WARN,
            summary=summary,
            diagnostic=truncate_traceback(exc),
        )

    async def _ack(self, handler_id: str, msg: BusMessage) -> None:
        try:
            await msg.ack()
        except BusError as exc:
            self._metrics.ack_failures.inc(handler=handler_id)
            log.warning("ack_failed", error=str(exc))


#: Stop kinds whose handler still runs (shadow outcomes, contracts.reflex.Gate):
#: a suppressed event's would-be severity and summary are on record.
_SHADOW_KINDS = frozenset({OutcomeKind.SUPPRESSED})


def _with_trace(outcome: ReflexOutcome, trace: dict[str, Any]) -> ReflexOutcome:
    """``outcome`` carrying ``trace``; site and role from enrichment unless the handler set them."""
    site = outcome.site or trace.get("site")
    role = outcome.role or trace.get("role")
    return replace(outcome, trace=trace, site=site, role=role)


def _nominal_severity(handler: ReflexHandler) -> Severity:
    """The handler's declared ``severity`` if it has one (built-ins do), else ``info``."""
    value = getattr(handler, "severity", Severity.INFO)
    try:
        return Severity(value)
    except ValueError:
        return Severity.INFO


def _utc_now() -> datetime:
    return datetime.now(UTC)


_MATCHERS: dict[tuple[str, ...], Any] = {}


def _handler_matches(handler: ReflexHandler, subject: str) -> bool:
    """True when ``subject`` matches one of the handler's patterns (compiled once)."""
    regex = _MATCHERS.get(handler.patterns)
    if regex is None:
        regex = _MATCHERS[handler.patterns] = compile_patterns(handler.patterns)
    return regex.fullmatch(subject) is not None


async def _wait_cancelled(tasks: Sequence[asyncio.Task[None]]) -> None:
    """Stop ``tasks`` (cancelled, or about to end) within ``CANCEL_GRACE`` s.

    Bounded and cancelled again and again because a cancel can be lost
    (``asyncio.wait_for`` on Python 3.11 drops one that arrives as its awaitable
    completes; ``netcortex.aio``); the runner's loops also end on ``_stopping``,
    so such a task ends by itself soon after (``reflex_cancel_timeout`` if not).
    """
    await stop_tasks(
        tasks,
        timeout=CANCEL_GRACE,
        what="reflex tasks",
        logger=log,
        event="reflex_cancel_timeout",
    )


async def _close_quietly(sub: Subscription) -> None:
    try:
        await sub.close()
    except BusError as exc:
        log.warning("subscription_close_failed", error=str(exc))
