"""Sensory / webhook: the Meraki webhook receiver — body → checks → event → queue → bus.

``MerakiWebhookReceiver`` knows no HTTP framework: the HTTP layer
(``bridge/http``) hands it the raw body and three headers, and answers with the
``WebhookResponse`` it returns. ``ingest`` is synchronous and never raises; the
checks run in this order, each refusal counted in
``netcortex_rejected_total{source="meraki.webhook",reason}`` and logged as
``webhook_rejected`` (rate-limited, see below):

1. the receiver is closing → 503 ``closing`` (with ``Retry-After: 1``);
2. ``meraki.shared_secret`` is not configured → 403 ``no_secret_configured``
   (fail closed, before anything is parsed);
3. a Content-Type that is not JSON → 415 ``bad_content_type`` (none: try JSON);
4. an empty body, not UTF-8, not JSON, or nested too deeply → 400 ``malformed``;
   JSON that is not an object → 422 ``schema``;
5. neither the body's ``sharedSecret`` nor a bearer token matches → 401
   ``bad_secret``;
6. not a ``schema.MerakiAlert`` → 422 ``schema`` (``detail`` names the fields);
7. ``sentAt`` further than ``meraki.replay_window_seconds`` from now → 400
   ``stale`` (0 turns this off);
8. seen within ``meraki.idempotency_window_seconds`` → 200 ``duplicate`` with the
   first delivery's event id (``netcortex_webhook_duplicates_total``);
9. the event built from the alert (``encode_event``) is larger than
   ``max_event_bytes`` → 413 ``too_large``: the bus could never carry it (NATS
   refuses a message over its ``max_payload``, 1 MiB by default, headers
   included), so it is refused now rather than accepted and lost. JSON
   re-encoding can grow a body (``1e15`` becomes ``1000000000000000.0``), so a
   body under ``http.max_body_bytes`` can still be refused here;
10. the publish queue is full, or its events already hold ``max_queued_bytes``
   → 503 ``overloaded`` (``Retry-After: 1``; Meraki retries, so an alert is
   never accepted and then lost); the bus has been unavailable for longer than
   ``outage_buffer_seconds`` and is still not connected → 503
   ``bus_unavailable`` (``Retry-After: 1``): the alert could not be handed to
   the bus within its time budget, so Meraki keeps it;
11. otherwise → 202 ``accepted`` with the event id, class and subject.

A bug in the receiver answers 500 ``internal_error`` (logged, never raised).

Idempotency key: the SHA-256 of ``[organizationId, alertId]`` (as JSON, so no
two pairs collide and a huge ``alertId`` costs a fixed 32 bytes), or — without
an ``alertId`` — of the canonical JSON body without ``sentAt`` and
``sharedSecret``. A
key is remembered only once its alert is accepted, so a 503'd alert is
accepted when Meraki retries it. At most ``meraki.idempotency_max_keys`` keys
are kept (oldest forgotten first).

Accepted events wait on a bounded queue (``meraki.queue_size``) for a pool of
publisher tasks, which take batches like the trap receiver's. A publish the bus
refuses for a transient reason (``BusUnavailable``, ``PublishTimeout``: a
nats-server restart) starts a bus outage (``sensory._publish.BusOutage``, shared
by the publishers) and is retried after 0.1, 0.25, 0.5, 1, 2, then every 2 s
(the event id is the message id, so JetStream drops a copy that did land; the
event is counted ``published`` once). The outage is ridden out for
``outage_buffer_seconds`` (``bus.outage_buffer_seconds``); past it, a held
alert whose retry fails — or, while the bus is still not connected, every held
alert without another try — is counted in
``netcortex_webhook_publish_failed_total{error="bus_outage"}`` and logged
(``webhook_publish_failed``, the first few per outage; the number in
``webhook_bus_recovered``). Any other failure is counted in
``netcortex_webhook_publish_failed_total{error}`` and logged
(``webhook_publish_failed``). ``close`` refuses new alerts, publishes what was
accepted within ``drain_timeout``, and counts (``error="lost_at_close"``) and
logs (``webhook_lost``) each one still unpublished.

Rejection logs: at most one ``webhook_rejected`` line per (peer, reason) per
10 s (with the number suppressed meanwhile), and at most 100 new (peer, reason)
pairs per 10 s — beyond that one ``peer="*"`` line per reason carries the
count — so a flood cannot flood the logs. Secrets never reach a log line, an
event, or a response: ``detail`` names fields and types, never values.

Imports: stdlib, structlog, pydantic, netcortex.aio/config/contracts/errors/logs/metrics,
siblings.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import time
import traceback
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

import structlog
from pydantic import ValidationError

from netcortex.aio import stop_tasks
from netcortex.config import MerakiConfig
from netcortex.contracts.bus import EventBus
from netcortex.contracts.codec import encode_event
from netcortex.contracts.events import SensoryEvent
from netcortex.contracts.memory import SemanticMemory
from netcortex.errors import BusError, BusUnavailable, InvalidSubject, PublishTimeout
from netcortex.logs import RejectionLog
from netcortex.metrics import Registry
from netcortex.sensory._batch import take_batch
from netcortex.sensory._publish import BUS_OUTAGE, BusOutage
from netcortex.sensory.webhook.auth import SharedSecretAuth
from netcortex.sensory.webhook.normalize import REDACTED, SOURCE, MerakiNormalizer
from netcortex.sensory.webhook.schema import MerakiAlert, validation_detail

__all__ = ["SOURCE", "MerakiWebhookReceiver", "WebhookResponse"]

log = structlog.get_logger(__name__)

_BATCH: Final = 32  # events a publisher takes per wake-up
#: Pauses between publish attempts the bus refused for a transient reason; the
#: last one repeats for as long as the receiver runs.
_RETRY_DELAYS: Final = (0.1, 0.25, 0.5, 1.0, 2.0)
#: A retry is logged for the first attempts, then every this many.
_RETRY_LOG_EVERY: Final = 30
_LOG_INTERVAL: Final = 10.0  # seconds between webhook_rejected lines per (peer, reason)
_LOG_NEW_PEERS: Final = 100  # new (peer, reason) pairs that start logging per interval
_LOG_KEYS_MAX: Final = 10_000  # bound on remembered (peer, reason) pairs
_RETRY_AFTER: Final = {"Retry-After": "1"}
#: Largest encoded event accepted: NATS' default ``max_payload`` (1 MiB) counts
#: the headers (``Nats-Msg-Id``) too, and a message over it makes the server drop
#: the connection; 16 KiB of room is ample for the headers.
MAX_EVENT_BYTES: Final = 1024 * 1024 - 16 * 1024
#: Most encoded bytes waiting to be published (beyond it: 503 ``overloaded``), so
#: ``queue_size`` big alerts cannot hold gigabytes. Ordinary alerts (~1.5 KB)
#: fill ``queue_size`` long before this.
MAX_QUEUED_BYTES: Final = 64 * 1024 * 1024
#: Longest ``alertId`` written to a log line (Meraki's are 18 digits).
_LOG_ID_CHARS: Final = 64
#: Deepest JSON nesting accepted (Meraki bodies are 4 deep). Deeper documents are
#: refused: re-encoding or decoding them further down a call stack (the bus, the
#: runner) could exceed the interpreter's recursion limit.
_MAX_DEPTH: Final = 32
_JSON_TYPES: Final = {
    list: "an array",
    str: "a string",
    int: "a number",
    float: "a number",
    bool: "a boolean",
    type(None): "null",
}


@dataclass(frozen=True, slots=True)
class WebhookResponse:
    """What to answer one webhook request with.

    Attributes:
        status: the HTTP status code.
        body: the JSON body (``status`` plus ``event_id``/``event_class``/``subject``
            when accepted, ``event_id`` of the first delivery for a duplicate,
            ``reason``/``detail`` when rejected).
        headers: extra response headers (``Retry-After`` on 503).
    """

    status: int
    body: Mapping[str, Any]
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _Pending:
    """An accepted event waiting to be published."""

    event: SensoryEvent
    data: bytes
    received_at: float  # time.time() seconds, for the publish latency
    alert_id: str | None  # as logged: bounded, never the secret (``_loggable``)


class _Rejected(Exception):
    """A refusal inside ``ingest`` (control flow; never escapes it)."""

    def __init__(self, status: int, reason: str, detail: str) -> None:
        super().__init__(reason)
        self.status, self.reason, self.detail = status, reason, detail


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def _is_json_media_type(content_type: str) -> bool | None:
    """``None`` when no media type is given, else whether it is JSON."""
    media = content_type.partition(";")[0].strip().lower()
    if not media:
        return None
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


def _too_deep(obj: object) -> bool:
    stack: list[tuple[object, int]] = [(obj, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > _MAX_DEPTH:
            return True
        children = value.values() if isinstance(value, dict) else value
        assert isinstance(children, Iterable)
        stack.extend((v, depth + 1) for v in children if isinstance(v, dict | list))
    return False


def _canonical_digest(obj: Mapping[str, Any]) -> bytes:
    rest = {k: v for k, v in obj.items() if k not in ("sentAt", "sharedSecret")}
    text = json.dumps(rest, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return b"b" + hashlib.sha256(text.encode("ascii")).digest()


def _loggable(alert_id: str | None, secret: bytes) -> str | None:
    """``alertId`` fit for a log line: at most ``_LOG_ID_CHARS`` characters, never the secret."""
    if alert_id is None:
        return None
    if secret and secret in alert_id.encode("utf-8", "surrogatepass"):
        return REDACTED
    if len(alert_id) > _LOG_ID_CHARS:
        return alert_id[: _LOG_ID_CHARS - 1] + "…"
    return alert_id


def _alert_key(organization_id: str, alert_id: str) -> bytes:
    # JSON of the pair: ("1:2", "3") and ("1", "2:3") stay apart; the digest keeps
    # the key 33 bytes however long the ids are. "a"/"b" prefixes keep the two
    # kinds of key apart too.
    text = json.dumps([organization_id, alert_id], ensure_ascii=True)
    return b"a" + hashlib.sha256(text.encode("ascii")).digest()


class MerakiWebhookReceiver:
    """Meraki Dashboard webhooks → ``SensoryEvent`` on the injected bus.

    Args:
        config: the ``meraki`` section.
        bus: where events go (``encode_event`` bytes, ``msg_id=event.id``, on
            ``sensory.meraki.webhook.<class>.<target>``).
        metrics: registry for the counters (a private one by default).
        memory: semantic memory to canonicalise devices with (see
            ``MerakiNormalizer``); started and closed by its owner.
        publishers: concurrent publisher tasks.
        drain_timeout: how long ``close`` waits for accepted alerts to publish.
        max_event_bytes: largest encoded event accepted (413 beyond); keep it
            under the bus's message limit (NATS ``max_payload`` less headers).
        max_queued_bytes: most encoded bytes waiting to be published (503 beyond).
        outage_buffer_seconds: how long a bus outage is ridden out before held
            alerts are given up and new ones answered 503 ``bus_unavailable``
            (``bus.outage_buffer_seconds``).
        clock: ``time.time``-like wall clock (seconds): the replay window,
            idempotency window and publish latency are measured with it.

    Raises:
        ValueError: ``publishers`` < 1, ``drain_timeout`` < 0, or a byte limit < 1.
    """

    source: str = SOURCE

    def __init__(
        self,
        config: MerakiConfig,
        bus: EventBus,
        metrics: Registry | None = None,
        *,
        memory: SemanticMemory | None = None,
        publishers: int = 8,
        drain_timeout: float = 10.0,
        max_event_bytes: int = MAX_EVENT_BYTES,
        max_queued_bytes: int = MAX_QUEUED_BYTES,
        outage_buffer_seconds: float = 120.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if publishers < 1:
            raise ValueError("publishers must be at least 1")
        if not drain_timeout >= 0:
            raise ValueError("drain_timeout must be >= 0 seconds")
        if max_event_bytes < 1 or max_queued_bytes < 1:
            raise ValueError("max_event_bytes and max_queued_bytes must be at least 1")
        self._max_event_bytes = max_event_bytes
        self._max_queued_bytes = max_queued_bytes
        self._queued_bytes = 0  # encoded bytes queued or being published
        self._config = config
        self._bus = bus
        self._outage = BusOutage(
            outage_buffer_seconds,
            what="webhook",
            logger=log,
            connected=lambda: bool(getattr(bus, "connected", True)),
        )
        secret = config.shared_secret
        self._auth = SharedSecretAuth(secret) if secret is not None else None
        self._secret_bytes = (
            secret.get_secret_value().encode("utf-8", "surrogatepass") if secret else b""
        )
        self._normalizer = MerakiNormalizer(config, memory)
        self._replay_window = config.replay_window_seconds
        self._idem_window = config.idempotency_window_seconds
        self._idem_max = config.idempotency_max_keys
        self._publishers = publishers
        self._drain_timeout = drain_timeout
        self._clock = clock
        # Created here (an asyncio.Queue binds to a loop only when a getter waits),
        # so alerts accepted before start() are published once it runs.
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue(maxsize=config.queue_size)
        self._inflight: dict[str, _Pending] = {}  # taken by a publisher, not yet done
        self._seen: OrderedDict[bytes, tuple[float, str]] = OrderedDict()  # key -> (at, event id)
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False
        self._rejections = RejectionLog(
            log,
            "webhook_rejected",
            who_field="peer",
            interval=_LOG_INTERVAL,
            new_pairs=_LOG_NEW_PEERS,
            max_keys=_LOG_KEYS_MAX,
        )

        reg = metrics if metrics is not None else Registry()
        self.metrics = reg
        self._received = reg.counter(
            "netcortex_received_total", "inputs received by a receiver", ["source"]
        )
        self._rejected = reg.counter(
            "netcortex_rejected_total", "inputs rejected by a receiver", ["source", "reason"]
        )
        self._accepted = reg.counter(
            "netcortex_webhook_accepted_total",
            "webhook alerts accepted (202) for publishing",
            ["event_class"],
        )
        self._published = reg.counter(
            "netcortex_webhook_published_total",
            "webhook events published on the bus",
            ["event_class"],
        )
        self._duplicates = reg.counter(
            "netcortex_webhook_duplicates_total",
            "webhook alerts answered 200 as already accepted (idempotency window)",
        )
        self._publish_failed = reg.counter(
            "netcortex_webhook_publish_failed_total",
            "accepted webhook events never published",
            ["error"],
        )
        self._publish_retries = reg.counter(
            "netcortex_webhook_publish_retries_total",
            "webhook event publishes retried after a transient bus error",
        )
        self._ingest_seconds = reg.histogram(
            "netcortex_webhook_ingest_seconds", "time spent in MerakiWebhookReceiver.ingest"
        )
        self._publish_latency = reg.histogram(
            "netcortex_webhook_publish_latency_seconds",
            "webhook request received → event accepted by the bus",
        )
        self._queue_depth = reg.gauge(
            "netcortex_queue_depth", "items waiting in an internal queue", ["queue"]
        )
        reg.add_collector(self._collect)

    # ------------------------------------------------------------------ lifecycle

    @property
    def queue_depth(self) -> int:
        """Accepted alerts not yet published (queued plus being published)."""
        return self._queue.qsize() + len(self._inflight)

    def _collect(self) -> None:
        self._queue_depth.set(self.queue_depth, queue="webhook_publish")

    async def start(self) -> None:
        """Start the publisher tasks. Idempotent.

        Raises:
            RuntimeError: the receiver was closed (it is not restartable).
        """
        if self._closing:
            raise RuntimeError("MerakiWebhookReceiver is closed")
        if self._tasks:
            return
        self._tasks = [
            asyncio.create_task(self._publisher(), name=f"webhook-publisher-{i}")
            for i in range(self._publishers)
        ]
        log.info(
            "webhook_receiver_started",
            publishers=self._publishers,
            queue_size=self._queue.maxsize,
            replay_window_seconds=self._replay_window,
            idempotency_window_seconds=self._idem_window,
        )
        if self._auth is None:
            log.warning(
                "webhook_secret_missing",
                detail="meraki.shared_secret is not configured; every webhook is refused (403)",
            )

    async def close(self) -> None:
        """Refuse new alerts (503 ``closing``), publish the accepted ones, stop.

        Waits at most ``drain_timeout`` for the queue to drain; every alert
        still unpublished then is counted
        (``netcortex_webhook_publish_failed_total{error="lost_at_close"}``) and
        logged (``webhook_lost``, one line each). Idempotent; safe without ``start``.
        """
        if self._closing:
            return
        self._closing = True
        if self._tasks:
            try:
                async with asyncio.timeout(self._drain_timeout):
                    await self._queue.join()
            except TimeoutError:
                pass
            # bounded, cancelled again and again: a publish through NATS may drop a
            # cancel (nats-py's wait_for, see netcortex.aio)
            await stop_tasks(
                self._tasks, timeout=self._drain_timeout, what="webhook publishers", logger=log
            )
            self._tasks = []
        lost = list(self._inflight.values())
        self._inflight.clear()
        while True:
            try:
                lost.append(self._queue.get_nowait())
            except asyncio.QueueEmpty:
                break
        for pending in lost:
            self._publish_failed.inc(error="lost_at_close")
            log.error(
                "webhook_lost",
                event_id=pending.event.id,
                alert_id=pending.alert_id,
                event_class=pending.event.event_class,
                subject=pending.event.subject,
            )
        self._rejections.flush()
        log.info(
            "webhook_receiver_stopped",
            received=int(self._received.value(source=SOURCE)),
            accepted=int(self._accepted.total()),
            published=int(self._published.total()),
            duplicates=int(self._duplicates.total()),
            lost=len(lost),
        )

    async def __aenter__(self) -> MerakiWebhookReceiver:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ------------------------------------------------------------------ requests

    def too_large(self, *, peer: str | None, size: int | None) -> WebhookResponse:
        """Answer a body over ``http.max_body_bytes`` (the HTTP layer stopped reading).

        Args:
            peer: the client address.
            size: the announced ``Content-Length``, or ``None`` when unknown
                (a chunked body that crossed the limit).

        Returns:
            413 with reason ``too_large``.
        """
        self._received.inc(source=SOURCE)
        detail = (
            "request body exceeds the size limit"
            if size is None
            else f"request body of {size} bytes exceeds the size limit"
        )
        return self._refuse(peer, 413, "too_large", detail)

    def ingest(
        self,
        body: bytes,
        *,
        content_type: str | None,
        authorization: str | None,
        peer: str | None,
        received_at: float | None = None,
    ) -> WebhookResponse:
        """Check, classify and queue one webhook; never raises, never awaits.

        Args:
            body: the raw request body.
            content_type: the ``Content-Type`` header, ``None`` when absent.
            authorization: the ``Authorization`` header, ``None`` when absent.
            peer: the client address (becomes the event's ``agent``).
            received_at: ``time.time()`` when the request arrived (default: now).

        Returns:
            The response to send (see the module docstring for statuses).
        """
        t0 = time.perf_counter()
        self._received.inc(source=SOURCE)
        try:
            return self._ingest(body, content_type, authorization, peer, received_at)
        except _Rejected as exc:
            headers = _RETRY_AFTER if exc.status == 503 else {}
            return self._refuse(peer, exc.status, exc.reason, exc.detail, headers)
        except RecursionError:  # a pathological body somewhere deep in a library
            return self._refuse(peer, 400, "malformed", "invalid JSON: nested too deeply")
        except Exception as exc:  # noqa: BLE001 - a bug must not reach the HTTP layer
            # Logged without exc_info on purpose: a renderer showing locals would print
            # the body (and its secret). The failing line is enough to find the bug.
            frame = traceback.extract_tb(exc.__traceback__)[-1:]
            where = f"{frame[0].filename}:{frame[0].lineno}" if frame else "?"
            log.error("webhook_ingest_crashed", peer=peer, error=type(exc).__name__, where=where)
            return self._refuse(peer, 500, "internal_error", "internal error")
        finally:
            self._ingest_seconds.observe(time.perf_counter() - t0)

    def _ingest(
        self,
        body: bytes,
        content_type: str | None,
        authorization: str | None,
        peer: str | None,
        received_at: float | None,
    ) -> WebhookResponse:
        if self._closing:
            raise _Rejected(503, "closing", "the receiver is shutting down; retry later")
        auth = self._auth
        if auth is None:
            raise _Rejected(403, "no_secret_configured", "meraki.shared_secret is not configured")
        if content_type is not None and _is_json_media_type(content_type) is False:
            raise _Rejected(
                415,
                "bad_content_type",
                "Content-Type must be application/json (or application/*+json)",
            )
        obj = self._parse(body)

        if not auth.verify(obj.get("sharedSecret"), authorization):
            given = "sharedSecret" in obj or authorization is not None
            raise _Rejected(
                401,
                "bad_secret",
                "sharedSecret (or bearer token) does not match"
                if given
                else "no sharedSecret in the body and no bearer token",
            )

        try:
            alert = MerakiAlert.model_validate(obj)
        except ValidationError as exc:
            raise _Rejected(422, "schema", validation_detail(exc)) from None

        now = received_at if received_at is not None and math.isfinite(received_at) else None
        if now is None:
            now = self._clock()
        if self._replay_window:
            age = now - alert.sent_at.timestamp()
            if abs(age) > self._replay_window:
                when = f"{age:.0f} s old" if age > 0 else f"{-age:.0f} s in the future"
                raise _Rejected(
                    400,
                    "stale",
                    f"sentAt is {when}; the replay window is {self._replay_window:g} s",
                )

        key = (
            _alert_key(alert.organization_id, alert.alert_id)
            if alert.alert_id
            else _canonical_digest(obj)
        )
        first = self._seen_within_window(key, now)
        if first is not None:
            self._duplicates.inc()
            log.debug(
                "webhook_duplicate",
                alert_id=_loggable(alert.alert_id, self._secret_bytes),
                event_id=first,
                peer=peer,
            )
            return WebhookResponse(200, {"status": "duplicate", "event_id": first})

        try:
            arrived = datetime.fromtimestamp(now, UTC)
        except (OverflowError, OSError, ValueError):
            arrived = datetime.now(UTC)
        try:
            event = self._normalizer.normalize(alert, agent=peer, received_at=arrived)
        except InvalidSubject:
            raise _Rejected(422, "schema", "the alert's target cannot form a subject") from None
        try:
            data = encode_event(event)
        except UnicodeEncodeError:
            raise _Rejected(
                400, "malformed", "body contains unpaired UTF-16 surrogate escapes"
            ) from None

        size = len(data)
        if size > self._max_event_bytes:
            raise _Rejected(
                413,
                "too_large",
                f"the event built from this alert is {size} bytes; "
                f"the bus carries at most {self._max_event_bytes}",
            )
        if self._queued_bytes + size > self._max_queued_bytes and self._queued_bytes:
            raise _Rejected(503, "overloaded", "publish queue full; retry later")
        if self._outage.down and self._outage.shedding():
            raise _Rejected(
                503,
                "bus_unavailable",
                f"the event bus has been unavailable for more than "
                f"{self._outage.budget:g} s; retry later",
            )
        alert_id = _loggable(alert.alert_id, self._secret_bytes)
        try:
            self._queue.put_nowait(_Pending(event, data, now, alert_id))
        except asyncio.QueueFull:
            raise _Rejected(503, "overloaded", "publish queue full; retry later") from None
        self._queued_bytes += size
        self._remember(key, event.id, now)
        self._accepted.inc(event_class=event.event_class)
        log.debug(
            "webhook_accepted",
            alert_id=alert_id,
            event_id=event.id,
            event_class=event.event_class,
            subject=event.subject,
        )
        return WebhookResponse(
            202,
            {
                "status": "accepted",
                "event_id": event.id,
                "event_class": event.event_class,
                "subject": event.subject,
            },
        )

    @staticmethod
    def _parse(body: bytes) -> dict[str, Any]:
        if not body:
            raise _Rejected(400, "malformed", "empty body")
        try:
            text = bytes(body).decode("utf-8")
        except UnicodeDecodeError:
            raise _Rejected(400, "malformed", "body is not UTF-8") from None
        if text.startswith("\ufeff"):
            text = text[1:]
        try:
            obj = json.loads(text, parse_constant=_reject_constant)
        except json.JSONDecodeError as exc:
            raise _Rejected(
                400, "malformed", f"invalid JSON: {exc.msg} (line {exc.lineno} column {exc.colno})"
            ) from None
        except RecursionError:
            raise _Rejected(400, "malformed", "invalid JSON: nested too deeply") from None
        except ValueError:  # NaN/Infinity, or an integer with too many digits
            raise _Rejected(400, "malformed", "invalid JSON: number out of range") from None
        if not isinstance(obj, dict):
            kind = _JSON_TYPES.get(type(obj), "not an object")
            raise _Rejected(422, "schema", f"the body must be a JSON object, not {kind}")
        if _too_deep(obj):
            raise _Rejected(400, "malformed", f"JSON nested deeper than {_MAX_DEPTH} levels")
        return obj

    # ------------------------------------------------------------------ idempotency

    def _seen_within_window(self, key: bytes, now: float) -> str | None:
        """The first delivery's event id when ``key`` was accepted within the window."""
        entry = self._seen.get(key)
        if entry is None:
            return None
        at, event_id = entry
        if now - at > self._idem_window:
            del self._seen[key]
            return None
        return event_id

    def _remember(self, key: bytes, event_id: str, now: float) -> None:
        seen = self._seen
        seen[key] = (now, event_id)
        seen.move_to_end(key)
        # Oldest first: forget expired keys and anything beyond the bound.
        while seen:
            oldest_key, (at, _) = next(iter(seen.items()))
            if len(seen) > self._idem_max or now - at > self._idem_window:
                del seen[oldest_key]
            else:
                break

    # ------------------------------------------------------------------ rejection

    def _refuse(
        self,
        peer: str | None,
        status: int,
        reason: str,
        detail: str,
        headers: Mapping[str, str] | None = None,
    ) -> WebhookResponse:
        self._rejected.inc(source=SOURCE, reason=reason)
        self._rejections.reject(peer or "unknown", reason, detail=detail)
        return WebhookResponse(
            status,
            {"status": "rejected", "reason": reason, "detail": detail},
            dict(headers) if headers else {},
        )

    # ------------------------------------------------------------------ publishing

    async def _publisher(self) -> None:
        # Each wake-up takes what is queued (up to _BATCH): a burst costs one task
        # switch per batch; several publishers keep publishes concurrent (JetStream
        # acks pipeline across them).
        queue = self._queue
        while True:
            batch = await take_batch(queue, _BATCH)
            for pending in batch:
                self._inflight[pending.event.id] = pending
            try:
                # The batch is published concurrently (started in queue order), so
                # a JetStream bus pipelines its acks instead of one round trip each;
                # ``_publish`` handles every error itself.
                await asyncio.gather(*(self._publish(p) for p in batch))
            finally:
                for _ in batch:
                    queue.task_done()
            # Each event leaves _inflight as its publish ends (``_publish``); when
            # cancelled, the unfinished ones stay there and close() counts them lost.

    async def _publish(self, pending: _Pending) -> None:
        try:
            await self._publish_once(pending)
            self._inflight.pop(pending.event.id, None)
        finally:
            # Published or failed (counted either way); a cancelled publish stays
            # in _inflight for close() to count as lost, but its bytes are freed.
            self._queued_bytes -= len(pending.data)

    async def _publish_once(self, pending: _Pending) -> None:
        event = pending.event
        outage = self._outage
        attempt = 0
        while True:
            if outage.shedding():
                self._give_up(pending, attempt)
                return
            try:
                if outage.down:
                    # A publish to a disconnected NATS client waits the whole
                    # publish_timeout; no attempt may outlast the outage budget.
                    async with asyncio.timeout(max(outage.remaining(), _RETRY_DELAYS[0])):
                        await self._bus.publish(event.subject, pending.data, msg_id=event.id)
                else:
                    await self._bus.publish(event.subject, pending.data, msg_id=event.id)
            except (BusUnavailable, PublishTimeout, TimeoutError) as exc:
                outage.mark_down()
                if not attempt:
                    outage.count_retry()
                if outage.over_budget():
                    self._give_up(pending, attempt + 1)
                    return
                delay = _RETRY_DELAYS[min(attempt, len(_RETRY_DELAYS) - 1)]
                attempt += 1
                self._publish_retries.inc()
                if attempt <= len(_RETRY_DELAYS) or attempt % _RETRY_LOG_EVERY == 0:
                    log.warning(
                        "webhook_publish_retry",
                        event_id=event.id,
                        alert_id=pending.alert_id,
                        attempt=attempt,
                        delay=delay,
                        error=type(exc).__name__,
                        detail=str(exc),
                    )
                await asyncio.sleep(min(delay, max(outage.remaining(), 0.01)))
            except BusError as exc:  # not transient (e.g. an invalid subject): no retry
                self._publish_failed.inc(error=type(exc).__name__)
                log.error(
                    "webhook_publish_failed",
                    event_id=event.id,
                    alert_id=pending.alert_id,
                    subject=event.subject,
                    error=type(exc).__name__,
                    detail=str(exc),
                )
                return
            except Exception as exc:  # noqa: BLE001 - keep the publisher alive, whatever the bus does
                self._publish_failed.inc(error=type(exc).__name__)
                log.error(
                    "webhook_publish_failed",
                    event_id=event.id,
                    alert_id=pending.alert_id,
                    subject=event.subject,
                    error=type(exc).__name__,
                )
                return
            else:
                outage.mark_up()
                self._published.inc(event_class=event.event_class)
                self._publish_latency.observe(max(0.0, self._clock() - pending.received_at))
                return

    def _give_up(self, pending: _Pending, attempts: int) -> None:
        """Count (and, for the first few per outage, log) an alert the outage cost."""
        self._publish_failed.inc(error=BUS_OUTAGE)
        if self._outage.count_failure():
            log.error(
                "webhook_publish_failed",
                event_id=pending.event.id,
                alert_id=pending.alert_id,
                subject=pending.event.subject,
                attempts=attempts,
                error=BUS_OUTAGE,
                detail=f"the bus has been unavailable for more than {self._outage.budget:g} s",
            )
