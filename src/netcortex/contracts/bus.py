"""Contracts: the thalamus ``EventBus`` Protocol and its message types (stdlib only).

The bus moves opaque bytes between subjects (``contracts.codec`` turns value types
into bytes). Two backends implement it — ``InMemoryEventBus`` (embedded default)
and ``NatsEventBus`` (JetStream) — and both pass ``tests/contracts/test_bus.py``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Protocol

__all__ = ["BusMessage", "EventBus", "Subscription"]


class BusMessage(Protocol):
    """One delivered message.

    Attributes:
        subject: the subject it was published on (without any namespace prefix).
        data: the payload bytes exactly as published.
        msg_id: the publisher's message id (the event id), or ``None``.
        attempt: 1 on first delivery, 2+ on redelivery.
    """

    subject: str
    data: bytes
    msg_id: str | None
    attempt: int

    async def ack(self) -> None:
        """Confirm processing; the message will not be redelivered. Idempotent."""
        ...

    async def nak(self, delay: float = 0.0) -> None:
        """Ask for redelivery after ``delay`` seconds, until the bus's max
        deliveries is reached (then the message is dropped and counted)."""
        ...

    async def in_progress(self) -> None:
        """Tell the bus the message is still being worked on; resets its redelivery timer.

        A consumer that holds a message longer than the bus's ack wait (JetStream's
        ``ack_wait``) calls this well within each ack wait, any number of times, so
        the message is neither redelivered nor counted as a delivery attempt
        meanwhile. A bus without an ack timer (the memory bus) does nothing. After
        ``ack`` or ``nak`` it does nothing (the first settlement stands).

        Raises:
            netcortex.errors.BusError: the bus could not be told (``BusUnavailable``:
                the connection is closed or lost); the message is then redelivered
                after the ack wait as if this had not been called.
        """
        ...


class Subscription(Protocol):
    """A stream of messages matching the subscription's patterns."""

    def __aiter__(self) -> AsyncIterator[BusMessage]:
        """Iterate messages until the subscription (or bus) is closed."""
        ...

    async def next(self, timeout: float | None = None) -> BusMessage:
        """Return the next message.

        Raises:
            TimeoutError: nothing arrived within ``timeout`` seconds.
            netcortex.errors.BusUnavailable: the subscription or bus is closed.
        """
        ...

    async def close(self) -> None:
        """Stop receiving. Unacked messages of a durable subscription are
        redelivered to the group's other members (or later). Idempotent."""
        ...


class EventBus(Protocol):
    """Publish/subscribe on NATS-style subjects (``*`` one token, ``>`` the rest).

    Delivery is at-least-once: a message is redelivered until acked, up to the
    bus's max deliveries. Ordering is per publisher per subject for a single
    subscriber; a durable group's members share the work with no order across
    them. All methods are safe to call concurrently from many tasks.
    Cancellation of ``publish`` leaves the message either published or not, never
    half-published.
    """

    async def start(self) -> None:
        """Connect / create streams. Idempotent.

        Raises:
            netcortex.errors.BusUnavailable: the server cannot be reached.
        """
        ...

    async def close(self) -> None:
        """Drain in-flight publishes, close subscriptions, disconnect. Idempotent;
        safe without ``start``."""
        ...

    @property
    def connected(self) -> bool:
        """True when started, not closed, and (for a server) currently connected."""
        ...

    async def publish(self, subject: str, data: bytes, *, msg_id: str | None = None) -> None:
        """Publish ``data`` on ``subject``; returns when the bus has accepted it.

        ``msg_id`` deduplicates re-publishes where the backend supports it
        (JetStream's ``Nats-Msg-Id``).

        Raises:
            netcortex.errors.InvalidSubject: ``subject`` breaks the grammar or has
                wildcards.
            netcortex.errors.PublishTimeout: back-pressure or the ack did not clear
                within the bus's publish timeout (never a silent drop).
            netcortex.errors.BusUnavailable: not started, closed, or disconnected
                past the reconnect budget.
        """
        ...

    async def subscribe(
        self, patterns: str | Sequence[str], *, durable: str | None = None
    ) -> Subscription:
        """Subscribe to every subject matching any of ``patterns``.

        Messages published after this returns are delivered. With ``durable``,
        all subscriptions of the same name form one group that shares the work
        (each message to one member) and, on JetStream, survives restarts.

        Raises:
            netcortex.errors.InvalidSubject: a pattern breaks the grammar.
            netcortex.errors.BusUnavailable: not started or closed.
        """
        ...
