"""Thalamus: ``NatsEventBus`` — the event bus on NATS JetStream (nats-py) for scale-out.

May import contracts, aio, errors, config, metrics and ``thalamus.subjects``; nats-py's
exceptions are mapped into ``netcortex.errors`` by one table, ``NATS_ERROR_MAP``,
through ``nats_errors()`` (``raise ... from exc``) or, on the per-message paths
(publish, ack), ``_map_error`` directly.

Streams. One stream per top-level subject root: ``SENSORY`` (``sensory.>``) and
``REFLEX`` (``reflex.>``) are created or updated at ``start``; any other root
(``incident.>`` ...) gets its stream, named after the root upper-cased, on first
publish or subscribe (JetStream subjects cannot express "everything else", and
one stream per root keeps retention and consumers per concern). With
``namespace = N`` every wire subject is ``N.<subject>`` and streams and consumers
are suffixed ``_N`` (``SENSORY_N`` on ``N.sensory.>``). Storage, ``max_age`` and
the ``Nats-Msg-Id`` duplicate window and the replica count come from ``BusConfig``. Consequence: a
subscription pattern must start with a concrete root (``sensory.>`` is fine,
``>`` or ``*.x`` is not: ``InvalidSubject``).

Consumers. ``subscribe(patterns, durable=name)`` uses one durable pull consumer
``name`` per root stream (explicit ack, ``ack_wait``, ``max_deliver``,
``max_ack_pending``, ``replicas``, the patterns as filter subjects) shared by
every subscription of that name: a work queue that survives restarts and
resumes where it left off. A brand-new durable (and every ephemeral
subscription) delivers only messages published after it was created. Each
consumer has a fetch loop: a pull request for ``fetch_batch`` messages that
lingers on the server, messages delivered to the subscription as they arrive
(no waiting for a full batch), and the next request issued when the batch is
used up, the request expires, or the connection comes back.

Connection. ``start`` gives up after ``publish_timeout`` seconds
(``BusUnavailable``); once connected, the client reconnects forever (a fixed
back-off of ``RECONNECT_WAIT`` seconds) and logs ``bus_disconnected`` /
``bus_reconnected``; fetch loops re-issue their pull requests (and re-create an
ephemeral consumer the server lost) on reconnect. ``connected`` is False while
the client reconnects; publishes awaiting JetStream's ack are
``netcortex_queue_depth{queue="bus_inflight"}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import math
import re
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any, Final

import nats.errors
import nats.js.errors
import structlog
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription as NatsCoreSubscription
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    DiscardPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)

from netcortex.aio import stop_task
from netcortex.config import BusConfig
from netcortex.errors import (
    BusError,
    BusUnavailable,
    InvalidSubject,
    NetcortexError,
    PublishTimeout,
)
from netcortex.logs import redact_url
from netcortex.metrics import Registry
from netcortex.nats_errors import NATS_UNAVAILABLE
from netcortex.nats_errors import describe as _describe
from netcortex.thalamus._metrics import BusMetrics
from netcortex.thalamus.subjects import (
    REFLEX,
    SENSORY,
    subscription_patterns,
    validate_durable,
    validate_subject,
)

__all__ = ["NatsEventBus", "NatsMessage", "NatsSubscription", "nats_errors"]

log = structlog.get_logger(__name__)

_BACKEND: Final = "nats"
#: roots whose streams are created (or updated) at start; others on first use
START_ROOTS: Final = (SENSORY, REFLEX)
#: seconds per TCP connect attempt
CONNECT_TIMEOUT: Final = 2.0
#: seconds between reconnect attempts (nats-py retries forever)
RECONNECT_WAIT: Final = 0.5
#: ``bus_error`` at most once per this many seconds (the rest counted in ``suppressed``)
_ERROR_LOG_INTERVAL: Final = 10.0
#: seconds a pull request lingers on the server before it is renewed
PULL_EXPIRES: Final = 5.0
#: an ephemeral consumer whose client vanished is removed after this many seconds
EPHEMERAL_INACTIVE: Final = 60.0
_MSG_ID: Final = "Nats-Msg-Id"
_STATUS: Final = "Status"
_PLAIN_ROOT = re.compile(r"[a-z0-9_-]+")
_CLOSED: Final = object()  # queue sentinel: the subscription closed

_TIMEOUT = object()  # placeholder in the map: "the caller's timeout error type"

#: nats-py exception → netcortex error, first match wins (order matters:
#: nats' TimeoutError is an asyncio.TimeoutError, which is an OSError).
_Row = tuple[tuple[type[BaseException], ...], type[BusError] | object]
NATS_ERROR_MAP: Final[tuple[_Row, ...]] = (
    ((nats.errors.BadSubjectError,), InvalidSubject),
    ((nats.js.errors.TooManyStalledMsgsError,), PublishTimeout),
    ((nats.errors.TimeoutError, TimeoutError), _TIMEOUT),
    (NATS_UNAVAILABLE, BusUnavailable),
    # API errors (bad request, not found, server error), payload too large, bad
    # headers, slow consumer ...: the bus could not do it, nothing more specific.
    ((nats.js.errors.APIError, nats.errors.Error), BusError),
)


@contextlib.contextmanager
def nats_errors(what: str, *, timeout: type[BusError] = BusUnavailable) -> Iterator[None]:
    """Map nats-py (and socket) exceptions raised inside to ``netcortex.errors``.

    ``timeout`` is the type a timeout becomes (``PublishTimeout`` for publishes,
    ``BusUnavailable`` for connect / API calls). Netcortex errors and
    cancellation pass through untouched; the original is the ``__cause__``.
    """
    try:
        yield
    except NetcortexError:
        raise
    except Exception as exc:
        mapped = _map_error(exc, what, timeout)
        if mapped is None:
            raise
        raise mapped from exc


def _map_error(exc: Exception, what: str, timeout: type[BusError]) -> BusError | None:
    """The ``netcortex.errors`` counterpart of ``exc`` (``None``: not a nats/socket error).

    The one mapping table behind ``nats_errors``; hot paths that cannot afford a
    context manager per call use it directly (``raise _map_error(...) from exc``).
    """
    if isinstance(exc, NetcortexError):
        return None
    for classes, target in NATS_ERROR_MAP:
        if isinstance(exc, classes):
            kind = timeout if target is _TIMEOUT else target
            assert isinstance(kind, type)
            assert issubclass(kind, BusError)
            return kind(f"{what}: {_describe(exc)}")
    return None


def _ack_numbers(msg: Msg) -> tuple[int, int]:
    """``(num_delivered, stream sequence)`` from a JetStream reply subject.

    ``$JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.<consumer seq>.<ts>.<pending>``
    (9 tokens) or the domain form with two more tokens after ``ACK`` (12). Reading
    the two numbers directly skips ``Msg.metadata`` (frozen dataclasses and a
    datetime per message); anything else goes through nats-py's parser.
    """
    tokens = msg.reply.split(".")
    n = len(tokens)
    if n == 9:
        return int(tokens[4]), int(tokens[5])
    if n >= 11:
        return int(tokens[6]), int(tokens[7])
    meta = msg.metadata
    return meta.num_delivered, meta.sequence.stream


def _expire(ack: asyncio.Future[Msg]) -> None:
    """Timer callback: the publish deadline passed without JetStream's ack."""
    if not ack.done():
        ack.set_exception(TimeoutError("no ack from JetStream in time"))


def _headers_size(headers: dict[str, str]) -> int:
    """Bytes the NATS header block adds to a message (``NATS/1.0`` line, fields, blank line)."""
    return 12 + sum(len(k) + len(v) + 4 for k, v in headers.items())


def _covers(a: str, b: str) -> bool:
    """True when every subject matching pattern ``b`` also matches pattern ``a``."""
    at, bt = a.split("."), b.split(".")
    for i, tok in enumerate(at):
        if tok == ">":
            return len(bt) > i
        if i >= len(bt) or bt[i] == ">":
            return False
        if tok != "*" and tok != bt[i]:
            return False
    return len(at) == len(bt)


def _overlap(a: str, b: str) -> bool:
    """True when some subject matches both patterns."""
    at, bt = a.split("."), b.split(".")
    for i in range(min(len(at), len(bt))):
        x, y = at[i], bt[i]
        if x == ">" or y == ">":
            return True
        if x != "*" and y != "*" and x != y:
            return False
    return len(at) == len(bt)


def _filters(patterns: Sequence[str]) -> list[str]:
    """Drop patterns covered by another; JetStream rejects overlapping filters.

    Raises:
        InvalidSubject: two patterns overlap without one covering the other.
    """
    kept = [p for p in patterns if not any(q != p and _covers(q, p) for q in patterns)]
    for i, a in enumerate(kept):
        for b in kept[i + 1 :]:
            if _overlap(a, b):
                raise InvalidSubject(
                    f"patterns {a!r} and {b!r} overlap; a JetStream consumer cannot filter on both"
                )
    return kept


class NatsMessage:
    """One JetStream delivery (implements ``contracts.bus.BusMessage``).

    ``ack``/``nak`` are idempotent (the first settlement wins). ``nak`` at the
    last allowed delivery terminates the message (no redelivery) and counts it
    in ``netcortex_bus_dead_letter_total``. Messages the server gives up on
    after ``ack_wait`` expiries are not counted here. ``in_progress`` restarts
    the ``ack_wait`` timer of a message not settled yet.
    """

    __slots__ = ("_msg", "_settled", "_sub", "attempt", "data", "msg_id", "subject")

    def __init__(
        self, sub: NatsSubscription, msg: Msg, subject: str, msg_id: str | None, attempt: int
    ) -> None:
        self.subject = subject
        self.data: bytes = msg.data
        self.msg_id = msg_id
        self.attempt = attempt
        self._msg = msg
        self._sub = sub
        self._settled = False

    def __repr__(self) -> str:
        return f"NatsMessage({self.subject!r}, msg_id={self.msg_id!r}, attempt={self.attempt})"

    async def ack(self) -> None:
        """Confirm processing; the message will not be redelivered. Idempotent.

        Raises:
            BusUnavailable: the connection is closed.
        """
        if self._settled:
            return
        self._settled = True
        self._sub._unsettled.discard(self)
        try:
            await self._msg.ack()
        except Exception as exc:  # no context manager on the per-message path
            mapped = _map_error(exc, "ack", BusUnavailable)
            if mapped is None:
                raise
            raise mapped from exc

    async def nak(self, delay: float = 0.0) -> None:
        """Ask for redelivery after ``delay`` seconds (``attempt + 1``), or give up at
        ``max_deliver`` (terminate + count). Idempotent.

        Raises:
            BusUnavailable: the connection is closed.
        """
        if self._settled:
            return
        self._settled = True
        self._sub._unsettled.discard(self)
        with nats_errors("nak"):
            if self.attempt >= self._sub._bus._config.max_deliver:
                self._sub._bus._dead_letter(self)
                await self._msg.term()
            else:
                await self._msg.nak(delay=delay if delay > 0 else None)

    async def in_progress(self) -> None:
        """Reset the message's ``ack_wait`` timer (JetStream ``+WPI``); any number of
        times, no delivery attempt used. Does nothing once acked or nak'ed.

        Raises:
            BusUnavailable: the connection is closed.
            BusError: the client refused it (its outgoing buffer is full ...).
        """
        if self._settled:
            return
        try:
            await self._msg.in_progress()
        except Exception as exc:  # no context manager on the per-message path
            mapped = _map_error(exc, "in_progress", BusUnavailable)
            if mapped is None:
                raise
            raise mapped from exc


class _PullConsumer:
    """One JetStream pull consumer on one stream, feeding a subscription's queue."""

    def __init__(
        self,
        bus: NatsEventBus,
        sub: NatsSubscription,
        root: str,
        name: str,
        filters: list[str],
        durable: bool,
    ) -> None:
        self._bus = bus
        self._sub = sub
        self.root = root
        self.name = name
        self._filters = filters
        self._durable = durable
        self._stream = bus._stream_name(root)
        self._inbox = ""
        self._core: NatsCoreSubscription | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False  # the fetch loop ends at its next step (see stop)
        self._done = asyncio.Event()
        self._pending = 0
        self._check = False  # verify the consumer still exists before the next pull
        self._last_stream_seq = 0
        self._stream_created: object = None  # StreamInfo.created when the consumer was made
        self._prefix_len = len(bus._prefix)

    def _config(self, start_seq: int = 0) -> ConsumerConfig:
        cfg = self._bus._config
        one = len(self._filters) == 1
        return ConsumerConfig(
            name=self.name,
            durable_name=self.name if self._durable else None,
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE if start_seq else DeliverPolicy.NEW,
            opt_start_seq=start_seq or None,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=cfg.ack_wait,
            max_deliver=cfg.max_deliver,
            max_ack_pending=cfg.max_ack_pending,
            num_replicas=cfg.replicas if self._durable else None,
            filter_subject=self._filters[0] if one else None,
            filter_subjects=None if one else list(self._filters),
            inactive_threshold=None if self._durable else EPHEMERAL_INACTIVE,
        )

    async def ensure(self) -> None:
        """Create the consumer, or update an existing durable whose settings changed."""
        js = self._bus._jetstream()
        await self._bus._ensure_stream(self.root)
        with nats_errors(f"consumer {self._stream}/{self.name}"):
            info = None
            if self._durable:
                with contextlib.suppress(nats.js.errors.NotFoundError):
                    info = await js.consumer_info(self._stream, self.name)
            if info is None:
                await js.add_consumer(self._stream, self._config(await self._start_seq(js)))
                return
            have = info.config
            want = self._config()
            if (
                sorted(have.filter_subjects or [have.filter_subject or ""]) != sorted(self._filters)
                or have.ack_wait != want.ack_wait
                or have.max_deliver != want.max_deliver
                or have.max_ack_pending != want.max_ack_pending
                or (have.num_replicas or 0) != (want.num_replicas or 0)
            ):
                # The deliver policy of an existing consumer cannot change; keep it.
                want.deliver_policy = have.deliver_policy
                want.opt_start_seq = have.opt_start_seq
                want.opt_start_time = have.opt_start_time
                await js.add_consumer(self._stream, want)
                log.info("bus_consumer_updated", stream=self._stream, consumer=self.name)

    async def _start_seq(self, js: JetStreamContext) -> int:
        """Where a (re-)created consumer starts: 0 (only new messages) the first time,
        then just after the last message this consumer saw — unless the stream itself
        was re-created since (``storage: memory`` and a server restart, or a deleted
        stream): its sequence numbers started again at 1, so resuming at the old
        number would skip everything published since; start at its first message."""
        info = await js.stream_info(self._stream)
        created, self._stream_created = self._stream_created, info.created
        if not self._last_stream_seq:
            return 0
        if info.state.last_seq < self._last_stream_seq or created != info.created:
            return max(info.state.first_seq, 1)
        return self._last_stream_seq + 1

    async def start(self) -> None:
        nc = self._bus._client()
        self._inbox = nc.new_inbox()
        with nats_errors("subscribe"):
            self._core = await nc.subscribe(self._inbox, cb=self._on_msg)
        self._stopping = False
        self._task = asyncio.create_task(self._loop(), name=f"nats-fetch-{self.name}")

    def wake(self, check: bool) -> None:
        """Renew the pull request now (after a reconnect: also re-check the consumer)."""
        self._check = self._check or check
        self._done.set()

    async def _on_msg(self, msg: Msg) -> None:
        hdrs = msg.headers
        if hdrs and not msg.data and _STATUS in hdrs:
            status = hdrs[_STATUS]
            if status == "100":  # idle heartbeat / flow control
                return
            # 404 no messages, 408 expired, 409 conflict (consumer deleted, leader
            # change, max waiting), 503 no responders: this pull request is over.
            if status == "503" or (status == "409" and "deleted" in str(hdrs).lower()):
                self._check = True
            self._done.set()
            return
        delivered, stream_seq = _ack_numbers(msg)
        self._last_stream_seq = stream_seq
        self._pending -= 1
        if self._pending <= 0:
            self._done.set()
        msg_id = hdrs.get(_MSG_ID) if hdrs else None
        self._sub._deliver(
            NatsMessage(self._sub, msg, msg.subject[self._prefix_len :], msg_id, delivered)
        )

    async def _loop(self) -> None:
        bus = self._bus
        batch = bus._config.fetch_batch
        expires_ns = int(PULL_EXPIRES * 1e9)
        backoff = 0.05
        while not self._stopping:  # a cancel nats-py dropped ends it here (see stop)
            try:
                if self._check:
                    await self._recover()
                await self._sub._wait_room(batch)
                nc = bus._client()
                self._done.clear()
                self._pending = batch
                request = json.dumps({"batch": batch, "expires": expires_ns}).encode()
                with nats_errors("pull request"):
                    await nc.publish(
                        f"$JS.API.CONSUMER.MSG.NEXT.{self._stream}.{self.name}",
                        request,
                        reply=self._inbox,
                    )
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(PULL_EXPIRES + 1.0):
                        await self._done.wait()
                backoff = 0.05
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the loop must outlive any failure
                log.warning(
                    "bus_fetch_failed",
                    stream=self._stream,
                    consumer=self.name,
                    error=_describe(exc),
                )
                self._check = True
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)

    async def _recover(self) -> None:
        js = self._bus._jetstream()
        with nats_errors(f"consumer info {self._stream}/{self.name}"):
            try:
                await js.consumer_info(self._stream, self.name)
            except nats.js.errors.NotFoundError:
                # the consumer is gone, and maybe its stream too (memory storage and a
                # server restart): make the stream first rather than wait for a publish
                await self._bus._ensure_stream(self.root, force=True)
                await self.ensure()
                log.warning(
                    "bus_consumer_recreated",
                    stream=self._stream,
                    consumer=self.name,
                    from_stream_seq=self._last_stream_seq + 1,
                )
        self._check = False

    async def stop(self) -> None:
        """End the fetch loop (bounded), unsubscribe, delete an ephemeral consumer.

        The loop's consumer checks are nats-py requests, which wait with
        ``asyncio.wait_for``: on Python 3.11 a cancel landing with the reply is
        dropped. So the loop also ends at its next step once stopping, and
        ``stop_task`` cancels again for at most ``publish_timeout``; a loop still
        running then is logged (``task_stop_stuck``) and left behind.
        """
        self._stopping = True
        task, self._task = self._task, None
        if task is not None:
            await stop_task(
                task,
                timeout=self._bus._config.publish_timeout,
                what="bus fetch loop",
                logger=log,
                stream=self._stream,
                consumer=self.name,
            )
        if self._core is not None:
            with contextlib.suppress(Exception):
                await self._core.unsubscribe()
            self._core = None
        js = self._bus._js
        if not self._durable and js is not None:
            with contextlib.suppress(Exception):
                await js.delete_consumer(self._stream, self.name)


class NatsSubscription:
    """A subscription on JetStream (implements ``contracts.bus.Subscription``).

    ``next`` may be awaited from several tasks (each message to one of them);
    cancelling it loses nothing. Messages are buffered locally up to about two
    fetch batches; the fetch loops wait while the buffer is fuller.
    """

    def __init__(self, bus: NatsEventBus, patterns: tuple[str, ...], durable: str | None) -> None:
        self._bus = bus
        self.patterns = patterns
        self.durable = durable
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._room = asyncio.Event()
        self._room.set()
        self._low = max(1, bus._config.fetch_batch // 2)
        self._consumers: list[_PullConsumer] = []
        self._unsettled: set[NatsMessage] = set()
        self._track = durable is not None
        self._closed = False

    def __aiter__(self) -> AsyncIterator[NatsMessage]:
        """Iterate messages until the subscription (or bus) is closed."""
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[NatsMessage]:
        while True:
            try:
                msg = await self.next()
            except BusUnavailable:
                return
            yield msg

    def _deliver(self, msg: NatsMessage) -> None:
        self._queue.put_nowait(msg)

    async def _wait_room(self, batch: int) -> None:
        while self._queue.qsize() >= batch:
            self._room.clear()
            await self._room.wait()

    async def next(self, timeout: float | None = None) -> NatsMessage:
        """Return the next message.

        Raises:
            TimeoutError: nothing arrived within ``timeout`` seconds.
            netcortex.errors.BusUnavailable: the subscription or bus is closed.
        """
        if self._closed:
            raise BusUnavailable("subscription is closed")
        queue = self._queue
        if queue.empty():
            async with asyncio.timeout(timeout):
                item = await queue.get()
        else:
            item = queue.get_nowait()
        if item is _CLOSED:
            queue.put_nowait(_CLOSED)  # wake the next waiter too
            raise BusUnavailable("subscription is closed")
        if queue.qsize() <= self._low:
            self._room.set()
        msg: NatsMessage = item
        if self._track:
            self._unsettled.add(msg)
        return msg

    async def close(self) -> None:
        """Stop the fetch loops; hand unsettled messages back (``nak``) so the
        durable group's other members get them now rather than after ``ack_wait``;
        delete an ephemeral consumer. Idempotent.
        """
        if self._closed:
            return
        self._closed = True
        for consumer in self._consumers:
            await consumer.stop()
        held: list[NatsMessage] = list(self._unsettled)
        self._unsettled.clear()
        while not self._queue.empty():
            item = self._queue.get_nowait()
            if isinstance(item, NatsMessage):
                held.append(item)
        if self._track:
            for msg in held:
                if not msg._settled:
                    msg._settled = True
                    with contextlib.suppress(Exception):
                        await msg._msg.nak()
        self._queue.put_nowait(_CLOSED)
        self._bus._subs.discard(self)


class NatsEventBus:
    """The event bus on NATS JetStream (implements ``contracts.bus.EventBus``).

    Contract, beyond the Protocol's docstrings:

    * delivery: at-least-once — a message is redelivered after ``nak`` or when
      not acked within ``ack_wait``, up to ``max_deliver`` deliveries; per-subject
      order for one subscriber with nothing unacked in between; a durable group's
      members share the work with no order across them;
    * idempotency: ``msg_id`` becomes ``Nats-Msg-Id``: a re-publish within
      ``duplicate_window`` is stored once. ``PublishTimeout`` means "not
      confirmed" — the message may still have been stored, so retry with the
      same ``msg_id``;
    * concurrency: every method is safe from many tasks; at most
      ``max_inflight`` publishes await their ack at once (others wait for a slot,
      counted as back-pressure), so concurrent publishers pipeline;
    * cancellation: a cancelled ``publish`` may or may not have been stored (never
      partially); cancelling ``next`` loses nothing;
    * errors: nats-py exceptions surface as ``BusUnavailable``, ``PublishTimeout``,
      ``InvalidSubject`` or ``BusError`` (see ``nats_errors``).

    Args:
        config: the ``bus`` config section.
        metrics: the engine's registry (a private one when omitted).
    """

    def __init__(self, config: BusConfig, metrics: Registry | None = None) -> None:
        self._config = config
        self._prefix = f"{config.namespace}." if config.namespace else ""
        self._url = redact_url(config.nats_url)  # for logs and messages: no credentials
        self._suffix = f"_{config.namespace}" if config.namespace else ""
        bus_metrics = BusMetrics(metrics)
        registry = bus_metrics.registry
        self._backpressure = bus_metrics.backpressure
        self._publish_timeouts = bus_metrics.publish_timeouts
        self._dead_letters = bus_metrics.dead_letters
        self._connection_events = registry.counter(
            "netcortex_bus_connection_events_total",
            "NATS connection state changes (disconnected, reconnected, closed) and "
            "client errors (error).",
            ("event",),
        )
        # bus_error lines: at most one per _ERROR_LOG_INTERVAL (a reconnect loop
        # reports an error per attempt, every RECONNECT_WAIT seconds)
        self._error_logged_at = -math.inf
        self._errors_suppressed = 0
        self._publish_seconds = registry.histogram(
            "netcortex_bus_publish_seconds",
            "Publish latency until the bus accepted the message.",
            ("backend",),
        )
        self._nc: NatsClient | None = None
        self._js: JetStreamContext | None = None
        self._running = False
        self._closed = False
        self._start_lock = asyncio.Lock()
        self._stream_lock = asyncio.Lock()
        self._streams: set[str] = set()
        self._inflight = asyncio.Semaphore(config.max_inflight)
        self._active = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._subs: set[NatsSubscription] = set()
        # publish acks: token → future, resolved by ``_on_pub_ack``
        self._acks: dict[str, asyncio.Future[Msg]] = {}
        self._ack_seq = 0
        self._ack_prefix = ""
        self._ack_prefix_len = 0
        registry.queue_depth("bus_inflight", self._inflight_publishes)

    @property
    def connected(self) -> bool:
        """True when started, not closed, and the client is connected right now
        (``False`` while it reconnects)."""
        nc = self._nc
        return self._running and nc is not None and nc.is_connected

    def _inflight_publishes(self) -> int:
        """Publishes sent and awaiting JetStream's ack (``queue="bus_inflight"``)."""
        return len(self._acks)

    async def __aenter__(self) -> NatsEventBus:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- connection -----------------------------------------------------------------

    def _client(self) -> NatsClient:
        if self._nc is None or not self._running:
            raise BusUnavailable("the bus is closed" if self._closed else "the bus is not started")
        return self._nc

    def _jetstream(self) -> JetStreamContext:
        self._client()
        assert self._js is not None
        return self._js

    async def start(self) -> None:
        """Connect, then create or update the ``SENSORY`` and ``REFLEX`` streams. Idempotent.

        Gives up after ``publish_timeout`` seconds of failed connection attempts.

        Raises:
            BusUnavailable: the server cannot be reached, JetStream is not enabled,
                or the bus was closed.
            BusError: a stream exists with settings that cannot be updated.
        """
        async with self._start_lock:
            if self._running:
                return
            if self._closed:
                raise BusUnavailable("the bus is closed")
            nc = NatsClient()
            try:
                with nats_errors(f"connect {self._url}"):
                    async with asyncio.timeout(self._config.publish_timeout):
                        await nc.connect(
                            servers=[self._config.nats_url],
                            name="netcortex",
                            connect_timeout=CONNECT_TIMEOUT,  # type: ignore[arg-type]
                            reconnect_time_wait=RECONNECT_WAIT,  # type: ignore[arg-type]
                            max_reconnect_attempts=-1,
                            allow_reconnect=True,
                            error_cb=self._on_error,
                            disconnected_cb=self._on_disconnected,
                            reconnected_cb=self._on_reconnected,
                            closed_cb=self._on_closed,
                        )
                self._nc = nc
                self._js = nc.jetstream(timeout=self._config.publish_timeout)
                self._ack_prefix = nc.new_inbox() + "."
                self._ack_prefix_len = len(self._ack_prefix)
                with nats_errors("subscribe to publish acks"):
                    await nc.subscribe(self._ack_prefix + "*", cb=self._on_pub_ack)
                self._running = True
                for root in START_ROOTS:
                    await self._ensure_stream(root)
            except BaseException:
                self._running = False
                self._nc = self._js = None
                with contextlib.suppress(Exception):
                    await nc.close()
                raise
            log.info("bus_connected", backend=_BACKEND, url=self._url)

    async def _on_error(self, exc: Exception) -> None:
        self._connection_events.inc(event="error")
        now = time.monotonic()
        if now - self._error_logged_at < _ERROR_LOG_INTERVAL:
            self._errors_suppressed += 1
            return
        log.warning(
            "bus_error",
            backend=_BACKEND,
            error=_describe(exc),
            suppressed=self._errors_suppressed,
        )
        self._error_logged_at, self._errors_suppressed = now, 0

    async def _on_disconnected(self) -> None:
        if self._running:
            self._connection_events.inc(event="disconnected")
            log.warning("bus_disconnected", backend=_BACKEND, url=self._url)

    async def _on_reconnected(self) -> None:
        self._connection_events.inc(event="reconnected")
        self._error_logged_at = -math.inf  # the next outage's first error is logged
        log.info("bus_reconnected", backend=_BACKEND, url=self._url)
        for sub in list(self._subs):
            for consumer in sub._consumers:
                consumer.wake(check=True)

    async def _on_closed(self) -> None:
        self._connection_events.inc(event="closed")
        log.info("bus_connection_closed", backend=_BACKEND)

    async def close(self) -> None:
        """Refuse new work, wait (up to ``publish_timeout``) for in-flight publishes,
        close every subscription, drain and close the connection. Idempotent; safe
        without ``start``."""
        if self._closed:
            return
        self._closed = True
        was_running, self._running = self._running, False
        if not was_running:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._config.publish_timeout):
                await self._idle.wait()
        for sub in list(self._subs):
            await sub.close()
        nc, self._nc, self._js = self._nc, None, None
        if nc is not None:
            try:
                async with asyncio.timeout(self._config.publish_timeout):
                    await nc.drain()
            except Exception:  # noqa: BLE001 - drain failed or timed out: close regardless
                with contextlib.suppress(Exception):
                    await nc.close()

    # -- streams ----------------------------------------------------------------------

    def _stream_name(self, root: str) -> str:
        if _PLAIN_ROOT.fullmatch(root):
            base = root.upper().replace("-", "_")
            if "-" in root:
                base += "_" + hashlib.sha1(root.encode()).hexdigest()[:8]  # noqa: S324
        else:
            base = re.sub(r"[^A-Za-z0-9_]", "_", root).upper()
            base += "_" + hashlib.sha1(root.encode()).hexdigest()[:8]  # noqa: S324
        return base + self._suffix

    async def _ensure_stream(self, root: str, *, force: bool = False) -> None:
        if root in self._streams and not force:
            return
        async with self._stream_lock:
            if root in self._streams and not force:
                return
            js = self._jetstream()
            cfg = StreamConfig(
                name=self._stream_name(root),
                subjects=[f"{self._prefix}{root}.>"],
                retention=RetentionPolicy.LIMITS,
                discard=DiscardPolicy.OLD,
                storage=StorageType.FILE if self._config.storage == "file" else StorageType.MEMORY,
                max_age=self._config.stream_max_age,
                duplicate_window=min(self._config.duplicate_window, self._config.stream_max_age),
                num_replicas=self._config.replicas,
            )
            with nats_errors(f"stream {cfg.name}"):
                try:
                    await js.add_stream(cfg)
                except nats.js.errors.BadRequestError as exc:
                    if exc.err_code != 10058:  # "stream name already in use" (other settings)
                        raise
                    await js.update_stream(cfg)
            self._streams.add(root)
            log.debug("bus_stream_ready", stream=cfg.name, subjects=cfg.subjects)

    # -- publish / subscribe --------------------------------------------------------

    async def publish(self, subject: str, data: bytes, *, msg_id: str | None = None) -> None:
        """Store ``data`` on ``subject`` in JetStream; returns when the server acked it.

        Raises:
            InvalidSubject: ``subject`` breaks the grammar or has wildcards.
            PublishTimeout: no ack (or no in-flight slot) within ``publish_timeout``.
            BusUnavailable: not started, closed, or the server/stream is unreachable.
            BusError: JetStream refused the message (e.g. too large).
        """
        if not self._running:
            raise BusUnavailable("the bus is closed" if self._closed else "the bus is not started")
        validate_subject(subject)
        root = subject.split(".", 1)[0]
        if root not in self._streams:
            await self._ensure_stream(root)
        headers = {_MSG_ID: msg_id} if msg_id else None
        loop = asyncio.get_running_loop()
        started = loop.time()
        self._active += 1
        self._idle.clear()
        try:
            try:
                await self._publish(self._prefix + subject, data, headers)
            except BusUnavailable as exc:
                if not isinstance(exc.__cause__, nats.js.errors.NoStreamResponseError):
                    raise
                # the stream vanished (memory storage and a server restart): recreate once
                await self._ensure_stream(root, force=True)
                await self._publish(self._prefix + subject, data, headers)
        except PublishTimeout:
            self._publish_timeouts.inc(backend=_BACKEND)
            raise
        finally:
            self._active -= 1
            if not self._active:
                self._idle.set()
        self._publish_seconds.observe(loop.time() - started, backend=_BACKEND)

    async def _publish(self, wire: str, data: bytes, headers: dict[str, str] | None) -> None:
        """Publish with a reply inbox of our own and wait for JetStream's ack.

        The hot path of every event and every outcome, so it is lean: a plain
        counter token on one wildcard ack subscription (``_on_pub_ack``), one timer
        handle for the deadline, the in-flight slot taken without a timeout unless
        it has to wait. Measured ~40 µs of CPU per publish against ~72 µs for
        ``js.publish_async`` under ``asyncio.timeout`` + ``nats_errors``.
        """
        nc = self._client()
        # nats-py checks the payload against the server's max_payload but not the
        # headers; a message over the limit with its headers makes the server drop
        # the connection ("Maximum Payload Violation") and the client gives up on
        # it for good. Refuse it here instead: a clear, non-retryable error.
        size = len(data) + (_headers_size(headers) if headers else 0)
        if size > nc.max_payload:
            raise BusError(
                f"publish {wire}: message of {size} bytes (with headers) exceeds the "
                f"server's max_payload of {nc.max_payload} bytes"
            )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._config.publish_timeout
        inflight = self._inflight
        if inflight.locked():
            self._backpressure.inc(backend=_BACKEND)
            try:
                async with asyncio.timeout_at(deadline):
                    await inflight.acquire()
            except TimeoutError as exc:
                raise PublishTimeout(f"publish {wire}: no in-flight slot in time") from exc
        else:
            await inflight.acquire()  # a free slot: returns without suspending
        self._ack_seq += 1
        token = str(self._ack_seq)
        ack: asyncio.Future[Msg] = loop.create_future()
        acks = self._acks
        acks[token] = ack
        expiry = loop.call_at(deadline, _expire, ack)
        try:
            await nc.publish(wire, data, reply=self._ack_prefix + token, headers=headers)
            reply = await ack
            hdrs = reply.headers
            if hdrs and not reply.data and hdrs.get(_STATUS) == "503":
                raise nats.js.errors.NoStreamResponseError  # noqa: TRY301 - mapped below
            if b'"error"' in reply.data:
                resp = json.loads(reply.data)
                if "error" in resp:
                    nats.js.errors.APIError.from_error(resp["error"])  # raises the typed error
        except Exception as exc:
            mapped = _map_error(exc, f"publish {wire}", PublishTimeout)
            if mapped is None:
                raise
            raise mapped from exc
        finally:
            expiry.cancel()
            acks.pop(token, None)
            inflight.release()
            if ack.done() and not ack.cancelled():
                ack.exception()  # retrieved: no "never retrieved" noise on error paths

    async def _on_pub_ack(self, msg: Msg) -> None:
        ack = self._acks.pop(msg.subject[self._ack_prefix_len :], None)
        if ack is not None and not ack.done():
            ack.set_result(msg)

    async def subscribe(
        self, patterns: str | Sequence[str], *, durable: str | None = None
    ) -> NatsSubscription:
        """Subscribe to every subject matching any of ``patterns``.

        Messages published after this returns are delivered. With ``durable``,
        every subscription of that name shares one JetStream consumer per root
        (work queue); it survives restarts and resumes where it left off. A
        changed pattern set updates the durable consumer's filters.

        Raises:
            InvalidSubject: a pattern breaks the grammar, has a wildcard root, or
                two patterns on one root overlap partially.
            BusUnavailable: not started, closed, or the server is unreachable.
        """
        pats = subscription_patterns(patterns)
        validate_durable(durable)
        by_root: dict[str, list[str]] = {}
        for p in pats:
            by_root.setdefault(p.split(".", 1)[0], []).append(p)
        plan = {root: _filters(ps) for root, ps in by_root.items()}
        self._client()
        sub = NatsSubscription(self, pats, durable)
        token = uuid.uuid4().hex[:16]
        try:
            for root, filters in plan.items():
                name = (durable + self._suffix) if durable else f"eph_{token}"
                consumer = _PullConsumer(
                    self, sub, root, name, [self._prefix + f for f in filters], durable is not None
                )
                await consumer.ensure()
                sub._consumers.append(consumer)
                await consumer.start()
        except BaseException:
            await sub.close()
            raise
        self._subs.add(sub)
        return sub

    def _dead_letter(self, msg: NatsMessage) -> None:
        self._dead_letters.inc(backend=_BACKEND)
        log.warning(
            "bus_dead_letter",
            backend=_BACKEND,
            subject=msg.subject,
            msg_id=msg.msg_id,
            attempts=msg.attempt,
        )
