"""Association: ``FleetCorrelator`` — one correlator for a whole fleet of workers (issue 10).

With several workers on NATS (``association.fleet``; ``auto`` = on for
``engine.role: worker`` on ``bus.backend: nats``) every worker handles a share
of the events, so a per-worker correlator would see only its share: the two
ends of a cut cable handled by two workers would never become one incident.
Instead exactly one worker correlates at a time:

* **Leader.** A lease (``association.lease.JetStreamLease``, key ``correlator``
  in the KV bucket ``association.lease_bucket``) decides which worker. Every
  worker contends every ``lease_ttl / 3`` seconds; the leader renews at that
  pace and, when it cannot renew before the lease's deadline, stops
  correlating *first* (``association_leader_lost``) — before anyone else may
  take over. A graceful stop releases the lease, so another worker takes over
  at its next attempt instead of after the expiry.
* **Input.** The leader consumes every outcome from the bus (``BusSink``
  publishes each one on ``reflex.>``, message id = outcome id) through the
  durable consumer ``association`` and feeds its ``IncidentWorker``; the other
  workers have no ``AssociationSink`` and do not correlate.
* **Ack after save.** A batch of messages (up to 256) is acked only once the
  worker has correlated it *and* saved and published the transitions it caused
  (``IncidentWorker.idle``, then ``IncidentWorker.settled``): while a save or
  publish fails the worker tries it again (backing off up to 30 s) and the
  batch stays unacked (``association_ack_held``) — no nak, which would use up
  ``bus.max_deliver`` during a long store outage. A leader that dies or steps
  down in between leaves the batch unacked: JetStream redelivers it to the
  next leader, whose replay rebuilds the transition (re-processing, never a
  lost one). A worker whose incident task is not running acks nothing: the
  leader steps down (``association_worker_stopped``).
* **Lease checks.** The consumer checks ``lease.held`` (its deadline not
  passed) before it submits a batch and before it acks one; without it the
  batch is handed back (nak). The campaign starts stepping down when less than
  ``margin / 2`` is left before the deadline, so that the drain finishes by
  the deadline. Clocks: the lease's expiry is wall-clock; the workers' clocks
  must agree to better than ``margin / 2`` (NTP), or a new leader may start
  before the old one stopped.
* **Taking over.** The new leader's correlator starts empty. It restores the
  open incidents from the incident store (as ``IncidentWorker.start`` always
  did) and then rebuilds what only lived in the old leader's memory — the
  members down but not (yet) in any incident, the flap counts — by replaying
  the outcomes the outcome store recorded within the longest association
  window (``horizon``), oldest first, each at its own ``recorded_at``
  (``IncidentWorker.start(replay=...)``). The store is the snapshot: an
  outcome about a member of a restored incident is replayed only when newer
  than that incident's last update (lone facts in full), and a transition the
  replay gives is emitted only when the store does not already hold that
  incident at that version or newer (or resolved): what the old leader saved
  is neither repeated nor moved backwards, what it never got to save is. The
  durable consumer is subscribed *before* the store is read, so nothing
  published meanwhile is missed.
* **Seen outcomes.** Outcomes replayed or already correlated are remembered by
  id (the newest ``SEEN_MAX``); a redelivered one is acked and skipped
  (``netcortex_association_duplicates_total``): a link-down redelivered after
  its link-up must not bring the link down again.
* **Late outcomes.** After a step-down the old leader's pull request may linger
  on the server for a few seconds, and what it was handed reaches the next
  leader only after ``bus.ack_wait``, behind newer outcomes. So an outcome
  older (``recorded_at``) than the last state change the leader holds for its
  member (the newest ``SEEN_MAX`` members) is acked and skipped
  (``netcortex_association_late_total``, ``association_outcome_late``): a
  link-down recorded before the link-up already correlated must not bring the
  link down again. (``recorded_at`` comes from the worker that handled the
  event: the same NTP assumption as above.)

Metrics: ``netcortex_association_leader`` (1 on the leader),
``netcortex_association_lease_changes_total{change}`` (``acquired``, ``lost``,
``released``), ``netcortex_association_lease_errors_total{op}``,
``netcortex_association_replayed_total``,
``netcortex_association_replay_truncated_total``,
``netcortex_association_duplicates_total``,
``netcortex_association_late_total``,
``netcortex_association_invalid_total``,
``netcortex_association_campaign_failures_total``. Logs:
``association_leader_acquired``, ``association_leader_lost``,
``association_lease_failed``, ``association_outcome_invalid``,
``association_outcome_late``, ``association_takeover_failed``,
``association_replay_truncated``, ``association_campaign_failed``,
``association_ack_held``, ``association_worker_stopped``,
``association_consumer_closed`` (the subscription ended under the consumer,
e.g. the bus closed: the leader steps down), ``association_consumer_failed``
(the consumer task ended with an exception: logged with it, the leader steps
down), ``association_ack_failed`` (an ack did not reach the server: the
message is redelivered later and skipped as seen).

May import: contracts, aio, config, errors, metrics, logs.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Final

import structlog

from netcortex.aio import stop_task
from netcortex.association.correlator import Correlator
from netcortex.association.engine import IncidentWorker, outcome_member
from netcortex.association.lease import JetStreamLease
from netcortex.config import AssociationConfig, Config
from netcortex.contracts.bus import BusMessage, EventBus, Subscription
from netcortex.contracts.codec import decode_outcome
from netcortex.contracts.memory import OutcomeCursor, OutcomeQuery, OutcomeStore, SemanticMemory
from netcortex.contracts.reflex import OutcomeKind, ReflexOutcome
from netcortex.errors import BusUnavailable, ConfigError, DecodeError, NetcortexError
from netcortex.metrics import Registry

__all__ = ["DURABLE", "SEEN_MAX", "FleetCorrelator", "fleet_enabled", "horizon"]

log = structlog.get_logger(__name__)

#: the durable consumer of ``reflex.>`` the leader reads (one per namespace)
DURABLE: Final = "association"
#: outcome ids remembered as correlated (a redelivery of one is skipped)
SEEN_MAX: Final = 200_000
#: most outcomes replayed from the store when taking over (the newest are kept)
REPLAY_MAX: Final = 100_000
#: outcomes taken off the bus at once (acked together once correlated and saved)
_BATCH: Final = 256
_PAGE: Final = 1000
#: how often a held batch re-checks the lease while its transitions are not saved
_HOLD_POLL: Final = 0.5


def fleet_enabled(config: Config) -> bool:
    """Whether this process takes part in fleet correlation (``association.fleet``).

    Raises:
        ConfigError: ``association.fleet: on`` without ``bus.backend: nats``.
    """
    section = config.association
    if not section.enabled or section.fleet == "off":
        return False
    if section.fleet == "on":
        if config.bus.backend != "nats":
            msg = "is 'on', but fleet correlation needs bus.backend: nats"
            raise ConfigError(
                f"1 configuration problem(s):\n  {config.source}: association.fleet: {msg}",
                [(config.source, "association.fleet", msg)],
            )
        return True
    return config.engine.role == "worker" and config.bus.backend == "nats"


def horizon(config: AssociationConfig) -> float:
    """Seconds of outcomes a new leader replays: the longest association window."""
    return max(
        config.cable_window,
        config.device_window,
        config.bgp_window,
        config.site_window,
        config.flap_window,
    )


class FleetCorrelator:
    """Runs ``worker`` only while this process holds the correlator lease.

    Args:
        worker: the incident worker (its store and bus are started by their owner);
            it gets a fresh ``Correlator`` at every take-over.
        lease: the correlator lease (started and closed here).
        bus: where outcomes arrive (``reflex.>``, durable ``DURABLE``).
        outcomes: the outcome store replayed at a take-over (started by its owner).
        config: the ``association`` section (windows, ``lease_ttl``).
        memory: the inventory the correlators ask (``None``: traces only).
        metrics: the engine's registry (a private one when ``None``).
        drain_timeout: longest a step-down waits for queued outcomes (seconds).
    """

    def __init__(
        self,
        worker: IncidentWorker,
        lease: JetStreamLease,
        bus: EventBus,
        outcomes: OutcomeStore,
        *,
        config: AssociationConfig,
        memory: SemanticMemory | None = None,
        metrics: Registry | None = None,
        drain_timeout: float = 5.0,
    ) -> None:
        self.worker = worker
        self.lease = lease
        self._bus = bus
        self._outcomes = outcomes
        self._config = config
        self._memory = memory
        self._drain_timeout = drain_timeout
        self._interval = lease.ttl / 3
        self._horizon = horizon(config)
        self._batch = min(_BATCH, config.queue_size)
        self._seen: OrderedDict[str, None] = OrderedDict()
        #: member → ``recorded_at`` of the newest state change correlated (late outcomes)
        self._changed: OrderedDict[str, datetime] = OrderedDict()
        self._sub: Subscription | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False  # the campaign ends at its next round (see stop)
        self._takeover: asyncio.Task[None] | None = None
        self._consumer: asyncio.Task[None] | None = None
        self._leading = False
        self._led = asyncio.Event()  # set while leading (tests, status)
        registry = metrics if metrics is not None else Registry()
        leader = registry.gauge(
            "netcortex_association_leader",
            "1 while this worker holds the correlator lease and correlates for the fleet.",
        )
        registry.add_collector(lambda: leader.set(1 if self._leading else 0))
        self._changes = registry.counter(
            "netcortex_association_lease_changes_total",
            "Correlator lease changes of this worker (acquired, lost, released).",
            ("change",),
        )
        self._lease_errors = registry.counter(
            "netcortex_association_lease_errors_total",
            "Correlator lease operations that failed (retried), by operation.",
            ("op",),
        )
        self._replayed = registry.counter(
            "netcortex_association_replayed_total",
            "Stored outcomes replayed into the correlator when taking over.",
        )
        self._truncated = registry.counter(
            "netcortex_association_replay_truncated_total",
            "Take-overs whose replay was cut at REPLAY_MAX outcomes (older ones not replayed).",
        )
        self._late = registry.counter(
            "netcortex_association_late_total",
            "Outcomes older than the last state change correlated for their member (skipped).",
        )
        self._campaign_failures = registry.counter(
            "netcortex_association_campaign_failures_total",
            "Unexpected errors in the lease campaign (logged; the worker stepped down).",
        )
        self._duplicates = registry.counter(
            "netcortex_association_duplicates_total",
            "Outcomes delivered again after they were correlated (acked, skipped).",
        )
        self._invalid = registry.counter(
            "netcortex_association_invalid_total",
            "Messages on reflex.> that are not outcomes (logged, acked, skipped).",
        )

    @property
    def leading(self) -> bool:
        """True while this process correlates for the fleet."""
        return self._leading

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Connect the lease and start contending (returns at once). Idempotent.

        Raises:
            BusUnavailable: the NATS server cannot be reached.
            StoreError: the lease bucket cannot be made.
        """
        if self._task is not None:
            return
        await self.lease.start()
        self._stopping = False
        self._task = asyncio.create_task(self._campaign(), name="association-lease")

    async def stop(self, timeout: float | None = None) -> None:
        """Stop contending; when leading, hand the unacked outcomes back, drain the
        worker (bounded) and release the lease so another worker takes over now.
        Idempotent.

        The campaign and a take-over wait on NATS requests (the lease, the bus),
        whose ``asyncio.wait_for`` (Python 3.11) can drop a cancel: they are
        cancelled again and again for at most ``drain_timeout`` each, and the
        campaign also ends at its next round; one still running then is logged
        (``task_stop_stuck``) and left behind."""
        self._stopping = True
        task, self._task = self._task, None
        if task is not None:
            await stop_task(
                task, timeout=self._drain_timeout, what="association lease campaign", logger=log
            )
        takeover, self._takeover = self._takeover, None
        if takeover is not None and not takeover.done():
            await stop_task(
                takeover, timeout=self._drain_timeout, what="association take-over", logger=log
            )
        # also after a take-over cut short by the cancel (its subscription is open)
        try:
            await self._step_down("stopped", timeout)
        except Exception:
            log.error("association_stop_failed", exc_info=True)
        finally:
            with contextlib.suppress(Exception):
                await self.lease.release()
            with contextlib.suppress(Exception):
                await self.lease.close()

    async def wait_leading(self) -> None:
        """Return once this process leads (tests)."""
        await self._led.wait()

    # ------------------------------------------------------------------ the lease

    async def _campaign(self) -> None:
        """Contend every ``ttl / 3`` while not leading; while leading, renew every
        ``ttl / 3`` (sooner after a failed renewal) and step down when no renewal got
        through by ``margin / 2`` before the lease's deadline (so the drain ends by
        then). An unexpected error in one round is logged and counted
        (``association_campaign_failed``); the worker steps down and goes on
        contending."""
        retry = False
        while not self._stopping:  # a cancel nats-py dropped ends it here (see stop)
            try:
                retry = await self._round(retry)
            except Exception:
                self._campaign_failures.inc()
                log.error("association_campaign_failed", exc_info=True)
                retry = False
                with contextlib.suppress(Exception):
                    await self._step_down("campaign failed", self._budget())
                    self.lease.forget()
                await asyncio.sleep(self._interval)

    async def _round(self, retry: bool) -> bool:
        """One round of ``_campaign``; returns whether to renew again soon."""
        if not self._leading:
            if await self._lease_op("acquire", self.lease.try_acquire):
                await self._lead()
                if self._leading:
                    return False
            await asyncio.sleep(self._interval)
            return False
        consumer = self._consumer
        if consumer is not None and consumer.done():
            error = None if consumer.cancelled() else consumer.exception()
            if error is not None:
                log.error("association_consumer_failed", exc_info=error)
            if self.lease.held:
                await self._step_down("consumer ended", self._budget())
                await self.lease.release()
            else:
                await self._step_down("lease expired", 0.0)
                self.lease.forget()
            return False
        left = self._left()
        if left <= 0:
            await self._step_down("lease expired", self._budget())
            self.lease.forget()
            return False
        await asyncio.sleep(min(self._interval / 4 if retry else self._interval, left))
        reason, retry = await self._renew_once()
        if reason is not None:
            # Another worker may lead soon (or already): stop at once; what is
            # queued is unacked and goes to it.
            await self._step_down(reason, self._budget())
            self.lease.forget()
        return retry

    def _left(self) -> float:
        """Seconds until this leader must start stepping down (``margin / 2`` before
        the lease's deadline, so a drain of at most ``margin / 2`` ends by it)."""
        return self.lease.deadline - self.lease.margin / 2 - time.monotonic()

    def _budget(self) -> float:
        """Seconds a step-down may drain: until the lease's deadline, at most
        ``drain_timeout``."""
        return max(min(self.lease.deadline - time.monotonic(), self._drain_timeout), 0.0)

    async def _renew_once(self) -> tuple[str | None, bool]:
        """Renew now: ``(why the lease is lost, or None; whether to retry soon)``."""
        left = self._left()
        if left <= 0:
            return "lease expired", False
        # bounded by the deadline: a renewal hanging on a dead server must not keep
        # this worker correlating past it
        renewed = await self._lease_op("renew", self.lease.renew, min(self._interval, left))
        if renewed is None and self._left() <= 0:
            return "lease expired", False
        if renewed is None:
            return None, True  # failed: try again soon, while the deadline allows
        return (None if renewed else "lease taken over"), False

    async def _lead(self) -> None:
        """Just acquired: take over, renewing the lease meanwhile (a replay may take
        longer than the lease); on failure step down (and release, so another worker
        tries)."""
        work = asyncio.create_task(self._take_over(), name="association-takeover")
        self._takeover = work  # stop ends it too if this is cancelled meanwhile
        reason: str | None = None
        try:
            while reason is None:
                left = max(self._left(), 0.0)
                done, _ = await asyncio.wait({work}, timeout=min(self._interval, left))
                if done:
                    break
                reason, _ = await self._renew_once()
        finally:
            if not work.done():
                await stop_task(
                    work, timeout=self._drain_timeout, what="association take-over", logger=log
                )
        if self._takeover is work:
            self._takeover = None
        error = None if work.cancelled() or not work.done() else work.exception()
        if reason is None and error is None:
            return
        log.error(
            "association_takeover_failed",
            reason=reason,
            error=None if error is None else f"{type(error).__name__}: {error}",
        )
        await self._step_down("takeover failed", self._budget())
        if reason is None:
            await self.lease.release()
        else:
            self.lease.forget()

    async def _lease_op(
        self, op: str, call: Callable[[], Awaitable[bool]], timeout: float | None = None
    ) -> bool | None:
        """One lease call, bounded by ``timeout`` (default ``ttl / 3``); ``None``
        (logged, counted) on error."""
        try:
            async with asyncio.timeout(self._interval if timeout is None else timeout):
                result = await call()
        except (NetcortexError, TimeoutError) as exc:
            self._lease_errors.inc(op=op)
            log.warning("association_lease_failed", op=op, error=f"{type(exc).__name__}: {exc}")
            return None
        return result

    async def _take_over(self) -> None:
        """Became leader: subscribe, rebuild the correlator (store + replay), consume."""
        started = time.monotonic()
        self._sub = await self._bus.subscribe("reflex.>", durable=DURABLE)
        replay = await self._recent_outcomes()
        self._seen.clear()
        self._changed.clear()
        for outcome in replay:
            self._remember(outcome.outcome_id)
            self._changed_at(outcome)
        correlator = Correlator(self._memory, self._config)
        restored = await self.worker.start(correlator=correlator, replay=replay)
        self._replayed.inc(len(replay))
        self._leading = True
        self._led.set()
        self._changes.inc(change="acquired")
        self._consumer = asyncio.create_task(self._consume(self._sub), name="association-bus")
        log.info(
            "association_leader_acquired",
            holder=self.lease.holder,
            restored=restored,
            replayed=len(replay),
            took_s=round(time.monotonic() - started, 3),
        )

    async def _step_down(self, reason: str, timeout: float | None = None) -> None:
        """Stop correlating: stop consuming (unacked outcomes go back to the bus for the
        next leader), let the worker finish what it holds (bounded), forget the state."""
        was_leading, self._leading = self._leading, False
        self._led.clear()
        if was_leading:
            graceful = reason == "stopped"
            self._changes.inc(change="released" if graceful else "lost")
            (log.info if graceful else log.warning)(
                "association_leader_lost", holder=self.lease.holder, reason=reason
            )
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            consumer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await consumer
        sub, self._sub = self._sub, None
        if sub is not None:
            with contextlib.suppress(Exception):
                await sub.close()
        await self.worker.stop(self._drain_timeout if timeout is None else timeout)
        # A follower holds no correlation state (netcortex_incidents_open is 0 on it);
        # the next term starts from the store again.
        self.worker.correlator = Correlator(self._memory, self._config)
        self._seen.clear()
        self._changed.clear()

    # ------------------------------------------------------------------ the work

    async def _recent_outcomes(self) -> list[ReflexOutcome]:
        """The stored outcomes of the last ``horizon`` seconds that can be facts, oldest
        first (at most ``REPLAY_MAX``, the newest)."""
        since = datetime.now(UTC) - timedelta(seconds=self._horizon)
        found: list[ReflexOutcome] = []
        cursor: OutcomeCursor | None = None
        while True:
            limit = min(_PAGE, REPLAY_MAX - len(found))
            if limit <= 0:
                self._truncated.inc()
                log.warning(
                    "association_replay_truncated", kept=len(found), horizon_s=self._horizon
                )
                break
            page = await self._outcomes.query(
                OutcomeQuery(
                    since=since,
                    kind=(OutcomeKind.LOGGED, OutcomeKind.SKIPPED),
                    before=cursor,
                    limit=limit,
                )
            )
            found.extend(page)
            if len(page) < limit:
                break
            cursor = OutcomeCursor.after(page[-1])
        found.reverse()
        return found

    def _remember(self, outcome_id: str) -> None:
        seen = self._seen
        seen[outcome_id] = None
        if len(seen) > SEEN_MAX:
            seen.popitem(last=False)

    async def _consume(self, sub: Subscription) -> None:
        """Take batches off the durable consumer; ack each once correlated and its
        transitions saved and published, and only while the lease is held. Returns
        (the campaign then steps down) when the subscription closes, the lease's
        deadline passed, or the worker's task is not running."""
        while True:
            try:
                batch: list[BusMessage] = [await sub.next()]
                while len(batch) < self._batch:
                    try:
                        batch.append(await sub.next(timeout=0))
                    except TimeoutError:
                        break
            except BusUnavailable:
                log.warning("association_consumer_closed")
                return
            if not self.lease.held:
                await self._hand_back(batch)
                return
            if not self.worker.running:
                # never ack what was not correlated: let the next leader have it
                log.error("association_worker_stopped")
                await self._hand_back(batch)
                return
            for message in batch:
                self._take(message)
            await self.worker.idle()
            if not await self._settled():
                return  # unacked: redelivered to the next leader, whose replay redoes it
            for message in batch:
                try:
                    await message.ack()
                except NetcortexError as exc:  # redelivered later: skipped as seen
                    log.warning("association_ack_failed", error=str(exc))

    async def _settled(self) -> bool:
        """Wait until the worker has saved and published everything (it retries with
        back-off); ``False`` when the lease or the worker's task is lost meanwhile."""
        held = False
        while self.worker.failing:
            if not held:
                held = True
                log.warning("association_ack_held", reason="incident save or publish failing")
            if not self.lease.held or not self.worker.running:
                return False
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(_HOLD_POLL):
                    await self.worker.settled()
        if not self.worker.running:
            log.error("association_worker_stopped")
            return False
        return self.lease.held

    async def _hand_back(self, batch: list[BusMessage]) -> None:
        """Give ``batch`` back uncorrelated (nak, for the next leader); best effort."""
        for message in batch:
            with contextlib.suppress(NetcortexError):
                await message.nak()

    def _changed_at(self, outcome: ReflexOutcome) -> bool:
        """Record ``outcome`` as its member's newest state change; ``False`` (nothing
        recorded) when a newer one was correlated already (a late outcome)."""
        member = outcome_member(outcome)
        if member is None or outcome.kind not in (OutcomeKind.LOGGED, OutcomeKind.SKIPPED):
            return True  # says nothing the correlator acts on
        last = self._changed.get(member)
        if last is not None and outcome.recorded_at < last:
            return False
        self._changed[member] = outcome.recorded_at
        self._changed.move_to_end(member)
        if len(self._changed) > SEEN_MAX:
            self._changed.popitem(last=False)
        return True

    def _take(self, message: BusMessage) -> None:
        try:
            outcome = decode_outcome(message.data)
        except DecodeError as exc:
            self._invalid.inc()
            log.error(
                "association_outcome_invalid",
                subject=message.subject,
                msg_id=message.msg_id,
                error=str(exc),
            )
            return
        if outcome.outcome_id in self._seen:
            self._duplicates.inc()
            return
        self._remember(outcome.outcome_id)
        if not self._changed_at(outcome):
            self._late.inc()
            log.warning(
                "association_outcome_late",
                outcome_id=outcome.outcome_id,
                handler=outcome.handler_id,
                target=outcome.target,
                recorded_at=outcome.recorded_at.isoformat(),
            )
            return
        self.worker.submit(outcome)
