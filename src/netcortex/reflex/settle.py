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
  flush. A longer outage than ``bus.ack_wait`` makes JetStream redeliver the held
  messages meanwhile; their re-run outcomes have the same ids.

Back-pressure: at most ``max_held`` messages are held; beyond that the handler
tasks wait (``has_room``) — a slow flush that has not failed yet must not let a
worker take the whole backlog. A flush that has not answered within
``flush_timeout`` (20 s, below JetStream's default ``ack_wait``) counts as failed
(``reflex_flush_timeout``) and the pause and retries above follow.

``close`` settles what is held (bounded by a deadline); what cannot be settled by
then stays unacked for the bus to redeliver, logged as ``reflex_unacked_at_stop``.

May import: ``contracts``, ``errors``, ``metrics``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import structlog

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
#: A flush that has not answered within this long counts as failed (kept below
#: JetStream's default ack_wait of 30 s, so held messages are not redelivered).
FLUSH_TIMEOUT = 20.0
#: Back-off after a failed flush: first delay and ceiling (seconds).
RETRY_DELAY = 0.1
RETRY_MAX = 5.0


@dataclass(slots=True)
class _Held:
    handler_id: str
    msg: BusMessage
    outcome: ReflexOutcome | None


class AckSettler:
    """Acks processed messages in batches once ``flush`` says their outcomes are durable.

    Args:
        flush: flushes every sink; ``True`` when the durable ones (the store)
            succeeded. Must not raise for a sink failure (return ``False``).
        rerecord: hands outcomes again to the durable sinks after a failed flush.
        metrics: where to count.
        batch, linger: the batching bounds (see ``ACK_BATCH``, ``ACK_LINGER``).
        retry_delay, retry_max: the back-off after a failed flush.
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
    ) -> None:
        self._flush = flush
        self._rerecord = rerecord
        self._batch = batch
        self._linger = linger
        self._retry_delay = retry_delay
        self._retry_max = retry_max
        self._max_held = max_held
        self._flush_timeout = flush_timeout
        self._room = asyncio.Event()
        self._room.set()
        self._held: list[_Held] = []
        self._settling: list[_Held] = []  # the batch being settled (close() counts it)
        self._wake = asyncio.Event()
        self._full = asyncio.Event()
        self._healthy = asyncio.Event()
        self._healthy.set()
        self._closing = False
        self._task: asyncio.Task[None] | None = None
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
        self._held_gauge = metrics.gauge(
            "netcortex_reflex_unacked",
            "Processed messages waiting for their outcomes to be durable before the ack.",
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
        """Messages processed and not yet acked."""
        return len(self._held)

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
            self._task = asyncio.create_task(self._run(), name="reflex-settle")
            self._task.add_done_callback(self._ended)

    def _ended(self, task: asyncio.Task[None]) -> None:
        """Log a settler that died of an unexpected error (nothing is acked after it;
        the bus redelivers what it held): it should never happen, so say it loudly."""
        if task.cancelled() or task.exception() is None:
            return
        log.error("reflex_settle_crashed", exc_info=task.exception(), held=len(self._held))

    def hold(self, handler_id: str, msg: BusMessage, outcome: ReflexOutcome | None) -> None:
        """Take ``msg`` (processed; ``outcome`` what it produced) to ack once durable."""
        self._held.append(_Held(handler_id, msg, outcome))
        self._held_gauge.set(len(self._held))
        if len(self._held) >= self._max_held:
            self._room.clear()
        self._wake.set()
        if len(self._held) >= self._batch:
            self._full.set()

    async def close(self, timeout: float) -> None:
        """Settle everything held within ``timeout`` s, then stop the task.

        What is still held at the deadline (the store kept failing) stays unacked:
        the bus redelivers it (logged as ``reflex_unacked_at_stop``).
        """
        task = self._task
        if task is None:
            return
        self._closing = True
        self._wake.set()
        self._full.set()
        _, pending = await asyncio.wait({task}, timeout=max(timeout, 0.0))
        if pending:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._task = None
        left = len(self._held) + (len(self._settling) if pending else 0)
        if left:
            log.warning("reflex_unacked_at_stop", messages=left)
        self._held = []
        self._settling = []
        self._held_gauge.set(0)
        self._room.set()
        # A stop during an outage must not leave a restarted runner's handlers paused.
        self._healthy.set()
        self._paused.set(0)

    async def _run(self) -> None:
        while True:
            if not self._held:
                if self._closing:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            if len(self._held) < self._batch and not self._closing:
                self._full.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._full.wait(), self._linger)
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
        items = self._settling = self._take()
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
                log.error("reflex_settle_failed", messages=len(items), retry_in=delay)
            elif delay >= self._retry_max:
                log.warning("reflex_settle_retry", messages=len(items), attempts=failures)
            await asyncio.sleep(delay)
            delay = min(delay * 2, self._retry_max)
            await self._rerecord([h.outcome for h in items if h.outcome is not None])
        if failures:
            self._healthy.set()
            self._paused.set(0)
            log.info("reflex_settle_recovered", messages=len(items), attempts=failures + 1)
        for held in items:
            try:
                await held.msg.ack()
            except BusError as exc:
                self._ack_failures.inc(handler=held.handler_id)
                log.warning("ack_failed", handler_id=held.handler_id, error=str(exc))
            except Exception:  # a bug in a bus backend must not stop every later ack
                self._ack_failures.inc(handler=held.handler_id)
                log.exception("ack_failed", handler_id=held.handler_id)
        self._settling = []
        self._held_gauge.set(len(self._held))
