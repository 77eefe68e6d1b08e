"""Memory, episodic: ``JetStreamDedupStore`` — dedup state shared by workers in a NATS KV bucket.

``dedup.backend: nats``. Every worker pointing at the same server, bucket and
namespace shares one "seen this fact" state, so a storm spread over several
workers still gives exactly one ``first``.

Layout. One JetStream key-value bucket ``<bucket>`` (``<bucket>_<namespace>``
with a namespace), i.e. the stream ``KV_<name>`` on ``$KV.<name>.>``, history 1,
per-message TTL allowed (nats-server 2.11+), ``max_age = max_window +
TTL_SLACK`` as a backstop. A fact key (any string) becomes the KV key
``k_<base64url(key)>``, or ``h_<base64url(sha256(key))>`` when that would be
longer than ``MAX_ENCODED``; the original key is kept in the value, which is
JSON ``{"key", "first", "count", "created", "expires"}`` (wall-clock seconds).

Atomicity. Every write is a publish with ``Nats-Expected-Last-Subject-Sequence``:

* a new fact is created with expected sequence 0 — the server accepts it only
  if the key has no message, so of many workers exactly one wins;
* a duplicate increments ``count`` with expected sequence = the revision it
  read (compare-and-set); a conflict re-reads and retries, at most
  ``MAX_ATTEMPTS`` times (then ``StoreError``);
* a fact whose ``expires`` has passed counts as absent: the next event takes it
  over with a compare-and-set on its revision (still exactly one winner).

Expiry. Exact expiry comes from ``expires`` in the value (wall clock: workers'
clocks are assumed NTP-synchronised; skew shifts the window edge by the skew).
The server forgets the key on its own through the per-message TTL header
``Nats-TTL`` = remaining window rounded up + ``TTL_SLACK`` (the server's TTL
timer is coarse — a 1.5 s TTL was observed to fire after 1.27 s — so it is used
for garbage collection only, never for the decision). nats-py's ``msg_ttl``
truncates to whole seconds, so the header is set directly.

Coalescing. Concurrent ``seen`` calls in one process for the same key and
window are queued behind one in-flight write and applied together as one
compare-and-set that adds their number to ``count`` (each call still gets its
own count). A storm costs a few writes per batch instead of one conflict-ridden
write per event; only other processes contend on the revision. The last
revision written or read is cached (bounded) so a duplicate usually costs one
round trip.

Writes are lean: one reply subscription per store (``<inbox>.*``) answers
every write by a counter token, and a deadline is one timer handle — instead
of nats-py's ``js.publish`` (a request: a random token, ``asyncio.wait_for``,
a ``PubAck`` object), which cost ~20 µs more CPU per write, ~11 % of a
sequential ``seen`` (``benchmarks/bench_dedup.py``; docs/PERFORMANCE.md,
"Scale-out"). The reply is read as ``js.publish`` reads it:
status 503 (no stream) raises ``NoStreamResponseError``, a JSON ``error`` its
typed ``APIError``, no reply within ``timeout`` ``nats.errors.TimeoutError``;
all mapped by ``_map_error`` as before.

Bucket gone. A write answered "no stream" (the bucket was deleted, or a
server with memory storage restarted) creates the bucket again once per call
and retries, logged as ``dedup_bucket_recreated``: the shared state starts
over (a fact seen before may be ``first`` once more), but dedup works again
instead of failing every call until a restart.

Errors. nats-py exceptions are mapped by ``_map_error`` (the one place):
``start`` raises ``BusUnavailable`` when the server cannot be reached and
``StoreError`` when the bucket cannot be made; ``seen`` raises ``StoreError``
for every failure (the contract), with the nats error as ``__cause__``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import math
import re
import time
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Final, Literal

import nats.errors
import nats.js.errors
import structlog
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from netcortex import nats_kv
from netcortex.aio import stop_tasks
from netcortex.contracts.memory import DedupResult
from netcortex.errors import BusUnavailable, NetcortexError, StoreError
from netcortex.logs import redact_url
from netcortex.metrics import Registry
from netcortex.nats_errors import NATS_CONNECTIVITY
from netcortex.nats_errors import describe as _describe

__all__ = ["MAX_ATTEMPTS", "JetStreamDedupStore", "kv_key"]

log = structlog.get_logger(__name__)

_BACKEND: Final = "nats"
#: compare-and-set attempts per batch before ``StoreError``
MAX_ATTEMPTS: Final = 64
#: seconds the server keeps a key past its window (TTL timer is coarse)
TTL_SLACK: Final = 2
#: longest base64url key kept readable; longer keys are hashed
MAX_ENCODED: Final = 200
#: revisions remembered per store (saves a read before a compare-and-set)
REVISION_CACHE: Final = 10_000
_EXPECTED_LAST: Final = "Nats-Expected-Last-Subject-Sequence"
_TTL: Final = "Nats-TTL"
_WRONG_LAST: Final = frozenset({10071, 10164})  # JSStreamWrongLastSequence(Constant)Err
_STATUS: Final = "Status"
_NO_RESPONDERS: Final = "503"
_NAME = re.compile(r"[A-Za-z0-9_-]+")

_CONNECTIVITY: Final = NATS_CONNECTIVITY


def _map_error(exc: Exception, what: str, *, starting: bool) -> NetcortexError | None:
    """The ``netcortex.errors`` counterpart of a nats-py / socket exception (the one map).

    ``starting``: connectivity failures become ``BusUnavailable`` (``start``'s
    contract); otherwise, and for every JetStream API error, ``StoreError``.
    ``None`` for anything that is not a nats or socket error.
    """
    if isinstance(exc, NetcortexError):
        return None
    if isinstance(exc, _CONNECTIVITY):
        kind: type[NetcortexError] = BusUnavailable if starting else StoreError
    elif isinstance(exc, nats.errors.Error | nats.js.errors.Error):
        kind = StoreError
    else:
        return None
    return kind(f"{what}: {_describe(exc)}")


@contextlib.contextmanager
def _errors(what: str, *, starting: bool = False) -> Iterator[None]:
    """Raise nats-py exceptions inside as ``netcortex.errors`` (``from`` the original)."""
    try:
        yield
    except Exception as exc:
        mapped = _map_error(exc, what, starting=starting)
        if mapped is None:
            raise
        raise mapped from exc


def _expire(ack: asyncio.Future[Msg]) -> None:
    """A write's deadline passed without a reply: fail it as ``js.publish`` would."""
    if not ack.done():
        ack.set_exception(nats.errors.TimeoutError())


def kv_key(key: str) -> str:
    """The KV key for fact ``key``: ``k_<base64url>`` or, when long, ``h_<sha256 base64url>``.

    Injective for short keys; long keys rely on SHA-256 (the original is kept
    in the value and checked on read).
    """
    enc = base64.urlsafe_b64encode(key.encode()).rstrip(b"=").decode("ascii")
    if len(enc) <= MAX_ENCODED:
        return "k_" + enc
    digest = hashlib.sha256(key.encode()).digest()
    return "h_" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


@dataclass(slots=True)
class _Value:
    """The JSON value of one key."""

    key: str
    first: str
    count: int
    created: float
    expires: float

    def encode(self) -> bytes:
        return json.dumps(
            {
                "key": self.key,
                "first": self.first,
                "count": self.count,
                "created": self.created,
                "expires": self.expires,
            },
            separators=(",", ":"),
        ).encode()

    @classmethod
    def decode(cls, data: bytes) -> _Value | None:
        try:
            raw: Any = json.loads(data)
            return cls(
                key=str(raw["key"]),
                first=str(raw["first"]),
                count=int(raw["count"]),
                created=float(raw["created"]),
                expires=float(raw["expires"]),
            )
        except (ValueError, TypeError, KeyError):
            return None


#: what is known of a key: (revision, value); revision 0 = no message; value None = absent
_State = tuple[int, _Value | None]


class _Batch:
    """Calls queued for one (key, window) while a write for it is in flight."""

    __slots__ = ("calls",)

    def __init__(self) -> None:
        self.calls: list[tuple[str, asyncio.Future[DedupResult]]] = []


class JetStreamDedupStore:
    """``DedupStore`` on a NATS JetStream KV bucket, shared by every worker on it.

    Contract (see the module doc for the mechanism):

    * ``seen`` as in ``contracts.memory.DedupStore``: exactly one ``first=True``
      per fact and window across every process on the bucket; counts are
      distinct and gap-free; a key expires ``window`` seconds after the call
      that created it (wall clock), duplicates do not extend it;
    * ``window`` must be in ``(0, max_window]`` (``ValueError``): the bucket's
      ``max_age`` backstop is derived from ``max_window``;
    * ``start`` connects and creates (or updates) the bucket; idempotent. The
      client reconnects forever once connected; ``seen`` during an outage fails
      with ``StoreError`` after ``timeout`` seconds;
    * failure means "not confirmed": a cancelled ``seen``, or one that raised
      ``StoreError`` during a reconnect, may still have been applied (nats-py
      buffers the write and sends it when the connection returns); a retry with
      the same event id then finds ``first_event_id == event_id`` (the caller's
      cue that its own event created the fact) or counts it once more;
    * ``close`` finishes in-flight writes (up to ``timeout``, then cancels them,
      again for at most ``timeout``) and disconnects (also bounded by ``timeout``
      when the server is gone); idempotent, safe without ``start``; ``seen``
      from the start of ``close`` on raises ``StoreError``.

    Args:
        nats_url: the server (credentials in the URL are redacted in logs).
        bucket: bucket base name (letters, digits, ``_``, ``-``).
        namespace: appended as ``_<namespace>`` to the bucket ("" for none).
        max_window: the longest window callers will use, seconds.
        metrics: the engine's registry (a private one when omitted).
        storage: ``file`` (survives a server restart) or ``memory``.
        timeout: seconds for connecting and for each request to the server.
        replicas: copies of the bucket's stream (``bus.replicas``; 3 on a
            three-node cluster). ``start`` updates an existing bucket to it.

    Raises:
        ValueError: an invalid bucket or namespace name, or ``max_window <= 0``.
    """

    def __init__(
        self,
        *,
        nats_url: str,
        bucket: str = "netcortex_dedup",
        namespace: str = "",
        max_window: float = 3600.0,
        metrics: Registry | None = None,
        storage: Literal["file", "memory"] = "file",
        timeout: float = 2.0,
        replicas: int = 1,
    ) -> None:
        name = f"{bucket}_{namespace}" if namespace else bucket
        if not _NAME.fullmatch(name):
            raise ValueError(f"invalid bucket name {name!r} (letters, digits, '_', '-')")
        if not max_window > 0:
            raise ValueError(f"max_window must be > 0, not {max_window!r}")
        self._nats_url = nats_url
        self._url = redact_url(nats_url)
        self.bucket = name
        self._stream = f"KV_{name}"
        self._prefix = f"$KV.{name}."
        self._max_window = float(max_window)
        self._storage = storage
        self._timeout = timeout
        if replicas < 1:
            raise ValueError("replicas must be at least 1")
        self._replicas = replicas
        self._nc: NatsClient | None = None
        self._js: JetStreamContext | None = None
        self._closed = False
        self._start_lock = asyncio.Lock()
        self._batches: dict[tuple[str, float], _Batch] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._revisions: OrderedDict[str, _State] = OrderedDict()
        # write replies: token -> future, resolved by ``_on_reply`` (see the module doc)
        self._replies: dict[str, asyncio.Future[Msg]] = {}
        self._reply_prefix = ""
        self._reply_seq = 0
        reg = metrics if metrics is not None else Registry()
        self._seen_total = reg.counter(
            "netcortex_dedup_seen_total",
            "Dedup lookups by result (first: a new fact; duplicate: corroboration).",
            ("backend", "result"),
        )
        self._conflicts = reg.counter(
            "netcortex_dedup_conflicts_total",
            "Dedup compare-and-set writes that lost to another writer and were retried.",
            ("backend",),
        )
        self._failures = reg.counter(
            "netcortex_dedup_errors_total", "Dedup lookups that failed.", ("backend",)
        )
        self._write_seconds = reg.histogram(
            "netcortex_dedup_write_seconds",
            "Time to apply one batch of dedup lookups to the shared store.",
            ("backend",),
        )

    def __repr__(self) -> str:
        return f"JetStreamDedupStore(url={self._url!r}, bucket={self.bucket!r})"

    async def __aenter__(self) -> JetStreamDedupStore:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- lifecycle --------------------------------------------------------------------

    async def start(self) -> None:
        """Connect and create (or update) the bucket. Idempotent.

        Raises:
            BusUnavailable: the server cannot be reached within ``timeout``, or
                the store was closed.
            StoreError: the bucket cannot be created (e.g. a server without
                per-message TTL, nats-server < 2.11).
        """
        async with self._start_lock:
            if self._closed:
                raise BusUnavailable("the dedup store is closed")
            if self._nc is not None:
                return
            with _errors(f"connect {self._url}", starting=True):
                nc = await nats_kv.connect(
                    self._nats_url,
                    name="netcortex-dedup",
                    timeout=self._timeout,
                    error_cb=self._on_error,
                )
            try:
                js = nc.jetstream(timeout=self._timeout)
                await self._ensure_bucket(js)
                prefix = nc.new_inbox() + "."
                with _errors("dedup reply subscription", starting=True):
                    await nc.subscribe(prefix + "*", cb=self._on_reply)
                self._reply_prefix = prefix
            except BaseException:
                with contextlib.suppress(Exception):
                    await nc.close()
                raise
            self._nc, self._js = nc, js
            log.info("dedup_store_started", backend=_BACKEND, url=self._url, bucket=self.bucket)

    async def _ensure_bucket(self, js: JetStreamContext) -> None:
        cfg = nats_kv.kv_stream_config(
            self.bucket,
            storage=self._storage,
            replicas=self._replicas,
            max_age=self._max_window + TTL_SLACK,
            msg_ttl=True,
        )
        with _errors(f"dedup bucket {self.bucket}", starting=True):
            await nats_kv.ensure_stream(js, cfg)

    async def _on_reply(self, msg: Msg) -> None:
        reply = self._replies.pop(msg.subject[len(self._reply_prefix) :], None)
        if reply is not None and not reply.done():
            reply.set_result(msg)

    async def _on_error(self, exc: Exception) -> None:
        log.warning("dedup_store_error", backend=_BACKEND, error=_describe(exc))

    async def close(self) -> None:
        """Finish in-flight writes (up to ``timeout``), then disconnect. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=self._timeout)
            if pending:
                # bounded, cancelled again and again: a write's nats request may drop a
                # cancel on Python 3.11 (see netcortex.aio)
                await stop_tasks(pending, timeout=self._timeout, what="dedup writes", logger=log)
        nc, self._nc, self._js = self._nc, None, None
        self._revisions.clear()
        if nc is not None:
            # bounded: nats-py's close can hang flushing to a server that is gone
            with contextlib.suppress(Exception):
                async with asyncio.timeout(self._timeout):
                    await nc.close()
            log.info("dedup_store_closed", backend=_BACKEND, bucket=self.bucket)

    # -- seen -------------------------------------------------------------------------

    async def seen(self, key: str, window: float, event_id: str) -> DedupResult:
        """Record one event reporting fact ``key``; say whether it is the first.

        Args:
            key: the fact key (any string).
            window: seconds the fact stays seen after its first event,
                ``0 < window <= max_window``.
            event_id: the reporting event's id.

        Raises:
            ValueError: ``window`` out of range.
            StoreError: not started, closed, or the server failed or timed out.
        """
        if not 0 < window <= self._max_window:
            raise ValueError(f"window must be in (0, {self._max_window}] seconds, not {window!r}")
        if self._js is None or self._closed:  # closing: no write close would not wait for
            raise StoreError(
                "the dedup store is closed" if self._closed else "the dedup store is not started"
            )
        fut: asyncio.Future[DedupResult] = asyncio.get_running_loop().create_future()
        slot = (key, float(window))
        batch = self._batches.get(slot)
        if batch is None:
            batch = self._batches[slot] = _Batch()
            task = asyncio.create_task(self._drain(slot, batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        batch.calls.append((event_id, fut))
        return await fut

    async def _drain(self, slot: tuple[str, float], batch: _Batch) -> None:
        """Apply the calls queued for ``slot`` in rounds until none are left."""
        key, window = slot
        try:
            while batch.calls:
                calls, batch.calls = batch.calls, []
                try:
                    results = await self._apply(key, window, [eid for eid, _ in calls])
                except BaseException as exc:
                    failure = (
                        exc
                        if isinstance(exc, StoreError)
                        else StoreError(f"dedup {key!r}: {_describe(exc)}")
                    )
                    self._failures.inc(len(calls), backend=_BACKEND)
                    log.warning("dedup_failed", backend=_BACKEND, key=key, error=str(failure))
                    for _, fut in calls:
                        if not fut.done():
                            fut.set_exception(failure)
                    if isinstance(exc, Exception):
                        continue
                    raise
                for (_, fut), result in zip(calls, results, strict=True):
                    if not fut.done():
                        fut.set_result(result)
        finally:
            self._batches.pop(slot, None)
            for _, fut in batch.calls:  # only left when cancelled (close)
                if not fut.done():
                    fut.set_exception(StoreError("the dedup store is closed"))

    async def _apply(self, key: str, window: float, event_ids: list[str]) -> list[DedupResult]:
        """Add the reports in ``event_ids`` to ``key`` with one compare-and-set (retried on
        conflict)."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        subject = self._prefix + kv_key(key)
        n = len(event_ids)
        state: _State = self._revisions.get(subject, (0, None))
        recreated = False
        for _ in range(MAX_ATTEMPTS):
            revision, value = state
            now = time.time()
            if value is None or value.expires <= now:  # absent or expired: create / take over
                first, new = True, _Value(key, event_ids[0], n, now, now + window)
            else:
                first = False
                new = _Value(key, value.first, value.count + n, value.created, value.expires)
            try:
                written = await self._write(subject, new, revision, new.expires - now)
            except StoreError as exc:
                if recreated or not isinstance(exc.__cause__, nats.js.errors.NoStreamResponseError):
                    raise
                recreated = True
                await self._recreate_bucket()
                state = (0, None)
                continue
            if written is None:  # another writer got there first: read and retry
                self._conflicts.inc(backend=_BACKEND)
                state = await self._read(subject, key)
                continue
            self._remember(subject, (written, new))
            self._write_seconds.observe(loop.time() - started, backend=_BACKEND)
            if first:
                log.debug("dedup_first", backend=_BACKEND, key=key, event_id=event_ids[0])
            self._seen_total.inc(int(first), backend=_BACKEND, result="first")
            self._seen_total.inc(n - int(first), backend=_BACKEND, result="duplicate")
            base = new.count - n
            return [
                DedupResult(first=first and i == 0, first_event_id=new.first, count=base + 1 + i)
                for i in range(n)
            ]
        raise StoreError(f"dedup {key!r}: still conflicting after {MAX_ATTEMPTS} attempts")

    async def _recreate_bucket(self) -> None:
        """Create the bucket again: it vanished under us (deleted, or a server with memory
        storage restarted). Every remembered revision is void; the state starts over."""
        js = self._js
        if js is None:
            raise StoreError("the dedup store is closed")
        self._revisions.clear()
        try:
            await self._ensure_bucket(js)
        except NetcortexError as exc:
            raise StoreError(
                f"dedup bucket {self.bucket} is gone and cannot be made: {exc}"
            ) from exc
        log.warning("dedup_bucket_recreated", backend=_BACKEND, bucket=self.bucket)

    async def _write(
        self, subject: str, value: _Value, revision: int, remaining: float
    ) -> int | None:
        """Publish ``value`` if ``subject``'s last revision is ``revision``; its new
        revision, or ``None`` on a conflict."""
        nc = self._nc
        if nc is None or self._js is None:
            raise StoreError("the dedup store is closed")
        headers = {
            _EXPECTED_LAST: str(revision),
            _TTL: f"{math.ceil(max(remaining, 0.0)) + TTL_SLACK}s",
        }
        try:
            with _errors(f"dedup write {self.bucket}"):
                reply = await self._publish(nc, subject, value.encode(), headers)
                hdrs = reply.headers
                if hdrs and not reply.data and hdrs.get(_STATUS) == _NO_RESPONDERS:
                    raise nats.js.errors.NoStreamResponseError
                resp: Any = json.loads(reply.data)
                if "error" in resp:
                    nats.js.errors.APIError.from_error(resp["error"])  # raises the typed error
                return int(resp["seq"])
        except StoreError as exc:
            cause = exc.__cause__
            if isinstance(cause, nats.js.errors.APIError) and cause.err_code in _WRONG_LAST:
                return None
            raise

    async def _publish(
        self, nc: NatsClient, subject: str, data: bytes, headers: dict[str, str]
    ) -> Msg:
        """Publish with a reply token of our own; the reply, or ``nats.errors.TimeoutError``
        after ``timeout`` seconds (nats-py's exceptions are mapped by the caller)."""
        loop = asyncio.get_running_loop()
        self._reply_seq += 1
        token = str(self._reply_seq)
        reply: asyncio.Future[Msg] = loop.create_future()
        replies = self._replies
        replies[token] = reply
        expiry = loop.call_later(self._timeout, _expire, reply)
        try:
            await nc.publish(subject, data, reply=self._reply_prefix + token, headers=headers)
            return await reply
        finally:
            expiry.cancel()
            replies.pop(token, None)

    async def _read(self, subject: str, key: str) -> _State:
        """The current revision and value of ``subject`` (``(0, None)`` when absent)."""
        js = self._js
        if js is None:
            raise StoreError("the dedup store is closed")
        try:
            with _errors(f"dedup read {self.bucket}"):
                msg = await js.get_msg(self._stream, subject=subject, direct=True)
        except StoreError as exc:
            if isinstance(exc.__cause__, nats.js.errors.NotFoundError):
                self._revisions.pop(subject, None)
                return (0, None)
            raise
        revision = int(msg.seq or 0)
        value = _Value.decode(msg.data or b"")
        if msg.headers and msg.headers.get("KV-Operation") in ("DEL", "PURGE"):
            value = None
        elif value is None:
            log.warning("dedup_value_invalid", backend=_BACKEND, key=key, revision=revision)
        elif value.key != key:
            raise StoreError(f"dedup {key!r}: KV key collision with {value.key!r}")
        state: _State = (revision, value)
        self._remember(subject, state)
        return state

    def _remember(self, subject: str, state: _State) -> None:
        revisions = self._revisions
        revisions[subject] = state
        revisions.move_to_end(subject)
        if len(revisions) > REVISION_CACHE:
            revisions.popitem(last=False)
