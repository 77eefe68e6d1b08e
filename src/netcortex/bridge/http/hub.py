"""Bridge, HTTP: ``StreamHub`` — one bus subscription fanned out to the stream's clients.

``GET /api/v1/stream`` (``routes_stream``) serves each client from a
``StreamClient`` the hub hands out. The hub owns **one** non-durable
subscription per engine (``reflex.>`` and ``incident.>``), started and closed
with the HTTP server by the engine. Its pump decodes each message once
(``StreamItem``: the compact JSON ``data`` line is shared by every client),
acks it, and offers it to every client without awaiting anything: a client
whose bounded queue (``http.stream_queue_size``) is full is marked
*overflowed* (its connection is then told and closed by the route) and the
pump moves on, so the bus — and the engine behind it — never waits for a
browser. Filters (``StreamFilter``: subject patterns, minimum severity, device,
site) are applied at offer time, so a client's queue holds only what it will send.

Resume positions (``Position``) are the SSE ``id`` of every message: the newest
outcome ``(recorded_at, outcome_id)`` and incident ``(updated_at, incident_id)``
sent on the connection so far, as url-safe base64 of a small JSON array (opaque
to clients; ``decode_position`` refuses anything else with ``ValueError``).

Metrics: ``netcortex_stream_clients`` (gauge), ``netcortex_stream_messages_total``
(messages written to clients), ``netcortex_stream_overflows_total``.

May import: ``contracts``, ``metrics``, ``thalamus.subjects`` and structlog.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import collections
import contextlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal

import structlog

from netcortex.contracts.bus import EventBus, Subscription
from netcortex.contracts.codec import (
    decode_incident,
    decode_outcome,
    incident_to_dict,
    outcome_to_dict,
)
from netcortex.contracts.events import Severity
from netcortex.contracts.incidents import Incident, IncidentState
from netcortex.contracts.reflex import ReflexOutcome
from netcortex.errors import BusUnavailable, DecodeError, InvalidSubject
from netcortex.metrics import Registry
from netcortex.thalamus.subjects import compile_patterns, incident_subject, validate_pattern

__all__ = [
    "DEFAULT_PATTERNS",
    "HubFull",
    "Position",
    "StreamClient",
    "StreamFilter",
    "StreamHub",
    "StreamItem",
    "decode_position",
    "encode_position",
    "incident_devices",
    "incident_item",
    "outcome_item",
]

log = structlog.get_logger(__name__)

#: What the hub subscribes to, and a client's default filter.
DEFAULT_PATTERNS: Final = ("reflex.>", "incident.>")
_VERSION: Final = 1
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_US: Final = timedelta(microseconds=1)
_MAX_TOKEN: Final = 2048

Key = tuple[datetime, str]


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


# ------------------------------------------------------------------ positions


@dataclass(frozen=True, slots=True)
class Position:
    """Where a client is in both streams: the newest outcome and incident it was sent.

    ``None`` in a field means "nothing of that stream yet" (resume sends all of it);
    a new connection starts at *now* for both, so its ids always carry both.
    """

    outcome: Key | None = None
    incident: Key | None = None

    def advance(self, item: StreamItem) -> Position:
        """This position moved past ``item`` (never backwards)."""
        if item.kind == "outcome":
            if self.outcome is None or item.key > self.outcome:
                return Position(item.key, self.incident)
        elif self.incident is None or item.key > self.incident:
            return Position(self.outcome, item.key)
        return self


def _micros(moment: datetime) -> int:
    return (moment - _EPOCH) // _US


def encode_position(position: Position) -> str:
    """The opaque SSE ``id`` for ``position``."""
    parts: list[object] = [_VERSION]
    for key in (position.outcome, position.incident):
        parts.extend([None, None] if key is None else [_micros(key[0]), key[1]])
    return base64.urlsafe_b64encode(_dumps(parts)).rstrip(b"=").decode("ascii")


def _key(micros: object, ident: object) -> Key | None:
    if micros is None and ident is None:
        return None
    if type(micros) is not int or not isinstance(ident, str):
        raise ValueError("not a valid stream id")
    try:
        return (_EPOCH + timedelta(microseconds=micros), ident)
    except OverflowError:
        raise ValueError("not a valid stream id (out of range)") from None


def decode_position(token: str) -> Position:
    """The position ``encode_position`` made ``token`` from.

    Raises:
        ValueError: not an id this server issued (says why, never echoes it).
    """
    if not token or len(token) > _MAX_TOKEN:
        raise ValueError("not a valid stream id (empty or too long)")
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise ValueError("not a valid stream id (use the id of a message received)") from None
    if not (isinstance(data, list) and len(data) == 5 and data[0] == _VERSION):
        raise ValueError("not a valid stream id (use the id of a message received)")
    return Position(_key(data[1], data[2]), _key(data[3], data[4]))


# ------------------------------------------------------------------ items and filters


def incident_devices(incident: Incident) -> frozenset[str]:
    """The devices an incident involves: its members' and its root's."""
    found = {m.split("|", 1)[0] for m in incident.members}
    kind, _, rest = incident.root.partition(":")
    if kind == "device":
        found.add(rest)
    elif kind in ("interface", "bgp"):
        found.add(rest.split("|", 1)[0])
    elif kind == "cable":
        found.update(end.split("|", 1)[0] for end in rest.split("~"))
    return frozenset(d for d in found if d)


@dataclass(frozen=True, slots=True)
class StreamItem:
    """One message for clients, decoded and serialised once.

    Attributes:
        kind: ``outcome`` or ``incident`` (the SSE ``event``).
        subject: the bus subject (matched against a client's patterns).
        data: the compact JSON of the ``data:`` line.
        key: ``(recorded_at, outcome_id)`` or ``(updated_at, incident_id)``.
        severity, site, devices: what the filters look at.
        ident: the outcome id, or ``<incident_id>:<version>`` (duplicate check).
        also: more subjects a pattern may match (a resumed incident's implied
            transition).
    """

    kind: Literal["outcome", "incident"]
    subject: str
    data: bytes
    key: Key
    severity: Severity
    site: str | None
    devices: frozenset[str]
    ident: str
    version: int = 0
    also: tuple[str, ...] = ()


def outcome_item(subject: str, outcome: ReflexOutcome) -> StreamItem:
    """The stream item of an outcome published (or stored) under ``subject``."""
    data = _dumps({"subject": subject, "outcome": outcome_to_dict(outcome)})
    return StreamItem(
        kind="outcome",
        subject=subject,
        data=data,
        key=(outcome.recorded_at, outcome.outcome_id),
        severity=outcome.severity,
        site=outcome.site,
        devices=frozenset({outcome.device}) if outcome.device else frozenset(),
        ident=outcome.outcome_id,
    )


def incident_item(transition: str, incident: Incident) -> StreamItem:
    """The stream item of an incident ``transition`` (``resumed`` from the store).

    A ``resumed`` incident also matches the pattern of the transition its state
    implies (``opened`` at version 1, ``resolved``, else ``updated``), so a
    client filtering on ``incident.opened.*`` still gets the backlog's new ones.
    """
    subject = incident_subject(transition, incident.incident_id)
    also: tuple[str, ...] = ()
    if transition == "resumed":
        implied = (
            "resolved"
            if incident.state is IncidentState.RESOLVED
            else ("opened" if incident.version <= 1 else "updated")
        )
        also = (incident_subject(implied, incident.incident_id),)
    data = _dumps(
        {"subject": subject, "transition": transition, "incident": incident_to_dict(incident)}
    )
    return StreamItem(
        kind="incident",
        subject=subject,
        data=data,
        key=(incident.updated_at, incident.incident_id),
        severity=incident.severity,
        site=incident.site,
        devices=incident_devices(incident),
        ident=incident.incident_id,
        version=incident.version,
        also=also,
    )


@dataclass(frozen=True, slots=True)
class StreamFilter:
    """A client's filters (all must hold). Build with ``StreamFilter.parse``."""

    patterns: tuple[str, ...] = DEFAULT_PATTERNS
    min_severity: Severity | None = None
    device: str | None = None
    site: str | None = None
    _regex: Any = field(default=None, compare=False, repr=False)

    @classmethod
    def parse(
        cls,
        subjects: Sequence[str] | None = None,
        severity: str | None = None,
        device: str | None = None,
        site: str | None = None,
    ) -> StreamFilter:
        """Validate the query values.

        Raises:
            ValueError: ``"<param>: <why>"`` for the first bad value.
        """
        patterns = tuple(dict.fromkeys(s.strip() for s in subjects or () if s.strip()))
        for pattern in patterns:
            try:
                validate_pattern(pattern)
            except InvalidSubject as exc:
                raise ValueError(f"subject: {exc}") from None
            if pattern.split(".", 1)[0] not in ("reflex", "incident", "*", ">"):
                raise ValueError(
                    f"subject: {pattern!r} matches nothing on the stream "
                    "(it carries reflex.> and incident.>)"
                )
        min_severity = None
        if severity is not None and severity.strip():
            try:
                min_severity = Severity(severity.strip().lower())
            except ValueError:
                raise ValueError("severity: must be one of info, warn, high, critical") from None
        for name, value in (("device", device), ("site", site)):
            if value is not None and not value.strip():
                raise ValueError(f"{name}: must not be empty")
        chosen = patterns or DEFAULT_PATTERNS
        return cls(
            patterns=chosen,
            min_severity=min_severity,
            device=device.strip() if device else None,
            site=site.strip() if site else None,
            _regex=compile_patterns(chosen),
        )

    def accepts(self, item: StreamItem) -> bool:
        """Whether ``item`` passes every filter."""
        regex = self._regex if self._regex is not None else compile_patterns(self.patterns)
        if regex.fullmatch(item.subject) is None and not any(
            regex.fullmatch(s) is not None for s in item.also
        ):
            return False
        if self.min_severity is not None and item.severity.rank < self.min_severity.rank:
            return False
        if self.device is not None and self.device not in item.devices:
            return False
        return self.site is None or item.site == self.site


# ------------------------------------------------------------------ clients and the hub


class HubFull(Exception):
    """``http.stream_max_clients`` are connected already."""


class StreamClient:
    """One connection's bounded queue; filled by the hub's pump, read by the route."""

    def __init__(self, hub: StreamHub, stream_filter: StreamFilter, maxsize: int) -> None:
        self.filter = stream_filter
        self._hub = hub
        self._max = maxsize
        self._items: collections.deque[StreamItem] = collections.deque()
        self._wake = asyncio.Event()
        #: messages dropped since the queue overflowed (the first one included)
        self.dropped = 0
        self.closed = False

    @property
    def maxsize(self) -> int:
        """The queue's bound."""
        return self._max

    @property
    def overflowed(self) -> bool:
        """The queue was full once: the connection must be told and closed."""
        return self.dropped > 0

    def offer(self, item: StreamItem) -> None:
        """Queue ``item`` if the filter takes it; never waits."""
        if self.closed or not self.filter.accepts(item):
            return
        if self.dropped or len(self._items) >= self._max:
            if not self.dropped:
                self._hub.overflowed()
            self.dropped += 1
            self._items.clear()  # nothing more is sent to this client
        else:
            self._items.append(item)
        self._wake.set()

    async def get(self, timeout: float) -> StreamItem | None:
        """The next item, or ``None`` after ``timeout`` seconds, on overflow or close."""
        if not self._items and not self.dropped and not self.closed:
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._wake.wait()
        if self._items and not self.dropped and not self.closed:
            return self._items.popleft()
        return None

    def close(self) -> None:
        """Stop queueing; a reader waiting in ``get`` returns ``None``. Idempotent."""
        if not self.closed:
            self.closed = True
            self._items.clear()
            self._wake.set()
            self._hub.detach(self)


class StreamHub:
    """The engine's one subscription to ``reflex.>`` and ``incident.>``, shared by the
    stream's clients.

    Args:
        bus: the engine's bus (started before ``start``).
        metrics: where the stream's metrics live.
        queue_size: each client's queue bound (``http.stream_queue_size``).
        max_clients: clients at once (``http.stream_max_clients``).
    """

    def __init__(
        self, bus: EventBus, metrics: Registry, *, queue_size: int = 1000, max_clients: int = 100
    ) -> None:
        self._bus = bus
        self.queue_size = queue_size
        self.max_clients = max_clients
        self._clients: set[StreamClient] = set()
        self._sub: Subscription | None = None
        self._task: asyncio.Task[None] | None = None
        self._gauge = metrics.gauge("netcortex_stream_clients", "clients of GET /api/v1/stream")
        self._gauge.set(0)
        self.messages = metrics.counter(
            "netcortex_stream_messages_total", "messages written to stream clients"
        )
        self._overflows = metrics.counter(
            "netcortex_stream_overflows_total",
            "stream clients disconnected because their queue was full",
        )
        self._bad = 0

    @property
    def running(self) -> bool:
        """Started and not closed."""
        return self._task is not None and not self._task.done()

    @property
    def clients(self) -> int:
        """Clients connected now."""
        return len(self._clients)

    async def start(self) -> None:
        """Subscribe and start the pump. Idempotent."""
        if self._task is not None:
            return
        self._sub = await self._bus.subscribe(list(DEFAULT_PATTERNS))
        self._task = asyncio.create_task(self._pump(self._sub), name="stream-hub")

    async def close(self) -> None:
        """Close every client (their streams end), stop the pump, unsubscribe."""
        for client in list(self._clients):
            client.close()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.close()
            self._sub = None

    def connect(self, stream_filter: StreamFilter) -> StreamClient:
        """A new client, receiving every matching message from now on.

        Raises:
            HubFull: ``max_clients`` are connected.
        """
        if len(self._clients) >= self.max_clients:
            raise HubFull
        client = StreamClient(self, stream_filter, self.queue_size)
        self._clients.add(client)
        self._gauge.set(len(self._clients))
        return client

    def detach(self, client: StreamClient) -> None:
        """Forget ``client`` (``StreamClient.close`` calls this)."""
        self._clients.discard(client)
        self._gauge.set(len(self._clients))

    def overflowed(self) -> None:
        """Count one client overflow."""
        self._overflows.inc()

    def publish(self, item: StreamItem) -> None:
        """Offer ``item`` to every client (the pump's fan-out; tests call it too)."""
        for client in tuple(self._clients):
            client.offer(item)

    async def _pump(self, sub: Subscription) -> None:
        while True:
            try:
                message = await sub.next()
            except BusUnavailable:
                log.info("stream_hub_stopped", reason="subscription closed")
                return
            with contextlib.suppress(Exception):
                await message.ack()
            if not self._clients:
                continue  # nobody listens: no decoding on the engine's loop
            try:
                item = self._decode(message.subject, message.data)
            except (DecodeError, InvalidSubject, ValueError, KeyError, TypeError) as exc:
                # a message the codec refuses is skipped, not fatal
                self._bad += 1
                log.warning(
                    "stream_message_undecodable", subject=message.subject, error=str(exc)[:200]
                )
                continue
            if item is not None:
                self.publish(item)

    @staticmethod
    def _decode(subject: str, data: bytes) -> StreamItem | None:
        root, _, rest = subject.partition(".")
        if root == "reflex":
            return outcome_item(subject, decode_outcome(data))
        if root == "incident":
            transition = rest.split(".", 1)[0]
            incident = decode_incident(data)
            return incident_item(transition, incident)
        return None
