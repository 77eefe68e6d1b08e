"""Thalamus: ``InMemoryEventBus`` — the embedded, single-process event bus.

A real backend (not a test double): it passes the same contract suite as
``NatsEventBus`` (``tests/contracts/test_bus.py``). May import contracts, errors,
config, metrics and ``thalamus.subjects``.

Shape:

* every subscription group owns one bounded mailbox (``BusConfig.queue_size``).
  A plain subscription is a group of one; subscriptions sharing a ``durable``
  name share one mailbox, so each message goes to exactly one member;
* ``publish`` looks up the groups whose patterns match the subject in a cache
  (matching every pattern per message costs ~35x, see ``LIMITS.md``); the cache is
  dropped whenever a subscription opens or closes;
* a full mailbox makes ``publish`` wait for room, bounded by
  ``BusConfig.publish_timeout``; each wait is counted in
  ``netcortex_bus_backpressure_total`` and a wait that does not clear raises
  ``PublishTimeout``. A message is never dropped silently;
* at-least-once within the process: ``nak`` redelivers (``attempt + 1``) until
  ``BusConfig.max_deliver``, then the message is dropped and counted in
  ``netcortex_bus_dead_letter_total``. A message handed to a durable member and
  not settled when that member closes goes back to the group if other members
  remain. There is no ack timer: a handler that never settles a message keeps it
  (so ``in_progress`` has nothing to reset and does nothing).
* a durable group lives while it has members: the memory bus keeps nothing for a
  group with no members (nothing survives the process anyway).
* ``connected`` is "started and not closed"; messages waiting in every mailbox
  are ``netcortex_queue_depth{queue="bus_subscriptions"}``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import Final

import structlog

from netcortex.config import BusConfig
from netcortex.errors import BusUnavailable, PublishTimeout
from netcortex.metrics import Registry
from netcortex.thalamus._metrics import BusMetrics
from netcortex.thalamus.subjects import (
    compile_patterns,
    subscription_patterns,
    validate_durable,
    validate_subject,
)

__all__ = ["InMemoryEventBus", "MemoryMessage", "MemorySubscription"]

log = structlog.get_logger(__name__)

_BACKEND: Final = "memory"
_CACHE_LIMIT: Final = 65_536  # distinct subjects remembered before the match cache is reset


class _Mailbox:
    """A bounded FIFO shared by a group's members, with "wait for room" for publishers.

    Not ``asyncio.Queue``: a fan-out publish must wait until *every* target has
    room and then enqueue to all of them without an ``await`` in between, so a
    publish (or its cancellation) never reaches only some subscribers.
    """

    __slots__ = ("getters", "items", "maxsize", "room_waiters")

    def __init__(self, maxsize: int) -> None:
        self.items: collections.deque[MemoryMessage] = collections.deque()
        self.maxsize = maxsize
        self.getters: collections.deque[asyncio.Future[None]] = collections.deque()
        self.room_waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    def full(self) -> bool:
        return len(self.items) >= self.maxsize

    def put(self, item: MemoryMessage) -> None:
        """Append (callers checked for room; redeliveries may exceed the bound)."""
        self.items.append(item)
        _wake_one(self.getters)

    def pop(self) -> MemoryMessage:
        item = self.items.popleft()
        if self.room_waiters:
            _wake_one(self.room_waiters)
        return item

    async def wait_room(self) -> None:
        loop = asyncio.get_running_loop()
        while self.full():
            fut: asyncio.Future[None] = loop.create_future()
            self.room_waiters.append(fut)
            try:
                await fut
            except BaseException:
                _abandon(fut, self.room_waiters, not self.full())
                raise

    def wake_all(self) -> None:
        for waiters in (self.getters, self.room_waiters):
            while waiters:
                fut = waiters.popleft()
                if not fut.done():
                    fut.set_result(None)


def _wake_one(waiters: collections.deque[asyncio.Future[None]]) -> None:
    while waiters:
        fut = waiters.popleft()
        if not fut.done():
            fut.set_result(None)
            return


def _abandon(
    fut: asyncio.Future[None], waiters: collections.deque[asyncio.Future[None]], pass_on: bool
) -> None:
    """A waiter gave up (timeout, cancel, close): forget it, or hand its wake-up on."""
    if not fut.done():
        fut.cancel()
    if fut.cancelled():
        with contextlib.suppress(ValueError):
            waiters.remove(fut)
    elif pass_on:
        # it was woken but will not act on it: give the turn to the next waiter
        _wake_one(waiters)


class _Group:
    """A mailbox plus the subscriptions reading it (one, or a durable group's members)."""

    __slots__ = ("_regex", "durable", "mailbox", "members", "patterns")

    def __init__(self, durable: str | None, patterns: tuple[str, ...], maxsize: int) -> None:
        self.durable = durable
        self.patterns = patterns
        self._regex = compile_patterns(patterns)
        self.mailbox = _Mailbox(maxsize)
        self.members: list[MemorySubscription] = []

    def set_patterns(self, patterns: tuple[str, ...]) -> None:
        self.patterns = patterns
        self._regex = compile_patterns(patterns)

    def matches(self, subject: str) -> bool:
        return self._regex.fullmatch(subject) is not None


class MemoryMessage:
    """One delivery on the memory bus (implements ``contracts.bus.BusMessage``).

    ``ack``/``nak`` are idempotent: the first settlement wins, later calls do nothing.
    ``in_progress`` always does nothing (no ack timer).
    """

    __slots__ = ("_bus", "_group", "_holder", "_settled", "attempt", "data", "msg_id", "subject")

    def __init__(
        self,
        bus: InMemoryEventBus,
        group: _Group,
        subject: str,
        data: bytes,
        msg_id: str | None,
        attempt: int,
    ) -> None:
        self.subject = subject
        self.data = data
        self.msg_id = msg_id
        self.attempt = attempt
        self._bus = bus
        self._group = group
        self._holder: MemorySubscription | None = None
        self._settled = False

    def __repr__(self) -> str:
        return f"MemoryMessage({self.subject!r}, msg_id={self.msg_id!r}, attempt={self.attempt})"

    async def ack(self) -> None:
        """Confirm processing; the message is never redelivered. Idempotent."""
        self._settle()

    async def nak(self, delay: float = 0.0) -> None:
        """Redeliver to the group after ``delay`` seconds with ``attempt + 1``.

        At ``max_deliver`` the message is dropped instead and counted in
        ``netcortex_bus_dead_letter_total``. Idempotent (only the first settlement counts).
        """
        if self._settled:
            return
        self._settle()
        self._bus._redeliver(self, delay)

    async def in_progress(self) -> None:
        """Still being worked on: nothing to do, the memory bus has no ack timer (a
        message is redelivered only after ``nak`` or its durable member's close).
        Does nothing after ``ack``/``nak`` either; never raises."""

    def _settle(self) -> None:
        self._settled = True
        holder = self._holder
        if holder is not None:
            holder._unsettled.discard(self)
            self._holder = None

    def _again(self) -> MemoryMessage:
        return MemoryMessage(
            self._bus, self._group, self.subject, self.data, self.msg_id, self.attempt + 1
        )


class MemorySubscription:
    """A subscription on the memory bus (implements ``contracts.bus.Subscription``).

    ``next`` may be awaited from several tasks; each message goes to one of them.
    Cancelling ``next`` loses nothing: a message is taken from the mailbox only
    when it is returned.
    """

    def __init__(self, bus: InMemoryEventBus, group: _Group) -> None:
        self._bus = bus
        self._group = group
        self._closed = False
        self._waiters: set[asyncio.Future[None]] = set()
        # Durable members remember what they hold, to hand it back on close.
        self._unsettled: set[MemoryMessage] = set()
        self._track = group.durable is not None

    @property
    def patterns(self) -> tuple[str, ...]:
        """The patterns this subscription's group matches."""
        return self._group.patterns

    def __aiter__(self) -> AsyncIterator[MemoryMessage]:
        """Iterate messages until the subscription (or bus) is closed."""
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[MemoryMessage]:
        while True:
            try:
                msg = await self.next()
            except BusUnavailable:
                return
            yield msg

    async def next(self, timeout: float | None = None) -> MemoryMessage:
        """Return the next message.

        Raises:
            TimeoutError: nothing arrived within ``timeout`` seconds.
            netcortex.errors.BusUnavailable: the subscription or bus is closed.
        """
        mailbox = self._group.mailbox
        if self._closed:
            raise BusUnavailable("subscription is closed")
        if not mailbox.items:
            async with asyncio.timeout(timeout):
                await self._wait(mailbox)
        msg = mailbox.pop()
        if self._track:
            msg._holder = self
            self._unsettled.add(msg)
        return msg

    async def _wait(self, mailbox: _Mailbox) -> None:
        loop = asyncio.get_running_loop()
        while not mailbox.items:
            fut: asyncio.Future[None] = loop.create_future()
            mailbox.getters.append(fut)
            self._waiters.add(fut)
            try:
                await fut
            except BaseException:
                _abandon(fut, mailbox.getters, bool(mailbox.items))
                raise
            finally:
                self._waiters.discard(fut)
            if self._closed:
                raise BusUnavailable("subscription is closed")

    async def close(self) -> None:
        """Stop receiving; wake any ``next`` with ``BusUnavailable``. Idempotent.

        A durable member's unsettled messages go back to its group (``attempt + 1``)
        when other members remain.
        """
        if self._closed:
            return
        self._closed = True
        for fut in list(self._waiters):
            if not fut.done():
                fut.set_exception(BusUnavailable("subscription is closed"))
                fut.exception()  # retrieved, so an abandoned waiter never warns
        self._waiters.clear()
        self._bus._detach(self)


class InMemoryEventBus:
    """The embedded event bus (implements ``contracts.bus.EventBus``).

    Contract, beyond the Protocol's docstrings:

    * delivery: at-least-once within the process (``nak`` / closed durable member
      → redelivery up to ``max_deliver``); per-subject order is the publish order
      for a single subscriber; members of a durable group share the work with no
      order across them;
    * idempotency: ``msg_id`` is carried to subscribers but not deduplicated
      (there is no persistence to replay from, so a re-publish is a new message);
    * concurrency: every method is safe from many tasks on the bus's event loop
      (not thread-safe);
    * cancellation: a cancelled ``publish`` delivered the message to every
      matching subscription or to none;
    * back-pressure: a full subscription slows publishers for at most
      ``publish_timeout`` seconds, then ``PublishTimeout``; counted either way.

    Args:
        config: the ``bus`` config section (``queue_size``, ``publish_timeout``,
            ``max_deliver``; ``namespace`` is irrelevant in-process).
        metrics: the engine's registry (a private one when omitted).
    """

    def __init__(self, config: BusConfig, metrics: Registry | None = None) -> None:
        self._config = config
        bus_metrics = BusMetrics(metrics)
        self._backpressure = bus_metrics.backpressure
        self._publish_timeouts = bus_metrics.publish_timeouts
        self._dead_letter = bus_metrics.dead_letters
        self._running = False
        self._closed = False
        self._groups: list[_Group] = []
        self._durables: dict[str, _Group] = {}
        self._route: dict[str, tuple[_Group, ...]] = {}
        self._timers: set[asyncio.TimerHandle] = set()
        bus_metrics.registry.queue_depth("bus_subscriptions", self._undelivered)

    @property
    def connected(self) -> bool:
        """True when started and not closed (there is no server to lose)."""
        return self._running

    def _undelivered(self) -> int:
        """Messages waiting in every subscription's mailbox (``queue="bus_subscriptions"``)."""
        return sum(len(group.mailbox.items) for group in self._groups)

    async def __aenter__(self) -> InMemoryEventBus:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def start(self) -> None:
        """Make the bus usable. Idempotent.

        Raises:
            BusUnavailable: the bus was closed (a closed bus is not restarted).
        """
        if self._closed:
            raise BusUnavailable("the bus is closed")
        self._running = True

    async def close(self) -> None:
        """Close every subscription and refuse further use. Idempotent; safe without start.

        Publishes are synchronous enqueues, so there is nothing in flight to drain;
        messages still queued for subscribers are discarded with their subscriptions.
        """
        if self._closed:
            return
        self._closed = True
        self._running = False
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        for group in list(self._groups):
            for member in list(group.members):
                await member.close()
            group.mailbox.wake_all()
        self._groups.clear()
        self._durables.clear()
        self._route.clear()

    async def publish(self, subject: str, data: bytes, *, msg_id: str | None = None) -> None:
        """Deliver ``data`` to every subscription whose patterns match ``subject``.

        Returns once the message sits in every matching mailbox (or there is none).

        Raises:
            InvalidSubject: ``subject`` breaks the grammar or has wildcards.
            PublishTimeout: a matching mailbox stayed full for ``publish_timeout``.
            BusUnavailable: not started, or closed.
        """
        if not self._running:
            raise BusUnavailable("the bus is closed" if self._closed else "the bus is not started")
        targets = self._route.get(subject)
        if targets is None:
            targets = self._routes_for(subject)
        for group in targets:
            if group.mailbox.full():
                await self._wait_for_room(targets, subject)
                break
        for group in targets:
            group.mailbox.put(MemoryMessage(self, group, subject, data, msg_id, 1))

    def _routes_for(self, subject: str) -> tuple[_Group, ...]:
        validate_subject(subject)
        targets = tuple(g for g in self._groups if g.matches(subject))
        if len(self._route) >= _CACHE_LIMIT:
            self._route.clear()
        self._route[subject] = targets
        return targets

    async def _wait_for_room(self, targets: tuple[_Group, ...], subject: str) -> None:
        self._backpressure.inc(backend=_BACKEND)
        try:
            async with asyncio.timeout(self._config.publish_timeout):
                while True:
                    full = next((g for g in targets if g.mailbox.full()), None)
                    if full is None:
                        return
                    await full.mailbox.wait_room()
                    if not self._running:
                        raise BusUnavailable("the bus closed while a publish waited for room")
        except TimeoutError as exc:
            self._publish_timeouts.inc(backend=_BACKEND)
            log.warning("bus_publish_timeout", backend=_BACKEND, subject=subject)
            raise PublishTimeout(
                f"a subscriber queue for {subject!r} stayed full for "
                f"{self._config.publish_timeout:g}s"
            ) from exc

    async def subscribe(
        self, patterns: str | Sequence[str], *, durable: str | None = None
    ) -> MemorySubscription:
        """Subscribe to every subject matching any of ``patterns``.

        Messages published after this returns are delivered. Subscriptions with
        the same ``durable`` name share one mailbox (each message to one member);
        the latest subscribe's patterns become the group's patterns.

        Raises:
            InvalidSubject: a pattern (or the durable name) breaks the grammar.
            BusUnavailable: not started, or closed.
        """
        pats = subscription_patterns(patterns)
        validate_durable(durable)
        if not self._running:
            raise BusUnavailable("the bus is closed" if self._closed else "the bus is not started")
        group = self._durables.get(durable) if durable is not None else None
        if group is None:
            group = _Group(durable, pats, self._config.queue_size)
            self._groups.append(group)
            if durable is not None:
                self._durables[durable] = group
        else:
            group.set_patterns(pats)
        sub = MemorySubscription(self, group)
        group.members.append(sub)
        self._route.clear()
        return sub

    def _detach(self, sub: MemorySubscription) -> None:
        group = sub._group
        if sub in group.members:
            group.members.remove(sub)
        held = list(sub._unsettled)
        sub._unsettled.clear()
        if group.members and not self._closed:
            for msg in held:
                msg._holder = None
                msg._settled = True
                self._redeliver(msg, 0.0)
            # wake the remaining members so one of them takes any handed-back work
            _wake_one(group.mailbox.getters)
            return
        if group in self._groups:
            self._groups.remove(group)
        if group.durable is not None and self._durables.get(group.durable) is group:
            del self._durables[group.durable]
        group.mailbox.items.clear()
        group.mailbox.wake_all()  # publishers waiting for room in a dead mailbox go on
        self._route.clear()

    def _redeliver(self, msg: MemoryMessage, delay: float) -> None:
        if msg.attempt >= self._config.max_deliver:
            self._dead_letter.inc(backend=_BACKEND)
            log.warning(
                "bus_dead_letter",
                backend=_BACKEND,
                subject=msg.subject,
                msg_id=msg.msg_id,
                attempts=msg.attempt,
            )
            return
        if delay > 0:
            loop = asyncio.get_running_loop()
            timer: asyncio.TimerHandle | None = None

            def fire() -> None:
                if timer is not None:
                    self._timers.discard(timer)
                self._requeue(msg)

            timer = loop.call_later(delay, fire)
            self._timers.add(timer)
        else:
            self._requeue(msg)

    def _requeue(self, msg: MemoryMessage) -> None:
        group = msg._group
        if group.members and not self._closed:
            # Redeliveries bypass the bound: each was admitted once, so the
            # overshoot is at most the number of messages in flight.
            group.mailbox.put(msg._again())
