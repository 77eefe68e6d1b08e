"""Association: ``IncidentWorker`` — the correlator running inside the engine (issue 8, item 3).

The reflex runner hands every outcome to ``submit`` (through a sink that only
knows that callable); ``submit`` puts it on a bounded queue and returns at
once: it never awaits, never raises, never blocks the runner. A full queue
drops the outcome, counts it (``netcortex_incidents_dropped_total``) and says
so in a rate-limited ``incident_queue_overflow`` warning.

One task owns the correlator (it is not safe for concurrent use): it observes
the queued outcomes in order, calls ``tick`` about every ``tick_interval``
seconds, and for each transition

* logs ``incident_<kind>`` (``incident_opened``, ``incident_updated``,
  ``incident_resolved``, ``incident_flapping``, ``incident_stabilised``) with the
  rule, root, member count and severity;
* counts ``netcortex_incidents_transitions_total{rule,kind}``;
* saves the incident (``IncidentStore.save``, version-guarded; of the
  outcomes that queued up behind a slow save, up to 256 are taken at once and
  only the newest version of each incident is saved);
* publishes it as JSON on ``incident.<kind>.<incident_id>`` (message id
  ``<incident_id>:<version>``, so a re-publish is deduplicated by JetStream).

With a ``journal`` (``IncidentJournal``; ``journal.enabled``), after the save an
incident the journal policy wants (or one already journaled by this worker)
gets its journal job written or updated (``Outbox.upsert_incident``: one NetBox
entry per incident, updated on every change and on resolve), and the pending
jobs of its evidence, its inhibited outcomes and the transitions' outcomes are
superseded (``Outbox.supersede``; the store is flushed first, so a job written
with the outcome that just opened the incident is there to supersede). The
delivery worker is then woken. Outcome jobs are written
``journal.incident_hold_seconds`` late, so this happens before they are due.

A failing (or hanging, bounded by ``op_timeout``) store or bus is logged
(``incident_save_failed`` / ``incident_publish_failed`` /
``incident_journal_failed``) and counted
(``netcortex_incidents_failures_total{op}``, ``op`` = ``save``, ``publish``,
``journal``); the worker keeps going (a journal write that failed is tried
again ``journal_retry`` seconds later, backing off up to 5 minutes, until it is
written or a newer version replaces it). The store and the bus are ``contracts``
Protocols and the subject builder is passed in, so this region stays blind to
the concrete backends (``app.py`` wires them).
``netcortex_incidents_open`` is the number of open incidents.

May import: contracts, config, metrics, logs.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

import structlog

from netcortex.association.correlator import Correlator
from netcortex.contracts.bus import EventBus
from netcortex.contracts.codec import encode_incident
from netcortex.contracts.incidents import (
    Incident,
    IncidentState,
    IncidentStore,
    IncidentTransition,
)
from netcortex.contracts.outbox import Outbox
from netcortex.contracts.reflex import ReflexOutcome
from netcortex.metrics import Registry

__all__ = ["IncidentJournal", "IncidentWorker"]

log = structlog.get_logger(__name__)

_STOP: Final = object()
#: at most one overflow warning per this many seconds (the counter has the total)
_OVERFLOW_LOG_INTERVAL: Final = 10.0
#: outcomes taken off the queue at once (their transitions saved once per incident)
_BATCH: Final = 256
#: Longest wait before a failed journal write is tried again (seconds).
_JOURNAL_BACKOFF_CAP: Final = 300.0


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class IncidentJournal:
    """What the worker needs to keep one NetBox journal entry per incident
    (``app.py`` builds it from the journal policy, the outbox and the delivery worker).

    Attributes:
        wants: whether an incident gets an entry (``JournalPolicy.wants_incident``).
        outbox: the journal outbox (``upsert_incident``, ``supersede``).
        notify: wakes the delivery worker after jobs changed (``JournalDelivery.notify``).
        flush: makes every outcome recorded so far committed, with its job
            (``OutcomeStore.flush``), before its job is superseded.
    """

    wants: Callable[[Incident], bool]
    outbox: Outbox
    notify: Callable[[], None] | None = None
    flush: Callable[[], Awaitable[None]] | None = None


class IncidentWorker:
    """Feeds outcomes to a ``Correlator`` on one task; stores and publishes the transitions.

    Args:
        correlator: the correlator this worker owns from ``start`` on.
        store: where incidents are saved (started and closed by its owner).
        bus: where transitions are published (started and closed by its owner).
        subject: ``(kind, incident_id) -> subject`` (``thalamus.subjects.incident_subject``).
        metrics: the engine's registry (a private one when ``None``).
        queue_size: outcomes that may wait; beyond that they are dropped and counted.
        tick_interval: seconds between ``Correlator.tick`` calls.
        op_timeout: longest one save or one publish may take (seconds).
        clock: the correlator's clock (timezone-aware UTC; never goes back here).
        journal: keep one NetBox journal entry per incident (``None``: no journal).
        journal_retry: seconds before a journal write that failed is tried again
            (a resolve must still reach its entry; a failing outbox must not slow
            correlation down); doubled while writes keep failing, up to 5 minutes.
    """

    def __init__(
        self,
        correlator: Correlator,
        store: IncidentStore,
        bus: EventBus,
        *,
        subject: Callable[[str, str], str],
        metrics: Registry | None = None,
        queue_size: int = 10_000,
        tick_interval: float = 1.0,
        op_timeout: float = 5.0,
        clock: Callable[[], datetime] = _utc_now,
        journal: IncidentJournal | None = None,
        journal_retry: float = 5.0,
    ) -> None:
        if queue_size < 1:
            raise ValueError("queue_size must be at least 1")
        self.correlator = correlator
        self._store = store
        self._bus = bus
        self._subject = subject
        self._tick_interval = tick_interval
        self._op_timeout = op_timeout
        self._clock = clock
        self._journal = journal
        #: open incidents this worker journaled: every later version updates the entry
        self._journaled: set[str] = set()
        #: newest transition of incidents whose journal write failed: tried again
        #: (at most every _JOURNAL_RETRY_INTERVAL) until written or superseded
        self._unjournaled: dict[str, IncidentTransition] = {}
        self._journal_retry = journal_retry
        self._journal_backoff = journal_retry  # doubles while writes keep failing
        self._journal_retry_at = 0.0
        self._last_now: datetime | None = None
        self._queue: asyncio.Queue[object] = asyncio.Queue(maxsize=queue_size)
        self._task: asyncio.Task[None] | None = None
        self._accepting = False
        self._last_overflow_log = 0.0
        self._dropped_since_log = 0
        self._submitted = 0
        self._handled = 0
        self._progress = asyncio.Condition()
        registry = metrics if metrics is not None else Registry()
        self._transitions = registry.counter(
            "netcortex_incidents_transitions_total",
            "Incident transitions (opened, updated, resolved, flapping, stabilised), by rule.",
            ("rule", "kind"),
        )
        self._failures = registry.counter(
            "netcortex_incidents_failures_total",
            "Incident work that failed (logged; the worker went on), by operation.",
            ("op",),
        )
        self._dropped = registry.counter(
            "netcortex_incidents_dropped_total",
            "Outcomes not correlated because the association queue was full.",
        )
        open_gauge = registry.gauge("netcortex_incidents_open", "Incidents open now.")
        registry.add_collector(lambda: open_gauge.set(len(self.correlator.open_incidents())))
        registry.queue_depth("association", self._queue.qsize)

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> int:
        """Restore the store's open incidents into the correlator, then start the task.

        Idempotent. Returns how many open incidents were restored.

        Raises:
            StoreError: the open incidents could not be read.
        """
        if self._task is not None:
            return 0
        restored = list(await self._store.open_incidents())
        self.correlator.restore(restored)
        self._accepting = True
        self._task = asyncio.create_task(self._run(), name="association")
        if restored:
            log.info("incidents_restored", open=len(restored))
        return len(restored)

    async def stop(self, timeout: float = 5.0) -> None:
        """Stop taking outcomes, process those queued (within ``timeout``), then end.

        What is still queued after ``timeout`` is dropped and logged
        (``association_drain_timeout``). Idempotent.
        """
        self._accepting = False
        task = self._task
        if task is None or task.done():
            return
        try:
            async with asyncio.timeout(timeout):
                await self._queue.put(_STOP)
                await asyncio.shield(task)
        except TimeoutError:
            log.warning("association_drain_timeout", timeout_s=timeout, left=self._queue.qsize())
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # ------------------------------------------------------------------- hot path

    def submit(self, outcome: ReflexOutcome) -> None:
        """Queue ``outcome`` for the correlator; no I/O, never waits, never raises."""
        if not self._accepting:
            return
        try:
            self._queue.put_nowait(outcome)
            self._submitted += 1
        except asyncio.QueueFull:
            self._dropped.inc()
            self._dropped_since_log += 1
            now = time.monotonic()
            if now - self._last_overflow_log >= _OVERFLOW_LOG_INTERVAL:
                log.warning(
                    "incident_queue_overflow",
                    dropped=self._dropped_since_log,
                    queue_size=self._queue.maxsize,
                    outcome_id=outcome.outcome_id,
                )
                self._last_overflow_log = now
                self._dropped_since_log = 0

    @property
    def pending(self) -> int:
        """Outcomes queued and not yet correlated."""
        return self._queue.qsize()

    async def idle(self) -> None:
        """Return once every outcome queued before the call has been handled (tests)."""
        target = self._submitted
        async with self._progress:
            await self._progress.wait_for(lambda: self._handled >= target or not self.running)

    @property
    def running(self) -> bool:
        """True between ``start`` and the end of the task."""
        return self._task is not None and not self._task.done()

    # ------------------------------------------------------------------- the task

    def _now(self) -> datetime:
        now = self._clock()
        if self._last_now is not None and now < self._last_now:
            now = self._last_now  # the correlator's windows need a clock that never goes back
        self._last_now = now
        return now

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        next_tick = loop.time() + self._tick_interval
        while True:
            batch: list[object] = []
            wait = next_tick - loop.time()
            if wait > 0:
                # asyncio.timeout, not wait_for: a cancelled Queue.get leaves its item queued
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait):
                        batch.append(await self._queue.get())
            # What queued up behind a slow save is taken at once: one save per incident.
            while batch and len(batch) < _BATCH and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            stop = _STOP in batch
            transitions: list[IncidentTransition] = []
            for item in batch:
                if isinstance(item, ReflexOutcome):
                    transitions.extend(self._correlate("observe", item))
            if not stop and loop.time() >= next_tick:
                transitions.extend(self._correlate("tick", None))
                next_tick = loop.time() + self._tick_interval
            await self._emit(transitions)
            self._handled = self._submitted if stop else self._handled + len(batch)
            async with self._progress:
                self._progress.notify_all()
            if stop:
                return

    def _correlate(self, op: str, outcome: ReflexOutcome | None) -> list[IncidentTransition]:
        try:
            now = self._now()
            if outcome is None:
                return self.correlator.tick(now)
            return self.correlator.observe(outcome, now)
        except Exception:
            self._failures.inc(op=op)
            log.error(
                "incident_correlation_failed",
                op=op,
                outcome_id=None if outcome is None else outcome.outcome_id,
                exc_info=True,
            )
            return []

    async def _emit(self, transitions: list[IncidentTransition]) -> None:
        """Log and count each transition, save the newest version of each incident,
        then publish each transition (a subscriber reading the store finds it)."""
        newest: dict[str, IncidentTransition] = {}
        for transition in transitions:
            incident = transition.incident
            self._transitions.inc(rule=incident.rule, kind=transition.kind)
            log.info(
                f"incident_{transition.kind}",
                incident_id=incident.incident_id,
                rule=incident.rule,
                root=incident.root,
                members=len(incident.members),
                severity=incident.severity.value,
                version=incident.version,
                summary=incident.summary,
                outcome_id=transition.outcome_id,
            )
            newest[incident.incident_id] = transition
        for transition in newest.values():
            try:
                async with asyncio.timeout(self._op_timeout):
                    await self._store.save(transition.incident)
            except Exception as exc:  # noqa: BLE001 - a failing store must not stop correlation
                self._failed("save", transition, exc)
        if self._journal is not None:
            for iid in newest:  # a newer version replaces one whose write failed
                self._unjournaled.pop(iid, None)
            retried: list[IncidentTransition] = []
            if self._unjournaled and time.monotonic() >= self._journal_retry_at:
                retried, self._unjournaled = list(self._unjournaled.values()), {}
            if newest or retried:
                await self._to_journal(
                    self._journal,
                    [*retried, *transitions],
                    {**{t.incident.incident_id: t for t in retried}, **newest},
                )
        for transition in transitions:
            incident = transition.incident
            try:
                subject = self._subject(transition.kind, incident.incident_id)
                data = encode_incident(incident)
                async with asyncio.timeout(self._op_timeout):
                    await self._bus.publish(
                        subject, data, msg_id=f"{incident.incident_id}:{incident.version}"
                    )
            except Exception as exc:  # noqa: BLE001 - a failing bus must not stop correlation
                self._failed("publish", transition, exc)

    async def _to_journal(
        self,
        journal: IncidentJournal,
        transitions: list[IncidentTransition],
        newest: dict[str, IncidentTransition],
    ) -> None:
        """Write or update the journal job of each wanted incident and supersede the
        jobs of its outcomes; wake the delivery worker when anything was written."""
        causes: dict[str, list[str]] = {}
        for transition in transitions:
            if transition.outcome_id is not None:
                causes.setdefault(transition.incident.incident_id, []).append(transition.outcome_id)
        wanted: list[IncidentTransition] = []
        for iid, transition in newest.items():
            try:
                if iid in self._journaled or journal.wants(transition.incident):
                    wanted.append(transition)
            except Exception as exc:  # noqa: BLE001 - a policy bug costs the entry, not the worker
                self._failed("journal", transition, exc)
        if not wanted:
            return
        if journal.flush is not None:
            try:
                async with asyncio.timeout(self._op_timeout):
                    await journal.flush()
            except Exception as exc:  # noqa: BLE001 - supersede what is committed; the rest is held
                self._failed("journal", wanted[0], exc)
        written = failed = False
        for transition in wanted:
            incident = transition.incident
            iid = incident.incident_id
            try:
                now = _utc_now()  # outbox times are wall-clock (the delivery worker's)
                async with asyncio.timeout(self._op_timeout):
                    await journal.outbox.upsert_incident(incident, now)
                    written = True
                    ids = [*incident.evidence, *incident.inhibited, *causes.get(iid, ())]
                    superseded = await journal.outbox.supersede(ids, f"part of incident {iid}", now)
            except Exception as exc:  # noqa: BLE001 - a failing outbox must not stop correlation
                self._failed("journal", transition, exc)
                self._unjournaled[iid] = transition  # tried again later (a resolve too)
                failed = True
                continue
            if incident.state is IncidentState.RESOLVED:
                self._journaled.discard(iid)
            else:
                self._journaled.add(iid)
            log.debug(
                "incident_journaled",
                incident_id=iid,
                version=incident.version,
                superseded=superseded,
            )
        if failed:  # back off before trying again
            self._journal_retry_at = time.monotonic() + self._journal_backoff
            self._journal_backoff = min(self._journal_backoff * 2, _JOURNAL_BACKOFF_CAP)
        else:
            self._journal_backoff = self._journal_retry
        if written and journal.notify is not None:
            journal.notify()

    def _failed(self, op: str, transition: IncidentTransition, exc: BaseException) -> None:
        self._failures.inc(op=op)
        log.error(
            f"incident_{op}_failed",
            incident_id=transition.incident.incident_id,
            kind=transition.kind,
            version=transition.incident.version,
            error=f"{type(exc).__name__}: {exc}",
        )
