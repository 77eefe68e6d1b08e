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
written or a newer version replaces it). A save or publish that failed is tried
again too (1 s later, backing off up to 30 s; a newer saved version replaces an
unsaved one) and, until it got through, ``failing`` is True: ``association.fleet``
does not ack the outcomes of such a transition meanwhile (issue 10). The store
and the bus are ``contracts`` Protocols and the subject builder is passed in, so
this region stays blind to the concrete backends (``app.py`` wires them).
``netcortex_incidents_open`` is the number of open incidents.

May import: contracts, aio, config, metrics, logs.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

import structlog

from netcortex.aio import stop_task
from netcortex.association._facts import DEVICE
from netcortex.association.correlator import DOWN_HANDLERS, UP_HANDLERS, Correlator
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

__all__ = ["IncidentJournal", "IncidentWorker", "outcome_member"]

log = structlog.get_logger(__name__)

_STOP: Final = object()
#: at most one overflow warning per this many seconds (the counter has the total)
_OVERFLOW_LOG_INTERVAL: Final = 10.0
#: outcomes taken off the queue at once (their transitions saved once per incident)
_BATCH: Final = 256
#: Longest wait before a failed journal write is tried again (seconds).
_JOURNAL_BACKOFF_CAP: Final = 300.0
#: First and longest wait before a failed save or publish is tried again (seconds).
_RETRY_FIRST: Final = 1.0
_RETRY_CAP: Final = 30.0


def outcome_member(outcome: ReflexOutcome) -> str | None:
    """The member whose state ``outcome`` reports (as the correlator keys it: the
    device for device handlers, the target otherwise); ``None`` when it reports none."""
    kind = DOWN_HANDLERS.get(outcome.handler_id) or UP_HANDLERS.get(outcome.handler_id)
    if kind is None:
        return None
    if kind == DEVICE:
        return outcome.device or outcome.target.partition("|")[0]
    return outcome.target


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
        #: newest transition of incidents whose save failed, and transitions whose
        #: publish failed: tried again with back-off (``failing`` until they got through)
        self._unsaved: dict[str, IncidentTransition] = {}
        self._unpublished: dict[tuple[str, int], IncidentTransition] = {}
        self._retry_backoff = _RETRY_FIRST
        self._retry_at = 0.0
        #: incidents a replay rebuilt behind the store (resolved or newer there): never emitted
        self._stale: set[str] = set()
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

    async def start(
        self, *, correlator: Correlator | None = None, replay: Sequence[ReflexOutcome] = ()
    ) -> int:
        """Restore the store's open incidents into the correlator, replay ``replay``,
        then start the task.

        Idempotent while running; after ``stop`` it starts again (a new leadership
        term in ``association.fleet``), with ``correlator`` replacing the old one
        (whose state is stale by then). Returns how many open incidents were restored.

        Args:
            correlator: a fresh correlator to own from now on (``None``: keep it).
            replay: outcomes the store recorded recently, oldest first, correlated
                before any submitted one, each at its own ``recorded_at``; of the
                transitions they give, only those the store does not hold yet are
                emitted (see ``_catch_up``).

        Raises:
            StoreError: the open incidents could not be read.
        """
        if self._task is not None and not self._task.done():
            return 0
        if correlator is not None or self._task is not None:
            # a new term (association.fleet): its state starts empty
            self.correlator = correlator if correlator is not None else self.correlator
            self._task = None
            self._queue = asyncio.Queue(maxsize=self._queue.maxsize)
            self._journaled.clear()
            self._unjournaled.clear()
            self._unsaved.clear()
            self._unpublished.clear()
            self._stale.clear()
            self._retry_backoff, self._retry_at = _RETRY_FIRST, 0.0
            self._submitted = self._handled = 0
            self._last_now = None  # the replay runs on the outcomes' own times
        restored = list(await self._store.open_incidents())
        self.correlator.restore(restored)
        if restored:
            log.info("incidents_restored", open=len(restored))
        if replay:
            await self._catch_up(restored, replay)
        self._accepting = True
        self._task = asyncio.create_task(self._run(), name="association")
        return len(restored)

    async def _catch_up(
        self, restored: Sequence[Incident], outcomes: Sequence[ReflexOutcome]
    ) -> None:
        """Correlate what the store does not reflect yet, on top of ``restored``.

        The store is the snapshot: an outcome about a member of a restored (open)
        incident is skipped unless it is newer (``recorded_at``) than that incident's
        last update, and so is one already in a restored incident's evidence; the
        other outcomes (lone facts, flap counts) are correlated in full, oldest first,
        each at its own ``recorded_at``. Of the transitions this gives, only those of
        incidents the store does not hold at that version or newer (nor resolved) are
        emitted: what a previous correlator saved is neither repeated nor moved
        backwards, what it never got to save is. An incident the replay rebuilt
        although the store holds it resolved or newer is marked stale (never emitted;
        ``incident_replay_stale``). A failing lookup emits (saves are version-guarded,
        publishes deduplicated by message id)."""
        reflected: dict[str, datetime] = {}
        known: set[str] = set()
        restored_ids: set[str] = set()
        for incident in restored:
            if incident.state is not IncidentState.OPEN:
                continue
            restored_ids.add(incident.incident_id)
            known.update(incident.evidence)
            known.update(incident.inhibited)
            for member in incident.members:
                at = reflected.get(member)
                if at is None or incident.updated_at > at:
                    reflected[member] = incident.updated_at
        transitions: list[IncidentTransition] = []
        skipped = 0
        for outcome in outcomes:
            about = outcome_member(outcome)
            last = reflected.get(about) if about is not None else None
            if outcome.outcome_id in known or (last is not None and outcome.recorded_at <= last):
                skipped += 1  # the restored incident holds it already
                continue
            now = outcome.recorded_at
            if self._last_now is not None and now < self._last_now:
                now = self._last_now
            self._last_now = now
            try:
                transitions.extend(self.correlator.observe(outcome, now))
            except Exception:
                self._failures.inc(op="observe")
                log.error(
                    "incident_correlation_failed",
                    op="replay",
                    outcome_id=outcome.outcome_id,
                    exc_info=True,
                )
        stored: dict[str, Incident | None] = {}

        async def lookup(iid: str, transition: IncidentTransition | None) -> Incident | None:
            if iid not in stored:
                try:
                    async with asyncio.timeout(self._op_timeout):
                        stored[iid] = await self._store.get(iid)
                except Exception as exc:  # noqa: BLE001 - unknown: emit (idempotent sinks)
                    if transition is not None:
                        self._failed("save", transition, exc)
                    stored[iid] = None
            return stored[iid]

        kept: list[IncidentTransition] = []
        for transition in transitions:
            have = await lookup(transition.incident.incident_id, transition)
            if have is None or (
                have.state is not IncidentState.RESOLVED
                and have.version < transition.incident.version
            ):
                kept.append(transition)
        for incident in self.correlator.open_incidents():
            iid = incident.incident_id
            if iid in restored_ids:
                continue
            have = await lookup(iid, None)
            if have is not None and (
                have.state is IncidentState.RESOLVED or have.version >= incident.version
            ):
                self._stale.add(iid)
                log.warning(
                    "incident_replay_stale",
                    incident_id=iid,
                    version=incident.version,
                    stored_version=have.version,
                    stored_state=have.state.value,
                )
        await self._emit(kept)
        log.info(
            "incidents_caught_up",
            outcomes=len(outcomes),
            skipped=skipped,
            transitions=len(transitions),
            emitted=len(kept),
        )

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
            # bounded, cancelled again and again: a publish through NATS may drop a
            # cancel (nats-py's wait_for, see netcortex.aio)
            await stop_task(task, timeout=self._op_timeout, what="incident worker", logger=log)
        if self._unsaved or self._unpublished:
            # not acked by association.fleet: the next leader's replay redoes them
            log.warning(
                "incident_unsaved_at_stop",
                unsaved=len(self._unsaved),
                unpublished=len(self._unpublished),
            )

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

    async def settled(self) -> None:
        """Return once no save or publish waits to be tried again (or the task ended)."""
        async with self._progress:
            await self._progress.wait_for(lambda: not self.failing or not self.running)

    @property
    def failing(self) -> bool:
        """True while a transition's save or publish failed and was not yet redone."""
        return bool(self._unsaved or self._unpublished)

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
            if self.failing and not stop and time.monotonic() >= self._retry_at:
                await self._retry()
            self._handled = self._submitted if stop else self._handled + len(batch)
            async with self._progress:
                self._progress.notify_all()
            if stop:
                return

    async def _retry(self) -> None:
        """Save and publish again what failed; back off (1 s doubling up to 30 s) while
        it keeps failing."""
        unsaved, self._unsaved = self._unsaved, {}
        unpublished, self._unpublished = self._unpublished, {}
        for transition in unsaved.values():
            await self._save(transition)
        for transition in unpublished.values():
            await self._publish(transition)
        if self.failing:
            self._retry_backoff = min(self._retry_backoff * 2, _RETRY_CAP)
            self._retry_at = time.monotonic() + self._retry_backoff
        else:
            self._retry_backoff = _RETRY_FIRST
            log.info("incident_retry_succeeded", saved=len(unsaved), published=len(unpublished))

    async def _save(self, transition: IncidentTransition) -> None:
        iid = transition.incident.incident_id
        try:
            async with asyncio.timeout(self._op_timeout):
                await self._store.save(transition.incident)
        except Exception as exc:  # noqa: BLE001 - a failing store must not stop correlation
            self._failed("save", transition, exc)
            held = self._unsaved.get(iid)
            if held is None or held.incident.version < transition.incident.version:
                self._unsaved[iid] = transition  # tried again (the newest version)
            self._schedule_retry()
            return
        held = self._unsaved.get(iid)
        if held is not None and held.incident.version <= transition.incident.version:
            del self._unsaved[iid]  # a newer version saved replaces the unsaved one

    async def _publish(self, transition: IncidentTransition) -> None:
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
            self._unpublished[(incident.incident_id, incident.version)] = transition
            self._schedule_retry()

    def _schedule_retry(self) -> None:
        if self._retry_at <= time.monotonic():
            self._retry_at = time.monotonic() + self._retry_backoff

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
        if self._stale:
            transitions = [t for t in transitions if t.incident.incident_id not in self._stale]
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
            await self._save(transition)
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
            await self._publish(transition)

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
