"""Reflex: ``AckSettler`` — a delivered message is acked only once its outcome is durable.

The runner's handler tasks hand every processed message (and the outcome it
produced, if any) to one settler instead of acking it. The settler, on its own
task, takes what is held in batches (``batch`` messages, or ``linger`` seconds
after the first one waits), flushes the sinks (the outcome store commits the
rows, and the journal jobs in the same transaction; the bus sink's publishes
finish) and only then acks the batch. So a process killed at any moment leaves
unacked exactly the messages whose outcomes may not be stored, and JetStream
redelivers them (to another worker after ``bus.ack_wait``); the re-run gives the
same outcome ids, which the store ignores when it has them already. Batching
keeps the cost of the flush per message small; one settler for every handler
keeps the flush single-flight (a store may report a failed batch to one flush
only — the PostgreSQL store keeps an outage's rows and fails every flush until
they are written, but a batch refused for its data fails one — so concurrent
flushes could not tell whose rows were lost).

Store failure (PostgreSQL restarting, a full disk): the flush fails, the batch
stays unacked and the settler

* clears ``healthy`` — handler tasks wait on it before taking their next
  message, so the workers pause instead of churning through the backlog (a
  task already waiting for a message when the flush failed handles that one,
  held with the rest, then pauses);
* takes along everything handed over meanwhile (it may have been in the
  failed write too), re-records the held outcomes in the durable sinks and
  flushes again, with a back-off from ``retry_delay`` doubling to ``retry_max``
  seconds, until a flush succeeds; then acks, sets ``healthy`` and the handlers
  go on. ``reflex_settle_failed`` is logged once per outage (then every
  ``retry_max`` attempts as ``reflex_settle_retry``), ``reflex_settle_recovered``
  at the end, and ``netcortex_reflex_settle_failures_total`` counts each failed
  flush.

Held messages keep their lease: a message held longer than a third of
``bus.ack_wait`` (a failed or slow flush, the retry back-off) gets
``in_progress()`` — JetStream's ``+WPI``, which restarts its ack timer without
using a delivery attempt — and again every third of ``ack_wait`` (checked every
sixth) until it is acked; at the first failed flush of an outage every held
message gets it at once (it may have waited in the client's buffer before it was
handled, its ack timer running). One round sends ``PROGRESS_CONCURRENCY`` at a time
within one deadline (a sixth of ``ack_wait``), so a thousand held messages still
get theirs in time. So, while the settler runs, a store outage of any length
neither has JetStream redeliver the held messages to other workers nor drop them
after ``bus.max_deliver`` deliveries. A signal that fails (NATS itself away) or
is not sent by the round's deadline is counted in
``netcortex_reflex_in_progress_failed_total``, logged
(``reflex_in_progress_failed``, at the first failed round, then at most every
``PROGRESS_LOG_INTERVAL`` s with ``suppressed``) and tried again next round; the
message may then be redelivered after ``ack_wait`` (same outcome id, harmless).
Messages a worker fetched but has not handed to a handler yet (the bus client's
buffer while the handlers pause) are not the settler's and are not kept. When the
settling task dies (a bug: ``reflex_settle_crashed``) nothing is signalled any
more and the bus redelivers what it held.

Outcomes without a message — the runner's re-evaluations of facts a maintenance
window held back — are held too (``hold(handler_id, None, outcome)``): flushed
with the next batch and re-recorded after a failed flush like the others, so a
failed write does not lose them; there is nothing to ack or keep in progress.

Back-pressure: at most ``max_held`` messages are held; beyond that the handler
tasks wait (``has_room``) — a slow flush that has not failed yet must not let a
worker take the whole backlog. A flush that has not answered within
``flush_timeout`` (20 s) counts as failed (``reflex_flush_timeout``) and the
pause and retries above follow.

``netcortex_reflex_unacked`` counts every processed message not yet acked:
those waiting for a batch and the batch being flushed (or retried).

``close`` settles what is held (bounded by a deadline); what cannot be settled by
then stays unacked for the bus to redeliver, logged as ``reflex_unacked_at_stop``,
and the outcomes whose flush did not succeed are handed back to the caller to
record again (a re-evaluation has no message the bus would redeliver).

Every loop here also ends on the settler's stopped flag, and every wait for a
cancelled task is bounded: on Python 3.11 ``asyncio.wait_for`` (used inside bus
and store clients) can drop a cancel that arrives as its awaitable completes.

May import: ``aio``, ``contracts``, ``errors``, ``metrics``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass

import structlog

from netcortex.aio import stop_task
from netcortex.contracts.bus import BusMessage
from netcortex.errors import BusError
from netcortex.metrics import Registry
from netcortex.reflex.protocol import ReflexOutcome

__all__ = ["AckSettler"]

log = structlog.get_logger(__name__)

#: Messages settled with one flush, at most.
ACK_BATCH = 256
#: How long the first held message waits for others before its batch is settled.
ACK_LINGER = 0.02
#: Messages held (processed, not yet acked) before the handlers wait for room.
MAX_HELD = 4 * ACK_BATCH
#: A flush that has not answered within this long counts as failed: the handlers
#: pause and it is retried (the held messages are kept in progress meanwhile).
FLUSH_TIMEOUT = 20.0
#: Back-off after a failed flush: first delay and ceiling (seconds).
RETRY_DELAY = 0.1
RETRY_MAX = 5.0
#: JetStream's default ack_wait (``bus.ack_wait``): held messages are kept in
#: progress every third of it when the runner is not told otherwise.
ACK_WAIT = 30.0
#: ``in_progress`` calls of one round in flight at once (the round has one deadline,
#: a sixth of ``ack_wait``: a thousand held messages must not take longer than that).
PROGRESS_CONCURRENCY = 32
#: ``reflex_in_progress_failed`` at most this often while the signals keep failing.
PROGRESS_LOG_INTERVAL = 10.0
#: How long ``close`` waits for a task it cancelled (a cancel swallowed by a library
#: must not hang the stop; the task also ends on the closed flag).
CANCEL_GRACE = 1.0


@dataclass(slots=True)
class _Held:
    handler_id: str
    msg: BusMessage | None  # None: an outcome without a message (a re-evaluation)
    outcome: ReflexOutcome | None
    touched: float  # monotonic time of the hold or of the last in_progress


class AckSettler:
    """Acks processed messages in batches once ``flush`` says their outcomes are durable.

    Args:
        flush: flushes every sink; ``True`` when the durable ones (the store)
            succeeded. Must not raise for a sink failure (return ``False``).
        rerecord: hands outcomes again to the durable sinks after a failed flush.
        metrics: where to count.
        batch, linger: the batching bounds (see ``ACK_BATCH``, ``ACK_LINGER``).
        retry_delay, retry_max: the back-off after a failed flush.
        max_held: messages waiting for a batch before ``has_room`` turns false.
        flush_timeout: a flush slower than this counts as failed.
        ack_wait: the bus's ``ack_wait`` (seconds); a message held longer than a
            third of it is kept in progress (``BusMessage.in_progress``).
    """

    def __init__(
        self,
        flush: Callable[[], Awaitable[bool]],
        rerecord: Callable[[Sequence[ReflexOutcome]], Awaitable[None]],
        metrics: Registry,
        *,
        batch: int = ACK_BATCH,
        linger: float = ACK_LINGER,
        retry_delay: float = RETRY_DELAY,
        retry_max: float = RETRY_MAX,
        max_held: int = MAX_HELD,
        flush_timeout: float = FLUSH_TIMEOUT,
        ack_wait: float = ACK_WAIT,
    ) -> None:
        if ack_wait <= 0:
            raise ValueError(f"ack_wait must be positive, not {ack_wait!r}")
        self._flush = flush
        self._rerecord = rerecord
        self._batch = batch
        self._linger = linger
        self._retry_delay = retry_delay
        self._retry_max = retry_max
        self._max_held = max_held
        self._flush_timeout = flush_timeout
        self._progress_after = ack_wait / 3
        self._progress_every = ack_wait / 6
        self._room = asyncio.Event()
        self._room.set()
        self._held: list[_Held] = []
        # The batch being settled, emptied from the front as it is acked (close()
        # counts what is left); ``_committed`` once its flush succeeded.
        self._settling: deque[_Held] = deque()
        self._committed = False
        self._unacked = 0  # messages in _held and _settling (not the message-less outcomes)
        self._wake = asyncio.Event()
        self._full = asyncio.Event()
        self._healthy = asyncio.Event()
        self._healthy.set()
        self._closing = False
        # Set by close() (and when the settling task dies): every loop here ends on
        # it, even if a cancel was lost (asyncio.wait_for on 3.11 can drop one).
        self._stopped = False
        self._task: asyncio.Task[None] | None = None
        self._progress_task: asyncio.Task[None] | None = None
        self._progress_now = asyncio.Event()  # signal every held message at once
        # in_progress failures: when last logged, and the failures not logged since
        self._progress_failing: tuple[float, int] | None = None
        self._failures = metrics.counter(
            "netcortex_reflex_settle_failures_total",
            "Flushes before an ack that failed (the messages stay unacked and the "
            "handlers pause until a retry succeeds).",
        )
        self._ack_failures = metrics.counter(
            "netcortex_reflex_ack_failures_total",
            "Acks the bus refused (the message will be redelivered), by handler.",
            ("handler",),
        )
        self._progress_failures = metrics.counter(
            "netcortex_reflex_in_progress_failed_total",
            "In-progress signals for held messages the bus refused (the message may be "
            "redelivered after ack_wait), by handler.",
            ("handler",),
        )
        self._held_gauge = metrics.gauge(
            "netcortex_reflex_unacked",
            "Processed messages not yet acked: waiting for a batch, or in the batch "
            "being flushed (their outcomes are not durable yet).",
        )
        self._paused = metrics.gauge(
            "netcortex_reflex_paused",
            "1 while the handlers wait for the outcome store to accept writes again.",
        )

    @property
    def healthy(self) -> bool:
        """False while a failed flush is being retried (handlers should wait)."""
        return self._healthy.is_set()

    @property
    def held(self) -> int:
        """Items waiting for the next batch (not the batch being settled); what
        ``max_held`` bounds."""
        return len(self._held)

    @property
    def unacked(self) -> int:
        """Messages processed and not yet acked, the batch being settled included
        (``netcortex_reflex_unacked``)."""
        return self._unacked

    @property
    def has_room(self) -> bool:
        """False while ``max_held`` messages wait for a flush (handlers should wait)."""
        return self._room.is_set()

    async def wait_room(self) -> None:
        """Return once fewer than ``max_held`` messages are held."""
        await self._room.wait()

    async def wait_healthy(self) -> None:
        """Return once the last flush succeeded (at once when it did)."""
        await self._healthy.wait()

    def start(self) -> None:
        """Start the settling task (idempotent)."""
        if self._task is None or self._task.done():
            self._closing = False
            self._stopped = False
            self._task = asyncio.create_task(self._run(), name="reflex-settle")
            self._task.add_done_callback(self._ended)
        if self._progress_task is None or self._progress_task.done():
            self._progress_task = asyncio.create_task(
                self._keep_in_progress(), name="reflex-in-progress"
            )
            self._progress_task.add_done_callback(self._ended)

    def _ended(self, task: asyncio.Task[None]) -> None:
        """Log a task that died of an unexpected error: it should never happen, so say
        it loudly. When the settling task died nothing is acked after it, so its
        messages are no longer kept in progress either: the bus redelivers them after
        ``ack_wait`` (``close`` still counts them as left)."""
        if task.cancelled() or task.exception() is None:
            return
        log.error(
            "reflex_settle_crashed",
            exc_info=task.exception(),
            task=task.get_name(),
            held=len(self._held) + len(self._settling),
        )
        if task is self._task:
            self._stopped = True
            if self._progress_task is not None:
                self._progress_task.cancel()

    def hold(
        self,
        handler_id: str,
        msg: BusMessage | None,
        outcome: ReflexOutcome | None,
        *,
        since: float | None = None,
    ) -> None:
        """Take ``msg`` (processed; ``outcome`` what it produced) to ack once durable.

        ``msg`` ``None``: ``outcome`` has no message (a re-evaluated fact); it is
        flushed, and re-recorded after a failed flush, like the others.
        ``since``: when the message was taken from the bus (``time.monotonic()``;
        now when ``None``) — its ack timer runs from then, and so does the wait
        before its first ``in_progress``.
        """
        touched = time.monotonic() if since is None else since
        self._held.append(_Held(handler_id, msg, outcome, touched))
        if msg is not None:
            self._unacked += 1
            self._held_gauge.set(self._unacked)
        if len(self._held) >= self._max_held:
            self._room.clear()
        self._wake.set()
        if len(self._held) >= self._batch:
            self._full.set()

    async def close(self, timeout: float) -> list[ReflexOutcome]:
        """Settle everything held within ``timeout`` s, then stop the tasks.

        What is still held at the deadline (the store kept failing), or when the
        settling task died, stays unacked: the bus redelivers it (logged as
        ``reflex_unacked_at_stop``); no more ``in_progress`` is sent for it.

        Returns:
            The outcomes not known to be durable (their flush did not succeed: a
            store may have dropped them with a failed batch), for the caller to
            record again before its last flush; empty when everything was made
            durable (acks cut short leave only redeliveries, same outcome ids).
        """
        self._closing = True
        self._wake.set()
        self._full.set()
        task, self._task = self._task, None
        if task is not None:
            await asyncio.wait({task}, timeout=max(timeout, 0.0))
        self._stopped = True
        # What is left is handed back to the bus: no more in_progress for it.
        progress, self._progress_task = self._progress_task, None
        for t in (task, progress):
            if t is not None and not t.done():
                # Bounded and cancelled again and again: a cancel swallowed inside a
                # flush or an ack must not hang the stop (see ``netcortex.aio``; the
                # task also ends on ``_stopped`` at its next check).
                await stop_task(
                    t,
                    timeout=CANCEL_GRACE,
                    what="settler",
                    logger=log,
                    event="reflex_settle_cancel_timeout",
                )
        settling = list(self._settling)
        left = [*settling, *self._held]
        messages = sum(1 for h in left if h.msg is not None)
        unsettled = [
            h.outcome
            for h in (*(() if self._committed else settling), *self._held)
            if h.outcome is not None
        ]
        if left:
            log.warning(
                "reflex_unacked_at_stop",
                messages=messages,
                outcomes_without_message=len(left) - messages,
                not_durable=len(unsettled),
            )
        self._held = []
        self._settling = deque()
        self._committed = False
        self._progress_now.clear()
        self._progress_failing = None
        self._unacked = 0
        self._held_gauge.set(0)
        self._room.set()
        # A stop during an outage must not leave a restarted runner's handlers paused.
        self._healthy.set()
        self._paused.set(0)
        return unsettled

    async def _run(self) -> None:
        while not self._stopped:
            if not self._held:
                if self._closing:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            if len(self._held) < self._batch and not self._closing:
                self._full.clear()
                # asyncio.timeout, not wait_for: on 3.11 wait_for can drop a cancel.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._linger):
                        await self._full.wait()
            await self._settle()

    def _take(self) -> list[_Held]:
        items, self._held = self._held, []
        self._full.clear()
        self._room.set()
        return items

    async def _flush_within(self) -> bool:
        """``flush()``, a timeout counting as a failure (logged)."""
        try:
            async with asyncio.timeout(self._flush_timeout):
                return await self._flush()
        except TimeoutError:
            log.warning("reflex_flush_timeout", seconds=self._flush_timeout)
            return False

    async def _settle(self) -> None:
        items = self._settling = deque(self._take())
        self._committed = False
        delay = self._retry_delay
        failures = 0
        while not await self._flush_within():
            failures += 1
            self._failures.inc()
            # Outcomes handed over since this batch was taken may have been in the
            # failed write as well (a store may report a failure to one flush only).
            items.extend(self._take())
            if failures == 1:
                self._healthy.clear()
                self._paused.set(1)
                # The held messages' ack timers ran since the bus handed them to the
                # client (its buffer included): signal them all now, not a round later.
                self._progress_now.set()
                log.error("reflex_settle_failed", messages=len(items), retry_in=delay)
            elif delay >= self._retry_max:
                log.warning("reflex_settle_retry", messages=len(items), attempts=failures)
            await asyncio.sleep(delay)
            if self._stopped:
                return  # close() gave up on it (a lost cancel): it counts what is left
            delay = min(delay * 2, self._retry_max)
            await self._rerecord([h.outcome for h in items if h.outcome is not None])
        self._committed = True
        if failures:
            self._healthy.set()
            self._paused.set(0)
            log.info("reflex_settle_recovered", messages=len(items), attempts=failures + 1)
        while items:
            held = items[0]
            if held.msg is not None:  # None: a re-evaluated outcome, durable now
                try:
                    await held.msg.ack()
                except BusError as exc:
                    self._ack_failures.inc(handler=held.handler_id)
                    log.warning("ack_failed", handler_id=held.handler_id, error=str(exc))
                except Exception:  # a bug in a bus backend must not stop every later ack
                    self._ack_failures.inc(handler=held.handler_id)
                    log.exception("ack_failed", handler_id=held.handler_id)
                if items is self._settling:  # not when close() gave up on this task
                    self._unacked -= 1
            items.popleft()  # settled: close() no longer counts it
        self._held_gauge.set(self._unacked)
        self._committed = False

    async def _keep_in_progress(self) -> None:
        """Every sixth of ``ack_wait``: ``in_progress()`` on each held message (waiting
        or in the batch being settled) not held or touched for a third of it; at the
        first failed flush of an outage (``_progress_now``), on every held message.

        In normal operation a message is acked within ``linger`` plus a flush, long
        before that, and nothing is sent. Never dies of a failure: each is counted
        and the message is tried again on the next round. Ends when the settler
        stops (``close``, or its settling task died).
        """
        while not self._stopped:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._progress_every):
                    await self._progress_now.wait()
            if self._stopped:
                return
            due = time.monotonic() - self._progress_after
            if self._progress_now.is_set():
                self._progress_now.clear()
                due = float("inf")  # the outage began: every held message at once
            stale = [
                h for h in (*self._settling, *self._held) if h.msg is not None and h.touched <= due
            ]
            if stale:
                await self._touch(stale)

    async def _touch(self, stale: Sequence[_Held]) -> None:
        """``in_progress()`` on each of ``stale``, ``PROGRESS_CONCURRENCY`` at a time,
        the whole round within a sixth of ``ack_wait`` (so a thousand held messages
        still get theirs well within it); what failed or was not reached by then is
        counted and tried again next round."""
        pending: Iterator[_Held] = iter(stale)
        done: set[int] = set()  # id() of the items signalled
        failed: list[tuple[_Held, Exception]] = []

        async def signal() -> None:
            for held in pending:
                if held.msg is None:
                    continue
                try:
                    await held.msg.in_progress()
                except Exception as exc:  # noqa: BLE001 - BusError or a backend bug: counted
                    failed.append((held, exc))
                else:
                    held.touched = time.monotonic()
                    done.add(id(held))

        workers = min(PROGRESS_CONCURRENCY, len(stale))
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._progress_every):
                await asyncio.gather(*(signal() for _ in range(workers)))
        failed_ids = {id(h) for h, _ in failed}
        late = [
            h for h in stale if h.msg is not None and id(h) not in done and id(h) not in failed_ids
        ]
        for held, _ in failed:
            self._progress_failures.inc(handler=held.handler_id)
        for held in late:
            self._progress_failures.inc(handler=held.handler_id)
        if not failed and not late:
            self._progress_failing = None  # the streak (if any) is over
            return
        error: Exception = failed[0][1] if failed else TimeoutError("round deadline passed")
        self._log_progress_failure(len(failed) + len(late), len(stale), error)

    def _log_progress_failure(self, failed: int, of: int, error: Exception) -> None:
        """``reflex_in_progress_failed`` at the first failed round of a streak, then at
        most every ``PROGRESS_LOG_INTERVAL`` s with the failures not logged since
        (``suppressed``): NATS refusing for minutes must not write a line per round."""
        now = time.monotonic()
        streak = self._progress_failing
        if streak is not None and now - streak[0] < PROGRESS_LOG_INTERVAL:
            self._progress_failing = (streak[0], streak[1] + failed)
            return
        self._progress_failing = (now, 0)
        expected = isinstance(error, BusError | TimeoutError)
        log.warning(
            "reflex_in_progress_failed",
            messages=failed,
            of=of,
            suppressed=0 if streak is None else streak[1],
            error=f"{type(error).__name__}: {error}",
            exc_info=None if expected else error,
        )
